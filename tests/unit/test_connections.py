"""Connections read without Airflow (finout_provider.connections) against Airflow's own reading of
the same AIRFLOW_CONN_* values, and the S3 client they give against the Amazon provider's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from finout_provider import connections
from finout_provider.connections import aws_client, environment_connection, plain_aws, secrets_backend_configured

URIS = [
    "aws://AKIAEXAMPLE:se%2Fcr%2Bet@/?region_name=eu-west-1&endpoint_url=http%3A%2F%2F127.0.0.1%3A5000",
    "prometheus://alice:p%40ss%3Aword@prom.example.com:9090/https",
    "prometheus://prom.example.com:9090?__extra__=%7B%22bearer_token%22%3A%22tok%22%2C%22verify%22%3Afalse%7D",
    "prometheus://https://prom.example.com:9443/prefix",
    "http://https%3A%2F%2Fprom.example.com%2Fselect%2F0",
    "postgresql://user:pw@db.example:5432/airflow",
    "my-type://host.example?a=1&b=&c=x%20y",
    "aws://",
    "prometheus://%5B%3A%3A1%5D:9090",
    "prometheus://user@host.example",
    "[not a uri]",
]
JSONS: list[dict[str, Any]] = [
    {"conn_type": "aws", "login": "AKIA", "password": "s", "extra": {"region_name": "us-east-1"}},
    {"conn_type": "prometheus", "host": "127.0.0.1", "port": "9090", "schema": "http", "extra": '{"timeout": 5}'},
    {"conn_type": "prometheus", "host": "https://user:pw@prom.example.com", "description": "typed in the UI"},
    {"uri": "prometheus://h.example:1234/https"},
    {"conn_type": "my-type", "host": "h", "port": 0},
]
FIELDS = ("conn_type", "host", "login", "password", "schema", "port", "extra_dejson")


def airflow_reads(conn_id: str) -> tuple[Any, ...]:
    from finout_provider.compat import BaseHook

    conn = BaseHook.get_connection(conn_id)
    return tuple(getattr(conn, name) for name in FIELDS)


@pytest.mark.parametrize("value", URIS + [json.dumps(j) for j in JSONS])
def test_environment_connections_read_as_airflow_reads_them(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__SECRETS__BACKEND", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_DIFF_CONN", f"  {value}\n")
    ours = environment_connection("diff_conn")
    assert ours is not None
    assert tuple(getattr(ours, name) for name in FIELDS) == airflow_reads("diff_conn")


@pytest.mark.parametrize(
    "value",
    [
        "a://b://c://d",
        "prometheus://user@https://host",
        "aws://?__extra__=not+json",
        '{"conn_type": "x", "owner": "me"}',
        '{"port": "x"}',
        '{"conn_type": "aws", "extra": "not json at all"}',
        '{"conn_type": "aws", "extra": "[1, 2]"}',
    ],
)
def test_what_airflow_would_refuse_or_this_does_not_know_is_left_to_airflow(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ODD", value)
    assert environment_connection("odd") is None


def test_absent_connections_and_secrets_backends_go_through_airflow(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_HERE", "prometheus://h:1")
    monkeypatch.delenv("AIRFLOW__SECRETS__BACKEND", raising=False)
    monkeypatch.setenv("AIRFLOW_CONFIG", str(tmp_path / "airflow.cfg"))
    assert environment_connection("elsewhere") is None
    assert environment_connection("here") is not None and not secrets_backend_configured()
    # Airflow asks a configured backend before the environment: so must we (here, by giving way).
    (tmp_path / "airflow.cfg").write_text("[secrets]\nbackend = airflow.providers.x.Vault\n")
    assert secrets_backend_configured() and environment_connection("here") is None
    (tmp_path / "airflow.cfg").write_text("[core]\ndags_folder = {AIRFLOW_HOME}/dags\n[secrets]\nbackend =\n")
    assert not secrets_backend_configured()
    monkeypatch.setenv("AIRFLOW__SECRETS__BACKEND", "airflow.providers.x.Vault")
    assert environment_connection("here") is None
    monkeypatch.setenv("AIRFLOW__SECRETS__BACKEND", "")
    monkeypatch.setenv("AIRFLOW__SECRETS__BACKEND_CMD", "cat /etc/backend")
    assert environment_connection("here") is None


@pytest.mark.parametrize(
    ("extra", "plain"),
    [
        ({"region_name": "eu-west-1", "endpoint_url": "http://127.0.0.1:1"}, True),
        ({"aws_access_key_id": "a", "aws_secret_access_key": "b", "aws_session_token": "t"}, True),
        ({"role_arn": "arn:aws:iam::1:role/x"}, False),
        ({"profile_name": "prod"}, False),
        ({"service_config": {"s3": {"endpoint_url": "http://x"}}}, False),
        ({"config_kwargs": {"signature_version": "unsigned"}}, False),
    ],
)
def test_only_plain_aws_connections_skip_the_amazon_provider(extra: dict[str, Any], plain: bool) -> None:
    conn = connections.from_json("aws_x", json.dumps({"conn_type": "aws", "extra": extra}))
    assert plain_aws(conn) is plain
    assert not plain_aws(connections.from_json("p", '{"conn_type": "prometheus"}'))


@pytest.mark.parametrize(
    "fields",
    [
        {"conn_type": "aws", "login": "AKIALOGIN", "password": "pw", "extra": {"region_name": "eu-west-1"}},
        {
            "conn_type": "aws",
            "extra": {
                "aws_access_key_id": "AKIAEXTRA",
                "aws_secret_access_key": "pw",
                "aws_session_token": "tok",
                "endpoint_url": "http://127.0.0.1:9999",
                "region_name": "ap-south-1",
                "verify": False,
            },
        },
        {"conn_type": "aws", "extra": {}},
    ],
)
def test_the_plain_s3_client_is_the_amazon_providers(fields: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from finout_provider.hooks.s3 import FinoutS3Hook

    monkeypatch.setenv("AIRFLOW_CONN_AWS_DIFF", json.dumps(fields))
    conn = environment_connection("aws_diff")
    assert conn is not None and plain_aws(conn)
    ours, theirs = aws_client(conn, "s3"), FinoutS3Hook("aws_diff").get_conn()

    def seen(client: Any) -> tuple[Any, ...]:
        credentials = client._request_signer._credentials
        return (
            client.meta.region_name,
            client.meta.endpoint_url,
            credentials.access_key,
            credentials.secret_key,
            credentials.token,
            client._endpoint.http_session._verify,
        )

    assert seen(ours) == seen(theirs)


def test_the_cli_finds_the_dag_folder_as_airflow_does_without_importing_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from finout_provider.cli import _clusters_file

    for name in ("AIRFLOW__CORE__DAGS_FOLDER", "FINOUT_CLUSTERS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONFIG", str(tmp_path / "airflow.cfg"))
    assert _clusters_file(None) == tmp_path / "dags" / "clusters.yaml"  # Airflow's default
    (tmp_path / "airflow.cfg").write_text("[core]\ndags_folder = {AIRFLOW_HOME}/our-dags\n")
    assert _clusters_file(None) == tmp_path / "our-dags" / "clusters.yaml"
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", "/srv/dags")
    assert _clusters_file(None) == Path("/srv/dags/clusters.yaml")
    monkeypatch.setenv("FINOUT_CLUSTERS_FILE", "/etc/finout/clusters.yaml")
    assert _clusters_file(None) == Path("/etc/finout/clusters.yaml")
    assert _clusters_file("here.yaml") == Path("here.yaml")


def test_role_arn_is_assumed_with_the_exporters_session_name_and_external_id() -> None:
    from unittest import mock

    from moto import mock_aws

    conn = connections.from_json("aws_x", '{"conn_type": "aws", "login": "AKIA", "password": "s"}')
    assert conn is not None
    with mock_aws():
        import botocore.client

        calls: list[dict[str, Any]] = []
        real = botocore.client.BaseClient._make_api_call

        def spy(self: Any, operation: str, params: dict[str, Any]) -> Any:
            calls.append({"operation": operation, **params})
            return real(self, operation, params)

        with mock.patch.object(botocore.client.BaseClient, "_make_api_call", spy):
            client = aws_client(conn, "s3", "arn:aws:iam::123456789012:role/finout", "ext-1")
    assert calls == [
        {
            "operation": "AssumeRole",
            "RoleArn": "arn:aws:iam::123456789012:role/finout",
            "RoleSessionName": connections.ROLE_SESSION_NAME,
            "ExternalId": "ext-1",
        }
    ]
    assert client._request_signer._credentials.access_key.startswith("ASIA")  # the role's, not AKIA
