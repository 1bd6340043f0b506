"""Which failures a retry can fix: the one list. A task that meets one that cannot (no such
bucket, access denied, an unknown connection, a query the server rejects, a bad setting) fails at
once with what to fix, instead of spending its retries and their backoff; transient ones (503,
throttling, a cut answer, a broken connection) keep retrying."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from finout_provider.answers import PrometheusError

# botocore/Airflow exceptions named, not imported: this module stays light for the CLI.
PERMANENT_NAMES = frozenset(
    {
        "AirflowNotFoundException",
        "NoCredentialsError",
        "PartialCredentialsError",
        "NoRegionError",
        "ParamValidationError",
    }
)


def is_permanent(err: BaseException) -> bool:
    """Whether retrying cannot fix ``err``."""
    from finout_provider.hooks.s3 import S3AccessError

    if isinstance(err, PrometheusError):
        return not err.retryable
    if isinstance(err, S3AccessError):
        return err.permanent
    if isinstance(err, ValueError):  # ConfigError, WindowError, a bad argument
        return True
    return type(err).__name__ in PERMANENT_NAMES


def all_permanent(errors: Iterable[BaseException]) -> bool:
    found = list(errors)
    return bool(found) and all(is_permanent(e) for e in found)


@contextmanager
def failing_fast(where: str) -> Iterator[None]:
    """Turn a failure a retry cannot fix into Airflow's "fail without retrying"."""
    try:
        yield
    except Exception as err:
        if not is_permanent(err) or type(err).__name__ == "AirflowFailException":
            raise
        from finout_provider.compat import AirflowFailException

        raise AirflowFailException(f"{where}: {err} (a retry cannot fix this: failing without retrying)") from err
