"""Manual runs' ranges checked against what the real Prometheus keeps, before anything is exported."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.history import PrometheusServer
from finout_provider.catalogue import ExportSpec, select
from finout_provider.hooks.prometheus import PrometheusHook
from finout_provider.operators.plan import PlanWindowsOperator
from finout_provider.target import S3Target
from tests.conftest import set_connection

pytestmark = pytest.mark.integration
H = 3600


@pytest.fixture
def short_memory(tmp_path: Path) -> Iterator[str]:
    """A Prometheus that keeps 12 hours."""
    server = PrometheusServer(tmp_path / "data", retention="12h").start()
    set_connection("prom_12h", conn_type="prometheus", host="127.0.0.1", port=server.port, schema="http")
    yield "prom_12h"
    server.stop()


def plan(conn_id: str, start: int, end: int) -> list[dict[str, int]]:
    operator = PlanWindowsOperator(
        task_id="plan_windows", target=S3Target("prod-eu", "finout-metrics", "k8s/prometheus"),
        spec=ExportSpec(select(["cpu_requests"])), prometheus_conn_id=conn_id, settle_seconds=0,
    )  # fmt: skip
    iso = lambda ts: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))  # noqa: E731
    return operator.execute({"params": {"start": iso(start), "end": iso(end)}})  # type: ignore[arg-type]


def test_manual_ranges_past_retention_or_in_the_future_are_refused(short_memory: str) -> None:
    from finout_provider.compat import AirflowFailException

    assert PrometheusHook(short_memory).get_conn().retention_seconds() == 12 * H
    now = int(time.time())
    hour = now - now % H
    with pytest.raises(AirflowFailException, match=r"cluster 'prod-eu': .* older than what Prometheus keeps"):
        plan(short_memory, hour - 2 * 86400, hour - 86400)
    with pytest.raises(AirflowFailException, match="is in the future"):
        plan(short_memory, hour - H, hour + 2 * H)
    with pytest.raises(AirflowFailException, match="must be after"):
        plan(short_memory, hour - H, hour - 2 * H)
    assert plan(short_memory, hour - 3 * H, hour - H) == [
        {"window_start": hour - 3 * H, "window_end": hour - 2 * H},
        {"window_start": hour - 2 * H, "window_end": hour - H},
    ]
