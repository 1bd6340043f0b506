"""The plan task waits for the newest window to settle in the triggerer when deferrable, not in a
worker slot, and hands the same windows on when it resumes."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from finout_provider.operators.plan import PlanWindowsOperator

H = 3600
SETTLE = 2 * H  # longer than the hour that just closed has been closed


def operator(**kwargs: object) -> PlanWindowsOperator:
    return PlanWindowsOperator(
        task_id="plan_windows", cluster_name="prod-eu", s3_bucket="finout-metrics", s3_prefix="k8s/prometheus",
        metrics=["cpu_requests"], settle_seconds=SETTLE, **kwargs,  # type: ignore[arg-type]
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
