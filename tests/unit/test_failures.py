"""The one list of failures a retry cannot fix."""

from __future__ import annotations

import pytest

from finout_provider.config.clusters import ConfigError
from finout_provider.failures import all_permanent, failing_at_once, is_permanent
from finout_provider.plan.windows import WindowError
from finout_provider.prometheus.errors import REFUSALS, HeavyQueryError, IncompleteBodyError, PrometheusError
from finout_provider.s3.store import S3AccessError


class AirflowNotFoundException(Exception):  # named as Airflow names it
    pass


@pytest.mark.parametrize(
    ("err", "permanent"),
    [
        (S3AccessError("no such bucket"), True),
        (S3AccessError("SlowDown", permanent=False), False),
        (PrometheusError("bad_data: parse error"), True),
        (HeavyQueryError("series limit", REFUSALS[0]), True),
        (PrometheusError("503", retryable=True), False),
        (IncompleteBodyError("cut"), False),
        (ConfigError("prod", "PORT", "bad port"), True),
        (WindowError("bad range"), True),
        (AirflowNotFoundException("The conn_id `x` isn't defined"), True),
        (ConnectionError("reset"), False),
        (RuntimeError("anything else"), False),
    ],
)
def test_which_failures_a_retry_cannot_fix(err: Exception, permanent: bool) -> None:
    assert is_permanent(err) is permanent


def test_failing_fast_turns_only_permanent_errors_into_a_failure_without_retries() -> None:
    from finout_provider.compat import AirflowFailException

    with (
        pytest.raises(AirflowFailException, match=r"plan: no such bucket .*failing without retrying"),
        failing_at_once("plan"),
    ):
        raise S3AccessError("no such bucket")
    with pytest.raises(PrometheusError), failing_at_once("plan"):
        raise PrometheusError("503", retryable=True)
    assert all_permanent([ConfigError("prod", "PORT", "x"), S3AccessError("y")]) and not all_permanent([])
    assert not all_permanent([ConfigError("prod", "PORT", "x"), IncompleteBodyError("cut")])
