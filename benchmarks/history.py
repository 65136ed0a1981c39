"""The history store's goals (issue 22), measured on real databases:

1. recording: CPU per event on the frame path (`HistoryExtension.on_event`, the caller's thread), and the
   writer's own CPU per vehicle (pictures made, rows written) reported apart;
2. search: one plate with a one-character misread, tolerance 1, among 1,000,000 stored vehicles, p95,
   on SQLite and on PostgreSQL (a server of its own, tests/postgres.py, or PLATE_BRIDGE_TEST_POSTGRES_URL);
3. retention: 100 vehicles a minute with their pictures for an hour of simulated time, the store's
   accounted bytes and its size on disk against `max_bytes`; and how long a picture takes to read back
   from the database (where pictures live: any replica's page shows any replica's pictures).

    .venv/bin/python -m benchmarks.history            # everything (~15 minutes on 2 cores), writes
                                                      # benchmarks/history_results.json
    .venv/bin/python -m benchmarks.history --smoke    # tiny, to check the harness (not written)
    .venv/bin/python -m benchmarks.history --vehicles 200000 --databases sqlite
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from PIL import Image, ImageDraw

from bridge.config import load_config
from bridge.core.messages import Message
from bridge.core.plates import normalize_plate
from bridge.extensions.base import ExtensionContext, PublishedEvent
from bridge.extensions.history import schema as t
from bridge.extensions.history.extension import HistoryExtension
from bridge.extensions.history.keys import deletion_keys
from bridge.extensions.history.models import Record
from bridge.extensions.history.store import HistoryStore
from bridge.extensions.history.writing import ROW_BYTES

RESULTS = Path(__file__).with_name("history_results.json")
ALPHABET = string.ascii_uppercase + string.digits
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def camera_frame(seed: int, size: tuple[int, int] = (1280, 720)) -> bytes:
    """A camera-like JPEG: a gradient, noise and a plate-like box, ~100 kB at 1280x720."""
    rng = random.Random(seed)
    # A scene's smooth shading with a little sensor noise: compresses like a camera's frame does.
    noise = Image.effect_noise((size[0] // 4, size[1] // 4), 30).resize(size, Image.Resampling.BILINEAR)
    shade = Image.linear_gradient("L").resize(size)
    image = Image.merge("RGB", (Image.blend(noise, shade, 0.6), shade, Image.blend(shade, noise, 0.3)))
    draw = ImageDraw.Draw(image)
    draw.rectangle((500, 400, 780, 460), fill=(240, 240, 240), outline=(0, 0, 0), width=3)
    draw.text((520, 420), "".join(rng.choices(ALPHABET, k=7)), fill=(0, 0, 0))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


@contextmanager
def databases(names: list[str]) -> Iterator[dict[str, str | None]]:
    """name -> store URL (None: SQLite); PostgreSQL from the environment or a server of our own."""
    from tests.postgres import URL_ENV, PostgresServer, postgres_bin

    urls: dict[str, str | None] = {}
    server = None
    if "sqlite" in names:
        urls["sqlite"] = None
    if "postgresql" in names:
        if os.environ.get(URL_ENV):
            urls["postgresql"] = os.environ[URL_ENV]
        elif postgres_bin() is not None:
            server = PostgresServer().start()
            urls["postgresql"] = server.url
        else:
            print("PostgreSQL is not installed: skipping it", file=sys.stderr)
    try:
        yield urls
    finally:
        if server is not None:
            server.stop()


def fresh(url: str | None, name: str, folder: Path) -> tuple[str | None, Path]:
    if url is None:
        data = folder / name
        data.mkdir(parents=True, exist_ok=True)
        return None, data
    from tests.postgres import fresh_database

    return fresh_database(url, name), folder


# -- 1. the frame path -----------------------------------------------------------------------------


class _NoPublisher:
    """The bridge's publisher, for a store measured without a broker: what it publishes goes nowhere."""

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool, properties: Any = None) -> None:
        return None


def bench_recording(events: int, folder: Path) -> dict[str, Any]:
    frame = camera_frame(1)
    config = load_config(
        history={"enabled": True, "data_dir": str(folder / "recording"), "queue_size": 100_000}
    )
    extension = HistoryExtension(ExtensionContext(config=config, publisher=_NoPublisher(), health=dict))
    extension.start()
    result = {
        "box": {"xmin": 500, "ymin": 400, "xmax": 780, "ymax": 460},
        "plate": "ab12cde",
        "score": 0.9,
        "region": {"code": "gb", "score": 0.9},
        "candidates": [{"plate": "ab12cde", "score": 0.9}, {"plate": "ab12cdf", "score": 0.7}],
    }
    published = []
    for index in range(events):
        plate = "".join(random.Random(index).choices(ALPHABET, k=7)).lower()
        event = {"results": [{**result, "plate": plate}], "camera_id": "gate", "timestamp": "x"}
        msg = Message(
            topic="cameras/gate/image",
            payload=b"",
            received_at=T0 + timedelta(seconds=index),
            camera_id="gate",
            image=frame,
            result=event,
        )
        published.append(PublishedEvent("plate", "plate-bridge/gate/result", event, msg))
    try:
        costs = []
        for item in published:
            started = time.thread_time_ns()
            extension.on_event(item)
            costs.append((time.thread_time_ns() - started) / 1e6)
        give_up = time.monotonic() + 600
        while extension.stats().get("stored", 0) < events and time.monotonic() < give_up:
            time.sleep(0.2)
        stats = extension.stats()
    finally:
        extension.stop()
    return {
        "events": events,
        "frame_bytes": len(frame),
        "frame_path_cpu_ms_mean": round(statistics.fmean(costs), 4),
        "frame_path_cpu_ms_p95": round(percentile(costs, 0.95), 4),
        "frame_path_cpu_ms_max": round(max(costs), 4),
        "stored": stats.get("stored", 0),
        "dropped": stats.get("dropped", 0),
        "writer_cpu_ms_per_vehicle": round(
            stats.get("writer_cpu_us", 0) / 1000 / max(1, stats.get("stored", 1)), 3
        ),
        "goal_ms": 0.1,
    }


# -- 2. search among a million -------------------------------------------------------------------


def load_vehicles(store: HistoryStore, vehicles: int, plates: int, seed: int = 7) -> tuple[list[str], float]:
    """`vehicles` rows of `plates` distinct plates, written in bulk (the store's own tables and keys,
    as `record` writes them, without pictures or visits: search does not read those)."""
    rng = random.Random(seed)
    normals = list({"".join(rng.choices(ALPHABET, k=rng.choice((6, 7, 7, 7)))) for _ in range(plates)})
    started = time.perf_counter()
    with store.engine.begin() as connection:
        for start in range(0, len(normals), 20_000):
            chunk = normals[start : start + 20_000]
            connection.execute(
                sa.insert(t.plates), [{"id": start + i + 1, "normal": n} for i, n in enumerate(chunk)]
            )
            connection.execute(
                sa.insert(t.plate_keys),
                [
                    {"key": k, "plate_id": start + i + 1}
                    for i, n in enumerate(chunk)
                    for k in deletion_keys(n)
                ],
            )
    cameras = ["gate", "drive", "street", "garage"]
    used: set[str] = set()
    with store.engine.begin() as connection:
        for start in range(0, vehicles, 20_000):
            rows = []
            for index in range(start, min(vehicles, start + 20_000)):
                plate_id = rng.randrange(len(normals)) + 1
                used.add(normals[plate_id - 1])
                rows.append(
                    {
                        "plate_id": plate_id,
                        "plate": normals[plate_id - 1],
                        "candidates": "[]",
                        "score": 0.9,
                        "region": "gb",
                        "camera": cameras[index % 4],
                        "seen_at": T0 + timedelta(seconds=index * 3),
                        "watchlists": "[]",
                        "reader": "cloud",
                        "calls": 1,
                        "has_crop": False,
                        "has_snapshot": False,
                        "visit_id": None,
                        "bytes": ROW_BYTES,
                    }
                )
            connection.execute(sa.insert(t.sightings), rows)
    with store.engine.begin() as connection:
        if store.dialect == "postgresql":
            connection.exec_driver_sql("ANALYZE")
        else:
            connection.exec_driver_sql("ANALYZE")
    return sorted(used), time.perf_counter() - started


def misread(plate: str, rng: random.Random) -> str:
    position = rng.randrange(len(plate))
    kind = rng.choice(("swap", "drop", "add"))
    if kind == "swap":
        return (
            plate[:position]
            + rng.choice([c for c in ALPHABET if c != plate[position]])
            + plate[position + 1 :]
        )
    if kind == "drop":
        return plate[:position] + plate[position + 1 :]
    return plate[:position] + rng.choice(ALPHABET) + plate[position:]


def bench_search(
    url: str | None, vehicles: int, plates: int, queries: int, folder: Path, name: str
) -> dict[str, Any]:
    store_url, data = fresh(url, f"history_search_{vehicles}", folder / name)
    store = HistoryStore.open(store_url, data)
    try:
        normals, load_s = load_vehicles(store, vehicles, plates)
        rng = random.Random(11)
        times, found = [], 0
        for _ in range(20):  # warm the caches, as a running store's would be
            store.search(misread(rng.choice(normals), rng), tolerance=1)
        for _ in range(queries):
            target = rng.choice(normals)
            query = misread(target, rng)
            started = time.perf_counter()
            results = store.search(query, tolerance=1, limit=50)
            times.append((time.perf_counter() - started) * 1000)
            found += any(normalize_plate(s.plate) == target for s in results)
        exact = []
        for _ in range(queries // 2):
            started = time.perf_counter()
            store.search(rng.choice(normals), limit=50)
            exact.append((time.perf_counter() - started) * 1000)
        latest = []
        for _ in range(queries // 2):
            started = time.perf_counter()
            store.search(camera="gate", limit=50)
            latest.append((time.perf_counter() - started) * 1000)
        disk = store.disk_bytes()
    finally:
        store.close()
    return {
        "vehicles": vehicles,
        "distinct_plates_seen": len(normals),
        "load_seconds": round(load_s, 1),
        "queries": queries,
        "found_the_car": found,
        "tolerance1_ms_p50": round(percentile(times, 0.5), 2),
        "tolerance1_ms_p95": round(percentile(times, 0.95), 2),
        "tolerance1_ms_max": round(max(times), 2),
        "exact_ms_p95": round(percentile(exact, 0.95), 2),
        "newest_of_a_camera_ms_p95": round(percentile(latest, 0.95), 2),
        "disk_bytes": disk,
        "goal_ms_p95": 50,
    }


# -- 3. retention under load, and pictures read back ------------------------------------------------


def bench_retention(
    url: str | None, minutes: int, per_minute: int, max_bytes: int, folder: Path, name: str
) -> dict[str, Any]:
    from bridge.imaging.annotate import annotate, crop_best_plate

    store_url, data = fresh(url, "history_retention", folder / name)
    store = HistoryStore.open(store_url, data)
    frames = [camera_frame(seed) for seed in range(8)]
    result = {"box": {"xmin": 500, "ymin": 400, "xmax": 780, "ymax": 460}, "plate": "ab12cde", "score": 0.9}
    pictures = [(crop_best_plate(frame, [result]), annotate(frame, [result])) for frame in frames]
    rng = random.Random(5)
    accounted, disk, write_s, deleted = [], [], 0.0, 0
    try:
        for minute in range(minutes):
            now = T0 + timedelta(minutes=minute + 1)
            records = []
            for index in range(per_minute):
                crop, snapshot = pictures[rng.randrange(len(pictures))]
                records.append(
                    Record(
                        plate="".join(rng.choices(ALPHABET, k=7)),
                        camera="gate",
                        seen_at=now - timedelta(seconds=60 - index * 60 / per_minute),
                        score=0.9,
                        calls=1,
                        crop=crop,
                        snapshot=snapshot,
                    )
                )
            started = time.perf_counter()
            for start in range(0, len(records), 10):  # the writer's batches
                store.record(records[start : start + 10])
            write_s += time.perf_counter() - started
            deleted += store.apply_retention(max_age=timedelta(days=30), max_bytes=max_bytes, now=now)
            accounted.append(store.stored_bytes())
            disk.append(store.disk_bytes())
        ids = [s.id for s in store.search(limit=1000)]
        reads = []
        for sighting_id in rng.sample(ids, min(200, len(ids))):
            started = time.perf_counter()
            store.image(sighting_id, "snapshot")
            reads.append((time.perf_counter() - started) * 1000)
    finally:
        store.close()
    vehicles = minutes * per_minute
    return {
        "simulated_minutes": minutes,
        "vehicles_per_minute": per_minute,
        "vehicles": vehicles,
        "picture_bytes_per_vehicle": round(
            statistics.fmean(len(c or b"") + len(s or b"") for c, s in pictures)
        ),
        "max_bytes": max_bytes,
        "deleted": deleted,
        "accounted_bytes_max": max(accounted),
        "disk_bytes_max": max(disk),
        "disk_bytes_end": disk[-1],
        "within_bound": max(accounted) <= max_bytes,
        "disk_over_bound": round(max(disk) / max_bytes, 3),
        "write_ms_per_vehicle": round(write_s * 1000 / vehicles, 2),
        "snapshot_read_ms_p50": round(percentile(reads, 0.5), 2),
        "snapshot_read_ms_p95": round(percentile(reads, 0.95), 2),
    }


def bench_files(vehicles: int, folder: Path) -> dict[str, Any]:
    """The other choice, for comparison: the same pictures as files in a directory (no fsync)."""
    frame = camera_frame(3)
    from bridge.imaging.annotate import annotate

    snapshot = annotate(frame, [])
    target = folder / "files"
    target.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for index in range(vehicles):
        (target / f"{index}.jpg").write_bytes(snapshot)
    write = (time.perf_counter() - started) * 1000 / vehicles
    reads = []
    for index in random.Random(1).sample(range(vehicles), min(200, vehicles)):
        started = time.perf_counter()
        (target / f"{index}.jpg").read_bytes()
        reads.append((time.perf_counter() - started) * 1000)
    return {
        "vehicles": vehicles,
        "write_ms_per_picture": round(write, 3),
        "read_ms_p95": round(percentile(reads, 0.95), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, results not written")
    parser.add_argument("--vehicles", type=int, default=1_000_000)
    parser.add_argument("--plates", type=int, default=250_000, help="distinct plates among the vehicles")
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--per-minute", type=int, default=100)
    parser.add_argument("--max-bytes", type=int, default=200 * 1024 * 1024)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.smoke:
        args.vehicles, args.plates, args.queries, args.events = 5000, 2000, 40, 50
        args.minutes, args.per_minute, args.max_bytes = 5, 20, 2 * 1024 * 1024
    names = [name.strip() for name in args.databases.split(",") if name.strip()]
    report: dict[str, Any] = {
        "command": "python -m benchmarks.history " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "system": platform.platform(),
        },
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with tempfile.TemporaryDirectory(prefix="history-bench-") as temporary, databases(names) as urls:
        folder = Path(temporary)
        report["recording"] = bench_recording(args.events, folder)
        print(json.dumps({"recording": report["recording"]}, indent=1), flush=True)
        for name, url in urls.items():
            report[f"search_{name}"] = bench_search(
                url, args.vehicles, args.plates, args.queries, folder, name
            )
            print(json.dumps({name: report[f"search_{name}"]}, indent=1), flush=True)
            report[f"retention_{name}"] = bench_retention(
                url, args.minutes, args.per_minute, args.max_bytes, folder, name
            )
            print(json.dumps({name: report[f"retention_{name}"]}, indent=1), flush=True)
        report["pictures_as_files"] = bench_files(min(2000, args.minutes * args.per_minute), folder)
    out = args.out or (None if args.smoke else RESULTS)
    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    else:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
