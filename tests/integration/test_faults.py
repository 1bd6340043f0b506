"""Fault injection through the real operator code path: what Prometheus and S3 do wrong, and what
is left in S3 afterwards (never a partial object)."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from devtools.faults import SUCCESS, FaultServer, Seen, forward, reply
from devtools.history import HistorySpec, serving_copy
from finout_provider.catalogue import CATALOGUE, ExportSpec
from finout_provider.s3.layout import build_key
from finout_provider.s3.store import GzipSpool
from finout_provider.target import S3Target
from tests.conftest import BUCKET, PREFIX, ROOT, set_connection
from tests.integration.test_export import all_keys, make_operator, read

pytestmark = pytest.mark.integration
H = 3600
ONE = [next(m for m in CATALOGUE if m.name == "node_info")]


def faults_then_forward(upstream: str, *faults: tuple[int, bytes, dict[str, str]]) -> Any:
    """Answer the first requests with ``faults``, then pass requests on to the real Prometheus."""
    queue = list(faults)
    upstream_handler = forward(upstream, timeout=60)

    def handler(seen: Seen, request: Any) -> None:
        if queue:
            status, body, headers = queue.pop(0)
            reply(request, status, body, headers)
            return
        upstream_handler(seen, request)

    return handler


def answer_with(*bodies: tuple[int, bytes, dict[str, str]]) -> Any:
    queue = list(bodies)

    def handler(seen: Seen, request: Any) -> None:
        status, body, headers = queue.pop(0) if len(queue) > 1 else queue[0]
        reply(request, status, body, headers)

    return handler


@pytest.mark.parametrize(
    ("first", "label"),
    [
        ((503, b'{"status":"error","errorType":"unavailable","error":"overloaded"}', {"Retry-After": "0"}), "503"),
        ((429, b"rate limited", {"Retry-After": "0"}), "429"),
        ((502, b"<html>bad gateway</html>", {}), "502 from a proxy"),
        ((504, b"<html>gateway timeout</html>", {}), "504 from a proxy"),
        ((500, b'{"status":"error","errorType":"internal","error":"querier restarting"}', {}), "500, no refusal"),
        ((400, b'{"__type":"ThrottlingException","message":"Rate exceeded"}', {}), "AMP throttling"),
        ((200, b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{}', {}), "body cut short"),
        (
            (200, b'{"status":"success","data":{"resultType":"matrix","result":[]},"warnings":["partial"]}', {}),
            "warnings",
        ),
    ],
)
def test_transient_faults_are_retried_and_the_window_completes(
    s3: Any, prometheus: Any, history: HistorySpec, first: Any, label: str
) -> None:
    with FaultServer(faults_then_forward(prometheus.url, first)) as server:
        set_connection(
            "p_fault", conn_type="prometheus", host="127.0.0.1", port=server.port, extra={"retry_wait": 0.01}
        )
        make_operator("p_fault", history.start, history.start + H, metrics=ONE).execute({})
    assert len(server.requests) == 2, label
    set_connection("p_direct", conn_type="prometheus", host="127.0.0.1", port=prometheus.port)
    make_operator("p_direct", history.start, history.start + H, metrics=ONE, s3_prefix="direct").execute({})
    key = build_key(PREFIX, "prod-eu", "node_info", history.start)
    assert read(s3, key) == read(s3, build_key("direct", "prod-eu", "node_info", history.start))
    assert json.loads(gzip.decompress(read(s3, key)))["data"]["result"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ((200, b'{"status":"error","errorType":"execution","error":"boom"}', {}), "boom"),
        (
            (
                422,
                b'{"status":"error","errorType":"execution","error":"query processing would load too many samples into memory"}',
                {},
            ),
            "too many samples",
        ),
        (
            (
                400,
                b'{"status":"error","errorType":"bad_data","error":"exceeded maximum resolution of 11,000 points per timeseries"}',
                {},
            ),
            "maximum resolution",
        ),
        ((200, b"<html>not json</html>", {}), "not valid JSON"),
    ],
)
def test_permanent_errors_fail_clearly_and_write_nothing(
    s3: Any, history: HistorySpec, answer: Any, expected: str
) -> None:
    with FaultServer(answer_with(answer)) as server:
        set_connection(
            "p_perm",
            conn_type="prometheus",
            host="127.0.0.1",
            port=server.port,
            extra={"retry_wait": 0.01, "max_retries": 1},
        )
        with pytest.raises(Exception) as err:
            make_operator("p_perm", history.start, history.start + H, metrics=ONE).execute({})
    assert (
        expected in str(err.value) and "metric 'node_info'" in str(err.value) and "cluster 'prod-eu'" in str(err.value)
    )
    assert all_keys(s3) == []


def test_a_stalled_read_times_out_and_is_fetched_again(s3: Any, history: HistorySpec) -> None:
    calls = []

    def stall_once(seen: Seen, request: Any) -> None:
        if "query_range" in seen.path:
            calls.append(1)
        if len(calls) == 1 and "query_range" in seen.path:
            request.send_response(200)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(SUCCESS)))
            request.end_headers()
            request.wfile.write(SUCCESS[:20])
            request.wfile.flush()
            time.sleep(3)  # stall mid-body, longer than the read timeout
            return
        reply(request, 200, SUCCESS)

    with FaultServer(stall_once) as server:
        set_connection(
            "p_stall",
            conn_type="prometheus",
            host="127.0.0.1",
            port=server.port,
            extra={"timeout": 1, "retry_wait": 0.01},
        )
        make_operator("p_stall", history.start, history.start + H, metrics=ONE).execute({})
    assert len(calls) == 2
    assert all_keys(s3) == [build_key(PREFIX, "prod-eu", "node_info", history.start)]


def test_a_slow_query_within_the_read_timeout_is_waited_for(s3: Any, prometheus: Any, history: HistorySpec) -> None:
    """A query that takes most of the client's read timeout is not abandoned: one attempt, exact data."""
    import requests

    calls = []

    def slow_proxy(seen: Seen, request: Any) -> None:
        calls.append(seen.path)
        time.sleep(2)  # the read timeout is 4 s
        upstream = requests.post(
            f"{prometheus.url}{seen.path}",
            data=seen.body,
            headers={"Content-Type": seen.headers.get("Content-Type", "application/x-www-form-urlencoded")},
            timeout=30,
        )
        reply(request, upstream.status_code, upstream.content)

    start = history.start + H
    with FaultServer(slow_proxy) as server:
        set_connection("p_slow", conn_type="prometheus", host="127.0.0.1", port=server.port, extra={"timeout": 4})
        make_operator("p_slow", start, start + H, metrics=ONE).execute({})
    assert calls == ["/api/v1/query_range"]
    set_connection("p_direct", conn_type="prometheus", host="127.0.0.1", port=prometheus.port)
    make_operator("p_direct", start, start + H, metrics=ONE, s3_prefix="direct").execute({})
    key = build_key(PREFIX, "prod-eu", "node_info", start)
    assert read(s3, key) == read(s3, build_key("direct", "prod-eu", "node_info", start))
    assert json.loads(gzip.decompress(read(s3, key)))["data"]["result"]


def test_a_query_past_the_server_timeout_is_split_or_fails_with_what_to_do(
    s3: Any, tsdb: Any, prometheus: Any, history: HistorySpec
) -> None:
    """A real Prometheus whose query timeout (1 ms) refuses the whole history in one query: the
    pieces that pass give exactly the unlimited server's answer; if even a smallest piece times out
    on this machine, the failure names the limit and writes nothing."""
    heavy = [next(m for m in CATALOGUE if m.name == "cpu_usage_v2")]
    with serving_copy(tsdb, extra_args=["--query.timeout=1ms"]) as server:
        set_connection("p_timeout", conn_type="prometheus", host="127.0.0.1", port=server.port)
        try:
            summary = make_operator("p_timeout", history.start, history.end, metrics=heavy).execute({})
        except Exception as err:  # noqa: BLE001 - the other outcome, checked below
            message = str(err)
            assert "metric 'cpu_usage_v2'" in message and "cluster 'prod-eu'" in message
            assert "even a piece of 60s is refused" in message and "raise --query.timeout" in message
            assert all_keys(s3) == []
            return
    assert summary["split"]["cpu_usage_v2"]["refused_by"] == "--query.timeout"
    set_connection("p_whole", conn_type="prometheus", host="127.0.0.1", port=prometheus.port)
    make_operator("p_whole", history.start, history.end, metrics=heavy, s3_prefix="whole").execute({})
    split = json.loads(gzip.decompress(read(s3, build_key(PREFIX, "prod-eu", "cpu_usage_v2", history.start))))
    whole = json.loads(gzip.decompress(read(s3, build_key("whole", "prod-eu", "cpu_usage_v2", history.start))))
    assert split["data"]["result"] == whole["data"]["result"]


class _Raw:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Any:
        yield self.data


def inject_s3_errors(client: Any, operation: str, answers: list[tuple[int, str]]) -> list[str]:
    """Answer the next calls of ``operation`` with these S3 errors, before they reach the server."""
    from botocore.awsrequest import AWSResponse

    seen: list[str] = []

    def fault(request: Any, **_: Any) -> Any:
        seen.append(operation)
        if not answers:
            return None
        status, code = answers.pop(0)
        body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>injected</Message></Error>"
        return AWSResponse(request.url, status, {}, _Raw(body.encode()))

    client.meta.events.register(f"before-send.s3.{operation}", fault)
    return seen


def test_s3_500_and_slowdown_on_put_and_parts_are_retried(s3: Any, prom_conn: str, history: HistorySpec) -> None:
    op = make_operator(prom_conn, history.start, history.start + H, metrics=ONE)
    client = op.store.client
    puts = inject_s3_errors(client, "PutObject", [(503, "SlowDown"), (500, "InternalError")])
    op.execute({})
    assert len(puts) == 3  # two injected failures, then the real PUT
    assert all_keys(s3) == [build_key(PREFIX, "prod-eu", "node_info", history.start)]

    parts = inject_s3_errors(client, "UploadPart", [(503, "SlowDown"), (500, "InternalError")])
    chunks = [os.urandom(1 << 20) for _ in range(20)]
    with GzipSpool() as spool:
        spool.write(iter(chunks))
        op.store.put_file(spool, BUCKET, f"{PREFIX}/big.json.gz", {})
    assert len(parts) >= 5  # three parts, two of the attempts failed
    assert gzip.decompress(read(s3, f"{PREFIX}/big.json.gz")) == b"".join(chunks)


def test_access_denied_fails_fast_naming_action_key_and_policy(s3: Any, prom_conn: str, history: HistorySpec) -> None:
    start = history.start + 5 * H
    op = make_operator(prom_conn, start, start + H, metrics=ONE)
    puts: list[str] = []

    def deny(**_: Any) -> None:
        from botocore.exceptions import ClientError

        puts.append("PutObject")
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "PutObject")

    op.s3_hook.get_conn().meta.events.register("before-call.s3.PutObject", deny)
    with pytest.raises(Exception) as err:
        op.execute({})
    assert len(puts) == 1  # not retried
    message = str(err.value)
    assert "s3:PutObject on s3://finout-metrics/k8s/prometheus/prod-eu/" in message and "AccessDenied" in message
    assert "seed's policy" in message
    assert build_key(PREFIX, "prod-eu", "node_info", start) not in all_keys(s3)


def test_missing_bucket_fails_with_a_clear_message(s3: Any, prom_conn: str, history: HistorySpec) -> None:
    op = make_operator(prom_conn, history.start, history.start + H, metrics=ONE, s3_bucket="no-such-bucket")
    with pytest.raises(Exception, match="bucket 'no-such-bucket' does not exist"):
        op.execute({})


def test_a_worker_killed_mid_export_leaves_no_object_and_the_rerun_finishes(
    s3_server: Any, history: HistorySpec, prometheus: Any
) -> None:
    """SIGKILL while 24 MiB of an answer have arrived and the rest is awaited: nothing is written
    before an answer is whole, so nothing appears under the key and no upload was begun; a rerun
    completes."""
    client = s3_server.client()
    client.create_bucket(Bucket="finout-kill")
    # 8 MiB of valid series that gzip cannot shrink much (random label values)
    noise = b"".join(
        b',{"metric":{"x":"%s"},"values":[[1,"1"]]}' % os.urandom(32 << 10).hex().encode() for _ in range(128)
    )

    sent = threading.Event()

    def endless(seen: Seen, request: Any) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Transfer-Encoding", "chunked")
        request.end_headers()
        head = b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}'
        for piece in (head, noise, noise, noise):
            request.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        request.wfile.flush()
        sent.set()
        time.sleep(60)  # the worker dies while waiting for the rest

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env["AIRFLOW_CONN_AWS_KILL"] = json.dumps(s3_server.connection())
    script = (
        "import sys\n"
        "from finout_provider.catalogue import ExportSpec, select\n"
        "from finout_provider.target import S3Target\n"
        "from finout_provider.transfers.prometheus_to_s3 import PrometheusToS3Operator\n"
        "op = PrometheusToS3Operator(task_id='t', target=S3Target('prod-eu', 'finout-kill', 'k8s', 'aws_kill'),\n"
        "    window_start=int(sys.argv[1]), window_end=int(sys.argv[1]) + 3600, spec=ExportSpec(select(['node_info'])),\n"
        "    prometheus_conn_id='p_kill', query_delay_seconds=0)\n"
        "op.execute({})\n"
    )
    key = build_key("k8s", "prod-eu", "node_info", history.start)
    with FaultServer(endless) as server:
        env["AIRFLOW_CONN_P_KILL"] = json.dumps({"conn_type": "prometheus", "host": "127.0.0.1", "port": server.port})
        worker = subprocess.Popen([sys.executable, "-c", script, str(history.start)], env=env, cwd=ROOT)
        assert sent.wait(60) and worker.poll() is None, "the worker never read the answer"
        time.sleep(1)  # the worker reads what was sent, and waits for the rest
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    assert "Contents" not in client.list_objects_v2(Bucket="finout-kill")  # nothing visible
    assert not client.list_multipart_uploads(Bucket="finout-kill").get("Uploads")  # nothing begun
    env["AIRFLOW_CONN_P_KILL"] = json.dumps({"conn_type": "prometheus", "host": "127.0.0.1", "port": prometheus.port})
    subprocess.run([sys.executable, "-c", script, str(history.start)], env=env, cwd=ROOT, check=True, timeout=120)
    body = json.loads(gzip.decompress(client.get_object(Bucket="finout-kill", Key=key)["Body"].read()))
    assert body["status"] == "success" and body["data"]["result"]


def test_two_runs_exporting_the_same_window_at_once_agree(
    s3_server: Any, history: HistorySpec, prometheus: Any
) -> None:
    """Two workers (processes) export the same window at the same moment: same keys, same bytes."""
    client = s3_server.client()
    client.create_bucket(Bucket="finout-twice")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AIRFLOW_CONN_AWS_TWICE": json.dumps(s3_server.connection()),
        "AIRFLOW_CONN_P_TWICE": json.dumps({"conn_type": "prometheus", "host": "127.0.0.1", "port": prometheus.port}),
    }
    script = (
        "import sys\n"
        "from finout_provider.catalogue import ExportSpec\n"
        "from finout_provider.target import S3Target\n"
        "from finout_provider.transfers.prometheus_to_s3 import PrometheusToS3Operator\n"
        "op = PrometheusToS3Operator(task_id='t', target=S3Target('prod-eu', 'finout-twice', 'k8s', 'aws_twice'),\n"
        "    window_start=int(sys.argv[1]), window_end=int(sys.argv[1]) + 3600, cluster_label='cluster',\n"
        "    spec=ExportSpec(), prometheus_conn_id='p_twice', query_delay_seconds=0)\n"
        "op.execute({})\n"
    )
    start = history.start + 2 * H
    workers = [subprocess.Popen([sys.executable, "-c", script, str(start)], env=env, cwd=ROOT) for _ in range(2)]
    assert [w.wait(300) for w in workers] == [0, 0]
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="finout-twice")["Contents"])
    assert len(keys) == len(CATALOGUE)
    first = {k: client.get_object(Bucket="finout-twice", Key=k)["Body"].read() for k in keys}
    subprocess.run([sys.executable, "-c", script, str(start)], env=env, cwd=ROOT, check=True, timeout=300)
    assert {k: client.get_object(Bucket="finout-twice", Key=k)["Body"].read() for k in keys} == first


def test_after_the_faults_clear_gap_repair_leaves_the_range_complete(
    s3: Any, prometheus: Any, history: HistorySpec
) -> None:
    """Closing sweep: windows exported through different faults, one lost for good, then the next
    scheduled run's gap repair; in the end no window of the range is missing and none is corrupt."""
    from finout_provider.operators.plan import PlanWindowsOperator
    from finout_provider.sensors.export import FinoutExportSensor

    starts = [history.start + k * H for k in range(1, 7)]
    faults: list[tuple[int, bytes, dict[str, str]] | None] = [
        (503, b'{"status":"error","errorType":"unavailable","error":"overloaded"}', {"Retry-After": "0"}),
        (429, b"slow down", {"Retry-After": "0"}),
        (200, b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{}', {}),
        None,  # Prometheus down for this window: the task fails for good
        (502, b"<html>bad gateway</html>", {}),
        (200, b'{"status":"success","data":{"resultType":"matrix","result":[]},"warnings":["partial"]}', {}),
    ]
    for start, fault in zip(starts, faults, strict=True):
        if fault is None:
            set_connection(
                "p_down", conn_type="prometheus", host="127.0.0.1", port=1, extra={"max_retries": 1, "retry_wait": 0.01}
            )
            with pytest.raises(Exception, match="cannot reach Prometheus"):
                make_operator("p_down", start, start + H, metrics=ONE).execute({})
            continue
        with FaultServer(faults_then_forward(prometheus.url, fault)) as server:
            set_connection(
                "p_sweep", conn_type="prometheus", host="127.0.0.1", port=server.port, extra={"retry_wait": 0.01}
            )
            make_operator("p_sweep", start, start + H, metrics=ONE).execute({})
    lost = starts[3]
    assert build_key(PREFIX, "prod-eu", "node_info", lost) not in all_keys(s3)

    class Run:
        run_type = "scheduled"

    plan = PlanWindowsOperator(
        task_id="plan_windows", target=S3Target("prod-eu", BUCKET, PREFIX), spec=ExportSpec(tuple(ONE)),
        settle_seconds=0,
    )  # fmt: skip
    last = starts[-1]
    windows = plan.execute({"dag_run": Run(), "data_interval_start": last, "data_interval_end": last + H})  # type: ignore[arg-type]
    assert {"window_start": lost, "window_end": lost + H} in windows
    set_connection("p_direct", conn_type="prometheus", host="127.0.0.1", port=prometheus.port)
    for window in windows:
        make_operator("p_direct", window["window_start"], window["window_end"], metrics=ONE).execute({})

    sensor = FinoutExportSensor(
        task_id="validate_export", target=S3Target("prod-eu", BUCKET, PREFIX), spec=ExportSpec(tuple(ONE)),
        windows=[{"window_start": s, "window_end": s + H} for s in starts],
    )  # fmt: skip
    assert sensor.problems() == []
    for start in starts:
        body = json.loads(gzip.decompress(read(s3, build_key(PREFIX, "prod-eu", "node_info", start))))
        assert body["status"] == "success" and body["data"]["result"] and "warnings" not in body


def test_a_500_that_is_no_refusal_is_retried_but_not_for_long(s3: Any, history: HistorySpec) -> None:
    """A querier or proxy answers 500 for a transient fault, or for a defect no retry changes: three
    attempts in all, then the metric fails naming the server's text, as a retryable error (the task
    itself is retried)."""
    from finout_provider.compat import AirflowException, AirflowFailException

    internal = (500, b'{"status":"error","errorType":"internal","error":"store gateway unavailable"}', {})
    with FaultServer(answer_with(internal)) as server:
        set_connection("p_500", conn_type="prometheus", host="127.0.0.1", port=server.port, extra={"retry_wait": 0.01})
        with pytest.raises(AirflowException, match="store gateway unavailable") as failed:
            make_operator("p_500", history.start, history.start + H, metrics=ONE).execute({})
    assert len(server.requests) == 3 and "after 3 attempts" in str(failed.value)
    assert not isinstance(failed.value, AirflowFailException) and all_keys(s3) == []


def test_errors_a_retry_cannot_fix_fail_at_once_and_transient_ones_retry(
    s3: Any, prom_conn: str, history: HistorySpec
) -> None:
    """One list (:mod:`finout_provider.failures`): AirflowFailException skips the task's retries."""
    from finout_provider.compat import AirflowException, AirflowFailException
    from finout_provider.operators.plan import PlanWindowsOperator

    began = time.monotonic()
    planner = PlanWindowsOperator(
        task_id="plan_windows", target=S3Target("prod-eu", "no-such-bucket", PREFIX), spec=ExportSpec(tuple(ONE)),
        settle_seconds=0,
    )  # fmt: skip
    with pytest.raises(AirflowFailException, match="bucket 'no-such-bucket' does not exist"):
        scheduled = {"dag_run": SimpleNamespace(run_type="scheduled")}  # gap repair reads S3
        planner.execute({"data_interval_start": history.end - H, "data_interval_end": history.end} | scheduled)  # type: ignore[arg-type]
    with pytest.raises(AirflowFailException, match="bucket 'no-such-bucket' does not exist"):
        make_operator(prom_conn, history.start, history.start + H, metrics=ONE, s3_bucket="no-such-bucket").execute({})
    syntax = [{"name": "node_info", "query": "sum(kube_node_info"}]
    with pytest.raises(AirflowFailException, match="bad_data") as err:
        make_operator(prom_conn, history.start, history.start + H, metrics=syntax).execute({})
    assert "a retry cannot fix this" in str(err.value)
    with pytest.raises(AirflowFailException, match="unknown_conn"):
        make_operator("unknown_conn", history.start, history.start + H, metrics=ONE).execute({})
    assert time.monotonic() - began < 30
    unavailable = (503, b'{"status":"error","errorType":"unavailable","error":"overloaded"}', {})
    with FaultServer(answer_with(unavailable)) as server:
        set_connection("p_503", conn_type="prometheus", host="127.0.0.1", port=server.port,
                       extra={"retry_wait": 0.01, "max_retries": 1})  # fmt: skip
        with pytest.raises(AirflowException) as transient:
            make_operator("p_503", history.start, history.start + H, metrics=ONE).execute({})
    assert not isinstance(transient.value, AirflowFailException) and len(server.requests) == 2
    assert all_keys(s3) == []
