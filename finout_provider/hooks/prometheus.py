"""PrometheusHook: the Prometheus HTTP API (:class:`~finout_provider.prometheus.client.PrometheusClient`)
over an Airflow connection of type ``prometheus``."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

from finout_provider.compat import BaseHook, mask_secret
from finout_provider.prometheus.client import PrometheusClient
from finout_provider.prometheus.connection import Endpoint


class PrometheusHook(BaseHook):
    """
    The Airflow connection ``prometheus_conn_id`` of type ``prometheus`` (its fields and extras:
    :mod:`finout_provider.prometheus.connection`), as a
    :class:`~finout_provider.prometheus.client.PrometheusClient` (:meth:`get_conn`), the
    connection's secrets registered with Airflow's secrets masker.

    :param prometheus_conn_id: the connection.
    :param max_retries: retries of a failed attempt (default the connection's ``max_retries``).
    :param retry_wait: first backoff in seconds (default the connection's ``retry_wait``).
    :param pool_size: HTTP connections kept to the server (one per concurrent query).
    """

    conn_name_attr = "prometheus_conn_id"
    default_conn_name = "prometheus_default"
    conn_type = "prometheus"
    hook_name = "Prometheus"

    def __init__(
        self,
        prometheus_conn_id: str = default_conn_name,
        *,
        max_retries: int | None = None,
        retry_wait: float | None = None,
        pool_size: int = 10,
    ) -> None:
        super().__init__()
        self.prometheus_conn_id = prometheus_conn_id
        self.max_retries = max_retries
        self.retry_wait = retry_wait
        self.pool_size = pool_size

    def get_conn(self) -> PrometheusClient:
        return self.client

    @cached_property
    def client(self) -> PrometheusClient:
        """The connection's client (the connection is read here, once)."""
        endpoint = Endpoint(
            self.get_connection(self.prometheus_conn_id),
            pool_size=self.pool_size,
            mask=mask_secret,
            aws=aws_credentials,
        )
        return PrometheusClient(endpoint, max_retries=self.max_retries, retry_wait=self.retry_wait, log=self.log)

    def test_connection(self) -> tuple[bool, str]:
        """The connection form's Test button: the query API answers, and the server's version."""
        try:
            client = self.client
        except Exception as err:  # noqa: BLE001 - the UI shows the message
            return False, str(err)
        return client.test_connection()

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The extras as form fields for Airflow versions that do not read ``conn-fields``."""
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
        from wtforms import BooleanField, IntegerField, PasswordField, StringField

        from finout_provider.get_provider_info import CONN_FIELDS

        widgets: dict[str, Any] = {}
        for name, spec in CONN_FIELDS.items():
            kind, label = spec["schema"]["type"][0], spec["label"]
            if kind == "boolean":
                widgets[name] = BooleanField(label, default=spec["schema"].get("default", False))
            elif kind == "integer":
                widgets[name] = IntegerField(label, widget=BS3TextFieldWidget())
            elif spec["schema"].get("format") == "password":
                widgets[name] = PasswordField(label, widget=BS3PasswordFieldWidget())
            else:
                widgets[name] = StringField(label, widget=BS3TextFieldWidget())
        return widgets

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The provider info's ``ui-field-behaviour``, in the shape older Airflow versions read."""
        from finout_provider.get_provider_info import UI_FIELD_BEHAVIOUR

        return {key.replace("-", "_"): value for key, value in UI_FIELD_BEHAVIOUR.items()}


def aws_credentials(aws_conn_id: str) -> tuple[Callable[[], Any], str | None]:
    """SigV4's credentials (read when called) and region, from an Airflow AWS connection."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    aws = AwsBaseHook(aws_conn_id=aws_conn_id, client_type="sts")
    return aws.get_credentials, aws.conn_region_name
