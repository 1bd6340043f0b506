"""How soon ``finout-provider status``, ``plan`` and ``coverage`` answer for one cluster, from the
process' start to its exit (median of 5, each in a fresh process).

The cluster is the benchmark's Prometheus (3,000 pods); its bucket in the S3 server holds the last
day of exports (24 windows x every catalogue metric, marked whole). ``status`` also runs for a
second cluster with nothing in S3: its time is the start-up and the listings, without the HEAD per
object. Measured twice:

- the connections in the environment (``AIRFLOW_CONN_AWS_DEFAULT``, the Prometheus from
  HOSTNAME/PORT of the clusters file): the commands do not import Airflow;
- the AWS connection in Airflow's metadata database (``airflow connections add``, SQLite): the
  commands import Airflow to read it.

Target: <= 3 s with the connections in the environment. ``BENCH_CLI_SOURCE=/path/to/checkout``
times another version's commands (its ``finout_provider`` first on the path), for a before/after.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

from devtools.s3server import S3Server
from devtools.stack import AirflowStack
from finout_provider.catalogue import CATALOGUE_NAMES
from finout_provider.plan.windows import SETTLE_SECONDS, closed_before, iso
from finout_provider.s3.folder import PROVEN
from finout_provider.s3.layout import build_key

H = 3600
BUCKET = "finout-cli"
PREFIX = "k8s/prometheus"
RUNS = 5
BODY = gzip.compress(b'{"status":"success","data":{"resultType":"matrix","result":[]}}', mtime=0)


def commit_of(source: str | os.PathLike[str]) -> str:
    """The short commit of the checkout at ``source`` (its path, if git cannot tell)."""
    found = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, check=False).stdout.strip()  # fmt: skip
    return found or str(source)


def _fill(s3: S3Server, now: int) -> int:
    """The last day of exports of cluster ``bench``."""
    client: Any = s3.client()
    client.create_bucket(Bucket=BUCKET)
    end = closed_before(now, SETTLE_SECONDS, H)
    keys = [build_key(PREFIX, "bench", m, end - w * H) for m in CATALOGUE_NAMES for w in range(1, 25)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=BUCKET, Key=k, Body=BODY, Metadata=PROVEN), keys))
    return len(keys)


def _commands(clusters: Path, now: int, prometheus_now: int) -> dict[str, list[str]]:
    cluster = ["--cluster", "bench", "--clusters-file", str(clusters)]
    return {
        # A cluster with nothing in S3: start-up, the listings and no HEAD.
        "status_empty": ["status", "--cluster", "empty", "--clusters-file", str(clusters)],
        "status": ["status", *cluster],
        "plan": ["plan", *cluster, "--now", iso(prometheus_now)],
        "coverage": ["coverage", *cluster, "--from", iso(now - 25 * H), "--to", iso(now)],
    }


def _timed(args: list[str], env: dict[str, str], server: psutil.Process) -> dict[str, float]:
    """Wall time of one command, the CPU of its process, and the CPU the S3 server spent meanwhile
    (on these 2 cores, moto costs about 3.5 ms of CPU per request; a real S3 costs us none)."""
    started, cpu, served = time.perf_counter(), _children_cpu(), sum(server.cpu_times()[:2])
    result = subprocess.run(  # cwd: not the checkout, which `-m` would put first on the path
        [sys.executable, "-m", "finout_provider", *args], env=env, cwd=env["AIRFLOW_HOME"], capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if result.returncode not in (0, 1):
        raise RuntimeError(
            f"finout-provider {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return {"wall": wall, "cpu": _children_cpu() - cpu, "s3_cpu": sum(server.cpu_times()[:2]) - served}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _medians(commands: dict[str, list[str]], env: dict[str, str], s3: S3Server) -> dict[str, dict[str, float]]:
    server = psutil.Process(s3.process.pid)  # type: ignore[union-attr]
    medians: dict[str, dict[str, float]] = {}
    for name, args in commands.items():
        runs = [_timed(args, env, server) for _ in range(RUNS)]
        medians[name] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        medians[name]["max"] = max(r["wall"] for r in runs)
    return medians


def cli_times(prom_port: int, prometheus_now: int, s3: S3Server) -> dict[str, Any]:
    now = int(time.time())
    objects = _fill(s3, now)
    stack = AirflowStack(
        clusters=[
            {"CLUSTER_NAME": name, "HOSTNAME": "127.0.0.1", "PORT": prom_port, "BACKFILL_DAYS": 1}
            for name in ("bench", "empty")
        ],
        defaults={"S3_BUCKET": BUCKET, "S3_PREFIX": PREFIX},
        connections={"aws_default": s3.connection()},
        extra_env={"AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"},
    )
    source = os.environ.get("BENCH_CLI_SOURCE")
    env = stack.env | ({"PYTHONPATH": source} if source else {})
    label = f"commit {commit_of(source)}" if source else "this checkout"
    commands = _commands(stack.clusters_file, now, prometheus_now)
    try:
        from_env = _medians(commands, env, s3)
        stack.migrate()
        stack.airflow("connections", "add", "aws_default", "--conn-json", json.dumps(s3.connection()))
        from_db = _medians(commands, {k: v for k, v in env.items() if k != "AIRFLOW_CONN_AWS_DEFAULT"}, s3)
        imports = [_timed_import(env) for _ in range(RUNS)]
    finally:
        stack.cleanup()
    return {
        "objects": objects,
        "runs": RUNS,
        "source": label,
        "environment": from_env,
        "database": from_db,
        "airflow_import": statistics.median(imports),
    }


def _timed_import(env: dict[str, str]) -> float:
    """``import airflow`` alone, in a fresh process."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import airflow"], env=env, check=True, capture_output=True)
    return time.perf_counter() - started
