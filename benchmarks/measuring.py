"""What measuring an answer costs (series, samples, expected samples, first and last sample: the
completeness figures every object carries), apart from validating it.

The same answer (2,000 series of 240 samples, compact as Prometheus writes it, about 12 MB) goes
through :class:`~finout_provider.prometheus.answer.AnswerCheck` in 1 MiB chunks, as an export streams it:
once as the export does, once with the measuring step replaced by nothing. Medians of 7.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from finout_provider.prometheus.answer import AnswerCheck

SERIES, SAMPLES, STEP = 2000, 240, 60
CHUNK = 1 << 20


def answer() -> bytes:
    series = []
    for n in range(SERIES):
        values = ",".join(f'[{1767225600 + i * STEP},"{(n * 7 + i) % 1000 / 7:.6f}"]' for i in range(SAMPLES))
        labels = f'"__name__":"kube_pod_container_resource_requests","namespace":"ns-{n % 40}","pod":"pod-{n}"'
        series.append(f'{{"metric":{{{labels}}},"values":[{values}]}}')
    return ('{"status":"success","data":{"resultType":"matrix","result":[' + ",".join(series) + "]}}").encode()


def _check(body: bytes, measured: bool) -> float:
    check = AnswerCheck(STEP)
    if not measured:
        check._measure = lambda match: None  # type: ignore[method-assign]
    started = time.process_time()
    for i in range(0, len(body), CHUNK):
        check.feed(body[i : i + CHUNK])
    check.finish()
    return time.process_time() - started


def measuring_overhead(repeats: int = 7) -> dict[str, Any]:
    body = answer()
    with_measures = statistics.median(_check(body, True) for _ in range(repeats))
    without = statistics.median(_check(body, False) for _ in range(repeats))
    return {"answer_mb": round(len(body) / 1e6, 1), "series": SERIES, "samples": SERIES * SAMPLES,
            "validate_and_measure_cpu_seconds": round(with_measures, 3), "validate_only_cpu_seconds": round(without, 3),
            "overhead_percent": round(100 * (with_measures - without) / without, 1)}  # fmt: skip
