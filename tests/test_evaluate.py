"""`evaluate()` beside a baseline: per-set figures for both, latency ratios, the table and the JSON."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bridge import cli
from bridge.evaluate import Reader, evaluate


def _labelled_set(tmp_path: Path) -> Path:
    """Three images (two US, one EU) whose bytes name them, and their labels."""
    for folder, name in [("us", "a.jpg"), ("us", "b.jpg"), ("eu", "c.jpg")]:
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / name).write_bytes(name.encode())
    labels = tmp_path / "labels.tsv"
    labels.write_text("image\tplate\nus/a.jpg\tABC123\nus/b.jpg\tXYZ789\neu/c.jpg\tRK026AJ\n")
    return labels


def _reader(answers: dict[bytes, str], clock: Iterator[float], log: list[str], name: str) -> Reader:
    """Answers one plate per image and advances a fake clock by the next latency (ms) of `clock`."""

    def read(image: bytes, regions: Sequence[str]) -> dict[str, Any]:
        log.append(f"{name}:{image.decode()}")
        _FakeClock.now += next(clock) / 1000
        return {"results": [{"plate": answers[image], "candidates": [{"plate": answers[image]}]}]}

    return read


class _FakeClock:
    now = 0.0

    @classmethod
    def perf_counter(cls) -> float:
        return cls.now


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    import bridge.evaluate

    monkeypatch.setattr(bridge.evaluate.time, "perf_counter", _FakeClock.perf_counter)


def test_baseline_reads_the_same_images_in_alternating_order(tmp_path: Path, fake_clock: None) -> None:
    log: list[str] = []
    reader = _reader(
        {b"a.jpg": "abc123", b"b.jpg": "xyz789", b"c.jpg": "rk026aj"}, itertools.repeat(100), log, "r"
    )
    baseline = _reader(
        {b"a.jpg": "abc123", b"b.jpg": "xyz780", b"c.jpg": "nope"}, itertools.repeat(200), log, "b"
    )

    report = evaluate(_labelled_set(tmp_path), reader, baseline=baseline)

    assert log == ["r:a.jpg", "b:a.jpg", "b:b.jpg", "r:b.jpg", "r:c.jpg", "b:c.jpg"]
    reader_total, baseline_total = report.sets()[-1], report.baseline_sets()[-1]
    assert (reader_total.exact, baseline_total.exact) == (3, 1)
    assert [summary.name for summary in report.baseline_sets()] == ["us", "eu", "total"]
    assert report.latency_ratios() == pytest.approx({"p95_over_median": 1.0, "median_over_baseline": 0.5})


def test_the_table_and_json_show_both_readers_and_the_ratios(tmp_path: Path, fake_clock: None) -> None:
    log: list[str] = []
    reader = _reader(
        {b"a.jpg": "abc123", b"b.jpg": "xyz789", b"c.jpg": "rk026aj"}, iter([100, 300, 200]), log, "r"
    )
    baseline = _reader({b"a.jpg": "abc123", b"b.jpg": "no", b"c.jpg": "no"}, itertools.repeat(400), log, "b")

    report = evaluate(_labelled_set(tmp_path), reader, baseline=baseline)

    table = report.as_table()
    assert "| reader | total | 3 | 3 | 100.0 | 100.0 | 200 | 300 |" in table
    assert "| baseline | total | 3 | 1 | 33.3 | 33.3 | 400 | 400 |" in table
    assert "median latency: 0.50x the baseline's" in table
    assert "p95 latency: 1.50x the median" in table
    document = json.loads(json.dumps(report.as_dict()))
    assert document["latency"] == {"p95_over_median": 1.5, "median_over_baseline": 0.5}
    assert document["baseline"]["sets"][-1]["exact"] == 1
    assert {miss["image"] for miss in document["baseline"]["misses"]} == {"us/b.jpg", "eu/c.jpg"}
    assert document["misses"] == []


def test_without_a_baseline_the_report_has_no_baseline(tmp_path: Path, fake_clock: None) -> None:
    log: list[str] = []
    reader = _reader({b"a.jpg": "abc123", b"b.jpg": "xyz789", b"c.jpg": "x"}, itertools.repeat(50), log, "r")

    report = evaluate(_labelled_set(tmp_path), reader)

    assert "baseline" not in report.as_dict()
    assert "baseline" not in report.as_table()
    assert report.latency_ratios() == pytest.approx({"p95_over_median": 1.0})
    assert report.as_table().splitlines()[0].startswith("| set | images | top-1")


def test_the_cli_accepts_baseline() -> None:
    args = cli.build_parser().parse_args(["evaluate", "labels.tsv", "--baseline"])

    assert args.baseline is True
    assert cli.build_parser().parse_args(["evaluate", "labels.tsv"]).baseline is False


def test_the_naive_baseline_reads_a_synthetic_plate() -> None:
    pytest.importorskip("rapidocr", reason="the local engine's models are not installed")
    import cv2
    import numpy as np

    from bridge.evaluate import naive_baseline

    picture = np.full((240, 480, 3), 255, np.uint8)
    cv2.putText(picture, "ABC 1234", (40, 140), cv2.FONT_HERSHEY_SIMPLEX, 2.2, (0, 0, 0), 6)
    cv2.putText(picture, "road", (40, 220), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (0, 0, 0), 3)
    encoded, png = cv2.imencode(".png", picture)
    assert encoded

    response = naive_baseline()(png.tobytes(), ())

    # The line with digits is the plate; a word without one is not.
    assert [result["plate"] for result in response["results"]] == ["abc1234"]


def test_each_miss_says_whether_ranking_recognition_or_detection_lost_it(
    tmp_path: Path, fake_clock: None
) -> None:
    """The labelled box tells a plate read nowhere near it (not found) from one read wrong (misread)."""
    for name in ("ranked.jpg", "misread.jpg", "lost.jpg", "right.jpg", "nobox.jpg"):
        (tmp_path / name).write_bytes(name.encode())
    labels = tmp_path / "labels.tsv"
    labels.write_text(
        "set\timage\tplate\tx\ty\tw\th\n"
        "us\tranked.jpg\tABC123\t100\t100\t80\t40\n"
        "us\tmisread.jpg\tABC123\t100\t100\t80\t40\n"
        "us\tlost.jpg\tABC123\t100\t100\t80\t40\n"
        "us\tright.jpg\tABC123\t100\t100\t80\t40\n"
        "us\tnobox.jpg\tABC123\t\t\t\t\n"
    )
    on_plate = {"xmin": 105, "ymin": 110, "xmax": 175, "ymax": 135}
    elsewhere = {"xmin": 400, "ymin": 10, "xmax": 470, "ymax": 30}
    answers: dict[bytes, list[dict[str, Any]]] = {
        # The plate is the first result's second candidate: the reader had it, the ranking lost it.
        b"ranked.jpg": [{"plate": "abc128", "box": on_plate, "candidates": [{"plate": "abc123"}]}],
        b"misread.jpg": [
            {"plate": "taxi12", "box": elsewhere, "candidates": []},
            {"plate": "abc12", "box": on_plate, "candidates": [{"plate": "abc12"}]},
        ],
        b"lost.jpg": [{"plate": "taxi12", "box": elsewhere, "candidates": []}],
        b"right.jpg": [{"plate": "abc123", "box": on_plate, "candidates": []}],
        b"nobox.jpg": [{"plate": "xyz", "box": on_plate, "candidates": []}],
    }

    def read(image: bytes, regions: Sequence[str]) -> dict[str, Any]:
        return {"results": answers[image]}

    report = evaluate(labels, read)

    causes = {miss["image"]: miss["cause"] for miss in report.as_dict()["misses"]}
    assert causes == {
        "ranked.jpg": "ranked_below",
        "misread.jpg": "misread",
        "lost.jpg": "not_found",
        "nobox.jpg": "not_read",
    }
    total = report.sets()[-1]
    assert total.miss_causes == {"ranked_below": 1, "misread": 1, "not_found": 1, "not_read": 1}
    assert "misses by cause: 1 ranked below, 1 misread, 1 not found, 1 not read" in report.as_table()
