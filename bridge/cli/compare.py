"""`plate-bridge compare`: replay frames through the offline and the paid reader (bridge/compare.py)."""

from __future__ import annotations

import argparse

NAME = "compare"
HELP = "replay frames through the offline and the paid reader"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bridge import compare

    compare.add_arguments(parser)


def handle(args: argparse.Namespace) -> int:
    from bridge import compare

    return compare.run(args)
