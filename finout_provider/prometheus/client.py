"""The Prometheus HTTP API of one endpoint (Prometheus, Thanos, Mimir/Cortex, VictoriaMetrics,
Amazon Managed Prometheus) under one retry policy, without Airflow:
:class:`~finout_provider.hooks.prometheus.PrometheusHook` builds one from an Airflow connection,
the CLI from a connection read without Airflow.

An answer is read whole into a sink the caller gives (:meth:`PrometheusClient.read_range`): a cut
answer is read again, from its request; what the caller does with a whole answer is its own, out of
the retry loop.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
import tenacity

from finout_provider.prometheus.answer import Answer, AnswerCheck, Measures, judge_envelope
from finout_provider.prometheus.connection import MAX_RETRIES, Endpoint
from finout_provider.prometheus.errors import HeavyQueryError, IncompleteBodyError, PrometheusError, judge_refusal
from finout_provider.prometheus.split import read_in_pieces

T = TypeVar("T")
# Reads a whole answer's chunks (again from the first, on a retry).
Sink = Callable[[Iterable[bytes]], None]

BACKOFF_CAP = 60.0  # the longest pause between attempts without a Retry-After
CHUNK_SIZE = 1 << 20
ERROR_BODY = 1 << 16  # bytes of an error answer read, redacted, then cut for the message
SMALL_ANSWER = 64 << 20  # the most read of an answer parsed whole (instant queries, status pages)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe_range(query: str, start: float, end: float, step: int) -> str:
    return f"query_range {_iso(start)}..{_iso(end)} step {step}s of {query!r}"


class _StopWhenBounded(tenacity.stop.stop_base):
    """Stop when the last failure allows no more attempts than were spent (a 500: a few)."""

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        attempts = getattr(error, "attempts", None)
        return attempts is not None and retry_state.attempt_number >= attempts


class RetryPolicy:
    """The one retry policy of a request and the reading of its whole answer: up to ``max_retries``
    more attempts after a retryable :class:`PrometheusError`, after the server's ``Retry-After`` if
    it gave one, else an exponential backoff with jitter from ``retry_wait``, capped at 60 s."""

    def __init__(self, max_retries: int, retry_wait: float, log: Any) -> None:
        self.max_retries = max_retries
        self.retry_wait = retry_wait
        self.log = log

    def wait(self, state: tenacity.RetryCallState) -> float:
        """Seconds before the next attempt."""
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, PrometheusError) and error.retry_after is not None:
            return min(error.retry_after, 300.0)
        return min(self.retry_wait * 2 ** (state.attempt_number - 1), BACKOFF_CAP) * (0.5 + random.random() / 2)

    def _log_retry(self, what: str, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        pause = state.next_action.sleep if state.next_action else 0.0
        self.log.warning("%s: attempt %d failed (%s); retrying in %.1fs", what, state.attempt_number, error, pause)

    def run(self, what: str, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` under the policy; a retryable error that outlasts it names the attempts."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda err: isinstance(err, PrometheusError) and err.retryable),
            stop=tenacity.stop_any(tenacity.stop_after_attempt(self.max_retries + 1), _StopWhenBounded()),
            wait=self.wait,
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


class PrometheusClient:
    """
    Queries one endpoint; every request and the reading of its whole answer are tried again on a
    retryable failure (connection errors, 429, 502, 503, 504, throttling, a cut or partial answer).

    :param endpoint: the server and its session.
    :param max_retries: retries of a failed attempt (default the connection's ``max_retries``, 5).
    :param retry_wait: first backoff in seconds, doubled each retry, capped at 60 (default the
        connection's ``retry_wait``, 1); a ``Retry-After`` header wins when present.
    :param log: where retries and what the server does not offer are said.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        max_retries: int | None = None,
        retry_wait: float | None = None,
        log: Any = None,
    ) -> None:
        self.endpoint = endpoint
        self.log = log or logging.getLogger("finout_provider.prometheus")
        retries = int(endpoint.extras.get("max_retries", MAX_RETRIES) if max_retries is None else max_retries)
        wait = float(endpoint.extras.get("retry_wait", 1.0) if retry_wait is None else retry_wait)
        self.retries = RetryPolicy(retries, wait, self.log)
        self.not_offered: dict[str, str] = {}  # optional endpoints the server did not offer, and why

    @property
    def base_url(self) -> str:
        return self.endpoint.base_url

    # -- requests under the one retry policy ----------------------------------------------------

    def _attempt(self, path: str, params: dict[str, Any], what: str, method: str, use: Callable[[Any], T]) -> T:
        """One request to ``path`` and ``use`` of its 200 answer; failures as :class:`PrometheusError`
        whose message holds no credential, whatever the server echoed."""
        try:
            with self._send(path, params, what, method) as response:
                if response.status_code != 200:
                    raise self._refused(response, what, path)
                return use(response)
        except PrometheusError as err:
            err.args = (self.endpoint.redact(str(err)),)
            raise

    def _send(self, path: str, params: dict[str, Any], what: str, method: str) -> requests.Response:
        endpoint, url = self.endpoint, f"{self.base_url}{path}"
        form, query = (params, None) if method == "POST" else (None, params)
        session = endpoint.session
        try:
            # verify is passed per request: requests lets REQUESTS_CA_BUNDLE override a session's setting.
            return session.request(
                method, url, data=form, params=query, timeout=endpoint.timeout, stream=True, verify=session.verify
            )
        except requests.exceptions.SSLError as err:
            reason = str(err.args[0] if err.args else err)[-200:]
            raise PrometheusError(
                f"{what}: TLS verification of {self.base_url} failed ({reason}); set 'ca_bundle' in the extras "
                f"of connection {endpoint.conn_id!r} to the CA that signed the server's certificate"
            ) from None
        except (requests.ConnectionError, requests.Timeout) as err:
            raise PrometheusError(
                f"{what}: cannot reach Prometheus at {self.base_url}: {type(err).__name__}; check {endpoint.origin} "
                "and that the server is up",
                retryable=True,
            ) from None

    def _refused(self, response: requests.Response, what: str, path: str) -> PrometheusError:
        """The error for a non-200 answer (:func:`~finout_provider.prometheus.errors.judge_refusal` decides)."""
        redact = self.endpoint.redact
        body = response.raw.read(ERROR_BODY, decode_content=True) if response.raw else b""
        text = redact(_error_text(redact(body.decode("utf-8", "replace"))))
        err = judge_refusal(response.status_code, text, response.headers.get("Retry-After", ""))
        err.args = (f"{what}: HTTP {response.status_code} from {self.base_url}{path}: {err}",)
        return err

    def _request(self, path: str, params: dict[str, Any], what: str, method: str = "POST") -> dict[str, Any]:
        """A small answer's JSON object (status ``success``), with retries."""
        read = functools.partial(small_answer, where=f"the answer of {self.base_url}", redact=self.endpoint.redact)
        return self.retries.run(what, lambda: self._attempt(path, params, what, method, read))

    # -- range queries ---------------------------------------------------------------------------

    def read_range(
        self,
        query: str,
        start: float,
        end: float,
        step: int,
        into: Sink,
        *,
        allow_warnings: bool = False,
        split: bool = True,
        min_split_seconds: int = 60,
        pieces: int = 1,
    ) -> Answer:
        """Read ``query_range``'s whole answer into ``into``, which gets the answer's chunks to read
        whole; reading them raises at the end unless the answer is whole and successful, so ``into``
        never keeps a partial or failed answer. A failed attempt (request or body) is tried again,
        ``into`` called again from the first chunk.

        A query the server refuses as too heavy is run again as sub-ranges on the same steps,
        halved until each is accepted (never shorter than ``min_split_seconds`` or one step), and the
        pieces are joined into one answer (``split`` False: refused as it is). ``pieces`` > 1 starts
        split that many ways (a hint from earlier windows).
        """
        refusal: HeavyQueryError | None = None
        if pieces <= 1:
            try:
                return self._read_whole(query, start, end, into, step=step, allow_warnings=allow_warnings)
            except HeavyQueryError as err:
                if not err.refusal.splittable:
                    raise HeavyQueryError(
                        f"{err}; it limits series, so splitting in time cannot help: {err.refusal.fix}",
                        err.refusal,
                        err.status,
                    ) from None
                if not split:
                    raise HeavyQueryError(
                        f"{err}; SPLIT is off: {err.refusal.fix}, or set SPLIT: auto", err.refusal, err.status
                    ) from None
                refusal, pieces = err, 2
        return self._read_split(query, start, end, step, into, pieces, refusal, allow_warnings, min_split_seconds)

    def _read_split(
        self,
        query: str,
        start: float,
        end: float,
        step: int,
        into: Sink,
        pieces: int,
        refusal: HeavyQueryError | None,
        allow_warnings: bool,
        min_split_seconds: int,
    ) -> Answer:
        """The answer of ``[start, end]`` read as pieces, then joined into ``into``."""
        fetch = functools.partial(self._read_whole, query, step=step, allow_warnings=allow_warnings)
        try:
            answer = read_in_pieces(
                fetch,
                int(start),
                int(end),
                step,
                into,
                pieces=pieces,
                refused=refusal is not None,
                floor=min_split_seconds,
            )
        except ValueError as err:  # pieces the join cannot merge (not sorted by label set)
            raise PrometheusError(f"{describe_range(query, start, end, step)}: {err}") from None
        return replace(answer, refusal=str(refusal.refusal.limit) if refusal else "hint from earlier windows")

    def _read_whole(
        self, query: str, start: float, end: float, into: Sink, *, step: int, allow_warnings: bool
    ) -> Answer:
        what = describe_range(query, start, end, step)
        params = {"query": query, "start": str(start), "end": str(end), "step": str(step)}
        tries = 0

        def attempt() -> Answer:
            nonlocal tries
            tries += 1
            began = time.monotonic()

            def use(response: requests.Response) -> Answer:
                deadline = self.endpoint.answer_timeout - (time.monotonic() - began)
                body = CheckedBody(response, what, AnswerCheck(step, allow_warnings=allow_warnings), deadline)
                into(body)
                return Answer(body.measures, body.size, tries - 1)

            return self._attempt("/api/v1/query_range", params, what, "POST", use)

        return self.retries.run(what, attempt)

    def query_range(self, query: str, start: float, end: float, step: int, **options: Any) -> dict[str, Any]:
        """``query_range`` parsed as JSON (small answers: the planner's probe, checks, tests)."""
        answer = bytearray()

        def keep(body: Iterable[bytes]) -> None:
            answer[:] = b"".join(body)

        self.read_range(query, start, end, step, keep, **options)
        return dict(json.loads(answer))

    # -- instant queries and status pages -------------------------------------------------------

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
        """Raise unless the query API answers under the configured path prefix: an instant query of
        ``vector(1)`` rather than ``/-/ready``, right with any path prefix and on every backend."""
        self.query("vector(1)")

    def status_page(self, name: str) -> dict[str, Any] | None:
        """The ``data`` of ``/api/v1/status/<name>`` (buildinfo, flags, runtimeinfo...): optional on
        every backend, so any answer but a usable success (404, VictoriaMetrics' 400, a proxy's 403,
        an empty ``data``, not JSON) is ``None``, "not offered", and said in :attr:`not_offered`.
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


class CheckedBody:
    """A ``query_range`` answer's chunks as they arrive; iterating raises
    :class:`IncompleteBodyError` at the end unless the body is a whole successful answer
    (:class:`~finout_provider.prometheus.answer.AnswerCheck`), after which ``measures`` say what it
    held. The whole answer has ``deadline`` seconds (from its request): past it, the connection is
    shut and the answer fails as a retryable error."""

    def __init__(self, response: requests.Response, what: str, check: AnswerCheck, deadline: float) -> None:
        self._response = response
        self._what = what
        self._check = check
        self._deadline = deadline
        self._expired = False

    @property
    def measures(self) -> Measures:
        return self._check.measures

    @property
    def size(self) -> int:
        return self._check.size

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


def parse_duration(text: str) -> int | None:
    """Seconds of the time part of a Prometheus retention such as ``15d``, ``1w2d`` or
    ``30d or 50GiB``; ``None`` when it has no time part."""
    for part in (p.strip() for p in text.split(" or ")):
        if re.fullmatch(r"(?:\d+(?:ms|[ywdhms]))+", part):
            return int(sum(int(n) * _DURATION_UNITS[u] for n, u in re.findall(r"(\d+)(ms|[ywdhms])", part)))
    return None


def small_answer(response: requests.Response, *, where: str, redact: Callable[[str], str]) -> dict[str, Any]:
    """A small answer's JSON object (status ``success``); ``where`` names it in errors."""
    body = response.raw.read(SMALL_ANSWER + 1, decode_content=True) if response.raw else b""
    try:
        doc = json.loads(body)
    except ValueError:
        start = redact(body[:80].decode("utf-8", "replace"))
        raise PrometheusError(
            f"{where} is not Prometheus' JSON ({len(body)} bytes, starts {start!r}): is the connection's host, "
            f"port and path_prefix the Prometheus API (a login page or proxy answers HTML)?"
        ) from None
    try:
        judge_envelope(doc, matrix=False)
    except PrometheusError as err:
        raise type(err)(f"{where}: {err}") from None
    return dict(doc)


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
