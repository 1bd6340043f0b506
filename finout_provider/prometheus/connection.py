"""A Prometheus endpoint from a connection's fields: its URL and timeouts, a requests session with
its headers, auth and TLS (each from a small ``_configure_*`` helper, as Airflow's ``HttpHook``
builds its session), AWS SigV4 signing, and the redaction of any credential a server may echo.

Connection fields: ``host`` (a host name, or a whole URL), ``port``, ``schema`` (``http`` or
``https``), ``login``/``password`` (basic auth). Extras: ``path_prefix``, ``bearer_token``,
``x_scope_orgid`` (the tenant), ``tenant_header`` (default ``X-Scope-OrgID``; Thanos' querier reads
``THANOS-TENANT``), ``headers`` (a mapping), ``verify`` (bool), ``ca_bundle`` (path),
``client_cert``/``client_key`` (paths), ``sigv4`` (bool), ``aws_conn_id``, ``region_name``,
``timeout`` (one read, seconds), ``answer_timeout`` (a whole answer, seconds, default 1800),
``max_retries``, ``retry_wait`` (seconds, first backoff). Credentials in the host's URL
(``https://user:password@host``) are used as basic auth when login is empty.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from functools import cached_property
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from requests.adapters import HTTPAdapter

ANSWER_TIMEOUT = 1800  # seconds a whole answer may take (the connection's ``answer_timeout``)
MAX_RETRIES = 5  # retries of a failed attempt (the connection's ``max_retries``)
# The header that carries the tenant (extra ``x_scope_orgid``): Mimir's and Cortex'; Thanos' querier
# reads THANOS-TENANT (extra ``tenant_header``).
TENANT_HEADER = "X-Scope-OrgID"
# What a server may echo of any request's credentials, whichever connection sent them.
_ECHOED = (
    (re.compile(r"(?i)\b(Basic|Bearer|Token)(\s+)[A-Za-z0-9._~+/=-]{6,}"), r"\1\2***"),
    (re.compile(r"(?i)(Signature=)[0-9a-f]{16,}"), r"\1***"),
    (re.compile(r"(?i)(Credential=)[A-Za-z0-9]{8,}"), r"\1***"),
    (re.compile(r"(?i)(x-amz-security-token[\"']?\s*[:=]\s*[\"']?)[^\s\"',&;]+"), r"\1***"),
    (re.compile(r"(?i)(password|passwd|secret|token|api[_-]?key)([\"']?\s*[:=]\s*[\"']?)[^\s\"',&;]+"), r"\1\2***"),
    (re.compile(r"://[^/\s:@]+:[^/\s@]+@"), "://***@"),
)
# SigV4's credentials (read when called) and region, from the AWS connection of the given id.
AwsCredentials = Callable[[str], tuple[Callable[[], Any], str | None]]


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    return bool(value)


class SigV4(requests.auth.AuthBase):
    """Signs each request with AWS SigV4 (Amazon Managed Prometheus, service ``aps``)."""

    def __init__(
        self,
        credentials: Callable[[], Any],
        region: str,
        service: str = "aps",
        signed: tuple[str, ...] = ("content-type", TENANT_HEADER.lower()),
    ) -> None:
        self._credentials = credentials
        self.region = region
        self.service = service
        self.signed = signed  # the headers signed besides the host (lower case)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        headers = {k: v for k, v in request.headers.items() if k.lower() in self.signed}
        aws_request = AWSRequest(method=request.method, url=request.url, data=request.body, headers=headers)
        SigV4Auth(self._credentials(), self.service, self.region).add_auth(aws_request)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in aws_request.headers:
                request.headers[name] = aws_request.headers[name]
        return request


class Endpoint:
    """
    One Prometheus-compatible server as a connection describes it.

    :param connection: the connection (``conn_id``, ``host``, ``port``, ``schema``, ``login``,
        ``password``, ``extra_dejson``), from Airflow or read without it.
    :param pool_size: HTTP connections kept to the server (one per concurrent query).
    :param mask: keeps a secret out of logs (Airflow's secrets masker, in a task).
    :param aws: SigV4's credentials and region of an AWS connection (extra ``aws_conn_id``,
        default ``aws_default``), read when the connection asks for ``sigv4``.
    """

    def __init__(
        self,
        connection: Any,
        *,
        pool_size: int = 10,
        mask: Callable[[str], None] = lambda secret: None,
        aws: AwsCredentials | None = None,
    ) -> None:
        self.connection = connection
        self.pool_size = pool_size
        self._mask = mask
        self._aws = aws

    @property
    def conn_id(self) -> str:
        return str(self.connection.conn_id)

    @cached_property
    def extras(self) -> dict[str, Any]:
        extra = self.connection.extra_dejson
        return dict(extra) if isinstance(extra, dict) else {}

    @cached_property
    def base_url(self) -> str:
        """``scheme://host:port/path_prefix`` without a trailing slash."""
        conn = self.connection
        host = (conn.host or "localhost").strip()
        scheme, path, port = (conn.schema or "http").strip().lower(), "", conn.port
        if "://" in host:
            parts = urlsplit(host)
            scheme, host, path = parts.scheme, parts.hostname or "localhost", parts.path
            port = conn.port or parts.port
        if scheme not in ("http", "https"):
            raise ValueError(f"connection {self.conn_id!r}: scheme {scheme!r} must be http or https")
        prefix = "/".join(p for p in (path.strip("/"), str(self.extras.get("path_prefix") or "").strip("/")) if p)
        netloc = f"[{host}]" if ":" in host else host
        if port:
            netloc += f":{int(port)}"
        return f"{scheme}://{netloc}" + (f"/{prefix}" if prefix else "")

    @property
    def origin(self) -> str:
        """Where the connection is defined, as errors name it."""
        return str(self.extras.get("defined_by") or f"the connection {self.conn_id!r}")

    @property
    def answer_timeout(self) -> float:
        """Seconds a whole answer may take, from the request to its last byte."""
        return float(self.extras.get("answer_timeout", ANSWER_TIMEOUT))

    @property
    def timeout(self) -> tuple[float, float]:
        """Seconds to connect, and to wait for any one read."""
        return (10.0, min(float(self.extras.get("timeout", 300)), self.answer_timeout))

    @cached_property
    def _url_credentials(self) -> tuple[str, str] | None:
        host = (self.connection.host or "").strip()
        parts = urlsplit(host) if "://" in host else None
        if parts is None or parts.username is None:
            return None
        return unquote(parts.username), unquote(parts.password or "")

    @cached_property
    def session(self) -> requests.Session:
        """A session with the connection's headers, auth and TLS settings."""
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(self.pool_size, 1), max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._configure_headers(session)
        self._configure_auth(session)
        self._configure_tls(session)
        return session

    def _configure_headers(self, session: requests.Session) -> None:
        extra = self.extras
        session.headers["Accept-Encoding"] = str(extra.get("accept_encoding", "identity"))
        session.headers["User-Agent"] = "airflow-provider-finout"
        headers = extra.get("headers") or {}
        if isinstance(headers, str):  # typed into the connection form as JSON text
            headers = json.loads(headers)
        for name, value in headers.items():
            session.headers[str(name)] = str(value)
        if extra.get("x_scope_orgid"):
            session.headers[self.tenant_header] = str(extra["x_scope_orgid"])

    @property
    def tenant_header(self) -> str:
        return str(self.extras.get("tenant_header") or TENANT_HEADER)

    def _configure_auth(self, session: requests.Session) -> None:
        conn, extra = self.connection, self.extras
        if extra.get("bearer_token"):
            self._mask(str(extra["bearer_token"]))
            session.headers["Authorization"] = f"Bearer {extra['bearer_token']}"
        elif conn.login:
            session.auth = (conn.login, conn.password or "")
        elif self._url_credentials:
            self._mask(self._url_credentials[1])
            session.auth = self._url_credentials
        if truthy(extra.get("sigv4")):
            session.auth = self._sigv4()

    def _configure_tls(self, session: requests.Session) -> None:
        extra = self.extras
        session.verify = extra.get("ca_bundle") or truthy(extra.get("verify", True))
        if extra.get("client_cert"):
            session.cert = (
                (extra["client_cert"], extra["client_key"]) if extra.get("client_key") else extra["client_cert"]
            )

    def _sigv4(self) -> SigV4:
        aws_conn_id = str(self.extras.get("aws_conn_id", "aws_default"))
        if self._aws is None:
            raise ValueError(f"connection {self.conn_id!r}: SigV4 needs its AWS connection {aws_conn_id!r}")
        credentials, aws_region = self._aws(aws_conn_id)
        region = self.extras.get("region_name") or aws_region
        if not region:
            raise ValueError(
                f"connection {self.conn_id!r}: SigV4 needs 'region_name' in the extras or the AWS connection"
            )
        return SigV4(credentials, region, signed=("content-type", self.tenant_header.lower()))

    @cached_property
    def _secret_forms(self) -> list[str]:
        """Every form in which this connection's secrets travel: as written, and basic auth's base64
        in the Latin-1 requests sends (and UTF-8), longest first."""
        conn, extra = self.connection, self.extras
        login, password = (conn.login, conn.password) if conn.login else self._url_credentials or (None, None)
        forms = [password, extra.get("bearer_token"), extra.get("x_scope_orgid")]
        if password:
            pair = f"{login or ''}:{password}"
            for encoding in ("latin-1", "utf-8"):
                try:
                    forms.append(base64.b64encode(pair.encode(encoding)).decode())
                except UnicodeEncodeError:
                    continue
        return sorted({str(f) for f in forms if f}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """``text`` with this connection's secrets replaced (a server may echo what it was sent),
        including a secret's beginning where ``text`` ends in the middle of it, and whatever looks
        like a credential of any request (an ``Authorization`` value, a SigV4 signature, a password
        in a URL)."""
        for secret in self._secret_forms:
            text = text.replace(secret, "***")
        for pattern, replacement in _ECHOED:
            text = pattern.sub(replacement, text)
        for secret in self._secret_forms:
            for size in range(min(len(secret) - 1, len(text)), 3, -1):
                if text.endswith(secret[:size]):
                    return text[:-size] + "***"
        return text
