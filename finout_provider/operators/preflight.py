"""Optional task of a cluster's DAG before its exports: the preflight check (see
:mod:`finout_provider.checks.preflight`)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from finout_provider.catalogue import ExportSpec
from finout_provider.checks.preflight import Preflight, default_instant, judged_instant
from finout_provider.compat import AirflowFailException
from finout_provider.operators.base import FinoutPrometheusOperator, prometheus_fields
from finout_provider.plan.windows import SETTLE_SECONDS, to_epoch

if TYPE_CHECKING:
    from finout_provider.compat import Context


class PrometheusPreflightOperator(FinoutPrometheusOperator):
    """
    Run every metric query of a cluster once as an instant query and explain what is missing.

    Logs the report; fails (without retries) when a query that Finout needs returns nothing
    because of the setup (wrong CLUSTER_LABEL/CLUSTER_NAME, kube-state-metrics or cAdvisor not
    scraped), so a run never writes files that are empty for a reason the report names. Warnings
    (no label allowlist, no recording rule, no ``node`` label) are logged and do not fail.

    :param target: the cluster's S3 target. (templated)
    :param spec: what the cluster exports: its metrics (with what each needs) and EXPECT_EMPTY.
    :param windows: the windows the run exports (the plan task's output): the check looks at the
        last step of the newest, what the run exports, not at now. (templated)
    :param at: the instant to check (ISO-8601 or Unix seconds), instead of ``windows``. (templated)
    :param settle_seconds: how far behind now to look when neither is given.
    :param first_run_only: check only while the cluster has nothing in S3 yet (PREFLIGHT unset).
    """

    template_fields: Sequence[str] = prometheus_fields("windows", "at")
    ui_color = "#f4e3c1"

    def __init__(
        self,
        *,
        spec: ExportSpec,
        windows: Any = None,
        at: str | int | None = None,
        settle_seconds: int = SETTLE_SECONDS,
        first_run_only: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.windows = windows
        self.at = at
        self.settle_seconds = settle_seconds
        self.first_run_only = first_run_only

    def instant(self) -> int | None:
        """The instant to judge: ``at``, else the newest window's last step; ``None`` when the run
        exports nothing."""
        if self.at not in (None, ""):
            return to_epoch(self.at)
        if self.windows is None:
            return default_instant(time.time(), self.settle_seconds, self.spec.step)
        ends = [to_epoch(w["window_end"]) for w in self.windows[:] if isinstance(w, Mapping)]
        return judged_instant(max(ends), self.spec.step) if ends else None

    def execute(self, context: Context) -> dict[str, Any]:
        cluster = self.target.cluster
        at = self.instant()
        if at is None:
            self.log.info("cluster %r: the run exports no window: nothing to check", cluster)
            return {}
        if self.first_run_only and self.cluster_folder.has_any():
            self.log.info(
                "cluster %r has exports in S3 already: preflight runs on a first run only "
                "(PREFLIGHT: true checks every run)",
                cluster,
            )
            return {}
        check = Preflight(self.prometheus.instant, cluster, self.spec, self.cluster_label)
        report = check.run(at)
        self.log.info("%s", report.render())
        if report.failed:
            raise AirflowFailException(
                f"cluster {cluster!r}: preflight found {len(report.failed)} problems that would export empty "
                "files; fix them (see the table above) and clear this task:\n"
                + "\n".join(f"- {f.metric}: {f.reason}" for f in report.failed)
            )
        return {f.metric: f.level for f in report.findings}
