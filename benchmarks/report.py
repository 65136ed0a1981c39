"""BENCHMARKS.md from the results: the figures side by side, ratios, and the issue's goals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.systems import LABELS, OPTIONAL_SYSTEMS, SYSTEMS

Figures = dict[str, Any]

# Rows whose ratio says nothing (a percentage already relative, a count fixed by the workload).
NO_RATIO = {"rss_growth", "pipelining", "emulator", "frames"}
# Row key → (label, how to read it from a system's figures, decimals).
ROWS: dict[str, tuple[str, Callable[[Figures], Any], int]] = {
    "fps": ("frames/s", lambda f: f["frames_per_second"], 1),
    "cpu": ("CPU ms per frame", lambda f: f["cpu_ms_per_frame"], 2),
    "rss_peak": ("peak RSS (MiB)", lambda f: f["rss_peak_mib"], 1),
    "rss_steady": ("steady RSS, median (MiB)", lambda f: f.get("rss_steady_mib"), 1),
    "rss_early": ("RSS at 10 % of the frames (MiB)", lambda f: f.get("rss_early_mib"), 1),
    "rss_end": ("RSS at the end (MiB)", lambda f: f.get("rss_end_mib"), 1),
    "rss_growth": ("RSS growth (%)", lambda f: f.get("rss_growth_pct"), 2),
    "p50": ("latency p50 (ms)", lambda f: f["latency_ms"].get("p50"), 1),
    "p95": ("latency p95 (ms)", lambda f: f["latency_ms"].get("p95"), 1),
    "p99": ("latency p99 (ms)", lambda f: f["latency_ms"].get("p99"), 1),
    "pipelining": ("% of concurrency / service time", lambda f: f.get("pipelining_pct"), 1),
    "max_1s": ("most reader calls in any 1 s", lambda f: f["max_calls_in_1s"], 0),
    "calls": ("reader calls", lambda f: f["reader_calls"], 0),
    "calls_per_frame": ("reader calls per frame", lambda f: f["calls_per_frame"], 2),
    "frames": ("frames published", lambda f: f["frames_published"], 0),
    "emulator": ("emulator CPU (% of a core)", lambda f: 100 * f["cpu_cores"]["emulator"], 0),
}


def _value(figures: Figures | None, row: str) -> float | None:
    if not figures or "error" in figures or "skipped" in figures:
        return None
    try:
        value = ROWS[row][1](figures)
    except (KeyError, TypeError):
        return None
    return value if isinstance(value, int | float) else None


def _cell(figures: Figures | None, row: str) -> str:
    if figures is None:
        return ""
    if "skipped" in figures:
        return "skipped"
    if "error" in figures:
        return "failed"
    value = _value(figures, row)
    return "" if value is None else f"{value:,.{ROWS[row][2]}f}"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or not denominator:
        return ""
    return f"{numerator / denominator:.2f}x"


def one_line(figures: Figures) -> str:
    """A progress line for the terminal."""
    if "error" in figures:
        return f"FAILED: {figures['error'].splitlines()[0]}"
    latency = figures["latency_ms"]
    return (
        f"{figures['frames_per_second']} frames/s, p50 {latency.get('p50')} ms, p99 {latency.get('p99')} ms, "
        f"{figures['cpu_ms_per_frame']} CPU ms/frame, peak RSS {figures['rss_peak_mib']} MiB, "
        f"{figures['reader_calls']} reader calls (max {figures['max_calls_in_1s']} in 1 s)"
    )


def _system(results: dict[str, Any], scenario: str, name: str) -> Figures | None:
    entry = results["scenarios"].get(scenario)
    return entry["systems"].get(name) if entry else None


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals, each with what was measured and whether it is met (None: not measured)."""

    def value(scenario: str, name: str, row: str) -> float | None:
        return _value(_system(results, scenario, name), row)

    def ratio_goal(text: str, row: str, limit: float, higher: bool) -> dict[str, Any]:
        bridge, node_red = value("flat_out", "bridge", row), value("flat_out", "nodered", row)
        ratio = bridge / node_red if bridge is not None and node_red else None
        met = None if ratio is None else (ratio >= limit if higher else ratio <= limit)
        shown = f"{ratio:.2f}x ({bridge} vs {node_red})" if ratio is not None else "n/a"
        return {"goal": text, "measured": shown, "target": f"{'>=' if higher else '<='} {limit}x", "met": met}

    def limit_goal(text: str, scenario: str, row: str, limit: float, unit: str) -> dict[str, Any]:
        measured = value(scenario, "bridge", row)
        met = None if measured is None else measured <= limit
        shown = "n/a" if measured is None else f"{measured:g} {unit}"
        return {"goal": text, "measured": shown, "target": f"<= {limit:g} {unit}", "met": met}

    pipelining = value("pipelining", "bridge", "pipelining")
    growth = value("rss_100k", "bridge", "rss_growth")
    return [
        ratio_goal("throughput vs Node-RED (flat out, as shipped)", "fps", 1.5, higher=True),
        ratio_goal("CPU per frame vs Node-RED (flat out, as shipped)", "cpu", 1.0, higher=False),
        limit_goal("bridge peak RSS (flat out, as shipped)", "flat_out", "rss_peak", 80, "MiB"),
        limit_goal("added latency p50 at 50 frames/s", "latency_50fps", "p50", 5, "ms"),
        limit_goal("added latency p99 at 50 frames/s", "latency_50fps", "p99", 20, "ms"),
        {
            "goal": "pipelining: frames/s vs concurrency / service time",
            "measured": "n/a" if pipelining is None else f"{pipelining:g} %",
            "target": ">= 90 %",
            "met": None if pipelining is None else pipelining >= 90,
        },
        limit_goal("rate limit 8/s: most calls in any 1-s window", "rate_limit", "max_1s", 8, "calls"),
        {
            "goal": "RSS growth over the long run (--long)",
            "measured": "not run" if growth is None else f"{growth:g} %",
            "target": "< 5 %",
            "met": None if growth is None else growth < 5,
        },
    ]


def render(results: dict[str, Any], results_path: Path, root: Path) -> str:
    machine = results["machine"]
    present = [
        name
        for name in (*SYSTEMS, *OPTIONAL_SYSTEMS)
        if any(name in e["systems"] for e in results["scenarios"].values())
    ]
    lines = [
        "# Benchmarks",
        "",
        f"Measured with `{results['command']}` (from the repo root, in the dev venv) on "
        f"{results['generated_at']}: {machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"Python {machine['python']}, {machine['broker']}, Node.js {machine['node'] or '-'}, "
        f"Node-RED {machine['node_red'] or '-'}; {results['mode']} mode, {results.get('elapsed_s', '?')} s. "
        f"Every figure is in `{_relative(results_path, root)}`; what each one means is in "
        "[benchmarks/README.md](benchmarks/README.md).",
        "",
    ]
    header = ["scenario", "measure", *(LABELS[name] for name in present)]
    ratios = [name for name in ("relay", "nodered") if name in present and "bridge" in present]
    header += [f"bridge / {LABELS[name]}" for name in ratios]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for scenario, entry in results["scenarios"].items():
        rows = _rows_of(scenario, entry)
        for position, row in enumerate(rows):
            systems = entry["systems"]
            cells = [f"**{scenario}**" if position == 0 else "", ROWS[row][0]]
            cells += [_cell(systems.get(name), row) for name in present]
            bridge_value = _value(systems.get("bridge"), row)
            cells += [
                "" if row in NO_RATIO else _ratio(bridge_value, _value(systems.get(name), row))
                for name in ratios
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Scenarios:", ""]
    lines += [f"- **{name}**: {entry['title']}" for name, entry in results["scenarios"].items()]
    lines += [
        "",
        "## Goals (issues 6 and 20)",
        "",
        "| goal | measured (bridge) | target | met |",
        "|---|---|---|---|",
    ]
    for goal in results["goals"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[goal["met"]]
        lines.append(f"| {goal['goal']} | {goal['measured']} | {goal['target']} | {met} |")
    lines += [
        "",
        "## Around the systems",
        "",
        "CPU of the other processes during each measurement window, in % of one core, so that a "
        "bottleneck outside the system under test shows; `other programs` is CPU time the run's processes "
        "do not account for (another job on the machine makes every figure above worse).",
        "",
        "| scenario | system | emulator | broker | cameras (harness) | other programs | machine busy |",
        "|---|---|---|---|---|---|---|",
    ]
    for scenario, entry in results["scenarios"].items():
        for name, figures in entry["systems"].items():
            if "cpu_cores" not in figures:
                continue
            cores = figures["cpu_cores"]
            cells = [scenario, LABELS[name]]
            cells += [f"{100 * cores.get(role, 0):.0f} %" for role in ("emulator", "broker", "cameras")]
            cells.append(f"{100 * figures['other_cores']:.0f} %")
            cells.append(f"{figures['machine_busy_pct']:.0f} % of {machine['cpus']} cores")
            lines.append("| " + " | ".join(cells) + " |")
    frames = results["frames"]
    lines += ["", "## Frames", ""]
    lines += [
        f"- `{name}`: {f['frames']} frame(s), base64, mean {f['mean_kb']} kB "
        f"({f['min_kb']}-{f['max_kb']} kB); {f['source']}"
        for name, f in frames.items()
    ]
    failed = [
        f"- {scenario} / {LABELS[name]}: {figures['error']}"
        for scenario, entry in results["scenarios"].items()
        for name, figures in entry["systems"].items()
        if "error" in figures
    ]
    if results["notes"] or failed:
        lines += ["", "## Notes", "", *(f"- {note}" for note in results["notes"]), *failed]
    return "\n".join(lines) + "\n"


def _rows_of(scenario: str, entry: dict[str, Any]) -> list[str]:
    from benchmarks.scenarios import FULL, RSS

    for known in (*FULL, RSS):
        if known.name == scenario:
            return list(known.rows)
    return ["fps", "cpu", "p50", "p99"]


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


REUSE_OFF_SECTION = "## Reuse off: like for like"
"""The section `python -m benchmarks.run --no-reuse` writes (its figures: results-reuse-off.json)."""
KEPT_SECTIONS = (
    REUSE_OFF_SECTION,
    "## Credits: reader calls per scenario",
    "## Live cameras",
    "## History store (issue 22)",
    "## Web page (issue 22)",
    "## Local first: offline answers on held-apart photos",
)
"""Sections of BENCHMARKS.md written by other commands: a run of the whole report keeps them."""


def reuse_off_goals(reuse_off: dict[str, Any], shipped: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 20's goals for the bridge without reuse, against Node-RED of the shipped run."""
    bridge = _system(reuse_off, "flat_out", "bridge")
    node_red = _system(shipped, "flat_out", "nodered") or _system(reuse_off, "flat_out", "nodered")
    found = []
    for text, row, limit, higher in (
        ("throughput vs Node-RED (flat out, reuse off)", "fps", 2.5, True),
        ("CPU per frame vs Node-RED (flat out, reuse off)", "cpu", 0.4, False),
    ):
        mine, theirs = _value(bridge, row), _value(node_red, row)
        ratio = mine / theirs if mine is not None and theirs else None
        found.append(
            {
                "goal": text,
                "measured": "n/a" if ratio is None else f"{ratio:.2f}x ({mine} vs {theirs})",
                "target": f"{'>=' if higher else '<='} {limit}x",
                "met": None if ratio is None else (ratio >= limit if higher else ratio <= limit),
            }
        )
    return found


def render_reuse_off(
    reuse_off: dict[str, Any], results_path: Path, shipped: dict[str, Any] | None, root: Path
) -> str:
    """The like-for-like section: the bridge with `repeat_window: 0` beside the shipped run's figures."""
    shipped = shipped or {"scenarios": {}}
    lines = [
        REUSE_OFF_SECTION,
        "",
        f"Measured with `{reuse_off['command']}` on {reuse_off['generated_at']} ({reuse_off['mode']} mode); "
        f"every figure is in `{_relative(results_path, root)}`, the shipped and Node-RED columns in "
        "`benchmarks/results.json` (the table at the top). Reuse off is the bridge with `repeat_window: 0`: "
        "every frame read, no signature, like the naive relay and Node-RED, which reuse nothing.",
        "",
        "| scenario | measure | bridge as shipped | bridge, reuse off | Node-RED | reuse off / Node-RED |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for scenario, entry in reuse_off["scenarios"].items():
        for position, row in enumerate(_rows_of(scenario, entry)):
            off = entry["systems"].get("bridge")
            as_shipped = _system(shipped, scenario, "bridge")
            node_red = _system(shipped, scenario, "nodered") or entry["systems"].get("nodered")
            cells = [
                f"**{scenario}**" if position == 0 else "",
                ROWS[row][0],
                _cell(as_shipped, row),
                _cell(off, row),
                _cell(node_red, row),
                "" if row in NO_RATIO else _ratio(_value(off, row), _value(node_red, row)),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| goal | measured (bridge) | target | met |", "|---|---|---|---|"]
    for goal in reuse_off_goals(reuse_off, shipped):
        met = {True: "yes", False: "**no**", None: "n/a"}[goal["met"]]
        lines.append(f"| {goal['goal']} | {goal['measured']} | {goal['target']} | {met} |")
    return "\n".join(lines) + "\n"


def kept_sections(document: str) -> str:
    """The sections of `document` that other commands write (KEPT_SECTIONS), in their order."""
    kept = []
    for heading in KEPT_SECTIONS:
        start = document.find(heading + "\n")
        if start < 0:
            continue
        end = document.find("\n## ", start + len(heading))
        kept.append(document[start : end + 1 if end >= 0 else len(document)].rstrip("\n") + "\n")
    return "\n".join(kept)
