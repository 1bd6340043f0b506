"""Planning: which windows a run of one cluster exports (its interval, the history, gaps in S3).

:func:`~finout_provider.plan.windows.plan_run` decides from numbers; :class:`Planner` feeds it with
what S3 holds and what Prometheus keeps. The plan task and ``finout-provider plan`` share it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Any

from finout_provider.catalogue import ExportSpec, render
from finout_provider.failures import is_permanent
from finout_provider.plan.windows import (
    DAY,
    SETTLE_SECONDS,
    Plan,
    Window,
    align_down,
    backfill_start,
    iso,
    missing,
    plan_run,
    windows_between,
)
from finout_provider.state import FlaggedWindows

# Any of the cluster's data in the window ending at each step (kube-state-metrics or cAdvisor).
DATA_PROBE = (
    "count(count_over_time(kube_pod_info[{frame}]))"
    " or count(count_over_time(container_memory_working_set_bytes[{frame}]))"
)

if TYPE_CHECKING:
    from finout_provider.config.clusters import ClusterConfig
    from finout_provider.prometheus.client import PrometheusClient
    from finout_provider.s3.store import S3Store
    from finout_provider.target import S3Target


@dataclass
class Planner:
    """What a run of one cluster exports: :func:`~finout_provider.plan.windows.plan_run` fed with what
    S3 holds and what Prometheus keeps."""

    s3: S3Store
    target: S3Target
    spec: ExportSpec
    backfill_days: int = 3
    initial_backfill_date: date | None = None
    lookback_days: int = 0  # days of gap repair beyond the history, if ever wanted
    settle_seconds: int = SETTLE_SECONDS
    prometheus: PrometheusClient | None = None
    log: logging.Logger | Any = field(default_factory=lambda: logging.getLogger(__name__))
    cluster_label: str | None = None
    # The starts of the windows in [since, end) judged incomplete; default the validation's flags.
    flagged: Callable[[int, int], Iterable[int]] | None = None

    @classmethod
    def from_config(
        cls, config: ClusterConfig, s3: S3Store, prometheus: PrometheusClient | None, **kwargs: Any
    ) -> Planner:
        """The planner of a cluster of the clusters file."""
        return cls(
            s3,
            config.target.checked(),
            config.spec,
            backfill_days=config.backfill_days,
            initial_backfill_date=config.initial_backfill_date,
            prometheus=prometheus,
            cluster_label=config.cluster_label,
            **kwargs,
        )

    @property
    def cluster_name(self) -> str:
        return self.target.cluster

    @property
    def time_frame(self) -> int:
        return self.spec.time_frame

    def plan(
        self,
        now: int,
        *,
        limit: int,
        interval: tuple[int, int] | None = None,
        explicit: tuple[int, int] | None = None,
        repair: bool = True,
    ) -> Plan:
        repairs = self.gaps(now) if repair and explicit is None else []
        begins = None
        if repairs and self.initial_backfill_date is None:
            begins = self.data_begins(repairs[0].start, now)
            if begins is not None and begins > repairs[0].start:
                skipped = sum(w.end <= begins for w in repairs)
                self.log.info(
                    "cluster %r: Prometheus' data begins in the window at %s: the %d windows before it are not "
                    "exported (INITIAL_BACKFILL_DATE asks for them anyway)",
                    self.cluster_name,
                    iso(begins),
                    skipped,
                )
                repairs = [w for w in repairs if w.end > begins]
        oldest = self.oldest_kept(now) if explicit is not None or repairs else None
        plan = plan_run(
            now=now,
            time_frame=self.time_frame,
            settle=self.settle_seconds,
            limit=limit,
            interval=interval,
            explicit=explicit,
            repairs=repairs,
            oldest=oldest,
        )
        return replace(plan, data_begins=begins)

    def data_begins(self, since: int, now: int) -> int | None:
        """The start of the first window since ``since`` in which Prometheus holds any of this
        cluster's kube-state-metrics or cAdvisor data (one range query at the window's step), or
        ``None`` when it cannot say (nothing found: maybe metrics of other exporters only)."""
        if self.prometheus is None:
            return None
        probe = render(
            DATA_PROBE.format(frame=f"{self.time_frame}s"),
            self.cluster_label,
            self.cluster_name if self.cluster_label else None,
        )
        # Evaluated one second before each window's end, a range of one window covers exactly
        # [start, end) (a range selector holds (t - range, t]).
        first_end = since + self.time_frame - 1
        try:
            answer = self.prometheus.query_range(probe, first_end, max(first_end, now), self.time_frame)
        except Exception as err:
            if is_permanent(err):  # 401, an unknown connection, a bad setting: the export would fail too
                raise
            self.log.warning("cluster %r: cannot tell where Prometheus' data begins (%s)", self.cluster_name, err)
            return None
        times = [float(t) for series in answer["data"]["result"] for t, _ in series.get("values", [])]
        return int(min(times)) + 1 - self.time_frame if times else None

    def oldest_kept(self, now: int) -> int | None:
        """The oldest time Prometheus still holds (by its time retention), if it says."""
        if self.prometheus is None:
            return None
        try:
            retention = self.prometheus.retention_seconds()
        except Exception as err:
            if is_permanent(err):
                raise
            self.log.warning(
                "cluster %r: cannot read Prometheus' retention (%s); not checking it", self.cluster_name, err
            )
            return None
        return None if retention is None else now - retention

    def _recheck(self, listed: dict[str, Any], now: int) -> bool:
        """Whether gap repair proves this object whole: every object on the day's first run (the
        run within one window of midnight UTC), else those written since the run before last."""
        if now % DAY < self.time_frame:
            return True
        modified = listed.get("LastModified")
        return modified is None or modified.timestamp() >= now - 3 * self.time_frame

    def gaps(self, now: int) -> list[Window]:
        """The windows missing in S3 within the history (BACKFILL_DAYS or INITIAL_BACKFILL_DATE) and
        the look-back, whatever runs came before: a first run finds them all missing. A window
        whose object is not a whole answer (:meth:`_recheck`) is missing too."""
        cluster, metrics = self.cluster_name, self.spec.names
        history = backfill_start(now, self.backfill_days, self.initial_backfill_date)
        since = align_down(min(history, now - self.lookback_days * DAY), self.time_frame)
        end = now - now % self.time_frame
        folder = self.target.folder(self.s3)
        found = {key: obj for key, obj in folder.objects(metrics, since, end).items() if obj["Size"] > 0}
        unproven = folder.problems_of([key.key for key, obj in found.items() if self._recheck(obj, now)])
        if unproven:
            self.log.warning(
                "cluster %r: %d objects are not whole answers; exporting their windows again:\n%s",
                cluster,
                len(unproven),
                "\n".join(f"{key}: {what}" for key, what in sorted(unproven.items())[:10]),
            )
        complete: dict[int, int] = {}
        for key in found:
            if key.key not in unproven:
                complete[key.start] = complete.get(key.start, 0) + 1
        expected = windows_between(since, end, self.time_frame)
        if self.flagged is None:
            flagged = {s for s in FlaggedWindows(cluster).load() if since <= s < end}
        else:
            flagged = set(self.flagged(since, end))
        if flagged:
            self.log.warning(
                "cluster %r: %d windows were exported while Prometheus lacked data (incomplete); exporting "
                "them again: %s",
                cluster,
                len(flagged),
                ", ".join(iso(s) for s in sorted(flagged)[:10]),
            )
        whole = (s for s, n in complete.items() if n == len(metrics) and s not in flagged)
        gaps = missing(expected, whole)
        if gaps and len(gaps) == len(expected):
            self.log.info("cluster %r: nothing in S3 since %s: exporting the history", cluster, iso(since))
        elif gaps:
            self.log.warning(
                "cluster %r: %d windows missing or incomplete in S3 since %s; exporting them",
                cluster,
                len(gaps),
                gaps[0].label,
            )
        return gaps
