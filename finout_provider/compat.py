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


def earlier_run_running(context: Any) -> str | None:
    """The run id of the newest earlier run of this task's DAG that is still running, if any.

    Airflow 3 asks the execution API (``RuntimeTaskInstance.get_previous_dagrun``); Airflow 2 reads
    its own database, as its tasks may. Earlier means an earlier logical date; a run without one
    (Airflow 3 API triggers may omit it) is not seen.
    """
    ti, run = context.get("ti"), context.get("dag_run")
    if ti is None or run is None:  # not a task instance's run (an operator executed by hand)
        return None
    if AIRFLOW_VERSION.major >= 3:
        previous = ti.get_previous_dagrun(state="running")
    else:
        from airflow.models.dagrun import DagRun
        from airflow.utils.state import DagRunState

        previous = DagRun.get_previous_dagrun(run, state=DagRunState.RUNNING)
    return None if previous is None else str(previous.run_id)
