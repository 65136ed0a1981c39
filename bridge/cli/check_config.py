"""`plate-bridge check-config`: check a configuration as `run` would, and print it with secrets masked."""

from __future__ import annotations

import argparse
import importlib.util
import sys

import yaml

from bridge.cli.common import EXIT_OK, LOCAL_ENGINE_MODULES
from bridge.config import TOKEN_ENV, CoreConfig, load_config
from bridge.core.errors import ConfigError

NAME = "check-config"
HELP = "check a configuration as `run` would and print it, secrets masked"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="FILE")


def handle(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    check_buildable(config)
    if config.reader.default_note:
        print(f"plate-bridge: {config.reader.default_note}", file=sys.stderr)
    yaml.safe_dump(config.masked(), sys.stdout, sort_keys=False)
    return EXIT_OK


def check_buildable(config: CoreConfig) -> None:
    """What `run` builds before it connects, checked without a broker: every route's flow with the
    builder `run` uses (Flow.build), so an unknown node, a misspelt node setting or a plugin that does
    not load fails here with the message `run` would give; and the offline reader's extra when the
    configuration reads with it."""
    from bridge.flows import Flow
    from bridge.nodes import NodeContext

    class _Nowhere:
        def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
            raise RuntimeError("check-config publishes nothing")

    for route in config.routes:
        Flow.build(route, NodeContext(route=route, base_topic=config.mqtt.base_topic, publisher=_Nowhere()))
    missing = [name for name in LOCAL_ENGINE_MODULES if importlib.util.find_spec(name) is None]
    if config.reader.is_local and missing:
        why = " (chosen because no token is set)" if config.reader.default_note else ""
        cloud = f", or set {TOKEN_ENV} for the Plate Recognizer cloud" if why else ""
        raise ConfigError(
            f"reader.url: local{why}: the offline reader is not installed ({', '.join(missing)} missing): "
            f"pip install 'plate-bridge[local]'{cloud}"
        )
