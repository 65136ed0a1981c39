"""What several commands share: exit codes, image paths, progress bars, the reader a --url/--token asks
for, and the pieces of their arguments (--regions, -v)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from bridge.config import TOKEN_ENV, ReaderConfig, format_problems
from bridge.core.errors import ConfigError

if TYPE_CHECKING:
    from tqdm import tqdm

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# What `reader.url: local` imports (the [local] extra), looked up without importing it.
LOCAL_ENGINE_MODULES = ("rapidocr", "onnxruntime", "onnx", "cv2")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}

READER_URL_HELP = (
    "'local' (the offline reader), an on-premise SDK URL or the cloud URL (default: the cloud "
    "when a token is set, else 'local')"
)
TOKEN_HELP = f"API token (default: ${TOKEN_ENV})"

log = logging.getLogger("bridge")


def image_paths(paths: Sequence[str]) -> list[Path]:
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise ConfigError(f"{name}: no such file or folder")
    if not found:
        raise ConfigError(f"no .jpg, .jpeg or .png image under {', '.join(paths)}")
    return found


def progress(total: int, what: str) -> tqdm:
    """A progress bar on stderr (tqdm) when it is a terminal and there is more than one item: it counts
    an item when it is finished, so it shows N/N when the last one ends. tqdm is imported here, not by
    every command: `run` never draws one, and would carry its ~1 MB."""
    from tqdm import tqdm

    return tqdm(total=total, unit=what, file=sys.stderr, disable=None if total > 1 else True, leave=True)


def logging_redirect_tqdm() -> contextlib.AbstractContextManager[None]:
    """Log lines through tqdm while a bar is drawn (imported on use, as in `progress`)."""
    from tqdm.contrib.logging import logging_redirect_tqdm as redirect

    return redirect()


def reader_settings(url: str | None, token: str | None, **settings: object) -> ReaderConfig:
    """The reader a command's --url/--token ask for, chosen as the configuration chooses it: no URL
    means the cloud with a token, else the offline reader (said on stderr)."""
    try:
        reader = ReaderConfig(url=url, token=token, **settings)
    except ValidationError as exc:
        problems = [problem.removeprefix("configuration: ") for problem in format_problems(exc)]
        raise ConfigError(problems[0], problems=problems) from None
    if reader.default_note:
        print(f"plate-bridge: {reader.default_note}", file=sys.stderr)
    return reader


def quiet_one_shot(args: argparse.Namespace) -> None:
    """A one-shot command's output is its result: the bridge's INFO narration (which reader, over
    which transport) is for -v."""
    if not args.verbose:
        logging.getLogger("bridge").setLevel(logging.WARNING)


def split_commas(value: str) -> list[str]:
    """`--regions gb,fr` as well as `--regions gb --regions fr`."""
    return [code.strip() for code in value.split(",") if code.strip()]


def regions_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--regions",
        action="extend",
        type=split_commas,
        default=[],
        metavar="CODE[,CODE...]",
        help="region codes (gb, us-ca, ...): a comma list or repeated",
    )
