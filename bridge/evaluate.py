"""Accuracy and latency of a plate reader over a labelled set of photos (`plate-bridge evaluate`)."""

from __future__ import annotations

import csv
import math
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

Reader = Callable[[bytes, Sequence[str]], dict[str, Any]]
TOP_K = 5
# Why a plate was missed, from where the reader went wrong (the first that applies):
# - ranked_below: the plate is among the reader's answers (any result's candidates), but not first;
# - misread: a result's box covers the labelled plate (`x y w h` columns), yet no candidate is the plate;
# - not_found: no result covers the plate: the detector, not the recognizer, missed it;
# - not_read: the plate is in no answer and the labels give no box to say which of the two it was.
MISS_CAUSES = ("ranked_below", "misread", "not_found", "not_read")
# The share of the labelled box a result's box must cover to count as having found the plate.
FOUND_COVERAGE = 0.3


def normalize_plate(text: str) -> str:
    """Plates compare case-insensitively, ignoring spaces and dashes."""
    return "".join(text.split()).replace("-", "").upper()


@dataclass
class ImageOutcome:
    """How the reader did on one labelled image."""

    set_name: str
    image: str
    expected: str
    read: str | None
    top_k: list[str]
    latency_ms: float
    miss_cause: str | None = None

    @property
    def exact(self) -> bool:
        return self.read == self.expected

    @property
    def in_top_k(self) -> bool:
        return self.expected in self.top_k


@dataclass
class SetSummary:
    """The figures of one set (or of all images together)."""

    name: str
    images: int
    exact: int
    top_k: int
    median_ms: float
    p95_ms: float
    miss_causes: dict[str, int] = field(default_factory=dict)

    @property
    def exact_percent(self) -> float:
        return 100.0 * self.exact / self.images if self.images else 0.0

    @property
    def top_k_percent(self) -> float:
        return 100.0 * self.top_k / self.images if self.images else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "set": self.name,
            "images": self.images,
            "exact": self.exact,
            "exact_percent": round(self.exact_percent, 1),
            "top5": self.top_k,
            "top5_percent": round(self.top_k_percent, 1),
            "median_ms": round(self.median_ms, 1),
            "p95_ms": round(self.p95_ms, 1),
            "miss_causes": dict(self.miss_causes),
        }


@dataclass
class EvaluationReport:
    """Per-set and total figures, plus every image's outcome for a closer look."""

    outcomes: list[ImageOutcome] = field(default_factory=list)
    regions: tuple[str, ...] = ()
    regions_by_set: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The baseline's outcomes on the same images in the same run (`evaluate(..., baseline=...)`).
    baseline_outcomes: list[ImageOutcome] | None = None

    def sets(self) -> list[SetSummary]:
        return _summaries(self.outcomes)

    def baseline_sets(self) -> list[SetSummary]:
        return _summaries(self.baseline_outcomes or [])

    def latency_ratios(self) -> dict[str, float]:
        """The reader's median over the baseline's median, and the reader's p95 over its own median."""
        total = self.sets()[-1]
        ratios = {"p95_over_median": _ratio(total.p95_ms, total.median_ms)}
        if self.baseline_outcomes is not None:
            ratios["median_over_baseline"] = _ratio(total.median_ms, self.baseline_sets()[-1].median_ms)
        return ratios

    def as_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "regions": list(self.regions),
            "regions_by_set": {name: list(codes) for name, codes in self.regions_by_set.items()},
            "sets": [summary.as_dict() for summary in self.sets()],
            "misses": _misses(self.outcomes),
        }
        if self.baseline_outcomes is not None:
            document["baseline"] = {
                "sets": [summary.as_dict() for summary in self.baseline_sets()],
                "misses": _misses(self.baseline_outcomes),
            }
        ratios = self.latency_ratios().items()
        document["latency"] = {name: round(v, 2) if math.isfinite(v) else None for name, v in ratios}
        return document

    def as_table(self) -> str:
        """A Markdown table: one row per set and a total row (the baseline's below, when it ran)."""
        lines = _table(self.sets(), "reader" if self.baseline_outcomes is not None else None)
        ratios = self.latency_ratios()
        if self.baseline_outcomes is not None:
            lines += _table(self.baseline_sets(), "baseline")[2:]
            lines.append("")
            lines.append(
                f"median latency: {ratios['median_over_baseline']:.2f}x the baseline's"
                " (same images, same run)"
            )
        lines.append(f"p95 latency: {ratios['p95_over_median']:.2f}x the median")
        causes = self.sets()[-1].miss_causes
        if causes:
            counted = ", ".join(f"{count} {cause.replace('_', ' ')}" for cause, count in causes.items())
            lines.append(f"misses by cause: {counted}")
        return "\n".join(lines)


def evaluate(
    labels_path: Path,
    read: Reader,
    regions: Sequence[str] = (),
    limit: int | None = None,
    regions_by_set: Mapping[str, Sequence[str]] | None = None,
    progress: bool = False,
    baseline: Reader | None = None,
) -> EvaluationReport:
    """Run `read(image_bytes, regions)` on each labelled image (the first `limit` only, if given).

    With a `baseline`, it reads every image too, right after the reader (or before it, every other image,
    so neither always meets a warm cache): latencies measured side by side on a shared machine compare.

    The TSV has a header with at least `image` (a path relative to the TSV) and `plate`; the set is the
    `set` column or else the image path's first component. Top-1 is the first result's plate; top-5 is the
    first five distinct plates among the results' candidates, best result first. Each miss gets a cause
    (`MISS_CAUSES`); the optional `x`, `y`, `w`, `h` columns (the plate's box in pixels) tell a plate the
    detector missed from one it found but misread. With `progress`, a progress bar on stderr when it is a
    terminal (each image counted when its reading is done).
    """
    labels_path = Path(labels_path)
    rows = _label_rows(labels_path)
    if limit is not None:
        rows = rows[:limit]
    by_set = {name: tuple(codes) for name, codes in (regions_by_set or {}).items()}
    report = EvaluationReport(regions=tuple(regions), regions_by_set=by_set)
    if baseline is not None:
        report.baseline_outcomes = []
    bar = tqdm(rows, unit="image", file=sys.stderr, disable=None if progress else True)
    for index, row in enumerate(bar):
        image_path = labels_path.parent / row["image"]
        payload = image_path.read_bytes()
        set_name = row.get("set") or Path(row["image"]).parts[0]
        codes = by_set.get(set_name, tuple(regions))
        runs = [(read, report.outcomes)]
        if baseline is not None and report.baseline_outcomes is not None:
            runs.append((baseline, report.baseline_outcomes))
            if index % 2:
                runs.reverse()
        for reader, outcomes in runs:
            outcomes.append(_outcome(reader, payload, codes, set_name, row))
    return report


def _outcome(
    read: Reader, payload: bytes, regions: Sequence[str], set_name: str, row: Mapping[str, str]
) -> ImageOutcome:
    started = time.perf_counter()
    response = read(payload, regions)
    latency_ms = (time.perf_counter() - started) * 1000
    guesses = _ranked_plates(response)
    expected = normalize_plate(row["plate"])
    read = guesses[0] if guesses else None
    return ImageOutcome(
        set_name=set_name,
        image=row["image"],
        expected=expected,
        read=read,
        top_k=guesses[:TOP_K],
        latency_ms=latency_ms,
        miss_cause=None if read == expected else _miss_cause(response, expected, guesses, row),
    )


def _miss_cause(response: dict[str, Any], expected: str, guesses: list[str], row: Mapping[str, str]) -> str:
    """Where the reader lost a plate it missed (`MISS_CAUSES`): ranking, recognition or detection."""
    if expected in guesses:
        return "ranked_below"
    plate_box = _labelled_box(row)
    if plate_box is None:
        return "not_read"
    x, y, width, height = plate_box
    for result in response.get("results") or []:
        box = result.get("box") or {}
        try:
            x0, y0, x1, y1 = (float(box[key]) for key in ("xmin", "ymin", "xmax", "ymax"))
        except (KeyError, TypeError, ValueError):
            continue
        covered = max(0.0, min(x1, x + width) - max(x0, x)) * max(0.0, min(y1, y + height) - max(y0, y))
        if covered >= FOUND_COVERAGE * width * height:
            return "misread"
    return "not_found"


def _labelled_box(row: Mapping[str, str]) -> tuple[float, float, float, float] | None:
    """The plate's box (x, y, width, height) from the optional label columns, when all four are there."""
    try:
        x, y, width, height = (float(row[key]) for key in ("x", "y", "w", "h"))
    except (KeyError, TypeError, ValueError):
        return None
    return (x, y, width, height) if width > 0 and height > 0 else None


def naive_baseline() -> Reader:
    """The naive reader the offline engine is measured against (`plate-bridge evaluate --baseline`).

    Full-frame PP-OCR with the same models as shipped (one detection at the detector's scale, every line
    read by the whole recognizer, as rapidocr runs it) and minimal heuristics: a line of 4 to 8 letters
    and digits, one of them a digit, is a plate; the most confident first. Regions are ignored.
    """
    from bridge.engines.local import LocalEngine

    engine = LocalEngine(plate_characters_only=False)

    def read(image: bytes, regions: Sequence[str]) -> dict[str, Any]:
        results = []
        for text, score in engine.read_text(image):
            plate = "".join(symbol for symbol in text.upper() if symbol.isascii() and symbol.isalnum())
            if 4 <= len(plate) <= 8 and any(symbol.isdigit() for symbol in plate):
                results.append({"plate": plate.lower(), "score": score})
        results.sort(key=lambda result: result["score"], reverse=True)
        return {"results": results}

    return read


def _label_rows(labels_path: Path) -> list[dict[str, str]]:
    with labels_path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if rows and not {"image", "plate"} <= rows[0].keys():
        raise ValueError(f"{labels_path}: the header needs the columns `image` and `plate`")
    return rows


def _ranked_plates(response: dict[str, Any]) -> list[str]:
    ranked: list[str] = []
    for result in response.get("results") or []:
        for text in [result.get("plate", ""), *(c.get("plate", "") for c in result.get("candidates") or [])]:
            plate = normalize_plate(str(text))
            if plate and plate not in ranked:
                ranked.append(plate)
    return ranked


def _summaries(outcomes: list[ImageOutcome]) -> list[SetSummary]:
    names = list(dict.fromkeys(outcome.set_name for outcome in outcomes))
    summaries = [_summarize(name, [o for o in outcomes if o.set_name == name]) for name in names]
    return [*summaries, _summarize("total", outcomes)]


def _misses(outcomes: list[ImageOutcome]) -> list[dict[str, Any]]:
    return [
        {"image": o.image, "expected": o.expected, "read": o.read, "top5": o.top_k, "cause": o.miss_cause}
        for o in outcomes
        if not o.exact
    ]


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.inf


def _table(summaries: list[SetSummary], reader: str | None) -> list[str]:
    """Markdown rows: with `reader`, a first column names which reader the row is for."""
    head = "| reader " if reader else ""
    lines = [
        f"{head}| set | images | top-1 | top-1 % | top-5 % | median ms | p95 ms |",
        ("| --- " if reader else "") + "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for summary in summaries:
        lines.append(
            (f"| {reader} " if reader else "")
            + f"| {summary.name} | {summary.images} | {summary.exact} | {summary.exact_percent:.1f} |"
            f" {summary.top_k_percent:.1f} | {summary.median_ms:.0f} | {summary.p95_ms:.0f} |"
        )
    return lines


def _summarize(name: str, outcomes: list[ImageOutcome]) -> SetSummary:
    latencies = sorted(outcome.latency_ms for outcome in outcomes)
    return SetSummary(
        name=name,
        images=len(outcomes),
        exact=sum(outcome.exact for outcome in outcomes),
        top_k=sum(outcome.in_top_k for outcome in outcomes),
        median_ms=statistics.median(latencies) if latencies else 0.0,
        p95_ms=latencies[min(len(latencies) - 1, math.ceil(0.95 * len(latencies)) - 1)] if latencies else 0.0,
        miss_causes={
            cause: count
            for cause in MISS_CAUSES
            if (count := sum(outcome.miss_cause == cause for outcome in outcomes))
        },
    )
