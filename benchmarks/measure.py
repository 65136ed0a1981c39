"""One system through one scenario: start it, drive the cameras, and turn what was seen into figures."""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import systems
from benchmarks.frames import FrameSet
from benchmarks.loadgen import Cameras, Trace
from benchmarks.procs import Broker, Child, Emulator, ReaderCalls, cpu_seconds, machine_ticks, memory_mib
from benchmarks.scenarios import Scenario
from benchmarks.systems import NodeRed, ReaderSettings, Target

READY_SECONDS = 60.0
SAMPLE_SECONDS = 0.25
EARLY_FRACTION = 0.1  # RSS growth is measured from the moment this share of the frames was answered


@dataclass
class Context:
    """What every measurement shares: the run folder, the broker, the emulator, frames and Node-RED."""

    run_dir: Path
    broker: Broker
    emulator: Emulator
    frame_sets: dict[str, FrameSet]
    node_red: NodeRed | str  # str: why Node-RED is skipped
    profiler: Callable[[str, int, float], Any] | None = None  # (scenario, pid, seconds) -> stop()
    pin_cpu: int | None = None  # run every system under test on this CPU (taskset)


@dataclass
class _Snapshot:
    at: float
    cpu: dict[str, float]
    machine: tuple[int, int]


@dataclass
class _RssSampler:
    """VmRSS of the system every SAMPLE_SECONDS, with how many frames were answered by then."""

    pid: int
    cameras: Cameras
    samples: list[tuple[float, int, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            with contextlib.suppress(OSError):  # the process may just have exited
                rss, _ = memory_mib(self.pid)
                self.samples.append((time.monotonic(), self.cameras.answered_count, rss))


def percentile(ordered: list[float], share: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return ordered[rank - 1]


def max_in_any_window(times: tuple[float, ...], window: float = 1.0) -> int:
    """The most calls inside any `window` seconds: for each call, those in (t - window, t]."""
    ordered = sorted(times)
    best = first = 0
    for last, moment in enumerate(ordered):
        while ordered[first] <= moment - window:
            first += 1
        best = max(best, last - first + 1)
    return best


def _start_system(name: str, scenario: Scenario, context: Context) -> Child:
    target = Target(context.broker.port, context.emulator.url)
    folder = context.run_dir / f"{scenario.name}-{name}"
    folder.mkdir(exist_ok=True)
    if name == "bridge":
        reader = ReaderSettings(scenario.concurrency, scenario.max_calls_per_second)
        child = systems.bridge(target, reader, folder)
    elif name == "relay":
        child = systems.relay(target, folder)
    elif name == "floor":
        child = systems.floor(target, folder)
    elif isinstance(context.node_red, str):
        raise RuntimeError(context.node_red)
    else:
        child = systems.nodered(target, context.node_red, folder)
    if context.pin_cpu is not None:
        # taskset execs the system, so the pid measured is the system's own.
        child.argv = ["taskset", "-c", str(context.pin_cpu), *child.argv]
    return child.start()


def _snapshot(pids: dict[str, int]) -> _Snapshot:
    cpu = {}
    for role, pid in pids.items():
        with contextlib.suppress(OSError):
            cpu[role] = cpu_seconds(pid)
    return _Snapshot(time.monotonic(), cpu, machine_ticks())


def measure(name: str, scenario: Scenario, context: Context) -> dict[str, Any]:
    """Run `scenario` through system `name` (bridge, relay, nodered) and return its figures."""
    frames = context.frame_sets[scenario.frame_set].payloads
    context.emulator.set_service_time(scenario.service_time_s)
    with contextlib.ExitStack() as stack:
        launched = time.monotonic()
        child = _start_system(name, scenario, context)
        stack.callback(child.stop)
        cameras = Cameras(context.broker.port, frames, scenario.cameras).connect()
        stack.callback(cameras.close)
        try:
            cameras.probe(child.alive, READY_SECONDS)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}; its log ends with:\n{child.log_tail()}") from None
        startup_s = time.monotonic() - launched
        context.emulator.reset()
        pids = {
            "system": child.pid,
            "emulator": context.emulator.pid,
            "broker": context.broker.pid,
            "cameras": os.getpid(),
        }
        sampler = _RssSampler(child.pid, cameras)
        sampler.start()
        stack.callback(sampler.stop)

        started = time.monotonic()
        deadline = started + scenario.warmup_s + scenario.duration_s
        cameras.start(rate=scenario.rate, max_frames=scenario.max_frames, deadline=deadline)

        def finished() -> bool:  # the frame budget is spent and every frame answered: no need to wait
            return cameras.done_publishing and cameras.unanswered == 0

        cameras.wait(started + scenario.warmup_s, finished)
        begin = _snapshot(pids)
        profile = None
        if context.profiler is not None and name == "bridge":
            profile = context.profiler(scenario.name, child.pid, deadline - begin.at)
        cameras.wait(deadline, finished)
        end = _snapshot(pids)
        cameras.stop()
        # In flight at the end: give each frame time to come back (a slow reader, a deep queue).
        cameras.wait(time.monotonic() + 10 + 2 * scenario.service_time_s, lambda: cameras.unanswered == 0)
        sampler.stop()
        _, rss_peak = memory_mib(child.pid)
        calls = context.emulator.reader_calls()
        profile_summary = profile() if profile is not None else None
        exit_code = child.stop()
    figures = _figures(scenario, cameras.trace(), begin, end, sampler.samples, calls)
    figures.update(startup_s=round(startup_s, 2), rss_peak_mib=round(rss_peak, 1), exit_code=exit_code)
    if profile_summary is not None:
        figures["profile"] = profile_summary
    return figures


def _figures(
    scenario: Scenario,
    trace: Trace,
    begin: _Snapshot,
    end: _Snapshot,
    rss_samples: list[tuple[float, int, float]],
    calls: ReaderCalls,
) -> dict[str, Any]:
    window = max(end.at - begin.at, 1e-9)
    answered_in_window = [a for a in trace.answered if begin.at <= a[1] <= end.at]
    latencies = sorted(
        (answered - published) * 1000 for published, answered, _ in trace.answered if published >= begin.at
    )
    done = len(answered_in_window)
    cpu = {role: end.cpu.get(role, 0.0) - begin.cpu.get(role, 0.0) for role in begin.cpu}
    busy = end.machine[0] - begin.machine[0]
    total = max(end.machine[1] - begin.machine[1], 1)
    figures: dict[str, Any] = {
        "frames_published": len(trace.published),
        "events": len(trace.answered),
        "error_events": sum(1 for *_, error in trace.answered if error),
        "unanswered": trace.unanswered,
        "unexpected_events": trace.unexpected_events,
        "window_s": round(window, 2),
        "frames_per_second": round(done / window, 1),
        "latency_ms": {
            "samples": len(latencies),
            **(
                {
                    "p50": round(percentile(latencies, 0.50), 2),
                    "p95": round(percentile(latencies, 0.95), 2),
                    "p99": round(percentile(latencies, 0.99), 2),
                    "max": round(latencies[-1], 2),
                }
                if latencies
                else {}
            ),
        },
        "cpu_ms_per_frame": round(cpu.get("system", 0.0) / done * 1000, 3) if done else None,
        "cpu_cores": {role: round(seconds / window, 3) for role, seconds in cpu.items()},
        "machine_busy_pct": round(100 * busy / total, 1),
        # Busy cores not explained by the processes of the run: another program competing for the CPU.
        "other_cores": round(max(0.0, busy / total * (os.cpu_count() or 1) - sum(cpu.values()) / window), 2),
        "reader_calls": calls.calls,
        "reader_billed": calls.billed,
        "calls_per_frame": round(calls.calls / len(trace.published), 3) if trace.published else None,
        "max_calls_in_1s": max_in_any_window(calls.arrivals),
        # The emulator keeps its newest records only; the window maximum is then over those.
        "arrivals_complete": len(calls.arrivals) >= calls.calls,
    }
    if scenario.service_time_s:
        ideal = scenario.concurrency / scenario.service_time_s
        figures["pipelining_pct"] = round(100 * done / window / ideal, 1)
    in_window = [sample for sample in rss_samples if begin.at <= sample[0] <= end.at]
    if in_window:
        figures["rss_steady_mib"] = round(statistics.median(rss for *_, rss in in_window), 1)
        answered_total = in_window[-1][1]
        early = next(s for s in in_window if s[1] >= answered_total * EARLY_FRACTION)
        figures["rss_early_mib"] = round(early[2], 1)
        figures["rss_end_mib"] = round(in_window[-1][2], 1)
        figures["rss_growth_pct"] = round(100 * (in_window[-1][2] - early[2]) / early[2], 2)
    return figures
