"""plate-bridge reads the license plates of camera frames that arrive over MQTT and publishes what it
read as MQTT events (Plate Recognizer cloud, an on-premise SDK, or its own offline reader).

Start with `plate-bridge demo` (no broker, no account, no network needed), then
`plate-bridge check-config examples/config.yaml` and `plate-bridge run --config examples/config.yaml`.
"""

# (The docstring above is `plate-bridge --help`. This package: arguments and exit codes over the
# library, nothing more. One module per command, each with NAME, HELP, add_arguments(parser) and
# handle(args) -> exit code; a new command is a new module and one line in COMMANDS.)

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from bridge import __version__
from bridge.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from bridge.core.errors import BridgeError, ConfigError

__all__ = ["COMMANDS", "build_parser", "main"]

# The commands, in the order `plate-bridge --help` lists them: modules of this package.
COMMANDS = (
    "recognize",
    "run",
    "check_config",
    "publish",
    "serve",
    "evaluate",
    "compare",
    "demo",
    "web",
)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default in --help (unless its help already says it, or there is none), and the
    description's line breaks kept."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: {default})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plate-bridge", description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"plate-bridge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        command = importlib.import_module(f"{__name__}.{name}")
        sub = commands.add_parser(
            command.NAME, help=command.HELP, description=command.HELP, formatter_class=_HelpFormatter
        )
        # -v after the command too (`plate-bridge run -v`); SUPPRESS keeps a -v given before it.
        sub.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debug messages"
        )
        command.add_arguments(sub)
        sub.set_defaults(handler=command.handle)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The embedded broker's libraries narrate every state change at INFO; keep their warnings only.
    for chatty in ("amqtt", "transitions"):
        logging.getLogger(chatty).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    # urllib3's DEBUG lines quote each request's path and query, where webhook and Frigate URLs keep
    # their tokens; what leaves the process shows a URL as scheme://host:port only (bridge/core/redact.py).
    logging.getLogger("urllib3").setLevel(logging.INFO)
    try:
        return int(args.handler(args))
    except ConfigError as error:
        for problem in error.problems:
            print(f"plate-bridge: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except BridgeError as error:
        print(f"plate-bridge: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Whoever read our output stopped (`| head`): not our error; keep Python from printing one
        # when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
