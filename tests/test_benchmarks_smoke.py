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


# Two systems of 15 s each, their start-up and the frames' making: about 40 s on 2 cores.
LIVE_TIMEOUT = 90


@pytest.mark.slow
def test_live_benchmark_scores_vehicles_per_system(tmp_path: Path) -> None:
    # Node-RED is left out even when installed: it would add a third run of the same length.
    command = [sys.executable, "-m", "benchmarks.live", "--smoke", "--systems", "bridge,relay"]
    command += ["--cameras", "3", "--seconds", "12", "--warmup", "3", "--lookalike-gap", "3"]
    command += ["--out", str(tmp_path)]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=LIVE_TIMEOUT, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]

    results = json.loads((tmp_path / "live_results.json").read_text(encoding="utf-8"))
    assert results["mode"] == "smoke"
    assert results["settings"]["cameras"] == 3
    workload = results["workload"]
    assert workload["vehicles"] >= 3
    assert workload["lookalikes"] == 1  # camera 1 of 3
    assert set(results["systems"]) == {"bridge", "relay"}
    for system, figures in results["systems"].items():
        assert "error" not in figures, (system, figures)
        assert figures["vehicles"] == workload["vehicles"], system
        assert 0 <= figures["vehicles_read"] <= figures["vehicles"], system
        assert figures["frames_published_in_all"] == workload["frames_per_system"], system
        assert figures["frames_published"] == workload["frames_measured_per_system"], system
        # Every frame came back as one event (a reading or an error), and only those.
        assert figures["events_in_all"] == figures["frames_published_in_all"], system
        assert figures["unanswered"] == figures["unexpected_events"] == 0, system
        assert figures["reader_calls"] >= figures["reader_answered_200"] + figures["reader_429"], system
        assert figures["cpu_ms_per_frame"] > 0, system
        assert len(figures["per_vehicle"]) == figures["vehicles"], system
        if figures["vehicles_read"]:
            assert 0 < figures["first_correct_ms"]["p50"] <= figures["first_correct_ms"]["p95"], system
    # The relay calls for every frame: beyond the plan's 4 calls/s the reader answers 429, and the
    # frames that get through carry each vehicle's own plate (the emulator answers what is in them).
    relay = results["systems"]["relay"]
    assert relay["reader_429"] > 0
    assert relay["vehicles_read"] == relay["vehicles"]
    assert relay["wrong_plate_events"] == relay["plate_events_on_empty_street"] == 0
    report = (tmp_path / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert "## Live cameras" in report
    assert "| vehicles read correctly / came |" in report


@pytest.mark.slow
def test_the_history_benchmark_smoke_mode_measures_every_goal(tmp_path: Path) -> None:
    out = tmp_path / "history.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks.history",
        "--smoke",
        "--databases",
        "sqlite",
        "--out",
        str(out),
    ]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["recording"]["stored"] == figures["recording"]["events"]
    assert figures["search_sqlite"]["found_the_car"] == figures["search_sqlite"]["queries"]
    assert figures["retention_sqlite"]["within_bound"] is True
