"""The three systems under test, each started as a process of its own: the bridge, the naive relay and
Node-RED 4 (installed from npm into a cache folder when `node` exists)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks.procs import HOST, Child

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
FLOW_FILE = BENCH_DIR / "nodered_flow.json"
NODE_RED_CACHE = Path.home() / ".cache" / "plate-bridge-bench" / "node-red"
NODE_RED_SPEC = "node-red@4"
NODE_RED_MIN_NODE = 18
NPM_TIMEOUT = 600
BASE_TOPIC = "plate-bridge"
FRAME_TOPICS = "cameras/+/image"

SYSTEMS = ("bridge", "relay", "nodered")
OPTIONAL_SYSTEMS = ("floor",)  # run only when named (--systems): benchmarks/floor_program.py
LABELS = {"bridge": "bridge", "relay": "naive relay", "nodered": "Node-RED", "floor": "paho + libcurl floor"}


@dataclass(frozen=True)
class ReaderSettings:
    """What a scenario asks of the reader side of a system (only the bridge has these knobs)."""

    concurrency: int
    max_calls_per_second: float | None


@dataclass(frozen=True)
class Target:
    """Where a system connects: the broker port and the plate-reader URL of the emulator."""

    broker_port: int
    reader_url: str


# Route settings every bridge run gets on top of the defaults (`benchmarks.run --no-reuse`).
BRIDGE_ROUTE_OPTIONS: dict[str, Any] = {}
BRIDGE_OPTIONS: dict[str, Any] = {}  # top-level settings a run asks for (--cpu-affinity)


def bridge(target: Target, reader: ReaderSettings, run_dir: Path) -> Child:
    """`python -m bridge.cli run --config <tmp yaml>` with the scenario's reader settings."""
    config = {
        "mqtt": {
            "host": HOST,
            "port": target.broker_port,
            # A session of its own per run, dropped at the end: otherwise the broker keeps queueing the
            # later runs' frames for a stopped bridge and hands them to the next one with its client id.
            "client_id": f"plate-bridge-bench-{run_dir.name}",
            "persistent_session": False,
        },
        "reader": {
            "url": target.reader_url,
            "max_calls_per_second": reader.max_calls_per_second,
            "concurrency": reader.concurrency,
        },
        # Closed-loop runs keep one frame per camera in flight, open-loop ones a few: none is pushed out.
        "queued_frames_per_camera": 64,
        "routes": [{"topic": FRAME_TOPICS, **BRIDGE_ROUTE_OPTIONS}],
        **BRIDGE_OPTIONS,
    }
    return _bridge_child(config, run_dir)


def bridge_as_shipped(target: Target, run_dir: Path) -> Child:
    """The bridge with nothing but where the broker and the reader are: every other setting its default
    (reader rate limit, concurrency, queues, reuse), as a user's first configuration has it."""
    config = {
        "mqtt": {"host": HOST, "port": target.broker_port, "client_id": f"plate-bridge-bench-{run_dir.name}"},
        "reader": {"url": target.reader_url},
        "routes": [{"topic": FRAME_TOPICS}],
    }
    return _bridge_child(config, run_dir)


def _bridge_child(config: dict[str, Any], run_dir: Path) -> Child:
    path = run_dir / "bridge.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    argv = [sys.executable, "-m", "bridge.cli", "run", "--config", str(path)]
    return Child("bridge", argv, run_dir / "bridge.log", cwd=ROOT)


def relay(target: Target, run_dir: Path) -> Child:
    argv = [
        sys.executable,
        str(BENCH_DIR / "naive_relay.py"),
        "--port",
        str(target.broker_port),
        "--url",
        target.reader_url,
    ]
    return Child("relay", argv, run_dir / "relay.log", cwd=ROOT)


def floor(target: Target, run_dir: Path) -> Child:
    """benchmarks/floor_program.py: one thread, paho and libcurl, nothing else (a frame's least cost)."""
    argv = [sys.executable, str(BENCH_DIR / "floor_program.py"), "--port", str(target.broker_port)]
    argv += ["--url", target.reader_url]
    return Child("floor", argv, run_dir / "floor.log", cwd=ROOT)


# --- Node-RED --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeRed:
    """An installed Node-RED: the `red.js` to run with `node`, and its version."""

    node: str
    red_js: Path
    version: str
    node_version: str


def _node_version(node: str) -> str:
    result = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=False)
    return result.stdout.strip()


def _installed(folder: Path) -> tuple[Path, str] | None:
    package = folder / "node_modules" / "node-red" / "package.json"
    try:
        version = json.loads(package.read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        return None
    return package.parent / "red.js", str(version)


def find_node_red(*, install: bool, cache: Path = NODE_RED_CACHE) -> NodeRed | str:
    """Node-RED from the cache folder, installed there with npm first if `install`; else why not."""
    node = shutil.which("node")
    if node is None:
        return "`node` is not on PATH"
    node_version = _node_version(node)
    try:
        major = int(node_version.lstrip("v").split(".")[0])
    except ValueError:
        return f"cannot read the Node.js version ({node_version!r})"
    if major < NODE_RED_MIN_NODE:
        return f"Node-RED 4 needs Node.js {NODE_RED_MIN_NODE} or later, this is {node_version}"
    found = _installed(cache)
    if found is None and install:
        npm = shutil.which("npm")
        if npm is None:
            return "`npm` is not on PATH to install Node-RED"
        cache.mkdir(parents=True, exist_ok=True)
        print(f"installing {NODE_RED_SPEC} into {cache} (once; reused by later runs)", file=sys.stderr)
        command = [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", NODE_RED_SPEC]
        try:
            result = subprocess.run(
                command, cwd=cache, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            return f"`npm install {NODE_RED_SPEC}` took over {NPM_TIMEOUT} s"
        if result.returncode != 0:
            return f"`npm install {NODE_RED_SPEC}` failed: {result.stderr.strip()[-300:]}"
        found = _installed(cache)
    if found is None:
        return f"Node-RED is not installed in {cache} (the smoke mode does not install it)"
    red_js, version = found
    return NodeRed(node, red_js, version, node_version)


SETTINGS_JS = """\
// Generated by benchmarks/systems.py: no editor, no HTTP server, no telemetry; loopback only.
module.exports = {{
    flowFile: {flow_file},
    credentialSecret: false,
    httpAdminRoot: false,
    httpNodeRoot: false,
    uiHost: "{host}",
    diagnostics: {{ enabled: false }},
    runtimeState: {{ enabled: false }},
    telemetry: {{ enabled: false }},
    logging: {{ console: {{ level: "warn", metrics: false, audit: false }} }},
    editorTheme: {{ projects: {{ enabled: false }} }},
}};
"""


def nodered(target: Target, installed: NodeRed, run_dir: Path) -> Child:
    """Node-RED on the flow of benchmarks/nodered_flow.json; the flow takes the broker port and the
    reader URL from the environment (`${VAR}` properties)."""
    user_dir = run_dir / "node-red"
    user_dir.mkdir(exist_ok=True)
    flow = user_dir / "flows.json"
    shutil.copyfile(FLOW_FILE, flow)
    settings = user_dir / "settings.js"
    settings.write_text(SETTINGS_JS.format(flow_file=json.dumps(str(flow)), host=HOST), encoding="utf-8")
    env = {
        **os.environ,
        "BENCH_MQTT_HOST": HOST,
        "BENCH_MQTT_PORT": str(target.broker_port),
        "BENCH_READER_URL": target.reader_url,
        "NODE_RED_ENABLE_PROJECTS": "false",
    }
    argv = [installed.node, str(installed.red_js), "--userDir", str(user_dir), "--settings", str(settings)]
    return Child("nodered", argv, run_dir / "nodered.log", cwd=user_dir, env=env)
