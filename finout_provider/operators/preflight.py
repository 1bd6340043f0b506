"""Optional first task of a cluster's DAG: the preflight check (see :mod:`finout_provider.preflight`)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from finout_provider.catalogue import Metric
from finout_provider.compat import AirflowFailException
from finout_provider.failures import failing_fast
from finout_provider.operators.base import ClusterS3Operator, s3_target_fields
from finout_provider.preflight import Preflight, default_instant
from finout_provider.windows import to_epoch

if TYPE_CHECKING:
    from finout_provider.compat import Context
    from finout_provider.hooks.prometheus import PrometheusHook


class PrometheusPreflightOperator(ClusterS3Operator):
    """
    Run every metric query of a cluster once as an instant query and explain what is missing.

    Logs the report; fails (without retries) when a query that Finout needs returns nothing
    because of the setup (wrong CLUSTER_LABEL/CLUSTER_NAME, kube-state-metrics or cAdvisor not
    scraped), so a run never writes files that are empty for a reason the report names. Warnings
    (no label allowlist, no recording rule, no ``node`` label) are logged and do not fail.

    :param metrics: ``{name, query}`` pairs or catalogue entries.
    :param prometheus_conn_id: connection of type ``prometheus``. (templated)
    :param cluster_label: CLUSTER_LABEL, if one Prometheus holds several clusters. (templated)
    :param at: the instant to check (ISO-8601 or Unix seconds); default the end of the run's data
        interval (or now, less ``settle_seconds``), on a ``step_seconds`` boundary. (templated)
    :param step_seconds: STEP_SECONDS, to align the instant like the export's steps.
    :param settle_seconds: how far behind now to look when the run has no data interval.
    :param first_run_only: check only while the cluster has nothing in S3 yet (PREFLIGHT unset);
        needs ``s3_bucket`` and ``s3_prefix``, which are optional here.

    The S3 target's arguments are :class:`~finout_provider.operators.base.ClusterS3Operator`'s.
    """

    template_fields: Sequence[str] = s3_target_fields("prometheus_conn_id", "cluster_label", "at")
    ui_color = "#f4e3c1"

    def __init__(
        self,
        *,
        metrics: Sequence[Metric | Mapping[str, str]],
        prometheus_conn_id: str,
        cluster_label: str | None = None,
        at: str | int | None = None,
        step_seconds: int = 60,
        settle_seconds: int = 120,
        first_run_only: bool = False,
        s3_bucket: str = "",
        s3_prefix: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(s3_bucket=s3_bucket, s3_prefix=s3_prefix, **kwargs)
        self.metrics = [m if isinstance(m, Metric) else Metric(m["name"], m["query"]) for m in metrics]
        self.prometheus_conn_id = prometheus_conn_id
        self.cluster_label = cluster_label
        self.at = at
        self.step_seconds = step_seconds
        self.settle_seconds = settle_seconds
        self.first_run_only = first_run_only

    def _exported_before(self) -> bool:
        return self.cluster_folder.has_any()

    @cached_property
    def prometheus_hook(self) -> PrometheusHook:
        from finout_provider.hooks.prometheus import PrometheusHook

        return PrometheusHook(self.prometheus_conn_id)

    def instant(self, context: Context) -> int:
        if self.at not in (None, ""):
            return to_epoch(self.at)
        end = context.get("data_interval_end")
        if end is not None and to_epoch(end) <= time.time() - self.settle_seconds:
            at = to_epoch(end) - self.step_seconds
            return at - at % self.step_seconds
        return default_instant(time.time(), self.settle_seconds, self.step_seconds)

    def execute(self, context: Context) -> dict[str, Any]:
        if self.first_run_only and self.s3_bucket and self.s3_prefix and self._exported_before():
            self.log.info("cluster %r has exports in S3 already: preflight runs on a first run only "
                          "(PREFLIGHT: true checks every run)", self.cluster_name)  # fmt: skip
            return {}
        check = Preflight(self.prometheus_hook.instant, self.cluster_name, self.metrics, self.cluster_label)
        with failing_fast(f"cluster {self.cluster_name!r}: preflight"):
            report = check.run(self.instant(context))
        self.log.info("%s", report.render())
        if report.failed:
            raise AirflowFailException(
                f"cluster {self.cluster_name!r}: preflight found {len(report.failed)} problems that would "
                "export empty files; fix them (see the table above) and clear this task:\n"
                + "\n".join(f"- {f.metric}: {f.reason}" for f in report.failed)
            )
        return {f.metric: f.level for f in report.findings}
