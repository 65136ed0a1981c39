"""Process tuning for `plate-bridge run`: glibc's malloc arenas and, when asked, the CPUs it runs on."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from bridge.core.errors import ConfigError

log = logging.getLogger(__name__)

ARENA_ENV = "MALLOC_ARENA_MAX"
DEFAULT_ARENAS = 2


def limit_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> int | None:
    """Cap glibc's malloc arenas at `arenas`, unless the user set MALLOC_ARENA_MAX; return the cap set.

    Why a default at all: glibc gives each thread that allocates its own arena (up to 8 per core);
    with a worker pool handling ~100 kB frames, memory freed in one arena is not reused by another and
    RSS creeps up. Measured in benchmarks/ over 100,000 frames: RSS growth 5.7 % with glibc's default,
    ~2 % with two arenas. A MALLOC_ARENA_MAX in the environment is the user's choice (glibc has already
    applied it): it is left alone.
    """
    if os.environ.get(ARENA_ENV) or not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_arena_max = -8  # from glibc's malloc.h
        if not libc.mallopt(m_arena_max, arenas):
            return None
    except (OSError, AttributeError):
        return None  # not glibc (musl, ...): nothing to tune
    log.debug("malloc arenas capped at %s (set %s to choose another number)", arenas, ARENA_ENV)
    return arenas


def pin_to_cpu(setting: str | int, *, offline_engine: bool) -> int | None:
    """Confine this process's threads to one CPU as `cpu_affinity` asks; return the CPU, or None.

    `auto` (the default) keeps every thread on one CPU when only Python runs in them: one of the
    bridge's threads runs Python at a time (the GIL), and every frame passes it between the MQTT
    thread and a worker several times; on different cores each hand-off is a cross-core wake-up.
    In benchmarks/ on 2 cores, flat out, one CPU took a fifth to two fifths less CPU per frame and
    read 1.2-1.7x the frames per second (benchmarks/results-affinity-ab.json). The embedded broker
    (amqtt) is Python under the same GIL, so it loses nothing. `auto` leaves every CPU to the
    offline engine (`offline_engine`: local reader or local first), whose inference runs in C on
    all of them. The CPU is the least busy one, and `CpuKeeper` moves the bridge when another
    becomes clearly less busy, so a busy neighbour (an NVR's detector) cannot hold it back.
    `all` leaves the CPU set alone; N is CPU N, fixed.
    """
    if setting == "all" or not hasattr(os, "sched_setaffinity"):
        return None  # not Linux (macOS, Windows): the OS has no such call
    allowed = allowed_cpus()
    if setting == "auto":
        if offline_engine or len(allowed) < 2:
            return None
        cpu = least_busy_cpu(allowed)
    elif setting in allowed:
        cpu = int(setting)
    else:
        raise ConfigError(f"cpu_affinity: {setting}: this process may only run on CPUs {allowed}")
    _confine(cpu)
    return cpu


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (empty where the OS has no affinity call)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def _confine(cpu: int) -> None:
    """Every thread there is so far onto `cpu`; threads started later inherit it from their creator."""
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for thread in threads:
        with contextlib.suppress(OSError):  # a thread that has just ended
            os.sched_setaffinity(thread, {cpu})


# --- choosing the CPU --------------------------------------------------------------------------------

SAMPLE_SECONDS = 0.1  # the first choice, at start-up
KEEPER_SECONDS = 10.0  # how often the keeper looks again
MOVE_MARGIN = 0.25  # of one CPU: move only to a CPU that much less busy (no flapping between equals)


def cpu_busy_ticks(stat: str) -> dict[int, int]:
    """Busy clock ticks per CPU (everything but idle and iowait) from the text of /proc/stat."""
    busy: dict[int, int] = {}
    for line in stat.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or not name[3:].isdigit():
            continue
        fields = [int(value) for value in rest.split()]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        # guest times are already counted in user and nice
        busy[int(name[3:])] = sum(fields[:8]) - idle
    return busy


def own_ticks(stat: str) -> int:
    """This process's utime + stime, in clock ticks, from the text of /proc/self/stat."""
    fields = stat.rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def choose_cpu(
    allowed: Sequence[int],
    busy_before: Mapping[int, int],
    busy_after: Mapping[int, int],
    *,
    current: int | None = None,
    own: int = 0,
    window: int = 0,
    margin: float = MOVE_MARGIN,
) -> int:
    """The CPU of `allowed` that others kept least busy between two /proc/stat samples.

    `own` is what this process spent meanwhile, all of it on `current` (where it is pinned): it goes
    with the bridge, so it does not count against that CPU. The bridge leaves `current` only for a
    CPU others kept busy at least `margin` of the `window` (ticks) less.
    """
    others = {
        cpu: busy_after.get(cpu, 0) - busy_before.get(cpu, 0) - (own if cpu == current else 0)
        for cpu in allowed
    }
    # The highest number wins a tie: CPU 0 usually takes more of the machine's interrupts.
    best = min(allowed, key=lambda cpu: (others[cpu], -cpu))
    if current in others and others[best] + margin * window >= others[current]:
        return current
    return best


def _read(path: str) -> str:
    with open(path, encoding="ascii") as stream:
        return stream.read()


def least_busy_cpu(allowed: Sequence[int], seconds: float = SAMPLE_SECONDS) -> int:
    """The CPU of `allowed` least busy over the next `seconds` (the last one when /proc cannot say)."""
    try:
        before = cpu_busy_ticks(_read("/proc/stat"))
        time.sleep(seconds)
        after = cpu_busy_ticks(_read("/proc/stat"))
    except OSError:
        return allowed[-1]
    return choose_cpu(allowed, before, after)


class CpuKeeper:
    """Looks every `interval` seconds whether another allowed CPU has become clearly less busy than
    the bridge's, counting the bridge's own work as movable, and moves every thread there."""

    def __init__(
        self,
        cpu: int,
        allowed: Sequence[int],
        interval: float = KEEPER_SECONDS,
        *,
        read: Callable[[str], str] | None = None,
        confine: Callable[[int], None] | None = None,
        ticks_per_second: int | None = None,
    ) -> None:
        self.cpu = cpu
        self.allowed = sorted(allowed)  # the CPUs the process had before it was confined to one
        self.interval = interval
        self.moves = 0
        # /proc, the move and the clock tick: the real ones, or a test's.
        self._read = read or _read
        self._confine = confine or _confine
        self._ticks_per_second = ticks_per_second or os.sysconf("SC_CLK_TCK")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)

    def _sample(self) -> tuple[dict[int, int], int]:
        return cpu_busy_ticks(self._read("/proc/stat")), own_ticks(self._read("/proc/self/stat"))

    def _run(self) -> None:
        try:
            busy, own = self._sample()
            while not self._stop.wait(self.interval):
                allowed = [cpu for cpu in self.allowed if cpu in busy]
                now_busy, now_own = self._sample()
                cpu = choose_cpu(
                    allowed,
                    busy,
                    now_busy,
                    current=self.cpu,
                    own=now_own - own,
                    window=round(self.interval * self._ticks_per_second),
                )
                busy, own = now_busy, now_own
                if cpu != self.cpu:
                    log.info("moving to CPU %s: CPU %s has become busier", cpu, self.cpu)
                    self._confine(cpu)
                    self.cpu = cpu
                    self.moves += 1
        except (OSError, ValueError, IndexError) as exc:  # /proc unreadable, or not as Linux writes it
            log.warning("cpu_affinity: no longer watching how busy the CPUs are (%s)", exc)
