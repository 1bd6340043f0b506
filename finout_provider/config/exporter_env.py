"""The official exporter's environment variables <-> the clusters file and Airflow connections (pure).

Finout's CronJob configures its image with environment variables, and the clusters file takes the
same names as keys. Three places translate between them: an endpoint written in the clusters file
becomes an Airflow connection (:func:`connection`), ``import-cronjob`` turns a manifest's ``env`` into
an entry and a connection, and MODE ``kubernetes_pod`` turns a cluster back into the image's ``env``
(:func:`pod_env`) with its secrets as Kubernetes Secret references.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

ENDPOINT = ("SCHEME", "HOSTNAME", "PORT", "PATH_PREFIX")
USERNAME = "PROMETHEUS_USERNAME"
PASSWORD = "PROMETHEUS_PASSWORD"
TOKEN = "PROMETHEUS_BEARER_AUTH_TOKEN"
TOKEN_ALIAS = "PROMETHEUS_AUTH_TOKEN"  # the image reads both names
ORG_ID = "PROMETHEUS_X_SCOPE_ORGID"
CREDENTIALS = (USERNAME, PASSWORD, TOKEN, TOKEN_ALIAS, ORG_ID)
# Values that reach a pod only as Kubernetes Secret references, never in its spec.
SECRETS = (PASSWORD, TOKEN)
# What the image reads besides credentials, in the seed's order.
SETTINGS = (
    "CLUSTER_NAME",
    "S3_BUCKET",
    "S3_PREFIX",
    "ROLE_ARN",
    "ROLE_EXTERNAL_ID",
    *ENDPOINT,
    "TIME_FRAME",
    "BACKFILL_DAYS",
    "INITIAL_BACKFILL_DATE",
    "QUERIES_BATCH_SIZE",
)
VARIABLES = (*SETTINGS, *CREDENTIALS)
# What a pod gets as plain values: everything but the secrets.
PLAIN = (*SETTINGS, USERNAME, ORG_ID)

# Kubernetes names (RFC 1123 labels) and label values.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def connection(values: Mapping[str, Any]) -> dict[str, Any]:
    """The Airflow connection (JSON form, type ``prometheus``) that the exporter's variables
    ``values`` describe; absent variables take the image's defaults."""
    extra: dict[str, Any] = {}
    if values.get("PATH_PREFIX"):
        extra["path_prefix"] = str(values["PATH_PREFIX"])
    token = values.get(TOKEN) or values.get(TOKEN_ALIAS)
    if token:
        extra["bearer_token"] = str(token)
    if values.get(ORG_ID):
        extra["x_scope_orgid"] = str(values[ORG_ID])
    conn: dict[str, Any] = {
        "conn_type": "prometheus",
        "host": str(values.get("HOSTNAME") or "localhost"),
        "port": int(values.get("PORT") or 9090),
        "schema": str(values.get("SCHEME") or "http"),
        "extra": extra,
    }
    if values.get(USERNAME):
        conn["login"] = str(values[USERNAME])
        conn["password"] = str(values.get(PASSWORD) or "")
    return conn


def env_value(value: Any) -> str | None:
    """A setting as the image reads it (``None``: leave the variable out)."""
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def pod_env(settings: Mapping[str, Any]) -> dict[str, str]:
    """The image's plain ``env`` from a cluster's settings by variable name (secrets left out)."""
    values = {name: env_value(settings.get(name)) for name in PLAIN}
    if values.get("BACKFILL_DAYS") is not None:
        values["BACKFILL_DAYS"] = f"{values['BACKFILL_DAYS']}d"
    return {name: value for name, value in values.items() if value is not None}


def _tag(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:6]


def kubernetes_name(prefix: str, cluster: str, limit: int = 63, dots: bool = False) -> str:
    """``<prefix>-<cluster>`` as a valid Kubernetes name (a DNS label, or with ``dots`` a DNS
    subdomain); a cluster name that had to be changed to fit (case, ``_``, ``.``, length) gets a
    hash of itself, so two clusters never share one."""
    wanted = f"{prefix}-{cluster}"
    if len(wanted) <= limit and (_DNS_SUBDOMAIN if dots else _DNS_LABEL).match(wanted) and ".." not in wanted:
        return wanted
    cleaned = re.sub(r"[^a-z0-9.-]+" if dots else r"[^a-z0-9-]+", "-", wanted.lower()).replace("..", ".")
    return f"{cleaned[: limit - 7].strip('-.')}-{_tag(cluster)}"


def kubernetes_label_value(cluster: str) -> str:
    """``cluster`` as a Kubernetes label value (hashed like :func:`kubernetes_name` when changed)."""
    if len(cluster) <= 63 and _LABEL_VALUE.match(cluster):
        return cluster
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", cluster).strip("-_.")
    return f"{cleaned[:56]}-{_tag(cluster)}".lstrip("-_.")
