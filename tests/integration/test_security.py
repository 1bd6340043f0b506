"""Security: TLS verified by default, least privilege under the seed's IAM policy, no secret leaks."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

from devtools.faults import SUCCESS, FaultServer, Seen, make_ca_and_server_cert, reply
from devtools.history import HistorySpec
from devtools.stack import airflow_version
from finout_provider.catalogue import CATALOGUE, ExportSpec
from finout_provider.hooks.prometheus import PrometheusHook
from finout_provider.prometheus.errors import PrometheusError
from finout_provider.s3.layout import build_key
from finout_provider.target import S3Target
from tests.conftest import BUCKET, PREFIX, set_connection
from tests.integration.test_retention_validation import assert_within_policy, record_requests

pytestmark = pytest.mark.integration
H = 3600


def ok(seen: Seen, handler: Any) -> None:
    reply(handler, 200, SUCCESS)


def test_tls_is_verified_by_default_and_a_ca_bundle_makes_it_work(tmp_path: Path) -> None:
    ca, context = make_ca_and_server_cert(str(tmp_path))
    with FaultServer(ok, tls=context) as server:
        set_connection("p_tls", conn_type="prometheus", host="127.0.0.1", port=server.port, schema="https")
        with pytest.raises(PrometheusError, match=r"TLS verification .* failed.*ca_bundle.*'p_tls'"):
            PrometheusHook("p_tls").get_conn().query_range("up", 0, 60, 60)
        assert server.requests == []  # the handshake failed: nothing was sent, credentials included
        set_connection(
            "p_tls_ca",
            conn_type="prometheus",
            host="127.0.0.1",
            port=server.port,
            schema="https",
            extra={"ca_bundle": ca},
        )
        assert PrometheusHook("p_tls_ca").get_conn().query_range("up", 0, 60, 60)["status"] == "success"
    assert len(server.requests) == 1


SEED_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "FinoutBucketPermissions",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": f"arn:aws:s3:::{BUCKET}",
            "Condition": {"StringEquals": {"s3:delimiter": "/"}, "StringLike": {"s3:prefix": f"{PREFIX}*"}},
        },
        {
            "Sid": "FinoutMetricFilesPermissions",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
            "Resource": f"arn:aws:s3:::{BUCKET}/{PREFIX}/*",
        },
    ],
}


def test_the_whole_run_works_with_exactly_the_seed_policy(prom_conn: str, history: HistorySpec) -> None:
    """Plan (with S3 gap listing), export, validate and prune as an IAM user holding only the seed's
    policy, with moto enforcing IAM; a botocore hook checks the conditions moto does not enforce."""
    import boto3
    from moto import mock_aws
    from moto.core import set_initial_no_auth_action_count

    from finout_provider.operators.plan import PlanWindowsOperator
    from finout_provider.operators.retention import FinoutRetentionOperator
    from finout_provider.sensors.export import FinoutExportSensor
    from finout_provider.transfers.prometheus_to_s3 import PrometheusToS3Operator

    @set_initial_no_auth_action_count(5)
    @mock_aws
    def scenario() -> None:
        admin_s3 = boto3.client("s3", region_name="us-east-1")
        admin_s3.create_bucket(Bucket=BUCKET)  # 1
        iam = boto3.client("iam", region_name="us-east-1")
        iam.create_user(UserName="finout-exporter")  # 2
        iam.put_user_policy(UserName="finout-exporter", PolicyName="seed", PolicyDocument=json.dumps(SEED_POLICY))  # 3
        key = iam.create_access_key(UserName="finout-exporter")["AccessKey"]  # 4
        old = history.start - 40 * 86400
        admin_s3.put_object(Bucket=BUCKET, Key=build_key(PREFIX, "prod-eu", "node_info", old - old % H), Body=b"x")  # 5
        set_connection(
            "aws_exporter",
            conn_type="aws",
            login=key["AccessKeyId"],
            password=key["SecretAccessKey"],
            extra={"region_name": "us-east-1"},
        )
        target = S3Target("prod-eu", BUCKET, PREFIX, "aws_exporter")
        spec = ExportSpec(tuple(m for m in CATALOGUE if m.name in ("node_info", "cpu_requests")))
        recorded: list[list[tuple[str, dict[str, Any]]]] = []

        plan = PlanWindowsOperator(task_id="plan", target=target, spec=spec, settle_seconds=0, lookback_days=1)
        recorded.append(record_requests(plan.s3_hook.get_conn()))
        now = history.start + 3 * H
        run = type("Run", (), {"run_type": "scheduled"})()
        windows = plan.execute({"dag_run": run, "params": {}, "data_interval_start": now - H, "data_interval_end": now})  # type: ignore[arg-type]
        assert windows  # S3 listing under the policy worked (the old key makes this a "not first" run)
        for window in windows[-2:]:
            export = PrometheusToS3Operator(
                task_id="export", target=target, spec=spec, prometheus_conn_id=prom_conn, query_delay_seconds=0,
                **window,
            )  # fmt: skip
            recorded.append(record_requests(export.s3_hook.get_conn()))
            assert export.execute({})["objects"] == 2
        sensor = FinoutExportSensor(
            task_id="validate", target=target, spec=spec, windows=windows[-2:], timeout=1, poke_interval=0.1
        )
        recorded.append(record_requests(sensor.s3_hook.get_conn()))
        assert sensor.poke({}) is True  # type: ignore[arg-type]
        retention = FinoutRetentionOperator(task_id="retention", target=target, retention_days=30)
        recorded.append(record_requests(retention.s3_hook.get_conn()))
        assert retention.execute({})["deleted"] == 1  # type: ignore[arg-type]
        assert_within_policy([call for calls in recorded for call in calls])

        # Outside the prefix the same user is refused, and the error says what to fix.
        outside = PrometheusToS3Operator(
            task_id="x", target=S3Target("prod-eu", BUCKET, "elsewhere", "aws_exporter"),
            spec=ExportSpec(spec.metrics[:1]), prometheus_conn_id=prom_conn, query_delay_seconds=0,
            window_start=windows[-1]["window_start"], window_end=windows[-1]["window_end"],
        )  # fmt: skip
        with pytest.raises(Exception) as err:
            outside.execute({})
        message = str(err.value)
        assert "s3:PutObject on s3://" in message and "elsewhere/prod-eu/" in message
        assert "AccessDenied" in message and "seed's policy" in message

    scenario()


def test_secrets_are_kept_out_of_error_messages() -> None:
    def echo(seen: Seen, handler: Any) -> None:  # a proxy that reflects what it was sent
        reply(handler, 401, json.dumps({"status": "error", "error": f"bad credentials {seen.headers}"}).encode())

    with FaultServer(echo) as server:
        set_connection(
            "p_echo_bearer",
            conn_type="prometheus",
            host="127.0.0.1",
            port=server.port,
            extra={"bearer_token": "tok-SECRET-1"},
        )
        set_connection(
            "p_echo_basic",
            conn_type="prometheus",
            host="127.0.0.1",
            port=server.port,
            login="u",
            password="pw-SECRET-2",
        )
        for conn_id, secret in (("p_echo_bearer", "tok-SECRET-1"), ("p_echo_basic", "pw-SECRET-2")):
            with pytest.raises(PrometheusError) as err:
                PrometheusHook(conn_id).get_conn().query_range("up", 0, 60, 60)
            assert "HTTP 401" in str(err.value) and "***" in str(err.value)
            assert secret not in str(err.value)
            assert base64.b64encode(f"u:{secret}".encode()).decode() not in str(err.value)


def airflow_echo_removed(output: str) -> str:
    """``output`` less Airflow 3.0's own echo of the values it is asked to mask: 3.0's in-process
    supervisor (``airflow dags test`` only; fixed in 3.1) logs every request at debug level, the
    connection secrets Airflow masks among them. Nothing of ours prints them."""
    if not airflow_version().startswith("3.0."):
        return output
    return "\n".join(line for line in output.splitlines() if "type='MaskSecret'" not in line)


@pytest.mark.af2
def test_secrets_never_reach_logs_xcom_rendered_fields_or_the_database(
    prometheus: Any, history: HistorySpec, s3_server: Any
) -> None:
    from devtools.stack import AirflowStack

    token, password, aws_secret = "tok-SECRET-7f3a9c", "pw-SECRET-52d0e1", "aws-SECRET-b81e2d"
    bucket = "finout-secrets"
    s3_server.client().create_bucket(Bucket=bucket)
    aws = s3_server.connection() | {"password": aws_secret}
    stack = AirflowStack(
        clusters=[
            {
                "CLUSTER_NAME": "sec",
                "HOSTNAME": "127.0.0.1",
                "PORT": prometheus.port,
                "PROMETHEUS_BEARER_AUTH_TOKEN": token,
                "METRICS": ["node_info"],
            },
            {
                "CLUSTER_NAME": "sec-basic",
                "HOSTNAME": "127.0.0.1",
                "PORT": prometheus.port,
                "PROMETHEUS_USERNAME": "exporter",
                "PROMETHEUS_PASSWORD": password,
                "METRICS": ["node_info"],
            },
        ],
        defaults={"S3_BUCKET": bucket, "S3_PREFIX": PREFIX, "QUERY_DELAY_SECONDS": 0},
        connections={"aws_default": aws},
    )
    try:
        stack.migrate()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(history.end - H))
        outputs = [stack.dags_test(f"finout_prometheus_{name}", stamp) for name in ("sec", "sec-basic")]
        texts = {"dags test output": airflow_echo_removed("".join(o.stdout + o.stderr for o in outputs))}
        for path in stack.home.rglob("*"):
            if path.is_file() and path.name not in ("clusters.yaml",):  # the user's own file holds them
                texts[str(path)] = path.read_bytes().decode("utf-8", "replace")
        assert any(p.endswith("airflow.db") for p in texts)  # task logs: in the output (Airflow 3) or files (2.11)
        assert "metric node_info:" in texts["dags test output"] or any(p.endswith(".log") for p in texts)
        for where, text in texts.items():
            for secret in (token, password, aws_secret):
                assert secret not in text, (secret, where)
        keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])}
        assert len(keys) == 2  # both exports worked with their credentials sent
    finally:
        stack.cleanup()
