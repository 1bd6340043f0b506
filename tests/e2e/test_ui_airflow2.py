"""The Airflow 2.11 UI as a user drives it, in Debian's headless Chromium: log in (a user made with
`airflow users create`), fill the trigger form's two date-time pickers, trigger with "Unpause"
left ticked, and see the run export exactly that range, its mapped instances named by window in the
grid. Airflow 2.11 is what MWAA and many managed images run.

Each step's screenshot is kept under ``test-artifacts/ui-airflow2/`` when the test fails.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pytest
import requests

from devtools.history import HistorySpec, PrometheusServer, build_tsdb, free_port, wait_http
from devtools.s3server import S3Server
from devtools.stack import AirflowStack, airflow_major, serving, wait_for
from finout_provider.plan.windows import Window
from finout_provider.s3.layout import build_key
from tests.conftest import ROOT

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.af2,
    pytest.mark.skipif(airflow_major() >= 3, reason="Airflow 3's UI is test_ui's"),
]
H = 3600
CLUSTER = "af2ui"
DAG_ID = f"finout_prometheus_{CLUSTER}"
METRICS = ["cpu_requests", "pod_labels"]
PREFIX = "k8s/prometheus"
BUCKET = "finout-af2-ui"
USER, PASSWORD = "admin", "finout-af2-password"
ARTIFACTS = ROOT / "test-artifacts" / "ui-airflow2"


class Site:
    """The stack, its webserver, and its REST API (``/api/v1``) as the user, with basic auth."""

    def __init__(self, stack: AirflowStack, base: str, s3: S3Server) -> None:
        self.stack, self.base, self.s3 = stack, base, s3

    def api(self, path: str) -> requests.Response:
        return requests.get(f"{self.base}/api/v1{path}", auth=(USER, PASSWORD), timeout=30)

    def run(self, run_id: str) -> dict[str, Any]:
        answer = self.api(f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}")  # a manual run id holds "+"
        answer.raise_for_status()
        return dict(answer.json())


@pytest.fixture(scope="module")
def site(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Airflow 2 on loopback (webserver and scheduler, SequentialExecutor), a login, and a cluster
    without history (BACKFILL_DAYS 0): a scheduled run exports only its own window."""
    now = int(time.time())
    end = now - now % H + H
    history = HistorySpec(clusters=(CLUSTER,), start=end - 12 * H, end=end, cluster_label="cluster",
                          nodes=1, pods_per_node=3, containers_per_pod=1)  # fmt: skip
    prometheus = PrometheusServer(build_tsdb(history, tmp_path_factory.mktemp("af2-ui-history"))).start()
    env = {
        "AIRFLOW__API__AUTH_BACKENDS": "airflow.providers.fab.auth_manager.api.auth.backend.basic_auth",
        "AIRFLOW__WEBSERVER__SECRET_KEY": "finout-af2-ui",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
    }
    cluster = {"CLUSTER_NAME": CLUSTER, "BACKFILL_DAYS": 0, "METRICS": METRICS, "CLUSTER_LABEL": "cluster"}
    stack = AirflowStack.one_cluster(cluster, prometheus.port, s3_server, BUCKET, PREFIX, extra_env=env)
    with serving(stack, [prometheus]):
        stack.migrate()
        stack.airflow("users", "create", "--username", USER, "--password", PASSWORD, "--role", "Admin",
                      "--firstname", "Ada", "--lastname", "Admin", "--email", "admin@example.com")  # fmt: skip
        port = free_port()
        stack.start("webserver", "--port", str(port), "--hostname", "127.0.0.1", "--workers", "1", log_name="webserver")
        stack.start("scheduler", "--skip-serve-logs", log_name="scheduler")
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health", timeout=180)
        session = Site(stack, base, s3_server)
        wait_for(stack, "the DAG to be parsed", lambda: session.api(f"/dags/{DAG_ID}").ok, 180)
        yield session


def picker_text(ts: int) -> str:
    """What the form's picker writes (moment's ``YYYY-MM-DDTHH:mm:ssZ`` in the browser's UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ts))


@pytest.mark.timeout(900)
def test_a_user_triggers_a_range_in_the_airflow_2_ui(site: Site) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from devtools.browser import chromium, steps

    now = int(time.time())
    last = now - now % H - H  # the newest window that has surely closed and settled
    starts = [last - H, last]
    with chromium() as browser, steps(browser, ARTIFACTS) as step:
        wait = WebDriverWait(browser, 60)
        browser.get(f"{site.base}/login/")
        wait.until(ec.presence_of_element_located((By.ID, "username"))).send_keys(USER)
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        step("login")
        browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        wait.until(ec.url_contains("/home"))

        run_id = trigger_range(browser, wait, site, starts[0], starts[-1] + H, step)
        wait_for(site.stack, "the manual run", lambda: _finished(site, run_id), 600, every=3)
        assert_windows_named(browser, wait, site, run_id, starts, step)
    client: Any = site.s3.client()
    for start in starts:
        for metric in METRICS:
            head = client.head_object(Bucket=BUCKET, Key=build_key(PREFIX, CLUSTER, metric, start))
            assert head["Metadata"]["finout-answer"] == "whole"


def trigger_range(browser: Any, wait: Any, site: Site, start: int, end: int, step: Any) -> str:
    """The trigger form, as a person fills it: both pickers, Unpause left ticked."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec

    browser.get(f"{site.base}/dags/{DAG_ID}/trigger")
    unpause = wait.until(ec.presence_of_element_located((By.ID, "unpause")))
    assert unpause.is_selected(), "Unpause is ticked by default"
    for name, moment in (("start", start), ("end", end)):
        field = browser.find_element(By.CSS_SELECTOR, f".datetimepicker input[name='element_{name}']")
        field.click()  # the picker opens
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(picker_text(moment))
        field.send_keys(Keys.TAB)
        assert field.get_attribute("value") == picker_text(moment)
    step("range-filled")
    browser.find_element(By.XPATH, "//button[@type='submit'][normalize-space()='Trigger']").click()
    flash = wait.until(ec.presence_of_element_located((By.XPATH, "//*[contains(text(), 'with new Run ID')]")))
    step("triggered")
    found = re.search(r"new Run ID (\S+),", flash.text)
    assert found, flash.text
    run_id = found.group(1)
    conf = site.run(run_id)["conf"]
    assert {k: int(datetime.fromisoformat(v).timestamp()) for k, v in conf.items()} == {"start": start, "end": end}
    return run_id


def _finished(site: Site, run_id: str) -> bool:
    state = site.run(run_id)["state"]
    assert state != "failed", site.stack.logs(match=f"run_id={run_id}")
    return bool(state == "success")


def assert_windows_named(browser: Any, wait: Any, site: Site, run_id: str, starts: list[int], step: Any) -> None:
    """The grid's Mapped Tasks tab names each export_window instance by its window."""
    from urllib.parse import urlencode

    from selenium.webdriver.common.by import By

    labels = [Window(s, s + H).label for s in starts]
    query = urlencode({"dag_run_id": run_id, "task_id": "export_window", "tab": "mapped_tasks"})
    browser.get(f"{site.base}/dags/{DAG_ID}/grid?{query}")
    wait.until(lambda b: labels[-1] in b.find_element(By.TAG_NAME, "body").text)
    step("mapped-instances")
    text = browser.find_element(By.TAG_NAME, "body").text
    assert all(label in text for label in labels), text
