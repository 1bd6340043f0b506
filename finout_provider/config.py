"""The clusters file: one table of keys -> :class:`ClusterConfig` (pure, no Airflow).

Keys are the official exporter's environment variable names (case-insensitive), so the ``env:``
block of Finout's CronJob can be pasted as a cluster entry. :data:`KEYS` is the one description of
every key: its parser, default, help text and README row all come from it. Values arrive as the
text the user wrote (:mod:`finout_provider.yamltext`) and each key's parser decides what the text
means. A bad entry yields one :class:`ConfigError` per bad key, naming the cluster, the key and
the fix; it never hides the other clusters.
"""

from __future__ import annotations

import difflib
import os
import re
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from finout_provider import exporter_env as env
from finout_provider.catalogue import CatalogueError, ExportSpec, Metric, expected_empty, select
from finout_provider.completeness import Thresholds
from finout_provider.layout import (
    MAX_KEY_BYTES,
    LayoutError,
    longest_key,
    normalize_prefix,
    validate_bucket,
    validate_cluster_name,
)
from finout_provider.target import S3Target
from finout_provider.windows import DAY, MAX_INITIAL_BACKFILL_DAYS, WindowError, check_frame
from finout_provider.yamltext import TextMap, YamlTextError
from finout_provider.yamltext import load as load_yaml

CLUSTERS_FILE_ENV = "FINOUT_CLUSTERS_FILE"
DEFAULT_IMAGE = "finout/finout-metrics-exporter:2.0.3"
MODES = ("airflow", "kubernetes_pod")
INLINE_CONN_PREFIX = "finout_prometheus_"
DAG_ID_PREFIX = "finout_prometheus_"

_show = reprlib.Repr()
_show.maxstring, _show.maxother, _show.maxlist, _show.maxdict, _show.maxlevel = 60, 60, 4, 4, 2


class Invalid(ValueError):
    """A value its key cannot take; the message says what to write instead."""


class ConfigError(ValueError):
    """One problem with one cluster entry: which cluster, which key, what to do (and where)."""

    def __init__(self, cluster: str, key: str | None, message: str, line: int | None = None) -> None:
        self.cluster = cluster
        self.key = key
        self.message = message
        self.line = line
        where = f"cluster {cluster!r}" + (f", key {key}" if key else "")
        super().__init__(f"{where}: {message}" + (f" (line {line})" if line else ""))


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


@dataclass(frozen=True)
class ClusterConfig:
    """One cluster's validated settings: one attribute per key of :data:`KEYS` (lower-cased)."""

    cluster_name: str
    s3_bucket: str
    s3_prefix: str
    role_arn: str | None
    role_external_id: str | None
    s3_kms_key_id: str | None
    scheme: str
    hostname: str
    port: int
    path_prefix: str
    prometheus_username: str | None
    prometheus_password: str | None = field(repr=False)
    prometheus_bearer_auth_token: str | None = field(repr=False)
    prometheus_x_scope_orgid: str | None
    time_frame: int
    backfill_days: int
    initial_backfill_date: date | None
    queries_batch_size: int
    query_delay_seconds: float
    step_seconds: int
    retention_days: int
    split: str
    min_split_seconds: int
    prometheus_conn_id: str | None
    aws_conn_id: str
    schedule: str | None
    cluster_label: str | None
    mode: str
    freshness_hours: float | None
    preflight: bool | None
    completeness_min_samples: float
    completeness_min_series: float
    incomplete: str
    image: str
    namespace: str | None
    kubernetes_conn_id: str
    k8s_secret_name: str | None
    metrics: tuple[Metric, ...]
    expect_empty: frozenset[str]
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def dag_id(self) -> str:
        return f"{DAG_ID_PREFIX}{self.cluster_name}"

    @cached_property
    def target(self) -> S3Target:
        """Where the cluster's export lands: the one value every task, the CLI and the page get."""
        return S3Target(self.cluster_name, self.s3_bucket, self.s3_prefix, self.aws_conn_id, self.role_arn,
                        self.role_external_id, self.s3_kms_key_id)  # fmt: skip

    @cached_property
    def spec(self) -> ExportSpec:
        """What the cluster exports and how its windows are judged (with :attr:`target`)."""
        thresholds = Thresholds(self.completeness_min_samples, self.completeness_min_series)
        return ExportSpec(self.metrics, self.time_frame, self.step_seconds, self.expect_empty, thresholds)

    @property
    def effective_conn_id(self) -> str:
        """The Airflow connection the hook reads: the configured one or the file-defined one."""
        return self.prometheus_conn_id or f"{INLINE_CONN_PREFIX}{self.cluster_name}"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values of the keys marked secret in :data:`KEYS` (masked in logs)."""
        values = (getattr(self, key.attribute) for key in KEYS if key.secret and key.attribute)
        return tuple(value for value in values if value)

    def setting(self, key: str) -> Any:
        """The value of a key of :data:`KEYS` by its name."""
        return getattr(self, key.lower())

    def inline_connection(self) -> dict[str, Any] | None:
        """The connection described by HOSTNAME/PORT/... when no PROMETHEUS_CONN_ID is given
        (Airflow's JSON connection format, as ``AIRFLOW_CONN_<ID>`` holds it)."""
        if self.prometheus_conn_id:
            return None
        conn = env.connection({name: self.setting(name) for name in env.VARIABLES if name != env.TOKEN_ALIAS})
        conn["extra"]["defined_by"] = f"HOSTNAME/PORT/SCHEME of cluster {self.cluster_name!r} in the clusters file"
        return conn


@dataclass
class ClustersFile:
    clusters: list[ClusterConfig]
    errors: list[ConfigError]
    path: Path | None = None

    def find(self, cluster: str) -> ClusterConfig | None:
        return next((c for c in self.clusters if c.cluster_name == cluster), None)


def default_path(dag_folder: str | os.PathLike[str] | None = None) -> Path:
    """``$FINOUT_CLUSTERS_FILE``, else ``clusters.yaml`` beside the DAG file."""
    env_path = os.environ.get(CLUSTERS_FILE_ENV)
    if env_path:
        return Path(env_path)
    return Path(dag_folder or ".") / "clusters.yaml"


# --- reading a cluster entry --------------------------------------------------------------------


@dataclass
class _Entry:
    """One cluster's keys (defaults, then the entry's own), upper-cased, with their lines."""

    label: str
    values: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    errors: list[ConfigError] = field(default_factory=list)

    def fail(self, key: str | None, message: str) -> None:
        self.errors.append(ConfigError(self.label, key, message, self.lines.get(key or "")))

    def add(self, mapping: Mapping[Any, Any]) -> None:
        """Take ``mapping``'s keys (a later mapping overrides an earlier one: the entry wins over defaults)."""
        lines = mapping.key_lines if isinstance(mapping, TextMap) else {}
        own: dict[str, str] = {}
        for key, value in mapping.items():
            upper = str(key).strip().upper()
            if str(key) in lines:
                self.lines[upper] = lines[str(key)]
            if upper in own:
                self.fail(upper, f"given twice ({own[upper]!r} and {str(key)!r}; keys are case-insensitive)")
            own[upper] = str(key)
            if upper not in KEYS_BY_NAME:
                close = difflib.get_close_matches(upper, KNOWN_KEYS, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(KNOWN_KEYS)}"
                self.fail(str(key), f"unknown key; {hint}")
                continue
            self.values[upper] = value
        for key, line in getattr(mapping, "duplicates", ()):
            self.errors.append(ConfigError(self.label, str(key).upper(), "given twice in one entry: keep one", line))

    def given(self, key: str) -> bool:
        value = self.values.get(key)
        return value is not None and not (isinstance(value, str) and not value.strip())

    def parse(self) -> dict[str, Any]:
        """Every key's value (its default when not given); a bad value is an error of its key."""
        parsed: dict[str, Any] = {}
        for key in KEYS:
            if not self.given(key.name):
                parsed[key.name] = key.default
                continue
            try:
                parsed[key.name] = key.parse(self.values[key.name])
            except Invalid as err:
                parsed[key.name] = key.default
                self.fail(key.name, str(err))
        return parsed


def _label(entry: Any, index: int) -> str:
    if isinstance(entry, Mapping):
        name = next((v for k, v in entry.items() if str(k).strip().upper() == "CLUSTER_NAME"), None)
        if isinstance(name, str) and name.strip():
            return name.strip()[:80]
    line = f", line {entry.line}" if isinstance(entry, TextMap) else ""
    return f"#{index + 1}{line}"


def _check_keys(entry: _Entry, v: dict[str, Any], today: date) -> None:
    """The rules that span keys: each names the keys it joins and the fix."""
    for key in ("CLUSTER_NAME", "S3_BUCKET", "S3_PREFIX"):
        if not entry.given(key):
            entry.fail(key, "is required (set it in the entry or under 'defaults:')")
    try:
        check_frame(v["TIME_FRAME"], v["STEP_SECONDS"])
    except WindowError as err:
        entry.fail("TIME_FRAME", str(err))
    if v["PROMETHEUS_PASSWORD"] and not v["PROMETHEUS_USERNAME"]:
        entry.fail("PROMETHEUS_PASSWORD", "is set without PROMETHEUS_USERNAME: basic auth needs both")
    if v["PROMETHEUS_BEARER_AUTH_TOKEN"] and v["PROMETHEUS_AUTH_TOKEN"]:
        entry.fail("PROMETHEUS_AUTH_TOKEN", "and PROMETHEUS_BEARER_AUTH_TOKEN name the same token: keep one")
    inline = [k for k in (*env.ENDPOINT, *env.CREDENTIALS) if entry.given(k)]
    if v["PROMETHEUS_CONN_ID"] and inline:
        entry.fail(
            "PROMETHEUS_CONN_ID",
            f"is given together with {', '.join(inline)}: describe the endpoint either in the Airflow "
            "connection or in the file, not both",
        )
    if v["MODE"] == "kubernetes_pod":
        for key in (k for k in NOT_IN_POD if entry.given(k)):
            entry.fail(key, "is not read by the official image that MODE kubernetes_pod runs: use MODE airflow")
    history = v["BACKFILL_DAYS"]
    if v["INITIAL_BACKFILL_DATE"]:
        if v["INITIAL_BACKFILL_DATE"] > today:
            entry.fail("INITIAL_BACKFILL_DATE", f"{v['INITIAL_BACKFILL_DATE']} is in the future: the history "
                       "would never be exported; give a past date or remove the key")  # fmt: skip
        history = max(history, min((today - v["INITIAL_BACKFILL_DATE"]).days, MAX_INITIAL_BACKFILL_DAYS))
    if v["RETENTION_DAYS"] <= history:
        entry.fail(
            "RETENTION_DAYS",
            f"{v['RETENTION_DAYS']} days is not longer than the {history} days of history the export keeps "
            f"in S3 (BACKFILL_DAYS/INITIAL_BACKFILL_DATE): retention would delete what the same run exports; "
            f"set RETENTION_DAYS above {history} or lower BACKFILL_DAYS",
        )


def _metrics(entry: _Entry, v: dict[str, Any]) -> tuple[Metric, ...]:
    try:
        metrics = tuple(select(v["METRICS"], v["EXTRA_QUERIES"]))
    except CatalogueError as err:
        entry.fail("EXTRA_QUERIES" if "EXTRA_QUERIES" in str(err) else "METRICS", str(err))
        return ()
    if not metrics:
        entry.fail("METRICS", "selects no metric: remove it to export the whole catalogue")
    names = {m.name for m in metrics}
    for name in sorted(set(v["EXPECT_EMPTY"] or ()) - names):
        entry.fail("EXPECT_EMPTY", f"names {name!r}, which this cluster does not export")
    if metrics and v["CLUSTER_NAME"] and v["S3_PREFIX"]:
        key = longest_key(v["S3_PREFIX"], v["CLUSTER_NAME"], names)
        if len(key.encode()) > MAX_KEY_BYTES:
            entry.fail("S3_PREFIX", f"makes keys of {len(key.encode())} bytes, longer than S3's {MAX_KEY_BYTES}: "
                       "shorten S3_PREFIX (or CLUSTER_NAME, or the longest metric name)")  # fmt: skip
    return metrics


def _warnings(v: dict[str, Any]) -> tuple[str, ...]:
    if v["PROMETHEUS_PASSWORD"] or v["PROMETHEUS_BEARER_AUTH_TOKEN"] or v["PROMETHEUS_AUTH_TOKEN"]:
        return (
            f"cluster {v['CLUSTER_NAME']!r}: credentials are written in the clusters file; they are masked in "
            "logs, but move them to an Airflow connection (PROMETHEUS_CONN_ID) so a secrets backend serves them",
        )
    return ()


def parse_entry(
    label: str, *mappings: Mapping[Any, Any], today: date | None = None
) -> ClusterConfig | list[ConfigError]:
    """One cluster from its mappings (defaults first): its config, or every problem it has."""
    entry = _Entry(label)
    for mapping in mappings:
        entry.add(mapping)
    v = entry.parse()
    if v["CLUSTER_NAME"]:
        entry.label = v["CLUSTER_NAME"]
        entry.errors = [ConfigError(entry.label, e.key, e.message, e.line) for e in entry.errors]
    v["PROMETHEUS_BEARER_AUTH_TOKEN"] = v["PROMETHEUS_BEARER_AUTH_TOKEN"] or v["PROMETHEUS_AUTH_TOKEN"]
    _check_keys(entry, v, today or datetime.now(UTC).date())
    metrics = _metrics(entry, v)
    if entry.errors:
        return entry.errors
    fields = {key.attribute: v[key.name] for key in KEYS if key.attribute}
    names = {m.name for m in metrics}
    empty = v["EXPECT_EMPTY"] if v["EXPECT_EMPTY"] is not None else expected_empty(names)
    return ClusterConfig(**fields, metrics=metrics, expect_empty=frozenset(empty), warnings=_warnings(v))


# --- the whole file ----------------------------------------------------------------------------


def parse_document(document: Any, today: date | None = None, only: str | None = None) -> ClustersFile:
    """Validate a loaded clusters document. A document without the file's shape raises ``ValueError``.

    ``only`` (a CLUSTER_NAME) reads just that cluster's entry, as a task start needs: the whole file
    was validated when the DAG processor parsed it, and the cost then does not grow with the fleet.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("clusters") or [], list):
        raise ValueError("the clusters file must be a mapping with a 'clusters:' list (and optional 'defaults:')")
    unknown_top = set(document) - {"defaults", "clusters"}
    if unknown_top:
        raise ValueError(f"unknown top-level keys {sorted(map(str, unknown_top))}: use 'defaults' and 'clusters'")
    for key, line in getattr(document, "duplicates", ()):
        raise ValueError(f"line {line}: top-level key {key!r} is given twice: keep one")
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise ValueError("'defaults:' must be a mapping of keys to values")
    result = ClustersFile([], [])
    seen: dict[str, str] = {}
    for index, item in enumerate(document.get("clusters") or []):
        label = _label(item, index)
        if only is not None and label != only:
            continue
        if not isinstance(item, Mapping):
            result.errors.append(ConfigError(label, None, "each cluster entry must be a mapping of KEY: value"))
            continue
        parsed = parse_entry(label, defaults, item, today=today)
        if isinstance(parsed, list):
            result.errors.extend(parsed)
            continue
        name = parsed.cluster_name
        if name.lower() in seen:
            other = seen[name.lower()]
            same = "a duplicate of" if other == name else "equal up to case to"
            result.errors.append(ConfigError(name, "CLUSTER_NAME", f"is {same} cluster {other!r}: DAG ids, connection "
                                             "ids and S3 folders must not be shared or differ only in case; rename one",
                                             getattr(item, "key_lines", {}).get("CLUSTER_NAME")))  # fmt: skip
            continue
        seen[name.lower()] = name
        result.clusters.append(parsed)
        if only is not None:
            break
    return result


def load_file(path: str | os.PathLike[str], only: str | None = None) -> ClustersFile:
    """Read and validate a clusters file.

    A file that cannot be read or has not the file's shape raises ``ValueError`` naming the file and
    line. A YAML error inside one cluster entry costs that entry only: it is reported as its error
    and the others are read. ``only``: see :func:`parse_document`.
    """
    file_path = Path(path)
    try:
        text = file_path.read_bytes().decode("utf-8", errors="replace")
    except OSError as err:
        raise ValueError(f"cannot read clusters file {file_path} ({CLUSTERS_FILE_ENV}): {err}") from None
    broken: list[ConfigError] = []
    while True:
        try:
            document = load_yaml(text)
            break
        except YamlTextError as err:
            text = _drop_entry(text, err, broken, file_path)
    try:
        result = parse_document(document, only=only)
    except ValueError as err:
        raise ValueError(f"clusters file {file_path}: {err}") from None
    result.errors[:0] = broken
    result.path = file_path
    return result


_CLUSTERS_RE = re.compile(r"^clusters\s*:\s*(#.*)?$")
_ITEM_RE = re.compile(r"^(\s*)-(\s|$)")


def _drop_entry(text: str, err: YamlTextError, broken: list[ConfigError], path: Path) -> str:
    """``text`` with the block-style cluster entry holding the error's line blanked out (the error
    goes to ``broken``); raise ``ValueError`` naming the file when the error is outside any entry."""
    whole = ValueError(f"clusters file {path} is not valid YAML: {err}")
    lines = text.splitlines(keepends=True)
    start = next((i + 1 for i, line in enumerate(lines) if _CLUSTERS_RE.match(line)), None)
    if err.line is None or start is None or len(broken) >= 100:
        raise whole
    items = [i for i in range(start, len(lines)) if _ITEM_RE.match(lines[i])]
    indent = len(_ITEM_RE.match(lines[items[0]])[1]) if items else -1  # type: ignore[index]
    items = [i for i in items if len(_ITEM_RE.match(lines[i])[1]) == indent]  # type: ignore[index]
    ends = [next((j for j in range(i + 1, len(lines)) if _ends_entry(lines[j], indent)), len(lines)) for i in items]
    for first, end in zip(items, ends, strict=True):
        if first <= err.line - 1 < end:
            block = "".join(lines[first:end])
            name = re.search(r"(?i)cluster_name\s*:\s*[\"']?([\w.\-]+)", block)
            label = name[1] if name else f"#{items.index(first) + 1}, line {first + 1}"
            broken.append(ConfigError(label, None, f"is not valid YAML ({err}); the other entries are read", err.line))
            return "".join(lines[:first]) + "\n" * (end - first) + "".join(lines[end:])
    raise whole


def _ends_entry(line: str, indent: int) -> bool:
    """Whether ``line`` starts the next entry, or leaves the list, of items at ``indent``."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return False
    return len(line) - len(line.lstrip()) <= indent
