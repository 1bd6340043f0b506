"""PrometheusHook: the Prometheus HTTP API (:mod:`finout_provider.prometheus_api`) over an Airflow
connection of type ``prometheus``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from finout_provider.compat import BaseHook, mask_secret
from finout_provider.prometheus_api import (  # noqa: F401 - the hook's names, where callers import them
    CheckedBody,
    HeavyQueryError,
    IncompleteBodyError,
    PrometheusApi,
    PrometheusError,
    describe_range,
    parse_duration,
)


class PrometheusHook(PrometheusApi, BaseHook):
    """
    Talks to a Prometheus-compatible HTTP API (Prometheus, Thanos, Mimir/Cortex, VictoriaMetrics,
    Amazon Managed Prometheus).

    Connection fields: ``host`` (a host name, or a whole URL), ``port``, ``schema`` (``http`` or
    ``https``), ``login``/``password`` (basic auth). Extras: ``path_prefix``, ``bearer_token``,
    ``x_scope_orgid``, ``headers`` (a mapping), ``verify`` (bool), ``ca_bundle`` (path),
    ``client_cert``/``client_key`` (paths), ``sigv4`` (bool), ``aws_conn_id``, ``region_name``,
    ``timeout`` (one read, seconds), ``answer_timeout`` (a whole answer, seconds, default 1800),
    ``max_retries``, ``retry_wait`` (seconds, first backoff). Credentials in the host's URL
    (``https://user:password@host``) are used as basic auth when login is empty.

    :param prometheus_conn_id: the Airflow connection of type ``prometheus``.
    :param max_retries: retries of a request on connection errors, 429, 502, 503 and 504
        (overrides the connection's ``max_retries``).
    :param retry_wait: first backoff in seconds, doubled each retry, capped at 60; a
        ``Retry-After`` header wins when present.
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
        BaseHook.__init__(self)
        PrometheusApi.__init__(
            self, prometheus_conn_id, max_retries=max_retries, retry_wait=retry_wait, pool_size=pool_size
        )

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

    def _find_connection(self) -> Any:
        return self.get_connection(self.prometheus_conn_id)

    def _mask(self, secret: str) -> None:
        mask_secret(secret)

    def _aws_credentials(self) -> tuple[Callable[[], Any], str | None]:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        aws = AwsBaseHook(aws_conn_id=self.extras.get("aws_conn_id", "aws_default"), client_type="sts")
        return aws.get_credentials, aws.conn_region_name
