"""A new user's first runs through the generated DAG (``dag.test()``, preflight on as by default):
what the clusters file says of a cluster reaches every task."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools.history import HistorySpec, PrometheusServer, build_tsdb
from finout_provider.catalogue import CATALOGUE_NAMES
from finout_provider.plan.windows import closed_before
from finout_provider.s3.layout import build_key
from tests.conftest import BUCKET, PREFIX
from tests.dag.conftest import ClusterDag, on

pytestmark = [pytest.mark.dag, pytest.mark.af2]
H = 3600


@pytest.fixture(scope="module")
def no_limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A cluster whose pods set no resource limits, as many do: four hours, no cluster label."""
    end = closed_before(int(time.time()), 120, H)
    spec = HistorySpec(clusters=("nolimits",), start=end - 4 * H, end=end, nodes=2, pods_per_node=3, limits=False)
    server = PrometheusServer(build_tsdb(spec, tmp_path_factory.mktemp("no-limits"))).start()
    yield server
    server.stop()


def body(s3: Any, cluster: str, metric: str, start: int) -> dict[str, Any]:
    key = build_key(PREFIX, cluster, metric, start)
    return dict(json.loads(gzip.decompress(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())))


def test_a_cluster_whose_pods_set_no_limits_exports_every_metric_on_its_first_run(
    cluster_dag: Callable[..., ClusterDag], no_limits: PrometheusServer, s3: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """Preflight judges each metric by the source the catalogue says it needs: limits empty while
    kube-state-metrics answers are exported empty, never blocking the others. An EXTRA_QUERIES
    metric under EXPECT_EMPTY may be empty too."""
    spot = {"name": "spot_nodes", "query": 'kube_node_labels{label_lifecycle="spot"}'}
    dag = cluster_dag(on(no_limits, CLUSTER_NAME="nolimits", EXTRA_QUERIES=[spot], EXPECT_EMPTY=["spot_nodes"]))
    end = closed_before(int(time.time()), 120, H)
    outcome = dag.test(capfd, end)
    assert outcome.state == "success", outcome.output[-6000:]
    assert outcome.states()["preflight"] == {"success"}  # the first run: nothing in S3 before it
    for metric in ("cpu_limits", "memory_limits"):
        line = next(line for line in outcome.output.splitlines() if line.startswith(f"{metric} "))
        assert " empty " in line and "no pod sets limits" in line, line
        assert body(s3, "nolimits", metric, end - H)["data"]["result"] == []
    spot_line = next(line for line in outcome.output.splitlines() if line.startswith("spot_nodes "))
    assert " empty " in spot_line and "EXPECT_EMPTY" in spot_line, spot_line
    for metric in ("cpu_requests", "memory_requests", "pod_info", "node_info", "memory_usage_v2"):
        assert body(s3, "nolimits", metric, end - H)["data"]["result"], metric
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {build_key(PREFIX, "nolimits", m, end - H) for m in (*CATALOGUE_NAMES, "spot_nodes")}
