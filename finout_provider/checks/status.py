"""A cluster's status over the last hours, as ``status``, the fleet page and ``check_freshness``
show it: the newest complete window, its age, and the windows that are missing, partial, corrupt,
empty, before the cluster's data begins, or exported whole from a Prometheus that lacked data. The
freshness limit is FRESHNESS_HOURS, by default three windows plus the settle time: the export is
late once three windows in a row have not landed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from finout_provider.checks.completeness import Measured, judge
from finout_provider.checks.coverage import COMPLETE, CORRUPT, MISSING, PARTIAL, Coverage
from finout_provider.plan.windows import SETTLE_SECONDS, closed_before, iso, windows_between
from finout_provider.s3.layout import parse_key

if TYPE_CHECKING:
    from finout_provider.catalogue import ExportSpec
    from finout_provider.config.clusters import ClusterConfig
    from finout_provider.s3.store import S3Store
    from finout_provider.target import S3Target

OK, GAPS, STALE = "ok", "gaps", "stale"
SEVERITY = {STALE: 0, GAPS: 1, OK: 2}
SHOWN_WINDOWS = 5  # windows named per cluster and kind in the status text


def freshness_limit(config: ClusterConfig, settle: int) -> int:
    """Seconds after which a cluster's newest complete window is late."""
    if config.freshness_hours is not None:
        return int(config.freshness_hours * 3600)
    return 3 * config.time_frame + settle


def describe_incomplete(found: Mapping[str, str]) -> str:
    return "; ".join(f"{metric}: {reason}" for metric, reason in sorted(found.items()))


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
    # Windows exported whole from a Prometheus that lacked data: start -> {metric: reason}.
    incomplete: dict[int, dict[str, str]] = field(default_factory=dict)
    empty: list[int] = field(default_factory=list)  # windows exported with no series at all
    before_data: list[int] = field(default_factory=list)  # windows before the cluster's data begins

    @property
    def age(self) -> int | None:
        """Seconds since the newest complete window ended."""
        return None if self.newest is None else self.now - (self.newest + self.coverage.time_frame)

    @property
    def state(self) -> str:
        if self.age is None or self.age > self.limit:
            return STALE
        return GAPS if any(self.problems.values()) or self.incomplete else OK

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
            "empty": [iso(s) for s in self.empty],
            "before_data": [iso(s) for s in self.before_data],
            "incomplete": [
                {"window": iso(start), "metrics": sorted(found), "reason": describe_incomplete(found)}
                for start, found in sorted(self.incomplete.items())
            ],
        }


def by_window(
    target: S3Target, measures: Mapping[str, Measured], starts: Sequence[int]
) -> dict[int, dict[str, Measured]]:
    """The measures of ``target``'s objects (by key) grouped by window and metric."""
    found: dict[int, dict[str, Measured]] = {s: {} for s in starts}
    for key, measured in measures.items():
        parsed = parse_key(key, target.prefix, target.cluster)
        if parsed is not None and parsed.start in found:
            found[parsed.start][parsed.metric] = measured
    return found


def empty_windows(spec: ExportSpec, windows: Mapping[int, Mapping[str, Measured]]) -> list[int]:
    """Windows whose every metric (but EXPECT_EMPTY) was exported with no series: before the
    cluster's data begins, or a Prometheus that had nothing."""
    needed = [m for m in spec.names if m not in spec.expect_empty]
    return [
        start
        for start, found in sorted(windows.items())
        if needed and all(m in found and found[m].series == 0 for m in needed)
    ]


def incomplete_windows(spec: ExportSpec, windows: Mapping[int, Mapping[str, Measured]]) -> dict[int, dict[str, str]]:
    """Windows (in order) whose measures say Prometheus lacked data, each judged against the three
    windows before it (:func:`~finout_provider.checks.completeness.judge`)."""
    found: dict[int, dict[str, str]] = {}
    ordered = sorted(windows)
    for i, start in enumerate(ordered):
        before = [windows[s] for s in reversed(ordered[max(0, i - 3) : i])]
        reasons = judge(
            (start, start + spec.time_frame),
            spec.step,
            windows[start],
            before,
            expect_empty=spec.expect_empty,
            thresholds=spec.thresholds,
        )
        if reasons:
            found[start] = reasons
    return found


def cluster_status(
    s3: S3Store, target: S3Target, spec: ExportSpec, now: int, hours: float, settle: int, limit: int
) -> ClusterStatus:
    """The status of ``target``'s export over the last ``hours`` of settled windows."""
    target = target.checked()
    end = closed_before(now, settle, spec.time_frame)
    start = end - int(hours * 3600)
    windows = windows_between(start, end, spec.time_frame)
    starts = [w.start for w in windows]
    survey = target.folder(s3).survey(spec.names, starts, spec.time_frame)
    coverage = Coverage.from_states(target.cluster, target.prefix, spec.time_frame, windows, survey.states)
    status = ClusterStatus(target.cluster, start, end, now, limit, coverage)
    measured = by_window(target, survey.measures, starts)
    status.empty = empty_windows(spec, measured)
    coverage.mark_empty(status.empty)
    status.before_data = coverage.mark_before(survey.begins)
    complete = [s for s, state in coverage.windows.items() if state == COMPLETE]
    status.newest = max(complete, default=None)
    status.problems = {
        state: sorted(s for s, st in coverage.windows.items() if st == state) for state in (MISSING, PARTIAL, CORRUPT)
    }
    status.incomplete = incomplete_windows(spec, measured)
    return status


def incomplete_in(s3: S3Store, target: S3Target, spec: ExportSpec) -> Callable[[int, int], list[int]]:
    """The starts of ``target``'s windows in ``[since, end)`` whose measures in S3 judge them
    incomplete, as ``status`` shows them: where the validation's flags (an Airflow Variable) are not
    at hand, the planner's source for them."""

    def flagged(since: int, end: int) -> list[int]:
        starts = [w.start for w in windows_between(since, end, spec.time_frame)]
        survey = target.folder(s3).survey(spec.names, starts, spec.time_frame)
        return sorted(incomplete_windows(spec, by_window(target.checked(), survey.measures, starts)))

    return flagged


def status_of(config: ClusterConfig, now: int, hours: float | None = None) -> ClusterStatus:
    """A configured cluster's status over ``hours`` (default: a day, or its BACKFILL_DAYS if longer)."""
    from finout_provider.connections import s3_of

    hours = hours or max(24, config.backfill_days * 24)
    limit = freshness_limit(config, SETTLE_SECONDS)
    return cluster_status(s3_of(config), config.target, config.spec, now, hours, SETTLE_SECONDS, limit)


def worst_first(statuses: Sequence[ClusterStatus]) -> list[ClusterStatus]:
    """Stale clusters first (oldest first), then clusters with gaps, then the rest, by name."""
    return sorted(statuses, key=lambda s: (SEVERITY[s.state], -(s.age if s.age is not None else 10**12), s.cluster))


def render(statuses: Sequence[ClusterStatus]) -> str:
    """The morning table: one row per cluster, worst first."""
    kinds = (MISSING, PARTIAL, CORRUPT)
    rows: list[tuple[str, ...]] = [
        ("CLUSTER", "STATE", "NEWEST COMPLETE", "AGE (h)", *map(str.upper, kinds), "INCOMPLETE")
    ]
    for s in worst_first(statuses):
        newest = iso(s.newest) if s.newest is not None else "none in range"
        age = "-" if s.age is None else f"{s.age / 3600:.1f}"
        rows.append(
            (s.cluster, s.state, newest, age, *(str(len(s.problems[k])) for k in kinds), str(len(s.incomplete)))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    counts = {state: sum(s.state == state for s in statuses) for state in (STALE, GAPS, OK)}
    lines += ["", ", ".join(f"{n} {state}" for state, n in counts.items())]
    for s in worst_first(statuses):
        named = [(k, [iso(w) for w in s.problems[k]]) for k in kinds]
        named.append(("empty", [iso(w) for w in s.empty]))
        named.append(("before its data begins", [iso(w) for w in s.before_data]))
        named.append(("incomplete", [f"{iso(w)} ({describe_incomplete(f)})" for w, f in sorted(s.incomplete.items())]))
        for kind, windows in named:
            if windows:
                more = f" and {len(windows) - SHOWN_WINDOWS} more" if len(windows) > SHOWN_WINDOWS else ""
                lines.append(f"{s.cluster} {kind}: {', '.join(windows[:SHOWN_WINDOWS])}{more}")
    return "\n".join(lines)
