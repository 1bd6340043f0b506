"""Operator extra link: from an export task to its S3 folder in the AWS console."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from finout_provider.compat import BaseOperatorLink
from finout_provider.layout import LayoutError, cluster_root, day_folder
from finout_provider.windows import WindowError, to_epoch

CONSOLE = "https://s3.console.aws.amazon.com/s3/buckets/{bucket}?prefix={prefix}&showversions=false"


def console_url(bucket: str, folder: str) -> str:
    """The AWS console page listing ``folder`` (ends with "/") of ``bucket``."""
    return CONSOLE.format(bucket=quote(bucket, safe=""), prefix=quote(folder, safe="/="))


class S3ExportLink(BaseOperatorLink):
    """ "S3 export" button: the day folder of the task's window, or the cluster's folder."""

    name = "S3 export"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        fields = [getattr(operator, name, None) for name in ("s3_bucket", "s3_prefix", "cluster_name")]
        if not all(isinstance(v, str) and "{{" not in v for v in fields):
            return ""  # not rendered, e.g. a mapped task seen from Airflow 2's web server
        bucket, prefix, cluster = (str(v) for v in fields)
        start = getattr(operator, "window_start", None)
        try:
            folder = cluster_root(prefix, cluster) if start is None else day_folder(prefix, cluster, to_epoch(start))
        except (LayoutError, WindowError):
            return ""
        return console_url(bucket, folder)
