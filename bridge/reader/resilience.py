"""How the bridge spends reader calls when the service misbehaves: retries, pauses, a circuit breaker."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from bridge.core.errors import ReaderError, ReaderForbidden, ReaderRateLimited, ReaderUnavailable
from bridge.reader.ratelimit import CallLimiter

if TYPE_CHECKING:
    from bridge.config import ReaderConfig

log = logging.getLogger(__name__)

Result = TypeVar("Result")

NOT_RESENT = "the call may have been billed; not retried (reader.retry_ambiguous)"

# The 429 body says "Expected available in 1 second" on the trial plan; without any hint, wait this.
DEFAULT_RATE_LIMIT_WAIT = 1.0


@dataclass(frozen=True, slots=True)
class ResiliencePolicy:
    """The knobs, from `reader:` in the configuration."""

    retries: int = 3
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    forbidden_cooldown: float = 300.0
    breaker_threshold: int = 5
    breaker_reset: float = 30.0
    # Re-send a call that went out whole and got no answer? On the cloud that may be a second bill.
    # None: not when the call went to the cloud, yes to an SDK (reader.retry_ambiguous's default).
    retry_ambiguous: bool | None = None

    @classmethod
    def from_config(cls, reader: ReaderConfig) -> ResiliencePolicy:
        """The policy of a `reader:` section (retry_ambiguous resolved for its URL)."""
        return cls(
            retries=reader.retries,
            backoff_initial=reader.backoff_initial,
            backoff_max=reader.backoff_max,
            forbidden_cooldown=reader.forbidden_cooldown,
            breaker_threshold=reader.breaker_threshold,
            breaker_reset=reader.breaker_reset,
            retry_ambiguous=reader.resends_ambiguous,
        )


class ReaderGuard:
    """Wraps every reader call of every route (one guard per bridge).

    - waits for the shared call limiter, so no second holds more than `max_calls_per_second` calls;
    - retries unavailability (5xx, connection errors, timeouts) with exponential backoff and full
      jitter, and 429s after the wait the service asked for — a wait every worker honours;
    - does not re-send a call that went out whole and got no answer (a timeout, a dropped
      connection: the service may have read and billed it) unless `retry_ambiguous`;
    - after a 403 stops calling for `forbidden_cooldown` seconds: a refused token or exhausted credits
      will not heal by retrying, and each call would only be refused again;
    - after `breaker_threshold` unavailable calls in a row opens the circuit: frames fail fast for
      `breaker_reset` seconds, then one probe call decides (half-open) whether to close it again.

    `on_state` receives the reader's state for `{base_topic}/bridge/state` whenever it changes;
    `clock`, `sleep` and `rng` (the jitter) are the guard's only ties to time and chance.
    """

    def __init__(
        self,
        policy: ResiliencePolicy,
        limiter: CallLimiter,
        *,
        on_state: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self.limiter = limiter
        self._on_state = on_state
        self._clock = clock
        self._sleep = sleep
        self._uniform = (rng or random.Random()).uniform
        self._lock = threading.Lock()
        self._forbidden_until = 0.0
        self._forbidden_reason = ""
        self._failures_in_row = 0
        self._open_until = 0.0
        self._probing = False
        self._state = "ok"
        self.calls = 0
        self.retries = 0

    @property
    def state(self) -> str:
        return self._state

    def _set_state(self, state: str, **details: Any) -> None:
        if state == self._state:
            return
        self._state = state
        log.warning("reader state: %s %s", state, details or "")
        if self._on_state is not None:
            self._on_state({"reader": state, **details})

    def _gate(self) -> bool:
        """Refuse a call up front while forbidden or while the circuit is open (one probe passes);
        True when this call is the half-open probe."""
        with self._lock:
            now = self._clock()
            if now < self._forbidden_until:
                raise ReaderForbidden(
                    f"reader paused for {self._forbidden_until - now:.0f} s more after a 403 "
                    f"({self._forbidden_reason})",
                    status_code=403,
                )
            if self._failures_in_row >= self.policy.breaker_threshold:
                if now < self._open_until or self._probing:
                    raise ReaderUnavailable(
                        f"circuit open after {self._failures_in_row} failed calls in a row; "
                        f"next probe in {max(0.0, self._open_until - now):.0f} s"
                    )
                self._probing = True  # half-open: this call is the probe
                return True
            return False

    def _end_probe(self) -> None:
        """The probe ended without a verdict (an exception that is not a ReaderError, an interrupt):
        the next call probes again rather than finding the circuit open for good."""
        with self._lock:
            self._probing = False

    def _record(self, error: ReaderError | None) -> None:
        with self._lock:
            self._probing = False
            if error is None:
                self._failures_in_row = 0
                self._forbidden_until = 0.0
                state = "ok"
            elif isinstance(error, ReaderForbidden):
                self._forbidden_until = self._clock() + self.policy.forbidden_cooldown
                self._forbidden_reason = error.message
                state = "forbidden"
            elif isinstance(error, ReaderUnavailable):
                self._failures_in_row += 1
                if self._failures_in_row >= self.policy.breaker_threshold:
                    self._open_until = self._clock() + self.policy.breaker_reset
                    state = "unavailable"
                else:
                    state = self._state
            else:
                state = self._state
        if state == "forbidden":
            self._set_state(
                state, reason=error.message if error else "", cooldown=self.policy.forbidden_cooldown
            )
        elif state == "unavailable":
            self._set_state(state, reason=error.message if error else "", retry_in=self.policy.breaker_reset)
        else:
            self._set_state(state)

    def _resends(self, error: ReaderUnavailable) -> bool:
        """Whether an ambiguous call may be sent again (see ResiliencePolicy.retry_ambiguous)."""
        if self.policy.retry_ambiguous is not None:
            return self.policy.retry_ambiguous
        return error.context.get("cloud") is not True

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.policy.backoff_max, self.policy.backoff_initial * 2**attempt)
        return self._uniform(0, ceiling)  # full jitter: replicas retrying together spread out

    def call(self, read: Callable[[], Result]) -> Result:
        """Run `read` under the policy; raise the last ReaderError when the retries are spent."""
        attempt = 0
        while True:
            probe = self._gate()
            try:
                self.calls += 1
                # acquire/release rather than `with limiter.slot()`: a generator-based context manager
                # costs more than the rest of the guard on every frame.
                self.limiter.acquire()
                try:
                    result = read()
                finally:
                    self.limiter.release()
            except ReaderRateLimited as error:
                wait = error.retry_after if error.retry_after is not None else DEFAULT_RATE_LIMIT_WAIT
                self.limiter.pause_for(wait)  # every worker waits, not only this one
                self._record(error)
                if attempt >= self.policy.retries:
                    raise
            except ReaderUnavailable as error:
                self._record(error)
                if error.ambiguous and not self._resends(error):
                    raise ReaderUnavailable(f"{error.message}; {NOT_RESENT}", **error.context) from error
                if attempt >= self.policy.retries or self._failures_in_row >= self.policy.breaker_threshold:
                    raise
                self._sleep(self._backoff(attempt))
            except ReaderError as error:
                self._record(error)
                raise
            except BaseException:
                # Not the service's verdict (a bug in `read`, an interrupt): nothing to count, but a
                # probe must not stay in flight for ever, or the circuit never closes again.
                if probe:
                    self._end_probe()
                raise
            else:
                self._record(None)
                return result
            attempt += 1
            self.retries += 1
