"""Run the benchmarks (`python -m benchmarks.run [--smoke] [--long]`): BENCHMARKS.md and results.json."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import report, scenarios, systems
from benchmarks.credits import write_section
from benchmarks.frames import load_frame_sets
from benchmarks.measure import Context, measure
from benchmarks.procs import Broker, Emulator, cpu_model
from benchmarks.systems import LABELS, OPTIONAL_SYSTEMS, SYSTEMS, find_node_red

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.json"
RESULTS_REUSE_OFF = ROOT / "benchmarks" / "results-reuse-off.json"
REPORT = ROOT / "BENCHMARKS.md"
FRAMES_PER_SET = 32
# The emulator keeps this many request records (a few hundred bytes each) for the rate-limit check.
EMULATOR_RECORDS = 50_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="every scenario tiny: checks the harness works")
    parser.add_argument("--long", action="store_true", help="add the RSS-growth run (100,000 frames)")
    parser.add_argument("--rss-frames", type=int, default=scenarios.RSS_FRAMES, help="frames of --long")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every duration by this")
    parser.add_argument("--scenarios", help="comma-separated scenario names (default: all)")
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="comma-separated, of: bridge,relay,nodered, and floor (benchmarks/floor_program.py)",
    )
    parser.add_argument("--frame-kb", type=float, default=120.0, help="size of the resized base64 frames")
    parser.add_argument(
        "--no-install", action="store_true", help="do not npm-install Node-RED (skip it unless cached)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="folder for results.json and BENCHMARKS.md (default: benchmarks/results.json and "
        "BENCHMARKS.md; with --smoke a temporary folder, so real figures are never overwritten)",
    )
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy the bridge in flat_out into DIR")
    parser.add_argument(
        "--no-reuse",
        action="store_true",
        help="run the bridge with repeat_window: 0 (every frame read, no signatures), like for like with "
        "the naive relay and Node-RED, which reuse nothing; the default measures the bridge as it ships",
    )
    parser.add_argument(
        "--pin-cpu",
        type=int,
        metavar="N",
        help="run every system under test on CPU N (taskset), to compare them pinned alike; the bridge "
        "keeps to one CPU by itself (cpu_affinity: auto, its default)",
    )
    parser.add_argument(
        "--cpu-affinity",
        metavar="auto|all|N",
        help="the bridge's cpu_affinity (default: its own default, auto), to measure what one CPU changes",
    )
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.rss_frames < 1:
        parser.error("--scale and --rss-frames must be positive")
    if args.pin_cpu is not None and not shutil.which("taskset"):
        parser.error("--pin-cpu needs taskset (util-linux)")
    unknown = set(args.systems.split(",")) - set(SYSTEMS) - set(OPTIONAL_SYSTEMS)
    if unknown:
        parser.error(f"unknown system(s): {', '.join(sorted(unknown))}")
    return args


def _raise_interrupt(signum: int, _frame: object) -> None:
    # SIGTERM unwinds like Ctrl+C, so every `finally` stops the children it started.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    command = shlex.join(["python", "-m", "benchmarks.run", *(argv if argv is not None else sys.argv[1:])])
    chosen = scenarios.select(smoke=args.smoke, long=args.long, rss_frames=args.rss_frames, scale=args.scale)
    if args.scenarios:
        wanted = set(args.scenarios.split(","))
        known = {scenario.name for scenario in [*scenarios.FULL, scenarios.RSS]}
        if wanted - known:
            print(f"unknown scenario(s): {', '.join(sorted(wanted - known))}", file=sys.stderr)
            return 2
        if "rss_100k" in wanted and not args.long and not args.smoke:
            chosen = scenarios.select(smoke=False, long=True, rss_frames=args.rss_frames, scale=args.scale)
        chosen = [scenario for scenario in chosen if scenario.name in wanted]
    system_names = [name for name in (*SYSTEMS, *OPTIONAL_SYSTEMS) if name in args.systems.split(",")]
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="plate-bridge-smoke-")) if args.smoke else None)
    default_results = RESULTS_REUSE_OFF if args.no_reuse else RESULTS
    results_path = out_dir / default_results.name if out_dir else default_results
    report_path = out_dir / "BENCHMARKS.md" if out_dir else REPORT

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="plate-bridge-bench-") as folder:
        try:
            results = run(args, chosen, system_names, Path(folder), command)
        except KeyboardInterrupt:
            print("\ninterrupted: every child process was stopped; no results written", file=sys.stderr)
            return 130
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    existing = report_path.read_text(encoding="utf-8") if report_path.is_file() else ""
    if args.no_reuse:
        # Its own section, beside the shipped figures: the rest of the report stays as it is.
        shipped_path = results_path.parent / RESULTS.name if out_dir else RESULTS
        shipped = json.loads(shipped_path.read_text(encoding="utf-8")) if shipped_path.is_file() else None
        section = report.render_reuse_off(results, results_path, shipped, ROOT)
        if not existing:
            report_path.write_text("# Benchmarks\n\n" + section, encoding="utf-8")
        else:
            write_section(section, report_path, report.REUSE_OFF_SECTION)
    else:
        kept = report.kept_sections(existing)
        document = report.render(results, results_path, ROOT)
        report_path.write_text(document + ("\n" + kept if kept else ""), encoding="utf-8")
    print(f"results: {results_path}\nreport: {report_path}", file=sys.stderr)
    failures = [
        f"{scenario}/{name}"
        for scenario, entry in results["scenarios"].items()
        for name, figures in entry["systems"].items()
        if "error" in figures
    ]
    if failures:
        print(f"failed runs: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def run(
    args: argparse.Namespace,
    chosen: list[scenarios.Scenario],
    system_names: list[str],
    run_dir: Path,
    command: str,
) -> dict[str, Any]:
    notes: list[str] = []
    if args.no_reuse:
        systems.BRIDGE_ROUTE_OPTIONS["repeat_window"] = 0
        notes.append("--no-reuse: the bridge ran with repeat_window: 0 (no identical/similar-frame reuse)")
    if args.cpu_affinity is not None:
        systems.BRIDGE_OPTIONS["cpu_affinity"] = args.cpu_affinity
        notes.append(f"--cpu-affinity: the bridge ran with cpu_affinity: {args.cpu_affinity}")
    frame_sets, frame_notes = load_frame_sets(args.frame_kb, FRAMES_PER_SET)
    notes += frame_notes
    node_red = find_node_red(install=not (args.smoke or args.no_install)) if "nodered" in system_names else ""
    if isinstance(node_red, str) and "nodered" in system_names:
        notes.append(f"Node-RED skipped: {node_red}")
        print(f"note: Node-RED skipped: {node_red}", file=sys.stderr)
    broker = Broker(run_dir)
    if broker.kind == "amqtt":
        notes.append(
            "the mosquitto binary is missing: the broker is amqtt (bridge.mqtt.broker.EmbeddedBroker)"
        )
        print("note: no mosquitto binary; using the amqtt broker instead", file=sys.stderr)
    emulator = Emulator(EMULATOR_RECORDS)
    results: dict[str, Any] = {
        "command": command,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "smoke" if args.smoke else "full",
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "python": platform.python_version(),
            "broker": broker.version,
            "node": getattr(node_red, "node_version", None),
            "node_red": getattr(node_red, "version", None),
        },
        "frames": {name: frame_set.describe() for name, frame_set in frame_sets.items()},
        "notes": notes,
        "scenarios": {},
    }
    with contextlib.ExitStack() as stack:
        broker.start()
        stack.callback(broker.stop)
        emulator.start()
        stack.callback(emulator.stop)
        profiler = None
        if args.profile is not None:
            from benchmarks.profiling import Profiler

            profiler = Profiler(args.profile, scenarios=("flat_out",))
        context = Context(run_dir, broker, emulator, frame_sets, node_red, profiler, args.pin_cpu)
        for scenario in chosen:
            entry: dict[str, Any] = {"title": scenario.title, "settings": scenario.settings, "systems": {}}
            results["scenarios"][scenario.name] = entry
            for name in system_names:
                print(f"{scenario.name}: {LABELS[name]} ...", file=sys.stderr, flush=True)
                if name == "nodered" and isinstance(node_red, str):
                    entry["systems"][name] = {"skipped": node_red}
                    continue
                began = time.monotonic()
                try:
                    figures = measure(name, scenario, context)
                except (RuntimeError, TimeoutError, OSError) as exc:
                    figures = {"error": str(exc)}
                entry["systems"][name] = figures
                took = time.monotonic() - began
                print(f"  {report.one_line(figures)} [{took:.1f} s]", file=sys.stderr, flush=True)
    results["goals"] = report.goals(results)
    return results


if __name__ == "__main__":
    sys.exit(main())
