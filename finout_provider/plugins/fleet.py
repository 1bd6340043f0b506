"""The fleet page: what ``finout-provider status`` shows, as one server-rendered HTML page.

Each cluster's status is read from S3 by :func:`~finout_provider.checks.status.status_of` (the CLI's
own), kept at most ``ttl`` seconds and refreshed in the background, so a page for a hundred
clusters answers from memory. Nothing here knows Airflow: :mod:`finout_provider.plugins.app` gives
it the clusters a user may see and their last failures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass
from html import escape
from urllib.parse import quote

from finout_provider.checks.coverage import fleet_grid_html, html_page
from finout_provider.checks.status import ClusterStatus, worst_first
from finout_provider.config.clusters import ClusterConfig
from finout_provider.plan.windows import iso

TITLE = "Finout export: the fleet"
Outcome = ClusterStatus | Exception


@dataclass(frozen=True)
class Failure:
    """A cluster's most recent failed task instance."""

    task_id: str
    run_id: str
    map_index: int
    label: str  # the window of an export instance (its rendered map index), else ""
    when: str


class StatusCache:
    """Each cluster's status, at most ``ttl`` seconds old; stale ones refresh in the background."""

    def __init__(self, compute: Callable[[ClusterConfig], ClusterStatus], ttl: float = 60, workers: int = 8) -> None:
        self._compute, self.ttl = compute, ttl
        self._done: dict[str, tuple[float, Outcome]] = {}
        self._running: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="finout-fleet")

    def get(self, configs: Sequence[ClusterConfig], wait: float) -> dict[str, Outcome | None]:
        """The newest outcome per cluster; waits up to ``wait`` seconds for clusters never read."""
        now = time.monotonic()
        with self._lock:
            for config in configs:
                name = config.cluster_name
                done = self._done.get(name)
                if (done is None or now - done[0] >= self.ttl) and name not in self._running:
                    self._running[name] = self._pool.submit(self._refresh, config)
            first = [self._running[c.cluster_name] for c in configs if c.cluster_name not in self._done]
        wait_for(first, timeout=wait)
        with self._lock:
            return {
                c.cluster_name: self._done[c.cluster_name][1] if c.cluster_name in self._done else None for c in configs
            }

    def _refresh(self, config: ClusterConfig) -> None:
        try:
            outcome: Outcome = self._compute(config)
        except Exception as err:  # noqa: BLE001  (shown on the page, in the cluster's row)
            outcome = err
        with self._lock:
            self._done[config.cluster_name] = (time.monotonic(), outcome)
            self._running.pop(config.cluster_name, None)


def _counts(status: ClusterStatus) -> str:
    cells = [len(status.problems.get(kind, ())) for kind in ("missing", "partial", "corrupt")]
    return "".join(f"<td>{n or ''}</td>" for n in (*cells, len(status.incomplete)))


def _failure_cell(dag_id: str, failure: Failure | None) -> str:
    if failure is None:
        return "<td></td>"
    path = f"../dags/{quote(dag_id, safe='')}/runs/{quote(failure.run_id, safe='')}/tasks/{quote(failure.task_id)}"
    if failure.map_index >= 0:
        path += f"/mapped/{failure.map_index}"
    what = f"{failure.task_id} {failure.label}".strip()
    return f'<td><a href="{escape(path)}" target="_top">{escape(what)}</a> {escape(failure.when)}</td>'


def _row(config: ClusterConfig, outcome: Outcome | None, failure: Failure | None) -> str:
    dag = f'<a href="../dags/{quote(config.dag_id, safe="")}" target="_top">{escape(config.cluster_name)}</a>'
    if not isinstance(outcome, ClusterStatus):
        what = "reading S3..." if outcome is None else f"cannot read S3: {type(outcome).__name__}: {outcome}"
        failed = _failure_cell(config.dag_id, failure)
        return f'<tr class="unknown"><td>{dag}</td><td colspan="7">{escape(what[:300])}</td>{failed}</tr>'
    newest = iso(outcome.newest) if outcome.newest is not None else "none"
    age = f"{outcome.age / 3600:.1f}" if outcome.age is not None else ""
    return (
        f'<tr class="{outcome.state}"><td>{dag}</td><td>{outcome.state}</td><td>{newest}</td><td>{age}</td>'
        f"{_counts(outcome)}{_failure_cell(config.dag_id, failure)}</tr>"
    )


HEADER = (
    "cluster",
    "state",
    "newest complete window",
    "age (h)",
    "missing",
    "partial",
    "corrupt",
    "incomplete",
    "last failure",
)
STYLE = (
    "table.fleet{border-collapse:collapse}table.fleet td,table.fleet th{padding:2px 8px;text-align:left}"
    "tr.stale td{background:#f8d0d0}tr.gaps td{background:#fbeec0}tr.unknown td{color:#666}"
)


def fleet_page(
    configs: Sequence[ClusterConfig], outcomes: Mapping[str, Outcome | None], failures: Mapping[str, Failure]
) -> str:
    """The page: one row per cluster (worst first), then clusters x windows."""
    known = [o for o in outcomes.values() if isinstance(o, ClusterStatus)]
    order = {s.cluster: i for i, s in enumerate(worst_first(known))}
    ordered = sorted(configs, key=lambda c: (order.get(c.cluster_name, -1), c.cluster_name))
    rows = "".join(_row(c, outcomes.get(c.cluster_name), failures.get(c.dag_id)) for c in ordered)
    head = "".join(f"<th>{h}</th>" for h in HEADER)
    table = f'<style>{STYLE}</style><table class="fleet"><tr>{head}</tr>{rows}</table>'
    if not configs:
        table = "<p>No cluster of the clusters file is a DAG you may read.</p>"
    grid = fleet_grid_html([s.coverage for s in worst_first(known)]) if known else ""
    return html_page(TITLE, table + "<h2>Clusters x windows (UTC)</h2>" + grid)
