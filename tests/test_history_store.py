"""The history store on a real SQLite file and a real PostgreSQL server: the same tests on both."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.config import WatchListConfig
from bridge.extensions.history import schema
from bridge.extensions.history.database import upgrade_to
from bridge.extensions.history.models import HistoryError, Record, StoreTooNew, VisitRules, WatchlistReadOnly
from bridge.extensions.history.store import HistoryStore

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
YAML_LISTS = {"family": WatchListConfig.model_validate({"plates": [{"plate": "AB12 CDE", "label": "Anna"}]})}


@pytest.fixture
def store(history_url: str | None, tmp_path: Path) -> Iterator[HistoryStore]:
    opened = HistoryStore.open(history_url, tmp_path, yaml_lists=YAML_LISTS)
    try:
        yield opened
    finally:
        opened.close()


def seen(plate: str, minutes: float = 0, camera: str = "gate", **fields: object) -> Record:
    return Record(plate=plate, camera=camera, seen_at=T0 + timedelta(minutes=minutes), score=0.9, **fields)  # type: ignore[arg-type]


# --- search -----------------------------------------------------------------------------------------


def test_a_one_character_misread_finds_the_car_and_two_do_not(store: HistoryStore) -> None:
    [stored] = store.record([seen("AB12CDE", watchlists=("family",), calls=1)])
    store.record([seen("XY98765", 1)])
    assert [s.id for s in store.search("AB12CDE")] == [stored.id]
    for misread in ("AB12CDF", "AB12CD", "AB12CDEE", "A812CDE", "AB-12 cde"):  # swap, drop, add, 8/B, case
        assert [s.plate for s in store.search(misread, tolerance=1)] == ["AB12CDE"], misread
    assert store.search("AB12CDF", tolerance=0) == []
    assert store.search("AB13CDF", tolerance=1) == []  # two real misreads
    assert [s.plate for s in store.search("AB13CDF", tolerance=2)] == ["AB12CDE"]


def test_a_stored_vehicle_keeps_what_it_was_stored_with(store: HistoryStore) -> None:
    [stored] = store.record(
        [
            seen(
                "ab12cde",
                candidates=("AB12CDE", "AB12CDF"),
                region="gb",
                watchlists=("family",),
                reader="sdk",
                calls=3,
                crop=b"\xff\xd8crop",
                snapshot=b"\xff\xd8snapshot",
            )
        ]
    )
    again = store.sighting(stored.id)
    assert again == stored
    assert (again.plate, again.candidates, again.region, again.reader, again.calls) == (
        "AB12CDE",
        ("AB12CDE", "AB12CDF"),
        "gb",
        "sdk",
        3,
    )
    assert again.seen_at == T0 and again.seen_at.tzinfo is UTC
    assert again.has_crop and again.has_snapshot and again.visit_id is not None
    assert store.image(stored.id, "crop") == b"\xff\xd8crop"
    assert store.image(stored.id, "snapshot") == b"\xff\xd8snapshot"
    assert store.sighting(stored.id + 1000) is None
    with pytest.raises(HistoryError, match="crop or a snapshot"):
        store.image(stored.id, "thumbnail")  # type: ignore[arg-type]


def test_filters_and_paging_newest_first(store: HistoryStore) -> None:
    store.record([seen(f"CAR{i:03d}", i, camera="gate" if i % 2 else "drive") for i in range(10)])
    store.record([seen("AB12CDE", 20, camera="drive", watchlists=("family",))])
    everything = store.search(limit=100)
    assert [s.plate for s in everything][:2] == ["AB12CDE", "CAR009"]
    assert (
        all(s.camera == "gate" for s in store.search(camera="gate")) and len(store.search(camera="gate")) == 5
    )
    assert [s.plate for s in store.search(watchlist="family")] == ["AB12CDE"]
    window = store.search(since=T0 + timedelta(minutes=3), until=T0 + timedelta(minutes=6))
    assert [s.plate for s in window] == ["CAR005", "CAR004", "CAR003"]
    first = store.search(limit=4)
    second = store.search(limit=4, before_id=first[-1].id)
    assert [s.id for s in first + second] == [s.id for s in everything[:8]]
    assert store.cameras() == ["drive", "gate"]
    with pytest.raises(HistoryError, match="limit"):
        store.search(limit=0)
    with pytest.raises(HistoryError, match="tolerance"):
        store.search("AB12CDE", tolerance=9)
    with pytest.raises(HistoryError, match="not a plate"):
        store.search("---")


# --- visits -----------------------------------------------------------------------------------------


def test_sightings_within_the_gap_are_one_visit_and_the_gap_closes_it(store: HistoryStore) -> None:
    store.rules = VisitRules(gap=timedelta(minutes=5))
    a, b = store.record([seen("AB12CDE", 0, camera="street"), seen("AB12CDE", 4, camera="drive")])
    assert a.visit_id == b.visit_id
    [visit] = store.visits("AB12CDE")
    assert visit.cameras == ("street", "drive") and visit.dwell == timedelta(minutes=4)
    assert [v.id for v in store.present(T0 + timedelta(minutes=8))] == [visit.id]
    assert store.present(T0 + timedelta(minutes=10)) == []  # the gap has passed
    [later] = store.record([seen("AB12CDE", 30)])
    assert later.visit_id != a.visit_id
    assert [v.open for v in store.visits("AB12CDE", now=T0 + timedelta(minutes=31))] == [True, False]
    closed = store.close_overdue_visits(T0 + timedelta(minutes=40))
    assert [v.id for v in closed] == [later.visit_id]
    assert store.visits(open_only=True) == []


def test_an_exit_camera_closes_the_visit_and_an_entry_keeps_it_open_past_the_gap(store: HistoryStore) -> None:
    store.rules = VisitRules(
        gap=timedelta(minutes=5),
        max_stay=timedelta(hours=12),
        roles={"in": frozenset({"entry"}), "out": frozenset({"exit"})},
    )
    [arrived] = store.record([seen("AB12CDE", 0, camera="in")])
    # Parked for two hours, out of view: still home.
    assert [v.plate for v in store.present(T0 + timedelta(hours=2))] == ["AB12CDE"]
    [left] = store.record([seen("AB12CDE", 120, camera="out")])
    assert left.visit_id == arrived.visit_id
    [visit] = store.visits("AB12CDE")
    assert not visit.open and visit.dwell == timedelta(hours=2) and visit.cameras == ("in", "out")
    assert store.present(T0 + timedelta(hours=2)) == []


def test_one_gate_camera_for_both_ways(store: HistoryStore) -> None:
    store.rules = VisitRules(gap=timedelta(minutes=5), roles={"gate": frozenset({"entry", "exit"})})
    store.record([seen("AB12CDE", 0), seen("AB12CDE", 1)])  # arriving: seen twice passing the gate
    assert [v.open for v in store.visits(now=T0 + timedelta(minutes=2))] == [True]
    store.record([seen("AB12CDE", 90)])  # leaving, long after
    [visit] = store.visits()
    assert not visit.open and visit.dwell == timedelta(minutes=90)


# --- watch lists ------------------------------------------------------------------------------------


def test_watch_lists_edit_and_yaml_lists_are_read_only(store: HistoryStore) -> None:
    version = store.watch_version()
    entry = store.add_watch("visitors", "cd-34 efg", "Plumber")
    assert (entry.plate, entry.label, entry.source) == ("CD34EFG", "Plumber", "store")
    store.add_watch("visitors", "CD34EFG", "Plumber (Tuesdays)")  # relabel, not a second entry
    assert store.watch_version() > version
    entries = store.watch_entries()
    assert [(e.list, e.plate, e.label, e.source) for e in entries] == [
        ("family", "AB12 CDE", "Anna", "yaml"),
        ("visitors", "CD34EFG", "Plumber (Tuesdays)", "store"),
    ]
    assert store.store_lists() == {"visitors": [("CD34EFG", "Plumber (Tuesdays)")]}
    with pytest.raises(WatchlistReadOnly, match="configuration file"):
        store.add_watch("family", "ZZ11ZZZ")
    with pytest.raises(WatchlistReadOnly):
        store.remove_watch("family", "AB12CDE")
    with pytest.raises(HistoryError, match="not a plate"):
        store.add_watch("visitors", "!!")
    with pytest.raises(HistoryError, match="name"):
        store.add_watch("", "AB12CDE")
    assert store.remove_watch("visitors", "cd34efg") is True
    assert store.remove_watch("visitors", "cd34efg") is False
    assert store.watch_entries("visitors") == []


def test_csv_import_replaces_the_list_and_export_round_trips(store: HistoryStore) -> None:
    store.add_watch("stolen", "OLD1")
    count = store.import_csv("stolen", "plate,label\nAA11AAA,red van\n# a comment\n\nBB 22 BBB\n")
    assert count == 2
    assert store.export_csv("stolen") == "plate,label\nAA11AAA,red van\nBB22BBB,\n"
    assert store.import_csv("stolen", "CC33CCC\n", replace=False) == 1
    assert [e.plate for e in store.watch_entries("stolen")] == ["AA11AAA", "BB22BBB", "CC33CCC"]
    with pytest.raises(HistoryError, match="CSV line 3"):
        store.import_csv("stolen", "DD44DDD\nEE55EEE\n$$$\n")
    assert len(store.watch_entries("stolen")) == 3  # all or nothing
    assert store.export_csv("family") == "plate,label\nAB12 CDE,Anna\n"


def test_usage_adds_up_by_month(store: HistoryStore) -> None:
    store.add_usage("2026-12", calls=3, saved_by_reuse=2)
    store.add_usage("2026-12", calls=1, saved_by_consensus=4, read_offline=5)
    store.add_usage("2026-12", read_offline=2)
    usage = store.usage("2026-12")
    assert (usage.calls, usage.saved_by_reuse, usage.saved_by_consensus, usage.read_offline) == (4, 2, 4, 7)
    assert store.usage("2026-11").calls == 0
    with pytest.raises(HistoryError, match="YYYY-MM"):
        store.usage("December")


# --- retention --------------------------------------------------------------------------------------


def test_retention_by_age_and_by_size_takes_the_oldest_with_their_images(store: HistoryStore) -> None:
    picture = b"\xff" * 10_000
    store.record([seen(f"CAR{i:03d}", i, crop=picture) for i in range(20)])
    deleted = store.apply_retention(
        max_age=timedelta(minutes=10), max_bytes=None, now=T0 + timedelta(minutes=15)
    )
    assert deleted == 5  # minutes 0-4 are older than 10 minutes at minute 15
    assert store.search("CAR004") == [] and store.search("CAR004", tolerance=1) != []  # CAR005...
    bound = 8 * (10_000 + 400)
    store.apply_retention(max_age=None, max_bytes=bound)
    assert store.stored_bytes() <= bound
    left = store.search(limit=100)
    assert left and left[-1].plate > "CAR005" and left[0].plate == "CAR019"
    oldest_gone = store.search("CAR005", tolerance=0)
    assert oldest_gone == []


# --- migrations -------------------------------------------------------------------------------------


def test_a_store_of_the_first_release_opens_after_an_upgrade(history_url: str | None, tmp_path: Path) -> None:
    upgrade_to(history_url, tmp_path, "0001")  # the first release's schema, without store_meta
    engine = sa.create_engine(_engine_url(history_url, tmp_path))
    with engine.begin() as connection:
        connection.execute(
            sa.insert(schema.watch_entries).values(list="v", normal="AB1", plate="AB1", added_at=T0)
        )
    engine.dispose()
    store = HistoryStore.open(history_url, tmp_path)
    try:
        assert [e.plate for e in store.watch_entries()] == ["AB1"]
        store.add_watch("v", "CD2")
        assert store.watch_version() == 1
    finally:
        store.close()


def test_usage_of_a_month_counted_before_frames_read_offline_were_told_apart(
    history_url: str | None, tmp_path: Path
) -> None:
    upgrade_to(history_url, tmp_path, "0002")  # usage without read_offline
    engine = sa.create_engine(_engine_url(history_url, tmp_path))
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO usage (month, calls, saved_by_reuse, saved_by_consensus) "
                "VALUES ('2026-11', 9, 3, 1)"
            )
        )
    engine.dispose()
    store = HistoryStore.open(history_url, tmp_path)
    try:
        november = store.usage("2026-11")
        assert (november.calls, november.saved_by_reuse, november.read_offline) == (9, 3, 0)
        store.add_usage("2026-11", read_offline=4)
        assert store.usage("2026-11").read_offline == 4
    finally:
        store.close()


def test_a_store_of_a_newer_release_is_refused(history_url: str | None, tmp_path: Path) -> None:
    HistoryStore.open(history_url, tmp_path).close()
    engine = sa.create_engine(_engine_url(history_url, tmp_path))
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    engine.dispose()
    with pytest.raises(StoreTooNew, match=r"newer release of plate-bridge .*0099_from_the_future"):
        HistoryStore.open(history_url, tmp_path)


def test_the_migrations_make_the_schema_the_code_describes(history_url: str | None, tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    HistoryStore.open(history_url, tmp_path).close()
    engine = sa.create_engine(_engine_url(history_url, tmp_path))
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), schema.metadata)
    engine.dispose()
    assert differences == []


def test_a_url_that_is_no_database_is_a_clear_error(tmp_path: Path) -> None:
    from bridge.core.errors import ConfigError

    with pytest.raises(ConfigError, match="neither postgresql"):
        HistoryStore.open("mysql://user:secret@db/x", tmp_path)
    with pytest.raises(
        HistoryError, match=r"cannot open the history store at postgresql://127\.0\.0\.1:1"
    ) as info:
        HistoryStore.open("postgresql://user:secret@127.0.0.1:1/x", tmp_path)
    assert "secret" not in str(info.value)


def _engine_url(url: str | None, data_dir: Path) -> str:
    from bridge.extensions.history.database import database_url

    return database_url(url, data_dir)


def test_two_replicas_write_the_same_new_plates_at_once(history_url: str | None, tmp_path: Path) -> None:
    import threading

    replicas = [HistoryStore.open(history_url, tmp_path) for _ in range(2)]
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def write(store: HistoryStore, camera: str) -> None:
        try:
            start.wait(10)
            for round_ in range(10):
                store.record([seen(f"NEW{i:03d}", round_, camera=camera) for i in range(20)])
        except BaseException as exc:  # reported below, with the others
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(store, f"cam{n}")) for n, store in enumerate(replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert failures == []
        assert len(replicas[0].search(limit=1000)) == 400
        assert {s.camera for s in replicas[1].search("NEW007", limit=100)} == {"cam0", "cam1"}
    finally:
        for store in replicas:
            store.close()
