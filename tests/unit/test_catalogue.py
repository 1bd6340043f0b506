from __future__ import annotations

import pytest

from finout_provider.catalogue import CATALOGUE, CatalogueError, render, select

REQUIRED = {
    "cpu_requests",
    "cpu_usage",
    "cpu_usage_v2",
    "memory_usage",
    "memory_usage_v2",
    "bytes_received",
    "bytes_received_v2",
    "bytes_transmitted",
    "bytes_transmitted_v2",
}


def test_catalogue_keeps_finout_names_and_says_what_it_needs() -> None:
    names = {m.name for m in CATALOGUE}
    assert names >= REQUIRED
    assert all(m.needs for m in CATALOGUE)
    assert len(names) == len(CATALOGUE)


def test_finout_published_queries_are_verbatim() -> None:
    query = next(m.query for m in CATALOGUE if m.name == "memory_usage")
    assert query == (
        'sum(node_namespace_pod_container:container_memory_working_set_bytes{pod!="", container!="",'
        'container!="POD", instance!=""}) by (node, namespace, pod, container, %%%cluster_label)'
    )
    assert next(m.query for m in CATALOGUE if m.name == "cpu_usage") == (
        'sum(rate(container_cpu_usage_seconds_total{pod!="", container!="", container!="POD", instance!=""}[1m])) '
        "by (node, namespace, pod, container,%%%cluster_label)"
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("sum(x) by (a, %%%cluster_label)", "sum(x) by (a)"),
        ("sum(x) by (a,%%%cluster_label)", "sum(x) by (a)"),
        ("sum(x) by (%%%cluster_label, a)", "sum(x) by (a)"),
        ("sum(x) by (%%%cluster_label)", "sum(x) by ()"),
    ],
)
def test_placeholder_and_its_comma_disappear(query: str, expected: str) -> None:
    assert render(query) == expected


def test_cluster_label_replaces_and_filters_every_selector() -> None:
    query = next(m.query for m in CATALOGUE if m.name == "cpu_usage_v2")
    rendered = render(query, "k8s_cluster", 'a "quoted" \\ name')
    assert "%%%" not in rendered
    assert 'container_cpu_usage_seconds_total{k8s_cluster="a \\"quoted\\" \\\\ name",pod!=""' in rendered
    assert "by (instance, namespace, pod, container, k8s_cluster)" in rendered
    assert '"node", "$1", "instance", "(.+)"' in rendered  # strings untouched


def test_filter_handles_bare_selectors_keywords_and_durations() -> None:
    rendered = render(
        'sum by (a) (rate(x[5m] offset 1h)) / on(a) group_left(b) {__name__="y"} > bool 0.5 and z', "c", "v"
    )
    assert rendered == (
        'sum by (a) (rate(x{c="v"}[5m] offset 1h)) / on(a) group_left(b) {c="v",__name__="y"} > bool 0.5 and z{c="v"}'
    )


def test_select_errors() -> None:
    with pytest.raises(CatalogueError, match="not in the catalogue"):
        select(["nope"])
    with pytest.raises(CatalogueError, match="twice"):
        select(["cpu_requests"], [{"name": "cpu_requests", "query": "up"}])
    with pytest.raises(CatalogueError, match="exactly 'name' and 'query'"):
        select(None, [{"name": "x"}])
