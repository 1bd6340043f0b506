"""The fleet page inside Airflow 3.1+: a FastAPI app mounted by the api-server at ``/finout`` and an
entry in the UI's navigation.

It uses Airflow's own authentication (the UI's session cookie or an API token: without one, 401)
and authorization (a user sees the clusters whose DAGs they may read). On Airflow 2 the plugin
registers nothing; ``finout-provider status --html`` is the page there.
"""

from __future__ import annotations

import os
import time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.plugins_manager import AirflowPlugin

from finout_provider.compat import AIRFLOW_VERSION

if TYPE_CHECKING:
    from fastapi import FastAPI

    from finout_provider.config.clusters import ClusterConfig
    from finout_provider.plugins.fleet import Failure, StatusCache

URL_PREFIX = "/finout"
# Browse > Finout fleet: the page inside Airflow's frame (``url_route``), Airflow 3.1+.
NAV_ENTRY = {
    "name": "Finout fleet",
    "href": f"{URL_PREFIX}/",
    "destination": "nav",
    "category": "browse",
    "url_route": "finout-fleet",
}
FIRST_READ_WAIT = 1.0  # seconds a page waits for clusters never read before showing them as pending
STATUS_TTL = 300  # seconds a status is served before it is read again (in the background, 4 at a time)


@cache
def _cache() -> StatusCache:
    from finout_provider.checks.status import status_of
    from finout_provider.plugins.fleet import StatusCache

    return StatusCache(lambda config: status_of(config, int(time.time())), ttl=STATUS_TTL, workers=4)


_clusters_seen: dict[Path, tuple[float, list[ClusterConfig]]] = {}


def clusters() -> list[ClusterConfig]:
    """The valid clusters of the clusters file the DAG file reads, parsed again when it changes."""
    from finout_provider.compat import conf
    from finout_provider.config.clusters import default_path, load_file

    path = default_path(os.path.expanduser(conf.get("core", "dags_folder")))
    mtime = path.stat().st_mtime if path.exists() else -1.0
    seen = _clusters_seen.get(path)
    if seen is None or seen[0] != mtime:
        seen = (mtime, list(load_file(path).clusters) if mtime >= 0 else [])
        _clusters_seen[path] = seen
    return seen[1]


def last_failures(dag_ids: list[str]) -> dict[str, Failure]:
    """Each DAG's most recent task instance still failed (a cleared one that succeeded is not)."""
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from finout_provider.plugins.fleet import Failure

    found: dict[str, Failure] = {}
    with create_session() as session:
        for dag_id in dag_ids:
            newest = (TI.dag_id == dag_id) & (TI.state == "failed")
            ti = session.scalar(select(TI).where(newest).order_by(TI.end_date.desc()).limit(1))
            if ti is not None:
                when = ti.end_date.strftime("%Y-%m-%d %H:%MZ") if ti.end_date else ""
                found[dag_id] = Failure(ti.task_id, ti.run_id, ti.map_index, ti.rendered_map_index or "", when)
    return found


def create_app() -> FastAPI:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import Depends, FastAPI
    from fastapi.responses import HTMLResponse

    from finout_provider.plugins.fleet import fleet_page

    app = FastAPI(title="Finout fleet", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def page(user: Any = Depends(get_user)) -> HTMLResponse:  # noqa: B008 - FastAPI's idiom
        readable = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
        shown = [c for c in clusters() if c.dag_id in readable]
        outcomes = _cache().get(shown, FIRST_READ_WAIT)
        html = fleet_page(shown, outcomes, last_failures([c.dag_id for c in shown]))
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    return app


class LazyApp:
    """An ASGI app that builds the FastAPI app on its first request: every Airflow process loads
    plugins (workers, the scheduler, the CLI), only the api-server serves them."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await _app()(scope, receive, send)


@cache
def _app() -> FastAPI:
    return create_app()


def _fastapi_apps() -> list[dict[str, Any]]:
    if (AIRFLOW_VERSION.major, AIRFLOW_VERSION.minor) < (3, 1):
        return []
    return [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "Finout fleet"}]


class FinoutFleetPlugin(AirflowPlugin):
    """The fleet page (Airflow 3.1+): ``/finout/`` and "Finout fleet" under Browse."""

    name = "finout"
    fastapi_apps = _fastapi_apps()
    external_views = [NAV_ENTRY] if fastapi_apps else []
