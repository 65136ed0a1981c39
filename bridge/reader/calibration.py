"""The offline reader's score mapped to the precision measured on labelled photos, per region family.

A reading's `score` is the engine's own confidence; what local-first needs is how often a reading of
that score was exactly right on photos the engine was not tuned on. `fit()` makes that map from
(score, right?) samples: scores sorted, isotonic regression (pool adjacent violators) so precision
never falls as the score rises, blocks of at least `min_block` samples, and each block's precision
replaced by the lower end of its one-sided Wilson interval: a block of 30 readings, all right, is
credited 0.95 at 90 % confidence, not 1.0. The map is a step function, `lower_precision(family, score)`.

Families group regions whose plates look alike (`region_family`): `us` (North America), `eu` (the
EU-band countries), `br` (Mercosul and Chile), and `any` (every sample together, for routes with
no regions, several families, or a family the calibration has too few samples of).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.core.plate_patterns import EU_BAND_REGIONS, base_region

__all__ = [
    "ANY_FAMILY",
    "SHIPPED_CALIBRATION",
    "Calibration",
    "FamilyCalibration",
    "fit",
    "load_calibration",
    "region_family",
]

SHIPPED_CALIBRATION = Path(__file__).with_name("local_calibration.json")
ANY_FAMILY = "any"
FAMILIES: dict[str, frozenset[str]] = {
    "us": frozenset({"us", "ca", "mx"}),
    "eu": frozenset(EU_BAND_REGIONS | {"ch"}),
    "br": frozenset({"br", "ar", "uy", "py", "cl"}),
}
# One-sided confidence of the lower bound: z of 90 %.
DEFAULT_CONFIDENCE = 0.90
DEFAULT_MIN_BLOCK = 10
# A family's own map is used from this many samples on; below, the `any` map answers.
DEFAULT_MIN_FAMILY_SAMPLES = 30
FORMAT_VERSION = 1


def region_family(regions: Iterable[str]) -> str:
    """The family of a route's regions: one family when all of them are in it, else `any`."""
    families = set()
    for region in regions:
        country = base_region(region)
        family = next((name for name, members in FAMILIES.items() if country in members), ANY_FAMILY)
        families.add(family)
    return families.pop() if len(families) == 1 else ANY_FAMILY


def _z(confidence: float) -> float:
    """The standard normal quantile of `confidence` (one-sided), by bisection on erf: no scipy."""
    low, high = 0.0, 10.0
    for _ in range(100):
        middle = (low + high) / 2
        if 0.5 * (1 + math.erf(middle / math.sqrt(2))) < confidence:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def wilson_lower(right: int, total: int, confidence: float = DEFAULT_CONFIDENCE) -> float:
    """The lower end of the one-sided Wilson score interval of `right` out of `total`."""
    if total <= 0:
        return 0.0
    z = _z(confidence)
    share = right / total
    centre = share + z * z / (2 * total)
    spread = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total))
    return max(0.0, (centre - spread) / (1 + z * z / total))


@dataclass(frozen=True)
class Block:
    """Readings scoring from `score_min` up to the next block's: how many, how many right, the bound."""

    score_min: float
    samples: int
    right: int
    lower: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "score_min": self.score_min,
            "samples": self.samples,
            "right": self.right,
            "lower": self.lower,
        }


@dataclass(frozen=True)
class FamilyCalibration:
    """One family's step function, lowest scores first."""

    blocks: tuple[Block, ...]

    @property
    def samples(self) -> int:
        return sum(block.samples for block in self.blocks)

    def lower_precision(self, score: float) -> float:
        """The precision credited to a reading of `score`: its block's bound, 0 below the first."""
        credited = 0.0
        for block in self.blocks:
            if score >= block.score_min:
                credited = block.lower
            else:
                break
        return credited

    def min_score(self, precision: float) -> float | None:
        """The lowest score credited at least `precision`, or None when none is."""
        for block in self.blocks:
            if block.lower >= precision:
                return block.score_min
        return None


@dataclass(frozen=True)
class Calibration:
    """Every family's map, and how they were made (`made`: photos, split, confidence)."""

    families: Mapping[str, FamilyCalibration]
    min_family_samples: int = DEFAULT_MIN_FAMILY_SAMPLES
    made: Mapping[str, Any] = field(default_factory=dict)

    def family(self, regions: Iterable[str]) -> tuple[str, FamilyCalibration | None]:
        """The family whose map answers for `regions`, and that map (None: nothing calibrated)."""
        name = region_family(regions)
        own = self.families.get(name)
        if own is not None and own.samples >= self.min_family_samples:
            return name, own
        return ANY_FAMILY, self.families.get(ANY_FAMILY)

    def lower_precision(self, regions: Iterable[str], score: float) -> float:
        _, calibration = self.family(regions)
        return calibration.lower_precision(score) if calibration is not None else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "made": dict(self.made),
            "min_family_samples": self.min_family_samples,
            "families": {
                name: [block.as_dict() for block in calibration.blocks]
                for name, calibration in sorted(self.families.items())
            },
        }


def fit_family(
    samples: Sequence[tuple[float, bool]],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    min_block: int = DEFAULT_MIN_BLOCK,
) -> FamilyCalibration:
    """Isotonic regression of right-or-wrong on score, blocks of at least `min_block`, Wilson bounds."""
    # Equal scores are one point: a threshold cannot split them.
    points: dict[float, list[int]] = {}
    for score, right in samples:
        point = points.setdefault(round(float(score), 3), [0, 0])
        point[0] += 1
        point[1] += int(bool(right))
    # Pool adjacent violators: [score_min, samples, right], merged while a block is worse than its left.
    blocks: list[list[float]] = []
    for score in sorted(points):
        total, right = points[score]
        blocks.append([score, total, right])
        while len(blocks) > 1 and blocks[-2][2] / blocks[-2][1] >= blocks[-1][2] / blocks[-1][1]:
            _, total, right = blocks.pop()
            blocks[-1][1] += total
            blocks[-1][2] += right
    # Too small to bound anything: a small block joins its lower neighbour (the top one included, so a
    # few lucky high scores do not make a block of their own).
    index = len(blocks) - 1
    while index > 0:
        if blocks[index][1] < min_block:
            blocks[index - 1][1] += blocks[index][1]
            blocks[index - 1][2] += blocks[index][2]
            del blocks[index]
        index -= 1
    result: list[Block] = []
    best = 0.0
    for score, total, right in blocks:
        # Precision never falls as the score rises (the isotonic assumption), so a block is credited
        # at least what a lower one is.
        best = max(best, wilson_lower(int(right), int(total), confidence))
        result.append(Block(float(score), int(total), int(right), round(best, 4)))
    return FamilyCalibration(tuple(result))


def fit(
    samples: Iterable[tuple[str, float, bool]],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    min_block: int = DEFAULT_MIN_BLOCK,
    min_family_samples: int = DEFAULT_MIN_FAMILY_SAMPLES,
    made: Mapping[str, Any] | None = None,
) -> Calibration:
    """A calibration from (family, score, right?) samples; `any` is fitted on all of them."""
    by_family: dict[str, list[tuple[float, bool]]] = {ANY_FAMILY: []}
    for family, score, right in samples:
        by_family.setdefault(family, []).append((score, right))
        if family != ANY_FAMILY:
            by_family[ANY_FAMILY].append((score, right))
    families = {
        name: fit_family(points, confidence=confidence, min_block=min_block)
        for name, points in by_family.items()
        if points
    }
    details = {"confidence": confidence, "min_block": min_block, **(made or {})}
    return Calibration(families, min_family_samples, details)


def load_calibration(path: Path | None = None) -> Calibration:
    """The calibration in `path` (default: the one shipped with the package). Raises ValueError."""
    path = path or SHIPPED_CALIBRATION
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    try:
        if document["version"] != FORMAT_VERSION:
            raise ValueError(
                f"{path}: calibration version {document['version']!r}, expected {FORMAT_VERSION}"
            )
        families = {
            str(name): FamilyCalibration(
                tuple(
                    Block(float(b["score_min"]), int(b["samples"]), int(b["right"]), float(b["lower"]))
                    for b in blocks
                )
            )
            for name, blocks in document["families"].items()
        }
        return Calibration(
            families,
            int(document.get("min_family_samples", DEFAULT_MIN_FAMILY_SAMPLES)),
            document.get("made", {}),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a local-first calibration (missing or wrong {exc})") from None
