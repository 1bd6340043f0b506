"""Every difference between the Airflow and provider versions we support, in one place.

The provider imports Airflow's task-authoring names from here, never from a versioned path. The
floors (``pyproject.toml``) are what the oldest tested line ships: Airflow 2.11.0 with
common-compat 1.7.0, which has no ``airflow.providers.common.compat.sdk`` (1.11 has it, without
``conf``). So each name is looked up as ``common.compat.sdk`` looks it up (newest path first, the
Airflow 2 path last), with the same paths, whatever common-compat is installed. The Amazon
provider's ``version_compat.py`` is the model.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from packaging.version import Version

if TYPE_CHECKING:  # what the names are, for type checkers (the newest common-compat has them all)
    from airflow.providers.common.compat.sdk import (  # noqa: F401
        DAG,
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
        Asset,
        BaseHook,
        BaseOperator,
        BaseOperatorLink,
        BaseSensorOperator,
        Context,
        Param,
        Stats,
        TaskDeferred,
        Variable,
        XCom,
        conf,
        get_parsing_context,
        mask_secret,
    )
    from airflow.providers.common.compat.standard.triggers import TimeDeltaTrigger  # noqa: F401


def _airflow_version() -> Version:
    from airflow import __version__

    return Version(Version(__version__).base_version)


AIRFLOW_VERSION = _airflow_version()

# name -> modules that may hold it, newest first (common-compat's own paths for these names).
_PATHS: dict[str, tuple[str, ...]] = {
    "DAG": ("airflow.sdk", "airflow.models.dag"),
    "Asset": ("airflow.sdk", "airflow.datasets:Dataset"),
    "BaseHook": ("airflow.sdk", "airflow.hooks.base"),
    "BaseOperator": ("airflow.sdk", "airflow.models.baseoperator"),
    "BaseOperatorLink": ("airflow.sdk", "airflow.models.baseoperatorlink"),
    "BaseSensorOperator": ("airflow.sdk", "airflow.sensors.base"),
    "Context": ("airflow.sdk", "airflow.utils.context"),
    "Param": ("airflow.sdk", "airflow.models.param"),
    "Variable": ("airflow.sdk", "airflow.models.variable"),
    "XCom": ("airflow.sdk.execution_time.xcom", "airflow.models.xcom"),
    "get_parsing_context": ("airflow.sdk", "airflow.utils.dag_parsing_context"),
    "AirflowException": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "AirflowFailException": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "AirflowSensorTimeout": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "AirflowSkipException": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "TaskDeferred": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "Stats": ("airflow.sdk.observability.stats", "airflow.observability.stats", "airflow.stats"),
    "conf": ("airflow.sdk.configuration", "airflow.configuration"),
    "mask_secret": ("airflow.sdk.log", "airflow.sdk.execution_time.secrets_masker", "airflow.utils.log.secrets_masker"),
    "TimeDeltaTrigger": ("airflow.providers.standard.triggers.temporal", "airflow.triggers.temporal"),
}


def _load(name: str) -> Any:
    errors: list[str] = []
    for path in _PATHS[name]:
        module_name, _, attribute = path.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attribute or name)
        except (ImportError, AttributeError) as err:
            errors.append(f"{path}: {err}")
    raise ImportError(f"cannot import {name!r} on Airflow {AIRFLOW_VERSION}: " + "; ".join(errors))


def __getattr__(name: str) -> Any:
    if name not in _PATHS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = _load(name)
    globals()[name] = value
    return value


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
    if AIRFLOW_VERSION.major < 3:
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
