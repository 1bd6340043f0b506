"""Splitting a query the server refuses as too heavy: its time range halved until each piece is
accepted, the pieces spooled to disk in time order (:mod:`finout_provider.matrix` joins them).

Which refusals splitting helps is :mod:`finout_provider.refusals`' call; how a piece is fetched
(request, retries, validation) is the hook's, passed in as ``fetch``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finout_provider.answers import HeavyQueryError
from finout_provider.matrix import split_range

# fetch(start, end, consume): the answer of one piece, given whole and valid to ``consume``.
Fetch = Callable[[int, int, Callable[[Any], int]], int]


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
            retried = self.fetch_piece(start, end, lambda body: _write(body, path))
        except HeavyQueryError as err:
            if not err.refusal.splittable or not can_halve:
                raise HeavyQueryError(
                    f"{err}; even a piece of {length}s is refused, so splitting in time cannot help: {err.refusal.fix}",
                    err.refusal,
                    err.status,
                ) from None
            self.refused = min(self.refused or length, length)
            return self._halve(start, end, depth)
        self.pieces.append((path, retried))
        return depth

    def _halve(self, start: int, end: int, depth: int) -> int:
        return max(self.fetch(a, b, depth + 1) for a, b in split_range(start, end, self.step, 2))


def _write(body: Iterable[bytes], path: Path) -> int:
    """Write an answer to ``path`` as it arrives (a split query's piece); return its retries."""
    with path.open("wb") as out:
        for chunk in body:
            out.write(chunk)
    return int(getattr(body, "retries", 0))
