"""Join ``query_range`` answers of consecutive time pieces into the answer of their whole range
(pure; files on disk in, bytes out).

Each piece's answer is a Prometheus matrix whose series are sorted by label set. The join is a
k-way merge over the pieces, read one series at a time with a streaming JSON parser: a label set
found in several pieces becomes one series whose values are the pieces' values in time order; a
series of only some pieces keeps only its own points. Series come out sorted by label set, as
Prometheus sorts a range result, and numbers keep the text the server wrote, so equal answers
give equal bytes. Memory holds one series per piece, whatever the size of the answers.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator, Sequence
from decimal import Decimal
from itertools import groupby
from pathlib import Path
from typing import Any, BinaryIO

import ijson

HEAD = b'{"status":"success","data":{"resultType":"matrix","result":['
TAIL = b"]}}"
Series = tuple[tuple[tuple[str, str], ...], int, list[Any]]  # (label key, piece index, values)


def _number(value: Any) -> str:
    """A JSON number as written (ijson reads numbers as Decimal, which keeps their digits)."""
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value)


def _series(stream: BinaryIO, piece: int) -> Iterator[Series]:
    previous: tuple[tuple[str, str], ...] | None = None
    for item in ijson.items(stream, "data.result.item"):
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
    points = ",".join(f"[{_number(t)},{json.dumps(v, ensure_ascii=False)}]" for t, v in values)
    return f'{{"metric":{metric},"values":[{points}]}}'.encode()


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
