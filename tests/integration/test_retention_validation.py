"""Retention and validation against S3 (moto), with every request checked against the seed's policy."""

from __future__ import annotations

import gzip
import re
import time
from typing import Any

import pytest

from devtools.faults import SUCCESS
from finout_provider.catalogue import ExportSpec, select
from finout_provider.operators.retention import FinoutRetentionOperator
from finout_provider.plan.windows import DAY
from finout_provider.s3.folder import PROVEN
from finout_provider.s3.layout import build_key
from finout_provider.sensors.export import FinoutExportSensor
from finout_provider.target import S3Target
from tests.conftest import BUCKET, PREFIX

pytestmark = pytest.mark.integration
NOW = int(time.time())
H = 3600


def aligned(ts: int) -> int:
    return ts - ts % H


def record_requests(client: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every S3 call the client makes, with its parameters (a botocore event hook)."""
    seen: list[tuple[str, dict[str, Any]]] = []
    client.meta.events.register(
        "provide-client-params.s3.*", lambda params, model, **_: seen.append((model.name, dict(params)))
    )
    return seen


def assert_within_policy(seen: list[tuple[str, dict[str, Any]]]) -> None:
    assert seen
    for name, params in seen:
        if name == "ListObjectsV2":
            assert params.get("Delimiter") == "/", params
            assert params["Prefix"].startswith(PREFIX + "/"), params
        elif "Key" in params:
            assert params["Key"].startswith(PREFIX + "/"), params
        elif name == "DeleteObjects":
            assert all(o["Key"].startswith(PREFIX + "/") for o in params["Delete"]["Objects"])
        else:
            raise AssertionError(f"unexpected S3 call {name}")


def put(s3: Any, key: str) -> None:
    """An object as the export writes it: a whole answer, marked proven."""
    s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(SUCCESS), Metadata=PROVEN)


def test_retention_deletes_exactly_the_old_layout_keys_of_this_cluster(s3: Any) -> None:
    metrics = ["cpu_requests", "pod_labels"]
    old_starts = [aligned(NOW - 45 * DAY), aligned(NOW - 31 * DAY), aligned(NOW - 30 * DAY - 2 * H)]
    new_starts = [aligned(NOW - 30 * DAY + 2 * H), aligned(NOW - DAY), aligned(NOW - 2 * H)]
    old = [build_key(PREFIX, "prod-eu", m, s) for m in metrics for s in old_starts]
    new = [build_key(PREFIX, "prod-eu", m, s) for m in metrics for s in new_starts]
    foreign = [build_key(PREFIX, other, "cpu_requests", old_starts[0]) for other in ("prod-eu-2", "staging", "prod")]
    foreign += [build_key("other/prefix", "prod-eu", "cpu_requests", old_starts[0])]
    folder = build_key(PREFIX, "prod-eu", "cpu_requests", old_starts[0]).rsplit("/", 1)[0]
    foreign += [
        f"{folder}/notes.txt",
        f"{folder}/{old_starts[0]}_pod_labels.json.gz",  # wrong metric for its folder
        f"{folder}/0{old_starts[0]}_cpu_requests.json.gz",
        folder.replace("/day=", "/day=0") + f"/{old_starts[0]}_cpu_requests.json.gz",
        f"{PREFIX}/prod-eu/README",
        f"{PREFIX}/prod-eu/end=20200101/",
    ]
    for key in old + new + foreign:
        put(s3, key)

    op = FinoutRetentionOperator(task_id="retention", target=S3Target("prod-eu", BUCKET, PREFIX), retention_days=30)
    seen = record_requests(op.s3_hook.get_conn())
    dry = FinoutRetentionOperator(
        task_id="dry", target=S3Target("prod-eu", BUCKET, PREFIX), retention_days=30, dry_run=True
    )
    assert dry.execute({})["expired"] == len(old)
    assert _keys(s3) == sorted(old + new + foreign)

    summary = op.execute({})
    assert summary["deleted"] == len(old)
    assert _keys(s3) == sorted(new + foreign)
    assert_within_policy(seen)
    assert any(n == "DeleteObjects" for n, _ in seen)


def _keys(s3: Any) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_retention_deletes_in_batches_of_1000(s3: Any) -> None:
    start = aligned(NOW - 60 * DAY)
    keys = [build_key(PREFIX, "big", f"m{i:04d}", start) for i in range(1100)]
    for key in keys:
        put(s3, key)
    op = FinoutRetentionOperator(task_id="r", target=S3Target("big", BUCKET, PREFIX))
    seen = record_requests(op.s3_hook.get_conn())
    assert op.execute({})["deleted"] == 1100
    assert [len(p["Delete"]["Objects"]) for n, p in seen if n == "DeleteObjects"] == [1000, 100]
    assert _keys(s3) == []


def sensor(windows: list[Any], **kwargs: Any) -> FinoutExportSensor:
    return FinoutExportSensor(
        task_id="validate",
        target=S3Target("prod-eu", BUCKET, PREFIX),
        spec=ExportSpec(tuple(select(["cpu_requests", "pod_labels"]))),
        windows=windows,
        poke_interval=0.1,
        timeout=0.5,
        **kwargs,
    )


def test_validation_lists_what_is_missing_or_corrupt(s3: Any) -> None:
    from finout_provider.compat import AirflowSensorTimeout

    starts = [aligned(NOW - 3 * H), aligned(NOW - 2 * H)]
    windows = [{"window_start": s, "window_end": s + H} for s in starts]
    put(s3, build_key(PREFIX, "prod-eu", "cpu_requests", starts[0]))
    put(s3, build_key(PREFIX, "prod-eu", "pod_labels", starts[0]))
    put(s3, build_key(PREFIX, "prod-eu", "cpu_requests", starts[1]))
    s3.put_object(Bucket=BUCKET, Key=build_key(PREFIX, "prod-eu", "pod_labels", starts[1]), Body=b"x" * 100)
    check = sensor(windows)
    seen = record_requests(check.s3_hook.get_conn())
    with pytest.raises(AirflowSensorTimeout) as err:
        check.execute({})
    corrupt = f"s3://{BUCKET}/{build_key(PREFIX, 'prod-eu', 'pod_labels', starts[1])}"
    assert re.search(rf"not gzip \(.*\): {re.escape(corrupt)}", str(err.value)), err.value
    assert "1 expected objects are missing or corrupt" in str(err.value)
    assert_within_policy(seen)

    put(s3, build_key(PREFIX, "prod-eu", "pod_labels", starts[1]))
    assert sensor(windows).poke({}) is True
    s3.delete_object(Bucket=BUCKET, Key=build_key(PREFIX, "prod-eu", "cpu_requests", starts[0]))
    assert sensor(windows).problems() == [
        f"missing: s3://{BUCKET}/{build_key(PREFIX, 'prod-eu', 'cpu_requests', starts[0])}"
    ]


def test_trigger_reports_success_and_timeout(s3: Any) -> None:
    import asyncio

    from finout_provider.triggers.export import FinoutExportTrigger

    start = aligned(NOW - 3 * H)
    args = dict(
        target=S3Target("prod-eu", BUCKET, PREFIX).__dict__,
        starts=[start],
        metrics=["cpu_requests"],
        time_frame=H,
        poke_interval=0.05,
        timeout=0.2,
    )
    trigger = FinoutExportTrigger(**args)  # type: ignore[arg-type]
    path, kwargs = trigger.serialize()
    assert path == "finout_provider.triggers.export.FinoutExportTrigger" and kwargs == args

    async def first_event(t: FinoutExportTrigger) -> Any:
        async for event in t.run():
            return event.payload

    timeout = asyncio.run(first_event(trigger))
    assert timeout["status"] == "timeout" and "missing" in timeout["problems"][0]
    put(s3, build_key(PREFIX, "prod-eu", "cpu_requests", start))
    assert asyncio.run(first_event(FinoutExportTrigger(**args)))["status"] == "success"  # type: ignore[arg-type]
