"""The provider description Airflow reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from finout_provider import __version__


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
                "python-modules": ["finout_provider.operators.retention", "finout_provider.operators.plan"],
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
        "connection-types": [
            {
                "hook-class-name": "finout_provider.hooks.prometheus.PrometheusHook",
                "connection-type": "prometheus",
            }
        ],
    }
