"""Property-based tests of the key scheme and retention's selection (hypothesis)."""

from __future__ import annotations

import os
import string
from datetime import UTC, datetime
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from finout_provider.s3.layout import build_key, day_folder, day_of_folder, parse_key

NAME = st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=63).filter(
    lambda n: n not in (".", "..")
)
METRIC = st.text(alphabet=string.ascii_letters + string.digits + "_", min_size=1, max_size=40)
SEGMENT = st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..")
)
PREFIX = st.lists(SEGMENT, min_size=1, max_size=4).map("/".join)
START = st.integers(min_value=0, max_value=4_102_444_800)  # up to 2100


@given(PREFIX, NAME, METRIC, START)
def test_build_then_parse_round_trips(prefix: str, cluster: str, metric: str, start: int) -> None:
    key = build_key(prefix, cluster, metric, start)
    parsed = parse_key(key, prefix, cluster)
    assert parsed is not None and (parsed.metric, parsed.start, parsed.key) == (metric, start, key)
    moment = datetime.fromtimestamp(start, UTC)
    assert f"/day={moment.day}/" in key and f"/{start}_{metric}.json.gz" in key
    assert day_of_folder(day_folder(prefix, cluster, start)) == start - start % 86400


@given(PREFIX, NAME, st.text(max_size=120))
def test_parse_accepts_only_keys_it_would_build(prefix: str, cluster: str, tail: str) -> None:
    key = f"{prefix}/{cluster}/{tail}"
    parsed = parse_key(key, prefix, cluster)
    assert parsed is None or parsed.key == key


@given(PREFIX, NAME, NAME, METRIC, START)
def test_keys_of_other_clusters_never_parse(prefix: str, cluster: str, other: str, metric: str, start: int) -> None:
    key = build_key(prefix, other, metric, start)
    assert (parse_key(key, prefix, cluster) is not None) == (other == cluster)


KEYS = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["k8s/prometheus", "other"]),
            st.sampled_from(["prod", "prod-2", "dev"]),
            st.sampled_from(["cpu_requests", "pod_labels"]),
            st.integers(1_700_000_000, 1_800_000_000),
        ).map(lambda t: build_key(*t)),
        st.text(alphabet=string.ascii_letters + string.digits + "/=._-", min_size=1, max_size=60).map(
            lambda s: "k8s/prometheus/prod/" + s
        ),
    ),
    max_size=40,
    unique=True,
)


@settings(max_examples=25, deadline=None)
@given(KEYS, st.integers(1_700_000_000, 1_800_000_000))
def test_retention_deletes_exactly_old_layout_keys_of_its_cluster(keys: list[str], cutoff: int) -> None:
    from moto import mock_aws

    from finout_provider.operators.retention import FinoutRetentionOperator
    from finout_provider.target import S3Target

    # moto's in-process S3, whatever aws_default an earlier test in this process pointed elsewhere
    environ = {k: v for k, v in os.environ.items() if k != "AIRFLOW_CONN_AWS_DEFAULT"}
    with mock.patch.dict(os.environ, environ, clear=True), mock_aws():
        import boto3

        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="prop-bucket")
        for key in keys:
            s3.put_object(Bucket="prop-bucket", Key=key, Body=b"x")
        op = FinoutRetentionOperator(task_id="r", target=S3Target("prod", "prop-bucket", "k8s/prometheus"))
        expired = set(op.expired_keys(cutoff))
    wanted = {
        k for k in keys if (parsed := parse_key(k, "k8s/prometheus", "prod")) is not None and parsed.start < cutoff
    }
    assert expired == wanted
