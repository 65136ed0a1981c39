"""A PostgreSQL server of the tests' own: Debian's initdb and pg_ctl in a temporary directory, on a
free port, as the `postgres` user when the tests run as root (the server refuses to run as root).

Never the machine's own server on 5432: a user's machine has none, and tests must not touch a real
database. `PLATE_BRIDGE_TEST_POSTGRES_URL` names a server to use instead (CI's service container).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

URL_ENV = "PLATE_BRIDGE_TEST_POSTGRES_URL"


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian keeps each version apart)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """`start()` makes a cluster and starts it; `url` reaches its `postgres` database; `stop()` ends it
    and removes the directory."""

    def __init__(self) -> None:
        binary = postgres_bin()
        if binary is None:
            raise FileNotFoundError("PostgreSQL is not installed (scripts/ensure-postgresql.sh installs it)")
        self.bin = binary
        self.port = _free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="plate-bridge-pg-"))
        self.data = self.folder / "data"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                raise FileNotFoundError("running as root needs runuser to start PostgreSQL as postgres")
            shutil.chown(self.folder, "postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_user, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> PostgresServer:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.folder / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise TimeoutError(f"PostgreSQL did not listen on port {self.port}")

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def _database_url(server_url: str, name: str) -> str:
    head, _, _ = server_url.rpartition("/")
    return f"{head}/{name}"


def fresh_database(server_url: str, name: str) -> str:
    """A new, empty database on the server (dropped first if a failed run left it); its URL."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return _database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
