"""The history store's watch lists: those of the configuration file (read-only) beside the store's
own, edited at run time (one plate, or a whole list from CSV) and exported as CSV."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, select, update

from bridge.core.plates import normalize_plate
from bridge.extensions.history import schema as t
from bridge.extensions.history.models import HistoryError, WatchEntry, WatchlistReadOnly
from bridge.extensions.history.storebase import MAX_PLATE, StoreBase

MAX_CSV_BYTES = 10 * 1024 * 1024
MAX_CSV_ROWS = 200_000
MAX_LIST_NAME = 100
MAX_LABEL = 200
_LIST_NAME = re.compile(r"^[\w][\w .\-]*$")


def _watch_list_name(name: str) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > MAX_LIST_NAME or not _LIST_NAME.match(name):
        raise HistoryError(
            f"a watch list's name is 1-{MAX_LIST_NAME} letters, digits, spaces, dots, dashes or "
            f"underscores, starting with a letter or digit: {str(name)[:MAX_LIST_NAME]!r} is not"
        )
    return name


def _plate(text_: str) -> str:
    normal = normalize_plate(text_) if isinstance(text_, str) else ""
    if not normal or len(normal) > MAX_PLATE or not normal.isalnum():
        raise HistoryError(f"{str(text_)[:40]!r} is not a plate (1-{MAX_PLATE} letters and digits)")
    return normal


class StoreWatchLists(StoreBase):
    """The watch lists' plates, and the edits of the store's lists (each bumps `watch_version`)."""

    def watch_entries(self, list_name: str | None = None) -> list[WatchEntry]:
        """The watch lists' plates: those of the configuration file (read-only) and the store's."""
        entries: list[WatchEntry] = []
        for name, config in self.yaml_lists.items():
            if list_name is None or name == list_name:
                entries.extend(WatchEntry(name, plate.plate, plate.label, "yaml") for plate in config.plates)
        query = select(t.watch_entries).order_by(t.watch_entries.c.list, t.watch_entries.c.normal)
        if list_name is not None:
            query = query.where(t.watch_entries.c.list == list_name)
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        entries.extend(WatchEntry(row["list"], row["plate"], row["label"], "store") for row in rows)
        return entries

    def store_lists(self) -> dict[str, list[tuple[str, str | None]]]:
        """The store's lists: name -> [(plate, label)], for the watch-list node."""
        lists: dict[str, list[tuple[str, str | None]]] = {}
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(t.watch_entries.c.list, t.watch_entries.c.plate, t.watch_entries.c.label).order_by(
                    t.watch_entries.c.list, t.watch_entries.c.added_at, t.watch_entries.c.normal
                )
            ).all()
        for row in rows:
            lists.setdefault(row.list, []).append((row.plate, row.label))
        return lists

    def watch_version(self) -> int:
        """A number that changes with every watch-list edit, by any replica."""
        with self.engine.connect() as connection:
            found = connection.execute(
                select(t.store_meta.c.value).where(t.store_meta.c.key == "watch_version")
            ).scalar()
        return int(found or 0)

    def _editable(self, list_name: str) -> str:
        name = _watch_list_name(list_name)
        if name in self.yaml_lists:
            raise WatchlistReadOnly(
                f"watch list {name!r} is defined in the configuration file and is read-only at run time; "
                "edit the file, or use a list of another name"
            )
        return name

    def _bump(self, connection: Connection) -> None:
        connection.execute(
            update(t.store_meta)
            .where(t.store_meta.c.key == "watch_version")
            .values(value=t.store_meta.c.value + 1)
        )

    def add_watch(self, list_name: str, plate: str, label: str | None = None) -> WatchEntry:
        """Add a plate to a list of the store (or relabel it); the list is made by its first plate."""
        name = self._editable(list_name)
        normal = _plate(plate)
        if label is not None:
            label = str(label).strip()[:MAX_LABEL] or None
        with self._writing() as connection:
            self._upsert(
                connection,
                t.watch_entries,
                {
                    "list": name,
                    "normal": normal,
                    "plate": normal,
                    "label": label,
                    "added_at": datetime.now(UTC),
                },
                ["list", "normal"],
            )
            self._bump(connection)
        return WatchEntry(name, normal, label, "store")

    def remove_watch(self, list_name: str, plate: str) -> bool:
        """Take a plate off a list of the store; False when it was not on it."""
        name = self._editable(list_name)
        normal = _plate(plate)
        with self._writing() as connection:
            removed = connection.execute(
                delete(t.watch_entries).where(
                    t.watch_entries.c.list == name, t.watch_entries.c.normal == normal
                )
            ).rowcount
            if removed:
                self._bump(connection)
        return bool(removed)

    def import_csv(self, list_name: str, text_: str, *, replace: bool = True) -> int:
        """Load a list from CSV (`plate[,label]` a line; a `plate,label` header is skipped). With
        `replace` (a daily stolen-car list) the list becomes exactly the file's plates. All or
        nothing: a bad line is an error naming it. The number of plates in the file."""
        name = self._editable(list_name)
        if len(text_.encode()) > MAX_CSV_BYTES:
            raise HistoryError(f"a watch-list CSV is at most {MAX_CSV_BYTES // (1024 * 1024)} MiB")
        entries: dict[str, str | None] = {}
        for number, row in enumerate(csv.reader(io.StringIO(text_)), 1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if number == 1 and row[0].strip().lower() == "plate":
                continue
            if len(row) > 2:
                raise HistoryError(f"CSV line {number}: expected plate[,label], got {len(row)} fields")
            try:
                normal = _plate(row[0])
            except HistoryError as exc:
                raise HistoryError(f"CSV line {number}: {exc.message}") from None
            label = row[1].strip()[:MAX_LABEL] if len(row) > 1 else ""
            entries[normal] = label or None
            if len(entries) > MAX_CSV_ROWS:
                raise HistoryError(f"a watch-list CSV has at most {MAX_CSV_ROWS} plates")
        now = datetime.now(UTC)
        with self._writing() as connection:
            if replace:
                connection.execute(delete(t.watch_entries).where(t.watch_entries.c.list == name))
            for normal, label in entries.items():
                self._upsert(
                    connection,
                    t.watch_entries,
                    {"list": name, "normal": normal, "plate": normal, "label": label, "added_at": now},
                    ["list", "normal"],
                )
            self._bump(connection)
        return len(entries)

    def export_csv(self, list_name: str) -> str:
        """A list (of the store or the configuration file) as CSV with a `plate,label` header."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["plate", "label"])
        for entry in self.watch_entries(list_name):
            writer.writerow([entry.plate, entry.label or ""])
        return out.getvalue()
