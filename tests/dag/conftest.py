"""The generated DAG as a user runs it: a clusters file typed as YAML, the DAG file of the package
loaded by Airflow's DagBag, and ``dag.test()`` (Airflow's system tests' way) against a real
Prometheus and S3 (moto, in-process: ``dag.test()`` runs every task in this process)."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from devtools.history import PrometheusServer
from devtools.stack import airflow_major, airflow_version
from tests.conftest import BUCKET, PREFIX, ROOT

DAG_FOLDER = ROOT / "dags"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
H = 3600


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The session's metadata database (SQLite in the test home), migrated once."""
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ, timeout=300)
    if airflow_major() < 3:
        # Airflow 2's CLI loads the auth manager (FAB, whose models a DAG run's notes refer to)
        # before ``airflow dags test``; without them a second run at the same date cannot replace
        # the first ("could not find table 'ab_user'").
        from airflow.www.extensions.init_auth_manager import get_auth_manager_cls

        get_auth_manager_cls()


@dataclass
class Outcome:
    """What a ``dag.test()`` run left: its state, each task instance, the output and the time."""

    state: str
    tis: dict[tuple[str, int], Any]
    output: str
    seconds: float

    def ti(self, task_id: str, map_index: int = -1) -> Any:
        return self.tis[(task_id, map_index)]

    def states(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for (task_id, _), ti in self.tis.items():
            found.setdefault(task_id, set()).add(str(getattr(ti.state, "value", ti.state)))
        return found


@dataclass
class ClusterDag:
    """One cluster's entry of a clusters file, as the DAG file of the package turns it into a DAG."""

    entry: Mapping[str, Any]
    folder: Path
    monkeypatch: pytest.MonkeyPatch
    defaults: Mapping[str, Any] = field(default_factory=lambda: {"S3_BUCKET": BUCKET, "S3_PREFIX": PREFIX})

    def __post_init__(self) -> None:
        path = self.folder / "clusters.yaml"
        path.write_text(yaml.safe_dump({"defaults": dict(self.defaults), "clusters": [dict(self.entry)]}))
        self.monkeypatch.setenv("FINOUT_CLUSTERS_FILE", str(path))

    @property
    def dag_id(self) -> str:
        return f"finout_prometheus_{self.entry['CLUSTER_NAME']}"

    @property
    def dag(self) -> Any:
        """The DAG as Airflow's DagBag builds it from the package's DAG file."""
        from airflow.models import DagBag

        bag = DagBag(dag_folder=str(DAG_FOLDER))
        assert self.dag_id in bag.dags, bag.import_errors
        return bag.dags[self.dag_id]

    def test(self, capfd: pytest.CaptureFixture[str], logical: int, conf: dict[str, Any] | None = None) -> Outcome:
        """``dag.test()`` of a manual run at ``logical`` (as ``airflow dags test`` runs one)."""
        dag = self.dag
        if airflow_version().startswith(("3.0.", "3.1.")):
            # Airflow 3.0's dags test does not register a DAG's assets (the export's outlet) in a
            # database where no DAG processor has parsed it, and 3.0's and 3.1's run the DAG as
            # first stored (a later shape of the same dag_id: "Task preflight not found"): README's
            # steps reserialize first.
            airflow = Path(sys.executable).parent / "airflow"
            subprocess.run([str(airflow), "dags", "reserialize"], check=True, capture_output=True, timeout=300)
        moment = datetime.fromtimestamp(logical, UTC)
        capfd.readouterr()
        began = time.monotonic()
        if airflow_major() >= 3:
            run = dag.test(logical_date=moment, run_conf=conf)
        else:
            run = dag.test(execution_date=moment, run_conf=conf)
        seconds = time.monotonic() - began
        output = ANSI.sub("", "".join(capfd.readouterr()))  # Airflow 3.0 colours its tracebacks
        tis = {(ti.task_id, ti.map_index): ti for ti in run.get_task_instances()}
        return Outcome(str(getattr(run.state, "value", run.state)), tis, output, seconds)


@pytest.fixture
def cluster_dag(airflow_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., ClusterDag]:
    """``cluster_dag({"CLUSTER_NAME": ..., ...})``: a cluster of the clusters file and its DAG."""

    def make(entry: Mapping[str, Any], **defaults: Any) -> ClusterDag:
        base = {"S3_BUCKET": BUCKET, "S3_PREFIX": PREFIX, "QUERY_DELAY_SECONDS": 0} | defaults
        return ClusterDag(entry, tmp_path, monkeypatch, base)

    return make


def task_of(dag: Any, task_id: str, start: int, window: dict[str, int] | None = None) -> Any:
    """The DAG's task as a run executes it: a mapped export unmapped with the window the plan hands
    over (``window``, default the hour at ``start``), the plan's output where a task reads it."""
    task = dag.get_task(task_id.split(" ", maxsplit=1)[0])
    window = window or {"window_start": start, "window_end": start + H}
    if task.task_id == "export_window":
        return task.unmap(window)
    task = copy.copy(task)
    if getattr(task, "mode", None) == "reschedule":
        task.mode = "poke"  # rescheduling is the scheduler's; each poke is the same either way
        task.timeout = 20  # what is missing fails the test instead of holding it
    if hasattr(task, "windows"):
        task.windows = [window]
    if hasattr(task, "exports"):
        task.exports = []
    return task


def scheduled_run(start: int) -> dict[str, Any]:
    """A scheduled run's context whose data interval is the window."""
    moment = lambda ts: datetime.fromtimestamp(ts, UTC)  # noqa: E731
    run = SimpleNamespace(run_type="scheduled", logical_date=moment(start))
    return {"dag_run": run, "params": {}, "data_interval_start": moment(start), "data_interval_end": moment(start + H)}


def on(server: PrometheusServer, **entry: Any) -> dict[str, Any]:
    """A cluster entry reaching ``server`` by HOSTNAME/PORT, as the CronJob's variables would."""
    return {"HOSTNAME": "127.0.0.1", "PORT": server.port, **entry}
