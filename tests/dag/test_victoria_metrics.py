"""A cluster whose Prometheus is VictoriaMetrics (Debian's), through the generated DAG."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any

import pytest

from devtools.faults import FaultServer
from devtools.history import HistorySpec, VictoriaMetricsServer
from finout_provider.catalogue import render, select
from finout_provider.s3.layout import build_key
from tests.conftest import BUCKET, PREFIX
from tests.dag.conftest import ClusterDag
from tests.integration.test_backends import Recording, answer_of

pytestmark = [pytest.mark.dag, pytest.mark.af2]
H = 3600
NODE_LEVEL, POD_LEVEL = ["node_info", "node_cpu_capacity"], ["pod_info", "cpu_requests"]


def test_a_first_run_with_a_sample_limit_not_counted_by_time(
    cluster_dag: Callable[..., ClusterDag], limited_victoria: VictoriaMetricsServer, victoria: VictoriaMetricsServer,
    s3: Any, history: HistorySpec, capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """-search.maxSamplesPerQuery low enough to refuse the pod-level metrics at any range: preflight
    (on: the first run) finds those queries too heavy to check and does not fail the run; the export
    writes the node-level metrics as the unlimited server answers them, and fails each pod-level one
    after three refused queries, naming the flag, in one try."""
    recording = Recording(limited_victoria.url)
    with FaultServer(recording) as proxy:
        entry = {"CLUSTER_NAME": "prod-eu", "HOSTNAME": "127.0.0.1", "PORT": proxy.port, "CLUSTER_LABEL": "cluster",
                 "METRICS": NODE_LEVEL + POD_LEVEL}  # fmt: skip
        outcome = cluster_dag(entry).test(capfd, history.end - 2 * H)
    states = outcome.states()
    assert states["preflight"] == {"success"}, outcome.output[-5000:]
    assert "too heavy to check here (refused by VictoriaMetrics's -search.maxSamplesPerQuery)" in outcome.output
    assert states["export_window"] == {"failed"} and outcome.ti("export_window", 0).try_number == 1
    assert "raise -search.maxSamplesPerQuery" in outcome.output
    start = history.end - 3 * H
    queries = {m.name: render(m.query, "cluster", "prod-eu") for m in select(NODE_LEVEL + POD_LEVEL)}
    assert {q: n for q, n in recording.refused.items() if q in queries.values()} == {
        queries[name]: 3 for name in POD_LEVEL
    }
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {build_key(PREFIX, "prod-eu", name, start) for name in NODE_LEVEL}
    for name in NODE_LEVEL:
        body = s3.get_object(Bucket=BUCKET, Key=build_key(PREFIX, "prod-eu", name, start))["Body"].read()
        assert gzip.decompress(body) == answer_of(victoria, queries[name], start, start + H - 60)
