"""A real headless Chromium driven by Selenium, for the web page's tests and its first-paint benchmark.

Debian's `chromium` and `chromium-driver` (scripts/ensure-chromium.sh installs them where it can): the
driver's path is given to Selenium, so Selenium Manager downloads nothing. `why_not()` says why a
browser cannot be had here, for a skip.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from typing import Any

CHROMIUM = ("chromium", "chromium-browser")


def _which(names: tuple[str, ...]) -> str | None:
    return next((found for name in names if (found := shutil.which(name))), None)


def why_not() -> str | None:
    """Why no browser can be driven here (None when one can)."""
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[test]')"
    if _which(CHROMIUM) is None or shutil.which("chromedriver") is None:
        return "chromium and chromium-driver are not installed (sh scripts/ensure-chromium.sh as root)"
    return None


def chromium(width: int = 1280, height: int = 860) -> Any:
    """A headless Chromium (a Selenium WebDriver); quit() it when done."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _which(CHROMIUM) or "chromium"
    for argument in (
        "--headless=new",
        f"--window-size={width},{height}",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--force-prefers-reduced-motion",
    ):
        options.add_argument(argument)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium's sandbox refuses to run as root (CI containers)
    service = Service(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(options=options, service=service)
