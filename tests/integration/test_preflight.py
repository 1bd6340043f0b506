"""Preflight against real Prometheus servers loaded with history shaped right and shaped wrong."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.history import HistorySpec, PrometheusServer, build_tsdb
from finout_provider.catalogue import ExportSpec, select
from finout_provider.checks.preflight import EMPTY, FAIL, OK, WARN, Preflight, PreflightReport
from finout_provider.hooks.prometheus import PrometheusHook
from finout_provider.prometheus.client import PrometheusClient
from tests.conftest import set_connection

pytestmark = pytest.mark.integration
H = 3600


def serve(**shape: object) -> Iterator[tuple[PrometheusServer, HistorySpec]]:
    """A real Prometheus over two hours of one small cluster, generated with ``shape``."""
    import tempfile

    now = int(time.time())
    end = now - now % H
    spec = HistorySpec(start=end - 2 * H, end=end, nodes=2, pods_per_node=3, **shape)  # type: ignore[arg-type]
    server = PrometheusServer(build_tsdb(spec, Path(tempfile.mkdtemp(prefix="finout-shaped-")))).start()
    yield server, spec
    server.stop()


@pytest.fixture(scope="module")
def bare() -> Iterator[tuple[PrometheusServer, HistorySpec]]:
    """Scraped the way many clusters are at first: kube-state-metrics without its label
    allowlist, no kube-prometheus recording rules, no cluster label."""
    yield from serve(clusters=("bare",), recording_rules=False, label_allowlist=False)


@pytest.fixture(scope="module")
def legacy() -> Iterator[tuple[PrometheusServer, HistorySpec]]:
    """kube-state-metrics 1.x: requests, limits and capacity under their old per-resource names."""
    yield from serve(clusters=("legacy",), ksm_v1=True)


def hook_for(server: PrometheusServer, conn_id: str) -> PrometheusClient:
    set_connection(conn_id, conn_type="prometheus", host="127.0.0.1", port=server.port, schema="http")
    return PrometheusHook(conn_id).get_conn()


def run(
    hook: PrometheusClient, cluster: str, at: int, label: str | None, names: list[str] | None = None
) -> PreflightReport:
    return Preflight(hook.instant, cluster, ExportSpec(tuple(select(names))), label).run(at)


def test_a_well_shaped_cluster_passes_and_cadvisor_without_node_label_is_explained(
    prometheus: PrometheusServer, history: HistorySpec
) -> None:
    report = run(hook_for(prometheus, "pf_main"), "prod-eu", history.end - H, "cluster")
    found = report.by_metric()
    assert not report.failed, report.render()
    assert found["cluster"].level == OK
    for name in ("cpu_requests", "pod_labels", "node_labels", "memory_usage", "memory_usage_v2", "cpu_usage_v2"):
        assert found[name].level == OK and (found[name].series or 0) > 0, report.render()
    # The generated cAdvisor series carry `instance`, not `node`, as a stock kubelet scrape does.
    assert found["cpu_usage"].level == WARN
    assert "no series has a 'node' label" in found["cpu_usage"].reason
    assert "cpu_usage_v2" in found["cpu_usage"].reason and "is exported too" in found["cpu_usage"].reason
    assert "Preflight of cluster 'prod-eu'" in report.render()


def test_missing_pod_labels_and_missing_recording_rule_are_diagnosed(
    bare: tuple[PrometheusServer, HistorySpec],
) -> None:
    server, spec = bare
    hook = hook_for(server, "pf_bare")
    report = run(hook, "bare", spec.end - 600, None)
    found = report.by_metric()
    assert found["cluster"].level == OK
    for name in ("pod_labels", "node_labels"):
        assert found[name].level == WARN, report.render()
        assert "--metric-labels-allowlist=pods=[*],nodes=[*]" in found[name].reason
    memory = found["memory_usage"]
    assert memory.level == WARN and memory.series == 0
    assert "node_namespace_pod_container:container_memory_working_set_bytes" in memory.reason
    assert "memory_usage_v2, exported too" in memory.reason
    assert found["memory_usage_v2"].level == OK
    # Without the _v2 query in METRICS, the missing rule means empty files: that fails.
    narrow = run(hook, "bare", spec.end - 600, None, ["cpu_requests", "memory_usage"])
    assert narrow.by_metric()["memory_usage"].level == FAIL
    assert "add memory_usage_v2 to METRICS" in narrow.by_metric()["memory_usage"].reason


def test_wrong_cluster_label_and_wrong_cluster_name_fail_naming_what_exists(
    prometheus: PrometheusServer, history: HistorySpec
) -> None:
    hook = hook_for(prometheus, "pf_main")
    at = history.end - H
    wrong_label = run(hook, "prod-eu", at, "k8s_cluster", ["cpu_requests", "pod_labels"])
    cluster = wrong_label.by_metric()["cluster"]
    assert cluster.level == FAIL
    assert "no series carries the label CLUSTER_LABEL='k8s_cluster'" in cluster.reason
    assert "labels that look like a cluster label: cluster" in cluster.reason
    assert wrong_label.by_metric()["cpu_requests"].level == FAIL

    wrong_name = run(hook, "prod-us", at, "cluster", ["cpu_requests"])
    reason = wrong_name.by_metric()["cluster"].reason
    assert wrong_name.by_metric()["cluster"].level == FAIL
    assert "no series has cluster='prod-us'" in reason and "prod-eu, staging" in reason


def test_a_shared_prometheus_without_cluster_label_is_flagged(
    prometheus: PrometheusServer, history: HistorySpec
) -> None:
    report = run(hook_for(prometheus, "pf_main"), "prod-eu", history.end - H, None, ["cpu_requests"])
    cluster = report.by_metric()["cluster"]
    assert cluster.level == WARN
    assert "several clusters (cluster: prod-eu, staging)" in cluster.reason
    assert "set CLUSTER_LABEL: cluster" in cluster.reason


def test_nothing_scraped_names_the_missing_exporters(prometheus: PrometheusServer, history: HistorySpec) -> None:
    # Long before the generated history: Prometheus answers, but holds nothing.
    report = run(hook_for(prometheus, "pf_main"), "prod-eu", history.start - 30 * 86400, None)
    found = report.by_metric()
    assert "no kube-state-metrics >= 2.0 series in the last 1d: is kube-state-metrics" in found["cpu_requests"].reason
    assert "no cAdvisor" in found["cpu_usage_v2"].reason and "/metrics/cadvisor" in found["cpu_usage_v2"].reason
    assert found["gpu_requests"].level == EMPTY
    assert found["cpu_requests"].level == FAIL and report.failed


def test_sources_that_stopped_are_called_stale_with_their_age(
    prometheus: PrometheusServer, history: HistorySpec
) -> None:
    at = history.end + 1800  # half an hour after the history's last samples
    report = run(hook_for(prometheus, "pf_stale"), "prod-eu", at, "cluster", ["cpu_requests", "cpu_usage_v2"])
    found = report.by_metric()
    for name, source in (("cpu_requests", "kube-state-metrics"), ("cpu_usage_v2", "cAdvisor")):
        assert found[name].level == FAIL, report.render()
        assert f"{source}" in found[name].reason and "is stale: its newest sample is 3" in found[name].reason
        assert "min old" in found[name].reason


def test_a_metric_empty_while_its_source_answers_is_exported_empty_not_blocking(
    s3: object, prometheus: PrometheusServer, history: HistorySpec
) -> None:
    """A cluster where no pod sets limits: the limits come back empty, everything is exported."""
    from finout_provider.catalogue import KSM, Metric
    from finout_provider.operators.preflight import PrometheusPreflightOperator
    from finout_provider.target import S3Target
    from tests.integration.test_export import all_keys, make_operator

    hook_for(prometheus, "pf_nolimits")
    no_limits = Metric("cpu_limits", 'sum(kube_pod_container_resource_limits{resource="none"}) by (pod)', (KSM,))
    metrics = [*select(["cpu_requests", "pod_info"]), no_limits]
    end = history.end - H
    check = PrometheusPreflightOperator(
        task_id="preflight", target=S3Target("prod-eu", "finout-metrics", "k8s"), spec=ExportSpec(tuple(metrics)),
        prometheus_conn_id="pf_nolimits", cluster_label="cluster", windows=[{"window_start": end - H, "window_end": end}],
    )  # fmt: skip
    levels = check.execute({})  # type: ignore[arg-type]
    assert levels == {"cluster": OK, "cpu_requests": OK, "pod_info": OK, "cpu_limits": EMPTY}
    summary = make_operator("pf_nolimits", end - H, end, metrics=metrics).execute({})
    assert summary["objects"] == 3 and summary["series"]["cpu_limits"] == 0 and len(all_keys(s3)) == 3


def test_the_dag_task_fails_a_run_that_would_export_empty_files(
    prometheus: PrometheusServer, history: HistorySpec
) -> None:
    from finout_provider.compat import AirflowFailException
    from finout_provider.operators.preflight import PrometheusPreflightOperator
    from finout_provider.target import S3Target

    hook_for(prometheus, "pf_task")
    spec = ExportSpec(tuple(select(["cpu_requests", "pod_labels"])))
    end = history.end - H
    windows = [{"window_start": end - 2 * H, "window_end": end - H}, {"window_start": end - H, "window_end": end}]
    common = {"task_id": "preflight", "target": S3Target("prod-eu", "b-1", "k8s"), "spec": spec, "windows": windows,
              "prometheus_conn_id": "pf_task"}  # fmt: skip
    good = PrometheusPreflightOperator(cluster_label="cluster", **common)
    # The newest window's last step is the instant checked: what the run exports.
    assert good.instant() == end - 60
    assert good.execute({}) == {"cluster": OK, "cpu_requests": OK, "pod_labels": OK}  # type: ignore[arg-type]
    wrong = PrometheusPreflightOperator(cluster_label="k8s_cluster", **common)
    with pytest.raises(AirflowFailException, match=r"cluster 'prod-eu': preflight found 3 problems") as err:
        wrong.execute({})  # type: ignore[arg-type]
    assert "- cluster: no series carries the label CLUSTER_LABEL='k8s_cluster'" in str(err.value)


def test_kube_state_metrics_before_2_is_named(legacy: tuple[PrometheusServer, HistorySpec]) -> None:
    server, spec = legacy
    report = run(hook_for(server, "pf_legacy"), "legacy", spec.end - 600, None)
    found = report.by_metric()
    for name in ("cpu_requests", "memory_limits", "node_cpu_capacity", "node_memory_allocatable"):
        assert found[name].level == FAIL, report.render()
        assert "kube-state-metrics is older than 2.0" in found[name].reason
    assert found["pod_info"].level == OK and found["pod_labels"].level == OK
