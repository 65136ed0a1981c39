"""The processes of a benchmark run (broker, emulator, system under test) and what /proc says of them."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STOP_SECONDS = 10.0
PARENT_CHECK_SECONDS = 0.5


# --- /proc -----------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads) so far, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # The command name (field 2) may hold spaces and parentheses: count fields from its end.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of process `pid` in MiB: resident memory now, and its peak since it started."""
    values = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024  # reported in kB (KiB)
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot, from the `cpu` line of /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        numbers = [int(value) for value in stat.readline().split()[1:]]
    idle = numbers[3] + numbers[4]  # idle + iowait
    total = sum(numbers[:8])  # guest time is already counted in user time
    return total - idle, total


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float, alive: Any = None) -> None:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if alive is not None and not alive():
            raise RuntimeError(f"the process meant to listen on {HOST}:{port} has exited")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {HOST}:{port} after {timeout:g} s")


# --- child processes -------------------------------------------------------------------------------


class Child:
    """A program run as a child process, its output in a log file; `stop()` sends SIGTERM, then SIGKILL.

    Each child gets a session of its own, so Ctrl+C reaches only the harness, which then stops the
    children in order (the bridge publishes `offline`, the relay drains its workers).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} is not started")
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = STOP_SECONDS) -> int | None:
        """End the process (bounded in time); its exit code, negative for a signal."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        return process.returncode


def _parent_gone(parent: int) -> bool:
    # Reparented (to init or a subreaper): the harness died without stopping us.
    return os.getppid() != parent


class ChildProcess:
    """A function run in a `multiprocessing` child (spawned, so no threads are forked) behind a pipe:
    the child sends one ready message, then answers (command, argument) requests until "stop"."""

    def __init__(self, name: str, target: Any, *args: Any) -> None:
        self.name = name
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        # daemon: multiprocessing ends it at the harness's exit even if nobody called stop().
        self._process = context.Process(target=target, args=(child_conn, *args), name=name, daemon=True)

    def start(self, timeout: float = 30.0) -> Any:
        """Start the child and return its ready message."""
        self._process.start()
        if not self._conn.poll(timeout):
            self.stop()
            raise TimeoutError(f"{self.name} sent nothing within {timeout:g} s")
        try:
            ready = self._conn.recv()
        except EOFError:
            ready = RuntimeError(f"it exited with code {self._process.exitcode}")
        if isinstance(ready, BaseException):
            self.stop()
            raise RuntimeError(f"{self.name} could not start: {ready}")
        return ready

    @property
    def pid(self) -> int:
        pid = self._process.pid
        if pid is None:
            raise RuntimeError(f"{self.name} is not started")
        return pid

    def alive(self) -> bool:
        return self._process.is_alive()

    def call(self, command: str, argument: Any = None, timeout: float = 30.0) -> Any:
        self._conn.send((command, argument))
        if not self._conn.poll(timeout):
            raise TimeoutError(f"{self.name} did not answer {command!r} within {timeout:g} s")
        return self._conn.recv()

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        if self._process.is_alive():
            with contextlib.suppress(OSError, TimeoutError):
                self.call("stop", timeout=timeout)
            self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._conn.close()


def _serve_requests(conn: Connection, parent: int, handle: Any) -> None:
    """The child's side of ChildProcess: answer requests until "stop", the pipe closes or the parent dies."""
    while not _parent_gone(parent):
        if not conn.poll(PARENT_CHECK_SECONDS):
            continue
        try:
            command, argument = conn.recv()
        except EOFError:
            return
        if command == "stop":
            conn.send(None)
            return
        conn.send(handle(command, argument))


# --- the reader emulator ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReaderCalls:
    """The plate-reader calls the emulator received since its last reset."""

    calls: int
    billed: int
    arrivals: tuple[float, ...]  # time.monotonic() of each call's arrival (system-wide on Linux)
    statuses: tuple[int | None, ...] = ()  # each call's answer, as `arrivals` (None: dropped, or not yet)


def _run_emulator(
    conn: Connection, parent: int, max_records: int, fast: bool, max_calls_per_second: float | None
) -> None:
    # Ctrl+C is for the harness, which stops us in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from tests.emulator import PLATE_READER_PATHS, ReaderEmulator

    emulator = ReaderEmulator(fast=fast, max_records=max_records, max_calls_per_second=max_calls_per_second)

    def handle(command: str, argument: Any) -> Any:
        if command == "service_time":
            emulator.service_time = float(argument)
            return None
        if command == "reset":
            emulator.reset()
            return None
        if command == "responses":
            # (answers by key, key by image digest): each answer crosses the pipe once, not per image.
            answers, digests = argument
            for digest, key in digests.items():
                emulator.set_response_for_digest(digest, answers[key])
            return None
        if command == "calls":
            calls = [
                record
                for record in emulator.requests
                if record.method == "POST" and record.path.split("?", 1)[0] in PLATE_READER_PATHS
            ]
            arrivals = tuple(record.received_at for record in calls)
            statuses = tuple(record.status for record in calls)
            return ReaderCalls(emulator.calls, emulator.billed_calls, arrivals, statuses)
        raise ValueError(f"unknown command {command!r}")

    try:
        emulator.start()
    except Exception as exc:
        conn.send(exc)
        return
    try:
        conn.send(emulator.url)
        _serve_requests(conn, parent, handle)
    finally:
        emulator.stop()


class Emulator(ChildProcess):
    """tests.emulator.ReaderEmulator in a process of its own, so its CPU is measured apart and it shares
    no interpreter lock with the load generator: in fast mode (one precomputed answer, bodies not
    parsed) by default; with `fast=False` it reads each upload and answers what `set_responses` gave."""

    def __init__(
        self, max_records: int, *, fast: bool = True, max_calls_per_second: float | None = None
    ) -> None:
        super().__init__(
            "reader-emulator", _run_emulator, os.getpid(), max_records, fast, max_calls_per_second
        )
        self.url = ""

    def start(self, timeout: float = 30.0) -> str:
        self.url = super().start(timeout)
        return self.url

    def set_service_time(self, seconds: float) -> None:
        self.call("service_time", seconds)

    def reset(self) -> None:
        """Forget the calls, and the answers `set_responses` gave."""
        self.call("reset")

    def set_responses(self, answers: dict[str, dict[str, Any]], digests: dict[str, str]) -> None:
        """Answer `answers[key]` for each image whose SHA-256 (hex) maps to `key` in `digests`."""
        self.call("responses", (answers, digests), timeout=120.0)

    def reader_calls(self) -> ReaderCalls:
        calls = self.call("calls")
        assert isinstance(calls, ReaderCalls)
        return calls


# --- the MQTT broker -------------------------------------------------------------------------------


def _run_amqtt(conn: Connection, parent: int, port: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from bridge.mqtt.broker import EmbeddedBroker

    broker = EmbeddedBroker(HOST, port)
    try:
        broker.start()
    except Exception as exc:
        conn.send(exc)
        return
    try:
        conn.send("amqtt")
        _serve_requests(conn, parent, lambda command, _: None)
    finally:
        broker.stop()


class Broker:
    """mosquitto on a free loopback port, or amqtt (bridge.mqtt.broker.EmbeddedBroker, in a child process)
    when the mosquitto binary is missing."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.port = free_port()
        self.kind = "mosquitto" if shutil.which("mosquitto") else "amqtt"
        self._child: Child | ChildProcess | None = None

    @property
    def version(self) -> str:
        if self.kind == "amqtt":
            from importlib.metadata import version

            return f"amqtt {version('amqtt')}"
        result = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, timeout=10, check=False)
        return (result.stdout or result.stderr).splitlines()[0].strip()

    @property
    def pid(self) -> int:
        if self._child is None:
            raise RuntimeError("the broker is not started")
        return self._child.pid

    def alive(self) -> bool:
        return self._child is not None and self._child.alive()

    def start(self) -> Broker:
        if self.kind == "mosquitto":
            conf = self.run_dir / "mosquitto.conf"
            conf.write_text(
                f"listener {self.port} {HOST}\nallow_anonymous true\npersistence false\n"
                # Open-loop runs may queue many frames for a slow subscriber; count them, not drop them.
                "max_queued_messages 100000\n"
                # Nagle's algorithm on the broker's sockets holds the tail of each frame back until the
                # receiver's delayed ACK (40 ms on Linux): it would be the whole latency measured.
                "set_tcp_nodelay true\n"
                "log_dest stderr\nlog_type error\nlog_type warning\n",
                encoding="utf-8",
            )
            child = Child("mosquitto", ["mosquitto", "-c", str(conf)], self.run_dir / "mosquitto.log")
            self._child = child.start()
        else:
            self._child = ChildProcess("amqtt-broker", _run_amqtt, os.getpid(), self.port)
            self._child.start()
        wait_for_port(self.port, 15, self.alive)
        return self

    def stop(self) -> None:
        if self._child is not None:
            self._child.stop()
