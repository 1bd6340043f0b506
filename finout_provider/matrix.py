"""Join ``query_range`` answers of consecutive time pieces into the answer of their whole range
(pure; files on disk in, bytes out).

Each piece's answer is a Prometheus matrix whose series are sorted by label set. The join is a
k-way merge over the pieces, read one series at a time from disk: a label set
found in several pieces becomes one series whose values are the pieces' values in time order; a
series of only some pieces keeps only its own points. Series come out sorted by label set, as
Prometheus sorts a range result, and numbers are written as Prometheus writes them, so equal
answers give equal bytes. Memory holds one series per piece, whatever the size of the answers.
"""

from __future__ import annotations

import codecs
import heapq
import json
from collections.abc import Iterator, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any, BinaryIO

HEAD = b'{"status":"success","data":{"resultType":"matrix","result":['
TAIL = b"]}}"
Series = tuple[tuple[tuple[str, str], ...], int, list[Any]]  # (label key, piece index, values)


_DECODER = json.JSONDecoder()
_RESULT = '"result":['


def _objects(stream: BinaryIO, block: int = 1 << 20) -> Iterator[dict[str, Any]]:
    """The series objects of one answer's ``result`` array, decoded one at a time (C-speed
    ``raw_decode`` on a buffer that holds at least the current series)."""
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
                try:
                    item, end = _DECODER.raw_decode(text, pos)
                except json.JSONDecodeError:
                    if done:
                        raise ValueError("a spooled piece of the answer is not whole JSON") from None
                else:
                    yield item
                    pos = end
                    continue
        if done:
            raise ValueError("a spooled piece of the answer has no whole result array")
        data = stream.read(block)
        done = not data
        text = text[max(pos, 0) :] + decoder.decode(data, final=done)
        pos = 0 if pos >= 0 else -1


def _series(stream: BinaryIO, piece: int) -> Iterator[Series]:
    previous: tuple[tuple[str, str], ...] | None = None
    for item in _objects(stream):
        labels = tuple(sorted((str(k), str(v)) for k, v in (item.get("metric") or {}).items()))
        if previous is not None and labels <= previous:
            raise ValueError(
                f"piece {piece + 1} of the split answer is not sorted by label set, so it cannot be joined "
                "exactly; set SPLIT: off and lower TIME_FRAME instead"
            )
        previous = labels
        yield labels, piece, item.get("values") or []


def _encode(labels: tuple[tuple[str, str], ...], values: Sequence[Any]) -> bytes:
    metric = json.dumps(dict(labels), separators=(",", ":"), ensure_ascii=False)
    points = json.dumps(values, separators=(",", ":"), ensure_ascii=False)
    return f'{{"metric":{metric},"values":{points}}}'.encode()


class JoinedBody:
    """The joined answer of ``pieces`` (answer files in time order), as chunks; ``series`` counts
    the series written once it has been read whole."""

    def __init__(self, pieces: Sequence[Path], chunk_size: int = 1 << 20) -> None:
        self.files = list(pieces)
        self.chunk_size = chunk_size
        self.series = 0
        # How the answer came to be split (set by the hook): pieces, halvings, what refused it.
        self.pieces = len(self.files)
        self.depth = 0
        self.refusal = ""
        self.retries = 0

    def __iter__(self) -> Iterator[bytes]:
        self.series = 0
        files = [path.open("rb") for path in self.files]
        try:
            merged = heapq.merge(*(_series(f, i) for i, f in enumerate(files)), key=lambda s: (s[0], s[1]))
            buffer = bytearray(HEAD)
            for labels, group in groupby(merged, key=lambda s: s[0]):
                values = [point for _, _, piece_values in group for point in piece_values]
                if self.series:
                    buffer += b","
                buffer += _encode(labels, values)
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
