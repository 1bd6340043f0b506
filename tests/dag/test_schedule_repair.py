"""Whose history and gap repair a scheduled run leaves alone: only an earlier *scheduled* run's that
is still running. Manual runs and backfills never stop it (through the real scheduler:
``tests/e2e/test_manual_beside_schedule.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from devtools.stack import airflow_major
from finout_provider.compat import EARLIER_RUNS, earlier_scheduled_run_running

pytestmark = [pytest.mark.dag, pytest.mark.af2]
AT = datetime(2026, 12, 3, 10, tzinfo=UTC)


@pytest.mark.skipif(airflow_major() < 3, reason="Airflow 2 reads its database (the test below)")
def test_airflow3_counts_the_running_runs_among_the_schedules_earlier_ticks() -> None:
    asked: list[dict[str, Any]] = []

    def get_dr_count(**criteria: Any) -> int:
        asked.append(criteria)
        return len(asked) - 1

    ti = SimpleNamespace(get_dr_count=get_dr_count)
    run = SimpleNamespace(dag_id="finout_prometheus_a", logical_date=AT)
    context = {"ti": ti, "dag_run": run, "dag": SimpleNamespace(timetable=SimpleNamespace(summary="0 */2 * * *"))}
    assert earlier_scheduled_run_running(context) is None  # none running
    assert earlier_scheduled_run_running(context) is not None  # one running
    ticks = asked[0]["logical_dates"]
    assert ticks[:3] == [AT - timedelta(hours=2), AT - timedelta(hours=4), AT - timedelta(hours=6)]
    assert len(ticks) == EARLIER_RUNS and asked[0]["states"] == ["running"] and asked[0]["dag_id"] == run.dag_id
    context["dag"] = SimpleNamespace(timetable=SimpleNamespace(summary="Asset"))  # not a cron schedule
    assert earlier_scheduled_run_running(context) is None and len(asked) == 2


@pytest.mark.skipif(airflow_major() >= 3, reason="Airflow 3 asks its execution API (the test above)")
def test_airflow2_finds_only_a_running_scheduled_run_before_this_one(airflow_db: None) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    dag_id = "finout_prometheus_repair"

    def run(kind: DagRunType, hours_before: int, state: DagRunState) -> DagRun:
        moment = AT - timedelta(hours=hours_before)
        return DagRun(dag_id=dag_id, run_id=f"{kind.value}__{moment.isoformat()}", run_type=kind,
                      execution_date=moment, state=state)  # fmt: skip

    with create_session() as session:
        session.query(DagRun).filter(DagRun.dag_id == dag_id).delete()
        this = run(DagRunType.SCHEDULED, 0, DagRunState.RUNNING)
        session.add_all([this, run(DagRunType.MANUAL, 3, DagRunState.RUNNING),
                         run(DagRunType.BACKFILL_JOB, 5, DagRunState.RUNNING),
                         run(DagRunType.SCHEDULED, 1, DagRunState.SUCCESS)])  # fmt: skip
        session.commit()
        context = {"ti": object(), "dag_run": this}
        assert earlier_scheduled_run_running(context) is None
        earlier = run(DagRunType.SCHEDULED, 6, DagRunState.RUNNING)
        session.add(earlier)
        session.commit()
        assert earlier_scheduled_run_running(context) == earlier.run_id
