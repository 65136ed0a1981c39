"""`plate-bridge recognize`: read the plates of image files once, as JSON lines or CSV."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bridge.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    READER_URL_HELP,
    TOKEN_HELP,
    image_paths,
    logging_redirect_tqdm,
    progress,
    quiet_one_shot,
    reader_settings,
    regions_option,
)
from bridge.config import TOKEN_ENV
from bridge.core.errors import BridgeError, ConfigError, PayloadNotImage
from bridge.core.regions import normalize_regions
from bridge.imaging.images import sniff_format

NAME = "recognize"
HELP = "read the plates of image files once"

CSV_COLUMNS = [
    "filename",
    "plate",
    "score",
    "dscore",
    "region",
    "vehicle_type",
    "xmin",
    "ymin",
    "xmax",
    "ymax",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (recursive)")
    regions_option(parser)
    parser.add_argument("--camera-id", help="camera id sent with each image")
    parser.add_argument("--mmc", action="store_true", help="ask for make, model and colour")
    parser.add_argument("--config", metavar="JSON", help="engine config (SDK), a JSON object")
    parser.add_argument("--url", help=READER_URL_HELP)
    parser.add_argument("--token", help=TOKEN_HELP)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per reader call")
    parser.add_argument("--format", choices=["json", "csv"], default="json", help="JSON lines or CSV")
    parser.add_argument("-o", "--output", metavar="FILE", help="write there instead of stdout")


def handle(args: argparse.Namespace) -> int:
    from bridge.readers import build_reader

    try:
        config = json.loads(args.config) if args.config else None
    except ValueError:
        raise ConfigError("--config is not JSON text") from None
    if config is not None and not isinstance(config, dict):
        raise ConfigError("--config must be a JSON object")
    try:
        regions = normalize_regions(args.regions)
    except ValueError as exc:
        raise ConfigError(f"--regions: {exc}") from None
    paths = image_paths(args.paths)
    quiet_one_shot(args)
    settings = reader_settings(
        args.url, args.token or os.environ.get(TOKEN_ENV) or None, timeout=args.timeout
    )
    reader = build_reader(settings, validate=True)
    out = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout  # noqa: SIM115
    writer = csv.DictWriter(out, CSV_COLUMNS) if args.format == "csv" else None
    failed = 0
    bar = progress(len(paths), "image")
    # Rows go out with the bar cleared first, so a row never shares the bar's line; log lines and
    # messages go through tqdm for the same reason.
    writing = bar.external_write_mode if out is sys.stdout else contextlib.nullcontext
    try:
        with logging_redirect_tqdm():
            if writer:
                with writing():
                    writer.writeheader()
            for path in paths:
                try:
                    body = _recognize_one(reader, path, args, regions, config)
                except BridgeError as error:
                    if error.code in ("reader_forbidden", "reader_unavailable"):
                        raise  # every other image would fail the same way
                    failed += 1
                    bar.write(f"{path}: {error.code}: {error}", file=sys.stderr)
                else:
                    with writing():
                        if writer:
                            writer.writerows(_csv_rows(path, body))
                        else:
                            out.write(json.dumps({"path": str(path), **body}) + "\n")
                        out.flush()
                bar.update()  # once the image is done, so N/N shows when the last one ends
    finally:
        bar.close()
        if args.output:
            out.close()
        close = getattr(reader, "close", None)
        if close is not None:
            close()
    if failed:
        print(f"{failed} of {len(paths)} image(s) could not be read", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _recognize_one(
    reader: Any, path: Path, args: argparse.Namespace, regions: Sequence[str], config: dict[str, Any] | None
) -> dict[str, Any]:
    from bridge.nodes.decode import describe

    image = path.read_bytes()
    if sniff_format(image) is None:
        # Checked before any call: the reader would refuse it too, after charging for it.
        raise PayloadNotImage(f"not a JPEG or PNG image: it is {describe(image)}")
    body: dict[str, Any] = reader.read(
        image,
        regions=regions,
        camera_id=args.camera_id,
        mmc=True if args.mmc else None,
        config=config,
        filename=path.name,
    )
    return body


def _csv_rows(path: Path, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One row per plate, and one row with an empty plate for an image without any: every image
    read appears in the CSV."""
    results = body.get("results") or []
    if not results:
        yield {"filename": str(path)}
    for result in results:
        box = result.get("box", {})
        yield {
            "filename": str(path),
            "plate": result.get("plate"),
            "score": result.get("score"),
            "dscore": result.get("dscore"),
            "region": (result.get("region") or {}).get("code"),
            "vehicle_type": (result.get("vehicle") or {}).get("type"),
            **{key: box.get(key) for key in ("xmin", "ymin", "xmax", "ymax")},
        }
