"""The metric catalogue: which PromQL queries are exported, and the ``%%%cluster_label`` rule.

Each metric is a ``{name, query}`` pair; the name is the ``metric=`` folder and the file suffix.
Finout's queries carry a ``%%%cluster_label`` placeholder in their ``by (...)`` clauses. With a
cluster label (a central Prometheus holding several clusters) the placeholder becomes that label and
every series selector of the query is narrowed to this cluster's value; without one, the
placeholder and its comma disappear.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from finout_provider.checks.completeness import Thresholds
from finout_provider.s3.layout import validate_metric_name

PLACEHOLDER = "%%%cluster_label"

KSM = "kube-state-metrics >= 2.0"
KSM_LABELS = "kube-state-metrics >= 2.0 with --metric-labels-allowlist=pods=[*],nodes=[*]"
CADVISOR = "cAdvisor (kubelet /metrics/cadvisor)"
NODE_RULE = "kube-prometheus recording rule node_namespace_pod_container:* or a node label on cAdvisor series"

_CONTAINER = 'pod!="", container!="", container!="POD", instance!=""'


def _v2(inner: str, by: str) -> str:
    """Finout's ``_v2`` form: rebuild ``node`` from cAdvisor's ``instance`` label."""
    return (
        f"sum without (instance) (label_replace(sum({inner}) by (instance, {by}, {PLACEHOLDER}), "
        '"node", "$1", "instance", "(.+)"))'
    )


@dataclass(frozen=True)
class Metric:
    """One exported metric: its name, its PromQL query and the exporters it relies on."""

    name: str
    query: str
    needs: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        validate_metric_name(self.name)
        if not self.query.strip():
            raise ValueError(f"metric {self.name!r} has an empty query")


def _requests(resource: str, kind: str = "requests") -> str:
    return (
        f'sum(kube_pod_container_resource_{kind}{{resource="{resource}"}}) '
        f"by (node, namespace, pod, container, {PLACEHOLDER})"
    )


def _node(resource: str, kind: str) -> str:
    return f'sum(kube_node_status_{kind}{{resource="{resource}"}}) by (node, {PLACEHOLDER})'


CATALOGUE: tuple[Metric, ...] = (
    Metric("cpu_requests", _requests("cpu"), (KSM,)),
    Metric("memory_requests", _requests("memory"), (KSM,)),
    Metric("cpu_limits", _requests("cpu", "limits"), (KSM,)),
    Metric("memory_limits", _requests("memory", "limits"), (KSM,)),
    Metric("gpu_requests", _requests("nvidia_com_gpu"), (KSM,)),
    Metric(
        "cpu_usage",
        f"sum(rate(container_cpu_usage_seconds_total{{{_CONTAINER}}}[1m])) "
        f"by (node, namespace, pod, container,{PLACEHOLDER})",
        (CADVISOR, NODE_RULE),
    ),
    Metric(
        "cpu_usage_v2",
        _v2(f"rate(container_cpu_usage_seconds_total{{{_CONTAINER}}}[1m])", "namespace, pod, container"),
        (CADVISOR,),
    ),
    Metric(
        "memory_usage",
        # Finout's published query, verbatim.
        'sum(node_namespace_pod_container:container_memory_working_set_bytes{pod!="", container!="",'
        f'container!="POD", instance!=""}}) by (node, namespace, pod, container, {PLACEHOLDER})',
        (CADVISOR, NODE_RULE),
    ),
    Metric(
        "memory_usage_v2",
        _v2(f"container_memory_working_set_bytes{{{_CONTAINER}}}", "namespace, pod, container"),
        (CADVISOR,),
    ),
    Metric(
        "bytes_received",
        'sum(rate(container_network_receive_bytes_total{pod!="", instance!=""}[5m])) '
        f"by (node, namespace, pod, {PLACEHOLDER})",
        (CADVISOR, NODE_RULE),
    ),
    Metric(
        "bytes_received_v2",
        _v2('rate(container_network_receive_bytes_total{pod!="", instance!=""}[5m])', "namespace, pod"),
        (CADVISOR,),
    ),
    Metric(
        "bytes_transmitted",
        'sum(rate(container_network_transmit_bytes_total{pod!="", instance!=""}[5m])) '
        f"by (node, namespace, pod, {PLACEHOLDER})",
        (CADVISOR, NODE_RULE),
    ),
    Metric(
        "bytes_transmitted_v2",
        _v2('rate(container_network_transmit_bytes_total{pod!="", instance!=""}[5m])', "namespace, pod"),
        (CADVISOR,),
    ),
    Metric("node_cpu_capacity", _node("cpu", "capacity"), (KSM,)),
    Metric("node_memory_capacity", _node("memory", "capacity"), (KSM,)),
    Metric("node_cpu_allocatable", _node("cpu", "allocatable"), (KSM,)),
    Metric("node_memory_allocatable", _node("memory", "allocatable"), (KSM,)),
    Metric("node_labels", "kube_node_labels", (KSM_LABELS,)),
    Metric("node_info", "kube_node_info", (KSM,)),
    Metric("pod_labels", "kube_pod_labels", (KSM_LABELS,)),
    Metric("pod_info", "kube_pod_info", (KSM,)),
    Metric("pod_owners", "kube_pod_owner", (KSM,)),
    Metric("namespace_labels", "kube_namespace_labels", (KSM,)),
    Metric("pvc_info", "kube_persistentvolumeclaim_info", (KSM,)),
    Metric("pvc_requests", "kube_persistentvolumeclaim_resource_requests_storage_bytes", (KSM,)),
    Metric("pv_capacity", "kube_persistentvolume_capacity_bytes", (KSM,)),
    Metric("pod_pvcs", "kube_pod_spec_volumes_persistentvolumeclaims_info", (KSM,)),
)

CATALOGUE_NAMES: tuple[str, ...] = tuple(m.name for m in CATALOGUE)

# Catalogue metrics that are legitimately empty on many clusters, and why (EXPECT_EMPTY's default).
EMPTY_IS_FINE = {
    "gpu_requests": "no GPU requests at this time (fine if the cluster runs no GPU workloads)",
    "pvc_info": "no persistent volume claims (fine if the cluster has none)",
    "pvc_requests": "no persistent volume claims (fine if the cluster has none)",
    "pv_capacity": "no persistent volumes (fine if the cluster has none)",
    "pod_pvcs": "no pods with persistent volume claims (fine if the cluster has none)",
}


def expected_empty(names: Iterable[str]) -> frozenset[str]:
    """EXPECT_EMPTY's default for a cluster exporting ``names``."""
    return frozenset(EMPTY_IS_FINE.keys() & set(names))


@dataclass(frozen=True)
class ExportSpec:
    """What a cluster exports each window and how a window is judged: the one value the clusters
    file gives every task, the CLI and the fleet page (with :class:`~finout_provider.target.S3Target`).

    :param metrics: the metrics, as the catalogue and EXTRA_QUERIES describe them (with ``needs``).
    :param time_frame: TIME_FRAME, the window length in seconds.
    :param step: STEP_SECONDS, the query resolution.
    :param expect_empty: EXPECT_EMPTY, metrics that may come back empty (default: the catalogue's
        GPU and volume metrics).
    :param thresholds: COMPLETENESS_MIN_SAMPLES and COMPLETENESS_MIN_SERIES.
    """

    metrics: tuple[Metric, ...] = CATALOGUE
    time_frame: int = 3600
    step: int = 60
    expect_empty: frozenset[str] = frozenset(EMPTY_IS_FINE)
    thresholds: Thresholds = field(default_factory=Thresholds)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "expect_empty", frozenset(self.expect_empty))

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.metrics]

    @property
    def points(self) -> int:
        """Points per series in one window."""
        return self.time_frame // self.step

    def __str__(self) -> str:
        """How the serialized DAG shows it (the queries stay in the DAG file, not in the database)."""
        return f"ExportSpec({len(self.metrics)} metrics, time_frame={self.time_frame}, step={self.step})"


class CatalogueError(ValueError):
    """A METRICS or EXTRA_QUERIES entry that cannot be used."""


def select(names: Sequence[str] | None = None, extra: Iterable[Mapping[str, str]] = ()) -> list[Metric]:
    """The catalogue, narrowed to ``names`` (METRICS) and extended with ``extra`` (EXTRA_QUERIES)."""
    by_name = {m.name: m for m in CATALOGUE}
    chosen: list[Metric] = []
    if names is None:
        chosen = list(CATALOGUE)
    else:
        for name in names:
            if name not in by_name:
                raise CatalogueError(
                    f"METRICS names {name!r}, which is not in the catalogue; known: " + ", ".join(CATALOGUE_NAMES)
                )
            chosen.append(by_name[name])
    for entry in extra:
        if not isinstance(entry, Mapping) or set(entry) != {"name", "query"}:
            raise CatalogueError("EXTRA_QUERIES entries must be mappings with exactly 'name' and 'query'")
        if not isinstance(entry["name"], str) or not isinstance(entry["query"], str):
            raise CatalogueError(f"EXTRA_QUERIES entry {entry['name']!r}: 'name' and 'query' must be text")
        try:
            metric = Metric(str(entry["name"]), str(entry["query"]), ("user-defined",))
        except ValueError as err:
            raise CatalogueError(f"EXTRA_QUERIES: {err}") from None
        chosen.append(metric)
    seen: set[str] = set()
    for metric in chosen:
        if metric.name in seen:
            raise CatalogueError(f"metric {metric.name!r} appears twice (METRICS/EXTRA_QUERIES)")
        seen.add(metric.name)
    return chosen


# --- %%%cluster_label rendering ---------------------------------------------------------------

_PLACEHOLDER_RE = re.compile(r"\s*,\s*%%%cluster_label\b|%%%cluster_label\s*,\s*|%%%cluster_label")
_IDENT_RE = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER_RE = re.compile(r"[0-9.][0-9A-Za-z_.+-]*")
_LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_NON_SELECTOR_WORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "start",
    "end",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
}


def quote_label_value(value: str) -> str:
    """``value`` as a double-quoted PromQL string."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _skip_string(query: str, i: int) -> int:
    quote = query[i]
    i += 1
    while i < len(query):
        if query[i] == "\\" and quote != "`":
            i += 2
            continue
        if query[i] == quote:
            return i + 1
        i += 1
    raise CatalogueError(f"unterminated string in query: {query!r}")


def _skip_group(query: str, i: int, opening: str, closing: str) -> int:
    depth = 0
    while i < len(query):
        char = query[i]
        if char in "\"'`":
            i = _skip_string(query, i)
            continue
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise CatalogueError(f"unbalanced {opening!r} in query: {query!r}")


def _next_char(query: str, i: int) -> tuple[int, str]:
    while i < len(query) and query[i].isspace():
        i += 1
    return i, query[i] if i < len(query) else ""


def _filter_selectors(query: str, matcher: str) -> str:
    """Add ``matcher`` (``label="value"``) to every series selector of ``query``."""
    out: list[str] = []
    i = 0
    while i < len(query):
        char = query[i]
        if char in "\"'`":
            end = _skip_string(query, i)
            out.append(query[i:end])
            i = end
        elif char == "[":
            end = _skip_group(query, i, "[", "]")
            out.append(query[i:end])
            i = end
        elif char == "{":
            end = _skip_group(query, i, "{", "}")
            body = query[i + 1 : end - 1]
            sep = "," if body.strip() else ""
            out.append("{" + matcher + sep + body + "}")
            i = end
        elif char.isdigit() or (char == "." and i + 1 < len(query) and query[i + 1].isdigit()):
            match = _NUMBER_RE.match(query, i)
            assert match is not None
            out.append(match.group())
            i = match.end()
        elif match := _IDENT_RE.match(query, i):
            word = match.group()
            out.append(word)
            i = match.end()
            nxt, following = _next_char(query, i)
            if word.lower() in _LABEL_LIST_KEYWORDS:
                if following == "(":
                    end = _skip_group(query, nxt, "(", ")")
                    out.append(query[i:end])
                    i = end
            elif word.lower() in _NON_SELECTOR_WORDS or following == "(":
                pass
            elif following == "{":
                out.append(query[i:nxt])
                i = nxt  # the "{" branch adds the matcher
            else:
                out.append("{" + matcher + "}")
        else:
            out.append(char)
            i += 1
    return "".join(out)


def render(query: str, cluster_label: str | None = None, cluster_value: str | None = None) -> str:
    """Resolve ``%%%cluster_label`` in ``query``.

    Without ``cluster_label`` the placeholder and its comma disappear. With it, the placeholder
    becomes the label and, when ``cluster_value`` is given, every selector is narrowed to it.
    """
    if not cluster_label:
        return _PLACEHOLDER_RE.sub("", query)
    rendered = query.replace(PLACEHOLDER, cluster_label)
    if cluster_value is None:
        return rendered
    return _filter_selectors(rendered, f"{cluster_label}={quote_label_value(cluster_value)}")
