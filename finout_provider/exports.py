"""What S3 holds of a cluster's export, for the fleet view and the freshness check.

A cluster's status over the last hours: the newest complete window, its age, and the windows that
are missing, partial or corrupt (from :meth:`~finout_provider.hooks.s3.FinoutS3Hook.object_states`,
listings with ``Delimiter="/"``). The freshness limit is FRESHNESS_HOURS, by default three windows
plus the settle time: the export is late once three windows in a row have not landed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from finout_provider.coverage import COMPLETE, CORRUPT, MISSING, PARTIAL, Coverage
from finout_provider.windows import closed_before, iso, windows_between

if TYPE_CHECKING:
    from finout_provider.config import ClusterConfig
    from finout_provider.hooks.s3 import FinoutS3Hook

OK, GAPS, STALE = "ok", "gaps", "stale"
SEVERITY = {STALE: 0, GAPS: 1, OK: 2}


def freshness_limit(config: ClusterConfig, settle: int) -> int:
    """Seconds after which a cluster's newest complete window is late."""
    if config.freshness_hours is not None:
        return int(config.freshness_hours * 3600)
    return 3 * config.time_frame + settle


@dataclass
class ClusterStatus:
    """One cluster over ``[start, end)``: newest complete window and what is not complete."""

    cluster: str
    start: int
    end: int
    now: int
    limit: int
    coverage: Coverage
    newest: int | None = None
    problems: dict[str, list[int]] = field(default_factory=dict)

    @property
    def age(self) -> int | None:
        """Seconds since the newest complete window ended."""
        return None if self.newest is None else self.now - (self.newest + self.coverage.time_frame)

    @property
    def state(self) -> str:
        if self.age is None or self.age > self.limit:
            return STALE
        return GAPS if any(self.problems.values()) else OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "state": self.state,
            "newest_complete_window": iso(self.newest) if self.newest is not None else None,
            "age_hours": None if self.age is None else round(self.age / 3600, 2),
            "freshness_limit_hours": round(self.limit / 3600, 2),
            "from": iso(self.start),
            "to": iso(self.end),
            **{state: [iso(s) for s in starts] for state, starts in self.problems.items()},
        }


@dataclass(frozen=True)
class Target:
    """Where a cluster's export lands and what it holds."""

    cluster: str
    bucket: str
    prefix: str
    metrics: Sequence[str]
    time_frame: int

    @classmethod
    def of(cls, config: ClusterConfig) -> Target:
        names = [m.name for m in config.metrics]
        return cls(config.cluster_name, config.s3_bucket, config.s3_prefix, names, config.time_frame)


def cluster_status(s3: FinoutS3Hook, target: Target, now: int, hours: float, settle: int, limit: int) -> ClusterStatus:
    """The status of ``target``'s export over the last ``hours`` of settled windows."""
    end = closed_before(now, settle, target.time_frame)
    start = end - int(hours * 3600)
    windows = windows_between(start, end, target.time_frame)
    starts = [w.start for w in windows]
    states = s3.object_states(target.bucket, target.prefix, target.cluster, target.metrics, starts, target.time_frame)
    coverage = Coverage.from_states(target.cluster, target.prefix, target.time_frame, windows, states)
    status = ClusterStatus(target.cluster, start, end, now, limit, coverage)
    complete = [s for s, state in coverage.windows.items() if state == COMPLETE]
    status.newest = max(complete, default=None)
    status.problems = {
        state: sorted(s for s, st in coverage.windows.items() if st == state) for state in (MISSING, PARTIAL, CORRUPT)
    }
    return status


def worst_first(statuses: Sequence[ClusterStatus]) -> list[ClusterStatus]:
    """Stale clusters first (oldest first), then clusters with gaps, then the rest, by name."""
    return sorted(statuses, key=lambda s: (SEVERITY[s.state], -(s.age if s.age is not None else 10**12), s.cluster))


def render(statuses: Sequence[ClusterStatus]) -> str:
    """The morning table: one row per cluster, worst first."""
    rows: list[tuple[str, ...]] = [("CLUSTER", "STATE", "NEWEST COMPLETE", "AGE (h)", "MISSING", "PARTIAL", "CORRUPT")]
    for s in worst_first(statuses):
        newest = iso(s.newest) if s.newest is not None else "none in range"
        age = "-" if s.age is None else f"{s.age / 3600:.1f}"
        rows.append((s.cluster, s.state, newest, age, *(str(len(s.problems[k])) for k in (MISSING, PARTIAL, CORRUPT))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    counts = {state: sum(s.state == state for s in statuses) for state in (STALE, GAPS, OK)}
    lines += ["", ", ".join(f"{n} {state}" for state, n in counts.items())]
    return "\n".join(lines)
