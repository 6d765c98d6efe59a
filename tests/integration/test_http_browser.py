"""The results pages in a real browser: Debian's chromium, headless, driven by Selenium
through the system chromium-driver (nothing is downloaded).

A study is sent to a real in-process node, its job is done by ``reporting_demo`` (an SR
with a finding and four SC images); the browser is refused without the token, signs in,
opens the study (the finding's text, SC thumbnails decoded and not blank), filters the
jobs by state and looks at the deliveries and models. Screenshots of each page go to
``$HTTP_SCREENSHOTS`` (or the test's temporary folder).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import insert

from dicom_node.db.models import ModelVersion
from dicom_node.http.thumbnails import encode_png
from tests.integration.conftest import store_files
from tests.integration.http_node import WRITE_TOKEN, HttpNode, start_http_node
from tests.peers import wait_until

pytestmark = pytest.mark.timeout(90)

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

#: Every SC thumbnail on the page: loaded, decoded, and with more than one grey level
#: (drawn into a canvas and read back).
THUMBNAILS_JS = """
return Array.from(document.querySelectorAll('img.thumb')).map(function (img) {
  if (!img.complete || img.naturalWidth === 0) { return [img.naturalWidth, 0]; }
  var canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  var ctx = canvas.getContext('2d'); ctx.drawImage(img, 0, 0);
  var data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  var low = 255, high = 0;
  for (var i = 0; i < data.length; i += 4) {
    low = Math.min(low, data[i], data[i + 1], data[i + 2]);
    high = Math.max(high, data[i], data[i + 1], data[i + 2]);
  }
  return [img.naturalWidth, high - low];
});
"""


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not fetch a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1100"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def _screenshot(browser: Any, path: Path) -> None:
    """The whole page (the window made as tall as the page, at most 4000 pixels)."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(max(int(height) + 140, 600), 4000))
    browser.save_screenshot(str(path))


def _register_model(node: HttpNode) -> None:
    """A model version with card metrics and a plot in its folder, as the models page
    shows them (written straight into the registry: no network is needed here)."""
    folder = node.node.settings.model_dir / "reporting_demo" / "v1"
    folder.mkdir(parents=True)
    ramp = np.tile(np.linspace(0, 255, 120).astype(np.uint8), (80, 1))
    (folder / "roc.png").write_bytes(encode_png(ramp))
    with node.node.parts.engine.begin() as conn:
        conn.execute(
            insert(ModelVersion).values(
                pipeline="reporting_demo",
                version="v1",
                path="reporting_demo/v1",
                sha256="0" * 64,
                created_at=datetime.now(UTC),
                active=True,
                metrics={"auroc": 0.93},
            )
        )


def test_a_round_trip_seen_in_chromium(
    browser: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_instance: Any,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    shots = Path(os.environ.get("HTTP_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    node = start_http_node(tmp_path / "node", monkeypatch)
    try:
        study = generate_uid()
        assert store_files(node.port, [make_instance(study_uid=study)]).statuses == [0]
        node.run_job()
        wait_until(
            lambda: node.scalar("select count(*) from deliveries where state = 'dead'") == 5,
            timeout=20,
        )
        _register_model(node)

        # Without the token: the sign-in page, no study.
        browser.get(node.url + "/studies")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"
        assert study not in browser.page_source
        _screenshot(browser, shots / "1-refused.png")

        browser.find_element(By.ID, "token").send_keys("not the token")
        browser.find_element(By.ID, "sign-in").click()
        wait_until(lambda: "That token is not valid." in browser.page_source, timeout=10)
        browser.find_element(By.ID, "token").send_keys(WRITE_TOKEN)
        browser.find_element(By.ID, "sign-in").click()
        wait_until(lambda: browser.current_url.endswith("/studies"), timeout=10)

        # The studies list, then the study.
        assert browser.find_element(By.TAG_NAME, "h1").text == "Studies"
        row = browser.find_element(By.ID, "studies").text
        assert study in row and "reporting_demo: 1 done" in row and "stable" in row
        _screenshot(browser, shots / "2-studies.png")
        browser.find_element(By.LINK_TEXT, study).click()
        wait_until(lambda: browser.current_url.endswith(f"/studies/{study}"), timeout=10)
        page = browser.find_element(By.TAG_NAME, "main").text
        assert "Abnormality: Present" in page  # the finding, from the SR content
        assert "angle=93.25 deg" in page  # a measurement, from the results log
        assert "Test^Integration" not in browser.page_source
        wait_until(
            lambda: (
                browser.execute_script(THUMBNAILS_JS)
                and all(width > 0 for width, _ in browser.execute_script(THUMBNAILS_JS))
            ),
            timeout=10,
            message="SC thumbnails did not load",
        )
        thumbnails = browser.execute_script(THUMBNAILS_JS)
        assert len(thumbnails) == 4
        assert all(width > 0 and spread > 0 for width, spread in thumbnails), thumbnails
        assert len(browser.find_elements(By.XPATH, "//button[text()='Send again']")) == 5
        _screenshot(browser, shots / "3-study.png")

        # Jobs filtered by state with the form.
        browser.get(node.url + "/jobs")
        Select(browser.find_element(By.ID, "state")).select_by_value("done")
        browser.find_element(By.ID, "filter").click()
        wait_until(lambda: "state=done" in browser.current_url, timeout=10)
        rows = browser.find_elements(By.CLASS_NAME, "job-row")
        assert len(rows) == 1 and "reporting_demo" in rows[0].text
        _screenshot(browser, shots / "4-jobs-done.png")
        Select(browser.find_element(By.ID, "state")).select_by_value("failed")
        browser.find_element(By.ID, "filter").click()
        wait_until(lambda: "state=failed" in browser.current_url, timeout=10)
        assert "No jobs match." in browser.find_element(By.ID, "jobs").text

        browser.get(node.url + "/deliveries?state=dead")
        assert len(browser.find_elements(By.CLASS_NAME, "delivery-row")) == 5
        _screenshot(browser, shots / "5-deliveries.png")

        browser.get(node.url + "/models")
        assert "auroc = 0.93" in browser.find_element(By.ID, "models").text
        (plot,) = browser.execute_script(THUMBNAILS_JS)
        assert plot[0] == 120 and plot[1] > 200
        _screenshot(browser, shots / "6-models.png")
    finally:
        node.node.stop()
