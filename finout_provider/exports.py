"""What S3 holds of a cluster's export: the planner, sensor, trigger, retention, CLI and fleet view
all read it from here.

:class:`ClusterFolder` walks one cluster's folder of the key layout with delimited listings
(``Delimiter="/"``, as the seed's IAM policy requires) through the S3 hook's primitives, and
states each expected object: ``ok``, ``missing``, ``empty``, or what is wrong with its body.

An object is proven whole when the export wrote it: an upload completes only after its answer was
validated in full, and carries :data:`PROVEN` as user metadata (one HEAD reads it). Any other object
(written by an older version, or by anything else) is read whole and validated before it counts.

A cluster's status over the last hours: the newest complete window, its age, and the windows that
are missing, partial or corrupt. The freshness limit is FRESHNESS_HOURS, by default three windows
plus the settle time: the export is late once three windows in a row have not landed.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from finout_provider.answers import AnswerCheck, PrometheusError
from finout_provider.completeness import Measured, data_begins, judge
from finout_provider.coverage import COMPLETE, CORRUPT, MISSING, PARTIAL, Coverage
from finout_provider.layout import LayoutKey, build_key, cluster_root, day_of_folder, metric_folder, parse_key
from finout_provider.windows import SETTLE_SECONDS, closed_before, iso, iter_days, windows_between

if TYPE_CHECKING:
    from finout_provider.catalogue import ExportSpec
    from finout_provider.config import ClusterConfig
    from finout_provider.s3_objects import S3Objects
    from finout_provider.target import S3Target

OK, GAPS, STALE = "ok", "gaps", "stale"
SEVERITY = {STALE: 0, GAPS: 1, OK: 2}
EMPTY_GZIP = 20  # bytes of a gzip stream holding nothing
SHOWN_WINDOWS = 5  # windows named per cluster and kind in the status text
# User metadata of an object whose answer was proven whole before it was written.
PROVEN = {"finout-answer": "whole"}


def body_problem(chunks: Iterable[bytes]) -> str | None:
    """``None`` if ``chunks`` are a whole gzip of a whole successful Prometheus answer (its JSON
    validated in full), else what is wrong. Streams: memory stays at one chunk whatever the size."""
    inflater = zlib.decompressobj(31)
    check = AnswerCheck()
    try:
        for chunk in chunks:
            check.feed(inflater.decompress(chunk))
            if inflater.eof:
                break
    except zlib.error as err:
        return f"not gzip ({err})"
    except PrometheusError as err:
        return f"not a whole answer ({err})"
    if not inflater.eof:
        return "truncated gzip"
    try:
        check.finish()
    except PrometheusError as err:
        return f"not a whole answer ({err})"
    return None


# S3 requests of one survey in flight together (within botocore's pool of 10 connections).
REQUESTS_AT_ONCE = 8


@dataclass(frozen=True)
class Survey:
    """What S3 holds of some windows: each expected key's state, the measures of the whole objects
    (by key), and where the cluster's data begins, as the objects' runs found it."""

    states: dict[str, str]
    measures: dict[str, Measured]
    begins: int | None = None


@dataclass(frozen=True)
class ClusterFolder:
    """``s3://<bucket>/<prefix>/<cluster>/``, walked along the key layout."""

    s3: S3Objects
    bucket: str
    prefix: str
    cluster: str

    def has_any(self) -> bool:
        """Whether anything exists in the folder (one delimited listing)."""
        folders, objects = self.s3.list_level(self.bucket, cluster_root(self.prefix, self.cluster))
        return bool(folders or objects)

    def objects(self, metrics: Iterable[str], start: int, end: int) -> dict[LayoutKey, dict[str, Any]]:
        """Layout objects (their listing: Size, LastModified) of ``metrics`` for windows starting in
        ``[start, end)``: one listing per day and metric, :data:`REQUESTS_AT_ONCE` at a time."""
        folders = [
            (m, metric_folder(self.prefix, self.cluster, m, day)) for day in iter_days(start, end) for m in metrics
        ]
        with ThreadPoolExecutor(max_workers=REQUESTS_AT_ONCE) as pool:
            listings = pool.map(lambda folder: self.s3.list_level(self.bucket, folder[1])[1], folders)
            found: dict[LayoutKey, dict[str, Any]] = {}
            for (metric, _), listed in zip(folders, listings, strict=True):
                for obj in listed:
                    parsed = parse_key(obj["Key"], self.prefix, self.cluster)
                    if parsed is not None and parsed.metric == metric and start <= parsed.start < end:
                        found[parsed] = obj
        return found

    def day_folders(self) -> Iterator[tuple[int, str]]:
        """``(midnight, folder)`` of every ``end=.../day=.../`` folder, oldest first; folders
        outside the layout are passed over."""
        for end_folder in sorted(self.s3.list_level(self.bucket, cluster_root(self.prefix, self.cluster))[0]):
            days = [(day_of_folder(f), f) for f in self.s3.list_level(self.bucket, end_folder)[0]]
            yield from sorted((d, f) for d, f in days if d is not None)

    def keys_before(self, cutoff: int) -> list[str]:
        """Layout keys whose window starts before ``cutoff`` (any metric, also retired ones)."""
        keys: list[str] = []
        for day, folder in self.day_folders():
            if day >= cutoff:
                break  # oldest first: nothing newer starts before the cutoff
            for metric_folder_ in self.s3.list_level(self.bucket, folder)[0]:
                for obj in self.s3.list_level(self.bucket, metric_folder_)[1]:
                    parsed = parse_key(obj["Key"], self.prefix, self.cluster)
                    if parsed is not None and parsed.start < cutoff:
                        keys.append(obj["Key"])
        return keys

    def states(
        self, metrics: Sequence[str], starts: Sequence[int], window: int, *, deep: bool = False
    ) -> dict[str, str]:
        """State of every expected key of windows ``starts``: ``ok``, ``missing``, ``empty`` or
        what :meth:`inspect` finds (``deep``: every object read whole)."""
        return self.survey(metrics, starts, window, deep=deep).states

    def survey(self, metrics: Sequence[str], starts: Sequence[int], window: int, *, deep: bool = False) -> Survey:
        """:meth:`states`, the measures each whole object carries, and where the data begins."""
        if not starts:
            return Survey({}, {})
        listed = self.objects(metrics, min(starts), max(starts) + window)
        found = {k.key: int(obj["Size"]) for k, obj in listed.items()}
        expected = sorted(build_key(self.prefix, self.cluster, m, s) for s in set(starts) for m in metrics)
        states = {k: "missing" if k not in found else "empty" if found[k] <= EMPTY_GZIP else "ok" for k in expected}
        seen = self.inspect([k for k, state in states.items() if state == "ok"], deep=deep)
        measures = {k: m for k, (problem, meta) in seen.items() if not problem and (m := Measured.from_metadata(meta))}
        begins = [b for problem, meta in seen.values() if not problem and (b := data_begins(meta)) is not None]
        problems = {k: problem for k, (problem, _) in seen.items() if problem}
        return Survey(states | problems, measures, min(begins, default=None))

    def problems_of(self, keys: Sequence[str], *, deep: bool = False) -> dict[str, str]:
        """What is wrong with each of ``keys`` (objects that exist), for those not whole."""
        return {key: problem for key, (problem, _) in self.inspect(keys, deep=deep).items() if problem}

    def inspect(self, keys: Sequence[str], *, deep: bool = False) -> dict[str, tuple[str | None, dict[str, str]]]:
        """Each of ``keys`` (objects that exist): what is wrong with it (``None`` if whole) and its
        user metadata. An object the export marked :data:`PROVEN` is whole (a HEAD); any other is
        read whole and validated; ``deep`` reads every one whole."""

        def one(key: str) -> tuple[str | None, dict[str, str]]:
            metadata = self.s3.object_metadata(self.bucket, key)
            if not deep and metadata.items() >= PROVEN.items():
                return None, metadata
            return body_problem(self.s3.iter_object(self.bucket, key)), metadata

        with ThreadPoolExecutor(max_workers=REQUESTS_AT_ONCE) as pool:
            return dict(zip(keys, pool.map(one, keys), strict=True))

    def problems(self, metrics: Sequence[str], starts: Sequence[int], window: int) -> list[str]:
        """What is wrong with the objects of windows ``starts``: one line per missing or bad key."""
        states = self.states(metrics, starts, window)
        return [f"{state}: s3://{self.bucket}/{key}" for key, state in states.items() if state != "ok"]


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
    windows before it (:func:`~finout_provider.completeness.judge`)."""
    found: dict[int, dict[str, str]] = {}
    ordered = sorted(windows)
    for i, start in enumerate(ordered):
        before = [windows[s] for s in reversed(ordered[max(0, i - 3) : i])]
        reasons = judge((start, start + spec.time_frame), spec.step, windows[start], before,
                        expect_empty=spec.expect_empty, thresholds=spec.thresholds)  # fmt: skip
        if reasons:
            found[start] = reasons
    return found


def cluster_status(
    s3: S3Objects, target: S3Target, spec: ExportSpec, now: int, hours: float, settle: int, limit: int
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


def incomplete_in(s3: S3Objects, target: S3Target, spec: ExportSpec) -> Callable[[int, int], list[int]]:
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
    from finout_provider.clients import s3_of

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
