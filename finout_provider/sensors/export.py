"""Validation sensor: every expected object of a run's windows exists and is a whole answer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from finout_provider.catalogue import ExportSpec
from finout_provider.checks.status import by_window, describe_incomplete, incomplete_windows
from finout_provider.compat import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    Stats,
    conf,
)
from finout_provider.failures import PermanentFailure
from finout_provider.operators.base import FinoutBaseSensor, is_scheduled, target_fields
from finout_provider.plan.windows import Window, iso, to_epoch
from finout_provider.state import FlaggedWindows
from finout_provider.triggers.export import FinoutExportTrigger

if TYPE_CHECKING:
    from finout_provider.compat import Context


SHOWN = 20


def window_starts(windows: Sequence[Any] | None) -> list[int]:
    """Starts of ``windows`` given as plan dicts, numbers or times."""
    return sorted({to_epoch(w["window_start"] if isinstance(w, Mapping) else w) for w in windows or []})


def describe(problems: Sequence[str]) -> str:
    more = f"\n... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
    return "\n".join(problems[:SHOWN]) + more


class FinoutExportSensor(FinoutBaseSensor):
    """
    Wait until every metric object of the given windows is in S3 as a whole answer; then judge the
    windows' completeness (did Prometheus have the data?).

    :param target: the cluster's S3 target. (templated)
    :param spec: what the cluster exports and how a window is judged (metrics, TIME_FRAME,
        STEP_SECONDS, EXPECT_EMPTY, the completeness thresholds).
    :param windows: the run's windows: plan dicts, start times or an XComArg. (templated)
    :param exports: the export tasks' return values (an XComArg); a window whose every metric came
        back empty (``all_empty``) fails validation with preflight's diagnosis. (templated)
    :param on_incomplete: ``warn`` or ``fail`` (INCOMPLETE) when a scheduled run's window was
        exported whole from a Prometheus that lacked data; other runs warn. Either way the window
        is flagged for gap repair and counted in the ``finout.incomplete_windows.<cluster>`` gauge.
    :param deferrable: wait in the triggerer instead of a worker slot (default Airflow's
        ``[operators] default_deferrable``, as the Amazon provider's sensors do).
    """

    template_fields: Sequence[str] = target_fields("windows", "exports")

    def __init__(
        self,
        *,
        spec: ExportSpec,
        windows: Any,
        exports: Any = None,
        on_incomplete: str = "warn",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 30)
        kwargs.setdefault("timeout", 600)
        super().__init__(**kwargs)
        self.spec = spec
        self.windows = windows
        self.exports = exports
        self.on_incomplete = on_incomplete
        self.deferrable = deferrable

    def problems(self) -> list[str]:
        return self.cluster_folder.problems(self.spec.names, window_starts(self.windows), self.spec.time_frame)

    def poke(self, context: Context) -> bool:
        problems = self.problems()
        if problems:
            self.log.info(
                "cluster %r: %d objects not there yet:\n%s", self.target.cluster, len(problems), describe(problems)
            )
        return not problems

    def _timeout_message(self, problems: Sequence[str]) -> str:
        return (
            f"cluster {self.target.cluster!r}: {len(problems)} expected objects are missing or corrupt after "
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
        cluster = self.target.cluster
        labels = [Window(e["window_start"], e["window_end"]).label for e in empty]
        newest = max(e["window_start"] for e in exports)
        if all(e["window_start"] != newest for e in empty):
            # Older windows of the history or gap repair, before the cluster's data begins: Finout
            # gets empty files for a time nothing was measured. The run's newest window has data.
            self.log.warning(
                "cluster %r: %d older windows came back empty for every metric (before its data begins?): %s",
                cluster,
                len(empty),
                ", ".join(labels[:10]),
            )
            return
        diagnosis = "\n".join(f"- {line}" for line in empty[0].get("diagnosis") or [])
        raise AirflowFailException(
            f"cluster {cluster!r}: {len(empty)} windows ({', '.join(labels[:5])}) came back empty for every metric "
            "Finout needs, so the files hold nothing to allocate. Why, by preflight:\n"
            f"{diagnosis}\nFix the cause and clear the export_window instances; if empty is expected, list "
            "those metrics under EXPECT_EMPTY in the clusters file."
        )

    def check_complete(self, context: Context) -> None:
        """Judge the run's windows against the three windows before them: flag (and warn or fail
        on) those exported whole from a Prometheus that lacked data."""
        starts = window_starts(self.windows)
        if not starts:
            return
        cluster, frame = self.target.cluster, self.spec.time_frame
        earlier = [starts[0] - k * frame for k in (3, 2, 1)]
        survey = self.cluster_folder.survey(self.spec.names, earlier + starts, frame)
        judged = incomplete_windows(self.spec, by_window(self.target.checked(), survey.measures, earlier + starts))
        found = {s: r for s, r in judged.items() if s in starts}
        FlaggedWindows(cluster).update(starts, {s: sorted(r) for s, r in found.items()}, self.log)
        Stats.gauge(f"finout.incomplete_windows.{cluster}", len(found), tags={"cluster": cluster})
        if not found:
            self.log.info("cluster %r: every window is complete by its measures", cluster)
            return
        lines = "\n".join(f"- {iso(s)}: {describe_incomplete(r)}" for s, r in sorted(found.items()))
        message = (
            f"cluster {cluster!r}: {len(found)} windows were exported whole from a Prometheus that "
            f"lacked data (flagged: gap repair exports them again until the data is there):\n{lines}"
        )
        if self.on_incomplete == "fail" and is_scheduled(context):
            raise AirflowFailException(message)
        self.log.warning("%s", message)

    def execute(self, context: Context) -> Any:
        self.check_not_empty()
        starts = window_starts(self.windows)
        self.log.info(
            "cluster %r: validating %d windows x %d metrics", self.target.cluster, len(starts), len(self.spec.metrics)
        )
        if self.deferrable:
            if self.poke(context):
                return self.check_complete(context)
            self.defer(
                trigger=self.trigger(),
                method_name="execute_complete",
                timeout=timedelta(seconds=float(self.timeout) + 60),
            )
        try:
            super().execute(context)
        except AirflowSensorTimeout:
            raise AirflowSensorTimeout(self._timeout_message(self.problems())) from None
        return self.check_complete(context)

    def trigger(self) -> FinoutExportTrigger:
        """What waits in the triggerer while the sensor is deferred."""
        return FinoutExportTrigger(
            target=self.target,
            starts=window_starts(self.windows),
            metrics=self.spec.names,
            time_frame=self.spec.time_frame,
            poke_interval=float(self.poke_interval),
            timeout=float(self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        if event.get("status") == "success":
            self.check_complete(context)
            return
        if event.get("status") == "timeout":
            raise AirflowSensorTimeout(self._timeout_message(event.get("problems") or []))
        failure = PermanentFailure if event.get("permanent") else AirflowException
        raise failure(f"cluster {self.target.cluster!r}: validation failed in the triggerer: {event.get('message')}")
