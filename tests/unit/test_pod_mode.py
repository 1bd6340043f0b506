"""MODE kubernetes_pod: the pod the official image runs in, built without a cluster."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest

from finout_provider.config.clusters import parse_document
from finout_provider.dag_factory import build_dag

pytestmark = pytest.mark.af2

SECRET_VALUES = ("hunter2-password", "tok-abc-123")


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


@pytest.fixture(autouse=True)
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client configuration that is never called: older cncf-kubernetes builds a client to label the pod."""
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "kubeconfig"))


def pod_request(task: Any) -> Any:
    """The pod ``task`` would start, built without a cluster (cncf-kubernetes >= 10.10 says so with dry_run)."""
    if "dry_run" in inspect.signature(task.build_pod_request_obj).parameters:
        return task.build_pod_request_obj(dry_run=True)
    return task.build_pod_request_obj()


def test_pod_has_image_every_variable_and_only_secret_references() -> None:
    entry = {
        "CLUSTER_NAME": "prod-eu",
        "S3_BUCKET": "finout-metrics",
        "S3_PREFIX": "k8s/prometheus",
        "MODE": "kubernetes_pod",
        "IMAGE": "finout/finout-metrics-exporter:2.0.4",
        "NAMESPACE": "monitoring",
        "K8S_SECRET_NAME": "finout-creds",
        "ROLE_ARN": "arn:aws:iam::123456789012:role/finout",
        "ROLE_EXTERNAL_ID": "ext-1",
        "SCHEME": "https",
        "HOSTNAME": "prometheus-server.monitoring.svc.cluster.local",
        "PORT": 9443,
        "PATH_PREFIX": "/prom",
        "TIME_FRAME": 1800,
        "BACKFILL_DAYS": "2d",
        "INITIAL_BACKFILL_DATE": "2025-10-01",
        "QUERIES_BATCH_SIZE": 3,
        "PROMETHEUS_USERNAME": "exporter",
        "PROMETHEUS_PASSWORD": SECRET_VALUES[0],
        "PROMETHEUS_BEARER_AUTH_TOKEN": SECRET_VALUES[1],
        "PROMETHEUS_X_SCOPE_ORGID": "tenant-1",
    }
    clusters = parse_document({"clusters": [entry]})
    dag = build_dag(clusters.clusters[0])
    task = dag.get_task("export_window")
    pod = pod_request(task)
    container = pod.spec.containers[0]
    assert container.image == "finout/finout-metrics-exporter:2.0.4"
    assert pod.metadata.namespace == "monitoring"
    env = {e.name: e for e in container.env}
    plain = {name: e.value for name, e in env.items() if e.value is not None}
    assert plain == {
        "CLUSTER_NAME": "prod-eu",
        "S3_BUCKET": "finout-metrics",
        "S3_PREFIX": "k8s/prometheus",
        "ROLE_ARN": "arn:aws:iam::123456789012:role/finout",
        "ROLE_EXTERNAL_ID": "ext-1",
        "SCHEME": "https",
        "HOSTNAME": "prometheus-server.monitoring.svc.cluster.local",
        "PORT": "9443",
        "PATH_PREFIX": "prom",
        "TIME_FRAME": "1800",
        "BACKFILL_DAYS": "2d",
        "INITIAL_BACKFILL_DATE": "2025-10-01",
        "QUERIES_BATCH_SIZE": "3",
        "PROMETHEUS_USERNAME": "exporter",
        "PROMETHEUS_X_SCOPE_ORGID": "tenant-1",
    }
    for name in ("PROMETHEUS_PASSWORD", "PROMETHEUS_BEARER_AUTH_TOKEN"):
        ref = env[name].value_from.secret_key_ref
        assert (ref.name, ref.key) == ("finout-creds", name)
        assert env[name].value is None
    spec = json.dumps(pod.to_dict(), default=str)
    for secret in SECRET_VALUES:
        assert secret not in spec


def test_default_secret_name_and_no_secret_without_credentials() -> None:
    base = {"CLUSTER_NAME": "Edge.1", "S3_BUCKET": "finout-metrics", "S3_PREFIX": "k", "MODE": "kubernetes_pod"}
    pod = pod_request(build_dag(parse_document({"clusters": [base]}).clusters[0]).get_task("export_window"))
    assert pod.spec.containers[0].image == "finout/finout-metrics-exporter:2.0.3"
    assert all(e.value_from is None for e in pod.spec.containers[0].env)
    with_password = {**base, "PROMETHEUS_USERNAME": "u", "PROMETHEUS_PASSWORD": "p"}
    pod = pod_request(build_dag(parse_document({"clusters": [with_password]}).clusters[0]).get_task("export_window"))
    refs = [e.value_from.secret_key_ref.name for e in pod.spec.containers[0].env if e.value_from]
    assert refs == ["finout-prometheus-edge.1-33f55b"]  # lower-cased, so a hash keeps it apart from "edge.1"


@pytest.mark.parametrize("names", [("Prod", "prod"), ("a_b", "a.b", "a-b"), ("edge-", "edge_")])
def test_derived_kubernetes_names_are_valid_and_never_shared(names: tuple[str, ...]) -> None:
    from finout_provider.config.exporter_env import kubernetes_label_value, kubernetes_name

    dns_label = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    label_value = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
    pods = {kubernetes_name("finout-exporter", n, 53) for n in names}
    secrets = {kubernetes_name("finout-prometheus", n, 253, dots=True) for n in names}
    labels = {kubernetes_label_value(n) for n in names}
    assert len(pods) == len(secrets) == len(labels) == len(names)
    assert all(dns_label.match(p) and len(p) <= 53 for p in pods)
    assert all(label_value.match(v) and len(v) <= 63 for v in labels)


def test_keys_the_image_does_not_read_are_refused_in_pod_mode() -> None:
    entry = {"CLUSTER_NAME": "p", "S3_BUCKET": "b-b", "S3_PREFIX": "k", "MODE": "kubernetes_pod"}
    for key, value in (("METRICS", ["cpu_requests"]), ("CLUSTER_LABEL", "cluster"), ("PROMETHEUS_CONN_ID", "c")):
        errors = parse_document({"clusters": [{**entry, key: value}]}).errors
        assert [e.key for e in errors] == [key] and "official image" in str(errors[0])
