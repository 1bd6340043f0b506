"""Airflow 3 as users drive it: the scheduler, `airflow backfill create`, a Clear from the UI's REST
API, and a manual run with params, against the real Prometheus and the S3 server on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from devtools.history import HistorySpec, PrometheusServer, build_tsdb, free_port
from devtools.s3server import S3Server
from devtools.stack import AirflowStack, Api, airflow_major, api_server_env, serving, wait_for
from finout_provider.get_provider_info import CONN_FIELDS
from finout_provider.links import folder_url
from finout_provider.plan.windows import to_epoch
from finout_provider.s3.layout import build_key

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(airflow_major() < 3, reason="Airflow 3 components (api-server, dag-processor)"),
]
H = 3600
DAG_ID = "finout_prometheus_sched"
METRICS = ["cpu_requests", "pod_labels", "memory_usage_v2"]
PREFIX = "k8s/prometheus"


def iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@pytest.fixture(scope="module")
def history() -> HistorySpec:
    """Data reaching an hour past the module's start: the scheduler's newest window always holds
    some (the session's history ends when the session began, an hour boundary may lie between)."""
    now = int(time.time())
    end = now - now % H + H
    return HistorySpec(clusters=("prod-eu", "staging"), start=end - 9 * H, end=end, cluster_label="cluster")


@pytest.fixture(scope="module")
def prometheus(history: HistorySpec, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server = PrometheusServer(build_tsdb(history, tmp_path_factory.mktemp("scheduler-history"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def scheduler_stack(prometheus: PrometheusServer, s3_server: S3Server) -> Iterator[tuple[AirflowStack, Api, str]]:
    bucket = "finout-scheduler"
    port = free_port()
    stack = AirflowStack.one_cluster(
        {"CLUSTER_NAME": "sched", "BACKFILL_DAYS": 0, "METRICS": METRICS},  # both clusters of the data: not empty
        prometheus.port,
        s3_server,
        bucket,
        PREFIX,
        extra_env=api_server_env(port)
        | {"AIRFLOW__CORE__PARALLELISM": "4", "AIRFLOW__CORE__TEST_CONNECTION": "Enabled"},
    )
    with serving(stack):
        stack.migrate()
        api = Api(stack.start_airflow3(port))
        wait_for(stack, "the DAG to be parsed", lambda: api.has_dag(DAG_ID), timeout=180)
        # Tasks of a paused DAG are never queued, backfills included.
        stack.airflow("dags", "unpause", DAG_ID, retries_when_locked=5)
        yield stack, api, bucket


def keys_of(s3_server: S3Server, bucket: str) -> set[str]:
    client: Any = s3_server.client()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def expected(starts: list[int]) -> set[str]:
    return {build_key(PREFIX, "sched", m, s) for m in METRICS for s in starts}


def run_windows(run: dict[str, Any]) -> list[int]:
    start, end = to_epoch(run["data_interval_start"]), to_epoch(run["data_interval_end"])
    return list(range(start, end, H))


def test_scheduled_run_exports_its_window(scheduler_stack: tuple[AirflowStack, Api, str], s3_server: S3Server) -> None:
    stack, api, bucket = scheduler_stack
    runs = wait_for(
        stack,
        "the scheduled run",
        lambda: api.finished(api.runs(DAG_ID, "scheduled")) and api.runs(DAG_ID, "scheduled"),
        400,
    )
    starts = [s for run in runs for s in run_windows(run)]
    assert starts and expected(starts) <= keys_of(s3_server, bucket)

    # What the UI shows of that run: the mapped instance's extra link to its S3 folder, and the
    # export's asset event.
    run = runs[0]
    links = api.get(f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances/export_window/links", map_index=0)
    # Instance 0 exports the run's oldest window: a window of the look-back's gap repair, or its own.
    label = api.get(f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances/export_window/0")["rendered_map_index"]
    first = to_epoch(label.split("/")[0].replace("Z", ":00Z"))
    day = build_key(PREFIX, "sched", METRICS[0], first).split("metric=")[0]
    # The AWS connection's endpoint_url is the S3 server: the link is its listing of the day folder.
    assert links["extra_links"] == {"S3 export": folder_url(bucket, day, s3_server.url)}
    listing = requests.get(links["extra_links"]["S3 export"], timeout=30).text
    assert f"<Prefix>{day}metric={METRICS[0]}/</Prefix>" in listing
    uri = f"s3://{bucket}/{PREFIX}/sched"
    asset = next(a for a in api.get("/assets", uri_pattern="sched")["assets"] if a["uri"] == uri)
    events = api.get("/assets/events", asset_id=asset["id"], source_run_id=run["dag_run_id"])["asset_events"]
    assert ("export_window", 0) in {(e["source_task_id"], e["source_map_index"]) for e in events}


def test_connection_form_and_connection_test_through_the_api(
    scheduler_stack: tuple[AirflowStack, Api, str], prometheus: PrometheusServer
) -> None:
    _, api, _ = scheduler_stack
    # The UI's connection form is built from this answer.
    response = requests.get(f"{api.base}/ui/connections/hook_meta", timeout=30)
    response.raise_for_status()
    form = next(m for m in response.json() if m["connection_type"] == "prometheus")
    assert form["hook_name"] == "Prometheus"
    assert form["hook_class_name"] == "finout_provider.hooks.prometheus.PrometheusHook"
    assert set(form["extra_fields"]) == set(CONN_FIELDS)
    assert form["extra_fields"]["bearer_token"]["schema"]["format"] == "password"
    assert form["standard_fields"]["port"]["placeholder"] == "9090"
    assert form["standard_fields"]["login"]["title"] == "Username"
    # The form's "Test" button.
    probe = {"connection_id": "probe", "conn_type": "prometheus", "host": "127.0.0.1", "port": prometheus.port}
    result = api.post("/connections/test", probe | {"schema": "http"})
    assert result["status"] is True, result
    assert f"Connected to http://127.0.0.1:{prometheus.port} (Prometheus 2." in result["message"]


def test_backfill_create_exports_every_window(
    scheduler_stack: tuple[AirflowStack, Api, str], s3_server: S3Server, history: HistorySpec
) -> None:
    stack, api, bucket = scheduler_stack
    first = history.start + H
    # SQLite lets one process write at a time and refuses, at once, a transaction whose snapshot
    # another process has written past ("database is locked"); Airflow's clean-up of a refused
    # `backfill create` then races the scheduler over the runs it deletes. So the backfill is
    # created while nothing else writes, as a single-writer database requires.
    with stack.paused("scheduler", "dag-processor"):
        stack.airflow(
            "backfill", "create", "--dag-id", DAG_ID, "--from-date", iso(first), "--to-date", iso(first + 3 * H),
            retries_when_locked=5,
        )  # fmt: skip
    runs = wait_for(
        stack,
        "the backfill runs",
        lambda: api.finished(api.runs(DAG_ID, "backfill")) and api.runs(DAG_ID, "backfill"),
        500,
    )
    starts = sorted(s for run in runs for s in run_windows(run))
    assert len(starts) >= 3 and starts == list(range(starts[0], starts[0] + len(starts) * H, H))
    assert first <= starts[0] <= first + H
    assert expected(starts) <= keys_of(s3_server, bucket)


def test_clear_one_mapped_instance_reruns_just_that_window(
    scheduler_stack: tuple[AirflowStack, Api, str], s3_server: S3Server
) -> None:
    stack, api, bucket = scheduler_stack
    client: Any = s3_server.client()
    run = sorted(api.runs(DAG_ID, "backfill"), key=lambda r: r["data_interval_start"])[0]
    window = run_windows(run)[0]
    keys = sorted(expected([window]))
    before = {k: client.get_object(Bucket=bucket, Key=k) for k in keys}
    bodies = {k: v["Body"].read() for k, v in before.items()}
    others = {
        k: client.head_object(Bucket=bucket, Key=k)["LastModified"] for k in keys_of(s3_server, bucket) - set(keys)
    }
    path = f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances/export_window/0"
    tries = api.get(path)["try_number"]
    time.sleep(1.1)  # LastModified has one-second resolution
    api.post(
        f"/dags/{DAG_ID}/clearTaskInstances",
        {"dag_run_id": run["dag_run_id"], "task_ids": [["export_window", 0]], "dry_run": False, "only_failed": False},
    )
    wait_for(stack, "the rerun", lambda: (ti := api.get(path))["try_number"] > tries and ti["state"] == "success", 300)
    for key in keys:
        after = client.get_object(Bucket=bucket, Key=key)
        assert after["Body"].read() == bodies[key]
        assert after["LastModified"] > before[key]["LastModified"]
    untouched = {k: client.head_object(Bucket=bucket, Key=k)["LastModified"] for k in others}
    assert untouched == others


def test_manual_run_with_params_reexports_the_range(
    scheduler_stack: tuple[AirflowStack, Api, str], s3_server: S3Server, history: HistorySpec
) -> None:
    stack, api, bucket = scheduler_stack
    start, end = history.end - 4 * H, history.end - 2 * H  # closed: the data reaches past now
    conf = f'{{"start": "{iso(start)}", "end": "{iso(end)}"}}'
    stack.airflow("dags", "trigger", DAG_ID, "--conf", conf, retries_when_locked=5)
    wait_for(stack, "the manual run", lambda: api.finished(api.runs(DAG_ID, "manual")), 400)
    assert expected([start, start + H]) <= keys_of(s3_server, bucket)
