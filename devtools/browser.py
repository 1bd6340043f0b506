"""Debian's headless Chromium driven by Selenium, for tests that use the Airflow UI as a person does."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@contextmanager
def chromium(downloads: Path | None = None) -> Iterator[Any]:
    """A headless Chromium (Debian's ``chromium`` and ``chromium-driver``) with its own profile,
    1400x1000, UTC; quit when the block ends."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert binary and driver, "Debian's chromium and chromium-driver are needed (make system-deps installs them)"
    profile = tempfile.mkdtemp(prefix="finout-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    flags = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-quic", "--window-size=1400,1000", f"--user-data-dir={profile}", "--lang=en-US")  # fmt: skip
    for flag in flags:
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "UTC"})
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


@contextmanager
def steps(browser: Any, artifacts: Path) -> Iterator[Any]:
    """``step(name)`` screenshots the page after each step into a new folder of ``artifacts``; all
    are kept when the block fails, or always with ``FINOUT_KEEP_SCREENSHOTS`` set (README's pictures)."""
    shots = artifacts / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    shots.mkdir(parents=True, exist_ok=True)
    count = [0]

    def step(name: str) -> None:
        count[0] += 1
        browser.save_screenshot(str(shots / f"{count[0]:02d}-{name}.png"))

    try:
        yield step
    except BaseException:
        step("failed")
        print(f"screenshots of each step: {shots}")
        raise
    if not os.environ.get("FINOUT_KEEP_SCREENSHOTS"):
        shutil.rmtree(shots, ignore_errors=True)
