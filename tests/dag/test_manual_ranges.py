"""Manual ranges through the generated DAG: a range is what the run exports and judges."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools.history import HistorySpec, PrometheusServer, build_tsdb
from finout_provider.plan.windows import closed_before, iso
from finout_provider.s3.layout import build_key
from tests.conftest import BUCKET, PREFIX
from tests.dag.conftest import ClusterDag, on, scheduled_run, task_of

pytestmark = [pytest.mark.dag, pytest.mark.af2]
H = 3600
METRICS = ["cpu_requests", "pod_info", "memory_usage_v2"]


@pytest.fixture(scope="module")
def restored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    """A Prometheus holding hours that ended six hours ago, and nothing since (a scrape outage now,
    or a server restored from a backup)."""
    end = closed_before(int(time.time()), 120, H) - 6 * H
    spec = HistorySpec(clusters=("restored",), start=end - 4 * H, end=end, nodes=2, pods_per_node=3)
    server = PrometheusServer(build_tsdb(spec, tmp_path_factory.mktemp("restored"))).start()
    yield server, end
    server.stop()


def keys(s3: Any) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def test_a_manual_range_of_a_prometheus_without_current_data_exports_the_range(
    cluster_dag: Callable[..., ClusterDag], restored: tuple[PrometheusServer, int], s3: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Preflight (on: the cluster's first run) judges the range's end, where the data is, not now."""
    server, end = restored
    dag = cluster_dag(on(server, CLUSTER_NAME="restored", METRICS=METRICS))
    now = closed_before(int(time.time()), 120, H)
    outcome = dag.test(capfd, now, conf={"start": iso(end - 3 * H), "end": iso(end)})
    assert outcome.state == "success", outcome.output[-6000:]
    assert outcome.states()["preflight"] == {"success"}
    assert f"Preflight of cluster 'restored' at {iso(end - 60)}" in outcome.output
    assert keys(s3) == {build_key(PREFIX, "restored", m, s) for m in METRICS for s in range(end - 3 * H, end, H)}


def test_incomplete_fail_fails_scheduled_runs_and_warns_on_manual_ones(
    cluster_dag: Callable[..., ClusterDag], history: HistorySpec, s3: Any, capfd: pytest.CaptureFixture[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    """INCOMPLETE: fail is a scheduled run's verdict, as documented; a manual range over windows a
    Prometheus lost is exported and warned about."""
    from finout_provider.compat import AirflowFailException

    outage = history.end - 3 * H
    lossy = dataclasses.replace(history, clusters=("prod-eu",), outages=(("prod-eu", "kube_", outage, outage + H),))
    server = PrometheusServer(build_tsdb(lossy, tmp_path_factory.mktemp("lossy"))).start()
    try:
        dag = cluster_dag(on(server, CLUSTER_NAME="prod-eu", CLUSTER_LABEL="cluster", METRICS=METRICS,
                             INCOMPLETE="fail", PREFLIGHT=False))  # fmt: skip
        outcome = dag.test(capfd, history.end, conf={"start": iso(outage - 3 * H), "end": iso(outage + H)})
    finally:
        server.stop()
    assert outcome.state == "success", outcome.output[-6000:]
    assert "1 windows were exported whole from a Prometheus that lacked data" in outcome.output
    assert f"- {iso(outage)}: cpu_requests: " in outcome.output
    validate = task_of(dag.dag, "validate_export", outage)
    with pytest.raises(AirflowFailException, match="lacked data"):
        validate.execute(scheduled_run(outage))


def test_mode_kubernetes_pod_refuses_range_params_when_the_run_is_triggered(
    cluster_dag: Callable[..., ClusterDag], capfd: pytest.CaptureFixture[str]
) -> None:
    """The official image exports its own window: a range cannot be honoured, so Airflow refuses it
    before a run exists, quoting the reason, instead of a run whose validation waits in vain."""
    pytest.importorskip("airflow.providers.cncf.kubernetes")
    dag = cluster_dag({"CLUSTER_NAME": "pod", "MODE": "kubernetes_pod"})
    with pytest.raises(Exception, match=r"(?s)Invalid input for param start.*not with MODE kubernetes_pod"):
        dag.test(capfd, closed_before(int(time.time()), 120, H), conf={"start": iso(0), "end": iso(H)})
