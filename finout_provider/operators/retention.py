"""Retention: delete a cluster's layout objects whose window started more than RETENTION_DAYS ago."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from finout_provider.layout import normalize_prefix, parse_key
from finout_provider.s3_target import S3TargetMixin
from finout_provider.windows import DAY

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class FinoutRetentionOperator(S3TargetMixin, BaseOperator):
    """
    Delete the layout objects of one cluster whose window start is older than ``retention_days``.

    Only keys that parse as ``<s3_prefix>/<cluster_name>/end=.../day=.../metric=.../<START>_<NAME>.json.gz``
    are candidates; anything else in the bucket is never touched. Listings walk the ``end=``,
    ``day=`` and ``metric=`` levels with ``Delimiter="/"`` (as the seed's IAM policy demands), and
    day folders newer than the cutoff are not opened at all.

    :param cluster_name: the cluster (CLUSTER_NAME). (templated)
    :param s3_bucket: the bucket (S3_BUCKET). (templated)
    :param s3_prefix: the folder (S3_PREFIX). (templated)
    :param retention_days: keep this many days (RETENTION_DAYS).
    :param dry_run: only log what would be deleted.
    :param aws_conn_id: AWS connection for S3. (templated)
    :param role_arn: role to assume for S3 (ROLE_ARN). (templated)
    :param role_external_id: external id of that role (ROLE_EXTERNAL_ID).
    """

    template_fields: Sequence[str] = ("cluster_name", "s3_bucket", "s3_prefix", "aws_conn_id", "role_arn")

    def __init__(
        self,
        *,
        cluster_name: str,
        s3_bucket: str,
        s3_prefix: str,
        retention_days: int = 30,
        dry_run: bool = False,
        aws_conn_id: str | None = "aws_default",
        role_arn: str | None = None,
        role_external_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cluster_name = cluster_name
        self.s3_bucket = s3_bucket
        self.s3_prefix = s3_prefix
        self.retention_days = retention_days
        self.delete = not dry_run  # (BaseOperator already has a dry_run() method)
        self.aws_conn_id = aws_conn_id
        self.role_arn = role_arn
        self.role_external_id = role_external_id

    def expired_keys(self, cutoff: int) -> list[str]:
        """Layout keys of this cluster whose window starts before ``cutoff``."""
        s3, bucket, prefix = self.s3_hook, self.s3_bucket, normalize_prefix(self.s3_prefix)
        expired: list[str] = []
        for day, folder in s3.day_folders(bucket, prefix, self.cluster_name):
            if day >= cutoff:
                break  # oldest first: nothing newer can be expired
            for metric_folder in s3.list_level(bucket, folder)[0]:
                for obj in s3.list_level(bucket, metric_folder)[1]:
                    parsed = parse_key(obj["Key"], prefix, self.cluster_name)
                    if parsed is not None and parsed.start < cutoff:
                        expired.append(obj["Key"])
        return expired

    def execute(self, context: Context) -> dict[str, Any]:
        cutoff = int(time.time()) - self.retention_days * DAY
        keys = self.expired_keys(cutoff)
        action = "deleting" if self.delete else "would delete (dry run)"
        self.log.info(
            "cluster %r: %s %d objects older than %d days in s3://%s/%s/%s/",
            self.cluster_name, action, len(keys), self.retention_days, self.s3_bucket,
            normalize_prefix(self.s3_prefix), self.cluster_name,
        )  # fmt: skip
        for key in keys[:10]:
            self.log.info("  %s", key)
        if len(keys) > 10:
            self.log.info("  ... and %d more", len(keys) - 10)
        if keys and self.delete:
            self.s3_hook.delete_keys(self.s3_bucket, keys)
        return {"deleted": len(keys) if self.delete else 0, "expired": len(keys), "cutoff": cutoff}
