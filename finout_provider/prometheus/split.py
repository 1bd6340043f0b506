"""Splitting a query the server refuses as too heavy: its time range halved until each piece is
accepted, the pieces spooled to disk in time order, then joined into the answer of the whole range.

Which refusals splitting helps is :mod:`finout_provider.prometheus.errors`' call; how a piece is
fetched (request, retries, validation) is the client's, passed in as ``fetch``.

Each piece's answer is a Prometheus matrix whose series are sorted by label set. The join is a
k-way merge over the pieces, read one series at a time from disk: a label set
found in several pieces becomes one series whose values are the pieces' values in time order; a
series of only some pieces keeps only its own points. Series come out sorted by label set, as
Prometheus sorts a range result, and labels and values are copied as Prometheus wrote them, so
equal answers give equal bytes. Memory holds one series per piece, whatever the size of the
answers.
"""

from __future__ import annotations

import codecs
import heapq
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any, BinaryIO

from finout_provider.prometheus.answer import Answer, AnswerCheck, Measures
from finout_provider.prometheus.errors import HeavyQueryError

HEAD = b'{"status":"success","data":{"resultType":"matrix","result":['
TAIL = b"]}}"
Labels = tuple[tuple[str, str], ...]
Series = tuple[Labels, int, str, str]  # (label key, piece index, metric as written, values as written)

_DECODER = json.JSONDecoder()
_RESULT = '"result":['
_METRIC, _VALUES, _VALUES_END = '{"metric":', ',"values":[', '"]]'


def _read_series(text: str, pos: int) -> tuple[Series, int] | None:
    """The series object at ``text[pos]``, or ``None`` if the buffer does not hold all of it yet.

    Prometheus writes ``{"metric":{...},"values":[[t,"v"],...]}``: only the label set is decoded,
    the values are kept as written (their strings hold no quote or bracket), so the join copies
    them and costs about what reading them does. Any other shape is decoded whole and re-encoded.
    """
    if text.startswith(_METRIC, pos):
        try:
            metric, after = _DECODER.raw_decode(text, pos + len(_METRIC))
        except json.JSONDecodeError:
            return None
        if text.startswith(_VALUES, after) and text[after + len(_VALUES) : after + len(_VALUES) + 1] == "[":
            close = text.find(_VALUES_END, after)  # the last point's closing quote and brackets
            if close < 0 or close + len(_VALUES_END) >= len(text):
                return None
            if text[close + len(_VALUES_END)] == "}":
                values = text[after + len(_VALUES) : close + 2]
                return (_label_key(metric), 0, text[pos + len(_METRIC) : after], values), close + len(_VALUES_END) + 1
    try:
        item, end = _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError:
        return None
    metric = item.get("metric") or {}
    written = json.dumps(metric, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    values = json.dumps(item.get("values") or [], separators=(",", ":"), ensure_ascii=False)[1:-1]
    return (_label_key(metric), 0, written, values), end


def _label_key(metric: dict[str, Any]) -> Labels:
    return tuple(sorted((str(k), str(v)) for k, v in metric.items()))


def _objects(stream: BinaryIO, block: int = 1 << 20) -> Iterator[Series]:
    """The series of one answer's ``result`` array, one at a time, from a buffer that holds at
    least the current series."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    text, pos, done = "", -1, False
    while True:
        if pos < 0:  # before the result array
            found = text.find(_RESULT)
            if found >= 0:
                pos = found + len(_RESULT)
                continue
        else:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            if pos < len(text) and text[pos] == "]":
                return
            if pos < len(text):
                read = _read_series(text, pos)
                if read is not None:
                    yield read[0]
                    pos = read[1]
                    continue
                if done:
                    raise ValueError("a spooled piece of the answer is not whole JSON")
        if done:
            raise ValueError("a spooled piece of the answer has no whole result array")
        data = stream.read(block)
        done = not data
        text = text[max(pos, 0) :] + decoder.decode(data, final=done)
        pos = 0 if pos >= 0 else -1


def _series(stream: BinaryIO, piece: int) -> Iterator[Series]:
    previous: Labels | None = None
    for labels, _, metric, values in _objects(stream):
        if previous is not None and labels <= previous:
            raise ValueError(
                f"piece {piece + 1} of the split answer is not sorted by label set, so it cannot be joined "
                "exactly; set SPLIT: off and lower TIME_FRAME instead"
            )
        previous = labels
        yield labels, piece, metric, values


class JoinedBody:
    """The joined answer of ``pieces`` (answer files in time order), as chunks; once read whole,
    ``series`` counts the series written, ``size`` its bytes and ``measures`` (taken by an
    :class:`~finout_provider.prometheus.answer.AnswerCheck` of the joined bytes at ``step``) what
    it held."""

    def __init__(self, pieces: Sequence[Path], chunk_size: int = 1 << 20, step: int = 60) -> None:
        self.files = list(pieces)
        self.chunk_size = chunk_size
        self.step = step
        self.series = 0
        self.size = 0
        self.measures = Measures()

    def __iter__(self) -> Iterator[bytes]:
        check = AnswerCheck(self.step)
        for chunk in self._join():
            check.feed(chunk)
            yield chunk
        self.measures, self.size = check.finish(), check.size

    def _join(self) -> Iterator[bytes]:
        self.series = 0
        files = [path.open("rb") for path in self.files]
        try:
            merged = heapq.merge(*(_series(f, i) for i, f in enumerate(files)), key=lambda s: (s[0], s[1]))
            buffer = bytearray(HEAD)
            for _, group in groupby(merged, key=lambda s: s[0]):
                parts = list(group)
                values = ",".join(values for _, _, _, values in parts if values)
                if self.series:
                    buffer += b","
                buffer += f'{{"metric":{parts[0][2]},"values":[{values}]}}'.encode()
                self.series += 1
                if len(buffer) >= self.chunk_size:
                    yield bytes(buffer)
                    buffer.clear()
            buffer += TAIL
            yield bytes(buffer)
        finally:
            for handle in files:
                handle.close()


def split_range(start: int, end: int, step: int, pieces: int) -> list[tuple[int, int]]:
    """``[start, end]`` (both inclusive, on ``step``) as up to ``pieces`` consecutive sub-ranges
    on the same steps: each starts one step after the previous one's end, none is empty."""
    points = (end - start) // step + 1
    count = max(1, min(pieces, points))
    bounds = [start + (points * i // count) * step for i in range(count + 1)]
    return [(bounds[i], bounds[i + 1] - step) for i in range(count)]


# fetch(start, end, into): the answer of one piece, read whole and valid into ``into``.
Fetch = Callable[[int, int, Callable[[Iterable[bytes]], None]], Answer]


@dataclass
class Spool:
    """The pieces of one split query, spooled to ``folder`` in time order with their retries."""

    fetch_piece: Fetch
    step: int
    floor: int  # the shortest piece, seconds (never below one step)
    folder: Path
    pieces: list[tuple[Path, int]] = field(default_factory=list)
    refused: int = 0  # seconds of the shortest piece refused so far: a piece as long is not tried

    def fetch(self, start: int, end: int, depth: int) -> int:
        """Spool ``[start, end]``'s answer, halving it while the server refuses it as too heavy (a
        piece as long as one already refused is halved unasked: its sibling is as heavy, most
        likely); return the depth reached."""
        length = end - start + self.step
        can_halve = length > max(self.floor, self.step) and end > start
        if can_halve and self.refused and length >= self.refused:
            return self._halve(start, end, depth)
        path = self.folder / f"{len(self.pieces):05d}.json"  # in time order: the left half comes first
        try:
            retried = self.fetch_piece(start, end, lambda body: _write(body, path)).retries
        except HeavyQueryError as err:
            refusal = err.refusal
            if not refusal.splittable or not can_halve:
                raise HeavyQueryError(
                    f"{err}; even a piece of {length}s is refused, so splitting in time cannot help: {refusal.fix}",
                    refusal,
                    err.status,
                ) from None
            if refusal.halvings is not None and depth >= refusal.halvings:
                raise HeavyQueryError(
                    f"{err}; a piece of {length}s is refused as heavily as the whole window: {refusal.backend} does "
                    f"not count {refusal.limit} by the time range, so splitting cannot help: {refusal.fix}",
                    refusal,
                    err.status,
                ) from None
            self.refused = min(self.refused or length, length)
            return self._halve(start, end, depth)
        self.pieces.append((path, retried))
        return depth

    def _halve(self, start: int, end: int, depth: int) -> int:
        return max(self.fetch(a, b, depth + 1) for a, b in split_range(start, end, self.step, 2))


def _write(body: Iterable[bytes], path: Path) -> None:
    """Write an answer to ``path`` as it arrives (a split query's piece)."""
    with path.open("wb") as out:
        for chunk in body:
            out.write(chunk)


def read_in_pieces(
    fetch: Fetch,
    start: int,
    end: int,
    step: int,
    into: Callable[[Iterable[bytes]], None],
    *,
    pieces: int,
    refused: bool,
    floor: int,
) -> Answer:
    """The answer of ``[start, end]`` fetched as ``pieces`` (halved further while the server refuses
    them; ``refused``: the whole range was refused already), spooled to disk, then joined into ``into``."""
    with tempfile.TemporaryDirectory(prefix="finout-split-") as folder:
        spool = Spool(fetch, step, floor, Path(folder))
        spool.refused = end - start + step if refused else 0
        depth = max(spool.fetch(a, b, 1) for a, b in split_range(start, end, step, pieces))
        body = JoinedBody([path for path, _ in spool.pieces], step=step)
        into(body)
    return Answer(body.measures, body.size, sum(r for _, r in spool.pieces), len(spool.pieces), depth)
