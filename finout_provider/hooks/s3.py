"""S3 I/O of the export: role assumption, deterministic gzip uploads, delimiter-only listings.

Every listing carries ``Delimiter="/"`` and a prefix under S3_PREFIX, as the seed's IAM policy
requires; every write goes through :meth:`FinoutS3Hook.upload_gzip_stream`, which never leaves a
partial object under the final key.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from finout_provider.layout import LayoutKey, build_key, cluster_root, day_of_folder, metric_folder, parse_key
from finout_provider.windows import iter_days

MIN_PART = 5 << 20
DEFAULT_PART = 8 << 20
DELETE_BATCH = 1000
EMPTY_GZIP = 20  # bytes of a gzip stream holding nothing
GZIP_MAGIC = b"\x1f\x8b\x08"


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
    """S3 refused a request; the message names the action, the key and what to fix."""


def _is_client_error(err: BaseException) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(err, ClientError)


def explain(err: Any, action: str, bucket: str, key: str) -> S3AccessError:
    """A readable error for a botocore ``ClientError`` of ``action`` on ``bucket``/``key``."""
    code = str(err.response.get("Error", {}).get("Code", ""))
    where = f"{action} on s3://{bucket}/{key}"
    if code in ("AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return S3AccessError(f"{where} was denied ({code}): {POLICY_HINT.format(bucket=bucket)}")
    if code in ("NoSuchBucket", "404"):
        return S3AccessError(f"{where} failed: bucket {bucket!r} does not exist; check S3_BUCKET and the AWS region")
    return S3AccessError(f"{where} failed ({code or type(err).__name__}): {err}")


class FinoutS3Hook(S3Hook):
    """
    S3Hook that can assume the exporter's role and writes streamed gzip objects.

    :param aws_conn_id: the AWS connection (keys, region, ``endpoint_url``...).
    :param role_arn: role to assume on top of the connection (ROLE_ARN), optional.
    :param role_external_id: external id for that role (ROLE_EXTERNAL_ID), optional.
    """

    def __init__(
        self,
        aws_conn_id: str | None = "aws_default",
        role_arn: str | None = None,
        role_external_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(aws_conn_id=aws_conn_id, **kwargs)
        self._finout_role_arn = role_arn
        self._finout_external_id = role_external_id

    @cached_property
    def conn_config(self) -> Any:
        config = super().conn_config
        if self._finout_role_arn:
            config.role_arn = self._finout_role_arn
            config.assume_role_method = "assume_role"
            kwargs = dict(config.assume_role_kwargs or {})
            kwargs.setdefault("RoleSessionName", "airflow-provider-finout")
            if self._finout_external_id:
                kwargs["ExternalId"] = self._finout_external_id
            config.assume_role_kwargs = kwargs
        return config

    # -- writing ----------------------------------------------------------------------------

    def upload_gzip_stream(
        self,
        chunks: Iterable[bytes],
        bucket: str,
        key: str,
        *,
        level: int = 6,
        part_size: int = DEFAULT_PART,
    ) -> Upload:
        """Gzip ``chunks`` into ``s3://bucket/key`` without holding the whole body.

        Small results go up in one PUT; larger ones as a multipart upload whose parts are sent
        while the body is still arriving. If ``chunks`` raises (a failed or partial answer) the
        upload is aborted, so nothing appears under ``key``.
        """
        part_size = max(part_size, MIN_PART)
        client: Any = self.get_conn()
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
                            Bucket=bucket, Key=key, ContentType="application/gzip"
                        )["UploadId"]
                    body = bytes(buffer[:part_size])
                    del buffer[:part_size]
                    total += len(body)
                    number = len(parts) + 1
                    etag = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body)[
                        "ETag"
                    ]
                    parts.append({"ETag": etag, "PartNumber": number})
            total += len(buffer)
            if upload_id is None:
                client.put_object(Bucket=bucket, Key=key, Body=bytes(buffer), ContentType="application/gzip")
            else:
                if buffer:
                    number = len(parts) + 1
                    etag = client.upload_part(
                        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=bytes(buffer)
                    )["ETag"]
                    parts.append({"ETag": etag, "PartNumber": number})
                client.complete_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
        except BaseException as err:
            if upload_id is not None:
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            if _is_client_error(err):
                raise explain(err, "s3:PutObject", bucket, key) from None
            raise
        return Upload(key, raw, total)

    # -- listing (always with Delimiter="/") -------------------------------------------------

    def list_level(self, bucket: str, prefix: str) -> tuple[list[str], list[dict[str, Any]]]:
        """One level below ``prefix``: (common prefixes, objects with Key and Size)."""
        paginator = self._s3().get_paginator("list_objects_v2")
        folders: list[str] = []
        objects: list[dict[str, Any]] = []
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
                folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
                objects.extend({"Key": o["Key"], "Size": o["Size"]} for o in page.get("Contents", []))
        except Exception as err:
            if _is_client_error(err):
                raise explain(err, "s3:ListBucket", bucket, prefix) from None
            raise
        return folders, objects

    def layout_objects(
        self, bucket: str, prefix: str, cluster: str, metrics: Iterable[str], start: int, end: int
    ) -> dict[LayoutKey, int]:
        """Layout objects (with their sizes) of ``metrics`` for windows starting in ``[start, end)``.

        Lists one ``metric=`` folder per day and metric, with ``Delimiter="/"``.
        """
        found: dict[LayoutKey, int] = {}
        names = list(metrics)
        for day in iter_days(start, end):
            for metric in names:
                _, objects = self.list_level(bucket, metric_folder(prefix, cluster, metric, day))
                for obj in objects:
                    parsed = parse_key(obj["Key"], prefix, cluster)
                    if parsed is not None and parsed.metric == metric and start <= parsed.start < end:
                        found[parsed] = int(obj["Size"])
        return found

    def has_any_export(self, bucket: str, prefix: str, cluster: str) -> bool:
        """Whether anything exists under ``<prefix>/<cluster>/`` (one delimited listing)."""
        folders, objects = self.list_level(bucket, cluster_root(prefix, cluster))
        return bool(folders or objects)

    def day_folders(self, bucket: str, prefix: str, cluster: str) -> Iterator[tuple[int, str]]:
        """``(midnight, folder)`` of every ``end=.../day=.../`` folder of a cluster, oldest first.

        Walks the two levels with delimited listings; folders outside the layout are passed over.
        """
        for end_folder in sorted(self.list_level(bucket, cluster_root(prefix, cluster))[0]):
            days = [(day_of_folder(f), f) for f in self.list_level(bucket, end_folder)[0]]
            yield from sorted((d, f) for d, f in days if d is not None)

    def object_states(
        self,
        bucket: str,
        prefix: str,
        cluster: str,
        metrics: Sequence[str],
        starts: Sequence[int],
        window: int,
        *,
        deep: bool = False,
    ) -> dict[str, str]:
        """State of every expected key of windows ``starts``: ``ok``, ``missing``, ``empty``,
        ``not gzip`` or (``deep``) what :meth:`read_problem` finds.

        An object is ``ok`` when it exists, is larger than an empty gzip and starts with the gzip
        magic bytes (checked with a ranged GET of its first bytes); with ``deep``, when the whole
        object decompresses (CRC and length checked) to a successful Prometheus answer.
        """
        if not starts:
            return {}
        found = {k.key: size for k, size in self.layout_objects(
            bucket, prefix, cluster, metrics, min(starts), max(starts) + window
        ).items()}  # fmt: skip
        expected = sorted(build_key(prefix, cluster, m, s) for s in set(starts) for m in metrics)
        states = {k: "missing" if k not in found else "empty" if found[k] <= EMPTY_GZIP else "ok" for k in expected}
        to_read = [k for k, state in states.items() if state == "ok"]
        with ThreadPoolExecutor(max_workers=8) as pool:
            if deep:
                verdicts = pool.map(lambda k: self.read_problem(bucket, k), to_read)
                states |= {k: v for k, v in zip(to_read, verdicts, strict=True) if v}
            else:
                heads = pool.map(lambda k: self.read_head(bucket, k, 3), to_read)
                states |= {k: "not gzip" for k, h in zip(to_read, heads, strict=True) if h != GZIP_MAGIC}
        return states

    def read_problem(self, bucket: str, key: str) -> str | None:
        """Read one object through a streaming gunzip; ``None`` if it is a whole gzip of a successful
        Prometheus answer, else what is wrong. Memory stays at one chunk whatever the size."""
        body = self._s3().get_object(Bucket=bucket, Key=key)["Body"]
        inflater = zlib.decompressobj(31)
        head = b""
        try:
            for chunk in iter(lambda: body.read(1 << 20), b""):
                data = inflater.decompress(chunk)
                if len(head) < 64:
                    head += data[: 64 - len(head)]
                if inflater.eof:
                    break
        except zlib.error as err:
            return f"not gzip ({err})"
        finally:
            body.close()
        if not inflater.eof:
            return "truncated gzip"
        if not head.startswith(b'{"status":"success"'):
            return "not a success answer"
        return None

    def export_problems(
        self, bucket: str, prefix: str, cluster: str, metrics: Sequence[str], starts: Sequence[int], window: int
    ) -> list[str]:
        """What is wrong with the objects of windows ``starts``: one line per missing or bad key."""
        states = self.object_states(bucket, prefix, cluster, metrics, starts, window)
        return [f"{state}: s3://{bucket}/{key}" for key, state in states.items() if state != "ok"]

    def delete_keys(self, bucket: str, keys: list[str]) -> None:
        """Delete ``keys`` in batches of 1000; raise naming the keys S3 refused.

        AWS authorises a batch delete per key with s3:DeleteObject, which the seed's policy grants
        under the prefix; evaluators that check the batch against the bucket instead refuse it, so
        refused keys are retried one DeleteObject at a time before anything is reported.
        """
        client: Any = self.get_conn()
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

    def read_head(self, bucket: str, key: str, size: int = 10) -> bytes:
        """The first ``size`` bytes of an object (a ranged GET)."""
        answer = self._s3().get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{size - 1}")
        return bytes(answer["Body"].read())

    def _s3(self) -> Any:
        return self.get_conn()
