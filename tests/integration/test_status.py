"""The fleet view: `finout-provider status` over real exports in the S3 server, the freshness task,
and export metrics received by a StatsD listener on loopback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from devtools.history import HistorySpec, PrometheusServer, build_tsdb
from devtools.s3server import S3Server
from finout_provider.catalogue import ExportSpec, select
from finout_provider.checks.coverage import COLOUR, COMPLETE, CORRUPT, MISSING, fleet_cell_box
from finout_provider.plan.windows import closed_before
from finout_provider.s3.layout import build_key
from finout_provider.target import S3Target
from finout_provider.transfers.prometheus_to_s3 import PrometheusToS3Operator
from tests.conftest import CLUSTERS, HOURS, ROOT, set_connection
from tests.integration.test_cli import cli

pytestmark = pytest.mark.integration
H = 3600
PREFIX = "k8s/prometheus"
METRICS = ["cpu_requests", "pod_labels"]
SPEC = ExportSpec(tuple(select(METRICS)))
FLEET = {"whole": [0, 1, 2, 3], "gap": [0, 1, 3], "stale": [0], "corrupt": [0, 1, 2, 3]}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """Data reaching an hour past the module's start. These tests' windows are the hours before
    now, whenever the session runs them; the session's history ends at the hour it began, so a
    long session would leave their newest window without data."""
    now = int(time.time())
    end = now - now % H + H
    spec = HistorySpec(clusters=CLUSTERS, start=end - HOURS * H, end=end, cluster_label="cluster")
    server = PrometheusServer(build_tsdb(spec, tmp_path_factory.mktemp("status-history"))).start()
    yield server
    server.stop()


def export(cluster: str, starts: list[int], bucket: str) -> None:
    for start in starts:
        PrometheusToS3Operator(
            task_id="x", target=S3Target(cluster, bucket, PREFIX), spec=SPEC, window_start=start,
            window_end=start + H, prometheus_conn_id="status_prom", query_delay_seconds=0,
        ).execute({})  # fmt: skip


@pytest.fixture
def fleet(
    tmp_path: Path, prometheus: PrometheusServer, s3_server: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(s3_server.connection()))  # restored after the test
    set_connection("status_prom", conn_type="prometheus", host="127.0.0.1", port=prometheus.port)
    end = closed_before(int(time.time()), 120, H)
    windows = [end - 4 * H + i * H for i in range(4)]
    for cluster, chosen in FLEET.items():
        export(cluster, [windows[i] for i in chosen], bucket)
    corrupt_key = build_key(PREFIX, "corrupt", "pod_labels", windows[2])
    s3_server.client().put_object(Bucket=bucket, Key=corrupt_key, Body=b"not gzip at all, " * 4)  # type: ignore[attr-defined]
    entries = [{"CLUSTER_NAME": c, "PROMETHEUS_CONN_ID": "status_prom", "METRICS": METRICS} for c in FLEET]
    entries[2]["FRESHNESS_HOURS"] = "2"
    path = tmp_path / "clusters.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"S3_BUCKET": bucket, "S3_PREFIX": PREFIX}, "clusters": entries}))
    return {"path": path, "windows": windows, "end": end}


def test_status_says_which_cluster_is_whole_gapped_stale_or_corrupt(fleet: dict[str, Any], tmp_path: Path) -> None:
    windows, path = fleet["windows"], str(fleet["path"])
    code, out, err = cli("status", "--clusters-file", path, "--hours", "4", "--json")
    assert code == 1, out + err
    rows = {row["cluster"]: row for row in json.loads(out)}
    assert json.loads(out)[0]["cluster"] == "stale"  # worst first
    assert rows["whole"]["state"] == "ok" and rows["whole"]["missing"] == []
    assert rows["gap"]["state"] == "gaps" and len(rows["gap"]["missing"]) == 1
    assert rows["gap"]["missing"][0] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(windows[2]))
    assert rows["stale"]["state"] == "stale" and rows["stale"]["freshness_limit_hours"] == 2
    assert rows["stale"]["newest_complete_window"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(windows[0]))
    assert rows["corrupt"]["state"] == "gaps" and len(rows["corrupt"]["corrupt"]) == 1
    assert "status: 4/4" in err

    code, out, _ = cli("status", "--clusters-file", path, "--hours", "4", "--cluster", "whole")
    assert code == 0 and "whole" in out and "1 ok" in out and "gap" not in out.split("\n\n")[0]

    png, html = tmp_path / "fleet.png", tmp_path / "fleet.html"
    cli("status", "--clusters-file", path, "--hours", "4", "--png", str(png), "--html", str(html))
    order = [row["cluster"] for row in json.loads(cli("status", "--clusters-file", path, "--hours", "4", "--json")[1])]
    expected = {c: [MISSING] * 4 for c in FLEET}
    for cluster, chosen in FLEET.items():
        for i in chosen:
            expected[cluster][i] = COMPLETE
    expected["corrupt"][2] = CORRUPT
    image = Image.open(png)
    for row, cluster in enumerate(order):
        for column, state in enumerate(expected[cluster]):
            left, top, right, bottom = fleet_cell_box(row, column)
            assert image.getpixel(((left + right) // 2, (top + bottom) // 2)) == COLOUR[state], (cluster, column)
    assert_html_grid(html, tmp_path)


def assert_html_grid(html: Path, folder: Path) -> None:
    """Headless Chromium opens the page; its screenshot shows the grid's colours."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (make system-deps installs it)"
    shot = folder / "shot.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={folder / 'profile'}", "--window-size=1000,600", f"--screenshot={shot}", html.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    colours = {pixel for _, pixel in Image.open(shot).convert("RGB").getcolors(1 << 20) or []}
    for state in (COMPLETE, MISSING, CORRUPT):
        assert COLOUR[state] in colours, state
    text = html.read_text()
    assert "<script" not in text and "http" not in text.split("<body>")[1]  # one self-contained file


def test_freshness_task_fails_on_a_stale_cluster_and_passes_on_a_fresh_one(fleet: dict[str, Any]) -> None:
    from finout_provider.compat import AirflowFailException
    from finout_provider.operators.freshness import FinoutFreshnessOperator

    bucket = yaml.safe_load(fleet["path"].read_text())["defaults"]["S3_BUCKET"]

    def check(cluster: str, hours: float) -> Any:
        return FinoutFreshnessOperator(
            task_id="check_freshness", target=S3Target(cluster, bucket, PREFIX), spec=SPEC,
            limit_seconds=int(hours * 3600),
        ).execute({})  # fmt: skip

    fresh = check("whole", 3.1)
    assert fresh["state"] != "stale" and fresh["age_hours"] < 3.1
    with pytest.raises(AirflowFailException, match=r"cluster 'stale': its newest complete window is .* older than"):
        check("stale", 2)


def test_export_metrics_reach_a_statsd_listener(prometheus: PrometheusServer, s3_server: S3Server, bucket: str) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(1)
    start = closed_before(int(time.time()), 120, H) - 2 * H
    script = f"""
import json, os
try:  # Airflow 3: a task process initialises Stats as the task runner does
    from airflow.sdk._shared.observability.metrics import stats
    from airflow.sdk.observability.metrics import stats_utils
    stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=True)
except ImportError:  # Airflow 2.11 configures Stats from [metrics] on first use
    pass
from finout_provider.catalogue import ExportSpec, select
from finout_provider.target import S3Target
from finout_provider.transfers.prometheus_to_s3 import PrometheusToS3Operator
PrometheusToS3Operator(task_id="x", target=S3Target("prod-eu", {bucket!r}, "k8s"), window_start={start},
    window_end={start + H}, spec=ExportSpec(select(["cpu_requests"])), prometheus_conn_id="p", cluster_label="cluster",
    query_delay_seconds=0).execute({{}})
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIRFLOW__METRICS__STATSD_ON": "True",
           "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1", "AIRFLOW__METRICS__STATSD_PORT": str(listener.getsockname()[1]),
           "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
           "AIRFLOW_CONN_P": json.dumps({"conn_type": "prometheus", "host": "127.0.0.1", "port": prometheus.port}),
           "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(s3_server.connection())}  # fmt: skip
    subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True, timeout=300)
    received = []
    while True:
        try:
            received.append(listener.recv(65536).decode())
        except TimeoutError:
            break
    lines = "\n".join(received)
    for name in ("bytes", "gzip_bytes", "series", "retries", "split_pieces"):
        assert f"airflow.finout.export.{name}.prod-eu.cpu_requests:" in lines, (name, lines)
    assert "airflow.finout.export.duration.prod-eu.cpu_requests:" in lines and "|ms" in lines
    series = next(line for line in lines.splitlines() if "export.series.prod-eu" in line)
    assert int(float(series.split(":")[1].split("|")[0])) > 0
