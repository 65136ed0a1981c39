"""Process tuning for `plate-bridge run`: glibc's malloc arenas and, when asked, the CPUs it runs on."""

from __future__ import annotations

import logging
import os
import sys

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


def pin_to_cpu(setting: str | int, *, reader_is_local: bool) -> int | None:
    """Confine this process to one CPU as `cpu_affinity` asks; return the CPU, or None if not pinned.

    `all` (the default) leaves the CPU set alone. Pinning is an option because of what it measured:
    only one of the bridge's threads runs Python at a time (the GIL), and every frame passes it between
    the MQTT thread and a worker several times; when those threads sit on different cores, each
    hand-off is a cross-core wake-up. In benchmarks/ on 2 cores, pinned to one the bridge spent
    0.39-0.42 ms of CPU per frame instead of 0.57-0.66, and read 1.5x the frames per second. But it
    also confines everything else in the process (the embedded broker), which a user does not expect
    from a bridge handling a few frames a second. `auto` pins only when the reader is remote: the
    offline engine's inference runs in C on every CPU.
    """
    if setting == "all" or not hasattr(os, "sched_setaffinity"):
        return None  # not Linux (macOS, Windows): the OS has no such call
    allowed = sorted(os.sched_getaffinity(0))
    if setting == "auto":
        if reader_is_local or len(allowed) < 2:
            return None
        cpu = allowed[-1]  # CPU 0 usually takes more of the machine's interrupts
    elif setting in allowed:
        cpu = int(setting)
    else:
        raise ConfigError(f"cpu_affinity: {setting}: this process may only run on CPUs {allowed}")
    # Every thread there is so far (normally only this one); threads started later inherit it.
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for thread in threads:
        os.sched_setaffinity(thread, {cpu})
    return cpu
