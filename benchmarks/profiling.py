"""Sample the bridge with py-spy during a measurement window and sum up where its CPU time goes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

TOP = 15
RATE = 100  # samples/s: enough over a 15-s window, and light on a 2-core machine
# "function (path/file.py:123)": the line number is dropped, so one function is one row.
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def find_py_spy() -> str | None:
    """py-spy from $PY_SPY, PATH, or beside the running interpreter (a venv's bin/)."""
    for candidate in (
        os.environ.get("PY_SPY"),
        shutil.which("py-spy"),
        str(Path(sys.executable).parent / "py-spy"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _frame(text: str) -> tuple[str, str]:
    found = _FRAME.match(text)
    if not found:
        return text, text
    return f"{found['function']} ({found['file']})", found["file"]


def summarize(lines: Iterable[str], top: int = TOP) -> dict[str, Any]:
    """Self and inclusive sample shares per function, and self shares per file, from py-spy raw output."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    per_file: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame(part) for part in stack.split(";")]
        function, file = frames[-1]
        self_time[function] += count
        per_file[file] += count
        for name in {function for function, _ in frames}:
            inclusive[name] += count

    def shares(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * count / total, 1)] for name, count in counter.most_common(top)]

    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "self_pct": shares(self_time),
        "inclusive_pct": shares(inclusive),
        "self_pct_by_file": shares(per_file),
    }


class Profiler:
    """Called by a measurement with (scenario, pid, seconds); returns a `finish()` giving the summary."""

    def __init__(self, folder: Path, scenarios: Iterable[str]) -> None:
        self.folder = folder
        self.scenarios = set(scenarios)
        self.py_spy = find_py_spy()
        if self.py_spy is None:
            raise RuntimeError("--profile needs py-spy: pip install py-spy (or set PY_SPY to its path)")
        folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, scenario: str, pid: int, seconds: float) -> Callable[[], dict[str, Any]] | None:
        if scenario not in self.scenarios:
            return None
        raw = self.folder / f"bridge-{scenario}.txt"
        duration = max(1, int(seconds))
        command = [
            str(self.py_spy),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(duration),
            "--rate",
            str(RATE),
            "--format",
            "raw",
            "--nonblocking",  # never pauses the bridge: the figures stay close to unprofiled ones
            "--gil",  # only the thread holding the GIL: where the interpreter's CPU time goes
            "--output",
            str(raw),
        ]
        log = open(self.folder / f"bridge-{scenario}.log", "wb")  # noqa: SIM115 (closed in finish)
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def finish() -> dict[str, Any]:
            try:
                process.wait(duration + 30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
            finally:
                log.close()
            try:
                summary = summarize(raw.read_text(encoding="utf-8").splitlines())
            except OSError as exc:
                return {"error": f"py-spy wrote no profile: {exc}"}
            (self.folder / f"bridge-{scenario}-top.txt").write_text(_as_text(summary), encoding="utf-8")
            return {"raw": str(raw), **summary}

        return finish


def _as_text(summary: dict[str, Any]) -> str:
    lines = [f"{summary.get('samples', 0)} samples of the thread holding the GIL"]
    for key, title in (
        ("self_pct", "self time by function"),
        ("inclusive_pct", "inclusive time by function"),
        ("self_pct_by_file", "self time by file"),
    ):
        lines += ["", title] + [f"{share:5.1f} %  {name}" for name, share in summary.get(key, [])]
    return "\n".join(lines) + "\n"
