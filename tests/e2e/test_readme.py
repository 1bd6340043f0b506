"""README's "Use it on your Airflow", followed literally on Airflow 3.3, 2.11 and MWAA's 3.0.6: Airflow
and its providers installed first in a fresh virtualenv (as of the line's date), then the wheel
built from this clone, `finout-provider init`, connections made with `airflow connections add` (so
they live in the metadata database, not the environment), preflight, plan, `airflow dags
reserialize`, a trial `airflow dags test`, then the scheduler's first run: the BACKFILL_DAYS history
is complete in S3 although a trial run came first.

Packages come from uv's cache only (`--offline`): `make test` has installed them there already.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools import lines
from devtools.history import HistorySpec, PrometheusServer, build_tsdb, free_port, wait_http
from devtools.s3server import S3Server
from devtools.stack import ROOT, airflow_major, airflow_version

pytestmark = [
    pytest.mark.e2e,
    # Runs from the Airflow 3 suites; it builds the user's virtualenvs itself.
    pytest.mark.skipif(airflow_major() < 3, reason="builds its own virtualenvs"),
]
H = 3600
UV = lines.uv()
ON_3_0 = airflow_version().startswith("3.0.")
# The user's Airflow: the newest of each major version, as a working install of it holds it (from the
# newest Airflow 3 suite), and MWAA's 3.0.6 as its date had it (from that line's suite, beside).
LINES = {
    "3": pytest.param(lines.line("3"), marks=pytest.mark.skipif(ON_3_0, reason="the newest line's suite runs it")),
    "2": pytest.param(lines.line("af2"), marks=pytest.mark.skipif(ON_3_0, reason="the newest line's suite runs it")),
    "3.0": pytest.param(lines.line("3.0.6"), marks=pytest.mark.skipif(not ON_3_0, reason="the 3.0.6 suite runs it")),
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    source = tmp_path_factory.mktemp("src") / "clone"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv*", ".git", "benchmarks", "*.egg-info", "build"))
    subprocess.run([UV, "build", "--offline", "--wheel", "--out-dir", str(out), str(source)],
                   check=True, capture_output=True)  # fmt: skip
    return next(out.glob("airflow_provider_finout-*.whl"))


@pytest.fixture(scope="module")
def a_day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A small cluster's Prometheus holding 30 hours, more than BACKFILL_DAYS 1 needs."""
    end = int(time.time()) // H * H + H
    spec = HistorySpec(clusters=("prod-eu",), start=end - 30 * H, end=end, nodes=1, pods_per_node=3)
    server = PrometheusServer(build_tsdb(spec, tmp_path_factory.mktemp("day"))).start()
    yield server
    server.stop()


class User:
    """A shell in a fresh virtualenv with its own AIRFLOW_HOME, as a user's."""

    def __init__(self, folder: Path, line: lines.Line, wheel: Path) -> None:
        self.venv, self.home = folder / "venv", folder / "airflow"
        self.home.mkdir()
        python = str(self.venv / "bin" / "python")
        subprocess.run([UV, "venv", "-q", "-p", sys.executable, str(self.venv)], check=True)
        install = [UV, "pip", "install", "-q", "--offline", "-p", python]
        subprocess.run([*install, *line.resolve_args(), *line.image], check=True, capture_output=True)  # Airflow first
        subprocess.run([*install, str(wheel)], check=True, capture_output=True)  # then README's step 1
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FINOUT", "_AIRFLOW"))}
        self.env |= {
            "PATH": f"{self.venv / 'bin'}:{os.environ['PATH']}",
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        self.env.pop("VIRTUAL_ENV", None)
        self.processes: list[subprocess.Popen[bytes]] = []

    def run(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(command, shell=True, env=self.env, capture_output=True, text=True, timeout=600,
                                cwd=self.home, check=False)  # fmt: skip
        if check and result.returncode:
            raise AssertionError(f"{command} -> {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def start(self, command: str) -> None:
        log = (self.home / f"{command.split()[1]}.log").open("ab")
        self.processes.append(subprocess.Popen(command, shell=True, env=self.env, stdout=log, stderr=log,
                                               cwd=self.home, start_new_session=True))  # fmt: skip

    def stop(self) -> None:
        for process in self.processes:
            try:
                os.killpg(process.pid, 15)
                process.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(process.pid, 9)

    def logs(self) -> str:
        return "\n".join(f"==> {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.home.rglob("*.log"))


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("line", LINES.values(), ids=LINES.keys())
def test_readme_followed_literally(
    line: lines.Line, wheel: Path, a_day: PrometheusServer, s3_server: S3Server, tmp_path: Path
) -> None:
    user = User(tmp_path, line, wheel)
    bucket = f"readme-{line.name.replace('.', '-')}"
    s3_server.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    try:
        follow(user, bucket, a_day, s3_server, line)
    except BaseException:
        print(user.logs())
        raise
    finally:
        user.stop()


def follow(user: User, bucket: str, prometheus: PrometheusServer, s3: S3Server, line: lines.Line) -> None:
    user.run("airflow db migrate")
    dags = user.run("airflow config get-value core dags_folder").stdout.strip().splitlines()[-1]
    Path(dags).mkdir(parents=True, exist_ok=True)
    assert "wrote" in user.run(f'finout-provider init "{dags}"').stdout
    assert user.run(f'finout-provider init "{dags}"', check=False).returncode == 2  # never overwrites
    # The clusters file, edited by hand from the template.
    template = (Path(dags) / "clusters.yaml").read_text()
    edited = template.replace("S3_BUCKET: my-k8s-metrics", f"S3_BUCKET: {bucket}").replace(
        "clusters: []",
        "clusters:\n  - CLUSTER_NAME: prod-eu\n    PROMETHEUS_CONN_ID: prometheus_prod_eu\n    BACKFILL_DAYS: 1d\n"
        "    QUERY_DELAY_SECONDS: 0   # a test Prometheus needs no pause between batches\n"
        "    TIME_FRAME: 21600        # four windows a day: the history in a few task instances\n",
    )
    (Path(dags) / "clusters.yaml").write_text(edited)
    extra = json.dumps({"endpoint_url": s3.url, "region_name": "us-east-1"})
    user.run(f"airflow connections add aws_default --conn-type aws --conn-login testing --conn-password testing "
             f"--conn-extra '{extra}'")  # fmt: skip
    user.run(f"airflow connections add prometheus_prod_eu --conn-type prometheus --conn-host 127.0.0.1 "
             f"--conn-port {prometheus.port} --conn-schema http")  # fmt: skip

    preflight = user.run("finout-provider preflight --cluster prod-eu")
    assert "Preflight of cluster 'prod-eu'" in preflight.stdout and " 0 fail" in preflight.stdout
    planned = windows_planned(user.run("finout-provider plan --cluster prod-eu").stdout)
    assert planned in (4, 5)  # a day of 6-hour windows (and the newest, once it has closed)

    user.run("airflow dags reserialize")
    trial = user.run("airflow dags test finout_prometheus_prod-eu")
    assert trial.returncode == 0
    # The trial exported one window of the history; the scheduled run still brings the others.
    after_trial = user.run("finout-provider plan --cluster prod-eu")
    assert f"{planned - 1} windows missing or incomplete" in after_trial.stderr, after_trial.stderr

    scheduler_run(user, line)
    now = int(time.time())
    since = (now - 86400) // H * H
    coverage = user.run(f"finout-provider coverage --cluster prod-eu --from {since} --to {now // H * H} --deep",
                        check=False)  # fmt: skip
    assert coverage.returncode == 0 and " 0 missing" in coverage.stdout, coverage.stdout + coverage.stderr


def windows_planned(plan: str) -> int:
    match = re.search(r"exports (\d+) windows", plan)
    assert match, plan
    return int(match[1])


def scheduler_run(user: User, line: lines.Line) -> None:
    """Unpause and let the scheduler run the first scheduled run to its end."""
    if line.airflow.startswith("3"):
        port = free_port()
        user.env |= {
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        }
        user.start(f"airflow api-server --port {port} --host 127.0.0.1")
        user.start("airflow dag-processor")
        user.start("airflow scheduler --skip-serve-logs")
        wait_http(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=180)
    else:
        user.start("airflow scheduler --skip-serve-logs")
    deadline = time.monotonic() + 600
    # Airflow 2.11's DAG processor may store the DAG paused after an unpause raced its first sync
    # (SQLite): unpause until the metadata database says it is not paused.
    while user.run("airflow dags unpause finout_prometheus_prod-eu", check=False).returncode or _paused(user):
        assert time.monotonic() < deadline, "the DAG never reached the metadata database unpaused"
        time.sleep(5)
    while True:
        runs = _runs(user)
        scheduled = [r for r in runs if str(r.get("run_id", "")).startswith("scheduled__")]
        if scheduled and all(r["state"] == "success" for r in scheduled):
            return
        assert not [r for r in scheduled if r["state"] == "failed"], scheduled
        assert time.monotonic() < deadline, f"no successful scheduled run: {runs}"
        time.sleep(5)


def _paused(user: User) -> bool:
    out = user.run("airflow dags list -o json", check=False).stdout
    for line in reversed(out.splitlines()):
        if line.startswith("[{"):
            dag = next((d for d in json.loads(line) if d.get("dag_id") == "finout_prometheus_prod-eu"), {})
            return str(dag.get("is_paused", dag.get("paused", True))).lower() == "true"
    return True


def _runs(user: User) -> list[dict[str, Any]]:
    command = "airflow dags list-runs finout_prometheus_prod-eu -o json"
    if user.run("airflow version").stdout.strip().startswith("2."):
        command = "airflow dags list-runs -d finout_prometheus_prod-eu -o json"
    for line in reversed(user.run(command, check=False).stdout.splitlines()):
        if line.startswith("[{") or line.strip() == "[]":
            return list(json.loads(line))
    return []
