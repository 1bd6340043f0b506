"""Validation sensor: every expected object of a run's windows exists and is a non-empty gzip."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from finout_provider.compat import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    Stats,
    conf,
)
from finout_provider.completeness import Thresholds
from finout_provider.exports import Target, describe_incomplete
from finout_provider.operators.base import ClusterS3Sensor, s3_target_fields
from finout_provider.planning import FlaggedWindows
from finout_provider.triggers.export import FinoutExportTrigger
from finout_provider.windows import Window, iso, to_epoch

if TYPE_CHECKING:
    from finout_provider.compat import Context


SHOWN = 20


def window_starts(windows: Sequence[Any] | None) -> list[int]:
    """Starts of ``windows`` given as plan dicts, numbers or times."""
    return sorted({to_epoch(w["window_start"] if isinstance(w, Mapping) else w) for w in windows or []})


def describe(problems: Sequence[str]) -> str:
    more = f"\n... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
    return "\n".join(problems[:SHOWN]) + more


class FinoutExportSensor(ClusterS3Sensor):
    """
    Wait until every metric object of the given windows is in S3 as a non-empty gzip.

    :param windows: the run's windows: plan dicts, start times or an XComArg. (templated)
    :param metrics: metric names expected for every window.
    :param time_frame: window length in seconds (TIME_FRAME).
    :param exports: the export tasks' return values (an XComArg); a window whose every metric came
        back empty (``all_empty``) fails validation with preflight's diagnosis. (templated)
    :param deferrable: wait in the triggerer instead of a worker slot (default Airflow's
        ``[operators] default_deferrable``, as the Amazon provider's sensors do).
    :param step_seconds: the export's query resolution (STEP_SECONDS).
    :param expect_empty: metrics that may come back empty (EXPECT_EMPTY).
    :param thresholds: COMPLETENESS_MIN_SAMPLES and COMPLETENESS_MIN_SERIES.
    :param on_incomplete: ``warn`` or ``fail`` when a window was exported whole from a Prometheus
        that lacked data (INCOMPLETE); either way the window is flagged for gap repair and counted in
        the ``finout.incomplete_windows.<cluster>`` gauge.

    The S3 target's arguments are :class:`~finout_provider.operators.base.ClusterS3Operator`'s.
    """

    template_fields: Sequence[str] = s3_target_fields("windows", "exports")

    def __init__(
        self,
        *,
        windows: Any,
        metrics: Sequence[str],
        time_frame: int = 3600,
        exports: Any = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        step_seconds: int = 60,
        expect_empty: Sequence[str] = (),
        thresholds: Thresholds | None = None,
        on_incomplete: str = "warn",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 30)
        kwargs.setdefault("timeout", 600)
        super().__init__(**kwargs)
        self.windows = windows
        self.metrics = list(metrics)
        self.time_frame = time_frame
        self.exports = exports
        self.deferrable = deferrable
        self.step_seconds = step_seconds
        self.expect_empty = list(expect_empty)
        self.thresholds = thresholds or Thresholds()
        self.on_incomplete = on_incomplete

    def problems(self) -> list[str]:
        return self.cluster_folder.problems(self.metrics, window_starts(self.windows), self.time_frame)

    def poke(self, context: Context) -> bool:
        problems = self.problems()
        if problems:
            self.log.info(
                "cluster %r: %d objects not there yet:\n%s", self.cluster_name, len(problems), describe(problems)
            )
        return not problems

    def _timeout_message(self, problems: Sequence[str]) -> str:
        return (
            f"cluster {self.cluster_name!r}: {len(problems)} expected objects are missing or corrupt after "
            f"{self.timeout}s; clear the failed export_window instances to export them again:\n{describe(problems)}"
        )

    def check_not_empty(self) -> None:
        """Fail when the run's newest window came back empty for every metric Finout needs: Finout
        would allocate nothing. Older empty windows (before the cluster's data begins) are logged."""
        # One slice read: iterating Airflow 3's lazy XCom sequence reads past its end and logs an error.
        exports = [e for e in (self.exports[:] if self.exports else []) if isinstance(e, Mapping)]
        empty = [e for e in exports if e.get("all_empty")]
        if not empty:
            return
        newest = max(e["window_start"] for e in exports)
        if all(e["window_start"] != newest for e in empty):
            # Older windows of the history or gap repair, before the cluster's data begins: Finout
            # gets empty files for a time nothing was measured. The run's newest window has data.
            self.log.warning(
                "cluster %r: %d older windows came back empty for every metric (before its data begins?): %s",
                self.cluster_name, len(empty), ", ".join(Window(e["window_start"], e["window_end"]).label
                                                         for e in empty[:10]),
            )  # fmt: skip
            return
        labels = ", ".join(Window(e["window_start"], e["window_end"]).label for e in empty[:5])
        diagnosis = "\n".join(f"- {line}" for line in empty[0].get("diagnosis") or [])
        raise AirflowFailException(
            f"cluster {self.cluster_name!r}: {len(empty)} windows ({labels}) came back empty for every metric "
            "Finout needs, so the files hold nothing to allocate. Why, by preflight:\n"
            f"{diagnosis}\nFix the cause and clear the export_window instances; if empty is expected, list "
            "those metrics under EXPECT_EMPTY in the clusters file."
        )

    def check_complete(self) -> None:
        """Judge the run's windows against the three windows before them: flag (and warn or fail
        on) those exported whole from a Prometheus that lacked data."""
        starts = sorted(window_starts(self.windows))
        if not starts:
            return
        earlier = [starts[0] - k * self.time_frame for k in (3, 2, 1)]
        target = Target(self.cluster_name, self.s3_bucket, self.s3_prefix, self.metrics, self.time_frame,
                        self.step_seconds, frozenset(self.expect_empty), self.thresholds)  # fmt: skip
        _, measures = self.cluster_folder.survey(self.metrics, earlier + starts, self.time_frame)
        found = {s: r for s, r in target.incomplete(measures, earlier + starts).items() if s in starts}
        FlaggedWindows(self.cluster_name).update(starts, {s: sorted(r) for s, r in found.items()}, self.log)
        Stats.gauge(f"finout.incomplete_windows.{self.cluster_name}", len(found), tags={"cluster": self.cluster_name})
        if not found:
            self.log.info("cluster %r: every window is complete by its measures", self.cluster_name)
            return
        lines = "\n".join(f"- {iso(s)}: {describe_incomplete(r)}" for s, r in sorted(found.items()))
        message = (
            f"cluster {self.cluster_name!r}: {len(found)} windows were exported whole from a Prometheus that "
            f"lacked data (flagged: gap repair exports them again until the data is there):\n{lines}"
        )
        if self.on_incomplete == "fail":
            raise AirflowFailException(message)
        self.log.warning("%s", message)

    def execute(self, context: Context) -> Any:
        self.check_not_empty()
        starts = window_starts(self.windows)
        self.log.info(
            "cluster %r: validating %d windows x %d metrics", self.cluster_name, len(starts), len(self.metrics)
        )
        if self.deferrable:
            if self.poke(context):
                return self.check_complete()
            self.defer(
                trigger=FinoutExportTrigger(
                    cluster_name=self.cluster_name,
                    s3_bucket=self.s3_bucket,
                    s3_prefix=self.s3_prefix,
                    starts=starts,
                    metrics=self.metrics,
                    time_frame=self.time_frame,
                    aws_conn_id=self.aws_conn_id,
                    role_arn=self.role_arn,
                    role_external_id=self.role_external_id,
                    poke_interval=float(self.poke_interval),
                    timeout=float(self.timeout),
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=float(self.timeout) + 60),
            )
        try:
            super().execute(context)
        except AirflowSensorTimeout:
            raise AirflowSensorTimeout(self._timeout_message(self.problems())) from None
        return self.check_complete()

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        if event.get("status") == "success":
            self.check_complete()
            return
        if event.get("status") == "timeout":
            raise AirflowSensorTimeout(self._timeout_message(event.get("problems") or []))
        raise AirflowException(f"cluster {self.cluster_name!r}: validation failed: {event.get('message')}")
