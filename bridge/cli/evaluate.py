"""`plate-bridge evaluate`: accuracy and latency of a reader on labelled images (bridge/evaluate.py)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bridge.cli.common import (
    EXIT_OK,
    TOKEN_HELP,
    logging_redirect_tqdm,
    quiet_one_shot,
    reader_settings,
    regions_option,
)
from bridge.config import LOCAL_READER, TOKEN_ENV
from bridge.core.errors import ConfigError
from bridge.core.regions import normalize_regions

NAME = "evaluate"
HELP = "accuracy and latency of a reader on labelled images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "labels",
        metavar="LABELS.tsv",
        help="TSV with a header: image, plate[, set][, x, y, w, h (the plate's box)]",
    )
    regions_option(parser)
    parser.add_argument(
        "--set-regions", action="append", default=[], metavar="SET=CODES", help="hints for one set: us=us"
    )
    parser.add_argument(
        "--url",
        default=LOCAL_READER,
        help="'local' (the offline reader), an on-premise SDK URL or the cloud URL (with a token); "
        "local even when a token is set, so an evaluation never spends paid calls unasked",
    )
    parser.add_argument("--token", help=TOKEN_HELP)
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also run a naive full-frame PP-OCR reader on the same images and compare (needs [local])",
    )
    from bridge import calibrate

    calibrate.add_arguments(parser)


def handle(args: argparse.Namespace) -> int:
    from bridge.evaluate import evaluate, naive_baseline
    from bridge.readers import build_reader

    try:
        regions = normalize_regions(args.regions)
    except ValueError as exc:
        raise ConfigError(f"--regions: {exc}") from None
    regions_by_set: dict[str, tuple[str, ...]] = {}
    for spec in args.set_regions:
        name, equals, codes = spec.partition("=")
        if not equals or not name:
            raise ConfigError(f"--set-regions {spec!r}: expected SET=CODE[,CODE...], e.g. us=us")
        try:
            regions_by_set[name] = normalize_regions(codes.split(","))
        except ValueError as exc:
            raise ConfigError(f"--set-regions {spec!r}: {exc}") from None
    labels = Path(args.labels)
    if not labels.is_file():
        raise ConfigError(f"{labels}: no such file")
    quiet_one_shot(args)
    settings = reader_settings(args.url, args.token or os.environ.get(TOKEN_ENV) or None)
    reader = build_reader(settings, validate=True)

    def read(image: bytes, codes: Sequence[str]) -> dict[str, Any]:
        return reader.read(image, regions=codes)

    if args.calibrate:
        from bridge import calibrate

        try:
            with logging_redirect_tqdm():
                return calibrate.run(args, read, regions, regions_by_set)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    try:
        with logging_redirect_tqdm():
            report = evaluate(
                labels,
                read,
                regions,
                limit=args.limit,
                regions_by_set=regions_by_set,
                progress=True,
                baseline=naive_baseline() if args.baseline else None,
            )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.as_table())
    return EXIT_OK
