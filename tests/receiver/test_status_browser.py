"""The status page in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by selenium):
red rows look red, the countdown runs, and clicking Retry puts the failed job back on its queue.

Set ``GRAPHHOOK_SCREENSHOT=docs/status-page.png`` to refresh the screenshot in docs/observability.md.
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest

from graphhook.core import jobformat
from graphhook.devserver import BackgroundServer
from receiver.app import create_app

from .test_status import PASSWORD, QUEUE, USER, seed, status_settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver")


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                 f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1280,1100"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    # Basic auth on every request the page makes, the retry form's POST included.
    credentials = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {credentials}"}})
    yield driver
    driver.quit()


@pytest.fixture
def served(redis_server, redis_client):
    app = create_app(status_settings(redis_server.url, status_user=USER, status_password=PASSWORD),
                     redis_client=redis_client)
    server = BackgroundServer(app).start()
    yield server.url
    server.stop()


def test_status_page_in_chromium_and_retry_button(browser, served, redis_client, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    job_id = seed(redis_client)
    browser.get(f"{served}/status")
    assert browser.title == "(2) graphhook status"

    rows = {row.get_attribute("data-health"): row for row in browser.find_elements(By.CSS_SELECTOR, "#subscriptions tr[data-health]")}
    assert set(rows) == {"ok", "at_risk", "renew_failed"}
    red_background = "rgba(255, 235, 233, 1)"
    cell = rows["at_risk"].find_element(By.CSS_SELECTOR, "td")
    assert cell.value_of_css_property("background-color") == red_background
    assert rows["ok"].find_element(By.CSS_SELECTOR, "td").value_of_css_property("background-color") != red_background
    badge = rows["renew_failed"].find_element(By.CSS_SELECTOR, ".health")
    assert badge.text == "renew_failed" and badge.value_of_css_property("background-color") == "rgba(207, 34, 46, 1)"

    # The countdown is live: the script rewrites it from the expiry time.
    countdown = rows["at_risk"].find_element(By.CSS_SELECTOR, "td.countdown")
    first = countdown.text
    WebDriverWait(browser, 10).until(lambda _: countdown.text != first)
    assert countdown.text.startswith("2h 5")

    screenshot = tmp_path / "status.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("GRAPHHOOK_SCREENSHOT"):
        shutil.copyfile(screenshot, Path(os.environ["GRAPHHOOK_SCREENSHOT"]))

    failed = browser.find_element(By.CSS_SELECTOR, f'#failed tr[data-job="{job_id}"]')
    assert "TypeError" in failed.text
    failed.find_element(By.CSS_SELECTOR, "button.retry").click()

    notice = WebDriverWait(browser, 15).until(seen.presence_of_element_located((By.ID, "notice")))
    assert notice.text == f"job {job_id} requeued"
    assert "no failed jobs" in browser.find_element(By.ID, "failed").text
    queue = jobformat.queue(QUEUE, redis_client)
    assert queue.job_ids == [job_id] and queue.failed_job_registry.count == 0
    queued_cell = browser.find_element(By.CSS_SELECTOR, "#queues tr:nth-child(2) td:nth-child(2)")
    assert queued_cell.text == "1"
