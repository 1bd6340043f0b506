"""A new cluster's first day, as the page and ``status`` show it: the windows before its data begins
are not missing (nothing was measured then), and a failed first window still shows."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools.history import HistorySpec, PrometheusServer, build_tsdb
from finout_provider.checks.status import status_of
from finout_provider.plan.windows import closed_before, iso
from finout_provider.s3.layout import build_key
from tests.conftest import BUCKET, PREFIX
from tests.dag.conftest import ClusterDag, on, scheduled_run, task_of
from tests.integration.test_cli import cli

pytestmark = [pytest.mark.dag, pytest.mark.af2]
H = 3600
METRICS = ["cpu_requests", "pod_info", "cpu_usage_v2"]


@pytest.fixture(scope="module")
def newborn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    """A cluster whose Prometheus began six hours ago."""
    end = closed_before(int(time.time()), 120, H)
    spec = HistorySpec(clusters=("newborn",), start=end - 6 * H, end=end, nodes=2, pods_per_node=3)
    server = PrometheusServer(build_tsdb(spec, tmp_path_factory.mktemp("newborn"))).start()
    yield server, end
    server.stop()


def status_json() -> tuple[int, dict[str, Any]]:
    code, out, _ = cli("status", "--json")
    return code, json.loads(out)[0]


def test_a_new_clusters_first_day_reads_green_and_a_failed_first_window_still_shows(
    cluster_dag: Callable[..., ClusterDag], newborn: tuple[PrometheusServer, int], s3: Any
) -> None:
    """The first scheduled run (the DAG's plan and export tasks, BACKFILL_DAYS 1) exports from where
    the data begins; with STEP_SECONDS 300 the windows judge complete by their own step."""
    server, end = newborn
    dag = cluster_dag(on(server, CLUSTER_NAME="newborn", METRICS=METRICS, BACKFILL_DAYS=1, STEP_SECONDS=300))
    run = scheduled_run(end - H)
    windows = task_of(dag.dag, "plan_windows", end - H).execute(run)
    assert [w["window_start"] for w in windows] == list(range(end - 6 * H, end, H))
    assert {w["data_begins"] for w in windows} == {end - 6 * H}  # the plan asked where the data begins
    for window in windows:
        task_of(dag.dag, "export_window", window["window_start"], window).execute({})

    code, status = status_json()
    assert code == 0 and status["state"] == "ok", status
    assert status["missing"] == [] and status["incomplete"] == [] and status["empty"] == []
    before = [iso(s) for s in range(closed_before(int(time.time()), 120, H) - 24 * H, end - 6 * H, H)]
    assert status["before_data"] == before, status
    freshness = task_of(dag.dag, "check_freshness", end - H).execute(run)  # as a scheduled run's check sees it
    assert freshness["state"] == "ok" and freshness["incomplete"] == [], freshness

    first = end - 6 * H  # the first window with data failed: it must show, whatever came after it
    for metric in METRICS:
        s3.delete_object(Bucket=BUCKET, Key=build_key(PREFIX, "newborn", metric, first))
    code, status = status_json()
    assert code == 1 and status["missing"] == [iso(first)] and status["state"] == "gaps", status
    from finout_provider.dag_factory import load

    config = load().clusters[0]
    assert status_of(config, int(time.time())).as_dict()["missing"] == [iso(first)]  # what the fleet page shows
