"""Turn Finout's official CronJob manifest into a clusters file entry (pure: no Airflow, no I/O).

The CronJob's ``env`` already uses the clusters file's key names, so most variables carry over
as they are. Credentials do not: they move to an Airflow connection definition (the format of
``airflow connections import``), together with the endpoint they belong to, and the entry names
that connection with PROMETHEUS_CONN_ID. What cannot carry over (values from Kubernetes Secrets,
the CronJob's own schedule, variables the exporter does not know) is reported as notes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from finout_provider.config import DEFAULT_IMAGE, KNOWN_KEYS

ENDPOINT_KEYS = ("SCHEME", "HOSTNAME", "PORT", "PATH_PREFIX")
CREDENTIAL_KEYS = (
    "PROMETHEUS_USERNAME",
    "PROMETHEUS_PASSWORD",
    "PROMETHEUS_BEARER_AUTH_TOKEN",
    "PROMETHEUS_AUTH_TOKEN",
    "PROMETHEUS_X_SCOPE_ORGID",
)


class CronJobError(ValueError):
    """The manifest is not a CronJob with a container whose env the exporter understands."""


@dataclass
class ImportedCronJob:
    entry: dict[str, Any]
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _documents(text: str) -> Iterable[Any]:
    try:
        yield from yaml.safe_load_all(text)
    except yaml.YAMLError as err:
        raise CronJobError(f"not valid YAML: {err}") from None


def _container(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = doc.get("spec") or {}
    pod = (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = pod.get("containers") or []
    for container in containers:
        if "finout" in str(container.get("image", "")) or any(
            isinstance(e, Mapping) and e.get("name") == "CLUSTER_NAME" for e in container.get("env") or []
        ):
            return dict(container)
    raise CronJobError("the CronJob has no container running the Finout exporter (no CLUSTER_NAME in its env)")


def _scalar(value: Any) -> Any:
    """Env values are strings in Kubernetes; keep numbers as numbers for readability."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


def import_cronjob(text: str) -> ImportedCronJob:
    """The clusters file entry, connections and notes for the CronJob manifest ``text``."""
    jobs = [d for d in _documents(text) if isinstance(d, Mapping) and d.get("kind") == "CronJob"]
    if len(jobs) != 1:
        raise CronJobError(f"expected exactly one object of kind CronJob, found {len(jobs)}")
    job = jobs[0]
    container = _container(job)
    notes: list[str] = []
    env: dict[str, Any] = {}
    for item in container.get("env") or []:
        name = str(item.get("name", ""))
        if "value" in item:
            env[name] = _scalar(item["value"])
        elif "valueFrom" in item:
            ref = (item["valueFrom"] or {}).get("secretKeyRef") or {}
            notes.append(
                f"{name} comes from Kubernetes Secret {ref.get('name', '?')!r} key {ref.get('key', '?')!r}: "
                "put its value in the connection below (an Airflow secrets backend can serve it)"
            )
            env[name] = None
    if container.get("envFrom"):
        notes.append("envFrom is not imported: add those variables to the entry or the connection by hand")
    cluster = env.get("CLUSTER_NAME")
    if not cluster:
        raise CronJobError("the exporter's env has no CLUSTER_NAME value")

    unknown = sorted(k for k in env if k not in KNOWN_KEYS)
    for key in unknown:
        notes.append(f"{key} is not a variable of the exporter; left out")
    entry: dict[str, Any] = {k: v for k, v in env.items() if k in KNOWN_KEYS and k not in CREDENTIAL_KEYS}
    connections: dict[str, dict[str, Any]] = {}
    credentials = {k: env[k] for k in CREDENTIAL_KEYS if k in env}
    if credentials:
        conn_id = f"finout_prometheus_{cluster}"
        extra: dict[str, Any] = {}
        if entry.get("PATH_PREFIX"):
            extra["path_prefix"] = entry["PATH_PREFIX"]
        token = next((k for k in ("PROMETHEUS_BEARER_AUTH_TOKEN", "PROMETHEUS_AUTH_TOKEN") if k in credentials), None)
        if token:
            extra["bearer_token"] = credentials[token] or ""
        if "PROMETHEUS_X_SCOPE_ORGID" in credentials:
            extra["x_scope_orgid"] = credentials["PROMETHEUS_X_SCOPE_ORGID"] or ""
        conn: dict[str, Any] = {
            "conn_type": "prometheus",
            "host": str(entry.get("HOSTNAME", "localhost")),
            "port": int(entry.get("PORT", 9090)),
            "schema": str(entry.get("SCHEME", "http")),
            "extra": json.dumps(extra),  # `airflow connections import` stores it as given: a string
        }
        if "PROMETHEUS_USERNAME" in credentials:
            conn["login"] = credentials["PROMETHEUS_USERNAME"] or ""
            conn["password"] = credentials.get("PROMETHEUS_PASSWORD") or ""
        connections[conn_id] = conn
        for key in ENDPOINT_KEYS:
            entry.pop(key, None)
        entry["PROMETHEUS_CONN_ID"] = conn_id
    host = str(entry.get("HOSTNAME") or next(iter(connections.values()), {}).get("host") or "")
    if host.endswith(".svc.cluster.local") or host.endswith(".svc"):
        notes.append(
            f"HOSTNAME {host!r} is a name inside the cluster; Airflow's workers must reach Prometheus: "
            "use an address they can resolve (an ingress, a load balancer, or Amazon Managed Prometheus)"
        )
    schedule = (job.get("spec") or {}).get("schedule")
    if schedule:
        notes.append(
            f"the CronJob ran on {schedule!r}; the DAG runs once per TIME_FRAME window instead "
            "(set SCHEDULE to override)"
        )
    image = str(container.get("image", ""))
    if image and image != DEFAULT_IMAGE:
        notes.append(f"the CronJob ran {image}; with MODE kubernetes_pod set IMAGE: {image} to keep it")
    return ImportedCronJob(entry=entry, connections=connections, notes=notes)


def merge_entry(document: Any, entry: Mapping[str, Any]) -> dict[str, Any]:
    """A clusters file document with ``entry`` appended (refusing a second CLUSTER_NAME)."""
    doc: dict[str, Any] = dict(document) if isinstance(document, Mapping) else {}
    clusters = list(doc.get("clusters") or [])
    name = entry["CLUSTER_NAME"]
    if any(isinstance(c, Mapping) and c.get("CLUSTER_NAME") == name for c in clusters):
        raise CronJobError(f"the clusters file already has a cluster named {name!r}")
    doc["clusters"] = [*clusters, dict(entry)]
    return doc


def redacted(connections: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``connections`` with the password and bearer token replaced by ``***``."""
    shown: dict[str, dict[str, Any]] = {}
    for conn_id, conn in connections.items():
        copy = dict(conn)
        if copy.get("password"):
            copy["password"] = "***"
        extra = json.loads(copy.get("extra") or "{}")
        if extra.get("bearer_token"):
            extra["bearer_token"] = "***"
        copy["extra"] = json.dumps(extra)
        shown[conn_id] = copy
    return shown
