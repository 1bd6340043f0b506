"""`import-cronjob`: Finout's CronJob manifest -> clusters file entry + connection definition."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest
import yaml

from finout_provider.cli import main
from finout_provider.config.clusters import parse_document
from finout_provider.config.cronjob import CronJobError, import_cronjob, merge_entry

SEED = (Path(__file__).resolve().parent.parent / "data" / "finout-cronjob.yaml").read_text()


def filled(text: str = SEED, **values: str) -> str:
    values = {
        "<BUCKET_NAME>": "acme-finout",
        "<S3_PREFIX>": "k8s/prometheus",
        "<CLUSTER_NAME>": "prod-eu",
        "<PROMETHEUS_SERVICE>.<NAMESPACE>.svc.cluster.local": "prometheus-server.monitoring.svc.cluster.local",
        **values,
    }
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def with_env(text: str, lines: str) -> str:
    indent = " " * 16
    extra = "".join(f"{indent}{line}\n" for line in lines.strip("\n").splitlines())
    return text.replace(f"{indent}- name: PORT\n", f"{extra}{indent}- name: PORT\n")


def test_the_seed_cronjob_becomes_a_valid_entry() -> None:
    imported = import_cronjob(filled())
    assert imported.entry == {
        "S3_BUCKET": "acme-finout",
        "S3_PREFIX": "k8s/prometheus",
        "CLUSTER_NAME": "prod-eu",
        "HOSTNAME": "prometheus-server.monitoring.svc.cluster.local",
        "PORT": "9090",
    }
    assert imported.connections == {}
    notes = "\n".join(imported.notes)
    assert "is a name inside the cluster" in notes and "'*/30 * * * *'" in notes
    parsed = parse_document({"clusters": [imported.entry]})
    assert not parsed.errors and parsed.clusters[0].hostname == "prometheus-server.monitoring.svc.cluster.local"


def test_credentials_move_to_a_connection_and_secret_refs_become_notes() -> None:
    text = with_env(
        filled(),
        """
- name: PROMETHEUS_USERNAME
  value: "exporter"
- name: PROMETHEUS_PASSWORD
  valueFrom:
    secretKeyRef: {name: prom-auth, key: password}
- name: PROMETHEUS_X_SCOPE_ORGID
  value: "tenant-7"
- name: PATH_PREFIX
  value: "/prometheus"
- name: TIME_FRAME
  value: "1800"
- name: LOG_LEVEL
  value: debug
""",
    )
    imported = import_cronjob(text)
    assert imported.entry == {
        "S3_BUCKET": "acme-finout",
        "S3_PREFIX": "k8s/prometheus",
        "CLUSTER_NAME": "prod-eu",
        "TIME_FRAME": "1800",
        "PROMETHEUS_CONN_ID": "finout_prometheus_prod-eu",
    }
    assert imported.connections == {
        "finout_prometheus_prod-eu": {
            "conn_type": "prometheus",
            "host": "prometheus-server.monitoring.svc.cluster.local",
            "port": 9090,
            "schema": "http",
            "extra": json.dumps({"path_prefix": "/prometheus", "x_scope_orgid": "tenant-7"}),
            "login": "exporter",
            "password": "",
        }
    }
    notes = "\n".join(imported.notes)
    assert "PROMETHEUS_PASSWORD comes from Kubernetes Secret 'prom-auth' key 'password'" in notes
    assert "LOG_LEVEL is not a variable of the exporter" in notes
    assert not parse_document({"clusters": [imported.entry]}).errors


def test_bearer_token_values_never_stay_in_the_entry() -> None:
    text = with_env(filled(), '- name: PROMETHEUS_BEARER_AUTH_TOKEN\n  value: "s3cr3t-token"\n')
    imported = import_cronjob(text)
    assert "s3cr3t-token" not in json.dumps(imported.entry) + "\n".join(imported.notes)
    assert json.loads(imported.connections["finout_prometheus_prod-eu"]["extra"]) == {"bearer_token": "s3cr3t-token"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: Deployment\n", "found 0"),
        ("a: [\n", "not valid YAML"),
        (SEED.replace("- name: CLUSTER_NAME", "- name: CLUSTER").replace("finout/finout", "other/x"), "no container"),
    ],
)
def test_what_is_not_a_finout_cronjob_is_refused(text: str, message: str) -> None:
    with pytest.raises(CronJobError, match=message):
        import_cronjob(text)


def test_merge_refuses_a_second_cluster_of_the_same_name() -> None:
    doc = merge_entry({"defaults": {"S3_BUCKET": "b"}, "clusters": [{"CLUSTER_NAME": "a"}]}, {"CLUSTER_NAME": "b"})
    assert [c["CLUSTER_NAME"] for c in doc["clusters"]] == ["a", "b"] and doc["defaults"] == {"S3_BUCKET": "b"}
    with pytest.raises(CronJobError, match="already has a cluster named 'a'"):
        merge_entry(doc, {"CLUSTER_NAME": "a"})


def test_cli_writes_the_clusters_file_and_a_private_connections_file(tmp_path: Path) -> None:
    manifest = tmp_path / "cronjob.yaml"
    manifest.write_text(with_env(filled(), '- name: PROMETHEUS_BEARER_AUTH_TOKEN\n  value: "tok"\n'))
    clusters, connections = tmp_path / "clusters.yaml", tmp_path / "connections.json"
    clusters.write_text(yaml.safe_dump({"clusters": [{"CLUSTER_NAME": "old", "S3_BUCKET": "b", "S3_PREFIX": "p"}]}))
    out, err = io.StringIO(), io.StringIO()
    args = ["import-cronjob", str(manifest), "--clusters-file", str(clusters), "--connections-file", str(connections)]
    assert main(args, out, err) == 0, err.getvalue()
    document = yaml.safe_load(clusters.read_text())
    assert [c["CLUSTER_NAME"] for c in document["clusters"]] == ["old", "prod-eu"]
    assert "tok" not in clusters.read_text()
    assert json.loads(json.loads(connections.read_text())["finout_prometheus_prod-eu"]["extra"]) == {
        "bearer_token": "tok"
    }
    assert stat.S_IMODE(connections.stat().st_mode) == 0o600
    assert "note: HOSTNAME" in err.getvalue()
    # Importing it again is refused rather than shadowing the first entry.
    assert main(args, io.StringIO(), err := io.StringIO()) == 2
    assert "already has a cluster named 'prod-eu'" in err.getvalue()


def test_cli_refuses_an_entry_that_still_holds_placeholders(tmp_path: Path) -> None:
    manifest = tmp_path / "cronjob.yaml"
    manifest.write_text(SEED)
    err = io.StringIO()
    code = main(["import-cronjob", str(manifest), "--clusters-file", str(tmp_path / "c.yaml")], io.StringIO(), err)
    assert code == 2 and "the imported entry is not valid" in err.getvalue() and "CLUSTER_NAME" in err.getvalue()
    assert not (tmp_path / "c.yaml").exists()


def test_cli_without_connections_file_prints_no_secret(tmp_path: Path) -> None:
    manifest = tmp_path / "cronjob.yaml"
    secrets = '- name: PROMETHEUS_USERNAME\n  value: u\n- name: PROMETHEUS_PASSWORD\n  value: "hunter2"\n'
    manifest.write_text(with_env(filled(), secrets + '- name: PROMETHEUS_BEARER_AUTH_TOKEN\n  value: "tok3n"\n'))
    out, err = io.StringIO(), io.StringIO()
    assert main(["import-cronjob", str(manifest)], out, err) == 0
    printed = out.getvalue() + err.getvalue()
    assert "hunter2" not in printed and "tok3n" not in printed
    assert "PROMETHEUS_CONN_ID: finout_prometheus_prod-eu" in printed and '"password": "***"' in printed
