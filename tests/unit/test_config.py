from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from finout_provider.catalogue import CATALOGUE_NAMES
from finout_provider.config.clusters import ClusterConfig, load_file, parse_document

BASE = {"S3_BUCKET": "finout-metrics", "S3_PREFIX": "k8s/prometheus"}


def one(entry: dict[str, Any]) -> ClusterConfig:
    result = parse_document({"defaults": BASE, "clusters": [entry]})
    assert not result.errors, result.errors
    return result.clusters[0]


def error_of(entry: dict[str, Any]) -> str:
    result = parse_document({"defaults": BASE, "clusters": [entry]})
    assert len(result.errors) == 1 and not result.clusters
    return str(result.errors[0])


def test_cronjob_env_values_with_seed_defaults() -> None:
    config = one({"CLUSTER_NAME": "prod", "HOSTNAME": "prometheus-server.monitoring.svc.cluster.local", "PORT": "9090"})
    assert (config.time_frame, config.backfill_days, config.queries_batch_size) == (3600, 3, 5)
    assert (config.scheme, config.port, config.retention_days, config.step_seconds) == ("http", 9090, 30, 60)
    assert config.query_delay_seconds == 5 and config.mode == "airflow" and config.aws_conn_id == "aws_default"
    assert [m.name for m in config.metrics] == list(CATALOGUE_NAMES)
    assert config.dag_id == "finout_prometheus_prod"
    assert config.inline_connection() == {
        "conn_type": "prometheus",
        "host": "prometheus-server.monitoring.svc.cluster.local",
        "port": 9090,
        "schema": "http",
        "extra": {"defined_by": "HOSTNAME/PORT/SCHEME of cluster 'prod' in the clusters file"},
    }


def test_an_unreachable_prometheus_is_named_by_what_the_cluster_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster with HOSTNAME/PORT has no connection of its own to check: errors name the keys."""
    import json

    from finout_provider.hooks.prometheus import PrometheusHook
    from finout_provider.prometheus.errors import PrometheusError

    config = one({"CLUSTER_NAME": "prod", "HOSTNAME": "127.0.0.1", "PORT": "9"})
    monkeypatch.setenv(f"AIRFLOW_CONN_{config.effective_conn_id.upper()}", json.dumps(config.inline_connection()))
    with pytest.raises(PrometheusError, match="check HOSTNAME/PORT/SCHEME of cluster 'prod' in the clusters file"):
        PrometheusHook(config.effective_conn_id, max_retries=0).get_conn().check_ready()


def test_keys_are_case_insensitive_and_backfill_days_forms() -> None:
    assert one({"cluster_name": "a", "backfill_days": "7d"}).backfill_days == 7
    assert one({"CLUSTER_NAME": "a", "BACKFILL_DAYS": 2}).backfill_days == 2
    assert one({"CLUSTER_NAME": "a", "INITIAL_BACKFILL_DATE": "2025-10-01"}).initial_backfill_date == date(2025, 10, 1)


def test_credentials_in_file_are_accepted_and_warned_about() -> None:
    config = one({"CLUSTER_NAME": "a", "PROMETHEUS_USERNAME": "u", "PROMETHEUS_PASSWORD": "p@ss"})
    assert config.secrets == ("p@ss",) and config.warnings
    assert "PROMETHEUS_CONN_ID" in config.warnings[0] and "p@ss" not in config.warnings[0]
    token = one({"CLUSTER_NAME": "b", "PROMETHEUS_BEARER_AUTH_TOKEN": "tok"})
    assert token.inline_connection()["extra"]["bearer_token"] == "tok"  # type: ignore[index]


def test_metrics_subset_and_extra_queries() -> None:
    config = one({"CLUSTER_NAME": "a", "METRICS": ["cpu_requests"], "EXTRA_QUERIES": [{"name": "my_q", "query": "up"}]})
    assert [m.name for m in config.metrics] == ["cpu_requests", "my_q"]


@pytest.mark.parametrize(
    ("entry", "key", "hint"),
    [
        ({"CLUSTER_NAME": "a/b"}, "CLUSTER_NAME", "letters, digits"),
        ({"CLUSTER_NAME": "a b"}, "CLUSTER_NAME", "letters, digits"),
        ({"CLUSTER_NAME": ".."}, "CLUSTER_NAME", "letters, digits"),
        ({"CLUSTER_NAME": "a", "S3_BUCKET": "s3://bucket/path"}, "S3_BUCKET", "use 'bucket'"),
        ({"CLUSTER_NAME": "a", "S3_PREFIX": "k8s/../x"}, "S3_PREFIX", "'..'"),
        ({"CLUSTER_NAME": "a", "HOSTNAM": "x"}, "HOSTNAM", "did you mean HOSTNAME"),
        ({"CLUSTER_NAME": "a", "TIME_FRAME": 7000}, "TIME_FRAME", "divide a day"),
        ({"CLUSTER_NAME": "a", "TIME_FRAME": 86400, "STEP_SECONDS": 1}, "TIME_FRAME", "11000"),
        ({"CLUSTER_NAME": "a", "BACKFILL_DAYS": "three"}, "BACKFILL_DAYS", "number of days"),
        ({"CLUSTER_NAME": "a", "BACKFILL_DAYS": "900d"}, "BACKFILL_DAYS", "out of range"),
        ({"CLUSTER_NAME": "a", "INITIAL_BACKFILL_DATE": "01/10/2025"}, "INITIAL_BACKFILL_DATE", "YYYY-MM-DD"),
        ({"CLUSTER_NAME": "a", "INITIAL_BACKFILL_DATE": "2025-02-30"}, "INITIAL_BACKFILL_DATE", "YYYY-MM-DD"),
        ({"CLUSTER_NAME": "a", "SCHEME": "ftp"}, "SCHEME", "http, https"),
        ({"CLUSTER_NAME": "a", "PORT": 70000}, "PORT", "1..65535"),
        ({"CLUSTER_NAME": "a", "HOSTNAME": "http://prom:9090"}, "HOSTNAME", "SCHEME"),
        ({"CLUSTER_NAME": "a", "QUERIES_BATCH_SIZE": 0}, "QUERIES_BATCH_SIZE", "out of range"),
        ({"CLUSTER_NAME": "a", "MODE": "cron"}, "MODE", "kubernetes_pod"),
        ({"CLUSTER_NAME": "a", "METRICS": ["cpu_request"]}, "METRICS", "not in the catalogue"),
        ({"CLUSTER_NAME": "a", "PROMETHEUS_CONN_ID": "c", "HOSTNAME": "h"}, "PROMETHEUS_CONN_ID", "not both"),
        ({"S3_BUCKET": "x-bucket"}, "CLUSTER_NAME", "required"),
        ({"CLUSTER_NAME": "a", "PREFLIGHT": "sometimes"}, "PREFLIGHT", "true or false"),
        ({"CLUSTER_NAME": "a", "PREFLIGHT": True, "MODE": "kubernetes_pod"}, "PREFLIGHT", "MODE airflow"),
    ],
)
def test_bad_entries_name_cluster_key_and_fix(entry: dict[str, Any], key: str, hint: str) -> None:
    message = error_of(entry)
    assert f"key {key}" in message and hint in message
    if "CLUSTER_NAME" in entry:
        assert f"cluster {entry['CLUSTER_NAME']!r}" in message


def test_missing_bucket_is_required() -> None:
    result = parse_document({"clusters": [{"CLUSTER_NAME": "a", "S3_PREFIX": "p"}]})
    assert "key S3_BUCKET: is required" in str(result.errors[0])


def test_one_bad_entry_does_not_hide_the_others(tmp_path: Path) -> None:
    path = tmp_path / "clusters.yaml"
    clusters = [{"CLUSTER_NAME": "good"}, {"CLUSTER_NAME": "bad", "PORT": "x"}, {"CLUSTER_NAME": "good2"}]
    clusters.append({"CLUSTER_NAME": "good"})  # duplicate
    path.write_text(yaml.safe_dump({"defaults": BASE, "clusters": clusters}))
    result = load_file(path)
    assert [c.cluster_name for c in result.clusters] == ["good", "good2"]
    assert [(e.cluster, e.key) for e in result.errors] == [("bad", "PORT"), ("good", "CLUSTER_NAME")]
    assert "duplicate" in str(result.errors[1])


def test_unreadable_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="FINOUT_CLUSTERS_FILE"):
        load_file(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("clusters: [")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_file(tmp_path / "bad.yaml")


def test_readme_key_table_is_the_key_table() -> None:
    from finout_provider.config.keys import KEYS, keys_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert keys_table() in readme, "README's key table differs: paste finout_provider.config.keys.keys_table()"
    assert all(f"| {key.name} |" in readme for key in KEYS)
