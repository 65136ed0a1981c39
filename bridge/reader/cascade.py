"""Local first: a frame that would cost a paid call is read offline first, and paid for only when
the offline reading might be wrong.

The offline answer stands when every plate it found
(a) is credited at least `precision` by the calibration (bridge/reader/calibration.py) at its score,
(b) fits a plate layout of the route's regions (any published layout when the route names none), and
(c) is no near-miss of a watch-list entry (the caller's `near_miss`: within a list's tolerance but not
    exact; the paid reader confirms those, so a misread neither opens a gate nor hides a watched car).
An answer with no plate is not trusted: the offline reader misses plates the paid one finds.

Offline reads run on at most `workers` at a time; a frame that finds them all busy goes to the paid
reader at once (`busy`): a live camera never waits behind the offline reader, and nothing is dropped.

`QuotaGuard` switches the bridge to the offline reader alone while the month's calls left are below a
threshold or the paid reader's circuit is open, says so once, and switches back when that clears.
This module knows nothing of MQTT.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.core.errors import ConfigError
from bridge.core.plate_patterns import DEFAULT_REGION_ORDER, fits_layout
from bridge.reader.calibration import Calibration

__all__ = ["DECLINE_REASONS", "LocalFirst", "LocalOutcome", "QuotaGuard", "reader_kind"]

log = logging.getLogger(__name__)

# Why an offline reading was not the answer (each counted in the recognize node's stats).
DECLINE_REASONS = ("busy", "no_plate", "unconfident", "off_layout", "near_miss", "failed")


class OfflineReader(Protocol):
    def read(self, image: bytes | str, **kwargs: Any) -> dict[str, Any]: ...


def reader_kind(reader: object) -> str:
    """`local`, `cloud` or `sdk`: what events say answered (the reader's `kind`, else `sdk`)."""
    kind = getattr(reader, "kind", None)
    return kind if isinstance(kind, str) else "sdk"


@dataclass(frozen=True)
class LocalOutcome:
    """What the offline reader made of a frame: `answer` is the event's reading when `accepted`;
    `reason` says why not otherwise (`DECLINE_REASONS`); `precision` is the lowest credited."""

    accepted: bool
    reason: str
    answer: dict[str, Any] | None = None
    precision: float | None = None


class LocalFirst:
    """The offline reader, its calibration and its bounded pool, shared by every route."""

    def __init__(
        self,
        reader: OfflineReader,
        calibration: Calibration,
        *,
        workers: int = 1,
        quota: QuotaGuard | None = None,
        enabled: bool = True,
        precision: float = 0.9,
    ) -> None:
        self.enabled = enabled
        """Whether routes read offline first unless their own `local_first.enabled` says otherwise."""
        self.precision = precision
        """The routes' `precision` unless their own says otherwise."""
        self.reader = reader
        self.calibration = calibration
        self.workers = workers
        self.quota = quota
        self._slots = threading.BoundedSemaphore(workers)

    def read(self, image: bytes, *, regions: Sequence[str], **kwargs: Any) -> dict[str, Any]:
        """Read offline whatever the pool holds (the quota guard's way: no paid reader to send to)."""
        return self.reader.read(image, regions=regions, **kwargs)

    def consider(
        self,
        image: bytes,
        *,
        regions: Sequence[str],
        precision: float,
        near_miss: Callable[[Sequence[Mapping[str, Any]]], bool] | None = None,
        **kwargs: Any,
    ) -> LocalOutcome:
        """Read `image` offline if a slot is free at once, and judge the answer by (a), (b), (c)."""
        if not self._slots.acquire(blocking=False):
            return LocalOutcome(False, "busy")
        try:
            answer = self.reader.read(image, regions=regions, **kwargs)
        except Exception as exc:  # the paid reader answers instead; the offline failure is logged
            log.warning("the offline reader failed on a frame, the paid reader reads it: %s", exc)
            return LocalOutcome(False, "failed")
        finally:
            self._slots.release()
        return self.judge(answer, regions=regions, precision=precision, near_miss=near_miss)

    def judge(
        self,
        answer: dict[str, Any],
        *,
        regions: Sequence[str],
        precision: float,
        near_miss: Callable[[Sequence[Mapping[str, Any]]], bool] | None = None,
    ) -> LocalOutcome:
        """Whether an offline `answer` may be the event (see the module docstring)."""
        results = answer.get("results") or []
        if not results:
            return LocalOutcome(False, "no_plate", answer)
        layouts = tuple(regions) or DEFAULT_REGION_ORDER
        lowest = 1.0
        for result in results:
            score = result.get("score")
            credited = self.calibration.lower_precision(regions, float(score) if score is not None else 0.0)
            lowest = min(lowest, credited)
            if credited < precision:
                return LocalOutcome(False, "unconfident", answer, lowest)
        for result in results:
            if not fits_layout(str(result.get("plate") or "").upper(), layouts):
                return LocalOutcome(False, "off_layout", answer, lowest)
        if near_miss is not None and near_miss(results):
            return LocalOutcome(False, "near_miss", answer, lowest)
        return LocalOutcome(True, "accepted", answer, lowest)


class QuotaGuard:
    """Offline alone while calls left < `calls_left_below` or the paid reader's circuit is open.

    `on_change` receives `{"local_only": bool, "local_only_reason": ..., "calls_left": ...}` when the
    mode changes (the bridge puts it on `bridge/state`); each change is logged once.
    """

    def __init__(
        self,
        *,
        calls_left_below: int | None,
        on_change: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.calls_left_below = calls_left_below
        self._on_change = on_change
        self._lock = threading.Lock()
        self._calls_left: int | None = None
        self._circuit_open = False
        self._reason: str | None = None

    @property
    def reason(self) -> str | None:
        """`calls_left` or `circuit_open` while offline alone, else None."""
        return self._reason

    @property
    def local_only(self) -> bool:
        return self._reason is not None

    @property
    def calls_left(self) -> int | None:
        return self._calls_left

    def state(self) -> dict[str, Any]:
        return {
            "local_only": self.local_only,
            "local_only_reason": self._reason,
            "calls_left": self._calls_left,
        }

    def usage(self, body: Mapping[str, Any]) -> None:
        """Calls used and allowed, from `/v1/statistics/` (`usage.calls`, `total_calls`) or an SDK's
        answer or `/info/` (`usage.calls`, `usage.max_calls`); bodies without them change nothing."""
        usage = body.get("usage")
        if not isinstance(usage, Mapping) or not isinstance(usage.get("calls"), int):
            return
        total = body.get("total_calls", usage.get("max_calls"))
        if not isinstance(total, int):
            return
        with self._lock:
            self._calls_left = max(0, total - usage["calls"])
        self._decide()

    def reader_state(self, state: str | None) -> None:
        """The paid reader's state from its guard: `unavailable` is the open circuit."""
        with self._lock:
            self._circuit_open = state == "unavailable"
        self._decide()

    def _decide(self) -> None:
        with self._lock:
            low = (
                self.calls_left_below is not None
                and self._calls_left is not None
                and self._calls_left < self.calls_left_below
            )
            reason = "calls_left" if low else "circuit_open" if self._circuit_open else None
            if reason == self._reason:
                return
            self._reason = reason
            state = self.state()
        if reason == "calls_left":
            log.warning(
                "local first: %s calls left this month (below %s): plates are read offline only until more"
                " are available",
                state["calls_left"],
                self.calls_left_below,
            )
        elif reason == "circuit_open":
            log.warning("local first: the paid reader's circuit is open: plates are read offline only")
        else:
            log.warning("local first: the paid reader answers again when the offline reading is unsure")
        if self._on_change is not None:
            self._on_change(state)


class UsagePoller:
    """Asks `fetch` (the cloud's `/v1/statistics/`) for the month's usage every `interval` seconds and
    hands it to the quota guard; a failed look-up is logged and tried again next interval."""

    def __init__(self, fetch: Callable[[], Mapping[str, Any]], quota: QuotaGuard, interval: float) -> None:
        self._fetch = fetch
        self._quota = quota
        self._interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="local-first-usage", daemon=True)
        self._thread.start()

    def poll(self) -> None:
        """Look now (and at each interval after)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._quota.usage(self._fetch())
            except Exception as exc:  # costs nothing: tried again next interval
                log.warning("local first: could not read the reader's usage: %s", exc)
            self._wake.wait(self._interval)
            self._wake.clear()


def build_local_first(
    settings: Any,
    *,
    routes_enable: bool,
    paid_reader: object,
    load_offline: Callable[[], OfflineReader],
    on_change: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[LocalFirst | None, UsagePoller | None]:
    """The bridge's LocalFirst (and the poller of the cloud's usage) for `reader.local_first`
    (`settings`), or (None, None) when neither it nor a route enables it or the reader is offline
    already. `load_offline()` gives the offline reader, loaded (the caller knows the engines; this
    layer does not). Raises ValueError for a calibration that cannot be read, ImportError without
    [local]."""
    from bridge.reader.calibration import load_calibration

    if not (settings.enabled or routes_enable) or reader_kind(paid_reader) == "local":
        return None, None
    offline = load_offline()
    quota = QuotaGuard(calls_left_below=settings.calls_left_below, on_change=on_change)
    local_first = LocalFirst(
        offline,
        load_calibration(settings.calibration),
        workers=settings.workers,
        quota=quota,
        enabled=settings.enabled,
        precision=settings.precision,
    )
    poller = None
    if settings.calls_left_below is not None and reader_kind(paid_reader) == "cloud":
        # The cloud's month, from /v1/statistics/; an SDK's answers carry its usage (`usage.max_calls`).
        fetch = getattr(paid_reader, "statistics", None)
        if callable(fetch):
            poller = UsagePoller(fetch, quota, settings.usage_interval)
    return local_first, poller


class LocalFirstRun:
    """Local first as a running bridge holds it: the cascade, the poller of the cloud's usage, and
    the fields of `bridge/state` that the reader guard and the quota guard each keep up to date
    (`set_state(**fields)` gets them merged, each part replacing its own)."""

    def __init__(self, set_state: Callable[..., None]) -> None:
        self.cascade: LocalFirst | None = None
        self._poller: UsagePoller | None = None
        self._set_state = set_state
        self._fields: dict[str, dict[str, Any]] = {}

    def build(
        self,
        settings: Any,
        *,
        routes_enable: bool,
        paid_reader: object,
        load_offline: Callable[[], OfflineReader],
    ) -> None:
        """Raises ConfigError (`reader.local_first: ...`) when it cannot be built."""
        try:
            self.cascade, self._poller = build_local_first(
                settings,
                routes_enable=routes_enable,
                paid_reader=paid_reader,
                load_offline=load_offline,
                on_change=lambda state: self._publish("local_first", state),
            )
        except (ValueError, ImportError) as exc:
            raise ConfigError(f"reader.local_first: {exc}") from None

    def reader_state_changed(self, state: dict[str, Any]) -> None:
        """The reader guard's `on_state`: an open circuit is the quota guard's business too."""
        if self.cascade is not None and self.cascade.quota is not None:
            self.cascade.quota.reader_state(state.get("reader"))
        self._publish("reader", state)

    def _publish(self, part: str, fields: dict[str, Any]) -> None:
        self._fields[part] = fields
        self._set_state(**{key: value for part in self._fields.values() for key, value in part.items()})

    def state(self) -> dict[str, Any] | None:
        """The quota guard's state for health (None without local first)."""
        quota = self.cascade.quota if self.cascade is not None else None
        return quota.state() if quota is not None else None

    def start(self) -> None:
        if self._poller is not None:
            self._poller.start()

    def stop(self) -> None:
        if self._poller is not None:
            self._poller.stop()
