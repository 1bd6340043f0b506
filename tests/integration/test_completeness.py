"""Completeness against real Prometheus history where kube-state-metrics stopped for two hours:
the windows are exported whole, and flagged as incomplete where users look."""

from __future__ import annotations

import dataclasses
import gzip
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.faults import SUCCESS
from devtools.history import HistorySpec, PrometheusServer, build_tsdb
from finout_provider.catalogue import ExportSpec, select
from finout_provider.checks.status import cluster_status, incomplete_in
from finout_provider.hooks.s3 import FinoutS3Hook
from finout_provider.plan.windows import iso
from finout_provider.s3.folder import PROVEN
from finout_provider.s3.layout import build_key
from finout_provider.sensors.export import FinoutExportSensor
from finout_provider.target import S3Target
from tests.conftest import BUCKET, PREFIX, set_connection
from tests.integration.test_export import make_operator

pytestmark = pytest.mark.integration
H = 3600
METRICS = ["cpu_requests", "pod_info", "cpu_usage_v2"]


@pytest.fixture(scope="module")
def lossy(history: HistorySpec, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    """The suite's history, but prod-eu's kube-state-metrics down from 5 to 3 hours before its end."""
    outage = history.end - 5 * H
    spec = dataclasses.replace(history, outages=(("prod-eu", "kube_", outage, outage + 2 * H),))
    server = PrometheusServer(build_tsdb(spec, tmp_path_factory.mktemp("lossy"))).start()
    yield server, outage
    server.stop()


def export_all(conn_id: str, history: HistorySpec, clusters: tuple[str, ...], starts: list[int]) -> None:
    for cluster in clusters:
        for start in starts:
            make_operator(conn_id, start, start + H, metrics=select(METRICS), cluster_name=cluster).execute({})


SPEC = ExportSpec(tuple(select(METRICS)))


def status_of(cluster: str, history: HistorySpec) -> dict[str, Any]:
    now = history.end + 600
    return cluster_status(FinoutS3Hook().store, S3Target(cluster, BUCKET, PREFIX), SPEC, now, 8, 120, 3 * H).as_dict()


def test_an_outage_is_flagged_per_window_and_metric_and_clears_when_the_data_arrives(
    s3: Any, lossy: tuple[PrometheusServer, int], prometheus: PrometheusServer, history: HistorySpec,
    capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    server, outage = lossy
    set_connection("p_lossy", conn_type="prometheus", host="127.0.0.1", port=server.port)
    starts = list(range(history.end - 8 * H, history.end, H))
    export_all("p_lossy", history, ("prod-eu", "staging"), starts)

    prod = status_of("prod-eu", history)
    assert [entry["window"] for entry in prod["incomplete"]] == [iso(outage), iso(outage + H)], prod
    first, second = prod["incomplete"]
    assert first["metrics"] == second["metrics"] == ["cpu_requests", "pod_info"]
    # Prometheus carries the last sample 5 minutes into the outage (its lookback), then nothing.
    assert "cpu_requests: data only from" in first["reason"] and "(the windows before were full)" in first["reason"]
    assert "cpu_requests: no series (the window before had" in second["reason"]
    assert prod["state"] == "gaps" and prod["missing"] == [] and prod["corrupt"] == []
    healthy = status_of("staging", history)  # pod churn: pods start and stop inside windows
    assert healthy["incomplete"] == [] and healthy["empty"] == [] and healthy["state"] == "ok", healthy
    # The CLI's planner reads the same windows from S3's measures (no Airflow Variable at hand).
    flagged = incomplete_in(FinoutS3Hook().store, S3Target("prod-eu", BUCKET, PREFIX), SPEC)
    assert flagged(starts[0], history.end) == [outage, outage + H]
    assert incomplete_in(FinoutS3Hook().store, S3Target("staging", BUCKET, PREFIX), SPEC)(starts[0], history.end) == []

    run = [{"window_start": s, "window_end": s + H} for s in (outage, outage + H)]
    sensor = FinoutExportSensor(
        task_id="validate_export", target=S3Target("prod-eu", BUCKET, PREFIX), spec=SPEC, windows=run,
        poke_interval=0.1, timeout=5,
    )  # fmt: skip
    capfd.readouterr()
    sensor.execute({})  # type: ignore[arg-type]
    logged = "".join(capfd.readouterr())
    assert "2 windows were exported whole from a Prometheus that lacked data" in logged
    assert f"- {iso(outage + H)}: cpu_requests: no series" in logged
    from finout_provider.compat import AirflowFailException

    with pytest.raises(AirflowFailException, match="lacked data"):
        FinoutExportSensor(
            task_id="validate_export", target=S3Target("prod-eu", BUCKET, PREFIX), spec=SPEC, windows=run,
            poke_interval=0.1, timeout=5, on_incomplete="fail",
        ).execute({})  # type: ignore[arg-type]  # fmt: skip

    # The data arrives later (a remote-write backlog): the flagged windows are exported again.
    set_connection("p_whole", conn_type="prometheus", host="127.0.0.1", port=prometheus.port)
    export_all("p_whole", history, ("prod-eu",), [outage, outage + H])
    after = status_of("prod-eu", history)
    assert after["incomplete"] == [] and after["state"] == "ok", after
    assert flagged(starts[0], history.end) == []


def test_gap_repair_exports_flagged_windows_until_they_are_complete(
    s3: Any, variables: dict[str, str], history: HistorySpec
) -> None:
    """The validation's flags (an Airflow Variable) are what gap repair reads."""
    from finout_provider.plan.planner import Planner
    from finout_provider.state import FlaggedWindows

    now = history.end + 600
    starts = list(range(history.end - 24 * H, history.end, H))
    planner = Planner(FinoutS3Hook().store, S3Target("prod-eu", BUCKET, PREFIX), ExportSpec(select(["cpu_requests"])),
                      backfill_days=1)  # fmt: skip
    assert len(planner.gaps(now)) == 24  # nothing in S3 yet
    for start in starts:
        key = build_key(PREFIX, "prod-eu", "cpu_requests", start)
        s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(SUCCESS), Metadata=PROVEN)
    assert planner.gaps(now) == []
    log = logging.getLogger(__name__)
    flags = FlaggedWindows("prod-eu")
    flags.update([starts[5], starts[7]], {starts[5]: ["cpu_requests"], starts[7]: ["cpu_requests"]}, log)
    assert [w.start for w in planner.gaps(now)] == [starts[5], starts[7]]
    flags.update([starts[5]], {}, log)  # a later validation found it complete
    assert flags.load() == {starts[7]: ["cpu_requests"]}
    assert [w.start for w in planner.gaps(now)] == [starts[7]]
