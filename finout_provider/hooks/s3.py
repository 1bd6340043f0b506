"""FinoutS3Hook: the export's S3 primitives (:mod:`finout_provider.s3_objects`) through the Amazon
provider's connection, with the exporter's role assumed on top of it."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from finout_provider.connections import ROLE_SESSION_NAME
from finout_provider.s3_objects import (  # noqa: F401 - the hook's names, where callers import them
    POLICY_HINT,
    S3AccessError,
    S3Objects,
    Upload,
    explain,
    gzip_stream,
)


class FinoutS3Hook(S3Objects, S3Hook):
    """
    S3Hook that can assume the exporter's role and writes streamed gzip objects.

    :param aws_conn_id: the AWS connection (keys, region, ``endpoint_url``...).
    :param role_arn: role to assume on top of the connection (ROLE_ARN), optional.
    :param role_external_id: external id for that role (ROLE_EXTERNAL_ID), optional.
    :param extra_args: the S3 hook's upload arguments (``ServerSideEncryption``, ``SSEKMSKeyId``,
        ``ACL``...), put on every single and multipart upload.
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
            kwargs.setdefault("RoleSessionName", ROLE_SESSION_NAME)
            if self._finout_external_id:
                kwargs["ExternalId"] = self._finout_external_id
            config.assume_role_kwargs = kwargs
        return config
