"""A cluster's S3 and Prometheus clients outside tasks (the CLI, the fleet page): without Airflow
when the connections are in the environment in a plain form (:mod:`finout_provider.connections`),
else Airflow's hooks, which resolve them through secrets backends and the metadata database."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from finout_provider.connections import aws_client, environment_connection, plain_aws
from finout_provider.prometheus_api import PrometheusApi, PrometheusClient, truthy
from finout_provider.s3_objects import S3Client, S3Objects

if TYPE_CHECKING:
    from finout_provider.config import ClusterConfig


def s3_of(config: ClusterConfig) -> S3Objects:
    """The cluster's S3 (its AWS_CONN_ID, with ROLE_ARN assumed)."""
    conn = environment_connection(config.aws_conn_id) if config.aws_conn_id else None
    if conn is not None and plain_aws(conn):
        return S3Client(functools.partial(aws_client, conn, "s3", config.role_arn, config.role_external_id))
    from finout_provider.hooks.s3 import FinoutS3Hook

    return FinoutS3Hook(config.aws_conn_id, role_arn=config.role_arn, role_external_id=config.role_external_id)


def prometheus_of(config: ClusterConfig) -> PrometheusApi:
    """The cluster's Prometheus (its connection, or HOSTNAME/PORT of the clusters file)."""
    conn = environment_connection(config.effective_conn_id)
    if conn is not None:
        extra = conn.extra_dejson
        if not truthy(extra.get("sigv4")):
            return PrometheusClient(conn)
        aws = environment_connection(str(extra.get("aws_conn_id", "aws_default")))
        if aws is not None and plain_aws(aws):
            return PrometheusClient(conn, aws=aws)
    from finout_provider.hooks.prometheus import PrometheusHook

    return PrometheusHook(config.effective_conn_id)
