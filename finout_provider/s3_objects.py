"""S3 I/O of the export, without Airflow: deterministic gzip uploads, delimiter-only listings.

The hook knows buckets, keys and folders, not what they mean: the key layout lives in
:mod:`finout_provider.layout` and the walks over it in :mod:`finout_provider.exports`.

Every listing carries ``Delimiter="/"`` and a prefix under S3_PREFIX, as the seed's IAM policy
requires; every write goes through :meth:`S3Objects.upload_gzip_stream`, which never leaves a
partial object under the final key.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

# What a part of a multipart upload must repeat of the upload's arguments (SSE-C keys, payer).
PART_ARGS = ("SSECustomerAlgorithm", "SSECustomerKey", "SSECustomerKeyMD5", "RequestPayer", "ExpectedBucketOwner")
MIN_PART = 5 << 20
DEFAULT_PART = 8 << 20
DELETE_BATCH = 1000


@dataclass(frozen=True)
class Upload:
    key: str
    raw_bytes: int
    gzip_bytes: int


def gzip_stream(chunks: Iterable[bytes], level: int = 6) -> Iterator[bytes]:
    """Deterministic gzip of ``chunks``: no file name, mtime 0, so equal input gives equal bytes."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()


POLICY_HINT = (
    "the exporter's role needs the seed's policy: s3:PutObject/GetObject/DeleteObject on "
    "arn:aws:s3:::{bucket}/<S3_PREFIX>/* and s3:ListBucket on arn:aws:s3:::{bucket} with the conditions "
    's3:delimiter "/" and s3:prefix "<S3_PREFIX>*"'
)


class S3AccessError(RuntimeError):
    """S3 refused a request; the message names the action, the key and what to fix. ``permanent``:
    a retry cannot fix it (denied, no such bucket)."""

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent


def _is_client_error(err: BaseException) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(err, ClientError)


ROLE_HINT = (
    "assuming ROLE_ARN was refused ({code}): check ROLE_ARN and ROLE_EXTERNAL_ID in the clusters file and "
    "the role's trust policy (it must let the AWS connection's identity assume it with that external id)"
)


def explain(err: Any, action: str, bucket: str, key: str) -> S3AccessError:
    """A readable error for a botocore ``ClientError`` of ``action`` on ``bucket``/``key``."""
    code = str(err.response.get("Error", {}).get("Code", ""))
    where = f"{action} on s3://{bucket}/{key}"
    if code in ("AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return S3AccessError(f"{where} was denied ({code}): {POLICY_HINT.format(bucket=bucket)}")
    if code in ("NoSuchBucket", "404"):
        return S3AccessError(f"{where} failed: bucket {bucket!r} does not exist; check S3_BUCKET and the AWS region")
    permanent = code in ("InvalidBucketName", "KMS.NotFoundException", "KMS.DisabledException", "InvalidArgument")
    return S3AccessError(f"{where} failed ({code or type(err).__name__}): {err}", permanent=permanent)


class S3Objects:
    """The export's S3 primitives over ``get_conn()`` (a boto3 S3 client) and ``extra_args`` (upload
    arguments: ``ServerSideEncryption``, ``SSEKMSKeyId``, ``ACL``...). :class:`FinoutS3Hook` gives
    them through the Amazon provider's connection; :class:`S3Client` over a client of its own."""

    extra_args: dict[str, Any]

    if TYPE_CHECKING:  # given by the class it is mixed into (not defined here, so S3Hook's stays)

        def get_conn(self) -> Any: ...

    # -- writing ----------------------------------------------------------------------------

    def upload_gzip_stream(
        self,
        chunks: Iterable[bytes],
        bucket: str,
        key: str,
        *,
        level: int = 6,
        part_size: int = DEFAULT_PART,
        metadata: dict[str, str] | None = None,
        final_metadata: Callable[[], dict[str, str]] | None = None,
    ) -> Upload:
        """Gzip ``chunks`` into ``s3://bucket/key`` without holding the whole body.

        Small results go up in one PUT; larger ones as a multipart upload whose parts are sent
        while the body is still arriving. If ``chunks`` raises (a failed or partial answer) the
        upload is aborted, so nothing appears under ``key``. ``metadata`` is the object's user
        metadata (``x-amz-meta-*``); ``final_metadata`` adds what is known only once ``chunks`` are
        read (with a single PUT, or by copying a multipart object onto itself once complete).
        """
        part_size = max(part_size, MIN_PART)
        client = self._client()
        extra = self.upload_args() | ({"Metadata": dict(metadata)} if metadata else {})
        per_part = {name: value for name, value in extra.items() if name in PART_ARGS}
        raw = 0

        def counted() -> Iterator[bytes]:
            nonlocal raw
            for chunk in chunks:
                raw += len(chunk)
                yield chunk

        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        total = 0
        try:
            for piece in gzip_stream(counted(), level):
                buffer += piece
                while len(buffer) >= part_size:
                    if upload_id is None:
                        upload_id = client.create_multipart_upload(
                            Bucket=bucket, Key=key, ContentType="application/gzip", **extra
                        )["UploadId"]
                    body = bytes(buffer[:part_size])
                    del buffer[:part_size]
                    total += len(body)
                    number = len(parts) + 1
                    etag = client.upload_part(
                        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body, **per_part
                    )["ETag"]
                    parts.append({"ETag": etag, "PartNumber": number})
            total += len(buffer)
            if upload_id is None:
                if final_metadata:
                    extra = extra | {"Metadata": {**(metadata or {}), **final_metadata()}}
                client.put_object(Bucket=bucket, Key=key, Body=bytes(buffer), ContentType="application/gzip", **extra)
            else:
                if buffer:
                    number = len(parts) + 1
                    etag = client.upload_part(
                        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=bytes(buffer), **per_part
                    )["ETag"]
                    parts.append({"ETag": etag, "PartNumber": number})
                client.complete_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
                upload_id = None  # complete: nothing to abort
                if final_metadata:
                    self._replace_metadata(bucket, key, {**(metadata or {}), **final_metadata()})
        except BaseException as err:
            if upload_id is not None:
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            if _is_client_error(err):
                raise explain(err, "s3:PutObject", bucket, key) from None
            raise
        return Upload(key, raw, total)

    def _replace_metadata(self, bucket: str, key: str, metadata: dict[str, str]) -> None:
        """Copy an object onto itself with ``metadata`` (S3's only way to change it; same bytes)."""
        args = {k: v for k, v in self.upload_args().items() if k not in ("Metadata", "ACL", "Tagging")}
        self._client().copy_object(
            Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key}, Metadata=metadata,
            MetadataDirective="REPLACE", ContentType="application/gzip", **args,
        )  # fmt: skip

    def upload_args(self) -> dict[str, Any]:
        """The hook's ``extra_args``, which must be upload arguments (boto3's list) other than the
        content type and encoding: the objects are gzip files, stored as such."""
        from boto3.s3.transfer import S3Transfer

        allowed = set(S3Transfer.ALLOWED_UPLOAD_ARGS) - {"ContentType", "ContentEncoding"}
        extra: dict[str, Any] = self.extra_args
        unknown = sorted(set(extra) - allowed)
        if unknown:
            raise ValueError(f"S3 extra_args {unknown} cannot be used for the export's uploads; use {sorted(allowed)}")
        return extra

    # -- listing (always with Delimiter="/") -------------------------------------------------

    def list_level(self, bucket: str, prefix: str) -> tuple[list[str], list[dict[str, Any]]]:
        """One level below ``prefix``: (common prefixes, objects with Key, Size and LastModified)."""
        paginator = self._client().get_paginator("list_objects_v2")
        folders: list[str] = []
        objects: list[dict[str, Any]] = []
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
                folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
                objects.extend(
                    {"Key": o["Key"], "Size": o["Size"], "LastModified": o.get("LastModified")}
                    for o in page.get("Contents", [])
                )
        except Exception as err:
            if _is_client_error(err):
                raise explain(err, "s3:ListBucket", bucket, prefix) from None
            raise
        return folders, objects

    def iter_object(self, bucket: str, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """An object's bytes in chunks of ``chunk_size``; memory stays at one chunk."""
        body = self._client().get_object(Bucket=bucket, Key=key)["Body"]
        try:
            yield from iter(lambda: body.read(chunk_size), b"")
        finally:
            body.close()

    def delete_keys(self, bucket: str, keys: list[str]) -> None:
        """Delete ``keys`` in batches of 1000; raise naming the keys S3 refused.

        AWS authorises a batch delete per key with s3:DeleteObject, which the seed's policy grants
        under the prefix; evaluators that check the batch against the bucket instead refuse it, so
        refused keys are retried one DeleteObject at a time before anything is reported.
        """
        client = self._client()
        refused: list[str] = []
        for i in range(0, len(keys), DELETE_BATCH):
            batch = keys[i : i + DELETE_BATCH]
            answer = client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
            errors = answer.get("Errors") or []
            for error in errors:
                try:
                    client.delete_object(Bucket=bucket, Key=error["Key"])
                except Exception as err:
                    if not _is_client_error(err):
                        raise
                    refused.append(f"{error['Key']} ({error.get('Code')})")
        if refused:
            raise S3AccessError(
                f"S3 refused to delete {len(refused)} of {len(keys)} keys: {', '.join(refused[:5])}; "
                + POLICY_HINT.format(bucket=bucket)
            )

    def object_metadata(self, bucket: str, key: str) -> dict[str, str]:
        """An object's user metadata (a HEAD request; s3:GetObject), or raise."""
        try:
            return dict(self._client().head_object(Bucket=bucket, Key=key).get("Metadata") or {})
        except Exception as err:
            if _is_client_error(err):
                raise explain(err, "s3:GetObject", bucket, key) from None
            raise

    def _client(self) -> Any:
        """The boto3 client; a refused AssumeRole of ROLE_ARN (met when it is built) as
        :class:`S3AccessError`."""
        try:
            return self.get_conn()
        except Exception as err:
            if _is_client_error(err):
                code = str(err.response.get("Error", {}).get("Code", ""))  # type: ignore[attr-defined]
                permanent = code not in ("Throttling", "RequestExpired", "ServiceUnavailable", "InternalError")
                raise S3AccessError(ROLE_HINT.format(code=code or type(err).__name__), permanent=permanent) from None
            raise


class S3Client(S3Objects):
    """:class:`S3Objects` over the boto3 client ``connect()`` gives at first use (no Airflow)."""

    def __init__(self, connect: Callable[[], Any], extra_args: dict[str, Any] | None = None) -> None:
        self._connect = connect
        self.extra_args = dict(extra_args or {})

    @cached_property
    def client(self) -> Any:
        return self._connect()

    def get_conn(self) -> Any:
        return self.client
