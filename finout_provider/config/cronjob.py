"""Turn Finout's official CronJob manifest into a clusters file entry (pure: no Airflow, no I/O).

The CronJob's ``env`` already uses the clusters file's key names, so most variables carry over
as they are. Credentials do not: they move to an Airflow connection definition (the format of
``airflow connections import``), together with the endpoint they belong to, and the entry names
that connection with PROMETHEUS_CONN_ID. What cannot carry over (values from Kubernetes Secrets,
the CronJob's own schedule, variables the exporter does not know) is reported as notes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from finout_provider.config import exporter_env as env
from finout_provider.config.clusters import INLINE_CONN_PREFIX
from finout_provider.config.keys import DEFAULT_IMAGE, KNOWN_KEYS
from finout_provider.config.yamltext import YamlTextError, load_all, plain


class CronJobError(ValueError):
    """The manifest is not a CronJob with a container whose env the exporter understands."""


@dataclass
class ImportedCronJob:
    entry: dict[str, Any]
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _documents(text: str) -> list[Any]:
    try:
        return load_all(text)
    except YamlTextError as err:
        raise CronJobError(f"not valid YAML: {err}") from None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _container(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = _mapping(doc.get("spec"))
    pod = _mapping(_mapping(_mapping(_mapping(spec.get("jobTemplate")).get("spec")).get("template")).get("spec"))
    containers = pod.get("containers")
    for container in containers if isinstance(containers, list) else []:
        env_list = _mapping(container).get("env")
        if "finout" in str(_mapping(container).get("image", "")) or any(
            isinstance(e, Mapping) and e.get("name") == "CLUSTER_NAME" for e in env_list or []
        ):
            return _mapping(container)
    raise CronJobError("the CronJob has no container running the Finout exporter (no CLUSTER_NAME in its env)")


def _env(container: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    """The container's env as text (Kubernetes values are strings: ``"007"`` stays ``"007"``)."""
    values: dict[str, Any] = {}
    items = container.get("env")
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping) or not item.get("name"):
            notes.append(f"an env item without a name is left out: {str(item)[:80]}")
            continue
        name = str(item["name"])
        if "valueFrom" in item:
            ref = _mapping(_mapping(item["valueFrom"]).get("secretKeyRef"))
            notes.append(
                f"{name} comes from Kubernetes Secret {ref.get('name', '?')!r} key {ref.get('key', '?')!r}: "
                "put its value in the connection below (an Airflow secrets backend can serve it)"
            )
            values[name] = None
        elif item.get("value") is not None:
            values[name] = str(item["value"])
    if container.get("envFrom"):
        notes.append("envFrom is not imported: add those variables to the entry or the connection by hand")
    return values


def import_cronjob(text: str) -> ImportedCronJob:
    """The clusters file entry, connections and notes for the CronJob manifest ``text``."""
    jobs = [d for d in _documents(text) if isinstance(d, Mapping) and d.get("kind") == "CronJob"]
    if len(jobs) != 1:
        raise CronJobError(f"expected exactly one object of kind CronJob, found {len(jobs)}")
    container = _container(jobs[0])
    notes: list[str] = []
    values = _env(container, notes)
    cluster = values.get("CLUSTER_NAME")
    if not cluster:
        raise CronJobError("the exporter's env has no CLUSTER_NAME value")
    for key in sorted(k for k in values if k not in KNOWN_KEYS):
        notes.append(f"{key} is not a variable of the exporter; left out")
    entry = {k: v for k, v in values.items() if k in KNOWN_KEYS and k not in env.CREDENTIALS and v is not None}
    connections: dict[str, dict[str, Any]] = {}
    if any(k in values for k in env.CREDENTIALS):
        if values.get(env.PASSWORD) and not values.get(env.USERNAME):
            notes.append(
                f"{env.PASSWORD} is set without {env.USERNAME}: basic auth needs both; the password "
                "is left out of the connection"
            )
        conn = env.connection({**entry, **{k: v for k, v in values.items() if k in env.CREDENTIALS}})
        conn["extra"] = json.dumps(conn["extra"])  # `airflow connections import` stores it as given: a string
        conn_id = f"{INLINE_CONN_PREFIX}{cluster}"
        connections[conn_id] = conn
        for key in env.ENDPOINT:
            entry.pop(key, None)
        entry["PROMETHEUS_CONN_ID"] = conn_id
    notes += _context_notes(jobs[0], container, entry, connections)
    return ImportedCronJob(entry=entry, connections=connections, notes=notes)


def _context_notes(
    job: Mapping[str, Any], container: Mapping[str, Any], entry: Mapping[str, Any], connections: Mapping[str, Any]
) -> list[str]:
    notes = []
    conn: Mapping[str, Any] = next(iter(connections.values()), {})
    host = str(entry.get("HOSTNAME") or conn.get("host") or "")
    if host.endswith(".svc.cluster.local") or host.endswith(".svc"):
        notes.append(
            f"HOSTNAME {host!r} is a name inside the cluster; Airflow's workers must reach Prometheus: "
            "use an address they can resolve (an ingress, a load balancer, or Amazon Managed Prometheus)"
        )
    schedule = _mapping(job.get("spec")).get("schedule")
    if schedule:
        notes.append(
            f"the CronJob ran on {schedule!r}; the DAG runs once per TIME_FRAME window instead "
            "(set SCHEDULE to override)"
        )
    image = str(container.get("image", ""))
    if image and image != DEFAULT_IMAGE:
        notes.append(f"the CronJob ran {image}; with MODE kubernetes_pod set IMAGE: {image} to keep it")
    return notes


def merge_entry(document: Any, entry: Mapping[str, Any]) -> dict[str, Any]:
    """A clusters file document with ``entry`` appended (refusing a second CLUSTER_NAME and any
    document that is not a clusters file, so nothing of it is lost)."""
    if document is None:
        document = {}
    if not isinstance(document, Mapping) or not isinstance(document.get("clusters") or [], list):
        raise CronJobError("is not a clusters file (a mapping with a 'clusters:' list); it is left as it is")
    clusters = list(document.get("clusters") or [])
    name = entry["CLUSTER_NAME"]
    if any(isinstance(c, Mapping) and str(c.get("CLUSTER_NAME", "")).lower() == name.lower() for c in clusters):
        raise CronJobError(f"the clusters file already has a cluster named {name!r}")
    return {**plain(document), "clusters": [*plain(clusters), dict(entry)]}


def append_entry_text(text: str, entry: Mapping[str, Any]) -> str | None:
    """``text`` (a clusters file whose ``clusters:`` list is its last top-level key) with ``entry``
    appended as text, so its comments and layout stay; ``None`` when the file is not shaped so."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("clusters:")]
    if len(starts) != 1 or any(line[:1] not in ("", " ", "#", "-") for line in lines[starts[0] + 1 :]):
        return None
    items = [line for line in lines[starts[0] + 1 :] if line.lstrip().startswith("- ")]
    indent = len(items[0]) - len(items[0].lstrip()) if items else 2
    block = yaml.safe_dump([dict(entry)], sort_keys=False)
    added = "".join(" " * indent + line + "\n" for line in block.splitlines())
    return text.rstrip("\n") + "\n" + added


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
