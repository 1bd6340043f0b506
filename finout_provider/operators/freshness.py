"""Freshness: fail when a cluster's newest complete window in S3 is older than FRESHNESS_HOURS."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from finout_provider.compat import AirflowFailException, AirflowSkipException, Stats
from finout_provider.exports import STALE, Target, cluster_status
from finout_provider.layout import normalize_prefix
from finout_provider.operators.base import ClusterS3Operator, run_type, s3_target_fields
from finout_provider.windows import iso

if TYPE_CHECKING:
    from finout_provider.compat import Context


class FinoutFreshnessOperator(ClusterS3Operator):
    """
    Fail when the cluster's newest complete window in S3 is older than ``limit_seconds``, so
    Airflow's alerting (email, callbacks, ``on_failure_callback``) tells someone. Scheduled runs
    only: manual runs and backfills skip it. Sends the age as
    the metric ``finout.freshness.age_hours.<cluster>``.

    :param metrics: metric names a window must hold to be complete.
    :param time_frame: window length in seconds (TIME_FRAME).
    :param limit_seconds: how old the newest complete window may be (FRESHNESS_HOURS).
    :param settle_seconds: how long after a window closes it is exported.

    The S3 target's arguments are :class:`~finout_provider.operators.base.ClusterS3Operator`'s.
    """

    template_fields: Sequence[str] = s3_target_fields()

    def __init__(
        self,
        *,
        metrics: Sequence[str],
        time_frame: int,
        limit_seconds: int,
        settle_seconds: int = 120,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.metrics = list(metrics)
        self.time_frame = time_frame
        self.limit_seconds = limit_seconds
        self.settle_seconds = settle_seconds

    def execute(self, context: Context) -> dict[str, Any]:
        if run_type(context) not in ("", "scheduled"):
            # Freshness is the schedule's promise; a manual re-export or backfill of old windows says
            # nothing about it (and a trial run before unpausing would fail it).
            reason = (f"cluster {self.cluster_name!r}: skipped: freshness is checked on scheduled runs only "
                      f"(this is a {run_type(context)} run)")  # fmt: skip
            self.log.info("%s", reason)  # Airflow 2 shows a skip's reason nowhere else
            raise AirflowSkipException(reason)
        target = Target(self.cluster_name, self.s3_bucket, normalize_prefix(self.s3_prefix), self.metrics,
                        self.time_frame)  # fmt: skip
        hours = (self.limit_seconds + 2 * self.time_frame) / 3600
        status = cluster_status(self.s3_hook, target, int(time.time()), hours, self.settle_seconds, self.limit_seconds)
        if status.age is not None:
            Stats.gauge(f"finout.freshness.age_hours.{self.cluster_name}", status.age / 3600,
                        tags={"cluster": self.cluster_name})  # fmt: skip
        if status.state == STALE:
            newest = f"its newest complete window is {iso(status.newest)}" if status.newest is not None else (
                f"no window since {iso(status.start)} is complete"
            )  # fmt: skip
            raise AirflowFailException(
                f"cluster {self.cluster_name!r}: {newest}, older than the freshness limit of "
                f"{self.limit_seconds / 3600:g}h (FRESHNESS_HOURS). Look at this DAG's failed export_window "
                "instances and their logs, at Prometheus' reachability (`finout-provider preflight`), and at "
                f"`finout-provider coverage --cluster {self.cluster_name}`"
            )
        self.log.info("cluster %r: %s", self.cluster_name, status.as_dict())
        return status.as_dict()
