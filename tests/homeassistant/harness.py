"""A real Home Assistant for tests: installed once into a cached virtual environment, started on
loopback with its MQTT integration pointed at the test's broker, queried through its own APIs.

Nothing here is emulated. The install pins Home Assistant's own `package_constraints.txt` (read from
its wheel before anything is installed), so every dependency is the version that release shipped
with, and the integrations it sets up get their requirements up front (it starts with `--skip-pip`).
The configuration directory is written as Home Assistant itself would leave it after onboarding:
a user with a long-lived token in `.storage/auth`, an MQTT config entry in
`.storage/core.config_entries` (HA 2024.3 sets MQTT up through a config entry only).
"""

from __future__ import annotations

import base64
import fcntl
import glob
import hashlib
import hmac
import json
import os
import secrets
import shutil
import subprocess
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

CACHE = Path(os.environ.get("PLATE_BRIDGE_HA_CACHE", Path.home() / ".cache" / "plate-bridge"))
HERE = Path(__file__).resolve().parent
# What the test's Home Assistant sets up besides its defaults (their requirements are installed).
INTEGRATIONS = ["mqtt", "api", "websocket_api", "config", "device_automation", "image", "event", "camera"]
INSTALL_TIMEOUT = 1500.0


@dataclass(frozen=True)
class Release:
    version: str
    python: str  # an interpreter this release runs on
    # Pins for dependencies that Home Assistant left open and that broke it since its release.
    pins: tuple[str, ...] = ()

    @property
    def venv(self) -> Path:
        return CACHE / f"ha-{self.version}"

    @property
    def bin(self) -> Path:
        return self.venv / "bin"


def interpreter(version: str) -> str | None:
    """A working `python<version>`: pyenv's own builds first (its shims on PATH answer "command not
    found" for a version that is installed but not selected), then PATH. None when there is none."""
    candidates = sorted(glob.glob(f"{Path.home()}/.pyenv/versions/{version}.*/bin/python{version}"))
    candidates += sorted(glob.glob(f"/root/.pyenv/versions/{version}.*/bin/python{version}"))
    if found := shutil.which(f"python{version}"):
        candidates.append(found)
    for candidate in dict.fromkeys(candidates):
        try:
            done = subprocess.run([candidate, "-c", "pass"], check=False, capture_output=True, timeout=30)
            works = done.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            works = False
        if works:
            return candidate
    return None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise installs across parallel test runs (pytest-xdist, two checkouts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(*command: str | Path, timeout: float = INSTALL_TIMEOUT) -> str:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    done = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, command))} failed ({done.returncode}):\n{done.stderr[-3000:]}"
        )
    return done.stdout


def install(release: Release) -> float | None:
    """Install `release` into its cached venv unless it is there; the seconds it took, or None (cached)."""
    complete = release.venv / ".complete"
    if complete.is_file():
        return None
    with _locked(CACHE / f"ha-{release.version}.lock"):
        if complete.is_file():
            return None  # another run installed it while we waited
        started = time.monotonic()
        shutil.rmtree(release.venv, ignore_errors=True)
        _run(release.python, "-m", "venv", release.venv)
        pip = release.bin / "pip"
        wheels = release.venv / "wheel"
        _run(
            pip,
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            wheels,
            f"homeassistant=={release.version}",
        )
        [wheel] = wheels.glob("homeassistant-*.whl")
        constraints = release.venv / "package_constraints.txt"
        with zipfile.ZipFile(wheel) as archive:
            pinned = archive.read("homeassistant/package_constraints.txt").decode()
        constraints.write_text(pinned + "".join(f"{pin}\n" for pin in release.pins))
        _run(pip, "install", "-c", constraints, wheel)
        needed = _run(release.bin / "python", HERE / "requirements.py", *INTEGRATIONS).split()
        _run(pip, "install", "-c", constraints, *needed)
        shutil.rmtree(wheels)
        seconds = time.monotonic() - started
        complete.write_text(f"{seconds:.0f}\n")
        return seconds


# --- the configuration directory ------------------------------------------------------------------


def _jwt(issuer: str, key: str, lifetime: float = 86400.0) -> str:
    """An HS256 access token as Home Assistant issues them for a refresh token (`auth/__init__.py`)."""

    def part(data: dict[str, Any]) -> str:
        return (
            base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()
        )

    now = int(time.time())
    claims = {"iss": issuer, "iat": now, "exp": now + int(lifetime)}
    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}"
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def _storage(key: str, data: dict[str, Any], version: int = 1, minor_version: int = 1) -> str:
    return json.dumps(
        {"version": version, "minor_version": minor_version, "key": key, "data": data}, indent=1
    )


@dataclass
class Credentials:
    access_token: str
    refresh_token: str
    client_id: str


def daytime_zone() -> str:
    """A time zone where it is now about noon (automations with night-time conditions stay quiet)."""
    offset = (12 - time.gmtime().tm_hour + 12) % 24 - 12  # hours east of UTC, -12..11
    # POSIX-style names: Etc/GMT-5 is five hours *east* of UTC.
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"


def write_config(
    folder: Path, *, http_port: int, broker_port: int, automations: Path | None = None
) -> Credentials:
    """A configuration directory for a Home Assistant on 127.0.0.1:`http_port` that is onboarded, has
    one owner with a long-lived token, the MQTT integration on 127.0.0.1:`broker_port`, and the
    automations of the file `automations` (if given)."""
    storage = folder / ".storage"
    storage.mkdir(parents=True)
    included = ""
    if automations is not None:
        shutil.copy(automations, folder / "automations.yaml")
        # The gate the example automation opens: a template switch over an input_boolean.
        included = (
            "automation: !include automations.yaml\n"
            "input_boolean:\n  gate:\n    name: Gate\n"
            "switch:\n  - platform: template\n    switches:\n      gate_opener:\n"
            "        value_template: \"{{ is_state('input_boolean.gate', 'on') }}\"\n"
            "        turn_on:\n          service: input_boolean.turn_on\n"
            "          target: {entity_id: input_boolean.gate}\n"
            "        turn_off:\n          service: input_boolean.turn_off\n"
            "          target: {entity_id: input_boolean.gate}\n"
        )
    (folder / "configuration.yaml").write_text(
        "homeassistant:\n"
        "  name: plate-bridge test\n"
        "  latitude: 52.37\n  longitude: 4.89\n  elevation: 0\n"
        f"  unit_system: metric\n  time_zone: {daytime_zone()}\n  currency: EUR\n  country: NL\n"
        f"http:\n  server_host: 127.0.0.1\n  server_port: {http_port}\n"
        "logger:\n  default: info\n"
        + "".join(f"{domain}:\n" for domain in ("api", "websocket_api", "config", "device_automation"))
        + included
    )
    user_id, token_id = secrets.token_hex(16), secrets.token_hex(16)
    jwt_key, refresh = secrets.token_hex(64), secrets.token_hex(64)
    client_id = f"http://127.0.0.1:{http_port}/"
    users = [
        {
            "id": user_id,
            "group_ids": ["system-admin"],
            "is_owner": True,
            "is_active": True,
            "name": "test",
            "system_generated": False,
            "local_only": False,
        }
    ]
    refresh_tokens = [
        {
            "id": token_id,
            "user_id": user_id,
            # A normal (browser) token: the frontend of the screenshot refreshes with it.
            "client_id": client_id,
            "client_name": None,
            "client_icon": None,
            "token_type": "normal",
            "created_at": "2024-03-01T00:00:00+00:00",
            "access_token_expiration": 86400.0,
            "token": refresh,
            "jwt_key": jwt_key,
            "last_used_at": None,
            "last_used_ip": None,
            "expire_at": time.time() + 86400 * 30,
            "credential_id": None,
            "version": None,
        }
    ]
    groups = [
        {"id": "system-admin", "name": "Administrators"},
        {"id": "system-users", "name": "Users"},
        {"id": "system-read-only", "name": "Read Only"},
    ]
    (storage / "auth").write_text(
        _storage(
            "auth", {"users": users, "groups": groups, "credentials": [], "refresh_tokens": refresh_tokens}
        )
    )
    (storage / "onboarding").write_text(
        _storage("onboarding", {"done": ["user", "core_config", "analytics", "integration"]}, version=4)
    )
    mqtt_entry = {
        "entry_id": secrets.token_hex(16),
        "version": 1,
        "minor_version": 1,
        "domain": "mqtt",
        "title": "127.0.0.1",
        "data": {"broker": "127.0.0.1", "port": broker_port, "discovery": True},
        "options": {},
        "pref_disable_new_entities": False,
        "pref_disable_polling": False,
        "source": "user",
        "unique_id": None,
        "disabled_by": None,
    }
    (storage / "core.config_entries").write_text(_storage("core.config_entries", {"entries": [mqtt_entry]}))
    return Credentials(_jwt(token_id, jwt_key), refresh, client_id)


# --- the running Home Assistant --------------------------------------------------------------------


class HomeAssistant:
    """`python -m homeassistant` on loopback; `api()` and `ws()` speak to it with the owner's token."""

    def __init__(
        self,
        release: Release,
        folder: Path,
        *,
        http_port: int,
        broker_port: int,
        automations: Path | None = None,
    ) -> None:
        self.release = release
        self.folder = folder
        self.url = f"http://127.0.0.1:{http_port}"
        self.credentials = write_config(
            folder, http_port=http_port, broker_port=broker_port, automations=automations
        )
        self.process: subprocess.Popen[bytes] | None = None
        self._output = folder / "stdout.log"

    @property
    def log(self) -> Path:
        return self.folder / "home-assistant.log"

    def start(self, timeout: float = 240.0) -> HomeAssistant:
        with self._output.open("wb") as output:
            self.process = subprocess.Popen(
                [
                    str(self.release.bin / "python"),
                    "-m",
                    "homeassistant",
                    "--config",
                    str(self.folder),
                    "--skip-pip",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if self.process.poll() is not None:
                raise RuntimeError(f"Home Assistant exited ({self.process.returncode}):\n{self.tail()}")
            try:
                if self.api("GET", "/api/config").get("state") == "RUNNING":
                    return self
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"Home Assistant did not start in {timeout:g} s:\n{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.is_file() else ""
        text += self._output.read_text(errors="replace") if self._output.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.credentials.access_token}"}
        response = requests.request(method, self.url + path, headers=headers, timeout=10, **kwargs)
        response.raise_for_status()
        return response.json() if "json" in response.headers.get("content-type", "") else response.content

    def state(self, entity_id: str) -> dict[str, Any] | None:
        try:
            return self.api("GET", f"/api/states/{entity_id}")  # type: ignore[no-any-return]
        except requests.HTTPError as exc:
            if exc.response is not None and exc.response.status_code == 404:
                return None
            raise

    def wait_state(self, entity_id: str, predicate: Any, timeout: float = 30.0) -> dict[str, Any]:
        """The entity's state once `predicate(state)` holds (or fail with the last one seen)."""
        give_up = time.monotonic() + timeout
        state = None
        while time.monotonic() < give_up:
            state = self.state(entity_id)
            if state is not None and predicate(state):
                return state
            time.sleep(0.25)
        raise AssertionError(f"{entity_id}: {state} after {timeout:g} s\n{self.tail(30)}")

    def ws(self, *commands: dict[str, Any]) -> list[Any]:
        """Run websocket commands (`config/device_registry/list`, ...) and return their results."""
        from websockets.sync.client import connect

        results = []
        with connect(self.url.replace("http", "ws", 1) + "/api/websocket", open_timeout=10) as socket:
            assert json.loads(socket.recv(10))["type"] == "auth_required"
            socket.send(json.dumps({"type": "auth", "access_token": self.credentials.access_token}))
            assert json.loads(socket.recv(10))["type"] == "auth_ok"
            for number, command in enumerate(commands, start=1):
                socket.send(json.dumps({"id": number, **command}))
                while True:
                    answer = json.loads(socket.recv(30))
                    if answer.get("id") == number and answer.get("type") == "result":
                        break
                if not answer["success"]:
                    raise AssertionError(f"{command}: {answer.get('error')}")
                results.append(answer["result"])
        return results
