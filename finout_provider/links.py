"""Operator extra link: from an export task to its S3 folder, where the AWS connection's S3 is."""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import quote, urlsplit

from finout_provider.compat import BaseOperatorLink
from finout_provider.layout import LayoutError, cluster_root, day_folder
from finout_provider.windows import WindowError, to_epoch

log = logging.getLogger(__name__)

CONSOLE = "https://s3.console.aws.amazon.com/s3/buckets/{bucket}?prefix={prefix}&showversions=false"
# Any other S3 (MinIO, Ceph, a gateway): its own ListObjectsV2 of the folder, path-style.
LISTING = "{endpoint}/{bucket}?list-type=2&delimiter=%2F&prefix={prefix}"


def console_url(bucket: str, folder: str) -> str:
    """The AWS console page listing ``folder`` (ends with "/") of ``bucket``."""
    return CONSOLE.format(bucket=quote(bucket, safe=""), prefix=quote(folder, safe="/="))


def folder_url(bucket: str, folder: str, endpoint: str | None) -> str:
    """Where ``folder`` of ``bucket`` is seen: the AWS console, or the endpoint's own listing;
    "" (and a log line saying why) for an endpoint a browser cannot open."""
    if not endpoint:
        return console_url(bucket, folder)
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        log.warning("S3 export link: endpoint_url %r is not an http(s) URL; no link", endpoint)
        return ""
    if parts.hostname.endswith(".amazonaws.com"):  # a regional or FIPS AWS endpoint: still AWS
        return console_url(bucket, folder)
    base = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path.rstrip('/')}"  # never a userinfo
    return LISTING.format(endpoint=base, bucket=quote(bucket, safe=""), prefix=quote(folder, safe=""))


def s3_endpoint(aws_conn_id: str | None) -> str | None:
    """The S3 endpoint URL the AWS connection (or the environment) sets; ``None`` for AWS itself."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    try:
        endpoint = S3Hook(aws_conn_id=aws_conn_id).conn_config.get_service_endpoint_url("s3")
    except Exception as err:  # noqa: BLE001  (a link never breaks the page; e.g. an unknown connection)
        log.warning("S3 export link: AWS connection %r cannot be read (%s); linking the AWS console",
                    aws_conn_id, type(err).__name__)  # fmt: skip
        return None
    # boto3 reads these too when the connection sets no endpoint
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return str(endpoint) if endpoint else None


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
        return folder_url(bucket, folder, s3_endpoint(getattr(operator, "aws_conn_id", None)))
