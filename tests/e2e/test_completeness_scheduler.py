"""A Prometheus that lost data, through the real scheduler: kube-state-metrics' series stop for two
hours inside a cluster's first-run history. The scheduled run exports those windows whole and its
validation warns naming them; `finout-provider status --json` flags them, and not a healthy cluster
of the same Prometheus whose pods churn and are scaled down by half; once the data is there (a
remote-write backlog arrives), the next scheduled runs export the flagged windows again and the
flags clear."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.history import HistorySpec, PrometheusServer, build_tsdb, free_port
from devtools.s3server import S3Server
from devtools.stack import BIN, AirflowStack, Api, airflow_major, api_server_env, serving, wait_for
from finout_provider.plan.windows import iso

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(airflow_major() < 3, reason="Airflow 3 components (api-server, dag-processor)"),
]
H = 3600
CLUSTER, HEALTHY = "lossy", "healthy"
DAG_ID = f"finout_prometheus_{CLUSTER}"
METRICS = ["cpu_requests", "pod_info", "cpu_usage_v2"]


@pytest.fixture(scope="module")
def histories(tmp_path_factory: pytest.TempPathFactory) -> tuple[HistorySpec, int, Any, Any]:
    now = int(time.time())
    end = now - now % H + H
    whole = HistorySpec(clusters=(CLUSTER, HEALTHY), start=end - 10 * H, end=end, cluster_label="cluster",
                        scale_downs=((HEALTHY, end - 5 * H - 1800),))  # fmt: skip
    outage = end - 6 * H
    lossy = dataclasses.replace(whole, outages=((CLUSTER, "kube_", outage, outage + 2 * H),))
    return (
        whole,
        outage,
        build_tsdb(lossy, tmp_path_factory.mktemp("lossy")),
        build_tsdb(whole, tmp_path_factory.mktemp("whole")),
    )


@pytest.fixture(scope="module")
def stack(
    histories: tuple[HistorySpec, int, Any, Any], s3_server: S3Server
) -> Iterator[tuple[AirflowStack, Api, list[PrometheusServer]]]:
    _, _, lossy_data, _ = histories
    prometheus = [PrometheusServer(lossy_data).start()]
    port = free_port()
    s3_server.client().create_bucket(Bucket="finout-lossy")  # type: ignore[attr-defined]
    each = {
        "HOSTNAME": "127.0.0.1",
        "PORT": prometheus[0].port,
        "BACKFILL_DAYS": 1,
        "SCHEDULE": "*/2 * * * *",
        "CLUSTER_LABEL": "cluster",
    }  # two clusters in one Prometheus
    airflow = AirflowStack(
        clusters=[{"CLUSTER_NAME": CLUSTER, **each}, {"CLUSTER_NAME": HEALTHY, **each}],
        defaults={"S3_BUCKET": "finout-lossy", "S3_PREFIX": "k8s/prometheus", "QUERY_DELAY_SECONDS": 0,
                  "METRICS": METRICS},
        connections={"aws_default": s3_server.connection()},
        extra_env=api_server_env(port),
    )  # fmt: skip
    with serving(airflow, prometheus):  # the test appends the Prometheus that replaces the first
        airflow.migrate()
        api = Api(airflow.start_airflow3(port))
        wait_for(airflow, "the DAG to be parsed", lambda: api.has_dag(DAG_ID), timeout=180)
        for dag_id in (DAG_ID, f"finout_prometheus_{HEALTHY}"):
            airflow.airflow("dags", "unpause", dag_id, retries_when_locked=5)
        yield airflow, api, prometheus


def status(airflow: AirflowStack, cluster: str = CLUSTER) -> dict[str, Any]:
    result = airflow.run([str(BIN / "finout-provider"), "status", "--json", "--cluster", cluster], check=False)
    return dict(json.loads(result.stdout)[0])


def test_lost_data_is_flagged_by_the_scheduled_run_and_cleared_once_it_arrives(
    stack: tuple[AirflowStack, Api, list[PrometheusServer]], histories: tuple[HistorySpec, int, Any, Any]
) -> None:
    airflow, api, prometheus = stack
    _, outage, _, whole_data = histories
    first = wait_for(airflow, "the first scheduled run",
                     lambda: (runs := api.runs(DAG_ID, "scheduled")) and api.finished(runs[:1]) and runs[0], 500)  # fmt: skip
    flagged = [iso(outage), iso(outage + H)]
    row = status(airflow)
    assert [entry["window"] for entry in row["incomplete"]] == flagged, row
    assert all(entry["metrics"] == ["cpu_requests", "pod_info"] for entry in row["incomplete"]), row
    log = airflow.logs(tail=20000, match=f"run_id={first['dag_run_id']}/task_id=validate_export")
    assert "2 windows were exported whole from a Prometheus that lacked data" in log, log[-3000:]
    assert f"- {iso(outage + H)}: cpu_requests: no series" in log
    healthy = wait_for(airflow, "the healthy cluster's first scheduled run",
                       lambda: (runs := api.runs(f"finout_prometheus_{HEALTHY}", "scheduled")) and api.finished(runs[:1]), 300)  # fmt: skip
    assert healthy and status(airflow, HEALTHY)["incomplete"] == [], status(airflow, HEALTHY)

    # The backlog arrives: the same Prometheus, now holding every sample.
    port = prometheus[0].port
    prometheus[0].stop()
    prometheus.append(PrometheusServer(whole_data, port=port).start())
    wait_for(airflow, "a later scheduled run to clear the flags", lambda: not status(airflow)["incomplete"], 600, 10)
    assert status(airflow)["state"] in ("ok", "gaps")
