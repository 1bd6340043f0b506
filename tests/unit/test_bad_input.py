"""Bad input as a user types it: nothing read as something other than written, one bad entry costs
only itself, no secret in an echo. Files are written as text, the way people write them."""

from __future__ import annotations

import base64
import io
import json
import resource
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finout_provider.cli import main
from finout_provider.config.clusters import load_file, parse_document

HEAD = "defaults:\n  S3_BUCKET: finout-metrics\n  S3_PREFIX: k8s/prometheus\nclusters:\n"


def clusters_file(tmp_path: Path, entries: str, head: str = HEAD) -> Path:
    path = tmp_path / "clusters.yaml"
    path.write_text(head + entries, encoding="utf-8")
    return path


def errors_by_cluster(path: Path) -> dict[str, list[str]]:
    result = load_file(path)
    found: dict[str, list[str]] = {}
    for error in result.errors:
        found.setdefault(error.cluster, []).append(str(error))
    return found


# --- values read as written ---------------------------------------------------------------------


def test_yaml_1_1_guesses_are_not_made(tmp_path: Path) -> None:
    path = clusters_file(
        tmp_path,
        "  - CLUSTER_NAME: 0123\n    TIME_FRAME: 03600\n    PORT: 09090\n"
        "  - CLUSTER_NAME: yes\n    PREFLIGHT: on\n    ROLE_EXTERNAL_ID: 0012345678\n"
        "  - CLUSTER_NAME: 1e3\n    PROMETHEUS_X_SCOPE_ORGID: 007\n    STEP_SECONDS: 0060\n",
    )
    result = load_file(path)
    assert not result.errors
    first, second, third = result.clusters
    assert (first.cluster_name, first.time_frame, first.port) == ("0123", 3600, 9090)
    assert (second.cluster_name, second.preflight, second.role_external_id) == ("yes", True, "0012345678")
    assert (third.cluster_name, third.prometheus_x_scope_orgid, third.step_seconds) == ("1e3", "007", 60)


@settings(max_examples=60, deadline=None)
@given(
    zeros=st.integers(0, 3),
    number=st.sampled_from([60, 300, 900, 1800, 3600, 7200]),
    name=st.from_regex(r"[0-9]{1,4}|(yes|no|on|off|true|false|null)[a-z]{0,2}|[0-9]{1,2}:[0-9]{2}", fullmatch=True),
)
def test_property_scalars_keep_their_text(
    tmp_path_factory: pytest.TempPathFactory, zeros: int, number: int, name: str
) -> None:
    """Leading zeros, sexagesimal, booleans and numbers: a name stays its text, a number its decimal value."""
    if name.lower() in ("null",):
        return
    folder = tmp_path_factory.mktemp("p")
    path = clusters_file(folder, f"  - CLUSTER_NAME: {name}\n    TIME_FRAME: {'0' * zeros}{number}\n")
    result = load_file(path)
    if ":" in name:  # not a valid cluster name: refused, never read as a number
        assert [e.key for e in result.errors] == ["CLUSTER_NAME"] and repr(name) in str(result.errors[0])
        return
    assert not result.errors, result.errors
    assert (result.clusters[0].cluster_name, result.clusters[0].time_frame) == (name, number)


@settings(max_examples=30, deadline=None)
@given(day=st.dates(min_value=datetime(2000, 1, 1).date(), max_value=datetime(2030, 12, 31).date()), bad=st.booleans())
def test_property_dates_unquoted_are_text_and_only_their_entry_fails(
    tmp_path_factory: pytest.TempPathFactory, day: object, bad: bool
) -> None:
    text = f"{day}" if not bad else f"{day}".replace("-", "-1", 1)  # e.g. 2025-110-05
    path = clusters_file(
        tmp_path_factory.mktemp("d"),
        f"  - CLUSTER_NAME: a\n    INITIAL_BACKFILL_DATE: {text}\n  - CLUSTER_NAME: b\n",
    )
    result = load_file(path)
    assert [c.cluster_name for c in result.clusters][-1] == "b"
    keys = {(e.cluster, e.key) for e in result.errors}
    assert keys <= {("a", "INITIAL_BACKFILL_DATE")}


def test_null_values_and_null_queries(tmp_path: Path) -> None:
    path = clusters_file(
        tmp_path,
        "  - CLUSTER_NAME: a\n    EXTRA_QUERIES:\n      - name: my_q\n        query: null\n"
        "  - CLUSTER_NAME: b\n    ROLE_ARN: ~\n",
    )
    result = load_file(path)
    assert [c.cluster_name for c in result.clusters] == ["b"] and result.clusters[0].role_arn is None
    assert result.errors[0].key == "EXTRA_QUERIES" and "non-empty query" in str(result.errors[0])


def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path: Path) -> None:
    path = clusters_file(tmp_path, "  - CLUSTER_NAME: a\n    PORT: 9090\n    PORT: 9091\n  - CLUSTER_NAME: b\n")
    result = load_file(path)
    assert [c.cluster_name for c in result.clusters] == ["b"]
    assert [(e.cluster, e.key, e.line) for e in result.errors] == [("a", "PORT", 7)]
    assert "given twice" in str(result.errors[0])
    twice_cased = clusters_file(tmp_path, "  - CLUSTER_NAME: a\n    port: 1\n    PORT: 2\n")
    assert "case-insensitive" in str(load_file(twice_cased).errors[0])


# --- one bad entry costs only itself ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "key", "hint"),
    [
        ("2025-13-01", "INITIAL_BACKFILL_DATE", "YYYY-MM-DD"),
        ("9" * 5000, "PORT", "out of range"),
        ("1e999", "QUERY_DELAY_SECONDS", "number of seconds"),
        ("12:30", "TIME_FRAME", "not a whole number"),
    ],
)
def test_a_value_no_key_can_read_costs_only_its_entry(tmp_path: Path, value: str, key: str, hint: str) -> None:
    path = clusters_file(tmp_path, f"  - CLUSTER_NAME: bad\n    {key}: {value}\n  - CLUSTER_NAME: good\n")
    result = load_file(path)
    assert [c.cluster_name for c in result.clusters] == ["good"]
    assert [(e.cluster, e.key) for e in result.errors] == [("bad", key)] and hint in str(result.errors[0])
    assert len(str(result.errors[0])) < 400  # a 5,000-digit value is not echoed whole


def test_yaml_broken_inside_one_entry_costs_that_entry(tmp_path: Path) -> None:
    path = clusters_file(
        tmp_path,
        "  - CLUSTER_NAME: good\n  - CLUSTER_NAME: broken\n    HOSTNAME: [unclosed\n"
        "  - CLUSTER_NAME: good2\n    PORT: 9090\n",
    )
    result = load_file(path)
    assert [c.cluster_name for c in result.clusters] == ["good", "good2"]
    assert [e.cluster for e in result.errors] == ["broken"] and "not valid YAML" in str(result.errors[0])


def test_bytes_that_are_not_utf8_cost_their_entry(tmp_path: Path) -> None:
    path = tmp_path / "clusters.yaml"
    path.write_bytes((HEAD + "  - CLUSTER_NAME: a\n    ROLE_ARN: caf\xe9\n  - CLUSTER_NAME: b\n").encode("latin-1"))
    result = load_file(path)
    assert [c.cluster_name for c in result.clusters] == ["b"]
    assert result.errors[0].key == "ROLE_ARN" and "UTF-8" in str(result.errors[0])


def test_alias_bomb_is_refused_cheaply_and_costs_its_entry(tmp_path: Path) -> None:
    levels = ["    METRICS: &l0 [cpu_requests, cpu_requests, cpu_requests, cpu_requests, cpu_requests]\n"]
    levels += [f"    ROLE_ARN{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)]
    path = clusters_file(tmp_path, "  - CLUSTER_NAME: bomb\n" + "".join(levels) + "  - CLUSTER_NAME: good\n")
    before, began = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.monotonic()
    result = load_file(path)
    assert time.monotonic() - began < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB
    assert [c.cluster_name for c in result.clusters] == ["good"]
    assert [e.cluster for e in result.errors] == ["bomb"] and "alias" in str(result.errors[0])


def test_names_equal_up_to_case_are_refused(tmp_path: Path) -> None:
    path = clusters_file(tmp_path, "  - CLUSTER_NAME: prod\n  - CLUSTER_NAME: Prod\n")
    result = load_file(path)
    assert [c.cluster_name for c in result.clusters] == ["prod"]
    assert result.errors[0].cluster == "Prod" and "case" in str(result.errors[0])


# --- contradictions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "key", "hint"),
    [
        ({"RETENTION_DAYS": "3", "BACKFILL_DAYS": "3d"}, "RETENTION_DAYS", "above 3"),
        ({"INITIAL_BACKFILL_DATE": (datetime.now(UTC) + timedelta(days=3)).date().isoformat()},
         "INITIAL_BACKFILL_DATE", "in the future"),
        ({"SCHEDULE": "0 0 * * * *"}, "SCHEDULE", "no seconds"),
        ({"S3_BUCKET": "xn--bucket"}, "S3_BUCKET", "reserves"),
        ({"S3_BUCKET": "bucket-s3alias"}, "S3_BUCKET", "reserves"),
        ({"S3_BUCKET": "192.168.5.4"}, "S3_BUCKET", "IP address"),
        ({"S3_BUCKET": "my.-bucket"}, "S3_BUCKET", "'.-'"),
        ({"S3_PREFIX": "/".join(["p" * 200] * 5)}, "S3_PREFIX", "1024"),
        ({"HOSTNAME": "prometheus:9090"}, "HOSTNAME", "PORT"),
    ],
)  # fmt: skip
def test_contradictions_name_the_keys_and_the_fix(entry: dict[str, str], key: str, hint: str) -> None:
    base = {"CLUSTER_NAME": "a", "S3_BUCKET": "finout-metrics", "S3_PREFIX": "k8s/prometheus"}
    errors = parse_document({"clusters": [{**base, **entry}]}).errors
    assert [e.key for e in errors] == [key] and hint in str(errors[0]), errors


def test_every_bad_key_of_a_cluster_is_reported_at_once() -> None:
    entry = {"CLUSTER_NAME": "a", "S3_BUCKET": "finout-metrics", "S3_PREFIX": "k", "PORT": "x", "MODE": "cron",
             "TIME_FRAME": "7000", "HOSTNAM": "h"}  # fmt: skip
    assert sorted(e.key or "" for e in parse_document({"clusters": [entry]}).errors) == [
        "HOSTNAM", "MODE", "PORT", "TIME_FRAME",
    ]  # fmt: skip


# --- secrets -------------------------------------------------------------------------------------


def test_repr_of_a_cluster_hides_its_secrets() -> None:
    entry = {"CLUSTER_NAME": "a", "S3_BUCKET": "finout-metrics", "S3_PREFIX": "k", "PROMETHEUS_USERNAME": "u",
             "PROMETHEUS_PASSWORD": "hunter2-secret", "PROMETHEUS_BEARER_AUTH_TOKEN": "tok-secret"}  # fmt: skip
    config = parse_document({"clusters": [entry]}).clusters[0]
    assert "hunter2-secret" not in repr(config) and "tok-secret" not in repr(config)


@pytest.mark.parametrize("password", ["pässwörd-ünïcode", "plain-password-1"])
def test_echoed_credentials_are_redacted_in_every_encoding_and_when_cut(
    monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    from finout_provider.hooks.prometheus import PrometheusHook

    conn = {"conn_type": "prometheus", "host": "127.0.0.1", "login": "exporter", "password": password}
    monkeypatch.setenv("AIRFLOW_CONN_ECHO", json.dumps(conn))
    endpoint = PrometheusHook("echo").get_conn().endpoint
    latin1 = base64.b64encode(f"exporter:{password}".encode("latin-1")).decode()
    utf8 = base64.b64encode(f"exporter:{password}".encode()).decode()
    echoed = f"bad request; you sent Authorization: Basic {latin1} / {utf8} / {password}"
    assert latin1 not in endpoint.redact(echoed) and utf8 not in endpoint.redact(echoed)
    assert password not in endpoint.redact(echoed)
    cut = f"you sent Authorization: Basic {latin1[:-3]}"  # the body was cut inside the secret
    assert latin1[:-3] not in endpoint.redact(cut) and endpoint.redact(cut).endswith("***")


# --- import-cronjob ------------------------------------------------------------------------------

SEED = (Path(__file__).resolve().parent.parent / "data" / "finout-cronjob.yaml").read_text()


def manifest(tmp_path: Path, extra_env: str = "") -> Path:
    text = (
        SEED.replace("<BUCKET_NAME>", "acme-finout")
        .replace("<S3_PREFIX>", "k8s/prometheus")
        .replace("<CLUSTER_NAME>", "prod-eu")
        .replace("<PROMETHEUS_SERVICE>.<NAMESPACE>.svc.cluster.local", "prom.example.com")
    )
    indent = " " * 16
    extra = "".join(f"{indent}{line}\n" for line in extra_env.strip("\n").splitlines())
    path = tmp_path / "cronjob.yaml"
    path.write_text(text.replace(f"{indent}- name: PORT\n", f"{extra}{indent}- name: PORT\n"))
    return path


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), out, err)
    return code, out.getvalue(), err.getvalue()


def test_import_refuses_a_file_that_is_not_a_clusters_file_and_leaves_it(tmp_path: Path) -> None:
    target = tmp_path / "clusters.yaml"
    target.write_text("- CLUSTER_NAME: kept\n")
    code, _, err = run("import-cronjob", str(manifest(tmp_path)), "--clusters-file", str(target))
    assert code == 2 and "is not a clusters file" in err and target.read_text() == "- CLUSTER_NAME: kept\n"


def test_import_writes_both_files_or_neither_and_keeps_text(tmp_path: Path) -> None:
    target = clusters_file(tmp_path, "  # our first cluster\n  - CLUSTER_NAME: old\n")
    before = target.read_text()
    connections = tmp_path / "prom.json"
    connections.write_text("{not json")
    env = '- name: ROLE_EXTERNAL_ID\n  value: "0012345678"\n- name: PROMETHEUS_X_SCOPE_ORGID\n  value: "007"\n'
    env += '- name: PROMETHEUS_PASSWORD\n  value: "hunter2"\n'
    args = ["import-cronjob", str(manifest(tmp_path, env)), "--clusters-file", str(target)]
    code, _, err = run(*args, "--connections-file", str(connections))
    assert code == 2 and "nothing was written" in err and target.read_text() == before
    connections.unlink()
    code, _, err = run(*args, "--connections-file", str(connections))
    assert code == 0, err
    assert target.read_text().startswith(before) and "# our first cluster" in target.read_text()
    added = load_file(target).find("prod-eu")
    assert added is not None and added.role_external_id == "0012345678"
    conn = json.loads(connections.read_text())["finout_prometheus_prod-eu"]
    assert json.loads(conn["extra"]) == {"x_scope_orgid": "007"} and "password" not in conn
    assert "PROMETHEUS_PASSWORD is set without PROMETHEUS_USERNAME" in err


# --- the CLI answers in one line -------------------------------------------------------------------


def test_cli_failures_are_one_line(tmp_path: Path) -> None:
    path = clusters_file(tmp_path, "  - CLUSTER_NAME: a\n    HOSTNAME: prom:9090\n  - CLUSTER_NAME: b\n")
    code, _, err = run("plan", "--cluster", "a", "--clusters-file", str(path))
    assert code == 2 and err.count("\n") == 1 and "key HOSTNAME" in err and "PORT" in err
    code, _, err = run("plan", "--cluster", "b", "--clusters-file", str(path), "--limit", "0")
    assert code == 2 and err.count("\n") == 1 and "--limit" in err
    code, _, err = run("coverage", "--cluster", "b", "--clusters-file", str(path), "--from", "x", "--to", "y")
    assert code == 2 and err.count("\n") == 1 and "ISO-8601" in err
