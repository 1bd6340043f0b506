"""A fleet's first runs through the real scheduler on Postgres: per-window wall time and CPU.

Three variants, each on a fresh Postgres (and Redis for Celery) of the project's own: 4 clusters
in the clusters file on LocalExecutor; the same 4 among 1,000 (996 paused) on LocalExecutor; the
4 among 1,000 on CeleryExecutor with 2 workers. Executor slots are 4 in every variant. The timer
starts when the 4 DAGs are unpaused (after the DAG processor stored every DAG of the file) and
stops when all 4 first runs succeeded; each run exports the one-day look-back.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devtools.history import HistorySpec, PrometheusServer, build_tsdb, free_port
from devtools.s3server import S3Server
from devtools.services import PostgresServer, RedisServer, celery_settings
from devtools.stack import AirflowStack, Api, api_server_env

H = 3600
FRAME = 7200  # 12 windows a day: the look-back of 4 clusters is 48 export task instances
ACTIVE = 4
METRICS = ["cpu_requests", "pod_info", "cpu_usage_v2"]
BUCKET = "finout-fleet"
SLOTS = 4
# (clusters in the file, executor, DAG processor's min_file_process_interval)
VARIANTS = ((ACTIVE, "local", 30), (1000, "local", 30), (1000, "local", 300), (1000, "celery", 30))


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@contextmanager
def _history() -> Iterator[PrometheusServer]:
    now = int(time.time())
    end = now - now % H + H
    spec = HistorySpec(clusters=("fleet",), start=end - 28 * H, end=end, nodes=1, pods_per_node=3, containers_per_pod=1)
    server = PrometheusServer(build_tsdb(spec, Path(tempfile.mkdtemp(prefix="finout-fleet-")))).start()
    try:
        yield server
    finally:
        server.stop()


def _clusters(total: int, prometheus_port: int) -> list[dict[str, Any]]:
    return [{"CLUSTER_NAME": f"fleet-{i:04d}", "HOSTNAME": "127.0.0.1", "PORT": prometheus_port} for i in range(total)]


def _wait(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"fleet benchmark: timed out waiting for {what}")
        time.sleep(2)
    return value


def _cpu_by_component(stack: AirflowStack) -> dict[str, float]:
    """CPU seconds of each running Airflow component with its reaped children (tasks, parsers)."""
    import psutil

    seconds = {}
    for name, process in stack.processes.items():
        try:
            times = psutil.Process(process.pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        seconds[name] = times.user + times.system + times.children_user + times.children_system
    return seconds


def _first_runs(stack: AirflowStack, api: Api, dag_ids: list[str]) -> dict[str, Any]:
    """Unpause ``dag_ids`` and wait until each has a successful run: wall and CPU seconds (the
    machine's, and each component's)."""
    busy, began, components = _busy_seconds(), time.monotonic(), _cpu_by_component(stack)
    for dag_id in dag_ids:
        response = api.patch(f"/dags/{dag_id}", {"is_paused": False})
        assert response["is_paused"] is False, response

    def done() -> bool:
        runs = [r for d in dag_ids for r in api.runs(d)]
        failed = [r["dag_run_id"] for r in runs if r["state"] == "failed"]
        assert not failed, f"fleet benchmark: runs failed: {failed}"
        return len(runs) >= len(dag_ids) and all(r["state"] == "success" for r in runs)

    _wait("the first runs", done, 1800)
    after = _cpu_by_component(stack)
    return {
        "wall_seconds": time.monotonic() - began,
        "cpu_seconds": _busy_seconds() - busy,
        "cpu_by_component": {name: round(after[name] - components.get(name, 0.0), 1) for name in after},
    }


def _exported(api: Api, dag_id: str) -> int:
    """Export task instances of the DAG's runs that succeeded (one per window)."""
    count = 0
    for run in api.runs(dag_id):
        tis = api.get(f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances", limit=100)["task_instances"]
        count += sum(t["task_id"] == "export_window" and t["state"] == "success" for t in tis)
    return count


def fleet_variant(
    prom: PrometheusServer, s3: S3Server, total: int, executor: str, parse_every: int = 30
) -> dict[str, Any]:
    """One variant; ``parse_every``: the DAG processor's min_file_process_interval (Airflow's
    default 30 s, not the test stacks' 5 s: how often the file is re-parsed is what a fleet's
    file costs a deployment)."""
    postgres = PostgresServer().start()
    redis = RedisServer().start() if executor == "celery" else None
    port = free_port()
    settings = (
        celery_settings(postgres, redis)
        if redis is not None
        else {"AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url}
    )
    stack = AirflowStack(
        clusters=_clusters(total, prom.port),
        defaults={"S3_BUCKET": BUCKET, "S3_PREFIX": f"k8s/{executor}-{total}-{parse_every}", "QUERY_DELAY_SECONDS": 0,
                  "TIME_FRAME": FRAME, "BACKFILL_DAYS": "1d", "METRICS": METRICS},
        connections={"aws_default": s3.connection()},
        extra_env=api_server_env(port) | settings | {
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "true",
            "AIRFLOW__CORE__PARALLELISM": str(SLOTS),
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(parse_every),
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": str(parse_every),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "300",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        },
    )  # fmt: skip
    try:
        stack.migrate()
        api = Api(stack.start_airflow3(port))
        if redis is not None:
            stack.start_celery_workers(2, SLOTS // 2)
        _wait("every DAG stored", lambda: api.get("/dags", limit=1)["total_entries"] >= total, 900)
        dag_ids = [f"finout_prometheus_{c['CLUSTER_NAME']}" for c in stack.clusters[:ACTIVE]]
        measured = _first_runs(stack, api, dag_ids)
        windows = sum(_exported(api, d) for d in dag_ids)
    finally:
        stack.cleanup()
        if redis is not None:
            redis.stop()
        postgres.stop()
    result = {"clusters": total, "executor": executor, "parse_every": parse_every, "windows": windows, **measured}
    result |= {
        "wall_per_window": measured["wall_seconds"] / windows,
        "cpu_per_window": measured["cpu_seconds"] / windows,
    }
    return result


def fleet_times(s3: S3Server) -> dict[str, Any]:
    s3.client().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    variants = []
    with _history() as prom:
        for total, executor, parse_every in VARIANTS:
            variants.append(fleet_variant(prom, s3, total, executor, parse_every))
            v = variants[-1]
            print(
                f"[bench] fleet {total} clusters, {executor}: {v['windows']} windows, "
                f"{v['wall_per_window']:.2f} s/window wall, {v['cpu_per_window']:.2f} CPU s/window, "
                f"CPU by component {v['cpu_by_component']}",
                flush=True,
            )
    return {"frame": FRAME, "active": ACTIVE, "slots": SLOTS, "metrics": METRICS, "variants": variants}
