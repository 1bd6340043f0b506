"""Airflow 2.11 as users drive it: `airflow dags backfill`, the scheduler, and the UI's Clear of one
mapped instance, against the real Prometheus and the S3 server on loopback."""

from __future__ import annotations

import calendar
import json
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.history import HistorySpec, PrometheusServer, build_tsdb
from devtools.s3server import S3Server
from devtools.stack import BIN, AirflowStack, airflow_major, wait_for
from finout_provider.s3.layout import build_key

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.af2,
    pytest.mark.skipif(airflow_major() >= 3, reason="`airflow dags backfill` is Airflow 2 only"),
]
H = 3_600
TF = 6 * H  # the first run's look-back (one day) is 4 windows: SequentialExecutor runs one task at a time
DAY = 86_400
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
        task_ids=[("export_window", int(sys.argv[3]))], only_failed=False, dag_run_state="queued",
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


def first_scheduled(stack: AirflowStack) -> dict[str, Any] | None:
    """The DAG's first scheduled run (a second one comes when a window boundary passes)."""
    scheduled = [r for r in runs(stack) if r["run_id"].startswith("scheduled__")]
    return min(scheduled, key=lambda r: str(r["execution_date"])) if scheduled else None


def keys_of(s3_server: S3Server, bucket: str) -> set[str]:
    client: Any = s3_server.client()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def expected(starts: list[int]) -> set[str]:
    return {build_key(PREFIX, "af2", m, s) for m in METRICS for s in starts}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """Data from 36 hours back (the backfilled intervals lie up to 30 hours back) to an hour past now."""
    now = int(time.time())
    end = now - now % H + H
    spec = HistorySpec(clusters=("prod-eu", "staging"), start=end - 36 * H, end=end, cluster_label="cluster",
                       nodes=1, pods_per_node=3, containers_per_pod=1)  # fmt: skip
    server = PrometheusServer(build_tsdb(spec, tmp_path_factory.mktemp("af2-history"))).start()
    yield server
    server.stop()


@pytest.mark.timeout(1500)  # about 25 task processes, one at a time: 20 s each on a loaded machine
def test_backfill_cli_scheduler_and_clear_of_one_mapped_instance(
    prometheus: PrometheusServer, s3_server: S3Server
) -> None:
    bucket = "finout-airflow2"
    client: Any = s3_server.client()
    stack = AirflowStack.one_cluster(
        # No CLUSTER_LABEL: the queries take both clusters of the data, so no window with data is empty.
        {"CLUSTER_NAME": "af2", "BACKFILL_DAYS": 1, "TIME_FRAME": TF, "METRICS": METRICS},
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
        # 1. The scheduler's own run of the latest interval. With BACKFILL_DAYS 1, a scheduled run
        #    makes sure the look-back (one day) is in S3: it exports the 4 windows ending with its own.
        stack.start("scheduler", "--skip-serve-logs", log_name="scheduler")
        wait_for(stack, "the scheduled run", lambda: (first_scheduled(stack) or {}).get("state") == "success",
                 timeout=600, every=3)  # fmt: skip
        scheduled = first_scheduled(stack)
        assert scheduled is not None
        window = calendar.timegm(time.strptime(scheduled["execution_date"][:19], "%Y-%m-%dT%H:%M:%S"))
        look_back = list(range(window + TF - DAY, window + TF, TF))
        # A later scheduled run (a window boundary passed during the test) adds only its own window.
        keys = {k for k in keys_of(s3_server, bucket) if int(k.rsplit("/", 1)[1].split("_", 1)[0]) <= window}
        # The look-back is counted from when the plan ran: one window shorter if that was already
        # past the next window boundary (a run created in the last seconds before it).
        if keys != expected(look_back):
            look_back = look_back[1:]
        assert keys == expected(look_back)

        # 2. Clear one mapped export_window instance, as the UI does: the last one, the run's own
        #    window, is rewritten byte-identical.
        keys = sorted(expected([window]))
        before = {k: client.get_object(Bucket=bucket, Key=k) for k in keys}
        bodies = {k: v["Body"].read() for k, v in before.items()}
        time.sleep(1.1)  # LastModified has one-second resolution
        script = stack.home / "clear_one.py"
        script.write_text(CLEAR_ONE)
        out = stack.run(
            [str(BIN / "python"), str(script), DAG_ID, scheduled["run_id"], str(len(look_back) - 1)],
            retries_when_locked=5,
        )
        assert "cleared 1" in out.stdout, out.stdout + out.stderr

        def rerun_done() -> bool:
            after = {k: client.head_object(Bucket=bucket, Key=k)["LastModified"] for k in keys}
            state = next(r for r in runs(stack) if r["run_id"] == scheduled["run_id"])["state"]
            return all(after[k] > before[k]["LastModified"] for k in keys) and state == "success"

        wait_for(stack, "the cleared instance's rerun", rerun_done, timeout=300, every=3)
        assert {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys} == bodies
        stack.airflow("dags", "pause", DAG_ID, retries_when_locked=5)
        stack.stop()

        # 3. `airflow dags backfill` over the two intervals before the scheduled run's (a backfill
        #    reuses an existing run), both holding data: one run per interval, each rewrites its window.
        first = window - 2 * TF
        before_backfill = {k: client.head_object(Bucket=bucket, Key=k)["LastModified"] for k in expected([first])}
        try:
            stack.airflow("dags", "backfill", DAG_ID, "-s", iso(first), "-e", iso(first + TF))
        except RuntimeError as err:
            raise RuntimeError(f"{err}\n{stack.logs()}") from None
        done = [r for r in runs(stack) if r["run_id"].startswith("backfill__")]
        assert len(done) == 2 and all(r["state"] == "success" for r in done), done
        assert expected([first, first + TF]) <= keys_of(s3_server, bucket)
        assert all(client.head_object(Bucket=bucket, Key=k)["LastModified"] > t for k, t in before_backfill.items())
    finally:
        stack.cleanup()
