"""The fleet page of a 100-cluster fleet, served by a real Airflow api-server from the S3 server.

Each cluster holds a day of exports (24 windows x 3 metrics, marked whole, as the export writes
them). The page is timed on its first request (statuses not read yet: it waits at most 1 s and
shows the rest as "reading S3..."), until every cluster's status is in memory, then warm (median of
5). Target: <= 2 s for 100 clusters.
"""

from __future__ import annotations

import gzip
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from devtools.history import free_port
from devtools.s3server import S3Server
from devtools.stack import AirflowStack, api_server_env
from finout_provider.s3.folder import PROVEN
from finout_provider.s3.layout import build_key

H = 3600
CLUSTERS = 100
METRICS = ["cpu_requests", "pod_info", "cpu_usage_v2"]
BUCKET = "finout-page"
PREFIX = "k8s/prometheus"
BODY = gzip.compress(b'{"status":"success","data":{"resultType":"matrix","result":[]}}', mtime=0)


def _fill(s3: S3Server, end: int) -> int:
    client: Any = s3.client()
    client.create_bucket(Bucket=BUCKET)
    keys = [build_key(PREFIX, f"fleet-{c:03d}", m, end - w * H) for c in range(CLUSTERS) for m in METRICS
            for w in range(1, 25)]  # fmt: skip
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=BUCKET, Key=k, Body=BODY, Metadata=PROVEN), keys))
    return len(keys)


def _timed(url: str) -> tuple[float, str]:
    started = time.perf_counter()
    response = requests.get(url, timeout=120)
    response.raise_for_status()
    return time.perf_counter() - started, response.text


def fleet_page_times(s3: S3Server) -> dict[str, Any]:
    now = int(time.time())
    objects = _fill(s3, now - now % H)
    port = free_port()
    clusters = [{"CLUSTER_NAME": f"fleet-{c:03d}", "HOSTNAME": "127.0.0.1"} for c in range(CLUSTERS)]
    stack = AirflowStack(clusters=clusters, defaults={"S3_BUCKET": BUCKET, "S3_PREFIX": PREFIX, "METRICS": METRICS},
                         connections={"aws_default": s3.connection()}, extra_env=api_server_env(port))  # fmt: skip
    try:
        stack.migrate()
        stack.airflow("dags", "reserialize")  # the DAGs the page may show (an admin reads them all)
        stack.start("api-server", "--port", str(port), "--host", "127.0.0.1", log_name="api-server")
        url = f"http://127.0.0.1:{port}/finout/"
        _wait_http(url)
        cold, page = _timed(url)
        pending = page.count("reading S3...")
        started = time.perf_counter()
        while "reading S3..." in page:
            time.sleep(0.5)
            page = _timed(url)[1]
        filled = time.perf_counter() - started + cold
        warm = [_timed(url)[0] for _ in range(5)]
        assert page.count('<tr class="') == CLUSTERS, page[:2000]
    finally:
        stack.cleanup()
    return {"clusters": CLUSTERS, "objects": objects, "cold_seconds": round(cold, 2), "pending_on_first": pending,
            "filled_seconds": round(filled, 1), "warm_median_seconds": round(statistics.median(warm), 3),
            "warm_max_seconds": round(max(warm), 3)}  # fmt: skip


def _wait_http(url: str, timeout: float = 180) -> None:
    """Until the api-server answers the page (its first answer may take a while: it builds the app)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url.replace("/finout/", "/api/v2/monitor/health"), timeout=5).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(1)
    raise TimeoutError(f"no api-server at {url}")
