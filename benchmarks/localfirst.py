"""Local first: how many frames the offline reader answers, how often rightly, and the cascade's accuracy.

    .venv/bin/python -m benchmarks.localfirst            # ~1 minute; prints the table
    .venv/bin/python -m benchmarks.localfirst --write    # also writes benchmarks/localfirst_results.json
                                                         # and the section in BENCHMARKS.md

Over the labelled photos of ../shared/data/plates that the shipped calibration
(bridge/reader/local_calibration.json) held apart — it was fitted on the other half — each photo is
read once offline with the hints the calibration was made with, then judged by local first
(bridge/reader/cascade.py) at each `precision`; a photo it declines is sent to tests/emulator.py over
HTTP, answering with the labelled plate (the paid reader standing in as always right). These are dev
photos: the offline engine's thresholds were tuned on all of them, so its reading here is better than
on photos never seen (79.7 % against 87.6 % exact with no hints, issue 23); only the calibration's
fit never saw them.

The watch-list rule is measured apart: a list holding, for every held-apart photo, its plate with one
character changed (a near-miss of the right reading); not one frame may be answered offline when its
offline reading is within the list's tolerance of an entry without being it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.frames import SHARED_DIR

ROOT = Path(__file__).resolve().parents[1]
LABELS = SHARED_DIR / "data" / "plates" / "labels.tsv"
RESULTS = ROOT / "benchmarks" / "localfirst_results.json"
SECTION = "## Local first: offline answers on held-apart photos"
PRECISIONS = (0.9, 0.95, 0.98, 0.99)
DEFAULT_PRECISION = 0.9


def _near_miss_entry(plate: str) -> str:
    """The plate with its last character changed to one no reader confuses it with."""
    last = plate[-1]
    replacement = "7" if last.isalpha() else "K"
    if replacement == last:
        replacement = "4" if last.isdigit() else "X"
    return plate[:-1] + replacement


def measure() -> dict[str, Any]:
    from bridge.calibrate import held_apart
    from bridge.config import WatchListConfig
    from bridge.engines.adapter import LocalReader
    from bridge.evaluate import normalize_plate
    from bridge.nodes.localfirst import NearMiss
    from bridge.nodes.watchlist import WatchList
    from bridge.reader import PlateReader
    from bridge.reader.calibration import load_calibration
    from bridge.reader.cascade import LocalFirst
    from tests.emulator import ReaderEmulator

    calibration = load_calibration()
    holdout = float(calibration.made["holdout"])
    hints = {name: tuple(codes) for name, codes in calibration.made["regions_by_set"].items()}
    with LABELS.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle, delimiter="\t") if held_apart(row["image"], holdout)]
    offline = LocalReader()
    offline.load()
    local_first = LocalFirst(offline, calibration)
    photos = []
    started = time.perf_counter()
    for row in rows:
        image = (LABELS.parent / row["image"]).read_bytes()
        regions = hints.get(row["set"], ())
        began = time.perf_counter()
        answer = offline.read(image, regions=regions)
        photos.append(
            {
                "row": row,
                "image": image,
                "regions": regions,
                "answer": answer,
                "ms": (time.perf_counter() - began) * 1000,
                "expected": normalize_plate(row["plate"]),
            }
        )
    read_seconds = time.perf_counter() - started
    near = NearMiss(
        [
            WatchList.compile(
                "near-misses",
                WatchListConfig(plates=[_near_miss_entry(p["expected"]) for p in photos], tolerance=1.0),
            )
        ]
    )

    def top(answer: dict[str, Any]) -> str | None:
        results = answer.get("results") or []
        return normalize_plate(str(results[0].get("plate") or "")) if results else None

    figures: dict[str, Any] = {}
    with ReaderEmulator() as emulator, PlateReader(emulator.url) as paid:
        for photo in photos:
            row = photo["row"]
            x, y, w, h = (int(float(row.get(key) or 0)) for key in ("x", "y", "w", "h"))
            box = {"xmin": x, "ymin": y, "xmax": x + w, "ymax": y + h}
            result = {"plate": photo["expected"].lower(), "score": 0.9, "box": box}
            emulator.set_response(photo["image"], {"results": [result]})
        for precision in PRECISIONS:
            offline_right = offline_count = paid_right = 0
            declined: dict[str, int] = {}
            calls_before = emulator.calls
            near_miss_offline = near_miss_frames = 0
            for photo in photos:
                regions = photo["regions"]
                outcome = local_first.judge(photo["answer"], regions=regions, precision=precision)
                with_list = local_first.judge(
                    photo["answer"], regions=regions, precision=precision, near_miss=near
                )
                read = top(photo["answer"])
                if read is not None and near([{"plate": read}]):
                    near_miss_frames += 1
                    near_miss_offline += with_list.accepted
                if outcome.accepted:
                    offline_count += 1
                    offline_right += read == photo["expected"]
                    continue
                declined[outcome.reason] = declined.get(outcome.reason, 0) + 1
                paid_right += top(paid.read(photo["image"], regions=regions)) == photo["expected"]
            total = len(photos)
            figures[f"{precision:g}"] = {
                "frames": total,
                "offline": offline_count,
                "offline_share": round(offline_count / total, 4),
                "offline_right": offline_right,
                "offline_precision": round(offline_right / offline_count, 4) if offline_count else None,
                "paid_calls": emulator.calls - calls_before,
                "declined": declined,
                "end_to_end_right": offline_right + paid_right,
                "end_to_end_accuracy": round((offline_right + paid_right) / total, 4),
                "near_miss_frames": near_miss_frames,
                "near_miss_answered_offline": near_miss_offline,
            }
    latencies = sorted(photo["ms"] for photo in photos)
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "photos": {
            "labels": str(LABELS.relative_to(SHARED_DIR.parent))
            if LABELS.is_relative_to(SHARED_DIR.parent)
            else str(LABELS),
            "held_apart": len(photos),
            "by_set": {name: sum(p["row"]["set"] == name for p in photos) for name in hints},
            "note": "dev photos: the engine's thresholds were tuned on them; the calibration was not",
        },
        "calibration": {
            "fitted_on": calibration.made.get("fitted_on"),
            "confidence": calibration.made.get("confidence"),
        },
        "offline_read_ms": {
            "median": round(statistics.median(latencies), 1),
            "p95": round(latencies[max(0, int(0.95 * len(latencies)) - 1)], 1),
            "total_s": round(read_seconds, 1),
        },
        "machine": {"cpus": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2)},
        "default_precision": DEFAULT_PRECISION,
        "at": figures,
    }


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 23's goals at the default precision."""
    row = results["at"][f"{results['default_precision']:g}"]
    precision = row["offline_precision"]
    return [
        {"goal": "frames answered offline", "measured": row["offline_share"], "target": ">= 0.5",
         "met": row["offline_share"] >= 0.5},
        {"goal": "offline answers exactly right", "measured": precision, "target": ">= 0.99",
         "met": precision is not None and precision >= 0.99},
        {"goal": "watch-list near-misses answered offline", "measured": row["near_miss_answered_offline"],
         "target": "0", "met": row["near_miss_answered_offline"] == 0},
    ]  # fmt: skip


def table(results: dict[str, Any]) -> str:
    photos = results["photos"]
    read = results["offline_read_ms"]
    machine = results["machine"]
    sets = ", ".join(f"{name} {count}" for name, count in photos["by_set"].items())
    lines = [
        SECTION,
        "",
        f"Measured with `python -m benchmarks.localfirst --write` on {results['measured_at']}: the "
        f"{photos['held_apart']} labelled photos of `../shared/data/plates` that the shipped calibration "
        f"held apart ({sets}; it was fitted on the other {results['calibration']['fitted_on']}). "
        "**Dev photos**: the offline engine's thresholds were tuned on all of them, so its readings here "
        "are better than on photos it never saw. Declined frames go to the emulator, answering the "
        f"labelled plate. Offline read: median {read['median']} ms, p95 {read['p95']} ms "
        f"({machine['cpus']} CPUs, load average {machine['load_average']}).",
        "",
        "| precision | answered offline | right of those | paid calls | end-to-end right | declined (why)"
        " | near-misses offline |",
        "|---:|---:|---:|---:|---:|---|---:|",
    ]
    for precision, row in results["at"].items():
        shown = "—" if row["offline_precision"] is None else f"{100 * row['offline_precision']:.1f} %"
        why = ", ".join(f"{k} {v}" for k, v in sorted(row["declined"].items())) or "—"
        default = " (default)" if float(precision) == results["default_precision"] else ""
        share = 100 * row["offline_share"]
        lines.append(
            f"| {precision}{default} | {row['offline']} of {row['frames']} ({share:.1f} %) |"
            f" {row['offline_right']} ({shown}) | {row['paid_calls']} |"
            f" {row['end_to_end_right']} ({100 * row['end_to_end_accuracy']:.1f} %) | {why} |"
            f" {row['near_miss_answered_offline']} of {row['near_miss_frames']} |"
        )
    lines += ["", "| goal (issue 23, at the default) | measured | target | met |", "|---|---:|---|---|"]
    for goal in goals(results):
        met = "yes" if goal["met"] else "**no**"
        lines.append(f"| {goal['goal']} | {goal['measured']} | {goal['target']} | {met} |")
    lines += [
        "",
        "Why 0.9 is the default `precision`: the calibration credits a reading the lower end of a 90 % "
        "confidence interval of the precision measured at its score, so a block of n readings, all right, "
        "is credited n / (n + 1.64): with the 130 photos it was fitted on, no block reaches 0.95 (the "
        "best: 0.93 for US routes, 0.92 pooled), and 0.95, 0.98 and 0.99 would need 32, 81 and 163 right "
        "readings in a row at the top scores of one family. At 0.9 the offline answers were all right "
        "here; on the calibration half, 64 of 65 (98.5 %: a photo of two cars, the other one's plate read "
        "with score 1.0). 61 of 61 bounds the precision on photos like these only at ~95 % (one-sided "
        "95 %); on photos never seen the engine reads worse. A user who labels more of their own frames "
        "(`plate-bridge evaluate --calibrate`) earns higher credits and can ask for more.",
    ]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    document = path.read_text(encoding="utf-8")
    start = document.find(SECTION + "\n")
    if start < 0:
        document = document.rstrip("\n") + "\n\n" + text
    else:
        end = document.find("\n## ", start + len(SECTION))
        document = document[:start] + text + (document[end + 1 :] if end >= 0 else "")
    path.write_text(document, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--write", action="store_true", help="write the results JSON and BENCHMARKS.md")
    args = parser.parse_args(argv)
    if not LABELS.is_file():
        print(f"{LABELS}: not found (../shared/data/plates); nothing to measure", file=sys.stderr)
        return 2
    results = measure()
    text = table(results)
    print(text)
    if args.write:
        RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
