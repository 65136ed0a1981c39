"""How `cpu_affinity: auto` chooses the CPU and when it moves (bridge/tuning.py)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from bridge.tuning import CpuKeeper, choose_cpu, cpu_busy_ticks, own_ticks

# /proc/stat as Linux writes it: user nice system idle iowait irq softirq steal guest guest_nice.
STAT = """cpu  700 0 300 9000 100 0 0 0 0 0
cpu0 500 0 200 4000 50 0 0 0 0 0
cpu1 200 0 100 5000 50 0 0 0 0 0
intr 12345 0 0
ctxt 999
"""


def test_busy_ticks_leave_out_idle_and_iowait_and_the_total_line() -> None:
    assert cpu_busy_ticks(STAT) == {0: 700, 1: 300}


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="/proc/stat is Linux's")
def test_busy_ticks_read_this_machine() -> None:
    busy = cpu_busy_ticks(Path("/proc/stat").read_text(encoding="ascii"))
    assert set(os.sched_getaffinity(0)) <= set(busy)
    assert all(ticks >= 0 for ticks in busy.values())
    assert own_ticks(Path("/proc/self/stat").read_text(encoding="ascii")) >= 0


def test_own_ticks_survive_a_process_name_with_spaces_and_brackets() -> None:
    stat = "4242 (python (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 37 5 0 0 20 0 11 0 1 1 1"
    assert own_ticks(stat) == 42


def test_the_first_choice_is_the_least_busy_cpu() -> None:
    before = {0: 100, 1: 100, 2: 100}
    assert choose_cpu([0, 1, 2], before, {0: 180, 1: 110, 2: 150}) == 1
    # A tie goes to the higher number (CPU 0 takes more of the interrupts).
    assert choose_cpu([0, 1, 2], before, {0: 100, 1: 100, 2: 100}) == 2
    # Only the CPUs the process may use.
    assert choose_cpu([0, 2], before, {0: 180, 1: 110, 2: 150}) == 2


def test_the_bridge_does_not_count_its_own_work_against_its_cpu() -> None:
    # CPU 1 was 90 ticks busy of 100, 80 of them the bridge's own: others left it nearly idle.
    before = {0: 0, 1: 0}
    assert choose_cpu([0, 1], before, {0: 40, 1: 90}, current=1, own=80, window=100) == 1
    # Without its own share to subtract, CPU 1 looks busier and it would move.
    assert choose_cpu([0, 1], before, {0: 40, 1: 90}, current=1, own=0, window=100) == 0


def test_it_moves_only_to_a_cpu_clearly_less_busy() -> None:
    before = {0: 0, 1: 0}
    # A neighbour takes 60 % of CPU 1, 20 % of CPU 0: 40 % apart, more than the 25 % margin.
    assert choose_cpu([0, 1], before, {0: 20, 1: 60}, current=1, window=100) == 0
    # 10 % apart: it stays, rather than flap between two CPUs alike.
    assert choose_cpu([0, 1], before, {0: 50, 1: 60}, current=1, window=100) == 1


class FakeProc:
    """/proc/stat and /proc/self/stat as the keeper reads them, one sample after another: each sample
    is (busy ticks per CPU, the process's own ticks)."""

    def __init__(self, samples: list[tuple[dict[int, int], int]]) -> None:
        self.samples = samples
        self.taken = 0
        self.done = threading.Event()

    def read(self, path: str) -> str:
        index = min(self.taken // 2, len(self.samples) - 1)
        self.taken += 1
        if self.taken >= 2 * len(self.samples):
            self.done.set()
        busy, own = self.samples[index]
        if path == "/proc/stat":
            # user nice system idle: all the busy ticks as user time
            return "".join(f"cpu{cpu} {ticks} 0 0 1000 0 0 0 0\n" for cpu, ticks in busy.items())
        return f"42 (python) S 1 42 42 0 -1 0 0 0 0 0 {own} 0 0 0"


def run_keeper(samples: list[tuple[dict[int, int], int]]) -> list[int]:
    moves: list[int] = []
    proc = FakeProc(samples)
    # 100 ticks in each 0.01-s look: a CPU fully busy between two samples gains 100.
    keeper = CpuKeeper(1, [0, 1], 0.01, read=proc.read, confine=moves.append, ticks_per_second=10_000)
    keeper.start()
    try:
        assert proc.done.wait(10), "the keeper stopped looking"
    finally:
        keeper.stop()
    return moves


def test_the_keeper_moves_off_a_cpu_a_neighbour_takes_and_stays_otherwise() -> None:
    # CPU 1 (the bridge's): 90 of 100 ticks busy, 10 of them the bridge's own; CPU 0: 10.
    assert run_keeper([({0: 0, 1: 0}, 0), ({0: 10, 1: 90}, 10), ({0: 20, 1: 180}, 20)]) == [0]
    # CPU 1 busy 90 of 100, but 80 of them the bridge's own: it stays.
    assert run_keeper([({0: 0, 1: 0}, 0), ({0: 10, 1: 90}, 80), ({0: 20, 1: 180}, 160)]) == []
