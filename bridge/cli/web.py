"""`plate-bridge web`: the web page alone, against the history store (bridge/extensions/web/)."""

from __future__ import annotations

import argparse

from bridge.extensions.web import command

NAME = "web"
HELP = "the web page alone, against the history store (history: and web: of --config)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    command.add_arguments(parser)


def handle(args: argparse.Namespace) -> int:
    return command.run(args)
