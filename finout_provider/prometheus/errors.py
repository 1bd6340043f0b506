"""What a failed request to Prometheus is: the one home of "permanent / retryable / too heavy /
partial" (pure).

:func:`judge_refusal` decides what a non-200 answer is: too heavy (split it), overload (retry) or
final. How Prometheus-compatible servers refuse a query as too heavy is one table, one row per
backend's wording (taken from their sources and docs). A refusal that names samples, chunks, bytes,
points or time is helped by querying shorter ranges; one that names series is not (every piece would
hold the same series). A 429 or 503 without such a reason is overload, not weight, and stays with
the client's retries. A cut, stalled or partial answer is :class:`IncompleteBodyError` (retryable).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RETRY_STATUS = frozenset({429, 502, 503, 504})
# A 500 that is no refusal is retried too (a querier or proxy answers 500 for a transient fault), but
# fewer times: it may as well be a defect of the server that no retry changes.
BOUNDED_STATUS = {500: 3}  # status -> attempts in all
# Amazon Managed Prometheus throttles with a 400 whose body names the exception.
THROTTLE_RE = re.compile(r"Throttl(?:e|ing)Exception")


@dataclass(frozen=True)
class Refusal:
    """One way a backend says a query is too heavy."""

    backend: str
    limit: str  # the setting that refused it
    pattern: re.Pattern[str]
    splittable: bool  # whether shorter time ranges pass it
    fix: str  # what to change when even the smallest piece is refused
    # How many times a refused piece is halved again (None: down to the shortest piece). A limit not
    # accounted by time (VictoriaMetrics counts every sample of the blocks a query reads) refuses a
    # quarter as heavily as its whole: beyond that, splitting only adds refused queries.
    halvings: int | None = None


def _r(text: str) -> re.Pattern[str]:
    return re.compile(text, re.IGNORECASE)


SERIES_FIX = "export fewer series: a METRICS subset, CLUSTER_LABEL on a shared server, or raise the server's limit"
REFUSALS: tuple[Refusal, ...] = (
    Refusal("Prometheus", "--query.max-samples", _r(r"would load too many samples into memory"), True,
            "raise --query.max-samples or STEP_SECONDS"),
    Refusal("Prometheus", "--query.timeout", _r(r"query timed out in|context deadline exceeded"), True,
            "raise --query.timeout (or the proxy's timeout in front of the server)"),
    Refusal("Prometheus", "11,000 points per series", _r(r"exceeded maximum resolution of 11,?000 points"), True,
            "raise STEP_SECONDS"),
    Refusal("Amazon Managed Prometheus", "50 MiB per answer", _r(r"response size.*(exceed|larger)|exceeds? .*50 ?mi?b"),
            True, "raise STEP_SECONDS or lower TIME_FRAME"),
    Refusal("Amazon Managed Prometheus", "samples processed per query",
            _r(r"query (processing )?exceeded .*(samples|bytes)|exceeded the maximum (number of )?(samples|bytes)"),
            True, "raise STEP_SECONDS (the quota cannot be raised)"),
    Refusal("Mimir", "max_fetched_series_per_query",
            _r(r"err-mimir-max-series-per-query|exceeded the maximum number of series"), False, SERIES_FIX),
    Refusal("Mimir", "max_fetched_chunks_per_query",
            _r(r"err-mimir-max-chunks-per-query|exceeded the maximum number of chunks"), True,
            "raise max_fetched_chunks_per_query"),
    Refusal("Mimir", "max_fetched_chunk_bytes_per_query",
            _r(r"err-mimir-max-chunks-bytes-per-query|exceeded the aggregated chunks size limit"), True,
            "raise max_fetched_chunk_bytes_per_query"),
    Refusal("Mimir", "max_query_length", _r(r"err-mimir-max-query-length|time range exceeds the limit"), True,
            "raise max_query_length"),
    Refusal("Mimir", "max_estimated_memory_consumption_per_query",
            _r(r"err-mimir-max-estimated-memory-consumption-per-query"), True,
            "raise max_estimated_memory_consumption_per_query"),
    Refusal("Cortex", "max_fetched_series_per_query", _r(r"the query hit the max number of series limit"), False,
            SERIES_FIX),
    Refusal("Cortex", "max_fetched_chunks_per_query", _r(r"the query hit the max number of chunks limit"), True,
            "raise max_fetched_chunks_per_query"),
    Refusal("Cortex", "max_fetched_chunk_bytes_per_query", _r(r"the query hit the aggregated chunks size limit"),
            True, "raise max_fetched_chunk_bytes_per_query"),
    Refusal("VictoriaMetrics", "-search.maxUniqueTimeseries", _r(r"search\.maxUniqueTimeseries"), False, SERIES_FIX),
    Refusal("VictoriaMetrics", "-search.maxSamplesPerQuery", _r(r"search\.maxSamplesPerQuery"), True,
            "raise -search.maxSamplesPerQuery", halvings=2),
    Refusal("VictoriaMetrics", "-search.maxQueryDuration", _r(r"search\.maxQueryDuration"), True,
            "raise -search.maxQueryDuration"),
    Refusal("VictoriaMetrics", "-search.maxPointsPerTimeseries", _r(r"search\.maxPointsPerTimeseries"), True,
            "raise STEP_SECONDS"),
    Refusal("Thanos", "query timeout", _r(r"rpc error: code = DeadlineExceeded"), True, "raise the query timeout"),
)  # fmt: skip
HEAVY_STATUS = frozenset({400, 413, 422, 429, 500, 503, 504})


def recognise(status: int, text: str) -> Refusal | None:
    """The refusal ``text`` (an error answer with HTTP ``status``) is, if it says the query is too heavy."""
    if status not in HEAVY_STATUS:
        return None
    return next((r for r in REFUSALS if r.pattern.search(text)), None)


class PrometheusError(Exception):
    """A request to Prometheus failed; the message quotes the query, window and server's text."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        attempts: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.attempts = attempts  # the most attempts a retry policy may spend on it (None: its own)


class HeavyQueryError(PrometheusError):
    """The server refused the query as too heavy (:data:`REFUSALS`)."""

    def __init__(self, message: str, refusal: Refusal, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.refusal = refusal


class IncompleteBodyError(PrometheusError):
    """The answer was cut, stalled, partial or is not a whole successful matrix answer (retryable)."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True) -> None:
        super().__init__(message, status=status, retryable=retryable)


def judge_refusal(status: int, text: str, retry_after: str = "") -> PrometheusError:
    """The error of a non-200 answer whose (redacted) message is ``text``: too heavy, overload
    (retryable: 429, 502, 503, 504, Amazon's throttling; a 500, a few times) or final."""
    refusal = recognise(status, text)
    if refusal is not None:
        return HeavyQueryError(f"{text}; the server's {refusal.backend} limit {refusal.limit}", refusal, status)
    throttled = status == 400 and THROTTLE_RE.search(text) is not None
    return PrometheusError(
        text,
        status=status,
        retryable=status in RETRY_STATUS or status in BOUNDED_STATUS or throttled,
        retry_after=float(retry_after) if retry_after.strip().isdigit() else None,
        attempts=BOUNDED_STATUS.get(status),
    )
