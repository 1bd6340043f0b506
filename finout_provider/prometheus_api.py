"""The Prometheus HTTP API without Airflow: connection fields, authentication, retries and streaming
``query_range``. :class:`~finout_provider.hooks.prometheus.PrometheusHook` gives it an Airflow
connection; :class:`PrometheusClient` a connection read without Airflow (the CLI)."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import random
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

import requests
import tenacity
from requests.adapters import HTTPAdapter

from finout_provider.answers import (
    ANSWER_TIMEOUT,
    BACKOFF_CAP,
    MAX_RETRIES,
    AnswerCheck,
    HeavyQueryError,
    IncompleteBodyError,
    Measures,
    PrometheusError,
    judge_envelope,
    judge_refusal,
)
from finout_provider.connections import Conn, aws_credentials
from finout_provider.matrix import JoinedBody, split_range
from finout_provider.splitting import Spool

T = TypeVar("T")

CHUNK_SIZE = 1 << 20
ERROR_BODY = 1 << 16  # bytes of an error answer read, redacted, then cut for the message
SMALL_ANSWER = 64 << 20  # the most read of an answer parsed whole (instant queries, status pages)
# What a server may echo of any request's credentials, whichever connection sent them.
_ECHOED = (
    (re.compile(r"(?i)\b(Basic|Bearer|Token)(\s+)[A-Za-z0-9._~+/=-]{6,}"), r"\1\2***"),
    (re.compile(r"(?i)(Signature=)[0-9a-f]{16,}"), r"\1***"),
    (re.compile(r"(?i)(Credential=)[A-Za-z0-9]{8,}"), r"\1***"),
    (re.compile(r"(?i)(x-amz-security-token[\"']?\s*[:=]\s*[\"']?)[^\s\"',&;]+"), r"\1***"),
    (re.compile(r"(?i)(password|passwd|secret|token|api[_-]?key)([\"']?\s*[:=]\s*[\"']?)[^\s\"',&;]+"), r"\1\2***"),
    (re.compile(r"://[^/\s:@]+:[^/\s@]+@"), "://***@"),
)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe_range(query: str, start: float, end: float, step: int) -> str:
    return f"query_range {_iso(start)}..{_iso(end)} step {step}s of {query!r}"


class _SigV4(requests.auth.AuthBase):
    """Signs each request with AWS SigV4 (Amazon Managed Prometheus, service ``aps``)."""

    def __init__(self, credentials: Callable[[], Any], region: str, service: str = "aps") -> None:
        self._credentials = credentials
        self.region = region
        self.service = service

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "x-scope-orgid")}
        aws_request = AWSRequest(method=request.method, url=request.url, data=request.body, headers=headers)
        SigV4Auth(self._credentials(), self.service, self.region).add_auth(aws_request)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in aws_request.headers:
                request.headers[name] = aws_request.headers[name]
        return request


class PrometheusApi:
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

    :param prometheus_conn_id: the connection of type ``prometheus``.
    :param max_retries: retries of a request on connection errors, 429, 502, 503 and 504
        (overrides the connection's ``max_retries``).
    :param retry_wait: first backoff in seconds, doubled each retry, capped at 60; a
        ``Retry-After`` header wins when present.
    :param pool_size: HTTP connections kept to the server (one per concurrent query).
    """

    if TYPE_CHECKING:  # given by the class it is mixed into (BaseHook's LoggingMixin, or PrometheusClient)

        @property
        def log(self) -> Any: ...

    def __init__(
        self,
        prometheus_conn_id: str,
        *,
        max_retries: int | None = None,
        retry_wait: float | None = None,
        pool_size: int = 10,
    ) -> None:
        self.prometheus_conn_id = prometheus_conn_id
        self._max_retries = max_retries
        self._retry_wait = retry_wait
        self.pool_size = pool_size

    def _find_connection(self) -> Any:
        """The connection object (``host``, ``port``, ``schema``, ``login``, ``password``,
        ``extra_dejson``) named ``prometheus_conn_id``."""
        raise NotImplementedError

    def _aws_credentials(self) -> tuple[Callable[[], Any], str | None]:
        """SigV4's credentials (read when called) and the AWS connection's region."""
        raise NotImplementedError

    # -- connection -------------------------------------------------------------------------

    @cached_property
    def connection(self) -> Any:
        return self._find_connection()

    @cached_property
    def extras(self) -> dict[str, Any]:
        extra = self.connection.extra_dejson
        return dict(extra) if isinstance(extra, dict) else {}

    @cached_property
    def base_url(self) -> str:
        """``scheme://host:port/path_prefix`` without a trailing slash."""
        conn = self.connection
        host = (conn.host or "localhost").strip()
        scheme = (conn.schema or "http").strip().lower()
        path = ""
        if "://" in host:
            parts = urlsplit(host)
            scheme, host, path = parts.scheme, parts.hostname or "localhost", parts.path
            port = conn.port or parts.port
        else:
            port = conn.port
        if scheme not in ("http", "https"):
            raise ValueError(f"connection {self.prometheus_conn_id!r}: scheme {scheme!r} must be http or https")
        prefix = "/".join(p for p in (path.strip("/"), str(self.extras.get("path_prefix") or "").strip("/")) if p)
        netloc = f"[{host}]" if ":" in host else host
        if port:
            netloc += f":{int(port)}"
        return f"{scheme}://{netloc}" + (f"/{prefix}" if prefix else "")

    @property
    def origin(self) -> str:
        """Where the connection is defined, as errors name it."""
        return str(self.extras.get("defined_by") or f"the connection {self.prometheus_conn_id!r}")

    @property
    def max_retries(self) -> int:
        if self._max_retries is not None:
            return self._max_retries
        return int(self.extras.get("max_retries", MAX_RETRIES))

    @property
    def retry_wait(self) -> float:
        if self._retry_wait is not None:
            return self._retry_wait
        return float(self.extras.get("retry_wait", 1.0))

    @property
    def timeout(self) -> tuple[float, float]:
        return (10.0, min(float(self.extras.get("timeout", 300)), self.answer_timeout))

    @property
    def answer_timeout(self) -> float:
        """Seconds a whole answer may take, from the request to its last byte."""
        return float(self.extras.get("answer_timeout", ANSWER_TIMEOUT))

    @cached_property
    def _url_credentials(self) -> tuple[str, str] | None:
        host = (self.connection.host or "").strip()
        parts = urlsplit(host) if "://" in host else None
        if parts is None or parts.username is None:
            return None
        return unquote(parts.username), unquote(parts.password or "")

    def get_conn(self) -> requests.Session:
        return self.session

    @cached_property
    def session(self) -> requests.Session:
        """A session with the connection's auth, headers and TLS settings."""
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
            session.headers["X-Scope-OrgID"] = str(extra["x_scope_orgid"])

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
            session.auth = self._sigv4_auth()

    def _configure_tls(self, session: requests.Session) -> None:
        extra = self.extras
        verify = extra.get("verify", True)
        session.verify = extra.get("ca_bundle") or truthy(verify)
        if extra.get("client_cert"):
            session.cert = (
                (extra["client_cert"], extra["client_key"]) if extra.get("client_key") else extra["client_cert"]
            )

    def _sigv4_auth(self) -> _SigV4:
        credentials, aws_region = self._aws_credentials()
        region = self.extras.get("region_name") or aws_region
        if not region:
            raise ValueError(
                f"connection {self.prometheus_conn_id!r}: SigV4 needs 'region_name' in the extras or the AWS connection"
            )
        return _SigV4(credentials, region)

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

    def _redact(self, text: str) -> str:
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

    def _mask(self, secret: str) -> None:
        """Keep ``secret`` out of logs (the hook registers it with Airflow's secrets masker)."""

    # -- requests with retries --------------------------------------------------------------

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """Seconds before the next attempt: the server's ``Retry-After`` if it gave one, else an
        exponential backoff with jitter from ``retry_wait``, capped at 60 s."""
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, PrometheusError) and error.retry_after is not None:
            return min(error.retry_after, 300.0)
        return min(self.retry_wait * 2 ** (state.attempt_number - 1), BACKOFF_CAP) * (0.5 + random.random() / 2)

    def _log_retry(self, what: str, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        pause = state.next_action.sleep if state.next_action else 0.0
        self.log.warning("%s: attempt %d failed (%s); retrying in %.1fs", what, state.attempt_number, error, pause)

    def _with_retries(self, what: str, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` (a request and the use of its whole answer) under the one retry policy:
        up to ``max_retries`` more attempts after a retryable :class:`PrometheusError`."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda err: isinstance(err, PrometheusError) and err.retryable),
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            before_sleep=lambda state: self._log_retry(what, state),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except PrometheusError as err:
            if not err.retryable:
                raise
            tries = retrying.statistics.get("attempt_number", 1)
            raise type(err)(f"{err} (after {tries} attempts)", status=err.status, retryable=True) from None

    def _attempt(self, path: str, params: dict[str, Any], what: str, method: str, use: Callable[[Any], T]) -> T:
        """One request to ``path`` and ``use`` of its 200 answer; failures as :class:`PrometheusError`
        whose message holds no credential, whatever the server echoed."""
        try:
            with self._send(path, params, what, method) as response:
                if response.status_code != 200:
                    raise self._refused(response, what, path)
                return use(response)
        except PrometheusError as err:
            err.args = (self._redact(str(err)),)
            raise

    def _send(self, path: str, params: dict[str, Any], what: str, method: str) -> requests.Response:
        url = f"{self.base_url}{path}"
        form, query = (params, None) if method == "POST" else (None, params)
        try:
            # verify is passed per request: requests lets REQUESTS_CA_BUNDLE override a session's setting.
            return self.session.request(
                method, url, data=form, params=query, timeout=self.timeout, stream=True, verify=self.session.verify
            )
        except requests.exceptions.SSLError as err:
            reason = str(err.args[0] if err.args else err)[-200:]
            raise PrometheusError(
                f"{what}: TLS verification of {self.base_url} failed ({reason}); set 'ca_bundle' in the extras "
                f"of connection {self.prometheus_conn_id!r} to the CA that signed the server's certificate"
            ) from None
        except (requests.ConnectionError, requests.Timeout) as err:
            raise PrometheusError(
                f"{what}: cannot reach Prometheus at {self.base_url}: {type(err).__name__}; check {self.origin} "
                "and that the server is up",
                retryable=True,
            ) from None

    def _refused(self, response: requests.Response, what: str, path: str) -> PrometheusError:
        """The error for a non-200 answer (:func:`~finout_provider.answers.judge_refusal` decides)."""
        body = response.raw.read(ERROR_BODY, decode_content=True) if response.raw else b""
        text = self._redact(_error_text(self._redact(body.decode("utf-8", "replace"))))
        err = judge_refusal(response.status_code, text, response.headers.get("Retry-After", ""))
        err.args = (f"{what}: HTTP {response.status_code} from {self.base_url}{path}: {err}",)
        return err

    def _request(self, path: str, params: dict[str, Any], what: str, method: str = "POST") -> dict[str, Any]:
        """A small answer's JSON object (status ``success``), with retries."""
        return self._with_retries(what, lambda: self._attempt(path, params, what, method, self._small_answer))

    def _small_answer(self, response: requests.Response) -> dict[str, Any]:
        body = response.raw.read(SMALL_ANSWER + 1, decode_content=True) if response.raw else b""
        where = f"the answer of {self.base_url}"
        try:
            doc = json.loads(body)
        except ValueError:
            start = self._redact(body[:80].decode("utf-8", "replace"))
            raise PrometheusError(
                f"{where} is not Prometheus' JSON ({len(body)} bytes, starts {start!r}): is the connection's host, "
                f"port and path_prefix the Prometheus API (a login page or proxy answers HTML)?"
            ) from None
        try:
            judge_envelope(doc, matrix=False)
        except PrometheusError as err:
            raise type(err)(f"{where}: {err}") from None
        return dict(doc)

    def stream_query_range(
        self,
        query: str,
        start: float,
        end: float,
        step: int,
        consume: Callable[[Any], T],
        *,
        allow_warnings: bool = False,
        split: bool = True,
        min_split_seconds: int = 60,
        pieces: int = 1,
    ) -> T:
        """Run ``query_range`` and pass its answer, chunk by chunk, to ``consume``.

        ``consume`` gets a body to iterate (:class:`CheckedBody`, or :class:`JoinedBody` for a
        split query) and must return only after reading it whole; iterating raises at the end unless
        the answer is whole and successful, so ``consume`` never commits a partial or failed answer.
        A failed attempt (request or body) is retried as a whole under one policy.

        A query the server refuses as too heavy (:mod:`finout_provider.refusals`) is run again as
        sub-ranges on the same steps, halved until each is accepted (a piece is never shorter than
        ``min_split_seconds`` or one step), and the pieces are joined into one answer (``split``
        False: refused as it is). ``pieces`` > 1 starts split that many ways (a hint from earlier
        windows). The body tells ``series``, ``pieces``, ``depth`` and the ``refusal``.
        """
        refusal: HeavyQueryError | None = None
        if pieces <= 1:
            try:
                return self._stream_whole(query, start, end, consume, step=step, allow_warnings=allow_warnings)
            except HeavyQueryError as err:
                if not err.refusal.splittable:
                    raise HeavyQueryError(
                        f"{err}; it limits series, so splitting in time cannot help: {err.refusal.fix}",
                        err.refusal,
                        err.status,
                    ) from None
                if not split:
                    raise HeavyQueryError(f"{err}; SPLIT is off: {err.refusal.fix}, or set SPLIT: auto",
                                          err.refusal, err.status) from None  # fmt: skip
                refusal, pieces = err, 2
        ranges = split_range(int(start), int(end), step, pieces)
        with tempfile.TemporaryDirectory(prefix="finout-split-") as folder:
            fetch = functools.partial(self._stream_whole, query, step=step, allow_warnings=allow_warnings)
            spool = Spool(fetch, step, min_split_seconds, Path(folder))
            spool.refused = int(end - start) + step if refusal else 0
            depth = max(spool.fetch(a, b, 1) for a, b in ranges)
            body = JoinedBody([path for path, _ in spool.pieces], step=step)
            body.pieces, body.depth, body.retries = len(spool.pieces), depth, sum(r for _, r in spool.pieces)
            body.refusal = str(refusal.refusal.limit) if refusal else "hint from earlier windows"
            try:
                return consume(body)
            except ValueError as err:  # pieces the join cannot merge (not sorted by label set)
                raise PrometheusError(f"{describe_range(query, start, end, step)}: {err}") from None

    def _stream_whole(
        self, query: str, start: float, end: float, consume: Callable[[Any], T], *, step: int, allow_warnings: bool
    ) -> T:
        what = describe_range(query, start, end, step)
        params = {"query": query, "start": str(start), "end": str(end), "step": str(step)}

        tries = 0

        def attempt() -> T:
            nonlocal tries
            tries += 1
            began = time.monotonic()

            def use(response: requests.Response) -> T:
                check = AnswerCheck(step, allow_warnings=allow_warnings)
                body = CheckedBody(response, what, check, self.answer_timeout - (time.monotonic() - began))
                body.retries = tries - 1
                return consume(body)

            return self._attempt("/api/v1/query_range", params, what, "POST", use)

        return self._with_retries(what, attempt)

    def query_range(self, query: str, start: float, end: float, step: int, **options: Any) -> dict[str, Any]:
        """``query_range`` parsed as JSON (for small answers: checks, tests, preflight)."""
        return self.stream_query_range(query, start, end, step, lambda body: json.loads(b"".join(body)), **options)

    def query(self, query: str, at: float | None = None) -> dict[str, Any]:
        """An instant query, parsed as JSON."""
        params: dict[str, Any] = {"query": query}
        if at is not None:
            params["time"] = str(at)
        return self._request("/api/v1/query", params, f"instant query {query!r}")

    def instant(self, query: str, at: float) -> list[dict[str, Any]]:
        """The series (``data.result``) of an instant query at ``at``: what preflight reads."""
        result = _data(self.query(query, at)).get("result")
        if not isinstance(result, list):
            raise PrometheusError(f"instant query {query!r}: the answer of {self.base_url} holds no result list")
        return result

    def check_ready(self) -> None:
        """Raise unless the query API answers under the configured path prefix.

        An instant query of ``vector(1)`` is used rather than ``/-/ready``: it is right with any
        path prefix (route prefixes, Thanos, Mimir's ``/prometheus``) and on every backend.
        """
        self.query("vector(1)")

    def status_page(self, name: str) -> dict[str, Any] | None:
        """The ``data`` of ``/api/v1/status/<name>`` (buildinfo, flags, runtimeinfo...): optional on
        every backend, so any answer but a usable success (404, VictoriaMetrics' 400, a proxy's 403,
        an empty ``data``, not JSON) is ``None``, "not offered", and said once in :attr:`not_offered`.
        Only a server that cannot be reached raises."""
        try:
            data = _data(self._request(f"/api/v1/status/{name}", {}, name, method="GET"))
        except PrometheusError as err:
            if err.status is None and err.retryable:
                raise
            self.not_offered[name] = str(err).splitlines()[0]
            return None
        if not data:
            self.not_offered[name] = f"{name}: {self.base_url} answers without data"
            return None
        return data

    @cached_property
    def not_offered(self) -> dict[str, str]:
        """Optional endpoints this server did not offer, and how it answered."""
        return {}

    def build_info(self) -> dict[str, Any]:
        """``/api/v1/status/buildinfo`` ``data`` (empty where the backend does not offer it)."""
        return self.status_page("buildinfo") or {}

    def max_samples(self) -> int | None:
        """The server's ``--query.max-samples`` (``/api/v1/status/flags``), where it says."""
        value = str((self.status_page("flags") or {}).get("query.max-samples") or "")
        return int(value) if value.isdigit() else None

    def retention_seconds(self) -> int | None:
        """How far back Prometheus keeps samples (``storageRetention`` of
        ``/api/v1/status/runtimeinfo``), or ``None`` where the backend does not say (Thanos, Mimir,
        VictoriaMetrics, a size-only retention)."""
        retention = str((self.status_page("runtimeinfo") or {}).get("storageRetention") or "")
        return parse_duration(retention)

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.check_ready()
            version = self.build_info().get("version")
        except Exception as err:  # noqa: BLE001 - the UI shows the message
            return False, str(err)
        return True, f"Connected to {self.base_url}" + (f" (Prometheus {version})" if version else "")


class PrometheusClient(PrometheusApi):
    """:class:`PrometheusApi` over a connection read without Airflow
    (:func:`finout_provider.connections.environment_connection`); ``aws`` is the AWS connection
    SigV4 signs with, when the connection asks for it."""

    def __init__(self, connection: Conn, *, aws: Conn | None = None, **kwargs: Any) -> None:
        super().__init__(connection.conn_id, **kwargs)
        self._connection = connection
        self._aws = aws

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger("finout_provider.prometheus")

    def _find_connection(self) -> Conn:
        return self._connection

    def _aws_credentials(self) -> tuple[Callable[[], Any], str | None]:
        if self._aws is None:
            raise ValueError(f"connection {self.prometheus_conn_id!r}: SigV4 needs its AWS connection")
        return aws_credentials(self._aws), self._aws.extra_dejson.get("region_name")


class CheckedBody:
    """A ``query_range`` answer's chunks as they arrive; iterating raises
    :class:`IncompleteBodyError` at the end unless the body is a whole successful answer
    (:class:`~finout_provider.answers.AnswerCheck`), after which ``measures`` say what it held.
    The whole answer has ``deadline`` seconds (from its request): past it, the connection is shut
    and the answer fails as a retryable error."""

    pieces, depth, refusal = 1, 0, ""  # an answer in one piece
    retries = 0  # failed attempts before this one

    def __init__(
        self, response: requests.Response, what: str, check: AnswerCheck, deadline: float = ANSWER_TIMEOUT
    ) -> None:
        self._response = response
        self._what = what
        self._check = check
        self._deadline = deadline
        self._expired = False

    @property
    def series(self) -> int:
        return self._check.measures.series

    @property
    def measures(self) -> Measures:
        return self._check.measures

    @property
    def annotations(self) -> list[str]:
        return self._check.annotations

    def __iter__(self) -> Iterator[bytes]:
        check, what = self._check, self._what
        watchdog = threading.Timer(max(self._deadline, 0.0), self._expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            for chunk in self._response.iter_content(chunk_size=CHUNK_SIZE):
                if self._expired:
                    break
                check.feed(chunk)
                yield chunk
            if not self._expired:
                check.finish()
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as err:
            if not self._expired:
                raise IncompleteBodyError(
                    f"{what}: the response broke off after {check.size} bytes ({type(err).__name__})"
                ) from None
        except PrometheusError as err:
            if not self._expired:
                message = f"{what}: {err} (the answer of {self._response.url})"
                raise type(err)(message, status=err.status, retryable=err.retryable) from None
        finally:
            watchdog.cancel()
        if self._expired:
            raise IncompleteBodyError(
                f"{what}: the answer took longer than answer_timeout ({self._deadline:.0f}s; {check.size} bytes "
                "read); raise answer_timeout in the connection's extras if the server is slow but sound"
            )

    def _expire(self) -> None:
        """Shut the answer's socket: a read blocked on a trickling server returns at once."""
        self._expired = True
        # The pooled connection's socket, or (an answer that closes its connection, which
        # http.client hands over to the response) the socket under the response's file.
        for path in (("connection", "sock"), ("_fp", "fp", "raw", "_sock")):
            sock: Any = self._response.raw
            for attr in path:
                sock = getattr(sock, attr, None)
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                return


_DURATION_UNITS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_DURATION = re.compile(r"^(?:\d+(?:ms|[ywdhms]))+$")


def parse_duration(text: str) -> int | None:
    """Seconds of the time part of a Prometheus retention such as ``15d``, ``1w2d`` or
    ``30d or 50GiB``; ``None`` when it has no time part."""
    for part in (p.strip() for p in text.split(" or ")):
        if _DURATION.match(part):
            return int(sum(int(n) * _DURATION_UNITS[u] for n, u in re.findall(r"(\d+)(ms|[ywdhms])", part)))
    return None


def _error_text(body: str) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return body.strip()[:500] or "(empty body)"
    if isinstance(doc, dict) and doc.get("error"):
        return f"{doc.get('errorType', 'error')}: {doc['error']}"
    return json.dumps(doc)[:500]


def _data(doc: dict[str, Any]) -> dict[str, Any]:
    """An answer's ``data`` object (empty where it holds none)."""
    data = doc.get("data")
    return data if isinstance(data, dict) else {}


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    return bool(value)
