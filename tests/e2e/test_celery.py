"""The production topology: Airflow 3 with CeleryExecutor on Postgres and Redis (the project's own
processes on loopback), two Celery workers, scheduler, DAG processor, triggerer and api-server.

A fleet of 20 clusters (16 in one central Prometheus with CLUSTER_LABEL, 4 with a Prometheus of
their own) brings its first-run history; one worker is killed with SIGKILL while exports run, the
scheduler is restarted, a backfill is created while it runs, and the validation sensor defers to
the triggerer, whose trigger reads S3.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devtools.history import HistorySpec, PrometheusServer, build_tsdb, free_port
from devtools.s3server import S3Server
from devtools.services import PostgresServer, RedisServer, celery_settings
from devtools.stack import ROOT, AirflowStack, Api, airflow_major, api_server_env, serving, wait_for
from finout_provider.catalogue import render, select
from finout_provider.hooks.prometheus import PrometheusHook
from finout_provider.s3.layout import build_key
from tests.conftest import set_connection

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(airflow_major() < 3, reason="the Celery topology runs Airflow 3"),
]
H = 3600
FRAME = 12 * H  # BACKFILL_DAYS 1 is two windows a cluster: 7 tasks a first run, 140 for the fleet
SLOTS = 3  # per Celery worker
CENTRAL = tuple(f"central-{i:02d}" for i in range(16))
OWN = tuple(f"own-{i}" for i in range(4))
METRICS = ["cpu_requests", "pod_info", "cpu_usage_v2"]
BUCKET = "finout-fleet"
PREFIX = "k8s/prometheus"
PROBE = '''"""Validation of one window through FinoutExportSensor, deferrable by [operators] default_deferrable."""
from airflow.sdk import DAG
from finout_provider.catalogue import ExportSpec, select
from finout_provider.sensors.export import FinoutExportSensor
from finout_provider.target import S3Target

with DAG("validation_probe", schedule=None, start_date=None, catchup=False):
    FinoutExportSensor(task_id="validate", target=S3Target("probe", "{bucket}", "{prefix}"), windows=[{start}],
                       spec=ExportSpec(select(["cpu_requests"]), time_frame={frame}), poke_interval=2, timeout=300)
'''


def now_aligned() -> int:
    now = int(time.time())
    return now - now % H


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[dict[str, Any]]:
    end = now_aligned() + H
    small = {"start": end - 40 * H, "end": end, "nodes": 1, "pods_per_node": 3, "containers_per_pod": 1}
    servers = [
        PrometheusServer(build_tsdb(HistorySpec(clusters=CENTRAL, cluster_label="cluster", **small),
                                    tmp_path_factory.mktemp("central"))).start()
    ]  # fmt: skip
    for name in OWN:
        servers.append(
            PrometheusServer(build_tsdb(HistorySpec(clusters=(name,), **small), tmp_path_factory.mktemp(name))).start()
        )
    postgres, redis = PostgresServer().start(), RedisServer().start()
    s3_server.client().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    dags = tmp_path_factory.mktemp("dags")
    for name in ("finout_prometheus.py", "finout_prometheus_config_errors.py"):
        (dags / name).symlink_to(ROOT / "finout_provider" / "dag_files" / name)
    clusters = [{"CLUSTER_NAME": c, "PROMETHEUS_CONN_ID": "prom_central", "CLUSTER_LABEL": "cluster"} for c in CENTRAL]
    clusters += [
        {"CLUSTER_NAME": c, "HOSTNAME": "127.0.0.1", "PORT": s.port} for c, s in zip(OWN, servers[1:], strict=True)
    ]
    port = free_port()
    stack = AirflowStack(
        clusters=clusters,
        defaults={"S3_BUCKET": BUCKET, "S3_PREFIX": PREFIX, "QUERY_DELAY_SECONDS": 0, "TIME_FRAME": FRAME,
                  "BACKFILL_DAYS": "1d", "METRICS": METRICS},
        connections={"aws_default": s3_server.connection(),
                     "prom_central": {"conn_type": "prometheus", "host": "127.0.0.1", "port": servers[0].port}},
        extra_env=api_server_env(port) | celery_settings(postgres, redis) | {
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "false",
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "true",
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "5",
            # A killed worker's task instances are found by their missing heartbeats: quickly here.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            # Tasks the killed worker had taken from Redis but not started are delivered again after
            # this (the default is a day); every task here takes seconds.
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "60",
            "AIRFLOW__CORE__PARALLELISM": "8",
        },
    )  # fmt: skip
    with serving(stack, [*servers, redis, postgres]):
        stack.migrate()
        api = Api(stack.start_airflow3(port))
        stack.start("triggerer", "--skip-serve-logs", log_name="triggerer")
        stack.start_celery_workers(2, SLOTS)
        yield {"stack": stack, "api": api, "servers": servers, "dags": dags, "postgres": postgres}


def first_run_windows(api: Api, dag_id: str) -> list[list[int]]:
    """The windows the DAG's first scheduled run exports: its interval's and the day before it,
    counted from when its plan ran. Two candidates, from the plan's start and end: they differ when
    a window boundary passed while it ran (the look-back is then one window shorter)."""
    from finout_provider.plan.windows import to_epoch

    run = min(api.runs(dag_id, "scheduled"), key=lambda r: r["data_interval_start"])
    plan = api.get(f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances/plan_windows")
    candidates = []
    for now in (to_epoch(plan["start_date"]), to_epoch(plan["end_date"])):
        since = now - 86400
        candidates.append(list(range(since - since % FRAME, now - now % FRAME, FRAME)))
    return candidates


@pytest.mark.timeout(1500)  # the fleet's start (about 100 s) and first runs, on one worker once the other dies
def test_a_fleet_on_celery_survives_a_killed_worker_and_a_restarted_scheduler(
    fleet: dict[str, Any], s3_server: S3Server, tmp_path: Path
) -> None:
    stack, api = fleet["stack"], fleet["api"]
    dag_ids = [f"finout_prometheus_{c}" for c in (*CENTRAL, *OWN)]
    wait_for(stack, "every cluster's first run to start", lambda: all(api.runs(d) for d in dag_ids), 400)

    def exporting() -> list[dict[str, Any]]:
        tis = [t for t in api.tis("running") if t["task_id"] == "export_window"]
        return tis if len(tis) > SLOTS else []  # more than worker-2 has slots: worker-1 runs one

    running = wait_for(stack, "exports running on both workers", exporting, 400, every=1)
    os.killpg(stack.processes["worker-1"].pid, signal.SIGKILL)  # no warm shutdown: its tasks die mid-export
    del stack.processes["worker-1"]
    stack.stop("scheduler")
    stack.start(*stack.commands["scheduler"], log_name="scheduler")

    def all_done() -> bool:
        runs = [r for d in dag_ids for r in api.runs(d)]
        failed = [r["dag_id"] for r in runs if r["state"] == "failed"]
        assert not failed, "\n".join([f"runs failed: {failed}"] + [stack.logs(match=f"dag_id={d}/") for d in failed])
        return len(runs) >= len(dag_ids) and all(r["state"] == "success" for r in runs)

    wait_for(stack, "every first run to succeed on the remaining worker", all_done, 900, every=5)
    again = [api.get(f"/dags/{t['dag_id']}/dagRuns/{t['dag_run_id']}/taskInstances/export_window/{t['map_index']}")
             for t in running]  # fmt: skip
    assert all(t["state"] == "success" for t in again), again
    assert any(t["try_number"] > 1 for t in again), "the killed worker's task instances were not run again"

    # Every window of every cluster's first run is in S3, whole and exactly what Prometheus answers.
    client: Any = s3_server.client()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    present = {o["Key"] for page in pages for o in page.get("Contents", [])}
    expected: set[str] = set()
    windows: dict[str, list[int]] = {}
    for dag_id in dag_ids:
        cluster = dag_id.removeprefix("finout_prometheus_")
        candidates = first_run_windows(api, dag_id)
        keys = [{build_key(PREFIX, cluster, m, s) for s in c for m in METRICS} for c in candidates]
        chosen = next((i for i, k in enumerate(keys) if k <= present), 0)
        windows[cluster] = candidates[chosen]
        expected |= keys[chosen]
    assert expected <= present, sorted(expected - present)[:5]
    for key in sorted(expected)[:: max(1, len(expected) // 24)]:
        assert_exact(client, key, fleet["servers"])
    coverage = stack.run([str(Path(sys.executable).parent / "finout-provider"), "coverage", "--cluster", OWN[0],
                          "--from", str(min(windows[OWN[0]])),
                          "--to", str(now_aligned()), "--deep"], check=False)  # fmt: skip
    assert "0 partial, 0 missing, 0 corrupt" in coverage.stdout, coverage.stdout + coverage.stderr


def assert_exact(client: Any, key: str, servers: list[PrometheusServer]) -> None:
    """The object under ``key`` holds what its Prometheus answers for the window in one query."""
    parts = key.split("/")
    cluster, metric, start = parts[2], parts[5].removeprefix("metric="), int(parts[6].split("_", 1)[0])
    central = cluster in CENTRAL
    server = servers[0] if central else servers[1 + OWN.index(cluster)]
    set_connection("exact", conn_type="prometheus", host="127.0.0.1", port=server.port)
    query = render(select([metric])[0].query, "cluster" if central else None, cluster if central else None)
    answer = PrometheusHook("exact").get_conn().query_range(query, start, start + FRAME - 60, 60)
    stored = json.loads(gzip.decompress(client.get_object(Bucket=BUCKET, Key=key)["Body"].read()))
    assert stored["data"]["result"] == answer["data"]["result"] and stored["data"]["result"], key


def test_backfill_create_while_the_scheduler_runs(fleet: dict[str, Any], s3_server: S3Server) -> None:
    stack, api = fleet["stack"], fleet["api"]
    dag_id = f"finout_prometheus_{OWN[1]}"
    start = now_aligned() - now_aligned() % FRAME - 2 * FRAME
    stack.airflow("backfill", "create", "--dag-id", dag_id, "--from-date", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start)),
                  "--to-date", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + FRAME)), "--reprocess-behavior", "completed")  # fmt: skip

    def backfilled() -> bool:
        runs = [r for r in api.runs(dag_id) if r["run_type"] == "backfill"]
        assert not [r for r in runs if r["state"] == "failed"], runs
        return bool(runs) and all(r["state"] == "success" for r in runs)

    wait_for(stack, "the backfill's runs", backfilled, 600, every=5)


def test_validation_defers_to_the_triggerer_which_reads_s3(fleet: dict[str, Any], s3_server: S3Server) -> None:
    stack, api = fleet["stack"], fleet["api"]
    start = now_aligned() - 4 * FRAME
    start -= start % FRAME
    probe = fleet["dags"] / "validation_probe.py"
    probe.write_text(PROBE.format(bucket=BUCKET, prefix=PREFIX, start=start, frame=FRAME))
    wait_for(stack, "the probe DAG to be parsed", lambda: _exists(api, "validation_probe"), 300)
    requests.patch(f"{api.base}/api/v2/dags/validation_probe", json={"is_paused": False}, timeout=30).raise_for_status()
    run = api.post("/dags/validation_probe/dagRuns", {"logical_date": None})
    path = f"/dags/validation_probe/dagRuns/{run['dag_run_id']}/taskInstances/validate"
    deferred = wait_for(
        stack, "the sensor to defer", lambda: api.get(path)["state"] == "deferred" and api.get(path), 300
    )
    assert (deferred.get("trigger") or {}).get("classpath") == "finout_provider.triggers.export.FinoutExportTrigger"
    key = build_key(PREFIX, "probe", "cpu_requests", start)
    body = gzip.compress(b'{"status":"success","data":{"resultType":"matrix","result":[]}}', mtime=0)
    s3_server.client().put_object(Bucket=BUCKET, Key=key, Body=body)  # type: ignore[attr-defined]
    wait_for(stack, "the trigger to find the object", lambda: api.get(path)["state"] == "success", 300)


def _exists(api: Api, dag_id: str) -> bool:
    try:
        api.get(f"/dags/{dag_id}")
    except requests.HTTPError:
        return False
    return True
