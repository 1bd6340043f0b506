"""One measured export in a fresh process: prints JSON with seconds, bytes and peak RSS.

    python -m benchmarks.worker MODE PROM_URL S3_URL BUCKET START END STEP QUERIES_JSON

MODE is ``ours`` (PrometheusToS3Operator), ``limit`` (read bytes, gzip, one PUT) or ``obvious``
(requests + json.loads + json.dumps + gzip + put_object). All use QUERIES_BATCH_SIZE=5 threads.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

CONCURRENCY = 5


def rss_mb() -> float:
    """Resident memory now (VmRSS), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakSampler(threading.Thread):
    """Samples VmRSS every 5 ms: the peak during the export, not the process' lifetime peak."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = rss_mb()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.005):
            self.peak = max(self.peak, rss_mb())


def s3_client(url: str) -> Any:
    import boto3

    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def export_operator(bucket: str, start: int, end: int, step: int, queries: list[dict[str, str]]) -> Any:
    """The export operator of whichever checkout runs this (``BENCH_BEFORE_SOURCE`` may be an older one,
    whose operator took the S3 target and the metrics as loose arguments)."""
    from finout_provider.transfers.prometheus_to_s3 import PrometheusToS3Operator

    common = {"task_id": "bench", "window_start": start, "window_end": end, "prometheus_conn_id": "bench_prom",
              "queries_batch_size": CONCURRENCY, "query_delay_seconds": 0}  # fmt: skip
    try:
        from finout_provider.catalogue import ExportSpec, Metric
        from finout_provider.target import S3Target
    except ImportError:  # before the one target and spec
        return PrometheusToS3Operator(cluster_name="bench", s3_bucket=bucket, s3_prefix="bench/ours",
                                      aws_conn_id="bench_s3", metrics=queries, step_seconds=step, **common)  # fmt: skip
    spec = ExportSpec(tuple(Metric(q["name"], q["query"]) for q in queries), time_frame=end - start, step=step)
    return PrometheusToS3Operator(target=S3Target("bench", bucket, "bench/ours", "bench_s3"), spec=spec, **common)


def main() -> None:
    mode, prom, s3_url, bucket, start, end, step, queries_json = sys.argv[1:9]
    queries = json.loads(queries_json)
    start_i, end_i, step_i = int(start), int(end), int(step)
    params = {"start": str(start_i), "end": str(end_i - step_i), "step": str(step_i)}
    if mode == "ours":
        os.environ["AIRFLOW_CONN_BENCH_PROM"] = json.dumps({"conn_type": "prometheus", "host": prom})
        os.environ["AIRFLOW_CONN_BENCH_S3"] = json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": s3_url, "region_name": "us-east-1"},
            }
        )
        op = export_operator(bucket, start_i, end_i, step_i, queries)
        op._resolve_before_threads()  # connections resolved before timing
        op.s3_hook.get_conn()
        base = rss_mb()
        sampler = PeakSampler()
        sampler.start()
        began, cpu = time.perf_counter(), time.process_time()
        summary = op.execute({})
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
        raw = summary["raw_bytes"]
        split = summary["split"]
    else:
        import requests

        client = s3_client(s3_url)
        session = requests.Session()
        session.headers["Accept-Encoding"] = "identity"
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=CONCURRENCY)
        session.mount("http://", adapter)

        def limit(q: dict[str, str]) -> int:
            body = session.post(f"{prom}/api/v1/query_range", data={"query": q["query"], **params}).content
            compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
            packed = compressor.compress(body) + compressor.flush()
            client.put_object(Bucket=bucket, Key=f"bench/limit/{q['name']}.json.gz", Body=packed)
            return len(body)

        def obvious(q: dict[str, str]) -> int:
            response = session.post(f"{prom}/api/v1/query_range", data={"query": q["query"], **params})
            document = response.json()
            text = json.dumps(document).encode()
            client.put_object(Bucket=bucket, Key=f"bench/obvious/{q['name']}.json.gz", Body=gzip.compress(text))
            return len(response.content)

        work = limit if mode == "limit" else obvious
        base = rss_mb()
        sampler = PeakSampler()
        sampler.start()
        began, cpu = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            raw = sum(pool.map(work, queries))
        split = {}
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    sampler.done.set()
    sampler.join()
    peak = max(sampler.peak, rss_mb())
    print(
        json.dumps(
            {
                "mode": mode,
                "seconds": seconds,
                "cpu_seconds": cpu,
                "raw_bytes": raw,
                "peak_rss_mb": peak,
                "base_rss_mb": base,
                "growth_mb": peak - base,
                "split": split,
            }
        )
    )


if __name__ == "__main__":
    main()
