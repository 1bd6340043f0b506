"""The clusters file's keys: one table (:data:`KEYS`) from which parsing, defaults, the hints of
errors and README's table all come (pure, no Airflow).

Keys are the official exporter's environment variable names (case-insensitive), so the ``env:``
block of Finout's CronJob can be pasted as a cluster entry. Values arrive as the text the user wrote
(:mod:`finout_provider.config.yamltext`) and each key's parser decides what the text means.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from finout_provider.checks.completeness import Thresholds
from finout_provider.config import exporter_env as env
from finout_provider.plan.windows import DAY, MAX_INITIAL_BACKFILL_DAYS
from finout_provider.s3.layout import LayoutError, normalize_prefix, validate_bucket, validate_cluster_name

DEFAULT_IMAGE = "finout/finout-metrics-exporter:2.0.3"
MODES = ("airflow", "kubernetes_pod")

_show = reprlib.Repr()
_show.maxstring, _show.maxother, _show.maxlist, _show.maxdict, _show.maxlevel = 60, 60, 4, 4, 2


class Invalid(ValueError):
    """A value its key cannot take; the message says what to write instead."""


# --- parsers: text as written -> value --------------------------------------------------------

Parser = Callable[[Any], Any]


def _text(value: Any) -> str:
    if isinstance(value, list | dict):
        raise Invalid(f"must be a single value, not {_show.repr(value)}")
    text = str(value).strip()
    if "\ufffd" in text:
        raise Invalid("holds bytes that are not UTF-8 text: save the clusters file as UTF-8")
    return text


def _whole(low: int, high: int) -> Parser:
    def parse(value: Any) -> int:
        text = _text(value)
        if not re.fullmatch(r"[+-]?\d+", text):
            raise Invalid(f"{_show.repr(text)} is not a whole number")
        if len(text.lstrip("+-0")) > 12 or not low <= int(text) <= high:
            raise Invalid(f"{_show.repr(text)} is out of range: use {low}..{high}")
        return int(text)

    return parse


def _seconds(high: float) -> Parser:
    def parse(value: Any) -> float:
        text = _text(value)
        if not re.fullmatch(r"\d{1,6}(\.\d{1,6})?", text) or float(text) > high:
            raise Invalid(f"{_show.repr(text)} is not a number of seconds in 0..{high:g}")
        return float(text)

    return parse


def _fraction(value: Any) -> float:
    text = _text(value)
    if not re.fullmatch(r"0?\.\d{1,4}|0|1(\.0*)?", text):
        raise Invalid(f"{_show.repr(text)} is not a fraction between 0 and 1 (e.g. 0.9)")
    return float(text)


def _hours(value: Any) -> float:
    text = _text(value).lower().removesuffix("h")
    if not re.fullmatch(r"\d{1,4}(\.\d{1,3})?", text) or not 0 < float(text) <= 24 * 90:
        raise Invalid(f"{_show.repr(text)} is not a number of hours in (0, 2160]")
    return float(text)


def _days(value: Any) -> int:
    text = _text(value).lower()
    if not re.fullmatch(r"\d+d?", text):
        raise Invalid(f"{_show.repr(text)} must be a number of days such as '3d' or 3")
    return int(_whole(0, 90)(text.removesuffix("d")))


def _date(value: Any) -> date:
    text = _text(value)
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise Invalid(f"{_show.repr(text)} must be a date in YYYY-MM-DD format") from None


def _choice(*options: str) -> Parser:
    def parse(value: Any) -> str:
        text = _text(value).lower()
        if text not in options:
            raise Invalid(f"{_show.repr(text)} must be one of {', '.join(options)}")
        return text

    return parse


_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def _bool(value: Any) -> bool:
    text = _text(value).lower()
    if text not in _BOOLEANS:
        raise Invalid(f"{_show.repr(text)} must be true or false")
    return _BOOLEANS[text]


def _layout(check: Callable[[str], str]) -> Parser:
    def parse(value: Any) -> str:
        try:
            return check(_text(value))
        except LayoutError as err:
            raise Invalid(str(err)) from None

    return parse


def _hostname(value: Any) -> str:
    text = _text(value)
    if "://" in text or "/" in text or " " in text:
        raise Invalid(
            f"{_show.repr(text)} must be a bare host name: put the scheme in SCHEME and any path in PATH_PREFIX"
        )
    if ":" in text and not re.fullmatch(r"\[?[0-9A-Fa-f:.]+\]?", text):
        raise Invalid(f"{_show.repr(text)} must be a bare host name: put the port in PORT")
    return text.strip("[]")


def _path_prefix(value: Any) -> str:
    text = _text(value).strip("/")
    if ".." in text.split("/") or re.search(r"[\s?#]", text):
        raise Invalid(f"{_show.repr(text)} must be a URL path without '..', spaces, '?' or '#'")
    return text


def _name(value: Any) -> str:
    text = _text(value)
    if not re.fullmatch(r"[\w.\-]{1,250}", text, re.ASCII):
        raise Invalid(f"{_show.repr(text)} is not an Airflow connection id (letters, digits, '_', '.', '-')")
    return text


def _label_name(value: Any) -> str:
    text = _text(value)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        raise Invalid(f"{_show.repr(text)} is not a Prometheus label name")
    return text


def _schedule(value: Any) -> str:
    text = _text(value)
    fields = text.split()
    if not text.startswith("@") and len(fields) != 5:
        raise Invalid(
            f"{_show.repr(text)} has {len(fields)} fields: Airflow's cron has 5 (minute hour day-of-month month "
            "day-of-week), no seconds; e.g. '0 * * * *'"
        )
    return text


def _names(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else _text(value).split(",")
    if not items or any(item is None or isinstance(item, list | dict) for item in items):
        raise Invalid(f"must be a list of catalogue metric names, not {_show.repr(value)}")
    return tuple(_text(item) for item in items)


def _queries(value: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list):
        raise Invalid(f"must be a list of {{name, query}} mappings, not {_show.repr(value)}")
    queries = []
    for item in value:
        if not isinstance(item, Mapping) or set(item) != {"name", "query"}:
            raise Invalid(f"entry {_show.repr(item)} must be a mapping with exactly 'name' and 'query'")
        if item["name"] is None or item["query"] is None or not _text(item["query"]):
            raise Invalid(f"entry {_show.repr(item)} needs a name and a non-empty query")
        queries.append({"name": _text(item["name"]), "query": _text(item["query"])})
    return tuple(queries)


# --- the table of keys -------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One key of the clusters file: how its text is read, its default and what it means.

    ``field`` is the :class:`ClusterConfig` attribute it fills (``None``: read by the cross-key
    rules only); ``shown`` is the default as README shows it when that is not the value itself.
    """

    name: str
    parse: Parser
    help: str
    default: Any = None
    shown: str | None = None
    field: str | None = ""
    secret: bool = False

    @property
    def attribute(self) -> str | None:
        return self.name.lower() if self.field == "" else self.field

    @property
    def exporter(self) -> bool:
        """Whether the official image reads it too."""
        return self.name in env.VARIABLES


KEYS: tuple[Key, ...] = (
    Key("CLUSTER_NAME", _layout(validate_cluster_name), "1-63 of letters, digits, `.`, `_`, `-`; the S3 folder and "
        "the DAG id", shown="required"),
    Key("S3_BUCKET", _layout(validate_bucket), "bare bucket name", shown="required"),
    Key("S3_PREFIX", _layout(normalize_prefix), "folder inside the bucket, e.g. `k8s/prometheus`", shown="required"),
    Key("ROLE_ARN", _text, "role assumed on top of the AWS connection for S3"),
    Key("ROLE_EXTERNAL_ID", _text, "external id of that role"),
    Key("S3_KMS_KEY_ID", _text, "KMS key (id, ARN or `alias/...`): uploads use SSE-KMS with it, as a bucket policy "
        "requiring `aws:kms` demands"),
    Key("SCHEME", _choice("http", "https"), "the Prometheus endpoint's scheme (or PROMETHEUS_CONN_ID)", "http"),
    Key("HOSTNAME", _hostname, "the Prometheus host, without scheme, port or path", "localhost"),
    Key("PORT", _whole(1, 65535), "the Prometheus port", 9090),
    Key("PATH_PREFIX", _path_prefix, "sub-path before `/api/v1`", ""),
    Key("PROMETHEUS_USERNAME", _text, "basic auth user; accepted for paste-compatibility: prefer a connection"),
    Key("PROMETHEUS_PASSWORD", _text, "basic auth password; masked and warned about: prefer a connection",
        secret=True),
    Key("PROMETHEUS_BEARER_AUTH_TOKEN", _text, "bearer token; masked and warned about: prefer a connection",
        secret=True),
    Key("PROMETHEUS_AUTH_TOKEN", _text, "the image's other name for PROMETHEUS_BEARER_AUTH_TOKEN", field=None,
        secret=True),
    Key("PROMETHEUS_X_SCOPE_ORGID", _text, "tenant (`X-Scope-OrgID`) of Mimir, Cortex or Thanos"),
    Key("TIME_FRAME", _whole(1, DAY), "window length in seconds; must divide a day", 3600),
    Key("BACKFILL_DAYS", _days, "history a scheduled run makes sure is in S3 (`3d` or `3`)", 3, shown="3d"),
    Key("INITIAL_BACKFILL_DATE", _date, f"`YYYY-MM-DD` start of the history, at most "
        f"{MAX_INITIAL_BACKFILL_DAYS} days back"),
    Key("QUERIES_BATCH_SIZE", _whole(1, 20), "queries in flight at once", 5),
    Key("QUERY_DELAY_SECONDS", _seconds(300), "pause between batches of queries", 5.0, shown="5"),
    Key("STEP_SECONDS", _whole(1, DAY), "query resolution; must divide TIME_FRAME", 60),
    Key("RETENTION_DAYS", _whole(1, 3650), "objects whose window started earlier are deleted; longer than "
        "BACKFILL_DAYS", 30),
    Key("SPLIT", _choice("auto", "off"), "`auto`: a window the server refuses as too heavy is queried in shorter "
        "pieces and joined; `off`: it fails", "auto"),
    Key("MIN_SPLIT_SECONDS", _whole(1, DAY), "shortest piece of a split window (never below STEP_SECONDS)", 60),
    Key("PROMETHEUS_CONN_ID", _name, "an Airflow connection of type `prometheus` instead of HOSTNAME/PORT/..."),
    Key("AWS_CONN_ID", _name, "the AWS connection for S3", "aws_default"),
    Key("SCHEDULE", _schedule, "cron (5 fields); each run exports the windows its interval closes",
        shown="from TIME_FRAME"),
    Key("CLUSTER_LABEL", _label_name, "label naming the cluster in a shared Prometheus; queries are narrowed to "
        "`<label>=\"<CLUSTER_NAME>\"`"),
    Key("MODE", _choice(*MODES), "`kubernetes_pod` runs the official image instead (keys below)", "airflow"),
    Key("METRICS", _names, "a subset of the catalogue's names", field=None, shown="whole catalogue"),
    Key("EXTRA_QUERIES", _queries, "a list of `{name, query}` added to the catalogue", (), field=None),
    Key("FRESHNESS_HOURS", _hours, "the newest complete window older than this fails the run's `check_freshness` task",
        shown="3 windows + settle time"),
    Key("PREFLIGHT", _bool, "check every query once before a run's exports (`false`: never; `true`: every run)",
        shown="first run"),
    Key("EXPECT_EMPTY", _names, "metrics that may come back empty without failing validation", field=None,
        shown="GPU and volume metrics"),
    Key("COMPLETENESS_MIN_SAMPLES", _fraction, "a window is incomplete when a metric has fewer samples than this "
        "share of what its series' lifetimes imply (a hole)", Thresholds.min_samples),
    Key("COMPLETENESS_MIN_SERIES", _fraction, "... or fewer series than this share of the windows before",
        Thresholds.min_series),
    Key("INCOMPLETE", _choice("warn", "fail"), "what a scheduled run's validation does on an incomplete window",
        "warn"),
    Key("IMAGE", _text, "MODE kubernetes_pod: the exporter image", DEFAULT_IMAGE),
    Key("NAMESPACE", _text, "MODE kubernetes_pod: the pod's namespace"),
    Key("KUBERNETES_CONN_ID", _name, "MODE kubernetes_pod: the Kubernetes connection", "kubernetes_default"),
    Key("K8S_SECRET_NAME", _text, "MODE kubernetes_pod: Secret holding the credentials",
        shown="finout-prometheus-<CLUSTER_NAME>"),
)  # fmt: skip
KEYS_BY_NAME = {key.name: key for key in KEYS}
KNOWN_KEYS = tuple(KEYS_BY_NAME)
NOT_IN_POD = (
    "S3_KMS_KEY_ID",
    "METRICS",
    "EXTRA_QUERIES",
    "CLUSTER_LABEL",
    "PROMETHEUS_CONN_ID",
    "PREFLIGHT",
    "SPLIT",
    "EXPECT_EMPTY",
)


def keys_table() -> str:
    """README's table of keys (a test keeps README equal to it)."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for key in KEYS:
        default = key.shown or ("—" if key.default in (None, "", ()) else f"`{key.default}`")
        rows.append(f"| {key.name} | {default} | {key.help} |")
    return "\n".join(rows)
