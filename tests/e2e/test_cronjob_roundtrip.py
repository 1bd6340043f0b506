"""The seed's CronJob -> `finout-provider import-cronjob` -> a DAG that loads and runs in Airflow."""

from __future__ import annotations

import gzip
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.history import HistorySpec, PrometheusServer
from devtools.s3server import S3Server
from devtools.stack import BIN, AirflowStack
from finout_provider.catalogue import CATALOGUE
from finout_provider.s3.layout import build_key
from tests.unit.test_cronjob import filled, with_env

pytestmark = pytest.mark.e2e
H = 3600


def test_seed_cronjob_imports_to_a_dag_that_loads_and_runs(
    tmp_path: Path, prometheus: PrometheusServer, s3_server: S3Server, bucket: str, history: HistorySpec
) -> None:
    manifest = tmp_path / "cronjob.yaml"
    text = filled(
        **{
            "<BUCKET_NAME>": bucket,
            "<PROMETHEUS_SERVICE>.<NAMESPACE>.svc.cluster.local": "127.0.0.1",
            "value: 9090": f"value: {prometheus.port}",
        }
    )
    # "make additional adjustments": a central Prometheus needs the cluster label; credentials
    # (Prometheus ignores basic auth, so any pair works) must end up in a connection, not the file.
    text = with_env(
        text,
        "- name: CLUSTER_LABEL\n  value: cluster\n- name: PROMETHEUS_USERNAME\n  value: finout\n"
        '- name: PROMETHEUS_PASSWORD\n  value: "pa55-word"\n',
    )
    manifest.write_text(text)
    stack = AirflowStack(
        clusters=[], defaults={"QUERY_DELAY_SECONDS": 0}, connections={"aws_default": s3_server.connection()}
    )
    connections = tmp_path / "connections.json"
    try:
        result = subprocess.run(
            [str(BIN / "finout-provider"), "import-cronjob", str(manifest),
             "--clusters-file", str(stack.clusters_file), "--connections-file", str(connections)],
            env=stack.env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert "pa55-word" not in stack.clusters_file.read_text()
        entry = yaml.safe_load(stack.clusters_file.read_text())["clusters"][0]
        assert entry["PROMETHEUS_CONN_ID"] == "finout_prometheus_prod-eu" and entry["CLUSTER_LABEL"] == "cluster"

        stack.migrate()
        stack.airflow("connections", "import", str(connections))
        errors = stack.airflow("dags", "list-import-errors", "-o", "json").stdout
        assert "finout_prometheus" not in errors, errors
        logical = history.end - 2 * H
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(logical))
        run = stack.dags_test("finout_prometheus_prod-eu", stamp)
        output = run.stdout + run.stderr
        client: Any = s3_server.client()
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        keys = {o["Key"] for page in pages for o in page.get("Contents", [])}
        window = logical - H
        assert keys == {build_key("k8s/prometheus", "prod-eu", m.name, window) for m in CATALOGUE}, output[-3000:]
        body = json.loads(gzip.decompress(client.get_object(Bucket=bucket, Key=sorted(keys)[0])["Body"].read()))
        assert body["status"] == "success"
        assert "pa55-word" not in output
    finally:
        stack.cleanup()
