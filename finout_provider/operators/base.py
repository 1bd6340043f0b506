"""What every task of a cluster shares: its S3 target (cluster, bucket, prefix, AWS connection and
role), declared and documented once, as the Amazon provider's ``AwsBaseOperator`` does."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from finout_provider.compat import BaseOperator, BaseSensorOperator
from finout_provider.s3_target import S3TargetMixin

S3_TARGET_FIELDS = ("cluster_name", "s3_bucket", "s3_prefix", "aws_conn_id", "role_arn", "s3_kms_key_id")


def run_type(context: Any) -> str:
    """``scheduled``, ``manual``, ``backfill``, ... of the task's DAG run ("" outside a run)."""
    run = context.get("dag_run")
    kind = getattr(run, "run_type", "") if run is not None else ""
    return str(getattr(kind, "value", kind))


def s3_target_fields(*fields: str) -> tuple[str, ...]:
    """``template_fields`` of a cluster's task: the S3 target's and ``fields``."""
    return (*S3_TARGET_FIELDS, *fields)


class ClusterS3Operator(S3TargetMixin, BaseOperator):
    """
    Base of a cluster's tasks: where its export lives in S3 and how to reach it.

    :param cluster_name: the cluster (CLUSTER_NAME), its folder under the prefix. (templated)
    :param s3_bucket: bare bucket name (S3_BUCKET). (templated)
    :param s3_prefix: folder inside the bucket (S3_PREFIX). (templated)
    :param aws_conn_id: AWS connection for S3. (templated)
    :param role_arn: role to assume for S3 (ROLE_ARN). (templated)
    :param role_external_id: external id of that role (ROLE_EXTERNAL_ID).
    :param s3_kms_key_id: KMS key the uploads are encrypted with, SSE-KMS (S3_KMS_KEY_ID). (templated)
    """

    template_fields: Sequence[str] = s3_target_fields()

    def __init__(
        self,
        *,
        cluster_name: str,
        s3_bucket: str,
        s3_prefix: str,
        aws_conn_id: str | None = "aws_default",
        role_arn: str | None = None,
        role_external_id: str | None = None,
        s3_kms_key_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cluster_name = cluster_name
        self.s3_bucket = s3_bucket
        self.s3_prefix = s3_prefix
        self.aws_conn_id = aws_conn_id
        self.role_arn = role_arn
        self.role_external_id = role_external_id
        self.s3_kms_key_id = s3_kms_key_id


class ClusterS3Sensor(ClusterS3Operator, BaseSensorOperator):
    """A sensor of a cluster's S3 target (the arguments of :class:`ClusterS3Operator`)."""
