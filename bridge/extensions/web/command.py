"""`plate-bridge web`: the web page alone, against the history store a running bridge writes.

For a page on another machine than the bridge (the same PostgreSQL URL), or a look at a store while
no bridge runs. The live feed shows what any bridge writes to the store.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML configuration: its history: and web: sections")
    parser.add_argument("--host", help="address to listen on (default: web.host)")
    parser.add_argument("--port", type=int, help="port to listen on (default: web.port; 0: any free one)")


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from bridge.config import format_problems, load_config
    from bridge.core.errors import ConfigError
    from bridge.extensions.web.config import WebConfig
    from bridge.extensions.web.extension import open_web

    config = load_config(args.config)
    overrides = {key: value for key in ("host", "port") if (value := getattr(args, key)) is not None}
    # Checked as `run` checks an enabled page: a host off loopback still needs a password.
    try:
        settings = WebConfig(**{**config.web.model_dump(), **overrides, "enabled": True})
    except ValidationError as exc:
        problems = [f"web.{problem}" for problem in format_problems(exc)]
        raise ConfigError(f"{len(problems)} configuration problem(s)", problems=problems) from None
    config = config.model_copy(update={"web": settings})
    server, store = open_web(config)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server.start()
        print(f"plate-bridge web: {server.url} (Ctrl+C stops)", file=sys.stderr, flush=True)
        stop.wait()
    finally:
        server.stop()
        store.close()
    return 0
