#!/usr/bin/env sh
# Called by `make test`: the history store's PostgreSQL tests start a server of their own (initdb and
# pg_ctl in a temporary directory, on a free port), so install Debian's `postgresql` where that is
# possible without asking (root with apt-get). The package's own cluster service is stopped: the tests
# never use a server on 5432 unless PLATE_BRIDGE_TEST_POSTGRES_URL names one.
# Anywhere else nothing is changed: the PostgreSQL half of the tests skips, saying why.
set -eu
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "postgresql is not installed: installing it with apt-get for the history store tests" >&2
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; then
        if command -v systemctl >/dev/null 2>&1; then systemctl disable --now postgresql >/dev/null 2>&1 || true; fi
        exit 0
    fi
    echo "apt-get could not install postgresql; the PostgreSQL tests will skip" >&2
    exit 0
fi
echo "postgresql is not installed (apt-get install postgresql, ...);" \
    "the PostgreSQL tests will skip (or set PLATE_BRIDGE_TEST_POSTGRES_URL)" >&2
