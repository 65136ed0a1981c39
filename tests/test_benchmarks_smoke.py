"""The benchmark harness's smoke mode runs every scenario through the bridge and the naive relay."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.scenarios import FULL, RSS

ROOT = Path(__file__).resolve().parents[1]
# The smoke mode takes about 30 s for two systems on 2 cores; the bound leaves room for a busy machine.
SMOKE_TIMEOUT = 120


@pytest.mark.slow
def test_smoke_mode_writes_figures_for_every_scenario(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "benchmarks.run", "--smoke", "--systems", "bridge,relay"]
    result = subprocess.run(
        [*command, "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert results["mode"] == "smoke"
    assert results["machine"]["cpus"] >= 1
    assert set(results["scenarios"]) == {scenario.name for scenario in (*FULL, RSS)}
    for name, entry in results["scenarios"].items():
        for system in ("bridge", "relay"):
            figures = entry["systems"][system]
            assert "error" not in figures, (name, system, figures)
            # Every frame published came back as an event and cost a reader call, except the
            # parked car's repeats, which the bridge answers from its repeat cache.
            assert figures["frames_published"] > 0, (name, system)
            assert figures["events"] == figures["frames_published"], (name, system)
            assert figures["unanswered"] == figures["unexpected_events"] == 0, (name, system)
            if name == "parked_car" and system == "bridge":
                assert figures["reader_calls"] == 1, figures
            else:
                assert figures["reader_calls"] >= figures["frames_published"], (name, system)
            assert figures["rss_peak_mib"] > 0, (name, system)
            assert figures["latency_ms"]["samples"] > 0, (name, system)
    assert "nodered" not in results["scenarios"]["flat_out"]["systems"]
    report = (tmp_path / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert report.startswith("# Benchmarks")
    assert "| **flat_out** | frames/s |" in report
