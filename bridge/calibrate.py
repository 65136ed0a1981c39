"""`plate-bridge evaluate --calibrate OUT.json`: the offline reader's score -> measured precision.

The labelled photos are split by a hash of their path: a `holdout` share is held apart and only
reported on; the calibration is fitted on the rest (bridge/reader/calibration.py). Both halves are
reported at several `precision` settings — the share of frames local first would answer offline and
how many of those were exactly right — so the figure that counts is the held-apart one.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.core.plate_patterns import DEFAULT_REGION_ORDER, fits_layout
from bridge.reader.calibration import Calibration, fit, region_family

Reader = Callable[[bytes, Sequence[str]], dict[str, Any]]
REPORTED_PRECISIONS = (0.9, 0.95, 0.98, 0.99)
DEFAULT_HOLDOUT = 0.5


def held_apart(image: str, holdout: float) -> bool:
    """Whether a labelled photo is in the held-apart share: a hash of its path, so the split is the same
    on every machine and for every reader, and a photo added later does not move the others."""
    bucket = int.from_bytes(hashlib.sha256(image.encode("utf-8")).digest()[:4], "big") / 2**32
    return bucket < holdout


@dataclass(frozen=True)
class Sample:
    """One labelled photo read offline: its top plate, score, whether it fits a layout and is right."""

    image: str
    set_name: str
    regions: tuple[str, ...]
    expected: str
    plate: str | None
    score: float | None
    fits: bool
    held_apart: bool
    others: tuple[tuple[str, float], ...] = ()
    """The frame's other results (plate, score): local first answers offline only when all pass."""

    @property
    def right(self) -> bool:
        return self.plate == self.expected

    @property
    def family(self) -> str:
        return region_family(self.regions)


def read_samples(
    labels_path: Path,
    read: Reader,
    *,
    regions: Sequence[str] = (),
    regions_by_set: Mapping[str, Sequence[str]] | None = None,
    holdout: float = DEFAULT_HOLDOUT,
    limit: int | None = None,
    progress: bool = False,
) -> list[Sample]:
    """Read every labelled photo once with `read(image_bytes, regions)`."""
    from tqdm import tqdm

    from bridge.evaluate import _label_rows, normalize_plate

    rows = _label_rows(Path(labels_path))[:limit]
    by_set = {name: tuple(codes) for name, codes in (regions_by_set or {}).items()}
    samples = []
    for row in tqdm(rows, unit="image", file=sys.stderr, disable=None if progress else True):
        set_name = row.get("set") or Path(row["image"]).parts[0]
        codes = by_set.get(set_name, tuple(regions))
        answer = read((Path(labels_path).parent / row["image"]).read_bytes(), codes)
        results = answer.get("results") or []
        top = results[0] if results else None
        plate = normalize_plate(str(top.get("plate") or "")) if top else None
        score = float(top.get("score") or 0.0) if top else None
        samples.append(
            Sample(
                image=row["image"],
                set_name=set_name,
                regions=codes,
                expected=normalize_plate(row["plate"]),
                plate=plate,
                score=score,
                fits=bool(plate) and fits_layout(plate or "", codes or DEFAULT_REGION_ORDER),
                held_apart=held_apart(row["image"], holdout),
                others=tuple(
                    (normalize_plate(str(other.get("plate") or "")), float(other.get("score") or 0.0))
                    for other in results[1:]
                ),
            )
        )
    return samples


def calibrate(
    samples: Sequence[Sample], *, made: Mapping[str, Any] | None = None, **options: Any
) -> Calibration:
    """Fit on the samples not held apart that local first could accept (a plate that fits a layout)."""
    return fit(
        ((s.family, s.score or 0.0, s.right) for s in samples if not s.held_apart and s.fits),
        made=made,
        **options,
    )


def half_report(
    samples: Sequence[Sample], calibration: Calibration, precisions: Sequence[float]
) -> dict[str, Any]:
    """For each `precision`: frames answered offline (a plate, on layout, credited enough) and how many
    of them were exactly right; per set and in total."""
    report: dict[str, Any] = {
        "images": len(samples),
        "read_exactly": sum(s.right for s in samples),
        "at": {},
    }
    for precision in precisions:
        accepted = [s for s in samples if _accepted(s, calibration, precision)]
        right = sum(s.right for s in accepted)
        report["at"][f"{precision:g}"] = {
            "offline": len(accepted),
            "offline_share": round(len(accepted) / len(samples), 3) if samples else 0.0,
            "offline_right": right,
            "offline_precision": round(right / len(accepted), 4) if accepted else None,
            "wrong": [
                {"image": s.image, "expected": s.expected, "read": s.plate, "score": s.score}
                for s in accepted
                if not s.right
            ],
        }
    return report


def _accepted(sample: Sample, calibration: Calibration, precision: float) -> bool:
    """What local first decides (bridge/reader/cascade.py, watch lists aside): every result credited
    at least `precision` and on a layout of the sample's regions."""
    if not sample.fits or sample.score is None:
        return False
    layouts = sample.regions or DEFAULT_REGION_ORDER
    results = [(sample.plate or "", sample.score), *sample.others]
    return all(
        calibration.lower_precision(sample.regions, score) >= precision and fits_layout(plate, layouts)
        for plate, score in results
    )


def report(
    samples: Sequence[Sample], calibration: Calibration, precisions: Sequence[float] = REPORTED_PRECISIONS
) -> dict[str, Any]:
    """Both halves: `calibration` (what it was fitted on: optimistic) and `held_apart` (what counts)."""
    return {
        "calibration_half": half_report([s for s in samples if not s.held_apart], calibration, precisions),
        "held_apart_half": half_report([s for s in samples if s.held_apart], calibration, precisions),
    }


def as_table(document: Mapping[str, Any]) -> str:
    """A Markdown table of `report()`."""
    lines = [
        "| half | images | read exactly | precision | offline | offline % | right of those"
        " | precision of those |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, half in document.items():
        for precision, row in half["at"].items():
            shown = "—" if row["offline_precision"] is None else f"{100 * row['offline_precision']:.1f} %"
            lines.append(
                f"| {name.replace('_', ' ')} | {half['images']} | {half['read_exactly']} | {precision} |"
                f" {row['offline']} | {100 * row['offline_share']:.1f} | {row['offline_right']} | {shown} |"
            )
    return "\n".join(lines)


def write(calibration: Calibration, path: Path) -> None:
    import json

    path.write_text(json.dumps(calibration.as_dict(), indent=1) + "\n", encoding="utf-8")


def add_arguments(parser: Any) -> None:
    """`evaluate`'s calibration options (registered by bridge/cli/evaluate.py)."""
    parser.add_argument(
        "--calibrate",
        metavar="OUT.json",
        help="fit the offline reader's score -> precision map on the photos not held apart and write it "
        "(reader.local_first.calibration); both halves are reported",
    )
    parser.add_argument(
        "--holdout",
        type=float,
        default=DEFAULT_HOLDOUT,
        help="share of the photos held apart from --calibrate and only reported on"
        f" (default {DEFAULT_HOLDOUT})",
    )


def run(args: Any, read: Reader, regions: Sequence[str], regions_by_set: Mapping[str, Sequence[str]]) -> int:
    """`evaluate --calibrate`: read, fit, write, report. Returns the exit code."""
    import json

    if not 0 <= args.holdout < 1:
        raise ValueError(f"--holdout {args.holdout}: a share from 0 up to (not including) 1")
    samples = read_samples(
        Path(args.labels),
        read,
        regions=regions,
        regions_by_set=regions_by_set,
        holdout=args.holdout,
        limit=args.limit,
        progress=True,
    )
    made = {
        "labels": Path(args.labels).name,
        "holdout": args.holdout,
        "photos": len(samples),
        "fitted_on": sum(not s.held_apart for s in samples),
        "regions_by_set": {s.set_name: list(s.regions) for s in samples},
    }
    calibration = calibrate(samples, made=made)
    document = report(samples, calibration)
    write(calibration, Path(args.calibrate))
    if args.json:
        print(json.dumps({"calibration": calibration.as_dict(), "report": document}, indent=2))
    else:
        print(as_table(document))
        print(f"\nwrote {args.calibrate} (fitted on {made['fitted_on']} of {len(samples)} photos)")
    return 0
