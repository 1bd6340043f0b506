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
    :class:`~finout_provider.prometheus_api.PrometheusApi` (its connection fields, extras and
    parameters) over the Airflow connection ``prometheus_conn_id`` of type ``prometheus``, with the
    connection's secrets registered with Airflow's secrets masker.
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
