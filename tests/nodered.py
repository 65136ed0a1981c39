"""A headless Node-RED 4 for the tests: installed once into a cache folder (lock-guarded), with the
contributed nodes a test names, and run on a flow the test writes, against loopback services only."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port

NODE_RED_SPEC = "node-red@4"  # Node-RED 4 runs on Node 18/20; Node-RED 5 needs Node 22
NODE_RED_CACHE = Path.home() / ".cache" / "plate-bridge" / "node-red-4"
NPM_TIMEOUT = 600
STOP_TIMEOUT = 15
LOG_TAIL = 3000

SETTINGS_JS = """\
// Written by tests/nodered.py: no editor, no telemetry, loopback only.
module.exports = {{
    flowFile: {flow_file},
    credentialSecret: false,
    uiHost: "127.0.0.1",
    uiPort: {port},
    httpAdminRoot: false,
    httpNodeRoot: false,
    diagnostics: {{ enabled: false }},
    runtimeState: {{ enabled: false }},
    telemetry: {{ enabled: false }},
    logging: {{ console: {{ level: "warn", metrics: false, audit: false }} }},
}};
"""


def node_red(*packages: str) -> tuple[str, Path]:
    """`node` and Node-RED's red.js, with Node-RED and `packages` ("name@version", pinned) installed
    into the cache folder once (lock-guarded); else skip, saying why.

    Node-RED loads contributed nodes from the node_modules folder it is installed in, so a package
    installed beside it is in every test's palette.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("`node` and `npm` are needed to run Node-RED (neither is required by the bridge)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    if int(version.lstrip("v").split(".")[0] or 0) < 18:
        pytest.skip(f"Node-RED 4 needs Node.js 18 or later; this is {version}")
    modules = NODE_RED_CACHE / "node_modules"
    red_js = modules / "node-red" / "red.js"
    NODE_RED_CACHE.mkdir(parents=True, exist_ok=True)
    # Several test runs (or helpers) may start at once: one installs, the others wait for it.
    with open(NODE_RED_CACHE.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not red_js.exists():
            _npm_install(npm, [NODE_RED_SPEC])
            if not red_js.exists():
                pytest.skip(f"`npm install {NODE_RED_SPEC}` left no {red_js}")
        missing = [spec for spec in packages if _installed_version(modules, spec) != _pinned_version(spec)]
        if missing:
            _npm_install(npm, missing)
            for spec in missing:
                if _installed_version(modules, spec) != _pinned_version(spec):
                    pytest.skip(f"`npm install {spec}` did not install it into {modules}")
    return node, red_js


def _npm_install(npm: str, specs: Sequence[str]) -> None:
    command = [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", *specs]
    shown = " ".join(specs)
    try:
        result = subprocess.run(
            command, cwd=NODE_RED_CACHE, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"`npm install {shown}` took over {NPM_TIMEOUT} s")
    if result.returncode != 0:
        pytest.skip(f"`npm install {shown}` failed: {result.stderr.strip()[-300:]}")


def _pinned_version(spec: str) -> str:
    name, separator, version = spec.rpartition("@")
    if not separator or not name:
        raise ValueError(f"pin the version of {spec!r} (name@version)")
    return version


def _installed_version(modules: Path, spec: str) -> str | None:
    manifest = modules / spec.rpartition("@")[0] / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


class NodeRed:
    """Node-RED running `flows` headless, with `folder` as its user directory.

    `credentials` (node id -> {field: value}) is written as the flows' plain credentials file
    (`credentialSecret: false`): what the editor stores for a node's password fields. `environment`
    is added to this process's, for `${VAR}` properties in the flows.
    """

    def __init__(
        self,
        folder: Path,
        flows: Sequence[Mapping[str, Any]],
        *,
        credentials: Mapping[str, Mapping[str, str]] | None = None,
        environment: Mapping[str, str] | None = None,
        packages: Sequence[str] = (),
    ) -> None:
        self.folder = folder
        self.flows = list(flows)
        self.credentials = dict(credentials or {})
        self.environment = dict(environment or {})
        self.packages = tuple(packages)
        self.log_file = folder / "node-red.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> NodeRed:
        node, red_js = node_red(*self.packages)
        flow_file = self.folder / "flows.json"
        flow_file.write_text(json.dumps(self.flows))
        if self.credentials:
            (self.folder / "flows_cred.json").write_text(json.dumps(self.credentials))
        settings = self.folder / "settings.js"
        settings.write_text(SETTINGS_JS.format(flow_file=json.dumps(str(flow_file)), port=free_port()))
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                [node, str(red_js), "--userDir", str(self.folder), "--settings", str(settings)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.environment},
                cwd=self.folder,
            )
        return self

    def log(self) -> str:
        """The end of what Node-RED printed (warnings and errors), for assertion messages."""
        try:
            return self.log_file.read_text(errors="replace")[-LOG_TAIL:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def __enter__(self) -> NodeRed:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
