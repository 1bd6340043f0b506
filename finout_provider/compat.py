"""Every difference between the Airflow and provider versions we support, in one place.

The provider imports Airflow's names from here, never from a versioned path. Each name is imported
explicitly, by the version that has it where it is, as the Amazon provider's ``version_compat.py``
does: a wrong path fails when this module is imported, and go-to-definition lands on the import.
The floors (``pyproject.toml``) are what the oldest tested line ships: Airflow 2.11.0 with
common-compat 1.7.0, which has no ``airflow.providers.common.compat.sdk``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow import __version__ as _airflow_version
from packaging.version import Version

AIRFLOW_VERSION = Version(Version(_airflow_version).base_version)
AIRFLOW_V_3_0_PLUS = Version("3.0.0") <= AIRFLOW_VERSION
AIRFLOW_V_3_1_PLUS = Version("3.1.0") <= AIRFLOW_VERSION

if AIRFLOW_V_3_0_PLUS:
    from airflow.sdk import (
        DAG,
        Asset,
        BaseOperator,
        BaseOperatorLink,
        BaseSensorOperator,
        Context,
        Param,
        Variable,
        get_parsing_context,
    )
    from airflow.sdk.execution_time.xcom import XCom
    from airflow.sdk.log import mask_secret
else:
    from airflow.datasets import Dataset as Asset  # type: ignore[no-redef]
    from airflow.models.baseoperator import BaseOperator  # type: ignore[no-redef]
    from airflow.models.baseoperatorlink import BaseOperatorLink  # type: ignore[no-redef]
    from airflow.models.dag import DAG  # type: ignore[no-redef]
    from airflow.models.param import Param  # type: ignore[no-redef]
    from airflow.models.variable import Variable  # type: ignore[no-redef]
    from airflow.models.xcom import XCom  # type: ignore[no-redef]
    from airflow.sensors.base import BaseSensorOperator  # type: ignore[no-redef]
    from airflow.utils.context import Context  # type: ignore[no-redef,attr-defined]
    from airflow.utils.dag_parsing_context import get_parsing_context  # type: ignore[no-redef]
    from airflow.utils.log.secrets_masker import mask_secret  # type: ignore[no-redef]

if AIRFLOW_V_3_1_PLUS:
    from airflow.sdk import BaseHook
else:
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef,attr-defined]

try:  # Airflow 3.2+: the task SDK's own exceptions
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )
except ImportError:  # Airflow 2.11 to 3.1
    from airflow.exceptions import (  # type: ignore[no-redef]
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )

try:  # Airflow 3.2+
    from airflow.sdk.configuration import conf
    from airflow.sdk.observability.stats import Stats
except ImportError:  # Airflow 2.11 to 3.1
    from airflow.configuration import conf  # type: ignore[no-redef]
    from airflow.stats import Stats  # type: ignore[no-redef]

try:  # the standard provider: Airflow 3, and Airflow 2.11 images that install it
    from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
except ImportError:  # Airflow 2.11 without it
    from airflow.triggers.temporal import TimeDeltaTrigger  # type: ignore[no-redef]

__all__ = [
    "AIRFLOW_VERSION",
    "DAG",
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "Asset",
    "BaseHook",
    "BaseOperator",
    "BaseOperatorLink",
    "BaseSensorOperator",
    "Context",
    "Param",
    "Stats",
    "TaskDeferred",
    "TimeDeltaTrigger",
    "Variable",
    "XCom",
    "conf",
    "earlier_scheduled_run_running",
    "get_parsing_context",
    "mask_secret",
]

# How many earlier scheduled runs a run asks about (Airflow 3): a scheduled run still running after
# this many later ticks is not seen, and the later run repairs too (the same keys, the same bytes).
EARLIER_RUNS = 100


def earlier_scheduled_run_running(context: Any) -> str | None:
    """Which earlier scheduled run of this task's DAG is still running, if any (manual runs and
    backfills are not looked at).

    Airflow 2 reads its own database, as its tasks may. Airflow 3 counts, through the execution
    API, the running runs among the DAG's :data:`EARLIER_RUNS` schedule ticks before this run's
    logical date (a scheduled run's logical date is the start of its data interval).
    """
    ti, run = context.get("ti"), context.get("dag_run")
    if ti is None or run is None or getattr(run, "logical_date", None) is None:
        return None  # not a task instance's run (an operator executed by hand)
    if not AIRFLOW_V_3_0_PLUS:
        return _earlier_scheduled_run_airflow2(run)
    expression = getattr(getattr(context.get("dag"), "timetable", None), "summary", "")
    ticks = _ticks_before(str(expression), run.logical_date, EARLIER_RUNS)
    if not ticks:
        return None
    running = ti.get_dr_count(dag_id=run.dag_id, logical_dates=ticks, states=["running"])
    return f"({running} of the {len(ticks)} before {run.logical_date.isoformat()})" if running else None


def _earlier_scheduled_run_airflow2(run: Any) -> str | None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType
    from sqlalchemy import select

    query = (
        select(DagRun.run_id)
        .where(DagRun.dag_id == run.dag_id, DagRun.run_type == DagRunType.SCHEDULED)
        .where(DagRun.state == DagRunState.RUNNING, DagRun.execution_date < run.execution_date)
        .order_by(DagRun.execution_date.desc())
        .limit(1)
    )
    with create_session() as session:
        found = session.scalar(query)
    return None if found is None else str(found)


def _ticks_before(expression: str, moment: Any, count: int) -> list[Any]:
    """The ``count`` times before ``moment`` of the cron ``expression`` (UTC), newest first; none
    when it is not a cron expression."""
    from croniter import croniter

    try:
        ticks = croniter(expression, moment.astimezone(UTC))
        return [ticks.get_prev(datetime) for _ in range(count)]
    except (ValueError, KeyError, TypeError):
        return []
