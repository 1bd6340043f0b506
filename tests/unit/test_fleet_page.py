"""The fleet page: statuses kept fresh in the background, rows worst first with escaped names and
links to the DAG and the failing instance, and Airflow's authentication and authorization."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from finout_provider.checks.coverage import Coverage
from finout_provider.checks.status import ClusterStatus
from finout_provider.config.clusters import parse_document
from finout_provider.plugins.fleet import Failure, StatusCache, fleet_page

H = 3600
NOW = 1764763200  # 2025-12-03T12:00:00Z


def configs(*names: str) -> list[Any]:
    defaults = {"S3_BUCKET": "finout-metrics", "S3_PREFIX": "p", "HOSTNAME": "prom"}
    return list(parse_document({"defaults": defaults, "clusters": [{"CLUSTER_NAME": n} for n in names]}).clusters)


def status(name: str, newest: int | None, missing: int = 0) -> ClusterStatus:
    coverage = Coverage(name, H, windows={NOW - 2 * H: "complete", NOW - H: "missing" if missing else "complete"})
    found = ClusterStatus(name, NOW - 2 * H, NOW, NOW, 3 * H, coverage, newest=newest)
    found.problems = {"missing": [NOW - H] * missing, "partial": [], "corrupt": []}
    return found


def test_the_cache_reads_each_cluster_once_per_ttl_and_refreshes_in_the_background() -> None:
    calls: list[str] = []
    release = threading.Event()

    def compute(config: Any) -> ClusterStatus:
        calls.append(config.cluster_name)
        if len(calls) > 2:
            release.wait(5)  # a slow refresh: the page keeps showing what it had
        return status(config.cluster_name, NOW - 2 * H)

    cache = StatusCache(compute, ttl=0.2)
    fleet = configs("a", "b")
    first = cache.get(fleet, wait=5)
    assert sorted(calls) == ["a", "b"] and all(isinstance(s, ClusterStatus) for s in first.values())
    assert cache.get(fleet, wait=5) == first and len(calls) == 2  # within the TTL: from memory
    time.sleep(0.25)
    started = time.monotonic()
    stale = cache.get(fleet, wait=5)
    assert time.monotonic() - started < 1 and stale == first  # a stale entry is served, not waited for
    release.set()


def test_a_cluster_never_read_waits_at_most_the_given_time_and_errors_show_in_its_row() -> None:
    def compute(config: Any) -> ClusterStatus:
        if config.cluster_name == "slow":
            time.sleep(1)
        if config.cluster_name == "denied":
            raise PermissionError("AccessDenied on s3://finout-metrics/p/denied/ <Error>")
        return status(config.cluster_name, NOW - 2 * H)

    cache = StatusCache(compute, ttl=60)
    fleet = configs("slow", "denied", "fine")
    started = time.monotonic()
    outcomes = cache.get(fleet, wait=0.3)
    assert time.monotonic() - started < 0.9
    assert outcomes["slow"] is None and isinstance(outcomes["denied"], PermissionError)
    page = fleet_page(fleet, outcomes, {})
    assert (
        "reading S3..." in page
        and "cannot read S3: PermissionError: AccessDenied on s3://finout-metrics/p/denied/ &lt;Error&gt;" in page
    )


def test_rows_are_worst_first_escaped_and_linked_to_the_dag_and_the_failing_window() -> None:
    names = ("fresh", "stale-one", "eu.prod_1-a")
    outcomes: dict[str, Any] = {
        "fresh": status("fresh", NOW - H),
        "stale-one": status("stale-one", None, missing=1),
        "eu.prod_1-a": status("eu.prod_1-a", NOW - H, missing=1),
    }
    failure = Failure("export_window", "scheduled__2025-12-03T11:00:00+00:00", 3, "2025-12-03T10:00Z/11:00Z", "x")
    page = fleet_page(configs(*names), outcomes, {"finout_prometheus_stale-one": failure})
    rows = page.split('<table class="fleet">')[1].split("</table>")[0].split("<tr")[2:]
    assert [r.split('"')[1] for r in rows] == ["stale", "gaps", "ok"]
    assert '<a href="../dags/finout_prometheus_eu.prod_1-a" target="_top">eu.prod_1-a</a>' in rows[1]
    assert ('href="../dags/finout_prometheus_stale-one/runs/scheduled__2025-12-03T11%3A00%3A00%2B00%3A00/tasks/'
            'export_window/mapped/3" target="_top">export_window 2025-12-03T10:00Z/11:00Z</a>') in rows[0]  # fmt: skip
    assert "<h2>Clusters x windows (UTC)</h2>" in page and page.count('<td class="missing"') == 2


def test_no_readable_cluster_says_so() -> None:
    assert "No cluster of the clusters file is a DAG you may read." in fleet_page([], {}, {})


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The plugin's app, its clusters and failures stubbed, Airflow's auth manager a stand-in."""
    from finout_provider.compat import AIRFLOW_VERSION

    if (AIRFLOW_VERSION.major, AIRFLOW_VERSION.minor) < (3, 1):
        pytest.skip("the fleet page is an Airflow 3.1+ plugin")
    from finout_provider.plugins import app as plugin

    fleet = configs("team-a", "team-b")
    monkeypatch.setattr(plugin, "clusters", lambda: fleet)
    monkeypatch.setattr(plugin, "last_failures", lambda dag_ids: {})
    monkeypatch.setattr(plugin, "_cache", lambda: StatusCache(lambda c: status(c.cluster_name, NOW - H)))

    class AuthManager:
        async def get_user_from_token(self, token: str) -> Any:
            if token != "valid":
                from jwt import InvalidTokenError

                raise InvalidTokenError("bad")
            return "reader-of-team-a"

        def get_authorized_dag_ids(self, *, user: Any, method: str = "GET", **_: Any) -> set[str]:
            assert method == "GET"
            return {"finout_prometheus_team-a"} if user == "reader-of-team-a" else set()

    import airflow.api_fastapi.app as api_app
    from airflow.api_fastapi.core_api import security

    monkeypatch.setattr(api_app, "get_auth_manager", AuthManager)
    monkeypatch.setattr(security, "get_auth_manager", AuthManager)
    return plugin.create_app()


def test_the_page_needs_a_login_and_shows_only_the_dags_the_user_may_read(app: Any) -> None:
    from fastapi.testclient import TestClient

    client = TestClient(app)
    assert client.get("/").status_code == 401
    assert client.get("/", headers={"Authorization": "Bearer forged"}).status_code == 403
    page = client.get("/", cookies={"_token": "valid"})
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert ">team-a</a>" in page.text and "team-b" not in page.text


def test_the_plugin_registers_the_page_and_its_navigation_entry() -> None:
    from finout_provider.compat import AIRFLOW_VERSION
    from finout_provider.plugins.app import FinoutFleetPlugin, LazyApp

    if (AIRFLOW_VERSION.major, AIRFLOW_VERSION.minor) < (3, 1):
        assert FinoutFleetPlugin.fastapi_apps == [] and FinoutFleetPlugin.external_views == []
        return
    (app,) = FinoutFleetPlugin.fastapi_apps
    assert isinstance(app["app"], LazyApp) and app["url_prefix"] == "/finout"
    (view,) = FinoutFleetPlugin.external_views
    assert view["href"] == "/finout/" and view["destination"] == "nav" and view["category"] == "browse"
