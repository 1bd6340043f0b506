"""Connections read without importing Airflow, for the CLI: ``AIRFLOW_CONN_<ID>`` parsed by
Airflow's own rules, and a cluster's S3 store and Prometheus client outside tasks (the CLI, the
fleet page): from such connections without Airflow, else from Airflow's hooks, which resolve
connections through secrets backends and the metadata database.

Importing Airflow takes seconds, more than the CLI's commands need for one cluster. Airflow looks a
connection up in a configured secrets backend first, then in the environment, then in its
metadata database. So a connection is read here only when no secrets backend is configured and
the environment holds it, in a form whose meaning is certain; otherwise :func:`environment_connection`
answers ``None`` and the caller uses Airflow's hooks, which resolve it as always.
"""

from __future__ import annotations

import configparser
import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from finout_provider.config.clusters import ClusterConfig
    from finout_provider.prometheus.client import PrometheusClient
    from finout_provider.s3.store import S3Store

ENV_PREFIX = "AIRFLOW_CONN_"
EXTRA_KEY = "__extra__"  # Airflow's query key for a whole extra in a URI
JSON_FIELDS = frozenset({"conn_type", "host", "login", "password", "schema", "port", "extra", "description"})
# The AWS connection extras whose meaning for S3 is plain (credentials, region, endpoint, TLS);
# a connection with any other (role_arn, profile_name, service_config, config_kwargs...) goes
# through the Amazon provider.
PLAIN_AWS_EXTRAS = frozenset(
    {"region_name", "endpoint_url", "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "verify"}
)
ROLE_SESSION_NAME = "airflow-provider-finout"


@dataclass(frozen=True)
class Conn:
    """The fields of an Airflow connection, as ``Connection`` holds them."""

    conn_id: str
    conn_type: str | None = None
    host: str | None = None
    login: str | None = None
    password: str | None = None
    schema: str | None = None
    port: int | None = None
    extra: str | None = None

    @property
    def extra_dejson(self) -> Any:
        """The extra as JSON; ``{}`` when there is none (:func:`environment_connection` returns only
        connections whose extra is a JSON object)."""
        return json.loads(self.extra) if self.extra else {}


def _conn_type(value: str) -> str:
    return "postgres" if value == "postgresql" else value.replace("-", "_")


def _hostname(parts: Any) -> str:
    """Airflow's ``_parse_netloc_to_hostname``: the host as written when it holds a path."""
    hostname = unquote(parts.hostname or "")
    if "/" in hostname:
        hostname = parts.netloc.rsplit("@", 1)[-1].split(":", 1)[0]
        hostname = unquote(hostname)
    return hostname


def from_uri(conn_id: str, uri: str) -> Conn | None:
    """Airflow's ``Connection.from_uri``; ``None`` where Airflow would refuse the URI."""
    if uri.count("://") > 2:
        return None
    with_protocol = uri.count("://") == 2
    scheme = urlsplit(uri).scheme
    rest = uri.replace(f"{scheme}://", "" if with_protocol else "//")
    if with_protocol and any(c in rest.split("://", 1)[0] for c in "@:"):
        return None
    parts = urlsplit(rest)
    host = _hostname(parts)
    if host and with_protocol:
        host = f"{parts.scheme}://{host}"
    extra = None
    if parts.query:
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        extra = query[EXTRA_KEY] if EXTRA_KEY in query else json.dumps(query)
    return Conn(
        conn_id,
        conn_type=_conn_type(scheme),
        host=host,
        schema=unquote(parts.path[1:]) if parts.path[1:] else parts.path[1:],
        login=unquote(parts.username) if parts.username else parts.username,
        password=unquote(parts.password) if parts.password else parts.password,
        port=parts.port,
        extra=extra,
    )


def from_json(conn_id: str, text: str) -> Conn | None:
    """Airflow's ``Connection.from_json``; ``None`` for what it refuses or this does not know."""
    fields = json.loads(text)
    if not isinstance(fields, dict):
        return None
    if set(fields) == {"uri"} and isinstance(fields["uri"], str):
        return from_uri(conn_id, fields["uri"])
    if not set(fields) <= JSON_FIELDS:
        return None
    extra = fields.get("extra")
    extra = (extra if isinstance(extra, str) else json.dumps(extra)) if extra else None
    port = fields.get("port")
    return Conn(
        conn_id,
        conn_type=_conn_type(fields["conn_type"]) if fields.get("conn_type") else None,
        host=fields.get("host"),
        login=fields.get("login"),
        password=fields.get("password"),
        schema=fields.get("schema"),
        port=int(port) if port else None,
        extra=extra,
    )


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or "~/airflow").expanduser()


def airflow_option(section: str, key: str) -> str | None:
    """An option of Airflow's configuration as Airflow reads it for plain options: the environment's
    ``AIRFLOW__<SECTION>__<KEY>``, else airflow.cfg (``$AIRFLOW_CONFIG``, else in ``$AIRFLOW_HOME``);
    ``None`` when neither sets it. Raises ``ValueError`` when airflow.cfg cannot be read."""
    name = f"AIRFLOW__{section.upper()}__{key.upper()}"
    if name in os.environ:
        return os.environ[name]
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(os.environ.get("AIRFLOW_CONFIG") or airflow_home() / "airflow.cfg", encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read airflow.cfg: {err}") from None
    value = parser.get(section, key, fallback=None)
    return None if value is None else value.replace("{AIRFLOW_HOME}", str(airflow_home()))


def secrets_backend_configured() -> bool:
    """Whether Airflow would ask a secrets backend before the environment (``[secrets] backend``;
    its ``_cmd``/``_secret`` forms count as one)."""
    try:
        return any(
            (airflow_option("secrets", key) or "").strip() for key in ("backend", "backend_cmd", "backend_secret")
        )
    except ValueError:
        return True  # cannot tell: Airflow decides


def environment_connection(conn_id: str) -> Conn | None:
    """Connection ``conn_id`` from ``AIRFLOW_CONN_<ID>`` when that is where Airflow would find it,
    else ``None`` (no such variable, a secrets backend first, a form Airflow would refuse, or an
    extra that is not a JSON object, which Airflow's lines read differently: some as ``{}``, some
    not at all)."""
    value = os.environ.get(ENV_PREFIX + conn_id.upper(), "").strip()
    if not value or secrets_backend_configured():
        return None
    try:
        conn = from_json(conn_id, value) if value[0] == "{" else from_uri(conn_id, value)
        return conn if conn is not None and isinstance(conn.extra_dejson, dict) else None
    except (ValueError, TypeError):
        return None


def export_connection(conn_id: str, fields: dict[str, Any]) -> None:
    """Put a connection (Airflow's JSON form) in this process's environment, where Airflow and
    :func:`environment_connection` find it."""
    os.environ[ENV_PREFIX + conn_id.upper()] = json.dumps(fields)


def plain_aws(conn: Conn | None) -> bool:
    """Whether an AWS connection means the same to boto3 here as through the Amazon provider."""
    if conn is None or (conn.conn_type or "aws") != "aws":
        return False
    return set(conn.extra_dejson) <= PLAIN_AWS_EXTRAS


def aws_session(conn: Conn, role_arn: str | None = None, external_id: str | None = None) -> Any:
    """A boto3 session with ``conn``'s credentials and region (the default chain without keys),
    as the Amazon provider builds it; with ``role_arn``, the credentials of that role."""
    import boto3

    extra = conn.extra_dejson
    if conn.login and conn.password:
        keys = {"aws_access_key_id": conn.login, "aws_secret_access_key": conn.password}
    elif extra.get("aws_access_key_id") and extra.get("aws_secret_access_key"):
        keys = {name: extra[name] for name in ("aws_access_key_id", "aws_secret_access_key")}
    else:
        keys = {}
    if extra.get("aws_session_token"):
        keys["aws_session_token"] = extra["aws_session_token"]
    session = boto3.session.Session(region_name=extra.get("region_name"), **keys)
    if not role_arn:
        return session
    # As the provider assumes a role: STS at its regional endpoint, never the connection's endpoint_url.
    assume = {"RoleArn": role_arn, "RoleSessionName": ROLE_SESSION_NAME}
    if external_id:
        assume["ExternalId"] = external_id
    credentials = session.client("sts").assume_role(**assume)["Credentials"]
    return boto3.session.Session(
        region_name=session.region_name,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def aws_client(conn: Conn, service: str, role_arn: str | None = None, external_id: str | None = None) -> Any:
    """A boto3 client of ``service`` for a :func:`plain_aws` connection."""
    extra = conn.extra_dejson
    session = aws_session(conn, role_arn, external_id)
    return session.client(service, endpoint_url=extra.get("endpoint_url"), verify=extra.get("verify"))


def aws_credentials(conn: Conn) -> Callable[[], Any]:
    """``conn``'s botocore credentials, read when called (for SigV4 signing)."""
    session = aws_session(conn)
    credentials: Callable[[], Any] = session.get_credentials
    return credentials


# --- a cluster's clients outside tasks ------------------------------------------------------------


def s3_of(config: ClusterConfig) -> S3Store:
    """The cluster's S3 store (its AWS_CONN_ID, with ROLE_ARN assumed)."""
    from finout_provider.s3.store import S3Store

    target = config.target
    conn = environment_connection(target.aws_conn_id) if target.aws_conn_id else None
    if conn is not None and plain_aws(conn):
        return S3Store(functools.partial(aws_client, conn, "s3", target.role_arn, target.role_external_id))
    return target.hook().store


def prometheus_of(config: ClusterConfig) -> PrometheusClient:
    """The cluster's Prometheus (its connection, or HOSTNAME/PORT of the clusters file)."""
    from finout_provider.prometheus.client import PrometheusClient
    from finout_provider.prometheus.connection import Endpoint, truthy

    conn = environment_connection(config.effective_conn_id)
    if conn is not None and (not truthy(conn.extra_dejson.get("sigv4")) or _plain_aws_of(conn)):
        return PrometheusClient(Endpoint(conn, aws=_environment_aws))
    from finout_provider.hooks.prometheus import PrometheusHook

    return PrometheusHook(config.effective_conn_id).get_conn()


def _plain_aws_of(conn: Conn) -> bool:
    """Whether the AWS connection a SigV4 Prometheus connection signs with is a plain one here."""
    return plain_aws(environment_connection(str(conn.extra_dejson.get("aws_conn_id", "aws_default"))))


def _environment_aws(aws_conn_id: str) -> tuple[Callable[[], Any], str | None]:
    """SigV4's credentials and region from an AWS connection in the environment."""
    conn = environment_connection(aws_conn_id)
    if conn is None:
        raise ValueError(f"AWS connection {aws_conn_id!r} is not in the environment")
    return aws_credentials(conn), conn.extra_dejson.get("region_name")
