"""The Airflow UI as a user drives it, in Debian's headless Chromium: log in, trigger a 6-hour range
through the form (with "Unpause on trigger" left ticked and history to export), see it start at
once with its mapped instances named by window, clear one window and compare the object's bytes,
follow the S3 link, open the fleet page from the navigation, and be refused without a login.

Each step's screenshot is kept under ``test-artifacts/ui/`` when the test fails (always, with
``FINOUT_KEEP_SCREENSHOTS=1``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import pytest
import requests

from devtools.history import HistorySpec, PrometheusServer, build_tsdb, free_port
from devtools.s3server import S3Server
from devtools.stack import AirflowStack, api_server_env, serving, wait_for
from finout_provider.links import folder_url
from finout_provider.plan.windows import Window
from finout_provider.s3.layout import build_key, day_folder
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e
H = 3600
CLUSTER = "ui"
DAG_ID = f"finout_prometheus_{CLUSTER}"
METRICS = ["cpu_requests", "pod_labels"]
PREFIX = "k8s/prometheus"
USER, PASSWORD = "admin", "finout-ui-password"
ARTIFACTS = ROOT / "test-artifacts" / "ui"


def _airflow_at_least_3_1() -> bool:
    from finout_provider.compat import AIRFLOW_VERSION

    return (AIRFLOW_VERSION.major, AIRFLOW_VERSION.minor) >= (3, 1)


@pytest.fixture(scope="module")
def history() -> HistorySpec:
    now = int(time.time())
    end = now - now % H + H
    return HistorySpec(clusters=(CLUSTER,), start=end - 12 * H, end=end, cluster_label="cluster")


@pytest.fixture(scope="module")
def ui(history: HistorySpec, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UI]:
    """Airflow 3 on loopback (api-server, scheduler, dag-processor, triggerer) with a login."""
    if not _airflow_at_least_3_1():
        pytest.skip("the fleet page and this UI are Airflow 3.1+'s")
    prometheus = PrometheusServer(build_tsdb(history, tmp_path_factory.mktemp("ui-history"))).start()
    port = free_port()
    passwords = tmp_path_factory.mktemp("ui-auth") / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    env = api_server_env(port) | {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
    }
    cluster = {"CLUSTER_NAME": CLUSTER, "BACKFILL_DAYS": 1, "METRICS": METRICS}
    stack = AirflowStack.one_cluster(cluster, prometheus.port, s3_server, "finout-ui", PREFIX, extra_env=env)
    with serving(stack, [prometheus]):
        stack.migrate()
        base = stack.start_airflow3(port)
        stack.start("triggerer", "--skip-serve-logs", log_name="triggerer")
        session = UI(stack, base, s3_server, "finout-ui")
        wait_for(stack, "the DAG to be parsed", lambda: session.api("GET", f"/dags/{DAG_ID}", check=False).ok, 180)
        yield session


class UI:
    """The stack, its REST API as the logged-in user, and the bucket."""

    def __init__(self, stack: AirflowStack, base: str, s3: S3Server, bucket: str) -> None:
        self.stack, self.base, self.s3, self.bucket = stack, base, s3, bucket
        self._token = ""

    def api(self, method: str, path: str, check: bool = True, **kwargs: Any) -> requests.Response:
        if not self._token:
            answer = requests.post(f"{self.base}/auth/token", json={"username": USER, "password": PASSWORD}, timeout=30)
            answer.raise_for_status()
            self._token = answer.json()["access_token"]
        response = requests.request(method, f"{self.base}/api/v2{path}", timeout=30,
                                    headers={"Authorization": f"Bearer {self._token}"}, **kwargs)  # fmt: skip
        if check:
            response.raise_for_status()
        return response

    def runs(self) -> list[dict[str, Any]]:
        return list(self.api("GET", f"/dags/{DAG_ID}/dagRuns").json()["dag_runs"])

    def object(self, key: str) -> dict[str, Any]:
        return self.s3.client().get_object(Bucket=self.bucket, Key=key)  # type: ignore[attr-defined,no-any-return]


def iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def label(start: int) -> str:
    """The mapped instance's name, from the one home of it (a window ending at midnight names its day)."""
    return Window(start, start + H).label


def test_a_user_works_in_the_airflow_ui(ui: UI) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from devtools.browser import chromium, steps

    # Without a login the fleet page is refused, with a forged token too.
    assert requests.get(f"{ui.base}/finout/", timeout=30).status_code == 401
    forged = requests.get(f"{ui.base}/finout/", headers={"Authorization": "Bearer forged"}, timeout=30)
    assert forged.status_code in (401, 403)

    now = int(time.time())
    last = now - now % H - H  # the newest window that has surely closed and settled
    starts = list(range(last - 5 * H, last + H, H))  # six windows: the 6-hour range
    with chromium() as browser, steps(browser, ARTIFACTS) as step:
        wait = WebDriverWait(browser, 60)
        browser.get(f"{ui.base}/")
        wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys(USER)
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        step("login")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(ec.url_to_be(f"{ui.base}/"))

        run_id = trigger_range(browser, wait, ui, starts[0], starts[-1] + H, step)
        assert_starts_at_once(ui, run_id)
        assert_windows_named(browser, wait, ui, run_id, starts, step)
        clear_one_window(browser, wait, ui, run_id, starts, step)
        follow_the_link(browser, wait, ui, run_id, starts, step)
        open_the_fleet_page(browser, wait, step)


def trigger_range(browser: Any, wait: Any, ui: UI, start: int, end: int, step: Any) -> str:
    """The trigger form, as a person fills it: the two date-time pickers, Unpause left ticked."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec

    browser.get(f"{ui.base}/dags/{DAG_ID}")
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button[aria-label='Trigger Dag']"))).click()
    unpause = wait.until(ec.presence_of_element_located((By.XPATH, "//label[contains(., 'Unpause')]//input")))
    assert unpause.is_selected(), "Unpause on trigger is ticked by default"
    for moment in (start, end):
        browser.find_elements(By.XPATH, "//p[contains(text(), 'Select date and time')]")[0].click()
        day = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "input[placeholder='YYYY/MM/DD']")))
        day.send_keys(time.strftime("%Y/%m/%d", time.gmtime(moment)))
        clock = browser.find_element(By.CSS_SELECTOR, "input[placeholder='HH:mm']")
        clock.click()
        clock.send_keys(Keys.CONTROL, "a")
        clock.send_keys(time.strftime("%H:%M", time.gmtime(moment)))
        clock.send_keys(Keys.TAB)
        browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    step("range-filled")
    browser.find_element(By.XPATH, "//button[normalize-space()='Trigger' and not(@aria-label)]").click()
    wait.until(ec.url_contains(f"/dags/{DAG_ID}/runs/manual__"))
    step("triggered")
    run_id = unquote(browser.current_url.split("/runs/", 1)[1])
    conf = ui.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}").json()["conf"]
    assert {k: int(datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()) for k, v in conf.items()} == {
        "start": start,
        "end": end,
    }
    return run_id


def assert_starts_at_once(ui: UI, run_id: str) -> None:
    """The range runs beside the first scheduled run ("Unpause on trigger" created it), not after."""

    def started() -> list[dict[str, Any]] | None:
        runs = ui.runs()
        return runs if len(runs) >= 2 and all(r["start_date"] for r in runs) else None

    runs = wait_for(ui.stack, "both runs to start", started, 120)
    manual = next(r for r in runs if r["dag_run_id"] == run_id)
    scheduled = next(r for r in runs if r["run_type"] == "scheduled")
    queued, started = (datetime.fromisoformat(manual[k].replace("Z", "+00:00")) for k in ("queued_at", "start_date"))
    assert (started - queued).total_seconds() < 30, manual
    end_of_scheduled = scheduled["end_date"]
    assert end_of_scheduled is None or manual["start_date"] < end_of_scheduled, (manual, scheduled)
    wait_for(ui.stack, "the manual run", lambda: _finished(ui, run_id), 400)


def _finished(ui: UI, run_id: str) -> bool:
    state = ui.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}").json()["state"]
    assert state != "failed", ui.stack.logs(match=f"run_id={run_id}")
    return bool(state == "success")


def assert_windows_named(browser: Any, wait: Any, ui: UI, run_id: str, starts: list[int], step: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    browser.get(f"{ui.base}/dags/{DAG_ID}/runs/{run_id}/tasks/export_window/mapped")
    wait.until(ec.presence_of_element_located((By.XPATH, f"//*[contains(text(), '{label(starts[-1])}')]")))
    step("mapped-instances")
    text = browser.find_element(By.TAG_NAME, "body").text
    assert all(label(s) in text for s in starts), text
    for start in starts:
        for metric in METRICS:
            assert ui.object(build_key(PREFIX, CLUSTER, metric, start))["Metadata"]["finout-answer"] == "whole"


def clear_one_window(browser: Any, wait: Any, ui: UI, run_id: str, starts: list[int], step: Any) -> None:
    """Clear from the mapped instance's page: the same keys get byte-identical objects."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    index = 2
    instance = ui.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/export_window/{index}").json()
    assert instance["rendered_map_index"] == label(starts[index])
    keys = [build_key(PREFIX, CLUSTER, m, starts[index]) for m in METRICS]
    before = {k: ui.object(k) for k in keys}
    bodies = {k: v["Body"].read() for k, v in before.items()}
    time.sleep(1.1)  # LastModified has one-second resolution
    browser.get(f"{ui.base}/dags/{DAG_ID}/runs/{run_id}/tasks/export_window/mapped/{index}")
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button[aria-label='Press shift+c to clear']"))).click()
    confirm = wait.until(ec.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Confirm']")))
    step("clear-dialog")
    confirm.click()
    path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/export_window/{index}"
    wait_for(ui.stack, "the cleared window to run again",
             lambda: (ti := ui.api("GET", path).json())["try_number"] > instance["try_number"]
             and ti["state"] == "success", 300)  # fmt: skip
    for key in keys:
        after = ui.object(key)
        assert after["Body"].read() == bodies[key]
        assert after["LastModified"] > before[key]["LastModified"]
    step("cleared")


def follow_the_link(browser: Any, wait: Any, ui: UI, run_id: str, starts: list[int], step: Any) -> None:
    """The "S3 export" link (Details tab) opens the S3 endpoint's listing of the window's day."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    browser.get(f"{ui.base}/dags/{DAG_ID}/runs/{run_id}/tasks/export_window/mapped/0/details")
    link = wait.until(ec.presence_of_element_located((By.XPATH, "//a[contains(., 'S3 export')]")))
    day = day_folder(PREFIX, CLUSTER, starts[0])
    assert link.get_attribute("href") == folder_url(ui.bucket, day, ui.s3.url)
    step("extra-link")
    browser.get(link.get_attribute("href"))
    assert f"{day}metric={METRICS[0]}/" in browser.page_source
    step("s3-listing")


def open_the_fleet_page(browser: Any, wait: Any, step: Any) -> None:
    """Browse > Finout fleet: the cluster's row, linked to its DAG."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    browser.back()
    browser.back()
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button[aria-label='Browse']"))).click()
    wait.until(ec.element_to_be_clickable((By.XPATH, "//*[@role='menuitem'][contains(., 'Finout fleet')]"))).click()
    frame = wait.until(ec.presence_of_element_located((By.TAG_NAME, "iframe")))
    browser.switch_to.frame(frame)
    row_path = f"//table[@class='fleet']//tr[td/a[text()='{CLUSTER}']]"
    row = wait.until(ec.presence_of_element_located((By.XPATH, row_path)))
    assert row.find_element(By.TAG_NAME, "a").get_attribute("href").endswith(f"/dags/{DAG_ID}")
    deadline = time.monotonic() + 120
    while row.get_attribute("class") == "unknown":  # "reading S3..." on a first, slow read: reload, as a user does
        assert "reading S3..." in row.text and time.monotonic() < deadline, row.text
        time.sleep(2)
        browser.execute_script("location.reload()")  # the frame's page, not Airflow's
        wait.until(ec.staleness_of(row))
        row = wait.until(ec.presence_of_element_located((By.XPATH, row_path)))
    step("fleet-page")
    assert row.get_attribute("class") in ("ok", "gaps"), row.text
    browser.switch_to.default_content()
