"""FinoutS3Hook: the Amazon provider's S3 hook with the exporter's role assumed on top of the
connection, and the export's S3 requests (:class:`~finout_provider.s3.store.S3Store`) over it."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from finout_provider.connections import ROLE_SESSION_NAME
from finout_provider.s3.store import S3Store


class FinoutS3Hook(S3Hook):
    """
    S3Hook that can assume the exporter's role.

    :param aws_conn_id: the AWS connection (keys, region, ``endpoint_url``...).
    :param role_arn: role to assume on top of the connection (ROLE_ARN), optional.
    :param role_external_id: external id for that role (ROLE_EXTERNAL_ID), optional.
    :param extra_args: the S3 hook's upload arguments (``ServerSideEncryption``, ``SSEKMSKeyId``,
        ``ACL``...), put on every upload of :attr:`store`.
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

    @cached_property
    def store(self) -> S3Store:
        """The export's S3 requests through this hook's client."""
        return S3Store(self.get_conn, self.extra_args)
