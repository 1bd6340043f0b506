"""Freshness: fail when a cluster's newest complete window in S3 is older than FRESHNESS_HOURS."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from finout_provider.catalogue import ExportSpec
from finout_provider.checks.status import STALE, cluster_status
from finout_provider.compat import AirflowFailException, AirflowSkipException, Stats
from finout_provider.operators.base import FinoutBaseOperator, is_scheduled, run_type
from finout_provider.plan.windows import SETTLE_SECONDS, iso

if TYPE_CHECKING:
    from finout_provider.compat import Context


class FinoutFreshnessOperator(FinoutBaseOperator):
    """
    Fail when the cluster's newest complete window in S3 is older than ``limit_seconds``, so
    Airflow's alerting (email, callbacks, ``on_failure_callback``) tells someone. Scheduled runs
    only: manual runs and backfills skip it. Sends the age as the metric
    ``finout.freshness.age_hours.<cluster>``.

    :param target: the cluster's S3 target. (templated)
    :param spec: what the cluster exports and how a window is judged (as ``status`` judges it).
    :param limit_seconds: how old the newest complete window may be (FRESHNESS_HOURS).
    :param settle_seconds: how long after a window closes it is exported.
    """

    def __init__(
        self, *, spec: ExportSpec, limit_seconds: int, settle_seconds: int = SETTLE_SECONDS, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.limit_seconds = limit_seconds
        self.settle_seconds = settle_seconds

    def execute(self, context: Context) -> dict[str, Any]:
        cluster = self.target.cluster
        if not is_scheduled(context):
            # Freshness is the schedule's promise; a manual re-export or backfill of old windows says
            # nothing about it (and a trial run before unpausing would fail it).
            reason = (
                f"cluster {cluster!r}: skipped: freshness is checked on scheduled runs only "
                f"(this is a {run_type(context)} run)"
            )
            self.log.info("%s", reason)  # Airflow 2 shows a skip's reason nowhere else
            raise AirflowSkipException(reason)
        hours = (self.limit_seconds + 2 * self.spec.time_frame) / 3600
        now = int(time.time())
        status = cluster_status(
            self.s3_hook.store, self.target, self.spec, now, hours, self.settle_seconds, self.limit_seconds
        )
        if status.age is not None:
            Stats.gauge(f"finout.freshness.age_hours.{cluster}", status.age / 3600, tags={"cluster": cluster})
        if status.state == STALE:
            newest = (
                f"its newest complete window is {iso(status.newest)}"
                if status.newest is not None
                else (f"no window since {iso(status.start)} is complete")
            )
            raise AirflowFailException(
                f"cluster {cluster!r}: {newest}, older than the freshness limit of "
                f"{self.limit_seconds / 3600:g}h (FRESHNESS_HOURS). Look at this DAG's failed export_window "
                "instances and their logs, at Prometheus' reachability (`finout-provider preflight`), and at "
                f"`finout-provider coverage --cluster {cluster}`"
            )
        self.log.info("cluster %r: %s", cluster, status.as_dict())
        return status.as_dict()
