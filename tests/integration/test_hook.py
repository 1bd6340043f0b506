"""PrometheusHook: each auth mode checked by a loopback server that inspects the headers, path
prefixes, retries, and streaming against the real Prometheus."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from devtools.faults import SUCCESS, FaultServer, Seen, reply
from devtools.history import HistorySpec, PrometheusServer
from finout_provider.hooks.prometheus import PrometheusHook
from finout_provider.prometheus.errors import PrometheusError
from tests.conftest import set_connection

pytestmark = pytest.mark.integration


def ok(seen: Seen, handler: Any) -> None:
    reply(handler, 200, SUCCESS)


def run_query(conn_id: str) -> dict[str, Any]:
    return PrometheusHook(conn_id).get_conn().query_range("up", 0, 60, 60)


def test_basic_auth_and_path_prefix() -> None:
    with FaultServer(ok) as server:
        set_connection(
            "p_basic",
            conn_type="prometheus",
            host="127.0.0.1",
            port=server.port,
            login="user",
            password="p@ss:w0rd",
            extra={"path_prefix": "/prom/"},
        )
        assert run_query("p_basic")["status"] == "success"
    seen = server.requests[0]
    assert seen.method == "POST" and seen.path == "/prom/api/v1/query_range"
    assert seen.headers["Authorization"] == "Basic " + base64.b64encode(b"user:p@ss:w0rd").decode()
    assert b"query=up" in seen.body and b"step=60" in seen.body


def test_bearer_tenant_and_extra_headers() -> None:
    with FaultServer(ok) as server:
        set_connection(
            "p_bearer",
            conn_type="prometheus",
            host="127.0.0.1",
            port=server.port,
            extra={"bearer_token": "tok-123", "x_scope_orgid": "tenant-7", "headers": {"X-Team": "cost"}},
        )
        run_query("p_bearer")
    headers = server.requests[0].headers
    assert headers["Authorization"] == "Bearer tok-123"
    assert headers["X-Scope-OrgID"] == "tenant-7" and headers["X-Team"] == "cost"


def test_host_given_as_url() -> None:
    with FaultServer(ok) as server:
        set_connection("p_url", conn_type="prometheus", host=f"http://127.0.0.1:{server.port}/mimir/prometheus")
        hook = PrometheusHook("p_url").get_conn()
        assert hook.base_url == f"http://127.0.0.1:{server.port}/mimir/prometheus"
        hook.check_ready()
    assert server.requests[0].path == "/mimir/prometheus/api/v1/query"


def test_sigv4_signature_is_valid_for_the_request() -> None:
    set_connection(
        "aws_amp",
        conn_type="aws",
        login="AKIDEXAMPLE",
        password="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        extra={"region_name": "us-west-2"},
    )
    with FaultServer(ok) as server:
        set_connection(
            "p_sigv4",
            conn_type="prometheus",
            host="127.0.0.1",
            port=server.port,
            extra={"sigv4": True, "aws_conn_id": "aws_amp", "path_prefix": "workspaces/ws-1"},
        )
        run_query("p_sigv4")
    seen = server.requests[0]
    auth = seen.headers["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-west-2/aps/aws4_request" in auth
    # Recompute the signature from what arrived, with the secret the server knows.
    amz_date = seen.headers["X-Amz-Date"]
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    headers = {name: seen.headers[next(k for k in seen.headers if k.lower() == name)] for name in signed}
    request = AWSRequest(
        method="POST", url=f"http://127.0.0.1:{server.port}{seen.path}", data=seen.body, headers=headers
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), "aps", "us-west-2")
    canonical = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical)
    expected = signer.signature(string_to_sign, request)
    assert auth.endswith(f"Signature={expected}")
    assert dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")  # a real timestamp
    assert "host" in signed and urlsplit(request.url).path == "/workspaces/ws-1/api/v1/query_range"


def test_retry_after_is_honoured_and_400_is_not_retried() -> None:
    answers = iter([(429, {"Retry-After": "1"}), (503, {}), (200, {})])

    def flaky(seen: Seen, handler: Any) -> None:
        status, headers = next(answers)
        reply(handler, status, SUCCESS if status == 200 else b'{"status":"error","error":"slow down"}', headers)

    with FaultServer(flaky) as server:
        set_connection(
            "p_flaky", conn_type="prometheus", host="127.0.0.1", port=server.port, extra={"retry_wait": 0.01}
        )
        import time

        began = time.monotonic()
        assert run_query("p_flaky")["status"] == "success"
        assert time.monotonic() - began >= 1.0  # waited as Retry-After asked
    assert len(server.requests) == 3

    def bad(seen: Seen, handler: Any) -> None:
        reply(handler, 400, b'{"status":"error","errorType":"bad_data","error":"parse error"}')

    with FaultServer(bad) as server:
        set_connection("p_bad", conn_type="prometheus", host="127.0.0.1", port=server.port)
        with pytest.raises(PrometheusError, match=r"HTTP 400.*bad_data: parse error") as err:
            run_query("p_bad")
    assert len(server.requests) == 1 and "'up'" in str(err.value)


def test_connection_refused_names_the_connection() -> None:
    from devtools.history import free_port

    set_connection(
        "p_down",
        conn_type="prometheus",
        host="127.0.0.1",
        port=free_port(),
        extra={"max_retries": 1, "retry_wait": 0.01},
    )
    with pytest.raises(PrometheusError, match=r"cannot reach Prometheus.*'p_down'"):
        run_query("p_down")


def test_against_real_prometheus_stream_and_test_connection(
    prometheus: PrometheusServer, history: HistorySpec, tsdb: Any
) -> None:
    set_connection("p_real", conn_type="prometheus", host="127.0.0.1", port=prometheus.port)
    hook = PrometheusHook("p_real")
    ok_, message = hook.test_connection()
    assert ok_ and "Prometheus 2." in message
    chunks: list[bytes] = []
    answer = hook.get_conn().read_range("kube_pod_info", history.start, history.start + 3540, 60, chunks.extend)
    assert b"".join(chunks).startswith(b'{"status":"success","data":{"resultType":"matrix"')
    assert answer.size == len(b"".join(chunks)) and answer.series > 0 and answer.retries == 0


def test_readiness_is_right_with_a_route_prefix(tsdb: Any) -> None:
    import shutil
    import tempfile
    from pathlib import Path

    copy = Path(tempfile.mkdtemp()) / "data"
    shutil.copytree(tsdb, copy, ignore=shutil.ignore_patterns("lock", "wal", "chunks_head"))
    server = PrometheusServer(copy, route_prefix="prom").start()
    try:
        set_connection(
            "p_prefixed", conn_type="prometheus", host="127.0.0.1", port=server.port, extra={"path_prefix": "prom"}
        )
        assert PrometheusHook("p_prefixed").test_connection()[0]
        set_connection("p_noprefix", conn_type="prometheus", host="127.0.0.1", port=server.port)
        assert not PrometheusHook("p_noprefix").test_connection()[0]
    finally:
        server.stop()
        shutil.rmtree(copy.parent, ignore_errors=True)
