"""The clusters file: load, apply defaults, validate -> :class:`ClusterConfig` (pure, no Airflow).

Keys are the official exporter's environment variable names (case-insensitive), so the ``env:``
block of Finout's CronJob can be pasted as a cluster entry. A bad entry yields a
:class:`ConfigError` naming the cluster, the key and the fix; it never hides the other clusters.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from finout_provider.catalogue import CatalogueError, Metric, select
from finout_provider.layout import LayoutError, normalize_prefix, validate_bucket, validate_cluster_name
from finout_provider.windows import DAY, WindowError, check_frame

CLUSTERS_FILE_ENV = "FINOUT_CLUSTERS_FILE"
DEFAULT_IMAGE = "finout/finout-metrics-exporter:2.0.3"
INITIAL_BACKFILL_MAX_DAYS = 3
MODES = ("airflow", "kubernetes_pod")

# Secrets accepted in the file for paste-compatibility; they are masked and warned about.
SECRET_KEYS = ("PROMETHEUS_PASSWORD", "PROMETHEUS_BEARER_AUTH_TOKEN")

KNOWN_KEYS = (
    # the official exporter's variables
    "CLUSTER_NAME", "S3_BUCKET", "S3_PREFIX", "ROLE_ARN", "ROLE_EXTERNAL_ID", "SCHEME",
    "PATH_PREFIX", "HOSTNAME", "PORT", "TIME_FRAME", "BACKFILL_DAYS", "INITIAL_BACKFILL_DATE",
    "QUERIES_BATCH_SIZE", "PROMETHEUS_USERNAME", "PROMETHEUS_PASSWORD",
    "PROMETHEUS_BEARER_AUTH_TOKEN", "PROMETHEUS_AUTH_TOKEN", "PROMETHEUS_X_SCOPE_ORGID",
    # added by this provider
    "PROMETHEUS_CONN_ID", "AWS_CONN_ID", "RETENTION_DAYS", "QUERY_DELAY_SECONDS", "STEP_SECONDS",
    "SCHEDULE", "CLUSTER_LABEL", "MODE", "METRICS", "EXTRA_QUERIES", "PREFLIGHT",
    # MODE kubernetes_pod
    "IMAGE", "NAMESPACE", "KUBERNETES_CONN_ID", "K8S_SECRET_NAME",
)  # fmt: skip


class ConfigError(ValueError):
    """One problem with one cluster entry: which cluster, which key, what to do."""

    def __init__(self, cluster: str, key: str | None, message: str) -> None:
        self.cluster = cluster
        self.key = key
        self.message = message
        where = f"cluster {cluster!r}" + (f", key {key}" if key else "")
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class ClusterConfig:
    """One cluster's validated settings."""

    cluster_name: str
    s3_bucket: str
    s3_prefix: str
    prometheus_conn_id: str | None = None
    aws_conn_id: str = "aws_default"
    role_arn: str | None = None
    role_external_id: str | None = None
    scheme: str = "http"
    hostname: str = "localhost"
    port: int = 9090
    path_prefix: str = ""
    prometheus_username: str | None = None
    prometheus_password: str | None = None
    prometheus_bearer_auth_token: str | None = None
    prometheus_x_scope_orgid: str | None = None
    time_frame: int = 3600
    step_seconds: int = 60
    backfill_days: int = 3
    initial_backfill_date: date | None = None
    queries_batch_size: int = 5
    query_delay_seconds: float = 5.0
    retention_days: int = 30
    schedule: str | None = None
    cluster_label: str | None = None
    mode: str = "airflow"
    metrics: tuple[Metric, ...] = ()
    image: str = DEFAULT_IMAGE
    namespace: str | None = None
    kubernetes_conn_id: str | None = None
    k8s_secret_name: str | None = None
    preflight: bool = False
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def dag_id(self) -> str:
        return f"finout_prometheus_{self.cluster_name}"

    @property
    def effective_conn_id(self) -> str:
        """The Airflow connection the hook reads: the configured one or the file-defined one."""
        return self.prometheus_conn_id or f"finout_prometheus_{self.cluster_name}"

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.prometheus_password, self.prometheus_bearer_auth_token) if s)

    def inline_connection(self) -> dict[str, Any] | None:
        """The connection described by HOSTNAME/PORT/... when no PROMETHEUS_CONN_ID is given.

        The dict has the shape of Airflow's JSON connection format (``AIRFLOW_CONN_<ID>``).
        """
        if self.prometheus_conn_id:
            return None
        extra: dict[str, Any] = {}
        if self.path_prefix:
            extra["path_prefix"] = self.path_prefix
        if self.prometheus_bearer_auth_token:
            extra["bearer_token"] = self.prometheus_bearer_auth_token
        if self.prometheus_x_scope_orgid:
            extra["x_scope_orgid"] = self.prometheus_x_scope_orgid
        conn: dict[str, Any] = {
            "conn_type": "prometheus",
            "host": self.hostname,
            "port": self.port,
            "schema": self.scheme,
            "extra": extra,
        }
        if self.prometheus_username:
            conn["login"] = self.prometheus_username
            conn["password"] = self.prometheus_password or ""
        return conn


@dataclass
class ClustersFile:
    clusters: list[ClusterConfig]
    errors: list[ConfigError]
    path: Path | None = None


def default_path(dag_folder: str | os.PathLike[str] | None = None) -> Path:
    """``$FINOUT_CLUSTERS_FILE``, else ``clusters.yaml`` beside the DAG file."""
    env = os.environ.get(CLUSTERS_FILE_ENV)
    if env:
        return Path(env)
    return Path(dag_folder or ".") / "clusters.yaml"


def load_file(path: str | os.PathLike[str]) -> ClustersFile:
    """Read and validate a clusters file. A file that cannot be read at all raises ``ValueError``."""
    file_path = Path(path)
    try:
        document = yaml.safe_load(file_path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ValueError(f"cannot read clusters file {file_path} ({CLUSTERS_FILE_ENV}): {err}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"clusters file {file_path} is not valid YAML: {err}") from None
    result = parse_document(document)
    result.path = file_path
    return result


def parse_document(document: Any) -> ClustersFile:
    """Validate an already-parsed clusters document."""
    if not isinstance(document, Mapping) or not isinstance(document.get("clusters"), list):
        raise ValueError("the clusters file must be a mapping with a 'clusters:' list (and optional 'defaults:')")
    unknown_top = set(document) - {"defaults", "clusters"}
    if unknown_top:
        raise ValueError(f"unknown top-level keys {sorted(unknown_top)}: use 'defaults' and 'clusters'")
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise ValueError("'defaults:' must be a mapping of keys to values")
    clusters: list[ClusterConfig] = []
    errors: list[ConfigError] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(document["clusters"]):
        label = f"#{index + 1}"
        if isinstance(entry, Mapping):
            name = next((v for k, v in entry.items() if str(k).upper() == "CLUSTER_NAME"), None)
            label = str(name) if name is not None else label
        try:
            if not isinstance(entry, Mapping):
                raise ConfigError(label, None, "each cluster entry must be a mapping of KEY: value")
            config = parse_cluster({**_upper(defaults, "defaults"), **_upper(entry, label)}, label)
        except ConfigError as err:
            errors.append(err)
            continue
        if config.cluster_name in seen:
            errors.append(
                ConfigError(
                    config.cluster_name,
                    "CLUSTER_NAME",
                    f"duplicate of entry #{seen[config.cluster_name] + 1}: two DAGs cannot share an id "
                    "and two exports must not write the same S3 folder; rename one",
                )
            )
            continue
        seen[config.cluster_name] = index
        clusters.append(config)
    return ClustersFile(clusters, errors)


def _upper(mapping: Mapping[Any, Any], label: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        upper = str(key).upper()
        if upper not in KNOWN_KEYS:
            close = difflib.get_close_matches(upper, KNOWN_KEYS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(KNOWN_KEYS)}"
            raise ConfigError(label, str(key), "unknown key" + hint)
        if upper in out:
            raise ConfigError(label, str(key), "given twice (keys are case-insensitive)")
        out[upper] = value
    return out


def _int(label: str, key: str, value: Any, low: int, high: int) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"[+-]?\d+", text):
        raise ConfigError(label, key, f"{value!r} is not a whole number")
    number = int(text)
    if not low <= number <= high:
        raise ConfigError(label, key, f"{number} is out of range: use {low}..{high}")
    return number


def _str(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_cluster(raw: Mapping[str, Any], label: str) -> ClusterConfig:
    """Validate one cluster's merged (defaults + entry) upper-cased keys."""
    name = _str(raw, "CLUSTER_NAME")
    if name is None:
        raise ConfigError(label, "CLUSTER_NAME", "is required: the cluster's folder name in S3")
    try:
        validate_cluster_name(name)
    except LayoutError as err:
        raise ConfigError(label, "CLUSTER_NAME", str(err)) from None
    label = name

    def need(key: str) -> str:
        value = _str(raw, key)
        if value is None:
            raise ConfigError(label, key, "is required (set it in the entry or under 'defaults:')")
        return value

    try:
        bucket = validate_bucket(need("S3_BUCKET"))
    except LayoutError as err:
        raise ConfigError(label, "S3_BUCKET", str(err)) from None
    try:
        prefix = normalize_prefix(need("S3_PREFIX"))
    except LayoutError as err:
        raise ConfigError(label, "S3_PREFIX", str(err)) from None

    scheme = (_str(raw, "SCHEME") or "http").lower()
    if scheme not in ("http", "https"):
        raise ConfigError(label, "SCHEME", f"{scheme!r} must be 'http' or 'https'")
    hostname = _str(raw, "HOSTNAME") or "localhost"
    if "://" in hostname or "/" in hostname or " " in hostname:
        raise ConfigError(
            label,
            "HOSTNAME",
            f"{hostname!r} must be a bare host name: put the scheme in SCHEME and any path in PATH_PREFIX",
        )
    port = _int(label, "PORT", raw.get("PORT", 9090), 1, 65535)
    path_prefix = (_str(raw, "PATH_PREFIX") or "").strip("/")
    if ".." in path_prefix.split("/"):
        raise ConfigError(label, "PATH_PREFIX", "must not contain '..'")

    time_frame = _int(label, "TIME_FRAME", raw.get("TIME_FRAME", 3600), 1, DAY)
    step = _int(label, "STEP_SECONDS", raw.get("STEP_SECONDS", 60), 1, DAY)
    try:
        check_frame(time_frame, step)
    except WindowError as err:
        raise ConfigError(label, "TIME_FRAME", str(err)) from None

    backfill_raw = str(raw.get("BACKFILL_DAYS", "3d")).strip().lower()
    if not re.fullmatch(r"\d+d?", backfill_raw):
        raise ConfigError(label, "BACKFILL_DAYS", f"{backfill_raw!r} must be a number of days such as '3d' or 3")
    backfill_days = _int(label, "BACKFILL_DAYS", backfill_raw.rstrip("d"), 0, 90)

    initial: date | None = None
    initial_raw = _str(raw, "INITIAL_BACKFILL_DATE")
    if initial_raw is not None:
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", initial_raw):
                raise ValueError
            initial = date.fromisoformat(initial_raw)
        except ValueError:
            raise ConfigError(
                label, "INITIAL_BACKFILL_DATE", f"{initial_raw!r} must be a date in YYYY-MM-DD format"
            ) from None

    batch = _int(label, "QUERIES_BATCH_SIZE", raw.get("QUERIES_BATCH_SIZE", 5), 1, 20)
    retention = _int(label, "RETENTION_DAYS", raw.get("RETENTION_DAYS", 30), 1, 3650)
    delay_raw = raw.get("QUERY_DELAY_SECONDS", 5)
    try:
        delay = float(delay_raw)
    except (TypeError, ValueError):
        raise ConfigError(label, "QUERY_DELAY_SECONDS", f"{delay_raw!r} is not a number of seconds") from None
    if not 0 <= delay <= 300:
        raise ConfigError(label, "QUERY_DELAY_SECONDS", f"{delay} is out of range: use 0..300")

    mode = (_str(raw, "MODE") or "airflow").lower()
    if mode not in MODES:
        raise ConfigError(label, "MODE", f"{mode!r} must be one of {', '.join(MODES)}")

    preflight_raw = raw.get("PREFLIGHT", False)
    if isinstance(preflight_raw, str) and preflight_raw.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        preflight_raw = preflight_raw.strip().lower() in ("true", "yes", "1")
    if not isinstance(preflight_raw, bool):
        raise ConfigError(label, "PREFLIGHT", f"{preflight_raw!r} must be true or false")
    if preflight_raw and mode != "airflow":
        raise ConfigError(label, "PREFLIGHT", "runs in Airflow, so it needs MODE airflow (the pod reaches Prometheus)")

    cluster_label = _str(raw, "CLUSTER_LABEL")
    if cluster_label is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cluster_label):
        raise ConfigError(label, "CLUSTER_LABEL", f"{cluster_label!r} is not a Prometheus label name")

    metrics_raw = raw.get("METRICS")
    if metrics_raw is not None and (
        not isinstance(metrics_raw, list) or not all(isinstance(m, str) for m in metrics_raw)
    ):
        raise ConfigError(label, "METRICS", "must be a list of catalogue metric names")
    extra_raw = raw.get("EXTRA_QUERIES") or []
    if not isinstance(extra_raw, list):
        raise ConfigError(label, "EXTRA_QUERIES", "must be a list of {name, query} mappings")
    try:
        metrics = tuple(select(metrics_raw, extra_raw))
    except CatalogueError as err:
        raise ConfigError(label, "METRICS" if "METRICS" in str(err) else "EXTRA_QUERIES", str(err)) from None
    if not metrics:
        raise ConfigError(label, "METRICS", "selects no metric: remove it to export the whole catalogue")

    token = _str(raw, "PROMETHEUS_BEARER_AUTH_TOKEN") or _str(raw, "PROMETHEUS_AUTH_TOKEN")
    password = _str(raw, "PROMETHEUS_PASSWORD")
    username = _str(raw, "PROMETHEUS_USERNAME")
    if password and not username:
        raise ConfigError(label, "PROMETHEUS_PASSWORD", "is set without PROMETHEUS_USERNAME")
    conn_id = _str(raw, "PROMETHEUS_CONN_ID")
    inline_keys = [
        k for k in ("HOSTNAME", "PORT", "SCHEME", "PATH_PREFIX", "PROMETHEUS_USERNAME", *SECRET_KEYS) if k in raw
    ]
    if conn_id and inline_keys:
        raise ConfigError(
            label,
            "PROMETHEUS_CONN_ID",
            f"is given together with {', '.join(inline_keys)}: describe the endpoint either in the "
            "Airflow connection or in the file, not both",
        )
    warnings: list[str] = []
    if password or token:
        warnings.append(
            f"cluster {name!r}: credentials are written in the clusters file; they are masked in logs, "
            "but move them to an Airflow connection (PROMETHEUS_CONN_ID) so a secrets backend serves them"
        )

    return ClusterConfig(
        cluster_name=name,
        s3_bucket=bucket,
        s3_prefix=prefix,
        prometheus_conn_id=conn_id,
        aws_conn_id=_str(raw, "AWS_CONN_ID") or "aws_default",
        role_arn=_str(raw, "ROLE_ARN"),
        role_external_id=_str(raw, "ROLE_EXTERNAL_ID"),
        scheme=scheme,
        hostname=hostname,
        port=port,
        path_prefix=path_prefix,
        prometheus_username=username,
        prometheus_password=password,
        prometheus_bearer_auth_token=token,
        prometheus_x_scope_orgid=_str(raw, "PROMETHEUS_X_SCOPE_ORGID"),
        time_frame=time_frame,
        step_seconds=step,
        backfill_days=backfill_days,
        initial_backfill_date=initial,
        queries_batch_size=batch,
        query_delay_seconds=delay,
        retention_days=retention,
        schedule=_str(raw, "SCHEDULE"),
        cluster_label=cluster_label,
        mode=mode,
        metrics=metrics,
        image=_str(raw, "IMAGE") or DEFAULT_IMAGE,
        namespace=_str(raw, "NAMESPACE"),
        kubernetes_conn_id=_str(raw, "KUBERNETES_CONN_ID"),
        k8s_secret_name=_str(raw, "K8S_SECRET_NAME"),
        preflight=preflight_raw,
        warnings=tuple(warnings),
    )
