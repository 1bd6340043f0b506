"""Plan a run: the windows of its interval, a first run's history, and gaps found in S3."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from finout_provider.catalogue import ExportSpec
from finout_provider.compat import conf
from finout_provider.operators.base import FinoutPrometheusOperator, prometheus_fields, run_type
from finout_provider.plan.planner import Planner
from finout_provider.plan.windows import SETTLE_SECONDS, WindowError, to_epoch

if TYPE_CHECKING:
    from finout_provider.compat import Context


AUTOMATIC_RUN_TYPES = ("scheduled",)
RANGES_REFUSED = (
    "MODE kubernetes_pod runs the official exporter image, which exports its own window: params 'start' and "
    "'end' cannot be honoured; trigger without them, or use MODE airflow to re-export a range"
)


def requested_range(params: dict[str, Any], allowed: bool = True) -> tuple[int, int] | None:
    """A manual run's params ``start``/``end`` as Unix seconds; ``None`` when neither is given."""
    start, end = params.get("start"), params.get("end")
    if not start and not end:
        return None
    if not allowed:
        raise WindowError(RANGES_REFUSED)
    if not (start and end):
        missing = "end" if start else "start"
        raise WindowError(f"param {missing!r} is empty: give both 'start' and 'end' (UTC, end exclusive), or neither")
    begin, until = to_epoch(start), to_epoch(end)
    if until <= begin:
        raise WindowError(f"param 'end' ({end}) must be after param 'start' ({start})")
    return begin, until


class PlanWindowsOperator(FinoutPrometheusOperator):
    """
    Decide which windows a run exports; returns ``[{"window_start", "window_end"}, ...]`` (with
    ``data_begins`` when the run asked Prometheus where the cluster's data begins).

    A scheduled run exports the windows its data interval closes and every window missing in S3
    within the BACKFILL_DAYS history (or from INITIAL_BACKFILL_DATE, at most 3 days back) and the
    look-back: a cluster's first scheduled run brings the history whatever manual or test runs came
    before it, and gaps heal by themselves. A manual run with params ``start``/``end`` exports
    exactly that range. The task returns once the newest window has settled: deferred to the
    triggerer when ``deferrable``, else asleep in its worker slot.

    :param target: the cluster's S3 target. (templated)
    :param spec: what the cluster exports (metrics, TIME_FRAME, STEP_SECONDS...).
    :param backfill_days: history of a first run, in days (BACKFILL_DAYS).
    :param initial_backfill_date: first-run start (INITIAL_BACKFILL_DATE), at most 3 days back.
    :param lookback_days: days of gap repair beyond the history (BACKFILL_DAYS); default 0.
    :param settle_seconds: how long after a window closes it is exported (late scrapes).
    :param repair: look for first-run history and gaps at all (scheduled runs only).
    :param prometheus_conn_id: when given, ranges older than Prometheus' retention are refused
        (manual runs) or cut (history, gaps) instead of exporting empty files, and history before
        the cluster's data begins (where CLUSTER_LABEL says) is not exported. (templated)
    :param ranges: whether a manual run may give params ``start``/``end`` (MODE kubernetes_pod
        exports the official image's own window, so it refuses them).
    :param deferrable: wait for the newest window to settle in the triggerer, not a worker slot
        (default Airflow's ``[operators] default_deferrable``, as the Amazon provider does).
    """

    template_fields: Sequence[str] = prometheus_fields()

    def __init__(
        self,
        *,
        spec: ExportSpec,
        backfill_days: int = 3,
        initial_backfill_date: date | None = None,
        lookback_days: int = 0,
        settle_seconds: int = SETTLE_SECONDS,
        repair: bool = True,
        prometheus_conn_id: str = "",
        ranges: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(prometheus_conn_id=prometheus_conn_id, **kwargs)
        self.spec = spec
        self.backfill_days = backfill_days
        self.initial_backfill_date = initial_backfill_date
        self.lookback_days = lookback_days
        self.settle_seconds = settle_seconds
        self.repair = repair
        self.ranges = ranges
        self.deferrable = deferrable

    def execute(self, context: Context) -> list[dict[str, int]]:
        now = int(time.time())
        explicit = requested_range(context.get("params") or {}, self.ranges)
        interval: tuple[int, int] | None = None
        if explicit is None and None not in (context.get("data_interval_start"), context.get("data_interval_end")):
            interval = (to_epoch(context["data_interval_start"]), to_epoch(context["data_interval_end"]))
        limit = conf.getint("core", "max_map_length", fallback=1024)
        plan = self.planner.plan(now, limit=limit, interval=interval, explicit=explicit, repair=self._repairs(context))
        where = f"cluster {self.target.cluster!r}"
        if plan.deferred:
            self.log.warning(
                "%s: %d older windows exceed the map limit and are left to the next runs", where, plan.deferred
            )
        labels = [w.label for w in plan.windows]
        self.log.info("%s: %d windows to export: %s", where, len(labels), ", ".join(labels[:5] + labels[-5:][5:]))
        windows = plan.tasks()
        wait = plan.wait_until - int(time.time())
        if windows and wait > 0:
            self.log.info("%s: waiting %ds for the newest window to settle", where, wait)
            if self.deferrable:
                from finout_provider.compat import TimeDeltaTrigger

                self.defer(
                    trigger=TimeDeltaTrigger(timedelta(seconds=wait)),
                    method_name="execute_complete",
                    kwargs={"windows": windows},
                )
            time.sleep(wait)
        return windows

    def _repairs(self, context: Context) -> bool:
        """Whether this run brings history and heals gaps: scheduled runs, one at a time.

        Manual runs start at once, beside scheduled ones (the DAG allows several active runs), and
        never stop a scheduled run's repair. A scheduled run that starts while an earlier scheduled
        run is still running (a first run's history takes hours) exports its own interval only: the
        windows it would repair are the earlier run's to export, and the next run heals whatever is
        still missing.
        """
        if not self.repair or run_type(context) not in AUTOMATIC_RUN_TYPES:
            return False
        from finout_provider.compat import earlier_scheduled_run_running

        earlier = earlier_scheduled_run_running(context)
        if earlier is not None:
            self.log.info(
                "cluster %r: scheduled run %s is still running; this run exports its own interval only "
                "and leaves history and gap repair to it and the next run",
                self.target.cluster,
                earlier,
            )
        return earlier is None

    def execute_complete(
        self, context: Context, event: Any = None, windows: list[dict[str, int]] | None = None
    ) -> list[dict[str, int]]:
        """The planned windows, once the newest has settled (after deferral)."""
        return windows or []

    @property
    def planner(self) -> Planner:
        return Planner(
            self.s3_hook.store,
            self.target.checked(),
            self.spec,
            backfill_days=self.backfill_days,
            initial_backfill_date=self.initial_backfill_date,
            lookback_days=self.lookback_days,
            settle_seconds=self.settle_seconds,
            prometheus=self.prometheus if self.prometheus_conn_id else None,
            log=self.log,
            cluster_label=self.cluster_label,
        )
