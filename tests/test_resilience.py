"""The call limiter and the reader guard, on a manual clock (no sleeping, no network)."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from bridge.core.errors import ReaderForbidden, ReaderRateLimited, ReaderRejected, ReaderUnavailable
from bridge.reader.ratelimit import CallLimiter
from bridge.reader.resilience import ReaderGuard, ResiliencePolicy


class ManualClock:
    """Time that moves only when someone sleeps: the limiter's and guard's waits become exact."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.parametrize("rate", [1, 2, 8, 0.5])
@pytest.mark.parametrize("service_time", [0.0, 0.2])
def test_no_one_second_window_at_the_service_holds_more_than_the_rate(
    rate: float, service_time: float
) -> None:
    clock = ManualClock()
    limiter = CallLimiter(rate, clock=clock, sleep=clock.sleep)
    calls: list[tuple[float, float]] = []
    for _ in range(40):
        with limiter.slot():
            start = clock.now
            clock.sleep(service_time)
        calls.append((start, clock.now))
    capacity = max(1, int(rate))
    # The service sees each call arrive somewhere between its start and its end; whatever the
    # delays, call i + capacity must start a whole window after call i ended.
    for earlier, later in zip(calls, calls[capacity:], strict=False):
        assert later[0] - earlier[1] >= capacity / rate - 1e-9
    # ... and, one call at a time, it is not slower than the calls themselves plus one window per
    # `capacity` calls.
    assert calls[-1][0] - calls[0][0] <= 40 * service_time + 40 / capacity * (capacity / rate) + 1e-6


def test_calls_in_flight_hold_their_slots() -> None:
    clock = ManualClock()
    limiter = CallLimiter(2, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.acquire()
    # Both slots are taken by calls still running: a third caller waits for one to end, then a
    # whole window after that end; here the ManualClock only moves when the limiter sleeps.
    polled = len(clock.slept)
    limiter.release()  # one call ends at t
    ended = clock.now
    limiter.acquire()
    assert clock.now - ended >= 1.0 - 1e-9
    assert len(clock.slept) > polled


class SteppedClock:
    """Time that moves only when the test moves it; `sleep` blocks until then, so threads can wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleepers = 0
        self._changed = threading.Condition()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._changed:
            wake_at = self.now + seconds
            self.sleepers += 1
            self._changed.notify_all()
            self._changed.wait_for(lambda: self.now >= wake_at, timeout=10)
            self.sleepers -= 1

    def advance(self, seconds: float) -> None:
        with self._changed:
            self.now += seconds
            self._changed.notify_all()

    def wait_for_sleepers(self, count: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.sleepers >= count, timeout=10), self.sleepers


def test_pause_holds_every_caller() -> None:
    clock = SteppedClock()
    limiter = CallLimiter(None, clock=clock, sleep=clock.sleep)
    limiter.pause_for(3)
    started: list[float] = []

    def caller() -> None:
        with limiter.slot():
            started.append(clock.now)

    callers = [threading.Thread(target=caller) for _ in range(4)]
    for thread in callers:
        thread.start()
    clock.wait_for_sleepers(4)  # every caller is waiting on the pause
    clock.advance(2)
    clock.wait_for_sleepers(4)  # woken early or not, still held
    assert started == []
    clock.advance(1)
    for thread in callers:
        thread.join(10)
    assert started == [1003.0] * 4


def guard(clock: ManualClock, states: list[dict[str, Any]] | None = None, **policy: Any) -> ReaderGuard:
    settings = {"retries": 3, "backoff_initial": 0.5, "backoff_max": 4, "forbidden_cooldown": 60,
                "breaker_threshold": 3, "breaker_reset": 30, **policy}  # fmt: skip
    return ReaderGuard(
        ResiliencePolicy(**settings),
        CallLimiter(None, clock=clock, sleep=clock.sleep),
        on_state=states.append if states is not None else None,
        clock=clock,
        sleep=clock.sleep,
    )


class Script:
    """A call that fails with the given errors in turn, then succeeds."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "read"


class Highest(random.Random):
    """Chance that always draws the top of the range: the backoff's ceilings, exactly."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_unavailable_calls_are_retried_with_growing_jittered_backoff() -> None:
    clock = ManualClock()
    script = Script(*[ReaderUnavailable("503") for _ in range(5)])
    protected = ReaderGuard(
        ResiliencePolicy(retries=5, backoff_initial=0.5, backoff_max=3, breaker_threshold=100),
        CallLimiter(None, clock=clock, sleep=clock.sleep),
        clock=clock,
        sleep=clock.sleep,
        rng=Highest(),
    )
    assert protected.call(script) == "read"
    assert script.calls == 6
    # The ceilings double from backoff_initial up to backoff_max.
    assert clock.slept == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_backoff_is_full_jitter_below_the_ceiling() -> None:
    clock = ManualClock()
    protected = ReaderGuard(
        ResiliencePolicy(retries=1, backoff_initial=0.5, breaker_threshold=10_000),
        CallLimiter(None, clock=clock, sleep=clock.sleep),
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(7),
    )
    for _ in range(400):
        protected.call(Script(ReaderUnavailable("503")))
    waits = clock.slept
    assert len(waits) == 400 and all(0 <= wait <= 0.5 for wait in waits)
    # Spread over the whole range (not a constant, not zero): uniform has mean 0.25, and a quarter
    # of the draws in each quarter of the range.
    assert 0.22 < sum(waits) / len(waits) < 0.28
    quarters = [sum(1 for wait in waits if low <= wait < low + 0.125) for low in (0, 0.125, 0.25, 0.375)]
    assert all(70 < count < 130 for count in quarters), quarters


def test_retries_are_bounded() -> None:
    clock = ManualClock()
    script = Script(*[ReaderUnavailable("503") for _ in range(10)])
    with pytest.raises(ReaderUnavailable):
        guard(clock, breaker_threshold=100).call(script)
    assert script.calls == 4


def test_a_429_waits_what_the_service_asked_for_every_caller() -> None:
    clock = ManualClock()
    protected = guard(clock)
    script = Script(ReaderRateLimited("429", retry_after=5))
    start = clock.now
    assert protected.call(script) == "read"
    assert clock.now - start == pytest.approx(5, abs=0.01)
    # The pause is the limiter's, so any other caller is held too.
    protected.limiter.pause_for(2)
    before = clock.now
    protected.call(Script())
    assert clock.now - before == pytest.approx(2, abs=0.01)


def test_a_403_stops_calls_for_the_cooldown_and_reports_it() -> None:
    clock = ManualClock()
    states: list[dict[str, Any]] = []
    protected = guard(clock, states)
    with pytest.raises(ReaderForbidden):
        protected.call(Script(ReaderForbidden("403: the token was refused")))
    refused = Script()
    with pytest.raises(ReaderForbidden, match="reader paused for 60 s more"):
        protected.call(refused)
    assert refused.calls == 0
    assert states == [{"reader": "forbidden", "reason": "403: the token was refused", "cooldown": 60}]
    clock.now += 61
    assert protected.call(Script()) == "read"
    assert states[-1] == {"reader": "ok"}


def test_the_circuit_opens_then_half_opens_for_one_probe() -> None:
    clock = ManualClock()
    states: list[dict[str, Any]] = []
    protected = guard(clock, states, retries=0)
    for _ in range(3):
        with pytest.raises(ReaderUnavailable):
            protected.call(Script(ReaderUnavailable("503")))
    fast = Script()
    with pytest.raises(ReaderUnavailable, match="circuit open after 3 failed calls"):
        protected.call(fast)
    assert fast.calls == 0 and states[-1]["reader"] == "unavailable"
    clock.now += 31
    with pytest.raises(ReaderUnavailable, match="503"):
        protected.call(Script(ReaderUnavailable("503")))  # the probe fails: open again
    with pytest.raises(ReaderUnavailable, match="circuit open"):
        protected.call(fast)
    clock.now += 31
    assert protected.call(Script()) == "read"  # the probe succeeds: closed
    assert protected.call(Script()) == "read"
    assert states[-1] == {"reader": "ok"}


def test_other_rejections_are_not_retried() -> None:
    clock = ManualClock()
    script = Script(ReaderRejected("400: bad image"))
    with pytest.raises(ReaderRejected):
        guard(clock).call(script)
    assert script.calls == 1 and clock.slept == []


def test_a_probe_that_fails_unexpectedly_lets_the_next_call_probe() -> None:
    clock = ManualClock()
    protected = guard(clock, retries=0)
    for _ in range(3):
        with pytest.raises(ReaderUnavailable):
            protected.call(Script(ReaderUnavailable("503")))
    clock.now += 31
    with pytest.raises(RuntimeError, match="bug in the read"):
        protected.call(Script(RuntimeError("bug in the read")))  # the probe, not a ReaderError
    # The half-open probe ended (badly): the next call is the probe again, not refused forever.
    probe = Script()
    assert protected.call(probe) == "read"
    assert probe.calls == 1 and protected.state == "ok"


def test_retry_ambiguous_is_off_for_the_cloud_and_on_for_an_sdk_unless_set() -> None:
    from bridge.config import ReaderConfig

    cloud = ReaderConfig(token="t0k3n")
    sdk = ReaderConfig(url="http://localhost:8080/v1/plate-reader/")
    assert ResiliencePolicy.from_config(cloud).retry_ambiguous is False
    assert ResiliencePolicy.from_config(sdk).retry_ambiguous is True
    assert ResiliencePolicy.from_config(cloud.model_copy(update={"retry_ambiguous": True})).retry_ambiguous
    assert not ResiliencePolicy.from_config(sdk.model_copy(update={"retry_ambiguous": False})).retry_ambiguous
    assert ResiliencePolicy.from_config(sdk).breaker_reset == sdk.breaker_reset


def test_an_ambiguous_failure_is_not_re_sent_unless_asked() -> None:
    clock = ManualClock()
    script = Script(ReaderUnavailable("no answer within 15 s", ambiguous=True))
    with pytest.raises(ReaderUnavailable, match=r"not retried \(reader\.retry_ambiguous\)") as caught:
        guard(clock, retry_ambiguous=False).call(script)
    assert script.calls == 1 and caught.value.ambiguous
    again = Script(ReaderUnavailable("no answer within 15 s", ambiguous=True))
    assert guard(clock, retry_ambiguous=True).call(again) == "read"
    assert again.calls == 2
    # Unset (a policy built by hand), it follows where the call went: not again to the cloud.
    cloud = Script(ReaderUnavailable("no answer within 15 s", ambiguous=True, cloud=True))
    with pytest.raises(ReaderUnavailable, match="not retried"):
        guard(clock).call(cloud)
    sdk = Script(ReaderUnavailable("no answer within 15 s", ambiguous=True, cloud=False))
    assert guard(clock).call(sdk) == "read" and (cloud.calls, sdk.calls) == (1, 2)
