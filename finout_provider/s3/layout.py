"""The S3 key scheme of the Finout per-cluster export: build, parse and validate (pure, no I/O).

A key looks like::

    <S3_PREFIX>/<CLUSTER_NAME>/end=<YYYYMMDD>/day=<D>/metric=<NAME>/<START>_<NAME>.json.gz

``START`` is the window start in Unix seconds (UTC); ``end=`` is the first day of the month after
the start's month; ``day=`` is the start's day of the month, without zero padding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

CLUSTER_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,63}$")
METRIC_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,128}$")
# S3 bucket naming rules (general purpose buckets): 3-63 chars, lowercase, digits, dots, hyphens.
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
IP_LIKE_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
MAX_KEY_BYTES = 1024  # S3's limit on an object key, in UTF-8 bytes
PREFIX_SEGMENT_RE = re.compile(r"^[A-Za-z0-9!_.*'()=+,@-]+$")
SUFFIX = ".json.gz"

_KEY_TAIL_RE = re.compile(
    r"^end=(?P<end>\d{8})/day=(?P<day>[1-9]\d?)/metric=(?P<metric>[A-Za-z0-9_]+)/"
    r"(?P<start>\d+)_(?P<metric2>[A-Za-z0-9_]+)\.json\.gz$"
)


class LayoutError(ValueError):
    """A bucket, prefix, cluster or metric name that the S3 layout cannot hold."""


def normalize_prefix(prefix: str) -> str:
    """Return ``prefix`` without leading/trailing slashes; refuse empty, ``..`` or odd segments."""
    cleaned = prefix.strip().strip("/")
    if not cleaned:
        raise LayoutError("S3_PREFIX is empty: set a folder such as 'k8s/prometheus'")
    for segment in cleaned.split("/"):
        if segment in ("", ".", ".."):
            raise LayoutError(
                f"S3_PREFIX {prefix!r} has an empty, '.' or '..' segment: use plain folder names "
                "separated by single '/'"
            )
        if not PREFIX_SEGMENT_RE.match(segment):
            raise LayoutError(
                f"S3_PREFIX {prefix!r}: segment {segment!r} holds characters that are unsafe in S3 "
                "keys; use letters, digits and !_.*'()=+,@-"
            )
    return cleaned


def validate_bucket(bucket: str) -> str:
    """Return the bare bucket name or raise; ``s3://`` or a path is refused with the fix."""
    value = bucket.strip()
    if value.startswith("s3://") or "/" in value:
        bare = value.removeprefix("s3://").split("/", 1)[0]
        raise LayoutError(
            f"S3_BUCKET {bucket!r} must be a bare bucket name (no 's3://', no path): use {bare!r} "
            "and put any folder into S3_PREFIX"
        )
    if not BUCKET_RE.match(value) or any(pair in value for pair in ("..", ".-", "-.")):
        raise LayoutError(
            f"S3_BUCKET {bucket!r} is not a valid bucket name: 3-63 lowercase letters, digits, '.' and '-', "
            "starting and ending with a letter or digit, no '..', '.-' or '-.'"
        )
    if IP_LIKE_RE.match(value):
        raise LayoutError(f"S3_BUCKET {bucket!r} looks like an IP address, which S3 refuses as a bucket name")
    reserved = [p for p in RESERVED_BUCKET_PREFIXES if value.startswith(p)]
    reserved += [s for s in RESERVED_BUCKET_SUFFIXES if value.endswith(s)]
    if reserved:
        raise LayoutError(f"S3_BUCKET {bucket!r}: S3 reserves names with {reserved[0]!r} for its own use")
    return value


def validate_cluster_name(name: str) -> str:
    if not isinstance(name, str) or not CLUSTER_NAME_RE.match(name) or name in (".", ".."):
        raise LayoutError(
            f"CLUSTER_NAME {name!r} must be 1-63 characters of letters, digits, '.', '_' or '-' "
            "(it is used verbatim as a folder in S3 and in the DAG id)"
        )
    return name


def validate_metric_name(name: str) -> str:
    if not isinstance(name, str) or not METRIC_NAME_RE.match(name):
        raise LayoutError(
            f"metric name {name!r} must be 1-128 characters of letters, digits or '_' "
            "(it names the metric= folder and the file)"
        )
    return name


def _month_end(start: datetime) -> datetime:
    if start.month == 12:
        return datetime(start.year + 1, 1, 1, tzinfo=UTC)
    return datetime(start.year, start.month + 1, 1, tzinfo=UTC)


def cluster_root(prefix: str, cluster: str) -> str:
    """``<prefix>/<cluster>/``: everything of one cluster lives below it."""
    return f"{normalize_prefix(prefix)}/{validate_cluster_name(cluster)}/"


def day_folder(prefix: str, cluster: str, start: int) -> str:
    """``<prefix>/<cluster>/end=YYYYMMDD/day=D/`` of the window that starts at ``start``."""
    moment = datetime.fromtimestamp(start, UTC)
    return f"{cluster_root(prefix, cluster)}end={_month_end(moment):%Y%m%d}/day={moment.day}/"


def metric_folder(prefix: str, cluster: str, metric: str, start: int) -> str:
    return f"{day_folder(prefix, cluster, start)}metric={validate_metric_name(metric)}/"


def build_key(prefix: str, cluster: str, metric: str, start: int) -> str:
    """The object key of ``metric`` for the window starting at ``start`` (Unix seconds, UTC)."""
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise LayoutError(f"window start {start!r} must be a non-negative whole number of seconds")
    return f"{metric_folder(prefix, cluster, metric, start)}{start}_{metric}{SUFFIX}"


@dataclass(frozen=True)
class LayoutKey:
    """A key of the layout, taken apart."""

    prefix: str
    cluster: str
    metric: str
    start: int

    @property
    def key(self) -> str:
        return build_key(self.prefix, self.cluster, self.metric, self.start)


def parse_key(key: str, prefix: str, cluster: str) -> LayoutKey | None:
    """Parse ``key`` as a layout key of ``cluster`` under ``prefix``; ``None`` if it is not one.

    A key is only accepted if building it again from its parts gives the very same string, so
    near-misses (zero-padded days, a wrong ``end=``, mismatched metric names) are never taken for
    layout keys.
    """
    root = cluster_root(prefix, cluster)
    if not key.startswith(root):
        return None
    match = _KEY_TAIL_RE.match(key[len(root) :])
    if match is None or match["metric"] != match["metric2"]:
        return None
    start_text = match["start"]
    if start_text != str(int(start_text)):
        return None
    parsed = LayoutKey(normalize_prefix(prefix), cluster, match["metric"], int(start_text))
    return parsed if parsed.key == key else None


_DAY_FOLDER_RE = re.compile(r"end=(?P<end>\d{8})/day=(?P<day>[1-9]\d?)/$")


def day_of_folder(folder: str) -> int | None:
    """Midnight (Unix seconds) of a ``.../end=YYYYMMDD/day=D/`` folder; ``None`` if not one."""
    match = _DAY_FOLDER_RE.search(folder)
    if match is None:
        return None
    try:
        end = datetime.strptime(match["end"], "%Y%m%d").replace(tzinfo=UTC)
        month = datetime(end.year - (end.month == 1), (end.month - 2) % 12 + 1, 1, tzinfo=UTC)
        day = month.replace(day=int(match["day"]))
    except ValueError:
        return None
    if end.day != 1:
        return None
    return int(day.timestamp())


# A window start with the most digits and a two-digit day, for the longest key the layout builds.
_LONGEST_START = 4133894400  # 2100-12-31T00:00:00Z


def longest_key(prefix: str, cluster: str, metrics: Iterable[str]) -> str:
    """The longest key the layout builds for ``metrics`` (checked against S3's 1,024 bytes; metric
    names are ASCII, so the longest name gives the longest key)."""
    return build_key(prefix, cluster, max(metrics, key=len), _LONGEST_START)
