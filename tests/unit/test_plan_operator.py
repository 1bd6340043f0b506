"""The plan task waits for the newest window to settle in the triggerer when deferrable, not in a
worker slot, and hands the same windows on when it resumes."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import SimpleNamespace

import jsonschema
import pytest

from finout_provider.catalogue import ExportSpec, select
from finout_provider.operators.plan import PlanWindowsOperator
from finout_provider.target import S3Target

H = 3600
SETTLE = 2 * H  # longer than the hour that just closed has been closed


def operator(**kwargs: object) -> PlanWindowsOperator:
    return PlanWindowsOperator(
        task_id="plan_windows", target=S3Target("prod-eu", "finout-metrics", "k8s/prometheus"),
        spec=ExportSpec(select(["cpu_requests"])), settle_seconds=SETTLE, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def interval_context() -> dict[str, object]:
    """A run (not scheduled: no S3 repair) whose data interval is the hour that just closed."""
    now = int(time.time())
    end = now - now % H
    moment = lambda ts: datetime.fromtimestamp(ts, UTC)  # noqa: E731
    return {"params": {}, "data_interval_start": moment(end - H), "data_interval_end": moment(end)}


def test_deferrable_plan_defers_until_the_newest_window_settles_then_returns_its_windows() -> None:
    from finout_provider.compat import TaskDeferred

    context = interval_context()
    end = int(context["data_interval_end"].timestamp())  # type: ignore[attr-defined]
    with pytest.raises(TaskDeferred) as deferred:
        operator(deferrable=True).execute(context)  # type: ignore[arg-type]
    expected = [{"window_start": end - H, "window_end": end}]
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.kwargs == {"windows": expected}
    classpath, trigger_args = deferred.value.trigger.serialize()
    assert classpath.endswith("temporal.TimeDeltaTrigger") or classpath.endswith("temporal.DateTimeTrigger")
    wait = (trigger_args["moment"] - datetime.now(UTC)).total_seconds()
    assert end + SETTLE - time.time() - 5 <= wait <= end + SETTLE - time.time() + 5
    again = operator(deferrable=True).execute_complete(context, {}, **deferred.value.kwargs)  # type: ignore[arg-type]
    assert again == expected


def test_not_deferrable_plan_sleeps_in_its_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    context = interval_context()
    end = int(context["data_interval_end"].timestamp())  # type: ignore[attr-defined]
    assert operator(deferrable=False).execute(context) == [{"window_start": end - H, "window_end": end}]  # type: ignore[arg-type]
    assert len(slept) == 1 and 0 < slept[0] <= end + SETTLE - time.time() + 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "2026-12-01T00:00:00Z", "end": None}, "param 'end' is empty: give both"),
        ({"start": "", "end": "2026-12-01T06:00:00Z"}, "param 'start' is empty: give both"),
        (
            {"start": "2026-12-01T06:00:00Z", "end": "2026-12-01T00:00:00Z"},
            "param 'end' (2026-12-01T00:00:00Z) must be after",
        ),
        ({"start": "yesterday 01:00", "end": "2026-12-01T06:00:00Z"}, "'yesterday 01:00'"),
    ],
)
def test_a_range_the_schema_cannot_judge_fails_the_plan_at_once_naming_the_params(
    params: dict[str, object], message: str
) -> None:
    from finout_provider.compat import AirflowFailException

    with pytest.raises(AirflowFailException, match="cluster 'prod-eu': plan_windows: ") as failed:
        operator(deferrable=False).execute({"params": params})  # type: ignore[arg-type]
    assert message in str(failed.value)


def test_the_range_params_refuse_what_is_not_a_date_time_before_a_run_exists() -> None:
    """Airflow validates a trigger's conf against the params' schema (form, REST and CLI alike);
    the pattern refuses what is not a date-time whether or not jsonschema can check ``format``."""
    from finout_provider.compat import Param
    from finout_provider.dag_factory import RANGE_PARAMS

    for schema in RANGE_PARAMS.values():
        for good in ("2026-12-01T00:00:00Z", "2026-12-01T00:00:00.000Z", "2026-12-01T02:00:00+02:00"):
            assert Param(good, **schema).resolve() == good
        assert Param(None, **schema).resolve() is None
        for bad in ("yesterday 01:00", "12/01/2026", "2026-13-01T00:00:00Z"):
            with pytest.raises(Exception, match=r"does not match|date-time|Invalid input"):
                Param(bad, **schema).resolve()
            with pytest.raises(jsonschema.ValidationError, match="does not match"):  # no format checker at all
                jsonschema.validate(bad, schema)
        assert "UTC" in schema["description"] and "both" in schema["description"]


@pytest.mark.parametrize(("earlier", "repairs"), [(None, True), ("scheduled__2026-12-03T09:00:00+00:00", False)])
def test_a_scheduled_run_repairs_only_when_no_earlier_scheduled_run_is_still_running(
    earlier: str | None, repairs: bool, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Manual runs start beside scheduled ones; a scheduled run starting while an earlier one runs
    (a first run's history) exports its own interval only, so two runs never plan the same gaps.
    (Airflow's own answer to "is an earlier run running" is exercised by the scheduler tests.)"""
    from finout_provider import compat

    monkeypatch.setattr(compat, "earlier_scheduled_run_running", lambda context: earlier)
    assert operator()._repairs({"dag_run": SimpleNamespace(run_type="scheduled")}) is repairs  # type: ignore[arg-type]
    assert operator()._repairs({"dag_run": SimpleNamespace(run_type="manual")}) is False  # type: ignore[arg-type]
    if earlier:
        assert f"scheduled run {earlier} is still running" in "".join(capfd.readouterr())
