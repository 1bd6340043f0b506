"""A Prometheus reached under a path (``--web.route-prefix``, as Thanos, Mimir's ``/prometheus`` and
Grafana's proxies are reached) and a tenant header, through the generated DAG and the CLI: a
recording proxy in front of Prometheus' own route prefix sees every request."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from devtools.faults import FaultServer, Seen, reply
from devtools.history import PrometheusServer, serving_copy
from tests.conftest import set_connection
from tests.dag.conftest import ClusterDag
from tests.integration.test_cli import cli

pytestmark = [pytest.mark.dag, pytest.mark.af2]
H = 3600
METRICS = ["cpu_requests", "pod_labels", "node_info"]


class Proxy:
    """Passes every request on to ``upstream`` as it came, and records its path and headers."""

    def __init__(self, upstream: str) -> None:
        self.upstream, self.seen = upstream, []

    def __call__(self, seen: Seen, handler: Any) -> None:
        self.seen.append(seen)
        headers = {"Content-Type": seen.headers.get("Content-Type", "application/x-www-form-urlencoded")}
        answer = requests.request(seen.method, f"{self.upstream}{seen.path}", data=seen.body or None, headers=headers,
                                  timeout=60)  # fmt: skip
        reply(handler, answer.status_code, answer.content)


@pytest.fixture(scope="module")
def prefixed(tsdb: Any) -> Iterator[PrometheusServer]:
    """The session's history served by a Prometheus under ``/mimir/prometheus`` (its own flags)."""
    with serving_copy(tsdb, route_prefix="mimir/prometheus") as server:
        yield server


@pytest.mark.parametrize(
    ("tenant", "header"), [({"PROMETHEUS_X_SCOPE_ORGID": "team-a"}, "X-Scope-OrgID"), (None, "THANOS-TENANT")]
)
def test_every_request_of_the_dag_and_the_cli_goes_under_the_path_with_the_tenant(
    tenant: dict[str, str] | None, header: str, cluster_dag: Callable[..., ClusterDag], prefixed: PrometheusServer,
    s3: Any, history: Any, capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    proxy = Proxy(f"http://127.0.0.1:{prefixed.port}")
    with FaultServer(proxy) as server:
        if tenant is not None:  # the CronJob's variables, pasted
            entry = {"HOSTNAME": "127.0.0.1", "PORT": server.port, "PATH_PREFIX": "/mimir/prometheus/", **tenant}
        else:  # Thanos' querier reads its own header: a connection says so
            extra = {"path_prefix": "mimir/prometheus", "x_scope_orgid": "team-a", "tenant_header": header}
            set_connection("prometheus_thanos", conn_type="prometheus", host="127.0.0.1", port=server.port,
                           extra=extra)  # fmt: skip
            entry = {"PROMETHEUS_CONN_ID": "prometheus_thanos"}
        dag = cluster_dag({"CLUSTER_NAME": "prod-eu", "CLUSTER_LABEL": "cluster", "METRICS": METRICS, **entry})
        outcome = dag.test(capfd, history.end - H)
        asked_by_dag = list(proxy.seen)
        at = str(history.end - H - 60)  # where the session's history has data
        codes = [cli("preflight", "--cluster", "prod-eu", "--at", at)[0], cli("plan", "--cluster", "prod-eu")[0]]
    assert outcome.state == "success", outcome.output[-5000:]
    assert codes == [0, 0]
    paths = {seen.path.split("?")[0] for seen in proxy.seen}
    assert {"/mimir/prometheus/api/v1/query_range", "/mimir/prometheus/api/v1/query"} <= paths, paths
    assert all(path.startswith("/mimir/prometheus/api/v1/") for path in paths), paths
    assert all(seen.headers.get(header) == "team-a" for seen in proxy.seen)
    assert len(asked_by_dag) >= len(METRICS) + 1 and len(proxy.seen) > len(asked_by_dag)  # the DAG's, then the CLI's
