"""`plate-bridge serve`: a Plate-Recognizer-compatible API over the offline engine (bridge/server/)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bridge.cli.common import EXIT_OK
from bridge.config import TOKEN_ENV
from bridge.core.errors import ConfigError

NAME = "serve"
HELP = "a Plate-Recognizer-compatible API over the offline engine"

SERVE_TOKEN_ENV = "PLATE_BRIDGE_SERVE_TOKEN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="the next free port is used when taken")
    parser.add_argument(
        "--token",
        help=f"require this token (Authorization: Token ...); visible to other users in `ps`: prefer "
        f"--token-file or ${SERVE_TOKEN_ENV} (${TOKEN_ENV} is used when none is given)",
    )
    parser.add_argument("--token-file", metavar="FILE", help="read the required token from this file")
    parser.add_argument("--threads", type=int, default=1, help="images read at the same time")


def handle(args: argparse.Namespace) -> int:
    try:
        from bridge.server import serve
    except ImportError as exc:
        raise ConfigError(str(exc)) from None
    serve(args.host, args.port, _serve_token(args), engine_threads=args.threads)
    return EXIT_OK


def _serve_token(args: argparse.Namespace) -> str | None:
    """The token `serve` requires: --token-file, else --token (which shows in `ps`), else
    $PLATE_BRIDGE_SERVE_TOKEN, else $PLATE_RECOGNIZER_TOKEN; None: no token required."""
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"--token-file {args.token_file}: {exc.strerror or exc}") from None
        if not token:
            raise ConfigError(f"--token-file {args.token_file}: the file is empty")
        return token
    return args.token or os.environ.get(SERVE_TOKEN_ENV) or os.environ.get(TOKEN_ENV) or None
