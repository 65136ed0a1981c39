"""`plate-bridge run`: the bridge, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from bridge import __version__
from bridge.cli.check_config import check_buildable
from bridge.cli.common import EXIT_OK, log
from bridge.config import load_config

NAME = "run"
HELP = "run the bridge until SIGINT/SIGTERM"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML configuration (default: built-in defaults)")


def handle(args: argparse.Namespace) -> int:
    from bridge.service import Bridge
    from bridge.tuning import DEFAULT_ARENAS, CpuKeeper, allowed_cpus, limit_malloc_arenas, pin_to_cpu

    config = load_config(args.config)
    check_buildable(config)  # before the embedded broker starts: it fails as check-config says
    if not args.verbose:  # -v wins over the configured level
        logging.getLogger().setLevel(config.log_level)
    if config.reader.default_note:
        log.info("%s", config.reader.default_note)
    allowed = allowed_cpus()
    cpu = pin_to_cpu(config.cpu_affinity, offline_engine=config.uses_offline_engine)
    # On one CPU one thread runs at a time: a second malloc arena saves little waiting and holds memory.
    limit_malloc_arenas(1 if cpu is not None else DEFAULT_ARENAS)
    keeper = None
    if cpu is not None:
        log.info("running on CPU %s (cpu_affinity: %s)", cpu, config.cpu_affinity)
        if config.cpu_affinity == "auto":
            keeper = CpuKeeper(cpu, allowed)
            keeper.start()
    stop = _stop_on_signals()
    bridge = Bridge(config)
    bridge.start()
    host, port = bridge.broker_address
    print(
        f"plate-bridge {__version__}: broker {host}:{port}, {len(config.routes)} route(s); Ctrl+C stops",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        queued = bridge.health()["queued"]
        print(
            f"plate-bridge: stopping: finishing {queued} queued frame(s) and the reads in progress "
            f"(at most 10 s), then publishing offline and disconnecting from {host}:{port}",
            file=sys.stderr,
            flush=True,
        )
        bridge.stop()
        if keeper is not None:
            keeper.stop()
        stats = bridge.stats
        print(
            f"plate-bridge: stopped at {time.strftime('%H:%M:%S')}: {stats.received} frame(s) received, "
            f"{stats.processed} read, {stats.dropped} dropped",
            file=sys.stderr,
            flush=True,
        )
    return EXIT_OK


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM; installed before start-up so an early signal still stops
    the bridge cleanly (it publishes `offline`) instead of killing it."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop
