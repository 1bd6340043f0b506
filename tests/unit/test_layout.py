from __future__ import annotations

from datetime import UTC, datetime

import pytest

from finout_provider.s3.layout import (
    LayoutError,
    build_key,
    normalize_prefix,
    parse_key,
    validate_bucket,
    validate_cluster_name,
)


def ts(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())


def test_golden_key_from_the_seed() -> None:
    assert build_key("k8s/prometheus", "prod-cluster", "cpu_requests", 1759622400) == (
        "k8s/prometheus/prod-cluster/end=20251101/day=5/metric=cpu_requests/1759622400_cpu_requests.json.gz"
    )


@pytest.mark.parametrize(
    ("start", "end", "day"),
    [
        (ts(2025, 12, 31, 23), "20260101", "31"),  # year boundary
        (ts(2026, 1, 1, 0), "20260201", "1"),
        (ts(2024, 2, 29, 12), "20240301", "29"),  # leap day
        (ts(2025, 10, 31, 23), "20251101", "31"),
        (ts(2025, 11, 1, 0), "20251201", "1"),
        (ts(2025, 10, 9, 5), "20251101", "9"),  # no zero padding
    ],
)
def test_month_and_year_boundaries(start: int, end: str, day: str) -> None:
    key = build_key("p", "c", "m", start)
    assert key == f"p/c/end={end}/day={day}/metric=m/{start}_m.json.gz"


@pytest.mark.parametrize("prefix", ["/k8s/prometheus", "k8s/prometheus/", "//k8s/prometheus//", " k8s/prometheus "])
def test_stray_slashes_are_removed(prefix: str) -> None:
    assert normalize_prefix(prefix) == "k8s/prometheus"
    assert build_key(prefix, "c", "m", 0).startswith("k8s/prometheus/c/")


@pytest.mark.parametrize("prefix", ["", "/", "a//b", "a/../b", "..", "a/./b", "a b"])
def test_bad_prefixes(prefix: str) -> None:
    with pytest.raises(LayoutError):
        normalize_prefix(prefix)


@pytest.mark.parametrize("bucket", ["s3://my-bucket", "my-bucket/path", "My_Bucket", "ab", "a..b"])
def test_bad_buckets(bucket: str) -> None:
    with pytest.raises(LayoutError) as err:
        validate_bucket(bucket)
    assert "S3_BUCKET" in str(err.value)


def test_bucket_with_scheme_names_the_fix() -> None:
    with pytest.raises(LayoutError, match="use 'my-bucket'"):
        validate_bucket("s3://my-bucket/k8s")


@pytest.mark.parametrize("name", ["a/b", "a b", "..", ".", "", "x" * 64, "naïve"])
def test_bad_cluster_names(name: str) -> None:
    with pytest.raises(LayoutError):
        validate_cluster_name(name)


@pytest.mark.parametrize("name", ["prod-eu", "a.b_c-d", "x" * 63, "PROD"])
def test_good_cluster_names(name: str) -> None:
    assert validate_cluster_name(name) == name


def test_parse_round_trip() -> None:
    key = build_key("k8s/prometheus", "prod-cluster", "cpu_requests", 1759622400)
    parsed = parse_key(key, "k8s/prometheus", "prod-cluster")
    assert parsed is not None
    assert (parsed.metric, parsed.start, parsed.key) == ("cpu_requests", 1759622400, key)


@pytest.mark.parametrize(
    "key",
    [
        "k8s/prometheus/prod-cluster/end=20251101/day=05/metric=cpu_requests/1759622400_cpu_requests.json.gz",
        "k8s/prometheus/prod-cluster/end=20251201/day=5/metric=cpu_requests/1759622400_cpu_requests.json.gz",
        "k8s/prometheus/prod-cluster/end=20251101/day=5/metric=cpu_requests/1759622400_memory_usage.json.gz",
        "k8s/prometheus/prod-cluster/end=20251101/day=5/metric=cpu_requests/1759622400_cpu_requests.json",
        "k8s/prometheus/prod-cluster/end=20251101/day=5/metric=cpu_requests/01759622400_cpu_requests.json.gz",
        "k8s/prometheus/prod-cluster-2/end=20251101/day=5/metric=cpu_requests/1759622400_cpu_requests.json.gz",
        "k8s/prometheus/prod-cluster/end=20251101/day=5/metric=cpu_requests/notes.txt",
        "other/prod-cluster/end=20251101/day=5/metric=cpu_requests/1759622400_cpu_requests.json.gz",
    ],
)
def test_parse_rejects_near_misses(key: str) -> None:
    assert parse_key(key, "k8s/prometheus", "prod-cluster") is None
