"""Operator extra link: from an export task to its S3 folder, where the AWS connection's S3 is."""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import quote, urlsplit

from finout_provider.compat import AIRFLOW_VERSION, BaseOperatorLink
from finout_provider.plan.windows import to_epoch
from finout_provider.s3.layout import day_folder
from finout_provider.target import S3Target

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


def s3_endpoint(hook: Any) -> str | None:
    """The S3 endpoint URL an S3 hook's connection (or the environment) sets; ``None`` for AWS itself."""
    try:
        endpoint = hook.conn_config.get_service_endpoint_url("s3")
    except Exception as err:  # noqa: BLE001  (a link never fails a task; e.g. an unknown connection)
        log.warning(
            "S3 export link: the AWS connection cannot be read (%s); linking the AWS console", type(err).__name__
        )
        return None
    # boto3 reads these too when the connection sets no endpoint
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return str(endpoint) if endpoint else None


class S3ExportLink(BaseOperatorLink):
    """ "S3 export" button: the day folder of an export task's window.

    Airflow 3 asks for the link where the task ran, right after it ran, with the task itself at hand.
    Airflow 2's web server has only the serialized task, whose target is not an
    :class:`~finout_provider.target.S3Target`: there, as the Amazon provider's links do, the URL
    the task stored in XCom when it ran (:meth:`persist`) is read.
    """

    name = "S3 export"
    key = "finout_s3_export"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        if isinstance(getattr(operator, "target", None), S3Target):
            return self.url_of(operator)
        from finout_provider.compat import XCom

        try:
            return str(XCom.get_value(key=self.key, ti_key=ti_key) or "")
        except Exception as err:  # noqa: BLE001  (a link never breaks the page)
            log.warning("S3 export link: %s", err)
            return ""

    @staticmethod
    def url_of(operator: Any) -> str:
        """The link of an export task: its window's day folder, where its connection's S3 is."""
        try:
            target = operator.target.checked()
            folder = day_folder(target.prefix, target.cluster, to_epoch(operator.window_start))
        except ValueError:  # not rendered, or not a valid target: no link
            return ""
        return folder_url(target.bucket, folder, s3_endpoint(operator.s3_hook))

    @classmethod
    def persist(cls, context: Any, operator: Any) -> None:
        """Store the task's link in XCom, where Airflow 2's web server reads it (in a task instance's
        run; an operator executed by hand has none)."""
        ti = context.get("ti")
        if ti is not None and AIRFLOW_VERSION.major < 3:
            ti.xcom_push(key=cls.key, value=cls.url_of(operator))
