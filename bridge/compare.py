"""`plate-bridge compare`: replay frames through the offline and the paid reader, so a user decides on
their own footage whether local first may answer for them.

Each frame is read once per reader: answers go to a cache file (one JSON line per frame and reader,
keyed by the frame's digest), so a run that stops is resumed where it stopped and a second run makes
no call at all. The report: how often the two readers agree, the paid calls local first would save
at each `precision` (and how many of those answers the paid reader disagrees with), and every
disagreement with its plate crop, as CSV and a small static HTML page.

Frames come from a `FrameSource`: a folder of JPEG/PNG files today; the history store's frames plug
in through the same protocol when it exists (`frames_from(...)` is the one place that chooses).
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

REPORTED_PRECISIONS = (0.9, 0.95, 0.98, 0.99)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
READERS = ("local", "paid")


@dataclass(frozen=True)
class Frame:
    """One frame to replay: a name to show, its bytes, and its digest (the cache's key)."""

    name: str
    image: bytes

    @property
    def digest(self) -> str:
        import hashlib

        return hashlib.blake2b(self.image, digest_size=16).hexdigest()


class FrameSource(Protocol):
    """Where replayed frames come from (a folder; the history store's frames when it exists)."""

    def frames(self) -> Iterator[Frame]: ...


@dataclass(frozen=True)
class FolderFrames:
    """Every JPEG and PNG file in a folder (and its subfolders), in name order."""

    folder: Path

    def frames(self) -> Iterator[Frame]:
        for path in sorted(self.folder.rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                yield Frame(str(path.relative_to(self.folder)), path.read_bytes())


def frames_from(source: str) -> FrameSource:
    """The frames `source` names: a folder. (The history store, once the bridge has one, answers
    here for a `history:` source; nothing else needs to change.)"""
    path = Path(source)
    if not path.is_dir():
        raise ValueError(f"{source}: not a folder of frames")
    return FolderFrames(path)


class AnswerCache:
    """Answers by (frame digest, reader), kept in a JSON-lines file that only grows: each answer is
    written (and flushed) as soon as it is read, so an interrupted run loses at most one read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._answers: dict[tuple[str, str], dict[str, Any]] = {}
        if path.exists():
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                try:
                    entry = json.loads(line)
                    self._answers[(entry["digest"], entry["reader"])] = entry["answer"]
                except (ValueError, KeyError, TypeError):
                    # A line cut short by an interrupted run: read that frame again.
                    print(f"plate-bridge: {path}:{number}: not a cached answer, ignored", file=sys.stderr)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def get(self, digest: str, reader: str) -> dict[str, Any] | None:
        return self._answers.get((digest, reader))

    def put(self, digest: str, reader: str, answer: dict[str, Any]) -> None:
        self._answers[(digest, reader)] = answer
        self._file.write(json.dumps({"digest": digest, "reader": reader, "answer": answer}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _top(answer: Mapping[str, Any]) -> tuple[str | None, float | None, Mapping[str, Any] | None]:
    results = answer.get("results") or []
    if not results:
        return None, None, None
    first = results[0]
    plate = "".join(str(first.get("plate") or "").split()).replace("-", "").upper() or None
    score = first.get("score")
    return plate, float(score) if isinstance(score, int | float) else None, first


@dataclass
class Compared:
    frame: str
    digest: str
    local: dict[str, Any]
    paid: dict[str, Any]
    accepted_at: dict[str, bool]

    @property
    def local_plate(self) -> str | None:
        return _top(self.local)[0]

    @property
    def paid_plate(self) -> str | None:
        return _top(self.paid)[0]

    @property
    def agree(self) -> bool:
        return self.local_plate == self.paid_plate


def compare(
    source: FrameSource,
    *,
    local_read: Any,
    paid_read: Any,
    cache: AnswerCache,
    judge: Any,
    precisions: Sequence[float] = REPORTED_PRECISIONS,
) -> list[Compared]:
    """Every frame through both readers (cached answers first); `judge(answer, precision)` says
    whether local first would have accepted the offline answer at that precision."""
    compared = []
    for frame in source.frames():
        digest = frame.digest
        answers = {}
        for name, read in (("local", local_read), ("paid", paid_read)):
            answer = cache.get(digest, name)
            if answer is None:
                answer = read(frame.image)
                cache.put(digest, name, answer)
            answers[name] = answer
        accepted = {f"{p:g}": judge(answers["local"], p) for p in precisions}
        compared.append(Compared(frame.name, digest, answers["local"], answers["paid"], accepted))
    return compared


def summary(
    compared: Sequence[Compared], precisions: Sequence[float] = REPORTED_PRECISIONS
) -> dict[str, Any]:
    """Agreement, and per precision the calls local first would save and how many of those answers
    the paid reader disagrees with."""
    at = {}
    for precision in precisions:
        key = f"{precision:g}"
        accepted = [c for c in compared if c.accepted_at[key]]
        at[key] = {
            "calls_saved": len(accepted),
            "calls_saved_share": round(len(accepted) / len(compared), 3) if compared else 0.0,
            "disagreeing": sum(not c.agree for c in accepted),
        }
    return {
        "frames": len(compared),
        "agree": sum(c.agree for c in compared),
        "disagree": sum(not c.agree for c in compared),
        "at": at,
    }


def _crop(image: bytes, result: Mapping[str, Any] | None) -> bytes | None:
    """The plate's box (with a margin) as PNG, or None when there is no box or no picture."""
    box = (result or {}).get("box")
    if not isinstance(box, Mapping):
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(image)) as picture:
            x0, y0, x1, y1 = (int(box[key]) for key in ("xmin", "ymin", "xmax", "ymax"))
            margin = max(4, (y1 - y0) // 2)
            crop = picture.crop((max(0, x0 - margin), max(0, y0 - margin), x1 + margin, y1 + margin))
            out = io.BytesIO()
            crop.convert("RGB").save(out, "PNG")
            return out.getvalue()
    except (KeyError, TypeError, ValueError, OSError, UnidentifiedImageError):
        return None


def write_report(
    compared: Sequence[Compared], images: Mapping[str, bytes], out: Path, precisions: Sequence[float]
) -> dict[str, Any]:
    """summary.json, disagreements.csv, crops/ and index.html in `out`; returns the summary."""
    document = summary(compared, precisions)
    crops = out / "crops"
    crops.mkdir(parents=True, exist_ok=True)
    rows = []
    for item in compared:
        if item.agree:
            continue
        local_plate, local_score, local_result = _top(item.local)
        paid_plate, paid_score, paid_result = _top(item.paid)
        crop = _crop(images.get(item.digest, b""), paid_result or local_result)
        crop_name = ""
        if crop is not None:
            crop_name = f"crops/{item.digest}.png"
            (out / crop_name).write_bytes(crop)
        accepted = [p for p, yes in item.accepted_at.items() if yes]
        rows.append(
            {
                "frame": item.frame,
                "digest": item.digest,
                "local_plate": local_plate or "",
                "local_score": "" if local_score is None else local_score,
                "paid_plate": paid_plate or "",
                "paid_score": "" if paid_score is None else paid_score,
                "accepted_offline_at": " ".join(accepted),
                "crop": crop_name,
            }
        )
    fields = [
        "frame",
        "digest",
        "local_plate",
        "local_score",
        "paid_plate",
        "paid_score",
        "accepted_offline_at",
        "crop",
    ]
    with (out / "disagreements.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    (out / "index.html").write_text(_html(document, rows), encoding="utf-8")
    document["disagreements"] = rows
    return document


def _html(document: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    e = html.escape
    saved = "".join(
        f"<tr><td>{e(p)}</td><td>{v['calls_saved']} ({100 * v['calls_saved_share']:.0f} %)</td>"
        f"<td>{v['disagreeing']}</td></tr>"
        for p, v in document["at"].items()
    )
    lines = "".join(
        "<tr>"
        + "".join(
            f"<td>{e(str(row[key]))}</td>"
            for key in (
                "frame",
                "local_plate",
                "local_score",
                "paid_plate",
                "paid_score",
                "accepted_offline_at",
            )
        )
        + (f'<td><img src="{e(row["crop"])}" alt="plate crop"></td>' if row["crop"] else "<td></td>")
        + "</tr>"
        for row in rows
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>plate-bridge compare</title>'
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;border-bottom:1px solid #ddd}</style>"
        "</head><body><h1>Offline reader against the paid reader</h1>"
        f"<p>{document['frames']} frames: the readers agree on {document['agree']}, "
        f"disagree on {document['disagree']}.</p>"
        "<h2>Calls local first would save</h2><table><tr><th>precision</th><th>calls saved</th>"
        f"<th>of those, the paid reader disagrees</th></tr>{saved}</table>"
        "<h2>Disagreements</h2><table><tr><th>frame</th><th>offline</th><th>score</th><th>paid</th>"
        f"<th>score</th><th>accepted offline at</th><th>crop</th></tr>{lines}</table></body></html>\n"
    )


def add_arguments(parser: Any) -> None:
    """`plate-bridge compare`'s options (registered by bridge/cli/compare.py)."""
    parser.add_argument("frames", metavar="FOLDER", help="a folder of JPEG/PNG frames (searched recursively)")
    parser.add_argument("--url", help="the paid reader: the cloud (default with a token) or an SDK URL")
    parser.add_argument("--token", help="API token (default: $PLATE_RECOGNIZER_TOKEN)")
    parser.add_argument(
        "--regions", action="append", default=[], metavar="CODE", help="region hints, repeatable"
    )
    parser.add_argument("--out", default="compare-report", help="folder for the report and the cache")
    parser.add_argument("--cache", help="answers cache (default: OUT/answers.jsonl); a run resumes from it")
    parser.add_argument("--calibration", help="a calibration from `evaluate --calibrate` (default: shipped)")
    parser.add_argument(
        "--max-calls-per-second", type=float, default=1.0, help="paid reader's rate limit (free plan: 1)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: Any) -> int:
    """`plate-bridge compare`: returns the exit code."""
    from bridge.config import TOKEN_ENV, ReaderConfig
    from bridge.core.errors import ConfigError
    from bridge.core.regions import normalize_regions
    from bridge.reader.calibration import load_calibration
    from bridge.reader.cascade import LocalFirst
    from bridge.reader.ratelimit import CallLimiter
    from bridge.readers import build_reader

    try:
        source = frames_from(args.frames)
        regions = normalize_regions(args.regions)
        calibration = load_calibration(Path(args.calibration) if args.calibration else None)
        settings = ReaderConfig(url=args.url, token=args.token or os.environ.get(TOKEN_ENV) or None)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if settings.is_local:
        raise ConfigError("compare needs a paid reader: --url (an SDK or the cloud) or a token")
    paid = build_reader(settings, validate=True)
    local = build_reader(ReaderConfig(url="local"), validate=True)
    limiter = CallLimiter(args.max_calls_per_second)
    local_first = LocalFirst(local, calibration)
    out = Path(args.out)
    cache = AnswerCache(Path(args.cache) if args.cache else out / "answers.jsonl")

    def paid_read(image: bytes) -> dict[str, Any]:
        with limiter.slot():
            return paid.read(image, regions=regions)

    def judge(answer: dict[str, Any], precision: float) -> bool:
        return local_first.judge(answer, regions=regions, precision=precision).accepted

    try:
        compared = compare(
            source,
            local_read=lambda image: local.read(image, regions=regions),
            paid_read=paid_read,
            cache=cache,
            judge=judge,
        )
    finally:
        cache.close()
        close = getattr(paid, "close", None)
        if close is not None:
            close()
    # Only the disagreeing frames are kept, for their crops: read again, not held through the run.
    disagreeing = {item.digest for item in compared if not item.agree}
    images = {frame.digest: frame.image for frame in source.frames() if frame.digest in disagreeing}
    document = write_report(compared, images, out, REPORTED_PRECISIONS)
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(
            f"{document['frames']} frames: agree {document['agree']}, disagree {document['disagree']};"
            f" report in {out / 'index.html'}"
        )
        for precision, row in document["at"].items():
            print(
                f"  precision {precision}: {row['calls_saved']} calls saved"
                f" ({100 * row['calls_saved_share']:.0f} %), {row['disagreeing']} of them disagreeing"
            )
    return 0
