"""Retention: delete a cluster's layout objects whose window started more than RETENTION_DAYS ago."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from finout_provider.operators.base import FinoutBaseOperator
from finout_provider.plan.windows import DAY

if TYPE_CHECKING:
    from finout_provider.compat import Context


class FinoutRetentionOperator(FinoutBaseOperator):
    """
    Delete the layout objects of one cluster whose window start is older than ``retention_days``.

    Only keys that parse as ``<prefix>/<cluster>/end=.../day=.../metric=.../<START>_<NAME>.json.gz``
    are candidates; anything else in the bucket is never touched. Listings walk the ``end=``,
    ``day=`` and ``metric=`` levels with ``Delimiter="/"`` (as the seed's IAM policy demands), and
    day folders newer than the cutoff are not opened at all.

    :param target: the cluster's S3 target. (templated)
    :param retention_days: keep this many days (RETENTION_DAYS).
    :param dry_run: only log what would be deleted.
    """

    def __init__(self, *, retention_days: int = 30, dry_run: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retention_days = retention_days
        self.delete = not dry_run  # (BaseOperator already has a dry_run() method)

    def expired_keys(self, cutoff: int) -> list[str]:
        """Layout keys of this cluster whose window starts before ``cutoff``."""
        return self.cluster_folder.keys_before(cutoff)

    def execute(self, context: Context) -> dict[str, Any]:
        cutoff = int(time.time()) - self.retention_days * DAY
        keys = self.expired_keys(cutoff)
        action = "deleting" if self.delete else "would delete (dry run)"
        target = self.target.checked()
        self.log.info(
            "cluster %r: %s %d objects older than %d days in s3://%s/%s",
            target.cluster,
            action,
            len(keys),
            self.retention_days,
            target.bucket,
            target.root,
        )
        for key in keys[:10]:
            self.log.info("  %s", key)
        if len(keys) > 10:
            self.log.info("  ... and %d more", len(keys) - 10)
        if keys and self.delete:
            self.s3_hook.store.delete_keys(target.bucket, keys)
        return {"deleted": len(keys) if self.delete else 0, "expired": len(keys), "cutoff": cutoff}
