"""`make demo`: the main job end to end on this machine, then what landed in S3.

Generates a few hours of history for two clusters in one real Prometheus (central, with a
``cluster`` label), starts an S3 endpoint on loopback (moto server), points a throwaway Airflow
(SQLite) at both through connections, runs each cluster's DAG for the last hours and prints the
S3 layout as a tree with object counts and sizes, and the validation result.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from devtools.history import HistorySpec, PrometheusServer, build_tsdb
from devtools.s3server import S3Server
from devtools.stack import BIN, AirflowStack

CLUSTERS = ("demo-a", "demo-b")
BUCKET = "finout-demo"
PREFIX = "k8s/prometheus"
HOURS = 6
EXPORT_HOURS = 3


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def print_tree(objects: list[dict[str, Any]]) -> None:
    """``prefix/cluster/end=/day=/metric=`` as a tree, each folder with object count and size."""
    totals: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0])
    for obj in objects:
        parts = obj["Key"].split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            totals[tuple(parts[:depth])][0] += 1
            totals[tuple(parts[:depth])][1] += obj["Size"]
    print(f"s3://{BUCKET}/")
    for path in sorted(totals):
        count, size = totals[path]
        print(f"{'  ' * len(path)}{path[-1]}/  ({count} objects, {human(size)})")


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    now = int(time.time())
    end = now - now % 3600
    work = Path(tempfile.mkdtemp(prefix="finout-demo-"))
    prometheus = s3 = stack = None
    try:
        print(f"1/5 generating {HOURS}h of history for {', '.join(CLUSTERS)} and loading it with promtool")
        spec = HistorySpec(clusters=CLUSTERS, start=end - HOURS * 3600, end=end, cluster_label="cluster")
        prometheus = PrometheusServer(build_tsdb(spec, work)).start()
        print(f"2/5 Prometheus at {prometheus.url}; starting S3 (moto server) on loopback")
        s3 = S3Server().start()
        client: Any = s3.client()
        client.create_bucket(Bucket=BUCKET)
        stack = AirflowStack(
            clusters=[
                {"CLUSTER_NAME": c, "PROMETHEUS_CONN_ID": "prometheus_central", "CLUSTER_LABEL": "cluster"}
                for c in CLUSTERS
            ],
            defaults={"S3_BUCKET": BUCKET, "S3_PREFIX": PREFIX, "QUERY_DELAY_SECONDS": 0},
            connections={
                "prometheus_central": {"conn_type": "prometheus", "host": "127.0.0.1", "port": prometheus.port},
                "aws_default": s3.connection(),
            },
        )
        print(f"3/5 Airflow home {stack.home} (SQLite): migrating the metadata database")
        stack.migrate()
        start, stop = end - EXPORT_HOURS * 3600, end
        conf = json.dumps({"start": iso(start), "end": iso(stop)})
        for cluster in CLUSTERS:
            print(f"4/5 airflow dags test finout_prometheus_{cluster} with params {conf}")
            stack.airflow("dags", "test", f"finout_prometheus_{cluster}", "--conf", conf)
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        objects = [o for page in pages for o in page.get("Contents", [])]
        print(f"5/5 what landed ({len(objects)} objects):\n")
        print_tree(objects)

        import os

        from finout_provider.config.clusters import load_file
        from finout_provider.hooks.s3 import FinoutS3Hook
        from finout_provider.plan.windows import windows_between
        from finout_provider.s3.folder import ClusterFolder

        os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = stack.env["AIRFLOW_CONN_AWS_DEFAULT"]
        hook = FinoutS3Hook("aws_default")
        print()
        failed = False
        for config in load_file(stack.clusters_file).clusters:
            starts = [w.start for w in windows_between(start, stop, config.time_frame)]
            folder = ClusterFolder(hook, BUCKET, PREFIX, config.cluster_name)
            problems = folder.problems([m.name for m in config.metrics], starts, config.time_frame)
            status = "OK" if not problems else f"{len(problems)} problems: {problems[:3]}"
            failed |= bool(problems)
            print(f"validation {config.cluster_name}: {len(starts)} windows x {len(config.metrics)} metrics: {status}")
        command = ["finout-provider", "coverage", "--cluster", CLUSTERS[0], "--clusters-file", str(stack.clusters_file),
                   "--from", iso(start), "--to", iso(stop)]  # fmt: skip
        print(f"\n$ {' '.join(command)}")
        coverage = subprocess.run(
            [str(BIN / command[0]), *command[1:]],
            env=stack.env | {"AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"},
            capture_output=True,
            text=True,
            check=False,
        )
        print(coverage.stdout or coverage.stderr)
        return 1 if failed or coverage.returncode else 0
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        for item in (stack, s3, prometheus):
            if item is not None:
                item.cleanup() if isinstance(item, AirflowStack) else item.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
