"""An answer becomes an object only when it is proven whole: loopback servers in front of the real
operator, CLI and planner, each case checked by what is in S3 afterwards or what the message holds."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from devtools.faults import FaultServer, Seen, reply
from devtools.history import HistorySpec, PrometheusServer
from devtools.s3server import S3Server
from finout_provider.catalogue import CATALOGUE
from finout_provider.hooks.prometheus import PrometheusHook
from finout_provider.plan.windows import Window
from finout_provider.prometheus.errors import PrometheusError
from finout_provider.s3.layout import build_key
from tests.conftest import PREFIX, set_connection
from tests.integration.test_cli import PREFIX as CLI_PREFIX
from tests.integration.test_cli import clusters_file, coverage_args, export
from tests.integration.test_export import all_keys, make_operator, read

pytestmark = pytest.mark.integration
H = 3600
ONE = [next(m for m in CATALOGUE if m.name == "node_info")]


def big_answer(series: int = 8000, **extra: Any) -> bytes:
    """A compact matrix answer of well over 1 MiB; ``extra`` keys come first (``warnings`` first)."""
    result = [
        {"metric": {"node": f"node-{i}", "provider_id": f"aws:///eu-west-1a/i-{i:017x}"},
         "values": [[1_700_000_000 + 60 * k, "1"] for k in range(12)]}
        for i in range(series)
    ]  # fmt: skip
    doc = extra | {"status": "success", "data": {"resultType": "matrix", "result": result}}
    return json.dumps(doc, separators=(",", ":")).encode()


def unframed(body: bytes) -> Any:
    """A handler that sends ``body`` without Content-Length or chunking and closes: legal HTTP,
    so only the JSON can tell a cut."""

    def handler(seen: Seen, request: Any) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Connection", "close")
        request.end_headers()
        request.wfile.write(body)
        request.close_connection = True

    return handler


def connect(conn_id: str, server: FaultServer, **extra: Any) -> str:
    fields = extra.pop("fields", {})
    set_connection(
        conn_id, conn_type="prometheus", host="127.0.0.1", port=server.port,
        extra={"retry_wait": 0.01, "max_retries": 1} | extra, **fields,
    )  # fmt: skip
    return conn_id


def test_a_cut_unframed_answer_over_1_mib_writes_nothing(s3: Any, history: HistorySpec) -> None:
    body = big_answer()
    cut = body.index(b"]]}", len(body) // 2) + 3  # right after a whole series
    assert cut > 1 << 20
    with FaultServer(unframed(body[:cut])) as server:
        op = make_operator(connect("p_cut", server), history.start, history.start + H, metrics=ONE)
        with pytest.raises(Exception, match="ends before its JSON does") as err:
            op.execute({})
    assert "after 2 attempts" in str(err.value) and len(server.requests) == 2
    assert all_keys(s3) == []


@pytest.mark.parametrize(
    "body",
    [big_answer(isPartial=True), big_answer(warnings=["receive series from store 10.0.0.7:10901: rpc error"])],
    ids=["victoriametrics-isPartial", "thanos-warnings-before-data"],
)
def test_partial_answers_over_1_mib_write_nothing(s3: Any, history: HistorySpec, body: bytes) -> None:
    with FaultServer(unframed(body)) as server:
        op = make_operator(connect("p_partial", server), history.start, history.start + H, metrics=ONE)
        with pytest.raises(Exception, match="partial"):
            op.execute({})
    assert all_keys(s3) == []


def test_promql_annotations_are_written_with_the_answer(s3: Any, history: HistorySpec) -> None:
    body = big_answer(
        series=10,
        warnings=["PromQL warning: metric might not be a counter, name does not end in _total: kube_node_info"],
        infos=["PromQL info: metric might not be a histogram"],
    )
    with FaultServer(unframed(body)) as server:
        make_operator(connect("p_annotated", server), history.start, history.start + H, metrics=ONE).execute({})
    assert gzip.decompress(read(s3, build_key(PREFIX, "prod-eu", "node_info", history.start))) == body


def test_a_trickling_answer_fails_at_its_deadline(s3: Any, history: HistorySpec) -> None:
    def trickle(seen: Seen, request: Any) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.end_headers()
        request.wfile.write(b'{"status":"success","data":{"resultType":"matrix","result":[')
        try:
            for _ in range(200):  # one valid byte (JSON whitespace) every 0.3 s: each read succeeds
                request.wfile.write(b" ")
                request.wfile.flush()
                time.sleep(0.3)
        except OSError:
            pass
        request.close_connection = True

    with FaultServer(trickle) as server:
        conn = connect("p_trickle", server, answer_timeout=2, max_retries=0)
        op = make_operator(conn, history.start, history.start + H, metrics=ONE)
        began = time.monotonic()
        with pytest.raises(Exception, match=r"answer_timeout \(2s"):
            op.execute({})
    assert time.monotonic() - began < 15
    assert all_keys(s3) == []


SECRETS = {"password": "pw-SECRET-2", "token": "tok-SECRET-1"}


def echo_as(kind: str) -> Any:
    """A server that answers 200 and echoes the request's headers (what a misconfigured proxy does)."""

    def handler(seen: Seen, request: Any) -> None:
        headers = json.dumps({"Authorization": seen.headers.get("Authorization"), **seen.headers})
        if kind == "html":
            reply(request, 200, f"<p>{headers}</p><p>Please sign in.</p>".encode())
        else:
            reply(request, 200, json.dumps({"status": "error", "error": f"denied: {headers}"}).encode())

    return handler


@pytest.mark.parametrize("kind", ["html", "json"])
@pytest.mark.parametrize("auth", ["basic", "bearer", "url", "sigv4"])
def test_echoed_credentials_never_reach_a_message_or_log(
    kind: str, auth: str, caplog: pytest.LogCaptureFixture, s3_server: S3Server
) -> None:
    caplog.set_level(logging.INFO)  # botocore itself logs SigV4 signatures at DEBUG
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if auth == "basic":
        fields = {"login": "alice", "password": SECRETS["password"]}
    elif auth == "bearer":
        extra = {"bearer_token": SECRETS["token"]}
    elif auth == "sigv4":
        set_connection("aws_sig", conn_type="aws", login="AKIDEXAMPLE", password=SECRETS["password"])
        extra = {"sigv4": True, "aws_conn_id": "aws_sig", "region_name": "eu-west-1"}
    with FaultServer(echo_as(kind)) as server:
        conn = connect(f"p_echo_{auth}", server, fields=fields, **extra)
        if auth == "url":
            set_connection(conn, conn_type="prometheus", host=f"http://alice:{SECRETS['password']}@127.0.0.1",
                           port=server.port, extra={"retry_wait": 0.01, "max_retries": 1})  # fmt: skip
        hook = PrometheusHook(conn).get_conn()
        messages = []
        for call in (lambda: hook.query_range("up", 0, 60, 60), lambda: hook.query("up"), hook.check_ready):
            with pytest.raises(PrometheusError) as err:
                call()
            messages.append(str(err.value))
    sent = server.requests[0].headers["Authorization"]
    assert sent  # the echo did carry the credentials
    text = "\n".join(messages) + caplog.text
    assert "127.0.0.1" in messages[0]
    for secret in (*SECRETS.values(), base64.b64encode(f"alice:{SECRETS['password']}".encode()).decode()):
        assert secret not in text
    assert sent.split()[-1] not in text
    if auth == "sigv4":
        signature = sent.rsplit("Signature=", 1)[1]
        assert signature not in text
        assert "Signature=***" in text or kind == "html"  # an HTML page is quoted by its first bytes only


def test_every_cli_command_turns_a_json_list_into_one_line(
    tmp_path: Path, s3_server: S3Server, bucket: str, history: HistorySpec
) -> None:
    from tests.integration.test_cli import cli

    set_connection("aws_default", **s3_server.connection())
    with FaultServer(lambda seen, request: reply(request, 200, b"[1, 2, 3]")) as server:
        path = clusters_file(tmp_path, PrometheusServer(tmp_path, port=server.port), bucket)
        runs = {
            "preflight": cli("preflight", "--cluster", "prod-eu", "--clusters-file", str(path)),
            "plan": cli("plan", "--cluster", "prod-eu", "--clusters-file", str(path)),
            "status": cli("status", "--clusters-file", str(path)),
            "coverage": cli(*coverage_args(path, history.end - 2 * H, history.end)),
        }
    for command, (code, out, err) in runs.items():
        assert "Traceback" not in out + err, command
        assert code in (0, 1, 2), command
    code, _, err = runs["preflight"]
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"127.0.0.1:{server.port}" in err and "cluster prod-eu" in err and "JSON list" in err


def test_a_cut_object_in_s3_is_found_and_exported_again_by_gap_repair(
    tmp_path: Path, prometheus: PrometheusServer, history: HistorySpec, s3_server: S3Server, bucket: str
) -> None:
    """An object written by anything but the export (an older version cut it) is read whole."""
    from tests.integration.test_cli import cli

    set_connection("aws_default", **s3_server.connection())
    path = clusters_file(tmp_path, prometheus, bucket, BACKFILL_DAYS=1)
    starts = [history.end - 3 * H, history.end - 2 * H]
    export(prometheus, bucket, starts)
    client: Any = s3_server.client()
    key = build_key(CLI_PREFIX, "prod-eu", "cpu_requests", starts[1])
    whole = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    body = gzip.decompress(whole)
    cut = body[: body.rindex(b"]]}") + 3]  # a whole series, then nothing: JSON that ends early
    client.put_object(Bucket=bucket, Key=key, Body=gzip.compress(cut, mtime=0))
    code, out, _ = cli(*coverage_args(path, starts[0], starts[1] + H), "--deep")
    assert code == 1 and "1 complete, 0 partial, 0 missing, 1 corrupt" in out, out
    assert "cpu_requests not a whole answer (the answer ends before its JSON does" in out
    code, out, err = cli("plan", "--cluster", "prod-eu", "--clusters-file", str(path), "--now", str(history.end + 600))
    planned = [line.strip() for line in out.split("Window cost")[0].splitlines() if line.startswith("  ")]
    assert code == 0 and Window(starts[1], starts[1] + H).label in planned, out
    assert Window(starts[0], starts[0] + H).label not in planned
    assert "1 objects are not whole answers" in err and key in err
