"""S3 I/O of the export, without Airflow: deterministic gzip objects, delimiter-only listings.

The store knows buckets, keys and folders, not what they mean: the key layout lives in
:mod:`finout_provider.s3.layout` and the walks over it in :mod:`finout_provider.s3.folder`.

Every listing carries ``Delimiter="/"`` and a prefix under S3_PREFIX, as the seed's IAM policy
requires. An object is written by :meth:`S3Store.put_file` from a :class:`GzipSpool` holding a
whole answer: one PUT, or a multipart upload (boto3's managed transfer), which never leaves a
partial object under the key.
"""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from finout_provider.failures import PERMANENT_CODES

DELETE_BATCH = 1000
# Objects above this go up in parts of this size, two at a time: memory stays at a few parts.
PART_SIZE = 8 << 20
POLICY_HINT = (
    "the exporter's role needs the seed's policy: s3:PutObject/GetObject/DeleteObject on "
    "arn:aws:s3:::{bucket}/<S3_PREFIX>/* and s3:ListBucket on arn:aws:s3:::{bucket} with the conditions "
    's3:delimiter "/" and s3:prefix "<S3_PREFIX>*"'
)
ROLE_HINT = (
    "assuming ROLE_ARN was refused ({code}): check ROLE_ARN and ROLE_EXTERNAL_ID in the clusters file and "
    "the role's trust policy (it must let the AWS connection's identity assume it with that external id)"
)


@dataclass(frozen=True)
class Upload:
    key: str
    raw_bytes: int
    gzip_bytes: int


class S3AccessError(RuntimeError):
    """S3 refused a request; the message names the action, the key and what to fix. ``permanent``:
    a retry cannot fix it (denied, no such bucket)."""

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent


def _client_error(err: BaseException | None) -> Any:
    """``err`` if it is a botocore ``ClientError``, else ``None``."""
    from botocore.exceptions import ClientError

    return err if isinstance(err, ClientError) else None


def explain(err: Any, action: str, bucket: str, key: str) -> S3AccessError:
    """A readable error for a botocore ``ClientError`` of ``action`` on ``bucket``/``key``."""
    code = str(err.response.get("Error", {}).get("Code", ""))
    where = f"{action} on s3://{bucket}/{key}"
    if code in ("AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return S3AccessError(f"{where} was denied ({code}): {POLICY_HINT.format(bucket=bucket)}")
    if code in ("NoSuchBucket", "404"):
        return S3AccessError(f"{where} failed: bucket {bucket!r} does not exist; check S3_BUCKET and the AWS region")
    return S3AccessError(f"{where} failed ({code or type(err).__name__}): {err}", permanent=code in PERMANENT_CODES)


class GzipSpool:
    """A deterministic gzip (no file name, mtime 0: equal answers give equal bytes) of one answer in
    a temporary file, written again from the first chunk when the answer is read again. Memory
    holds one chunk; the file is removed when the ``with`` block ends."""

    def __init__(self, level: int = 6) -> None:
        self.level = level
        self._file = tempfile.NamedTemporaryFile(prefix="finout-", suffix=".json.gz")  # noqa: SIM115 - closed on exit
        self.raw_bytes = 0

    @property
    def path(self) -> Path:
        return Path(self._file.name)

    def write(self, chunks: Iterable[bytes]) -> None:
        """Gzip ``chunks`` into the file, replacing what an earlier attempt left."""
        self._file.seek(0)
        self._file.truncate()
        compressor = zlib.compressobj(self.level, zlib.DEFLATED, 31)
        self.raw_bytes = 0
        for chunk in chunks:
            self.raw_bytes += len(chunk)
            self._file.write(compressor.compress(chunk))
        self._file.write(compressor.flush())
        self._file.flush()

    def __enter__(self) -> GzipSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


class S3Store:
    """The export's S3 requests over a boto3 S3 client (``client()`` makes it, at first use) and the
    arguments every upload carries (``upload_args``: ``ServerSideEncryption``, ``SSEKMSKeyId``...)."""

    def __init__(self, client: Callable[[], Any], upload_args: dict[str, Any] | None = None) -> None:
        self._connect = client
        self.upload_args = checked_upload_args(dict(upload_args or {}))

    @cached_property
    def client(self) -> Any:
        """The boto3 client; a refused AssumeRole of ROLE_ARN (met when it is made) as :class:`S3AccessError`."""
        try:
            return self._connect()
        except Exception as err:
            if _client_error(err) is None:
                raise
            code = str(err.response.get("Error", {}).get("Code", ""))  # type: ignore[attr-defined]
            raise S3AccessError(
                ROLE_HINT.format(code=code or type(err).__name__), permanent=code in PERMANENT_CODES
            ) from None

    def put_file(self, spool: GzipSpool, bucket: str, key: str, metadata: dict[str, str]) -> Upload:
        """Upload a spooled gzip object under ``key`` with user ``metadata`` (``x-amz-meta-*``)."""
        from boto3.exceptions import S3UploadFailedError
        from boto3.s3.transfer import TransferConfig

        args = {"ContentType": "application/gzip", "Metadata": dict(metadata), **self.upload_args}
        config = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=2)
        try:
            self.client.upload_file(str(spool.path), bucket, key, ExtraArgs=args, Config=config)
        except S3UploadFailedError as err:  # boto3 keeps S3's answer only as the exception it handled
            cause = _client_error(err.__context__)
            if cause is None:
                raise
            raise explain(cause, "s3:PutObject", bucket, key) from None
        return Upload(key, spool.raw_bytes, spool.path.stat().st_size)

    def list_level(self, bucket: str, prefix: str) -> tuple[list[str], list[dict[str, Any]]]:
        """One level below ``prefix``: (common prefixes, objects with Key, Size and LastModified)."""
        folders: list[str] = []
        objects: list[dict[str, Any]] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix, Delimiter="/"
            ):
                folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
                objects.extend(
                    {"Key": o["Key"], "Size": o["Size"], "LastModified": o.get("LastModified")}
                    for o in page.get("Contents", [])
                )
        except Exception as err:
            if _client_error(err) is None:
                raise
            raise explain(err, "s3:ListBucket", bucket, prefix) from None
        return folders, objects

    def iter_object(self, bucket: str, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """An object's bytes in chunks of ``chunk_size``; memory stays at one chunk."""
        body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
        try:
            yield from iter(lambda: body.read(chunk_size), b"")
        finally:
            body.close()

    def object_metadata(self, bucket: str, key: str) -> dict[str, str]:
        """An object's user metadata (a HEAD request; s3:GetObject), or raise."""
        try:
            return dict(self.client.head_object(Bucket=bucket, Key=key).get("Metadata") or {})
        except Exception as err:
            if _client_error(err) is None:
                raise
            raise explain(err, "s3:GetObject", bucket, key) from None

    def delete_keys(self, bucket: str, keys: list[str]) -> None:
        """Delete ``keys`` in batches of 1000; raise naming the keys S3 refused.

        AWS authorises a batch delete per key with s3:DeleteObject, which the seed's policy grants
        under the prefix; evaluators that check the batch against the bucket instead refuse it, so
        refused keys are retried one DeleteObject at a time before anything is reported.
        """
        refused: list[str] = []
        for i in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": k} for k in keys[i : i + DELETE_BATCH]]
            answer = self.client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            for error in answer.get("Errors") or []:
                try:
                    self.client.delete_object(Bucket=bucket, Key=error["Key"])
                except Exception as err:
                    if _client_error(err) is None:
                        raise
                    refused.append(f"{error['Key']} ({error.get('Code')})")
        if refused:
            raise S3AccessError(
                f"S3 refused to delete {len(refused)} of {len(keys)} keys: {', '.join(refused[:5])}; "
                + POLICY_HINT.format(bucket=bucket)
            )


def checked_upload_args(extra: dict[str, Any]) -> dict[str, Any]:
    """Upload arguments (boto3's list) other than the content type and encoding: the objects are gzip
    files, stored as such."""
    from boto3.s3.transfer import S3Transfer

    allowed = set(S3Transfer.ALLOWED_UPLOAD_ARGS) - {"ContentType", "ContentEncoding"}
    unknown = sorted(set(extra) - allowed)
    if unknown:
        raise ValueError(f"S3 extra_args {unknown} cannot be used for the export's uploads; use {sorted(allowed)}")
    return extra
