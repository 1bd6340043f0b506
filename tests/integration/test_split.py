"""Windows a server refuses as too heavy: split in time, joined, and equal to the unlimited answer.

The limited servers are real Prometheus servers over the same data with a low
``--query.max-samples``; other backends' refusals are spoken by a loopback server that passes
pieces short enough on to the real Prometheus.
"""

from __future__ import annotations

import gzip
import json
from itertools import pairwise
from typing import Any
from urllib.parse import parse_qs

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.faults import FaultServer, Seen, forward, reply
from devtools.history import HistorySpec, PrometheusServer, serving_copy
from finout_provider.catalogue import CATALOGUE, ExportSpec, render
from finout_provider.hooks.prometheus import PrometheusHook
from finout_provider.plan.windows import DAY
from finout_provider.prometheus.errors import REFUSALS
from finout_provider.prometheus.split import JoinedBody
from finout_provider.s3.layout import build_key
from tests.conftest import PREFIX, set_connection
from tests.integration.test_export import all_keys, make_operator, read

pytestmark = pytest.mark.integration
H = 3600
# On the generated history, 1,000 samples refuse several catalogue queries over a window and over
# its half, and let every query pass over a quarter.
MAX_SAMPLES = 1000


def as_series(body: bytes) -> list[tuple[tuple[tuple[str, str], ...], list[list[Any]]]]:
    """An answer as (labels, values) in the order it lists them, timestamps as floats."""
    doc = json.loads(body)
    assert doc["status"] == "success" and doc["data"]["resultType"] == "matrix"
    return [
        (tuple(sorted(s["metric"].items())), [[float(t), v] for t, v in s["values"]]) for s in doc["data"]["result"]
    ]


@pytest.fixture(scope="module")
def limited(tsdb: Any) -> Any:
    with serving_copy(tsdb, extra_args=[f"--query.max-samples={MAX_SAMPLES}"]) as server:
        set_connection("prom_limited", conn_type="prometheus", host="127.0.0.1", port=server.port)
        yield server


def test_refused_windows_are_split_exactly_and_rerun_byte_identical(
    s3: Any, prom_conn: str, limited: PrometheusServer, history: HistorySpec
) -> None:
    start = history.start + 2 * H
    summary = make_operator("prom_limited", start, start + H).execute({})
    assert summary["objects"] == len(CATALOGUE)
    split = summary["split"]
    assert {"cpu_requests", "cpu_usage_v2", "memory_usage", "bytes_received"} <= set(split)
    assert split["cpu_requests"] == {"pieces": 4, "depth": 2, "refused_by": "--query.max-samples"}
    assert split["bytes_received"]["pieces"] == 2 and "node_info" not in split
    make_operator(prom_conn, start, start + H, s3_prefix="unlimited").execute({})
    for metric in CATALOGUE:
        joined = gzip.decompress(read(s3, build_key(PREFIX, "prod-eu", metric.name, start)))
        whole = gzip.decompress(read(s3, build_key("unlimited", "prod-eu", metric.name, start)))
        assert as_series(joined) == as_series(whole), metric.name
        labels = [labels for labels, _ in as_series(joined)]
        assert labels == sorted(labels)
    first = {k: read(s3, k) for k in all_keys(s3) if k.startswith(PREFIX)}
    make_operator("prom_limited", start, start + H).execute({})
    assert {k: read(s3, k) for k in all_keys(s3) if k.startswith(PREFIX)} == first


def test_even_the_smallest_piece_refused_fails_naming_the_limit_and_writes_nothing(
    s3: Any, tsdb: Any, history: HistorySpec
) -> None:
    with serving_copy(tsdb, extra_args=["--query.max-samples=10"]) as server:
        set_connection("prom_tiny", conn_type="prometheus", host="127.0.0.1", port=server.port)
        op = make_operator("prom_tiny", history.start, history.start + H, metrics=[CATALOGUE[0]])
        with pytest.raises(Exception) as err:
            op.execute({})
    message = str(err.value)
    assert "metric 'cpu_requests'" in message and "cluster 'prod-eu'" in message and "HTTP 422" in message
    assert "even a piece of 60s is refused" in message and "raise --query.max-samples" in message
    assert "METRICS subset" in message
    assert all_keys(s3) == []


def refusing(upstream: str, status: int, text: str, longest: int) -> Any:
    """Refuse with ``text`` any range longer than ``longest`` seconds; pass the others on."""
    passing = forward(upstream, timeout=60)

    def handler(seen: Seen, request: Any) -> None:
        form = {k: v[0] for k, v in parse_qs(seen.body.decode()).items()}
        if "start" in form and float(form["end"]) - float(form["start"]) >= longest:
            body = json.dumps({"status": "error", "errorType": "execution", "error": text}).encode()
            reply(request, status, body, {"Retry-After": "0"})
            return
        passing(seen, request)

    return handler


# One real wording per backend (the refusals table holds the patterns).
WORDINGS = [
    (503, "query timed out in expression evaluation", True),
    (422, "expanding series: context deadline exceeded", True),
    (422, "query processing would load too many samples into memory in query execution", True),
    (400, "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution", True),
    (422, "the query exceeded the maximum number of chunks (limit: 2000000 chunks) (err-mimir-max-chunks-per-query)",
     True),
    (422, "the query exceeded the aggregated chunks size limit (limit: 1000 bytes) (err-mimir-max-chunks-bytes-per-query)",
     True),
    (422, "the query time range exceeds the limit (query length: 721h, limit: 720h) (err-mimir-max-query-length)", True),
    (422, "the query hit the max number of chunks limit (limit: 100 chunks)", True),
    (422, "the query hit the aggregated chunks size limit (limit: 1000 bytes)", True),
    (422, "the query exceeded the maximum allowed estimated amount of memory consumed by a single query (limit: "
     "1000 bytes) (err-mimir-max-estimated-memory-consumption-per-query)", True),
    (422, "too many points for the given step=1s, start=0 and end=100000: 100001; the maximum number of points "
     "per series is -search.maxPointsPerTimeseries=30000", True),
    (422, "cannot select more than -search.maxSamplesPerQuery=1000 samples; possible solutions: ...", True),
    (503, "the request took more than -search.maxQueryDuration=30s", True),
    (422, "rpc error: code = DeadlineExceeded desc = context deadline exceeded", True),
    (413, "response size exceeds the limit of 50MiB", True),
    (422, "the query exceeded the maximum number of series (limit: 100 series) (err-mimir-max-series-per-query)",
     False),
    (422, "the query hit the max number of series limit (limit: 100 series)", False),
    (422, "cannot find tag filter matching more than -search.maxUniqueTimeseries=300000 time series", False),
]  # fmt: skip


@pytest.mark.parametrize(("status", "text", "splittable"), WORDINGS)
def test_each_backends_refusal_is_recognised(
    s3: Any, prometheus: PrometheusServer, history: HistorySpec, status: int, text: str, splittable: bool
) -> None:
    start = history.start + H
    with FaultServer(refusing(prometheus.url, status, text, longest=H // 2)) as server:
        set_connection("p_refuse", conn_type="prometheus", host="127.0.0.1", port=server.port,
                       extra={"max_retries": 2, "retry_wait": 0.01})  # fmt: skip
        op = make_operator("p_refuse", start, start + H, metrics=[CATALOGUE[0]])
        if not splittable:
            with pytest.raises(Exception, match="METRICS subset") as err:
                op.execute({})
            assert "splitting in time cannot help" in str(err.value) and len(server.requests) == 1
            assert all_keys(s3) == []
            return
        summary = op.execute({})
    assert summary["split"]["cpu_requests"]["pieces"] == 2, summary
    ranges = [r for r in server.requests if "query_range" in r.path]
    assert len(ranges) == 3  # refused whole (no retry of a refusal), then two halves
    set_connection("p_direct", conn_type="prometheus", host="127.0.0.1", port=prometheus.port)
    make_operator("p_direct", start, start + H, metrics=[CATALOGUE[0]], s3_prefix="direct").execute({})
    assert as_series(gzip.decompress(read(s3, build_key(PREFIX, "prod-eu", "cpu_requests", start)))) == as_series(
        gzip.decompress(read(s3, build_key("direct", "prod-eu", "cpu_requests", start)))
    )


def test_overload_without_a_heavy_reason_is_retried_not_split(
    s3: Any, prometheus: PrometheusServer, history: HistorySpec
) -> None:
    refusals = iter([b'{"status":"error","errorType":"unavailable","error":"overloaded"}'])
    passing = forward(prometheus.url, timeout=60)

    def handler(seen: Seen, request: Any) -> None:
        body = next(refusals, None)
        if body is not None:
            reply(request, 503, body, {"Retry-After": "0"})
            return
        passing(seen, request)

    with FaultServer(handler) as server:
        set_connection("p_busy", conn_type="prometheus", host="127.0.0.1", port=server.port, extra={"retry_wait": 0.01})
        summary = make_operator("p_busy", history.start, history.start + H, metrics=[CATALOGUE[0]]).execute({})
    assert summary["split"] == {} and len(server.requests) == 2


def test_a_split_hint_starts_the_next_window_split(
    s3: Any, prometheus: PrometheusServer, history: HistorySpec, variables: dict[str, str]
) -> None:
    store = variables
    text = "query processing would load too many samples into memory in query execution"
    with FaultServer(refusing(prometheus.url, 422, text, longest=H // 4)) as server:
        set_connection("p_hint", conn_type="prometheus", host="127.0.0.1", port=server.port)
        first = make_operator("p_hint", history.start, history.start + H, metrics=[CATALOGUE[0]]).execute({})
        # the window and its first half refused; the second half, as long, is halved unasked: 1 + 1 + 4
        assert first["split"]["cpu_requests"]["pieces"] == 4 and len(server.requests) == 6
        assert json.loads(store["finout_split_hints_prod-eu"]) == {"cpu_requests": 4}
        server.requests.clear()
        second = make_operator("p_hint", history.start + H, history.start + 2 * H, metrics=[CATALOGUE[0]]).execute({})
        assert second["split"]["cpu_requests"]["pieces"] == 4 and len(server.requests) == 4  # no refusal first

        # A day's first window tries half the hint: refused, it needs 4 again, and the hint stays.
        midnight = history.start - history.start % DAY
        server.requests.clear()
        third = make_operator("p_hint", midnight, midnight + H, metrics=[CATALOGUE[0]]).execute({})
        # 1 refused + 2 + 2 ranges (the window lies before the data: its emptiness is diagnosed too)
        assert third["split"]["cpu_requests"]["pieces"] == 4 and ranges(server) == 5
        assert json.loads(store["finout_split_hints_prod-eu"]) == {"cpu_requests": 4}

    # The server's limit raised: the first window of another day needs half the pieces, of a third none.
    with FaultServer(refusing(prometheus.url, 422, text, longest=H // 2)) as server:
        set_connection("p_hint", conn_type="prometheus", host="127.0.0.1", port=server.port)
        fourth = make_operator("p_hint", midnight - DAY, midnight - DAY + H, metrics=[CATALOGUE[0]]).execute({})
        assert fourth["split"]["cpu_requests"]["pieces"] == 2 and ranges(server) == 2
        assert json.loads(store["finout_split_hints_prod-eu"]) == {"cpu_requests": 2}
    set_connection("p_hint", conn_type="prometheus", host="127.0.0.1", port=prometheus.port)
    fifth = make_operator("p_hint", midnight - 2 * DAY, midnight - 2 * DAY + H, metrics=[CATALOGUE[0]]).execute({})
    assert fifth["split"] == {} and json.loads(store["finout_split_hints_prod-eu"]) == {}


def ranges(server: FaultServer) -> int:
    return sum(b"step=" in r.body for r in server.requests)


def read_bytes(prometheus: Any, query: str, start: int, end: int) -> bytes:
    """A query_range answer's bytes, as the server wrote them."""
    answer = bytearray()

    def keep(body: Any) -> None:
        answer[:] = b"".join(body)

    prometheus.read_range(query, start, end, 60, keep, split=False)
    return bytes(answer)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    metric=st.sampled_from(
        [m for m in CATALOGUE if m.name in ("pod_info", "cpu_usage_v2", "pod_labels", "cpu_requests")]
    ),
    hour=st.integers(0, 6),
    cuts=st.lists(st.integers(1, 59), max_size=6, unique=True),
    narrow=st.sampled_from(["", "app-0.*", "app-[12].*", "app-.*-[0-7].*"]),
)
def test_property_any_split_joins_to_the_one_query_answer(
    prometheus: PrometheusServer, history: HistorySpec, tmp_path_factory: pytest.TempPathFactory,
    metric: Any, hour: int, cuts: list[int], narrow: str,
) -> None:  # fmt: skip
    """Series that appear and vanish mid-window (pods born and dying), any split points: the join
    equals what the real Prometheus answers for the whole window in one query."""
    set_connection("p_prop", conn_type="prometheus", host="127.0.0.1", port=prometheus.port)
    prometheus = PrometheusHook("p_prop").get_conn()
    query = render(metric.query, "cluster", "prod-eu")
    if narrow:
        query = query.replace('cluster="prod-eu"', f'cluster="prod-eu",pod=~"{narrow}"')
    start = history.start + hour * H
    end = start + H - 60
    whole = read_bytes(prometheus, query, start, end)
    edges = [start, *sorted(start + c * 60 for c in cuts), end + 60]
    folder = tmp_path_factory.mktemp("pieces")
    paths = []
    for number, (a, b) in enumerate(pairwise(edges)):
        path = folder / f"{number}.json"
        path.write_bytes(read_bytes(prometheus, query, a, b - 60))
        paths.append(path)
    joined = b"".join(JoinedBody(paths))
    assert as_series(joined) == as_series(whole)
    assert b"".join(JoinedBody(paths)) == joined


def test_the_refusals_table_has_a_wording_per_row() -> None:
    import re

    for refusal in REFUSALS:
        assert any(refusal.pattern.search(text) for _, text, _ in WORDINGS) or refusal.backend in (
            "Amazon Managed Prometheus",
        ), refusal
    for _, text, splittable in WORDINGS:
        matched = [r for r in REFUSALS if r.pattern.search(text)]
        assert matched and matched[0].splittable == splittable, text
    assert all(isinstance(r.pattern, re.Pattern) for r in REFUSALS)


def test_preflight_and_plan_say_which_metrics_will_need_splitting(
    s3: Any, limited: PrometheusServer, history: HistorySpec
) -> None:
    from finout_provider.checks.preflight import Preflight

    start = history.start + 3 * H
    prometheus = PrometheusHook("prom_limited").get_conn()
    cost = Preflight(prometheus.instant, "prod-eu", ExportSpec(), "cluster").cost(
        start + H - 60, prometheus.max_samples()
    )
    assert cost.max_samples == MAX_SAMPLES
    estimated = {m.name for m in CATALOGUE if cost.pieces(m.name) > 1}
    actual = set(make_operator("prom_limited", start, start + H).execute({})["split"])
    assert estimated and estimated <= actual, (estimated, actual)
    assert cost.pieces("node_info") == 1 and "needs ~" in cost.render()
