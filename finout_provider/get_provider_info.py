"""The provider description Airflow reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from finout_provider import __version__
from finout_provider.prometheus.connection import ANSWER_TIMEOUT, MAX_RETRIES, TENANT_HEADER


def _field(label: str, kind: str = "string", description: str = "", **schema: Any) -> dict[str, Any]:
    return {"label": label, "description": description, "schema": {"type": [kind, "null"], **schema}}


# Extras of the `prometheus` connection, as form fields (Airflow >= 3.2 reads them from here).
CONN_FIELDS: dict[str, Any] = {
    "path_prefix": _field("Path prefix", description="Sub-path before /api/v1, e.g. 'prometheus' for Mimir"),
    "bearer_token": _field("Bearer token", description="Sent as 'Authorization: Bearer ...'", format="password"),
    "x_scope_orgid": _field("Tenant", description="Mimir/Cortex/Thanos tenant, sent in the tenant header"),
    "tenant_header": _field(
        "Tenant header",
        description=f"default {TENANT_HEADER} (Mimir, Cortex); THANOS-TENANT for Thanos' querier",
        default=TENANT_HEADER,
    ),
    "verify": _field("Verify TLS", "boolean", "Verify the server's certificate (default on)", default=True),
    "ca_bundle": _field("CA bundle", description="Path to the CA that signed the server's certificate"),
    "client_cert": _field("Client certificate", description="Path to a PEM client certificate"),
    "client_key": _field("Client key", description="Path to the client certificate's key"),
    "sigv4": _field("SigV4 (Amazon Managed Prometheus)", "boolean", "Sign requests with AWS SigV4", default=False),
    "aws_conn_id": _field("AWS connection for SigV4", description="Credentials for SigV4 signing"),
    "region_name": _field("AWS region for SigV4", description="e.g. us-east-1"),
    "timeout": _field("Read timeout (s)", "integer", "Seconds one read of an answer may wait", default=300),
    "answer_timeout": _field(
        "Answer timeout (s)",
        "integer",
        "Seconds a whole answer may take; past it the try fails and is retried",
        default=ANSWER_TIMEOUT,
    ),
    "max_retries": _field(
        "Retries",
        "integer",
        "Retries of a failed attempt (connection errors, 429, 502-504; a 500 twice)",
        default=MAX_RETRIES,
    ),
    "retry_wait": _field(
        "First backoff (s)", "number", "Doubled at each retry, capped at 60 s; Retry-After wins", default=1.0
    ),
    "defined_by": _field(
        "Defined by",
        description="where errors say this connection comes from (set for HOSTNAME/PORT)",
    ),
    "headers": _field("Extra headers (JSON object)", description='e.g. {"X-Team": "finops"}, sent with every request'),
    "accept_encoding": _field("Accept-Encoding", description="default identity (answers are streamed uncompressed)"),
}
# How the form shows the connection's own fields (Airflow >= 3.2 reads it here, older ones from the hook).
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": [],
    "relabeling": {"schema": "Scheme (http or https)", "login": "Username", "password": "Password"},
    "placeholders": {"host": "prometheus-server.monitoring.svc.cluster.local", "port": "9090", "schema": "http"},
}

CONNECTION_TYPE: dict[str, Any] = {
    "hook-class-name": "finout_provider.hooks.prometheus.PrometheusHook",
    "connection-type": "prometheus",
    "hook-name": "Prometheus",
    "conn-fields": CONN_FIELDS,
    "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-finout",
        "name": "Finout",
        "description": "Export each Kubernetes cluster's Prometheus metrics to S3 in the layout Finout ingests.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Prometheus",
                "external-doc-url": "https://prometheus.io/docs/prometheus/latest/querying/api/",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {"integration-name": "Prometheus", "python-modules": ["finout_provider.hooks.prometheus"]},
        ],
        "operators": [
            {
                "integration-name": "Prometheus",
                "python-modules": [
                    "finout_provider.operators.retention",
                    "finout_provider.operators.plan",
                    "finout_provider.operators.preflight",
                    "finout_provider.operators.freshness",
                ],
            },
        ],
        "sensors": [
            {"integration-name": "Prometheus", "python-modules": ["finout_provider.sensors.export"]},
        ],
        "triggers": [
            {"integration-name": "Prometheus", "python-modules": ["finout_provider.triggers.export"]},
        ],
        "transfers": [
            {
                "source-integration-name": "Prometheus",
                "target-integration-name": "Amazon Simple Storage Service (S3)",
                "python-module": "finout_provider.transfers.prometheus_to_s3",
            }
        ],
        "extra-links": ["finout_provider.links.S3ExportLink"],
        "connection-types": [CONNECTION_TYPE],
    }
