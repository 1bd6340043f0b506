"""The export against the real Prometheus and S3 (moto): layout, exact content, idempotence, errors."""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from devtools.faults import FaultServer, Seen, reply
from devtools.history import HistorySpec
from finout_provider.catalogue import CATALOGUE, ExportSpec, Metric, render
from finout_provider.hooks.prometheus import PrometheusHook
from finout_provider.s3.folder import PROVEN
from finout_provider.s3.layout import build_key
from finout_provider.s3.store import GzipSpool
from finout_provider.target import S3Target
from finout_provider.transfers.prometheus_to_s3 import PrometheusToS3Operator
from tests.conftest import BUCKET, PREFIX, set_connection

pytestmark = pytest.mark.integration


def as_metric(metric: Metric | Mapping[str, str]) -> Metric:
    """A test's own query (``{name, query}``) as the clusters file's EXTRA_QUERIES would make it."""
    return metric if isinstance(metric, Metric) else Metric(metric["name"], metric["query"], ("user-defined",))


def make_operator(
    conn_id: str,
    start: int,
    end: int,
    *,
    metrics: Sequence[Metric | Mapping[str, str]] = CATALOGUE,
    cluster_name: str = "prod-eu",
    s3_bucket: str = BUCKET,
    s3_prefix: str = PREFIX,
    s3_kms_key_id: str | None = None,
    step: int = 60,
    **kwargs: Any,
) -> PrometheusToS3Operator:
    """An export of window ``[start, end)`` built by hand, with what the DAG passes: one target, one spec."""
    target = S3Target(cluster_name, s3_bucket, s3_prefix, kms_key_id=s3_kms_key_id)
    spec = ExportSpec(tuple(as_metric(m) for m in metrics), time_frame=end - start, step=step)
    args: dict[str, Any] = {
        "task_id": "export",
        "target": target,
        "spec": spec,
        "window_start": start,
        "window_end": end,
        "prometheus_conn_id": conn_id,
        "query_delay_seconds": 0,
        "cluster_label": "cluster",
    } | kwargs
    return PrometheusToS3Operator(**args)


class PushedXCom:
    """A task instance's ``xcom_push``, recorded."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def read(s3: Any, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def all_keys(s3: Any) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_two_consecutive_windows_are_exact_and_complete(s3: Any, prom_conn: str, history: HistorySpec) -> None:
    first = history.start + 3600
    windows = [(first, first + 3600), (first + 3600, first + 7200)]
    for start, end in windows:
        summary = make_operator(prom_conn, start, end).execute({})
        assert summary["objects"] == len(CATALOGUE)

    expected = sorted(build_key(PREFIX, "prod-eu", m.name, s) for m in CATALOGUE for s, _ in windows)
    assert all_keys(s3) == expected

    hook = PrometheusHook(prom_conn).get_conn()
    nonempty = 0
    for metric in CATALOGUE:
        query = render(metric.query, "cluster", "prod-eu")
        stamps: list[set[float]] = []
        for start, end in windows:
            body = gzip.decompress(read(s3, build_key(PREFIX, "prod-eu", metric.name, start)))
            document = json.loads(body)
            assert document == hook.query_range(query, start, end - 60, 60)
            assert document["status"] == "success"
            for series in document["data"]["result"]:
                assert series["metric"].get("cluster") in (None, "prod-eu")
            stamps.append({t for s in document["data"]["result"] for t, _ in s["values"]})
        assert not stamps[0] & stamps[1], metric.name
        if metric.name == "node_cpu_capacity":
            # A series present all the time: every step of both windows is in exactly one file.
            assert stamps[0] | stamps[1] == set(range(first, first + 7200, 60))
        nonempty += bool(stamps[0])
    assert nonempty >= len(CATALOGUE) - 1  # everything but gpu/rare metrics has data


def test_awkward_label_values_survive(s3: Any, prom_conn: str, history: HistorySpec) -> None:
    start = history.start
    make_operator(prom_conn, start, start + 3600, metrics=[m for m in CATALOGUE if m.name == "pod_labels"]).execute({})
    document = json.loads(gzip.decompress(read(s3, build_key(PREFIX, "prod-eu", "pod_labels", start))))
    teams = {s["metric"].get("label_team") for s in document["data"]["result"]}
    assert {'the "core" team', "café-ops", "back\\slash"} <= teams


def test_same_window_twice_is_byte_identical(s3: Any, prom_conn: str, history: HistorySpec) -> None:
    start = history.start + 2 * 3600
    make_operator(prom_conn, start, start + 3600).execute({})
    first = {k: read(s3, k) for k in all_keys(s3)}
    make_operator(prom_conn, start, start + 3600).execute({})
    second = {k: read(s3, k) for k in all_keys(s3)}
    assert first == second
    header = next(iter(first.values()))[:10]
    assert header[:4] == b"\x1f\x8b\x08\x00" and header[4:8] == b"\x00\x00\x00\x00"  # no name, mtime 0


def test_without_cluster_label_the_placeholder_disappears(s3: Any, prom_conn: str, history: HistorySpec) -> None:
    start = history.start
    metric = next(m for m in CATALOGUE if m.name == "cpu_requests")
    make_operator(prom_conn, start, start + 3600, cluster_label=None, metrics=[metric]).execute({})
    document = json.loads(gzip.decompress(read(s3, build_key(PREFIX, "prod-eu", "cpu_requests", start))))
    assert document["data"]["result"]
    assert all(set(s["metric"]) == {"node", "namespace", "pod", "container"} for s in document["data"]["result"])


def big_spool(chunks: list[bytes]) -> GzipSpool:
    """A spooled object above the part size: it goes up in parts."""
    spool = GzipSpool()
    spool.write(iter(chunks))
    return spool


def test_multipart_upload_for_large_bodies(s3: Any, prom_conn: str, history: HistorySpec) -> None:
    from finout_provider.hooks.s3 import FinoutS3Hook

    chunks = [random.Random(i).randbytes(1 << 20) for i in range(20)]  # incompressible: 3 parts of 8 MiB
    with big_spool(chunks) as spool:
        upload = FinoutS3Hook("aws_default").store.put_file(spool, BUCKET, "k8s/prometheus/big.json.gz", PROVEN)
        written = spool.path.read_bytes()
    head = s3.head_object(Bucket=BUCKET, Key="k8s/prometheus/big.json.gz")
    body = read(s3, "k8s/prometheus/big.json.gz")
    assert head["ETag"].endswith('-3"') and head["Metadata"] == PROVEN  # in parts, with its metadata
    assert body == written and gzip.decompress(body) == b"".join(chunks)
    assert body[3] == 0 and body[4:8] == b"\0\0\0\0"  # a gzip without file name or time: equal data, equal bytes
    assert upload.raw_bytes == sum(map(len, chunks)) and upload.gzip_bytes == len(body)


# --- errors ---------------------------------------------------------------------------------


def test_bad_query_fails_naming_cluster_window_metric(s3: Any, prom_conn: str, history: HistorySpec) -> None:
    start = history.start
    bad = {"name": "broken", "query": "sum(rate(foo[1m]) by"}
    good = next(m for m in CATALOGUE if m.name == "node_info")
    op = make_operator(prom_conn, start, start + 3600, metrics=[good, bad])
    with pytest.raises(Exception) as err:
        op.execute({})
    message = str(err.value)
    assert "cluster 'prod-eu'" in message and op.window.label in message and "metric 'broken'" in message
    assert "bad_data" in message and "HTTP 400" in message
    keys = all_keys(s3)
    assert build_key(PREFIX, "prod-eu", "broken", start) not in keys
    assert build_key(PREFIX, "prod-eu", "node_info", start) in keys


def test_503_is_retried_then_fails_without_object(s3: Any, history: HistorySpec) -> None:
    def unavailable(seen: Seen, handler: Any) -> None:
        reply(handler, 503, b'{"status":"error","errorType":"unavailable","error":"overloaded"}', {"Retry-After": "0"})

    with FaultServer(unavailable) as server:
        set_connection("prom_503", conn_type="prometheus", host="127.0.0.1", port=server.port, extra={"max_retries": 2})
        op = make_operator("prom_503", history.start, history.start + 3600, metrics=[CATALOGUE[0]])
        with pytest.raises(Exception) as err:
            op.execute({})
    message = str(err.value)
    assert "HTTP 503" in message and "after 3 attempts" in message and "overloaded" in message
    assert "cluster 'prod-eu'" in message and "metric 'cpu_requests'" in message
    assert len(server.requests) == 3
    assert all_keys(s3) == []


def test_status_error_with_200_and_truncated_body_leave_no_object(s3: Any, history: HistorySpec) -> None:
    answers = iter(
        [
            b'{"status":"error","errorType":"execution","error":"boom"}',
            b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]',
        ]
    )

    def handler(seen: Seen, request: Any) -> None:
        reply(request, 200, next(answers, b"{}"))

    with FaultServer(handler) as server:
        set_connection("prom_bad", conn_type="prometheus", host="127.0.0.1", port=server.port, extra={"max_retries": 0})
        for _ in range(2):
            op = make_operator("prom_bad", history.start, history.start + 3600, metrics=[CATALOGUE[0]])
            with pytest.raises(Exception, match="metric 'cpu_requests'"):
                op.execute({})
    assert all_keys(s3) == []


def test_lineage_and_console_link_name_the_endpoint_queries_and_objects(
    s3: Any, prom_conn: str, history: HistorySpec
) -> None:
    start = history.start + 3600
    metrics = [m for m in CATALOGUE if m.name in ("cpu_requests", "pod_labels")]
    operator, ti = make_operator(prom_conn, start, start + 3600, metrics=metrics), PushedXCom()
    summary = operator.execute({"ti": ti})  # type: ignore[typeddict-item]
    lineage = operator.get_openlineage_facets_on_complete(None)
    port = PrometheusHook(prom_conn).get_conn().base_url.rsplit(":", 1)[1]
    assert {(d.namespace, d.name) for d in lineage.inputs} == {
        (f"http://127.0.0.1:{port}", "cpu_requests"),
        (f"http://127.0.0.1:{port}", "pod_labels"),
    }
    queries = {d.name: d.facets["documentation"].description for d in lineage.inputs}
    assert queries["pod_labels"] == 'kube_pod_labels{cluster="prod-eu"}'
    assert sorted((d.namespace, d.name) for d in lineage.outputs) == [(f"s3://{BUCKET}", k) for k in summary["keys"]]

    from finout_provider.compat import AIRFLOW_VERSION

    link = operator.operator_extra_links[0]
    day = build_key(PREFIX, "prod-eu", "cpu_requests", start).split("metric=")[0]
    url = f"https://s3.console.aws.amazon.com/s3/buckets/{BUCKET}?prefix={day}&showversions=false"
    assert link.get_link(operator, ti_key=None) == url and link.name == "S3 export"  # Airflow 3 asks the task
    assert ti.pushed == ({link.key: url} if AIRFLOW_VERSION.major < 3 else {})  # Airflow 2's web server reads XCom


def test_a_window_empty_for_every_metric_fails_validation_with_the_diagnosis(
    s3: Any, prom_conn: str, history: HistorySpec
) -> None:
    """A CLUSTER_NAME the Prometheus does not hold: every answer is empty, so Finout would get files
    with nothing in them. The export says so with preflight's reasons and validation fails; the same
    window of a cluster the Prometheus holds passes."""
    from finout_provider.compat import AirflowFailException
    from finout_provider.sensors.export import FinoutExportSensor

    start = history.start + 3600
    empty = make_operator(prom_conn, start, start + 3600, cluster_name="nobody").execute({})
    assert empty["all_empty"] and set(empty["series"].values()) == {0}
    assert any("no series has cluster='nobody'" in line for line in empty["diagnosis"]), empty["diagnosis"]
    healthy = make_operator(prom_conn, start, start + 3600).execute({})
    assert "all_empty" not in healthy and healthy["series"]["cpu_requests"] > 0

    def validate(cluster: str, exports: list[dict[str, Any]]) -> Any:
        return FinoutExportSensor(
            task_id="validate", target=S3Target(cluster, BUCKET, PREFIX), spec=ExportSpec(), windows=[start],
            exports=exports, timeout=5, poke_interval=1, deferrable=False,
        ).execute({})  # fmt: skip

    with pytest.raises(AirflowFailException, match=r"(?s)cluster 'nobody': 1 windows .* came back empty.*no series"):
        validate("nobody", [empty])
    validate("prod-eu", [healthy])
    older = {**empty, "window_start": start - 3600, "window_end": start}  # before the data begins: logged
    validate("prod-eu", [older, healthy])


KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def test_sse_kms_key_reaches_single_and_multipart_uploads(s3: Any, prom_conn: str, history: HistorySpec) -> None:
    """A bucket whose policy requires `s3:x-amz-server-side-encryption = aws:kms` with a given key
    accepts only uploads that carry both headers: S3 (moto) records what each upload sent."""
    from finout_provider.config.clusters import parse_document
    from finout_provider.dag_factory import build_dag
    from finout_provider.hooks.s3 import FinoutS3Hook

    entry = {"CLUSTER_NAME": "prod-eu", "S3_BUCKET": BUCKET, "S3_PREFIX": PREFIX, "S3_KMS_KEY_ID": KMS_KEY}
    dag = build_dag(parse_document({"clusters": [entry]}).clusters[0])
    assert {dag.get_task(t).target.kms_key_id for t in ("plan_windows", "validate_export")} == {KMS_KEY}  # type: ignore[attr-defined]
    assert dag.get_task("export_window").partial_kwargs["target"].kms_key_id == KMS_KEY  # type: ignore[attr-defined]

    start = history.start
    metric = next(m for m in CATALOGUE if m.name == "cpu_requests")
    make_operator(prom_conn, start, start + 3600, metrics=[metric], s3_kms_key_id=KMS_KEY).execute({})
    head = s3.head_object(Bucket=BUCKET, Key=build_key(PREFIX, "prod-eu", "cpu_requests", start))
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", KMS_KEY)

    hook = FinoutS3Hook("aws_default", extra_args={"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KMS_KEY})
    with big_spool([random.Random(i).randbytes(1 << 20) for i in range(20)]) as spool:
        hook.store.put_file(spool, BUCKET, "k8s/prometheus/kms-big.json.gz", PROVEN)
    head = s3.head_object(Bucket=BUCKET, Key="k8s/prometheus/kms-big.json.gz")
    assert head["ETag"].endswith('-3"')  # it went up in parts
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", KMS_KEY)

    make_operator(prom_conn, start + 3600, start + 7200, metrics=[metric]).execute({})
    head = s3.head_object(Bucket=BUCKET, Key=build_key(PREFIX, "prod-eu", "cpu_requests", start + 3600))
    assert head.get("ServerSideEncryption") != "aws:kms"  # without the key, as before
    with pytest.raises(ValueError, match="ContentType"):
        FinoutS3Hook("aws_default", extra_args={"ContentType": "text/plain"}).store  # noqa: B018


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"region_name": "eu-west-1"}, "https://s3.console.aws.amazon.com/s3/buckets/{bucket}?prefix={day}"),
        ({"endpoint_url": "https://s3.eu-west-1.amazonaws.com"}, "https://s3.console.aws.amazon.com/s3/buckets/"),
        ({"endpoint_url": "http://minio.internal:9000/"}, "http://minio.internal:9000/{bucket}?list-type=2"),
        ({"service_config": {"s3": {"endpoint_url": "https://ceph.example:7480"}}}, "https://ceph.example:7480/"),
        ({"endpoint_url": "http://user:secret@minio.internal:9000"}, "http://minio.internal:9000/{bucket}?"),
    ],
)
def test_the_extra_link_follows_the_aws_connection(extra: dict[str, Any], expected: str) -> None:
    """The AWS console for AWS; the endpoint's own listing of the day folder for MinIO or Ceph."""
    from finout_provider.links import S3ExportLink

    set_connection("aws_link", conn_type="aws", extra=extra)
    start = 1759622400
    operator = PrometheusToS3Operator(
        task_id="t", target=S3Target("prod-eu", BUCKET, PREFIX, "aws_link"), spec=ExportSpec(),
        prometheus_conn_id="p", window_start=start, window_end=start + 3600,
    )  # fmt: skip
    url = S3ExportLink().get_link(operator, ti_key=None)
    day = build_key(PREFIX, "prod-eu", "cpu_requests", start).split("metric=")[0]
    assert url.startswith(expected.format(bucket=BUCKET, day=day)), url
    assert "secret" not in url and "user" not in url
    if "list-type" in url:
        assert url.endswith("prefix=" + day.replace("/", "%2F").replace("=", "%3D"))
