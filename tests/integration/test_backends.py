"""The real backends side by side: Debian's Prometheus and Debian's VictoriaMetrics (single node, the
same generated history imported with its ``vmctl``). Where VictoriaMetrics answers differently
from Prometheus, the test says which and why."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from devtools.faults import FaultServer, Seen
from devtools.history import HistorySpec, PrometheusServer, VictoriaMetricsServer, build_tsdb
from devtools.s3server import S3Server
from finout_provider.catalogue import ExportSpec, render, select
from finout_provider.checks.status import cluster_status
from finout_provider.hooks.s3 import FinoutS3Hook
from finout_provider.s3.layout import build_key
from finout_provider.target import S3Target
from tests.conftest import BUCKET, PREFIX, set_connection
from tests.integration.test_cli import cli, clusters_file
from tests.integration.test_export import make_operator, read

pytestmark = pytest.mark.integration
H = 3600
METRICS = ["cpu_requests", "pod_labels", "cpu_usage_v2", "node_info", "node_cpu_capacity"]
Server = PrometheusServer | VictoriaMetricsServer


def answer_of(server: Server, query: str, start: int, end: int, step: int = 60) -> bytes:
    """What the server itself answers to ``query_range``, as it wrote it."""
    form = {"query": query, "start": start, "end": end, "step": step}
    response = requests.post(f"{server.url}/api/v1/query_range", data=form, timeout=60)
    response.raise_for_status()
    return response.content


def series_of(body: bytes) -> dict[tuple[tuple[str, str], ...], list[list[Any]]]:
    return {tuple(sorted(s["metric"].items())): s["values"] for s in json.loads(body)["data"]["result"]}


def test_every_object_is_the_backends_own_answer(backend: Server, s3: Any, history: HistorySpec) -> None:
    """Each object is the gzip of the very bytes the backend answers (VictoriaMetrics writes compact
    JSON with whole-second timestamps, Prometheus its own), and carries that answer's measures."""
    set_connection("p_backend", conn_type="prometheus", host="127.0.0.1", port=backend.port)
    first = history.start + 3 * H
    for start in (first, first + H):
        make_operator("p_backend", start, start + H, metrics=select(METRICS)).execute({})
    for start in (first, first + H):
        for metric in select(METRICS):
            key = build_key(PREFIX, "prod-eu", metric.name, start)
            own = answer_of(backend, render(metric.query, "cluster", "prod-eu"), start, start + H - 60)
            assert gzip.decompress(read(s3, key)) == own, (metric.name, start)
            head = s3.head_object(Bucket=BUCKET, Key=key)["Metadata"]
            assert int(head["finout-series"]) == len(json.loads(own)["data"]["result"]) > 0
            assert int(head["finout-samples"]) == int(head["finout-expected"])  # a whole history: no hole


@pytest.fixture
def exported(backend: Server, s3_server: S3Server, bucket: str, history: HistorySpec) -> tuple[Server, str, list[int]]:
    """Three windows of the backend exported to the S3 server, and ``aws_default`` pointing there."""
    set_connection("aws_default", **s3_server.connection())
    set_connection("p_exported", conn_type="prometheus", host="127.0.0.1", port=backend.port)
    starts = [history.start + k * H for k in (3, 4, 5)]
    for start in starts:
        make_operator("p_exported", start, start + H, metrics=select(METRICS), s3_bucket=bucket).execute({})
    return backend, bucket, starts


def test_preflight_plan_coverage_and_status_through_the_cli(
    exported: tuple[Server, str, list[int]], tmp_path: Path, history: HistorySpec
) -> None:
    """VictoriaMetrics offers none of Prometheus' status pages (flags and runtimeinfo answer 400
    "unsupported path requested", buildinfo an empty ``data``): the commands say so once, as a note,
    and exit as they would on Prometheus."""
    backend, bucket, starts = exported
    path = str(clusters_file(tmp_path, backend, bucket, METRICS=METRICS))  # type: ignore[arg-type]
    code, out, err = cli("preflight", "--cluster", "prod-eu", "--clusters-file", path, "--at", str(starts[-1] + H - 60))
    assert code == 0 and " 0 fail" in out, out + err
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    if isinstance(backend, VictoriaMetricsServer):
        assert len(notes) == 3 and "/api/v1/status/flags (" in out and "unsupported path" in out, out
    else:
        assert notes == [], out
    code, out, err = cli("plan", "--cluster", "prod-eu", "--clusters-file", path, "--now", str(starts[-1] + 2 * H))
    assert code == 0 and "windows of 3600s" in out and "Window cost" in out, out + err
    assert "retention" not in err and "Traceback" not in err, err  # an optional page is no warning
    window = ["--from", str(starts[0]), "--to", str(starts[-1] + H)]
    code, out, err = cli("coverage", "--cluster", "prod-eu", "--clusters-file", path, *window, "--deep")
    assert code == 0 and "3 complete" in out, out + err
    store = FinoutS3Hook("aws_default").store
    spec = ExportSpec(tuple(select(METRICS)))
    status = cluster_status(store, S3Target("prod-eu", bucket, PREFIX), spec, starts[-1] + H + 600, 3, 120, 3 * H)
    assert status.state == "ok" and status.incomplete == {} and status.empty == [], status.as_dict()


class Recording:
    """In front of a server: counts the refused ``query_range`` requests of each query."""

    def __init__(self, upstream: str) -> None:
        self.upstream, self.refused = upstream, {}

    def __call__(self, seen: Seen, handler: Any) -> None:
        answer = requests.request(
            seen.method,
            f"{self.upstream}{seen.path}",
            data=seen.body or None,
            timeout=60,
            headers={"Content-Type": seen.headers.get("Content-Type", "")},
        )
        if seen.path.endswith("/query_range") and answer.status_code != 200:
            query = parse_qs(seen.body.decode())["query"][0]
            self.refused[query] = self.refused.get(query, 0) + 1
        handler.send_response(answer.status_code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(answer.content)))
        handler.end_headers()
        handler.wfile.write(answer.content)


def test_a_limit_victoria_metrics_does_not_count_by_time_fails_after_three_refused_queries(
    limited_victoria: Server, victoria: Server, s3: Any, history: HistorySpec
) -> None:
    """Prometheus' --query.max-samples shrinks with the range, so a window is split until its pieces
    pass (test_split). VictoriaMetrics' -search.maxSamplesPerQuery refuses a quarter of a window as
    it refused the window: after the window, a half and a quarter, the metric fails naming the flag.
    What passes is exported as the unlimited server answers it."""
    start = history.start + 3 * H
    recording = Recording(limited_victoria.url)
    with FaultServer(recording) as proxy:
        set_connection("p_vm_limited", conn_type="prometheus", host="127.0.0.1", port=proxy.port)
        with pytest.raises(Exception, match=r"-search\.maxSamplesPerQuery") as failed:
            make_operator("p_vm_limited", start, start + H, metrics=select(["node_info", "pod_info"])).execute({})
    assert "refused as heavily as the whole window" in str(failed.value) and "raise -search.maxSamplesPerQuery" in str(
        failed.value
    )
    pod_info = render(next(m for m in select(["pod_info"])).query, "cluster", "prod-eu")
    assert recording.refused == {pod_info: 3}, recording.refused
    node_info = render(next(m for m in select(["node_info"])).query, "cluster", "prod-eu")
    key = build_key(PREFIX, "prod-eu", "node_info", start)
    assert gzip.decompress(read(s3, key)) == answer_of(victoria, node_info, start, start + H - 60)
    assert build_key(PREFIX, "prod-eu", "pod_info", start) not in [
        o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]
    ]


def test_victoria_metrics_points_limit_is_split_and_joined_as_one_answer(
    victoria: Server, s3: Any, history: HistorySpec, tmp_path: Path
) -> None:
    """-search.maxPointsPerTimeseries counts points, which a shorter range has fewer of: an hour at
    60 s (60 points) against 40 is exported in two pieces, joined into the unlimited answer."""
    server = VictoriaMetricsServer(
        build_tsdb(history, tmp_path / "points"), extra_args=["-search.maxPointsPerTimeseries=40"]
    ).start()
    try:
        set_connection("p_vm_points", conn_type="prometheus", host="127.0.0.1", port=server.port)
        start = history.start + 4 * H
        summary = make_operator("p_vm_points", start, start + H, metrics=select(METRICS)).execute({})
    finally:
        server.stop()
    assert {name: split["pieces"] for name, split in summary["split"].items()} == dict.fromkeys(METRICS, 2)
    assert "-search.maxPointsPerTimeseries" in summary["split"]["node_info"]["refused_by"]
    for metric in select(METRICS):
        body = gzip.decompress(read(s3, build_key(PREFIX, "prod-eu", metric.name, start)))
        own = answer_of(victoria, render(metric.query, "cluster", "prod-eu"), start, start + H - 60)
        assert series_of(body) == series_of(own), metric.name  # same series, values, labels


@pytest.mark.parametrize("kind", ["prometheus", "victoria-metrics"])
def test_data_a_backend_lost_is_flagged_from_its_own_answers(
    kind: str, s3: Any, history: HistorySpec, tmp_path: Path
) -> None:
    """Two hours of kube-state-metrics missing from the history: both backends' answers are exported
    whole, and the windows are flagged incomplete from the measures taken while they streamed
    (VictoriaMetrics, like Prometheus, carries the last sample for its staleness interval, then
    nothing)."""
    import dataclasses

    outage = history.start + 5 * H
    lossy = dataclasses.replace(history, outages=(("prod-eu", "kube_", outage, outage + 2 * H),))
    blocks = build_tsdb(lossy, tmp_path / "lossy")
    server: Server = PrometheusServer(blocks) if kind == "prometheus" else VictoriaMetricsServer(blocks)
    server.start()
    try:
        set_connection("p_lossy_backend", conn_type="prometheus", host="127.0.0.1", port=server.port)
        starts = [outage - k * H for k in (3, 2, 1)] + [outage, outage + H]
        for start in starts:
            make_operator("p_lossy_backend", start, start + H, metrics=select(METRICS)).execute({})
    finally:
        server.stop()
    spec = ExportSpec(tuple(select(METRICS)))
    status = cluster_status(
        FinoutS3Hook().store, S3Target("prod-eu", BUCKET, PREFIX), spec, outage + 2 * H + 600, 5, 120, 3 * H
    )
    flagged = {start: sorted(reasons) for start, reasons in status.incomplete.items()}
    kube = sorted(m for m in METRICS if m != "cpu_usage_v2")  # the kube-state-metrics ones
    assert flagged == {outage: kube, outage + H: kube}, status.as_dict()
