"""The benchmark scenarios, at full size, scaled, or tiny for the smoke mode."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

RSS_FRAMES = 100_000
LONG_RUN_CAP_SECONDS = 3600.0


@dataclass(frozen=True)
class Scenario:
    """One workload, run the same way through each system."""

    name: str
    title: str
    frame_set: str  # "resized", "original" or "parked" (benchmarks.frames)
    cameras: int
    rate: float | None  # frames/s over all cameras; None: closed loop
    warmup_s: float
    duration_s: float
    max_frames: int
    service_time_s: float = 0.0
    concurrency: int = 8  # the bridge's reader.concurrency (the relay has 8 worker threads too)
    max_calls_per_second: float | None = None  # the bridge's reader.max_calls_per_second
    rows: tuple[str, ...] = ("fps", "cpu", "rss_peak", "p50", "p99")

    @property
    def settings(self) -> dict[str, object]:
        return {
            "cameras": self.cameras,
            "loop": "closed" if self.rate is None else f"open, {self.rate:g} frames/s",
            "frames": self.frame_set,
            "warmup_s": self.warmup_s,
            "duration_s": self.duration_s,
            "max_frames": self.max_frames,
            "reader_service_time_s": self.service_time_s,
            "bridge_concurrency": self.concurrency,
            "bridge_max_calls_per_second": self.max_calls_per_second,
        }


FULL = (
    Scenario(
        "flat_out",
        "flat out: 32 cameras, closed loop, ~120 kB frames, instant reader",
        "resized",
        cameras=32,
        rate=None,
        warmup_s=3,
        duration_s=15,
        max_frames=200_000,
        rows=("fps", "cpu", "rss_peak", "rss_steady", "p50", "p99", "emulator"),
    ),
    Scenario(
        "flat_out_original",
        "flat out, original photos (15-1,560 kB, base64), 32 cameras, instant reader",
        "original",
        cameras=32,
        rate=None,
        warmup_s=2,
        duration_s=10,
        max_frames=200_000,
        rows=("fps", "cpu", "rss_peak", "p50", "p99"),
    ),
    Scenario(
        "latency_50fps",
        "50 frames/s open loop (10 cameras x 5/s), instant reader: added latency",
        "resized",
        cameras=10,
        rate=50,
        warmup_s=2,
        duration_s=20,
        max_frames=200_000,
        rows=("p50", "p95", "p99", "fps", "cpu"),
    ),
    Scenario(
        "pipelining",
        "reader takes 200 ms, bridge concurrency 8: pipelining (ideal 40 frames/s)",
        "resized",
        cameras=32,
        rate=None,
        warmup_s=2,
        duration_s=15,
        max_frames=200_000,
        service_time_s=0.2,
        rows=("fps", "pipelining", "p50"),
    ),
    Scenario(
        "rate_limit",
        "reader takes 200 ms, bridge concurrency 8 and max_calls_per_second 8",
        "resized",
        cameras=32,
        rate=None,
        warmup_s=2,
        duration_s=15,
        max_frames=200_000,
        service_time_s=0.2,
        max_calls_per_second=8,
        rows=("fps", "max_1s", "calls"),
    ),
    Scenario(
        "parked_car",
        "parked car: the same frame at 2 frames/s for 60 s, one camera",
        "parked",
        cameras=1,
        rate=2,
        warmup_s=0,
        duration_s=60,
        max_frames=120,
        rows=("frames", "calls", "calls_per_frame"),
    ),
)

RSS = Scenario(
    "rss_100k",
    "100,000 frames, 32 cameras, closed loop, instant reader: RSS growth",
    "resized",
    cameras=32,
    rate=None,
    warmup_s=0,
    duration_s=LONG_RUN_CAP_SECONDS,
    max_frames=RSS_FRAMES,
    rows=("frames", "fps", "rss_early", "rss_end", "rss_growth", "rss_peak"),
)


def select(*, smoke: bool, long: bool, rss_frames: int, scale: float) -> list[Scenario]:
    """The scenarios to run: every one tiny for `smoke`; else full size times `scale`, with the
    100k-frame RSS run only when `long`."""
    if smoke:
        tiny = [
            dataclasses.replace(
                scenario,
                # Few cameras: a frame queued behind the rate limit drains within a second.
                cameras=min(scenario.cameras, 8),
                warmup_s=min(scenario.warmup_s, 0.1),
                # The rate limit needs more than one 1-s window; a parked car two frames.
                duration_s={"rate_limit": 1.5, "parked_car": 1.0}.get(scenario.name, 0.5),
                max_frames=min(scenario.max_frames, 400),
            )
            for scenario in FULL
        ]
        rss = dataclasses.replace(RSS, cameras=8, max_frames=300, title=RSS.title.replace("100,000", "300"))
        return [*tiny, rss]
    chosen = [
        dataclasses.replace(
            scenario,
            warmup_s=scenario.warmup_s * scale,
            duration_s=scenario.duration_s * scale,
            max_frames=max(1, round(scenario.max_frames * scale)) if scenario.rate else scenario.max_frames,
        )
        for scenario in FULL
    ]
    if long:
        title = RSS.title.replace("100,000", f"{rss_frames:,}")
        chosen.append(dataclasses.replace(RSS, max_frames=rss_frames, title=title))
    return chosen
