"""`finout-provider` commands against the real Prometheus and the S3 server on loopback."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.history import HistorySpec, PrometheusServer
from devtools.s3server import S3Server
from finout_provider.catalogue import ExportSpec, select
from finout_provider.checks.coverage import COLOUR, COMPLETE, CORRUPT, MISSING, PARTIAL, Coverage
from finout_provider.cli import main
from finout_provider.plan.windows import DAY, Window, iso
from finout_provider.s3.layout import build_key
from finout_provider.target import S3Target
from finout_provider.transfers.prometheus_to_s3 import PrometheusToS3Operator
from tests.conftest import ROOT, set_connection

pytestmark = pytest.mark.integration
H = 3600
PREFIX = "k8s/prometheus"
METRICS = ["cpu_requests", "pod_labels"]


def clusters_file(tmp_path: Path, prometheus: PrometheusServer, bucket: str, **extra: Any) -> Path:
    entry = {
        "CLUSTER_NAME": "prod-eu",
        "HOSTNAME": "127.0.0.1",
        "PORT": prometheus.port,
        "CLUSTER_LABEL": "cluster",
        "METRICS": METRICS,
        "QUERY_DELAY_SECONDS": 0,
        **extra,
    }
    path = tmp_path / "clusters.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"S3_BUCKET": bucket, "S3_PREFIX": PREFIX}, "clusters": [entry]}))
    return path


def coverage_args(path: Path, start: int, end: int) -> list[str]:
    """``finout-provider coverage`` of prod-eu over ``[start, end)``."""
    return ["coverage", "--cluster", "prod-eu", "--clusters-file", str(path), "--from", str(start), "--to", str(end)]


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def aws(s3_server: S3Server) -> None:
    set_connection("aws_default", **s3_server.connection())


def export(prometheus: PrometheusServer, bucket: str, starts: list[int]) -> None:
    """Export ``starts`` (one-hour windows) with the real operator."""
    set_connection("cli_prom", conn_type="prometheus", host="127.0.0.1", port=prometheus.port, schema="http")
    for start in starts:
        PrometheusToS3Operator(
            task_id="export", target=S3Target("prod-eu", bucket, PREFIX), spec=ExportSpec(tuple(select(METRICS))),
            window_start=start, window_end=start + H, prometheus_conn_id="cli_prom", cluster_label="cluster",
            query_delay_seconds=0,
        ).execute({})  # fmt: skip


def test_preflight_command_reports_and_sets_the_exit_code(
    tmp_path: Path, prometheus: PrometheusServer, history: HistorySpec, bucket: str
) -> None:
    at = str(history.end - H)
    good = clusters_file(tmp_path, prometheus, bucket)
    code, out, err = cli("preflight", "--cluster", "prod-eu", "--clusters-file", str(good), "--at", at)
    assert code == 0, out + err
    assert "cpu_requests" in out and "pod_labels" in out and "0 fail" in out
    assert "preflight: 2/2 pod_labels" in err  # progress
    wrong = clusters_file(tmp_path, prometheus, bucket, CLUSTER_LABEL="k8s_cluster")
    code, out, _ = cli("preflight", "--cluster", "prod-eu", "--clusters-file", str(wrong), "--at", at)
    assert code == 1
    assert "no series carries the label CLUSTER_LABEL='k8s_cluster'" in out
    code, _, err = cli("preflight", "--cluster", "nope", "--clusters-file", str(good))
    assert code == 2 and "has no cluster 'nope' (valid clusters: prod-eu)" in err


def test_coverage_table_and_png_show_the_gaps_a_test_made(
    tmp_path: Path, prometheus: PrometheusServer, history: HistorySpec, s3_server: S3Server, bucket: str, aws: None
) -> None:
    starts = [history.end - k * H for k in range(6, 0, -1)]
    export(prometheus, bucket, starts)
    client: Any = s3_server.client()
    gap, partial, corrupt = starts[1], starts[3], starts[4]
    for metric in METRICS:
        client.delete_object(Bucket=bucket, Key=build_key(PREFIX, "prod-eu", metric, gap))
    client.delete_object(Bucket=bucket, Key=build_key(PREFIX, "prod-eu", "pod_labels", partial))
    client.put_object(Bucket=bucket, Key=build_key(PREFIX, "prod-eu", "cpu_requests", corrupt), Body=b"{" * 100)
    path = clusters_file(tmp_path, prometheus, bucket)
    png = tmp_path / "coverage.png"
    code, out, err = cli(
        "coverage", "--cluster", "prod-eu", "--clusters-file", str(path),
        "--from", str(starts[0]), "--to", str(starts[-1] + H), "--png", str(png),
    )  # fmt: skip
    assert code == 1, out + err
    assert "3 complete, 1 partial, 1 missing, 1 corrupt" in out
    assert "pod_labels missing" in out and "cpu_requests not gzip" in out
    assert "coverage: 1/" in err

    from PIL import Image

    image = Image.open(png)
    assert image.format == "PNG"
    states = {s: COMPLETE for s in starts} | {gap: MISSING, partial: PARTIAL, corrupt: CORRUPT}
    days = sorted({s - s % DAY for s in starts})
    for start, state in states.items():
        left, top, right, bottom = Coverage.cell_box(days.index(start - start % DAY), (start % DAY) // H)
        assert image.getpixel(((left + right) // 2, (top + bottom) // 2)) == COLOUR[state], start


def test_plan_command_first_run_then_gaps(
    tmp_path: Path, prometheus: PrometheusServer, history: HistorySpec, s3_server: S3Server, bucket: str, aws: None
) -> None:
    path = clusters_file(tmp_path, prometheus, bucket, BACKFILL_DAYS=1)
    now = str(history.end + 600)
    code, out, err = cli("plan", "--cluster", "prod-eu", "--clusters-file", str(path), "--now", now)
    assert code == 0, err
    # The history is 8 hours: the 16 windows of the day before Prometheus' data begins are skipped.
    assert "exports 8 windows of 3600s x 2 metrics" in out and "nothing in S3 since" in err
    assert f"Prometheus' data begins in the window at {iso(history.start)}: the 16 windows before" in err
    exported = history.end - 2 * H
    export(prometheus, bucket, [exported])
    code, out, err = cli("plan", "--cluster", "prod-eu", "--clusters-file", str(path), "--now", now)
    assert code == 0, err
    # Gaps are looked for within the whole history (BACKFILL_DAYS 1), whatever S3 holds: every
    # window of the last day up to the newest closed one, except the exported window.
    first = history.end + 600 - DAY
    first -= first % H
    expected = [Window(s, s + H).label for s in range(max(first, history.start), history.end, H) if s != exported]
    windows, cost = out.split("Window cost")
    planned = [line.strip() for line in windows.splitlines()[1:] if line.startswith("  ")]
    assert planned == expected, out + err
    assert "--query.max-samples 50,000,000" in cost and "no metric needs splitting" in cost
    assert "23 windows missing or incomplete" in err


def test_module_entry_point_runs_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "finout_provider", "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert "import-cronjob" in result.stdout and "coverage" in result.stdout


def test_coverage_deep_reads_objects_whole(
    tmp_path: Path, prometheus: PrometheusServer, history: HistorySpec, s3_server: S3Server, bucket: str, aws: None
) -> None:
    starts = [history.end - 3 * H, history.end - 2 * H]
    export(prometheus, bucket, starts)
    client: Any = s3_server.client()
    key = build_key(PREFIX, "prod-eu", "cpu_requests", starts[1])
    whole = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=whole[: len(whole) // 2])  # gzip header intact, rest cut
    other = build_key(PREFIX, "prod-eu", "pod_labels", starts[0])
    client.put_object(Bucket=bucket, Key=other, Body=gzip.compress(b'{"status":"error","error":"x"}'))
    path = clusters_file(tmp_path, prometheus, bucket)
    args = coverage_args(path, starts[0], history.end - H)
    for deep in ((), ("--deep",)):  # objects the export did not mark as proven whole are read whole either way
        code, out, _ = cli(*args, *deep)
        assert code == 1 and "0 complete, 0 partial, 0 missing, 2 corrupt" in out, out
        assert "cpu_requests truncated gzip" in out and "pod_labels not a whole answer" in out


RUN_AND_SAY = """
import sys
from finout_provider.cli import main
code = main(sys.argv[1:])
print("airflow imported" if "airflow" in sys.modules else "no airflow", file=sys.stderr)
"""


def run_alone(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """A command in a process of its own (the test process has imported Airflow long ago)."""
    result = subprocess.run(
        [sys.executable, "-c", RUN_AND_SAY, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


def test_commands_need_no_airflow_when_the_connections_are_in_the_environment(
    tmp_path: Path, prometheus: PrometheusServer, history: HistorySpec, s3_server: S3Server, bucket: str
) -> None:
    import json
    import os

    export(prometheus, bucket, [history.end - 2 * H])
    path = clusters_file(tmp_path, prometheus, bucket, BACKFILL_DAYS=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(s3_server.connection())
    now = str(history.end + 600)
    commands = {
        "status": ["status", "--clusters-file", str(path), "--hours", "4"],
        "coverage": coverage_args(path, history.end - 3 * H, history.end),
        "plan": ["plan", "--cluster", "prod-eu", "--clusters-file", str(path), "--now", now],
    }
    for name, args in commands.items():
        code, out, err = run_alone(args, env)
        assert err.endswith("no airflow\n"), (name, err)
        assert code in (0, 1) and "prod-eu" in out + err, (name, out, err)
    assert "1 complete" in run_alone(commands["coverage"], env)[1]
    # An AWS connection the Amazon provider must interpret (here, botocore settings): Airflow's hook.
    conn = s3_server.connection()
    env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(conn | {"extra": {**conn["extra"], "config_kwargs": {}}})  # type: ignore[dict-item]
    code, out, err = run_alone(commands["coverage"], env)
    assert err.endswith("airflow imported\n") and "1 complete" in out, err
