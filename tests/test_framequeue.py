"""FrameQueue: per-camera latest-frame-wins, round robin, and one cap on frames and bytes for all."""

from __future__ import annotations

import threading
import time

import pytest

from bridge.flows.framequeue import Evicted, FrameQueue


def drain(queue: FrameQueue[str]) -> list[str]:
    taken = []
    while (item := queue.get(timeout=0)) is not None:
        taken.append(item)
        queue.task_done()
    return taken


def test_a_camera_keeps_its_newest_frames_and_its_place_in_line() -> None:
    queue: FrameQueue[str] = FrameQueue(per_camera=1)
    assert queue.put("a", "a1") == []
    assert queue.put("b", "b1") == []
    assert queue.put("a", "a2") == [Evicted("a1", "camera_queue")]
    assert drain(queue) == ["a2", "b1"]


def test_cameras_are_served_round_robin() -> None:
    queue: FrameQueue[str] = FrameQueue(per_camera=3)
    for item in ("a1", "a2", "a3", "b1", "c1", "c2"):
        queue.put(item[0], item)
    assert drain(queue) == ["a1", "b1", "c1", "a2", "c2", "a3"]


def test_the_global_frame_cap_drops_the_oldest_frame_of_any_camera() -> None:
    queue: FrameQueue[str] = FrameQueue(per_camera=2, max_frames=3)
    for item in ("a1", "b1", "a2"):
        assert queue.put(item[0], item) == []
    assert queue.put("c", "c1") == [Evicted("a1", "queue_full")]
    assert queue.put("d", "d1") == [Evicted("b1", "queue_full")]
    assert len(queue) == 3
    # b lost its only frame and left the line; a keeps its place with the frame it has left.
    assert drain(queue) == ["a2", "c1", "d1"]
    assert queue.dropped == 2


def test_the_global_byte_cap_drops_as_many_old_frames_as_a_new_one_needs() -> None:
    queue: FrameQueue[str] = FrameQueue(per_camera=5, max_bytes=100)
    for camera in "abcd":
        queue.put(camera, f"{camera}1", size=25)
    assert queue.queued_bytes == 100
    assert queue.put("e", "e1", size=60) == [
        Evicted("a1", "queue_full"),
        Evicted("b1", "queue_full"),
        Evicted("c1", "queue_full"),
    ]
    assert queue.queued_bytes == 85 and len(queue) == 2
    assert queue.put("f", "too big", size=101) == [Evicted("too big", "queue_full")]
    assert drain(queue) == ["d1", "e1"]
    assert queue.queued_bytes == 0


def test_memory_is_bounded_however_many_cameras_there_are() -> None:
    queue: FrameQueue[str] = FrameQueue(per_camera=2, max_frames=50, max_bytes=10_000)
    evicted = 0
    for index in range(5_000):
        evicted += len(queue.put(f"camera-{index}", f"frame-{index}", size=400))
        assert len(queue) <= 50 and queue.queued_bytes <= 10_000
    assert len(queue) + evicted == 5_000
    assert len(queue._queues) == len(queue) == 25, "no trace is kept of cameras without frames"
    assert drain(queue) == [f"frame-{index}" for index in range(4_975, 5_000)]


def test_join_waits_for_frames_being_worked_on() -> None:
    queue: FrameQueue[str] = FrameQueue()
    queue.put("a", "a1")
    assert not queue.idle()
    assert queue.get() == "a1"
    assert not queue.idle() and not queue.join(timeout=0), "taken, not finished"
    finished = threading.Thread(target=queue.task_done)
    finished.start()
    assert queue.join(timeout=10)
    finished.join()
    assert queue.idle()


def test_close_hands_back_what_waits_and_refuses_more() -> None:
    queue: FrameQueue[str] = FrameQueue(per_camera=2, max_frames=10)
    queue.put("a", "a1", size=3)
    queue.put("b", "b1", size=3)
    assert sorted(queue.close()) == ["a1", "b1"]
    assert len(queue) == 0 and queue.queued_bytes == 0 and queue.join(timeout=0)
    assert queue.put("a", "a2") == [Evicted("a2", "shutdown")]
    assert queue.get(timeout=0) is None


@pytest.mark.parametrize("settings", [{"per_camera": 0}, {"max_frames": 0}, {"max_bytes": 0}])
def test_caps_must_allow_a_frame(settings: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FrameQueue(**settings)


def test_a_serial_cameras_next_frame_waits_for_the_one_at_work_while_others_go_ahead() -> None:
    queue: FrameQueue[str] = FrameQueue(per_camera=2)
    queue.put("gate", "gate-1", serial=True)
    queue.put("gate", "gate-2", serial=True)
    queue.put("street", "street-1", serial=True)
    first = queue.get(timeout=1)
    assert first == "gate-1"
    # gate-2 is next in line, but gate has a frame at work: a second worker gets street's instead of
    # waiting behind the first one.
    assert queue.get(timeout=1) == "street-1"
    assert queue.get(timeout=0.05) is None  # gate-2 waits; nothing else to take
    queue.task_done(first)
    assert queue.get(timeout=1) == "gate-2"


def test_a_worker_waiting_for_a_serial_cameras_frame_wakes_when_the_one_at_work_is_done() -> None:
    """task_done wakes one waiting worker only when it frees a camera with a frame waiting (no longer
    every worker after every frame): the worker already waiting, here, must get that frame."""
    queue: FrameQueue[str] = FrameQueue(per_camera=2)
    queue.put("gate", "gate-1", serial=True)
    queue.put("gate", "gate-2", serial=True)
    first = queue.get(timeout=1)
    got: list[str | None] = []
    # A get() that gives up after 60 s: woken, it returns at once; forgotten, still waits at 5 s.
    waiting = threading.Thread(target=lambda: got.append(queue.get(timeout=60)), daemon=True)
    waiting.start()
    # Only gate-2 waits, and gate has a frame at work: the thread can but wait in get(). Until it is
    # seen waiting (CPython's Condition keeps its waiters in _waiters), task_done would prove nothing.
    deadline = time.monotonic() + 10
    while not queue._ready._waiters and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.001)
    assert queue._ready._waiters, "the worker never waited"  # type: ignore[attr-defined]
    queue.task_done(first)
    waiting.join(5)
    assert not waiting.is_alive(), "task_done freed gate but woke no waiting worker"
    assert got == ["gate-2"]
    queue.task_done("gate-2")
    assert queue.join(timeout=10), "the last task_done wakes join"


def test_frames_that_are_not_serial_may_be_worked_on_together() -> None:
    queue: FrameQueue[str] = FrameQueue(per_camera=2)
    queue.put("gate", "gate-1")
    queue.put("gate", "gate-2")
    assert [queue.get(timeout=1), queue.get(timeout=1)] == ["gate-1", "gate-2"]


def test_serial_cameras_are_forgotten_when_they_have_nothing_left() -> None:
    queue: FrameQueue[str] = FrameQueue(per_camera=1, max_frames=2)
    for number in range(1000):  # cameras that come and go, pushed out by the cap
        queue.put(f"cam-{number}", f"frame-{number}", serial=True)
    while (item := queue.get(timeout=0.01)) is not None:
        queue.task_done(item)
    assert len(queue._serial) == 0 and len(queue._busy) == 0
