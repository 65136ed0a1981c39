#!/usr/bin/env sh
# Called by `make test`: the web page's tests (tests/test_web_browser.py) drive a real headless
# Chromium through Selenium, with Debian's own browser and driver (so Selenium Manager downloads
# nothing). Install them where that is possible without asking (root with apt-get, as on a fresh
# Debian machine or CI); anywhere else nothing is changed and those tests skip, saying why.
set -eu
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "chromium or chromium-driver is not installed: installing them with apt-get for the web page's tests" >&2
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium chromium-driver fonts-dejavu-core >/dev/null; then
        exit 0
    fi
    echo "apt-get could not install chromium; the web page's browser tests will skip" >&2
    exit 0
fi
echo "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver);" \
    "the web page's browser tests will skip" >&2
