"""Which failures a retry can fix: the one policy of every task and the CLI.

A failure a retry cannot fix (no such bucket, access denied, a refused role, 401/403, an unknown
connection, a query the server rejects, a bad setting) fails the task at once, naming the cluster,
what failed and what to change, instead of spending its retries and their backoff. Transient ones
(503, throttling, a cut answer, a broken connection) keep retrying. Every task of the provider
inherits this policy from its base class (:func:`failing_fast` wraps its ``execute``, ``poke`` and
``execute_complete``), so a task added later cannot forget it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from finout_provider.prometheus.errors import PrometheusError

F = TypeVar("F", bound=Callable[..., Any])

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
# AWS error codes (S3, STS) that no retry changes: denied, unknown, invalid.
PERMANENT_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "AuthorizationError",
        "NoSuchBucket",
        "InvalidBucketName",
        "InvalidArgument",
        "ValidationError",
        "MalformedPolicyDocument",
        "KMS.NotFoundException",
        "KMS.DisabledException",
        "401",
        "403",
        "404",
    }
)
RETRY_CANNOT_FIX = "a retry cannot fix this: failing without retrying"


class PermanentFailure(Exception):
    """A failure a retry cannot fix, already described (e.g. one the triggerer met)."""


def aws_error_code(err: BaseException) -> str | None:
    """The error code of a botocore ``ClientError`` (``None`` for anything else)."""
    response = getattr(err, "response", None)
    if type(err).__name__ != "ClientError" or not isinstance(response, dict):
        return None
    return str(response.get("Error", {}).get("Code", ""))


def is_permanent(err: BaseException) -> bool:
    """Whether retrying cannot fix ``err``."""
    from finout_provider.s3.store import S3AccessError

    if isinstance(err, PrometheusError):
        return not err.retryable
    if isinstance(err, S3AccessError):
        return err.permanent
    if isinstance(err, ValueError | PermanentFailure):  # ConfigError, WindowError, LayoutError, a bad argument
        return True
    code = aws_error_code(err)
    if code is not None:
        return code in PERMANENT_CODES
    return type(err).__name__ in PERMANENT_NAMES


def all_permanent(errors: Iterable[BaseException]) -> bool:
    found = list(errors)
    return bool(found) and all(is_permanent(e) for e in found)


def explain(err: BaseException) -> str:
    """One line a user can act on, for a failure of a connection, S3 or Prometheus."""
    name = type(err).__name__
    text = str(err).splitlines()[0] if str(err) else name
    if name == "AirflowNotFoundException" or "isn't defined" in text:
        return (
            f"{text}: create it (`airflow connections add ID --conn-type prometheus --conn-host HOST "
            "--conn-port 9090`, or `--conn-type aws` for S3), or set AIRFLOW_CONN_<ID>"
        )
    if name in ("NoCredentialsError", "PartialCredentialsError", "NoRegionError"):
        return f"{text}: the AWS connection (AWS_CONN_ID, default aws_default) gives no usable credentials"
    operation = getattr(err, "operation_name", "")
    if aws_error_code(err) is not None and operation == "AssumeRole":
        return (
            f"assuming ROLE_ARN was refused ({aws_error_code(err)}): check ROLE_ARN and ROLE_EXTERNAL_ID in the "
            f"clusters file and the role's trust policy ({text})"
        )
    return text


def expected(err: BaseException) -> bool:
    """Whether ``err`` is a failure of the outside world that :func:`explain` describes (the CLI
    prints it as one line) rather than a defect (a traceback)."""
    from finout_provider.s3.store import S3AccessError

    return is_permanent(err) or isinstance(err, PrometheusError | S3AccessError) or aws_error_code(err) is not None


@contextmanager
def failing_at_once(where: str) -> Iterator[None]:
    """Turn a failure a retry cannot fix into Airflow's "fail without retrying"."""
    try:
        yield
    except Exception as err:
        if not is_permanent(err) or type(err).__name__ == "AirflowFailException":
            raise
        from finout_provider.compat import AirflowFailException

        raise AirflowFailException(f"{where}: {explain(err)} ({RETRY_CANNOT_FIX})") from err


def failing_fast(method: F) -> F:
    """A task method under the policy: a failure a retry cannot fix fails the task at once, naming
    the cluster and the task."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        target = getattr(self, "target", None)
        where = f"cluster {getattr(target, 'cluster', '?')!r}: {getattr(self, 'task_id', type(self).__name__)}"
        with failing_at_once(where):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
