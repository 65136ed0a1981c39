#!/usr/bin/env sh
# Called by `make test`: the broker tests run against a mosquitto of their own, so install it where
# that is possible without asking (root with apt-get, as on a fresh Debian/Ubuntu machine or CI).
# Anywhere else nothing is changed: the tests that need mosquitto skip, saying why.
set -eu
if command -v mosquitto >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "mosquitto is not installed: installing it with apt-get for the broker tests" >&2
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; then
        # Installed for the tests only: the tests start their own brokers on free ports.
        if command -v systemctl >/dev/null 2>&1; then systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi
        exit 0
    fi
    echo "apt-get could not install mosquitto; the tests that need it will skip" >&2
    exit 0
fi
echo "mosquitto is not installed (apt-get install mosquitto, brew install mosquitto, ...);" \
    "the tests that need it will skip" >&2
