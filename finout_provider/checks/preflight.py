"""Preflight: run each catalogue query of a cluster once, as an instant query, and explain the gaps.

An export that "succeeds" with empty answers is the worst failure of this job: Finout receives
files and silently allocates nothing. The preflight asks Prometheus what each query returns at one
instant and, where a query returns nothing or lacks what Finout needs, says why and what to do:
kube-state-metrics missing, too old or without its label allowlist; the kube-prometheus recording
rule missing (use the ``_v2`` query); cAdvisor series without a ``node`` label; a CLUSTER_LABEL or
CLUSTER_NAME that matches no series. It needs only a function that runs an instant query, so the
CLI and the DAG's optional ``preflight`` task share it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from finout_provider.catalogue import CADVISOR, EMPTY_IS_FINE, KSM, KSM_LABELS, NODE_RULE, ExportSpec, Metric, render
from finout_provider.prometheus.errors import HeavyQueryError

# Runs an instant query at a time and returns Prometheus' ``data.result`` list.
Query = Callable[[str, int], list[dict[str, Any]]]
Progress = Callable[[int, int, str], None]

OK, WARN, EMPTY, FAIL = "ok", "warn", "empty", "fail"
RECORDING_RULE = "node_namespace_pod_container:container_memory_working_set_bytes"
LABELLED = {"pod_labels": "pods", "node_labels": "nodes"}
ALLOWLIST = "--metric-labels-allowlist=pods=[*],nodes=[*]"
KSM_V1_PROBE = "kube_pod_container_resource_requests_cpu_cores"
CLUSTER_PROBES = ("kube_node_info", "kube_pod_info", "container_memory_working_set_bytes")
# Per source: the series that prove it is scraped, and what to check when it is not.
SOURCE_PROBES = {KSM: "kube_pod_info", CADVISOR: "container_memory_working_set_bytes"}
SOURCE_HINTS = {
    KSM: "is kube-state-metrics >= 2.0 deployed and scraped?",
    CADVISOR: "is the kubelet's /metrics/cadvisor endpoint scraped?",
}
STALE_SEARCH = "1d"  # how far back preflight looks for a source's newest sample
LOOKBACK = 300  # Prometheus' default lookback delta: a sample older than this is stale at a query


@dataclass(frozen=True)
class Finding:
    """What one query (or the cluster-wide check, ``metric="cluster"``) returned, and why."""

    metric: str
    level: str
    series: int | None = None
    reason: str = ""


@dataclass
class PreflightReport:
    cluster: str
    at: int
    findings: list[Finding] = field(default_factory=list)
    cost: WindowCost | None = None

    @property
    def failed(self) -> list[Finding]:
        return [f for f in self.findings if f.level == FAIL]

    def by_metric(self) -> dict[str, Finding]:
        return {f.metric: f for f in self.findings}

    def render(self) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at))
        width = max([len("METRIC"), *(len(f.metric) for f in self.findings)])
        lines = [f"Preflight of cluster {self.cluster!r} at {stamp}", ""]
        lines.append(f"{'METRIC':<{width}}  {'SERIES':>6}  STATUS  WHY / WHAT TO DO")
        for f in self.findings:
            series = "-" if f.series is None else str(f.series)
            lines.append(f"{f.metric:<{width}}  {series:>6}  {f.level:<6}  {f.reason}".rstrip())
        counts = {level: sum(f.level == level for f in self.findings) for level in (OK, WARN, EMPTY, FAIL)}
        lines += ["", ", ".join(f"{n} {level}" for level, n in counts.items())]
        if self.cost is not None:
            lines += ["", self.cost.render()]
        return "\n".join(lines)


@dataclass
class WindowCost:
    """What one window's queries load: series x points each, against the server's sample limit."""

    points: int
    series: dict[str, int]
    max_samples: int | None = None
    uncounted: list[str] = field(default_factory=list)  # too heavy to count here

    def samples(self, metric: str) -> int:
        return self.series[metric] * self.points

    def pieces(self, metric: str) -> int:
        """Pieces a split needs so each stays under the limit (a power of two: the split halves)."""
        if not self.max_samples:
            return 1
        pieces = 1
        while self.samples(metric) > self.max_samples * pieces and pieces < self.points:
            pieces *= 2
        return pieces

    def render(self) -> str:
        limit = f"the server's --query.max-samples {self.max_samples:,}" if self.max_samples else "no known limit"
        heavy = sorted((m for m in self.series if self.pieces(m) > 1), key=lambda m: -self.samples(m))
        lines = [f"Window cost (series x {self.points} points) against {limit}:"]
        lines += [f"  {m}: ~{self.samples(m):,} samples, needs ~{self.pieces(m)} pieces (split)" for m in heavy]
        if not heavy:
            biggest = max(self.series, key=self.samples, default=None)
            lines.append(
                f"  no metric needs splitting (largest: {biggest} ~{self.samples(biggest):,} samples)"
                if biggest
                else "  nothing to export"
            )
        if self.uncounted:
            lines.append(f"  too heavy to count here: {', '.join(self.uncounted)}")
        return "\n".join(lines)


def _label_names(series: Sequence[Mapping[str, Any]]) -> set[str]:
    return {name for s in series for name in s.get("metric", {})}


def _cluster_like(names: set[str]) -> list[str]:
    return sorted(n for n in names if re.search("cluster", n, re.IGNORECASE))


class Preflight:
    """Check one cluster's metrics at instant ``at``.

    :param query: runs an instant query (see :data:`Query`).
    :param cluster_name: CLUSTER_NAME.
    :param spec: what the cluster exports: its metrics (catalogue entries with what each needs,
        and EXTRA_QUERIES) and EXPECT_EMPTY.
    :param cluster_label: CLUSTER_LABEL, when one Prometheus holds several clusters.
    """

    def __init__(self, query: Query, cluster_name: str, spec: ExportSpec, cluster_label: str | None = None) -> None:
        self.query = query
        self.cluster_name = cluster_name
        self.spec = spec
        self.metrics = list(spec.metrics)
        self.cluster_label = cluster_label
        self.too_heavy = ""  # how the server refused the last check it found too heavy

    def _render(self, promql: str) -> str:
        return render(promql, self.cluster_label, self.cluster_name if self.cluster_label else None)

    def _ask(self, promql: str, at: int) -> list[dict[str, Any]] | None:
        """An instant query's series; ``None`` when the server refuses it as too heavy (the check is
        a finding then, and the export splits what it can)."""
        try:
            return self.query(promql, at)
        except HeavyQueryError as err:
            self.too_heavy = f"refused by {err.refusal.backend}'s {err.refusal.limit}"
            return None

    def _count(self, promql: str, at: int) -> int | None:
        result = self._ask(f"count({self._render(promql)})", at)
        return None if result is None else int(float(result[0]["value"][1])) if result else 0

    def cost(self, at: int, max_samples: int | None) -> WindowCost:
        """Series of each query at ``at`` (a cheap ``count(...)`` each), times a window's points."""
        counted = {m.name: self._count(m.query, at) for m in self.metrics}
        series = {name: n for name, n in counted.items() if n is not None}
        return WindowCost(self.spec.points, series, max_samples, sorted(set(counted) - set(series)))

    def run(self, at: int, progress: Progress | None = None) -> PreflightReport:
        report = PreflightReport(self.cluster_name, at)
        cluster = self._check_cluster(at)
        report.findings.append(cluster)
        answers: dict[str, list[dict[str, Any]] | None] = {}
        for number, metric in enumerate(self.metrics, 1):
            if progress:
                progress(number, len(self.metrics), metric.name)
            answers[metric.name] = self._ask(self._render(metric.query), at)
        ksm = [m.name for m in self.metrics if _source(m) == KSM]
        # kube-state-metrics before 2.0 answers only under the old per-resource names.
        old_ksm = any(answers[name] == [] for name in ksm) and (self._count(KSM_V1_PROBE, at) or 0) > 0
        sources = {source for m in self.metrics if (source := _source(m))}
        quiet = [s for s in sources if all(answers[m.name] == [] for m in self.metrics if _source(m) == s)]
        silent = {source: why for source in quiet if (why := self._absence(source, at))}
        for metric in self.metrics:
            report.findings.append(self._judge(metric, answers, at, cluster.level == FAIL, silent, old_ksm))
        return report

    def _absence(self, source: str, at: int) -> str | None:
        """Why ``source`` gave no series at ``at``: stale (with the age of its newest sample) or
        absent; ``None`` when it does answer (its metrics here are legitimately empty)."""
        probe = self._render(f"max(timestamp({SOURCE_PROBES[source]}))")
        newest = self._ask(f"max_over_time({probe}[{STALE_SEARCH}:5m])", at)
        hint = SOURCE_HINTS[source]
        if newest is None:
            return None  # too heavy to tell
        if not newest:
            return f"no {source} series in the last {STALE_SEARCH}: {hint}"
        age = max(0, at - int(float(newest[0]["value"][1])))
        if age <= LOOKBACK:
            return None
        stamp = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(at - age))
        return f"{source} is stale: its newest sample is {age // 60} min old ({stamp}); {hint}"

    # --- cluster-wide ------------------------------------------------------------------------

    def _check_cluster(self, at: int) -> Finding:
        """Is this cluster's data where CLUSTER_LABEL/CLUSTER_NAME say, and is it alone?"""
        probes = [self._ask(f"topk(5, {probe})", at) for probe in CLUSTER_PROBES]
        if any(found is None for found in probes):
            return Finding(
                "cluster",
                WARN,
                None,
                f"too heavy to check here ({self.too_heavy}); the export itself "
                "will say if the cluster's series are not there",
            )
        candidates = _cluster_like({name for found in probes for name in _label_names(found or [])})
        label, name = self.cluster_label, self.cluster_name
        if label is None:
            return self._alone(candidates, at)
        values = self._values(label, at)
        if name in values:
            return Finding("cluster", OK, None, f"series with {label}={name!r} found")
        if not values:
            hint = (
                f"labels that look like a cluster label: {', '.join(candidates)}"
                if candidates
                else (
                    "no series carries a label that looks like a cluster label: remove CLUSTER_LABEL if this "
                    "Prometheus holds one cluster"
                )
            )
            return Finding(
                "cluster",
                FAIL,
                None,
                f"no series carries the label CLUSTER_LABEL={label!r} at this time (unless the sources below are "
                f"stale); {hint}",
            )
        return Finding(
            "cluster",
            FAIL,
            None,
            f"no series has {label}={name!r}; the label's values are {', '.join(values)}: CLUSTER_NAME must "
            "be one of them (it is matched as the label's value), or CLUSTER_LABEL names another label",
        )

    def _alone(self, candidates: list[str], at: int) -> Finding:
        """Without CLUSTER_LABEL: is this cluster the only one in its Prometheus?"""
        for candidate in candidates:
            values = self._values(candidate, at)
            if len(values) > 1:
                return Finding(
                    "cluster",
                    WARN,
                    None,
                    f"this Prometheus holds several clusters ({candidate}: {', '.join(values)}) and "
                    f"CLUSTER_LABEL is not set, so every cluster's data lands under {self.cluster_name!r}: "
                    f"set CLUSTER_LABEL: {candidate} and CLUSTER_NAME to this cluster's value",
                )
        return Finding("cluster", OK, None, "one cluster in this Prometheus (no CLUSTER_LABEL needed)")

    def _values(self, label: str, at: int) -> list[str]:
        """Values of ``label`` on the probe metrics (empty values left out)."""
        values: set[str] = set()
        for probe in CLUSTER_PROBES:
            for series in self._ask(f"count by ({label}) ({probe})", at) or []:
                value = series.get("metric", {}).get(label, "")
                if value:
                    values.add(value)
        return sorted(values)

    # --- per metric --------------------------------------------------------------------------

    def _judge(
        self,
        metric: Metric,
        answers: Mapping[str, list[dict[str, Any]] | None],
        at: int,
        cluster_failed: bool,
        silent: Mapping[str, str],
        old_ksm: bool,
    ) -> Finding:
        """A metric's finding. A source that is absent or stale fails every metric it feeds; a metric
        that is empty while its source answers is reported and exported empty (no pod sets limits,
        no GPU): it never blocks the others."""
        name, series = metric.name, answers[metric.name]
        if series is None:
            return Finding(
                name,
                WARN,
                None,
                f"too heavy to check here ({self.too_heavy}): the export splits "
                "a heavy window, or names the limit to raise",
            )
        if series:
            return self._judge_data(metric, series, answers)
        source = _source(metric)
        if source is not None and source in silent and "is stale" in silent[source]:
            return Finding(name, FAIL, 0, silent[source])
        if cluster_failed:
            return Finding(name, FAIL, 0, "nothing for this cluster: see the 'cluster' line")
        if name in self.spec.expect_empty:
            return Finding(name, EMPTY, 0, EMPTY_IS_FINE.get(name, "no series at this time (EXPECT_EMPTY: fine)"))
        if name == "memory_usage" and self._count(RECORDING_RULE, at) == 0:
            return _no_recording_rule(bool(answers.get("memory_usage_v2")))
        if source == KSM and old_ksm:
            return Finding(
                name, FAIL, 0, f"kube-state-metrics is older than 2.0 (it exports {KSM_V1_PROBE}): upgrade it"
            )
        if source is not None and source in silent:
            return Finding(name, FAIL, 0, silent[source])
        if source is not None:
            return Finding(
                name,
                EMPTY,
                0,
                f"no series, though {source} answers for other metrics: nothing in the cluster has it at this "
                "time (e.g. no pod sets limits); exported empty",
            )
        return Finding(name, FAIL, 0, "the query returns nothing at this time")

    def _judge_data(
        self, metric: Metric, series: list[dict[str, Any]], answers: Mapping[str, list[dict[str, Any]] | None]
    ) -> Finding:
        name, count = metric.name, len(series)
        if name in LABELLED and not any(n.startswith("label_") for n in _label_names(series)):
            return Finding(
                name,
                WARN,
                count,
                f"no label_* labels on {LABELLED[name]}: kube-state-metrics runs without {ALLOWLIST}, so Finout "
                "cannot allocate by Kubernetes labels; add that flag to kube-state-metrics",
            )
        if NODE_RULE in metric.needs and not any(s.get("metric", {}).get("node") for s in series):
            v2 = f"{name}_v2"
            have = "is exported too" if answers.get(v2) else "is not in METRICS: add it"
            return Finding(
                name,
                WARN,
                count,
                f"no series has a 'node' label (cAdvisor scraped without it), so rows cannot be tied to "
                f"nodes; {v2}, which rebuilds node from 'instance', {have}",
            )
        return Finding(name, OK, count)


def _no_recording_rule(v2_exported: bool) -> Finding:
    """memory_usage without the kube-prometheus rule it reads."""
    fix = (
        "memory_usage_v2, exported too, computes the same from cAdvisor: drop memory_usage from METRICS"
        if v2_exported
        else "add memory_usage_v2 to METRICS: it computes the same from cAdvisor"
    )
    reason = f"the recording rule {RECORDING_RULE} (kube-prometheus rules) is missing; {fix}"
    return Finding("memory_usage", WARN if v2_exported else FAIL, 0, reason)


def _source(metric: Metric) -> str | None:
    """The exporter a metric's series come from (kube-state-metrics or cAdvisor), if known."""
    if KSM in metric.needs or KSM_LABELS in metric.needs:
        return KSM
    return CADVISOR if CADVISOR in metric.needs else None


def default_instant(now: float, settle: int, step: int) -> int:
    """The instant a preflight looks at when no run names one: the last step boundary before the
    settle delay."""
    at = int(now) - settle
    return at - at % step


def judged_instant(end: int, step: int) -> int:
    """The last step boundary before ``end``: a window ending at ``end`` has its last point there."""
    at = end - step
    return at - at % step
