"""Apache Airflow provider that exports Kubernetes clusters' Prometheus metrics to S3 for Finout."""

from __future__ import annotations

__version__ = "0.1.0"
