"""The clusters file read into :class:`ClusterConfig` per cluster (pure, no Airflow): each entry's
keys parsed by :data:`~finout_provider.config.keys.KEYS`, then the rules that span keys. A bad entry
yields one :class:`ConfigError` per bad key, naming the cluster, the key and the fix; it never
hides the other clusters.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from finout_provider.catalogue import CatalogueError, ExportSpec, Metric, expected_empty, select
from finout_provider.checks.completeness import Thresholds
from finout_provider.config import exporter_env as env
from finout_provider.config.keys import KEYS, KEYS_BY_NAME, KNOWN_KEYS, NOT_IN_POD, Invalid
from finout_provider.config.yamltext import TextMap, YamlTextError
from finout_provider.config.yamltext import load as load_yaml
from finout_provider.plan.windows import MAX_INITIAL_BACKFILL_DAYS, WindowError, check_frame
from finout_provider.s3.layout import MAX_KEY_BYTES, longest_key
from finout_provider.target import S3Target

CLUSTERS_FILE_ENV = "FINOUT_CLUSTERS_FILE"
INLINE_CONN_PREFIX = "finout_prometheus_"
DAG_ID_PREFIX = "finout_prometheus_"


class ConfigError(ValueError):
    """One problem with one cluster entry: which cluster, which key, what to do (and where)."""

    def __init__(self, cluster: str, key: str | None, message: str, line: int | None = None) -> None:
        self.cluster = cluster
        self.key = key
        self.message = message
        self.line = line
        where = f"cluster {cluster!r}" + (f", key {key}" if key else "")
        super().__init__(f"{where}: {message}" + (f" (line {line})" if line else ""))


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
        return S3Target(
            self.cluster_name,
            self.s3_bucket,
            self.s3_prefix,
            self.aws_conn_id,
            self.role_arn,
            self.role_external_id,
            self.s3_kms_key_id,
        )

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
            entry.fail(
                "INITIAL_BACKFILL_DATE",
                f"{v['INITIAL_BACKFILL_DATE']} is in the future: the history "
                "would never be exported; give a past date or remove the key",
            )
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
            entry.fail(
                "S3_PREFIX",
                f"makes keys of {len(key.encode())} bytes, longer than S3's {MAX_KEY_BYTES}: "
                "shorten S3_PREFIX (or CLUSTER_NAME, or the longest metric name)",
            )
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
            result.errors.append(
                ConfigError(
                    name,
                    "CLUSTER_NAME",
                    f"is {same} cluster {other!r}: DAG ids, connection "
                    "ids and S3 folders must not be shared or differ only in case; rename one",
                    getattr(item, "key_lines", {}).get("CLUSTER_NAME"),
                )
            )
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
