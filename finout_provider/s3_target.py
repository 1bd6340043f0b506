"""What every task of a cluster shares to reach its S3 objects (cheap to import: no boto3)."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from finout_provider.exports import ClusterFolder
    from finout_provider.hooks.s3 import FinoutS3Hook


class S3TargetMixin:
    """``s3_hook`` from the task's ``aws_conn_id``, assuming ``role_arn`` (ROLE_ARN) when given,
    and ``cluster_folder``, the cluster's export folder read through it."""

    cluster_name: str
    s3_bucket: str  # "" when a task reads no S3 (a preflight without a target)
    s3_prefix: str
    aws_conn_id: str | None
    role_arn: str | None
    role_external_id: str | None
    s3_kms_key_id: str | None = None  # uploads only: a reader (the trigger) has none

    @property
    def cluster_folder(self) -> ClusterFolder:
        """``s3://<s3_bucket>/<s3_prefix>/<cluster_name>/`` (the templated values)."""
        from finout_provider.exports import ClusterFolder
        from finout_provider.layout import normalize_prefix

        if not (self.s3_bucket and self.s3_prefix):
            raise ValueError(f"cluster {self.cluster_name!r}: S3 bucket and prefix are needed to read its export")
        return ClusterFolder(self.s3_hook, self.s3_bucket, normalize_prefix(self.s3_prefix), self.cluster_name)

    @cached_property
    def s3_hook(self) -> FinoutS3Hook:
        from finout_provider.hooks.s3 import FinoutS3Hook

        encryption = (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.s3_kms_key_id} if self.s3_kms_key_id else {}
        )
        return FinoutS3Hook(
            self.aws_conn_id, role_arn=self.role_arn, role_external_id=self.role_external_id, extra_args=encryption
        )
