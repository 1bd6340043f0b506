"""A manual range never stops the schedule's history and gap repair: through the real scheduler, a
cluster's first scheduled run starts while a manual run with an earlier logical date is still
exporting, and still brings the history."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest

from devtools.faults import FaultServer, Seen, forward
from devtools.history import HistorySpec, PrometheusServer, build_tsdb, free_port
from devtools.s3server import S3Server
from devtools.stack import AirflowStack, Api, airflow_major, api_server_env, serving, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(airflow_major() < 3, reason="two runs at once need Airflow 3's LocalExecutor on SQLite"),
]
H = 3600
DAG_ID = "finout_prometheus_beside"


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class Holding:
    """In front of the real Prometheus: the queries of one window wait until released, so the run
    exporting it stays running as long as the test needs."""

    def __init__(self, upstream: str, window: int) -> None:
        self.window, self.released = window, threading.Event()
        self.upstream = forward(upstream)
        self.held = 0

    def __call__(self, seen: Seen, handler: Any) -> None:
        start = parse_qs(seen.body.decode()).get("start", [""])[0]
        if seen.path.endswith("/query_range") and start and float(start) == self.window:
            self.held += 1
            self.released.wait(300)
        self.upstream(seen, handler)


@pytest.fixture(scope="module")
def history() -> HistorySpec:
    now = int(time.time())
    end = now - now % H + H
    return HistorySpec(clusters=("beside",), start=end - 9 * H, end=end, nodes=1, pods_per_node=3)


@pytest.fixture(scope="module")
def prometheus(history: HistorySpec, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server = PrometheusServer(build_tsdb(history, tmp_path_factory.mktemp("beside"))).start()
    yield server
    server.stop()


def test_a_running_manual_range_does_not_stop_the_first_scheduled_runs_history(
    prometheus: PrometheusServer, s3_server: S3Server, history: HistorySpec
) -> None:
    window = history.end - 6 * H
    holding = Holding(prometheus.url, window)
    port = free_port()
    with FaultServer(holding) as proxy:
        stack = AirflowStack.one_cluster(
            {"CLUSTER_NAME": "beside", "BACKFILL_DAYS": 1, "METRICS": ["cpu_requests", "pod_info"],
             "PREFLIGHT": False},
            proxy.port, s3_server, "finout-beside", extra_env=api_server_env(port),
        )  # fmt: skip
        with serving(stack):
            stack.migrate()
            api = Api(stack.start_airflow3(port))
            wait_for(stack, "the DAG to be parsed", lambda: api.has_dag(DAG_ID), timeout=180)
            # A manual range whose logical date is before the first scheduled run's (its data
            # interval starts at the last hour that closed), triggered while the DAG is paused.
            conf = f'{{"start": "{iso(window)}", "end": "{iso(window + H)}"}}'
            stack.airflow("dags", "trigger", DAG_ID, "--conf", conf, "--logical-date", iso(time.time() - 2 * H),
                          retries_when_locked=5)  # fmt: skip
            stack.airflow("dags", "unpause", DAG_ID, retries_when_locked=5)
            wait_for(stack, "the manual run's export to be held", lambda: holding.held, 300)
            scheduled = wait_for(stack, "the scheduled run's plan", lambda: planned(api), 300)
            manual = api.runs(DAG_ID, "manual")
            assert [r["state"] for r in manual] == ["running"], manual  # still exporting when the plan ran
            holding.released.set()
            assert len(scheduled) >= 8, scheduled  # the history since the data began, not one window
            wait_for(stack, "both runs", lambda: api.finished(api.runs(DAG_ID)) and len(api.runs(DAG_ID)) >= 2, 600)
            log = stack.logs(tail=20000, match="task_id=plan_windows")
            assert "is still running" not in log, log


def planned(api: Api) -> list[dict[str, Any]] | None:
    """The windows the first scheduled run planned, once its plan task has succeeded."""
    runs = api.runs(DAG_ID, "scheduled")
    if not runs:
        return None
    path = f"/dags/{DAG_ID}/dagRuns/{runs[0]['dag_run_id']}/taskInstances/plan_windows"
    if api.get(path)["state"] != "success":
        return None
    return list(api.get(f"{path}/xcomEntries/return_value")["value"])
