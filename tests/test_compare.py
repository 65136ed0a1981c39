"""`plate-bridge compare` on the shipped example images, the emulator over HTTP as the paid reader."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import EXAMPLES, loaded_local_engine
from tests.emulator import ReaderEmulator

ROOT = Path(__file__).resolve().parents[1]
IMAGES = EXAMPLES / "images"


def _compare(emulator: ReaderEmulator, out: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "compare", str(IMAGES), "--url", emulator.url, "--out", str(out),
         "--max-calls-per-second", "0", "--regions", "us", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_compare_reports_agreement_savings_and_disagreements_and_resumes(tmp_path: Path) -> None:
    loaded_local_engine()
    with (IMAGES / "labels.tsv").open(encoding="utf-8") as handle:
        labels = {row["image"]: row["plate"] for row in csv.DictReader(handle, delimiter="\t")}
    with ReaderEmulator() as emulator:
        # The paid reader reads the US photos as labelled; the others get the emulator's stock answer,
        # another plate: those are disagreements.
        for name in ("us_ca_rear.jpg", "us_small.png"):
            box = {"xmin": 10, "ymin": 10, "xmax": 60, "ymax": 30}
            result = {"plate": labels[name].lower(), "score": 0.95, "box": box}
            emulator.set_response((IMAGES / name).read_bytes(), {"results": [result]})
        out = tmp_path / "report"
        document = _compare(emulator, out)
        frames = len(labels)
        assert document["frames"] == frames and emulator.calls == frames
        assert document["agree"] >= 2 and document["agree"] + document["disagree"] == frames
        # At the default precision the two US photos' offline readings (scores ~1.0) are trusted.
        assert document["at"]["0.9"]["calls_saved"] >= 2
        assert document["at"]["0.99"]["calls_saved"] <= document["at"]["0.9"]["calls_saved"]
        with (out / "disagreements.csv").open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == document["disagree"]
        assert all(row["crop"] and (out / row["crop"]).read_bytes().startswith(b"\x89PNG") for row in rows)
        page = (out / "index.html").read_text(encoding="utf-8")
        assert all(row["frame"] in page for row in rows)

        # Read once per reader: a second run answers from the cache and calls nobody.
        assert _compare(emulator, out)["agree"] == document["agree"]
        assert emulator.calls == frames

        # An interrupted run (its last answers lost, the last line cut short) is resumed.
        cache = out / "answers.jsonl"
        lines = cache.read_text(encoding="utf-8").splitlines()
        cache.write_text("\n".join(lines[:-3]) + "\n" + lines[-3][:20], encoding="utf-8")
        _compare(emulator, out)
        assert frames < emulator.calls <= frames + 2


def test_compare_names_what_is_wrong_with_its_input(tmp_path: Path) -> None:
    def compare(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bridge.cli", "compare", *arguments, "--url", "http://127.0.0.1:9/"],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    missing = compare(str(tmp_path / "missing"))
    assert missing.returncode == 2 and "missing: not a folder of frames" in missing.stderr
    bad = tmp_path / "calibration.json"
    bad.write_text("not json", encoding="utf-8")
    broken = compare(str(IMAGES), "--calibration", str(bad))
    assert broken.returncode == 2 and "calibration.json: not JSON" in broken.stderr
