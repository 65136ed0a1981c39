"""The web page as a person uses it, in a real headless Chromium: a plate arrives live from a frame
published on a real mosquitto, a one-character misread finds it, its visit opens, a plate added to a
list flags its next frame, and off loopback the page asks for a password first.

The screenshots in docs/images/ are made by this test: PLATE_BRIDGE_SCREENSHOTS=docs/images pytest
tests/test_web_browser.py (elsewhere they go to the test's temporary folder).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.config import load_config
from bridge.extensions.web import WebExtension
from bridge.extensions.web.extension import open_web
from bridge.service import Bridge
from tests.browser import chromium, why_not
from tests.conftest import Collector, Mosquitto
from tests.emulator import ReaderEmulator
from tests.images import jpeg
from tests.test_web import PASSWORD, local_address

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]
BASE = "plate-bridge"
WAIT = 20.0


@pytest.fixture
def browser() -> Iterator[Any]:
    reason = why_not()
    if reason:
        pytest.skip(reason)
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("PLATE_BRIDGE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def result(plate: str, score: float = 0.91) -> dict[str, Any]:
    return {
        "box": {"xmin": 210, "ymin": 300, "xmax": 430, "ymax": 350},
        "plate": plate,
        "score": score,
        "region": {"code": "gb", "score": 0.8},
        "candidates": [{"plate": plate, "score": score}],
    }


def send_frame(emulator: ReaderEmulator, collector: Collector, camera: str, plate: str, seed: str) -> None:
    image = jpeg(640, 480, text=f"{plate} {seed}")
    emulator.set_response(image, {"processing_time": 5.0, "results": [result(plate.lower())]})
    collector.publish(f"cameras/{camera}/image", image)


def wait(driver: Any, condition: Any, what: str, timeout: float = WAIT) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition, message=what)


def live_row(plate: str, flagged: bool = False) -> Any:
    from selenium.webdriver.common.by import By

    def find(driver: Any) -> Any:
        for row in driver.find_elements(By.CSS_SELECTOR, "#live-list tr"):
            if row.get_attribute("data-plate") == plate and (
                not flagged or "flagged" in row.get_attribute("class")
            ):
                return row
        return False

    return find


def test_live_search_visit_and_a_list_edit_flag_the_next_frame(
    mosquitto: Mosquitto, emulator: ReaderEmulator, browser: Any, shots: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen

    config = load_config(
        mqtt={"host": "127.0.0.1", "port": mosquitto.port, "health_interval": 0},
        reader={"url": emulator.url, "max_calls_per_second": None},
        routes=[{"topic": "cameras/+/image", "repeat_window": 0}],
        history={"enabled": True, "data_dir": str(tmp_path), "cameras": {"gate": "both"}},
        web={"enabled": True, "port": 0},
        watchlists={"family": {"plates": [{"plate": "AB12CDE", "label": "Anna"}]}},
    )
    bridge = Bridge(config)
    bridge.start()
    collector = Collector("127.0.0.1", mosquitto.port, [f"{BASE}/+/result"])
    try:
        assert bridge.mqtt is not None and bridge.mqtt.wait_connected(10)
        web = next(ext for ext in bridge.extensions if isinstance(ext, WebExtension))
        assert web.server is not None
        url = web.server.url
        browser.get(url)
        wait(browser, seen.text_to_be_present_in_element((By.ID, "live-state"), "following"), "the live feed")

        # A frame on MQTT: its plate appears on the open page, nothing reloaded.
        send_frame(emulator, collector, "gate", "AB12CDE", "arrives")
        row = wait(browser, live_row("AB12CDE", flagged=True), "AB12CDE in the live feed")
        assert "family" in row.text and "gate" in row.text
        send_frame(emulator, collector, "drive", "GH56JKL", "passes")
        wait(browser, live_row("GH56JKL"), "GH56JKL in the live feed")
        browser.save_screenshot(str(shots / "web-live.png"))

        # A one-character misread (F for E) still finds the car.
        browser.find_element(By.CSS_SELECTOR, 'nav a[data-view="search"]').click()
        plate_box = wait(
            browser, seen.visibility_of_element_located((By.ID, "search-plate")), "the search form"
        )
        plate_box.send_keys("AB12CDF")
        browser.find_element(By.CSS_SELECTOR, "#search-form button[type=submit]").click()
        found = wait(
            browser,
            seen.presence_of_element_located((By.CSS_SELECTOR, '#search-results tr[data-plate="AB12CDE"]')),
            "the misread's search result",
        )
        assert not browser.find_elements(By.CSS_SELECTOR, '#search-results tr[data-plate="GH56JKL"]')
        export = browser.find_element(By.ID, "search-export").get_attribute("href")
        assert "plate=AB12CDF" in export and "tolerance=1" in export
        browser.save_screenshot(str(shots / "web-search.png"))

        # Its page: the visit, the crop and the snapshot.
        found.find_element(By.CSS_SELECTOR, "a.plate").click()
        visit_link = wait(
            browser, seen.element_to_be_clickable((By.LINK_TEXT, "its visit")), "the plate's page"
        )
        visit_link.click()
        visit = wait(
            browser,
            seen.presence_of_element_located((By.CSS_SELECTOR, "#plate-visits tr.highlight")),
            "its visit",
        )
        assert "gate" in visit.text and "present" in visit.text
        wait(
            browser,
            lambda d: (
                all(
                    d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image)
                    for image in d.find_elements(By.CSS_SELECTOR, "#plate-sightings img")
                )
                and len(d.find_elements(By.CSS_SELECTOR, "#plate-sightings img")) == 2
            ),
            "the crop and the snapshot",
        )
        browser.save_screenshot(str(shots / "web-plate.png"))

        # Add a plate to a list from the page: its next frame is flagged, with no restart.
        browser.find_element(By.CSS_SELECTOR, 'nav a[data-view="lists"]').click()
        wait(browser, seen.visibility_of_element_located((By.ID, "add-list")), "the lists").send_keys(
            "visitors"
        )
        browser.find_element(By.ID, "add-plate").send_keys("CD34EFG")
        browser.find_element(By.ID, "add-label").send_keys("Plumber")
        browser.find_element(By.CSS_SELECTOR, "#add-form button[type=submit]").click()
        wait(
            browser,
            seen.presence_of_element_located((By.CSS_SELECTOR, '[data-list="visitors"]')),
            "the new list",
        )
        family = browser.find_element(By.CSS_SELECTOR, '[data-list="family"]')
        assert "read-only" in family.text and not family.find_elements(By.CSS_SELECTOR, "button")
        browser.save_screenshot(str(shots / "web-lists.png"))
        browser.find_element(By.CSS_SELECTOR, 'nav a[data-view="live"]').click()
        send_frame(emulator, collector, "gate", "CD34EFG", "visits")
        [*_, document] = collector.wait_for(f"{BASE}/gate/result", 2)
        assert [(m["list"], m["label"]) for m in document["watched"]] == [("visitors", "Plumber")]
        wait(browser, live_row("CD34EFG", flagged=True), "CD34EFG flagged in the live feed")
        browser.save_screenshot(str(shots / "web-flagged.png"))

        # Who is here now, and this month's calls.
        browser.find_element(By.CSS_SELECTOR, 'nav a[data-view="present"]').click()
        wait(
            browser,
            lambda d: (
                {"AB12CDE", "CD34EFG", "GH56JKL"}
                <= {a.text for a in d.find_elements(By.CSS_SELECTOR, "#present-list a.plate")}
            ),
            "the three cars present",
        )
        browser.save_screenshot(str(shots / "web-present.png"))
        browser.find_element(By.CSS_SELECTOR, 'nav a[data-view="usage"]').click()
        wait(
            browser,
            lambda d: d.find_element(By.ID, "usage-month").text.startswith("20"),
            "this month's usage",
        )
        # The bridge here reads with its SDK emulator: no frame read offline (a dash if not shown).
        assert browser.find_element(By.ID, "usage-offline").text == "0"
    finally:
        collector.close()
        bridge.stop(deadline=5)


def test_off_loopback_the_page_asks_for_the_password_first(browser: Any, shots: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen

    host = local_address()
    if host is None:
        pytest.skip("no second loopback address (127.0.0.2) to listen on here")
    config = load_config(
        history={"enabled": True, "data_dir": str(tmp_path)},
        web={"enabled": True, "host": host, "port": 0, "password": PASSWORD},
    )
    server, store = open_web(config)
    server.start()
    try:
        browser.get(server.url)
        password = wait(browser, seen.visibility_of_element_located((By.ID, "password")), "the login form")
        assert not browser.find_elements(By.ID, "live-list")
        password.send_keys("not it")
        browser.find_element(By.ID, "login").click()
        wait(
            browser,
            seen.text_to_be_present_in_element((By.CSS_SELECTOR, ".error"), "Wrong password"),
            "a refusal",
        )
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.save_screenshot(str(shots / "web-login.png"))
        browser.find_element(By.ID, "login").click()
        wait(
            browser,
            seen.text_to_be_present_in_element((By.ID, "live-state"), "following"),
            "the page after login",
        )
        cookie = browser.get_cookie("plate_bridge_session")
        assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert browser.execute_script("return document.cookie") == ""  # HttpOnly: no script sees it
        browser.find_element(By.XPATH, "//button[text()='Log out']").click()
        wait(browser, seen.visibility_of_element_located((By.ID, "password")), "the login form again")
    finally:
        server.stop()
        store.close()


@pytest.mark.slow
def test_the_first_paint_benchmark_measures_in_smoke_mode(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    reason = why_not()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "web_results.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.web_first_paint", "--smoke", "--out", str(out)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())["sqlite"]
    assert figures["loads"] == 3 and figures["vehicles"] == 2000
    assert 0 < figures["first_contentful_paint_ms"]["p50"] <= figures["first_contentful_paint_ms"]["max"]
    assert figures["live_rows_ms"]["p50"] > 0 and figures["search_tolerance_1_ms"]["p50"] > 0
