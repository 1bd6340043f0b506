"""Airflow 2.11 as users drive it: `airflow dags backfill`, the scheduler, and the UI's Clear of one
mapped instance, against the real Prometheus and the S3 server on loopback."""

from __future__ import annotations

import calendar
import json
import textwrap
import time
from typing import Any

import pytest

from devtools.history import HistorySpec, PrometheusServer
from devtools.s3server import S3Server
from devtools.stack import BIN, AirflowStack, airflow_major, wait_for
from finout_provider.layout import build_key

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.af2,
    pytest.mark.skipif(airflow_major() >= 3, reason="`airflow dags backfill` is Airflow 2 only"),
]
H = 3600
DAG_ID = "finout_prometheus_af2"
METRICS = ["cpu_requests", "pod_labels"]
PREFIX = "k8s/prometheus"

# What the 2.x UI's "Clear" on one mapped task instance does (views.Airflow.clear -> DAG.clear).
CLEAR_ONE = textwrap.dedent(
    """
    import sys
    from airflow.models import DagBag, DagRun
    dag = DagBag(read_dags_from_db=False).get_dag(sys.argv[1])
    run = DagRun.find(dag_id=sys.argv[1], run_id=sys.argv[2])[0]
    count = dag.clear(
        start_date=run.execution_date, end_date=run.execution_date,
        task_ids=[("export_window", 0)], only_failed=False, dag_run_state="queued",
    )
    print("cleared", count)
    """
)


def iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))


def runs(stack: AirflowStack) -> list[dict[str, Any]]:
    result = stack.airflow("dags", "list-runs", "-d", DAG_ID, "-o", "json", check=False)
    if "does not exist in 'dag' table" in result.stdout + result.stderr:
        return []  # the scheduler's DAG processor has not stored the DAG yet
    if result.returncode:
        raise RuntimeError(f"airflow dags list-runs failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    table = next((line for line in result.stdout.splitlines() if line.startswith(("[{", "[]"))), "[]")
    return list(json.loads(table))


def keys_of(s3_server: S3Server, bucket: str) -> set[str]:
    client: Any = s3_server.client()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def expected(starts: list[int]) -> set[str]:
    return {build_key(PREFIX, "af2", m, s) for m in METRICS for s in starts}


def test_backfill_cli_scheduler_and_clear_of_one_mapped_instance(
    prometheus: PrometheusServer, s3_server: S3Server, history: HistorySpec
) -> None:
    bucket = "finout-airflow2"
    client: Any = s3_server.client()
    stack = AirflowStack.one_cluster(
        {"CLUSTER_NAME": "af2", "BACKFILL_DAYS": 0, "METRICS": METRICS},  # both clusters of the data: not empty
        prometheus.port,
        s3_server,
        bucket,
        PREFIX,
        extra_env={
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            # Airflow 2's BackfillJob loses track of mapped instances that a task's "mini scheduler"
            # expands; the README tells 2.11 users to turn it off for `airflow dags backfill`.
            "AIRFLOW__SCHEDULER__SCHEDULE_AFTER_TASK_EXECUTION": "False",
            # Unpausing from the CLI races the DAG processor's first sync, which creates the DAG
            # paused; a DAG created unpaused leaves nothing to race.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        },
    )
    try:
        stack.migrate()
        # 1. The scheduler's own run of the latest interval (S3 is empty and BACKFILL_DAYS 0, so
        #    the first run exports just its window).
        stack.start("scheduler", "--skip-serve-logs", log_name="scheduler")
        wait_for(
            stack,
            "the scheduled run",
            lambda: [r for r in runs(stack) if r["run_id"].startswith("scheduled__") and r["state"] == "success"],
            timeout=400,
            every=3,
        )
        scheduled = next(r for r in runs(stack) if r["run_id"].startswith("scheduled__"))
        window = calendar.timegm(time.strptime(scheduled["execution_date"][:19], "%Y-%m-%dT%H:%M:%S"))
        keys = sorted(expected([window]))
        assert set(keys) == keys_of(s3_server, bucket)

        # 2. Clear one mapped export_window instance, as the UI does: that window is rewritten,
        #    byte-identical.
        before = {k: client.get_object(Bucket=bucket, Key=k) for k in keys}
        bodies = {k: v["Body"].read() for k, v in before.items()}
        time.sleep(1.1)  # LastModified has one-second resolution
        script = stack.home / "clear_one.py"
        script.write_text(CLEAR_ONE)
        out = stack.run([str(BIN / "python"), str(script), DAG_ID, scheduled["run_id"]], retries_when_locked=5)
        assert "cleared 1" in out.stdout, out.stdout + out.stderr

        def rerun_done() -> bool:
            after = {k: client.head_object(Bucket=bucket, Key=k)["LastModified"] for k in keys}
            state = next(r for r in runs(stack) if r["run_id"] == scheduled["run_id"])["state"]
            return all(after[k] > before[k]["LastModified"] for k in keys) and state == "success"

        wait_for(stack, "the cleared instance's rerun", rerun_done, timeout=300, every=3)
        assert {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys} == bodies
        stack.airflow("dags", "pause", DAG_ID, retries_when_locked=5)
        stack.stop()

        # 3. `airflow dags backfill` over two hours: one run per hour, each exports its window.
        first = history.start + H
        stack.airflow("dags", "backfill", DAG_ID, "-s", iso(first), "-e", iso(first + H))
        done = [r for r in runs(stack) if r["run_id"].startswith("backfill__")]
        assert len(done) == 2 and all(r["state"] == "success" for r in done), done
        assert expected([first, first + H]) <= keys_of(s3_server, bucket)
    finally:
        stack.cleanup()
