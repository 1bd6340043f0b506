"""What every task of a cluster shares to reach its S3 objects (cheap to import: no boto3)."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from finout_provider.hooks.s3 import FinoutS3Hook


class S3TargetMixin:
    """``s3_hook`` from the task's ``aws_conn_id``, assuming ``role_arn`` (ROLE_ARN) when given."""

    aws_conn_id: str | None
    role_arn: str | None
    role_external_id: str | None

    @cached_property
    def s3_hook(self) -> FinoutS3Hook:
        from finout_provider.hooks.s3 import FinoutS3Hook

        return FinoutS3Hook(self.aws_conn_id, role_arn=self.role_arn, role_external_id=self.role_external_id)
