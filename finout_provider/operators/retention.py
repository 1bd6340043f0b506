"""Retention: delete a cluster's layout objects whose window started more than RETENTION_DAYS ago."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from finout_provider.failures import failing_fast
from finout_provider.layout import normalize_prefix
from finout_provider.operators.base import ClusterS3Operator, s3_target_fields
from finout_provider.windows import DAY

if TYPE_CHECKING:
    from finout_provider.compat import Context


class FinoutRetentionOperator(ClusterS3Operator):
    """
    Delete the layout objects of one cluster whose window start is older than ``retention_days``.

    Only keys that parse as ``<s3_prefix>/<cluster_name>/end=.../day=.../metric=.../<START>_<NAME>.json.gz``
    are candidates; anything else in the bucket is never touched. Listings walk the ``end=``,
    ``day=`` and ``metric=`` levels with ``Delimiter="/"`` (as the seed's IAM policy demands), and
    day folders newer than the cutoff are not opened at all.

    :param retention_days: keep this many days (RETENTION_DAYS).
    :param dry_run: only log what would be deleted.

    The S3 target's arguments are :class:`~finout_provider.operators.base.ClusterS3Operator`'s.
    """

    template_fields: Sequence[str] = s3_target_fields()

    def __init__(
        self,
        *,
        retention_days: int = 30,
        dry_run: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.retention_days = retention_days
        self.delete = not dry_run  # (BaseOperator already has a dry_run() method)

    def expired_keys(self, cutoff: int) -> list[str]:
        """Layout keys of this cluster whose window starts before ``cutoff``."""
        return self.cluster_folder.keys_before(cutoff)

    def execute(self, context: Context) -> dict[str, Any]:
        cutoff = int(time.time()) - self.retention_days * DAY
        with failing_fast(f"cluster {self.cluster_name!r}: retention"):
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
