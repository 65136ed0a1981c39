"""The offline engine (`reader.url: local`) on real photos, and `evaluate()` over a labelled set."""

from __future__ import annotations

import csv
import importlib
import re
import resource
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "rapidocr", reason="the local engine's models are not installed: pip install 'plate-bridge[local]'"
)

from bridge.core import plate_patterns
from bridge.core.errors import PayloadNotImage, PayloadTooLarge
from bridge.engines.local import LocalEngine, cues, detection, models, ranking, recognition
from bridge.evaluate import evaluate, normalize_plate
from tests import images
from tests.emulator import DEFAULT_SHARED_DIR

SHARED = DEFAULT_SHARED_DIR
PLATES = SHARED / "data" / "plates"
needs_photos = pytest.mark.skipif(
    not (PLATES / "labels.tsv").is_file(), reason=f"the shared photos {PLATES} are not there (read in place)"
)

# Clear photos of each set, read with the hint a user of that country would give.
SAMPLES = [("br/HPM9362.jpg", ("br",)), ("us/car1.jpg", ("us",)), ("eu/test_001.jpg", ("it",))]
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


@pytest.fixture(scope="module")
def engine() -> LocalEngine:
    return LocalEngine()


@pytest.fixture(scope="module")
def labels() -> dict[str, str]:
    with (PLATES / "labels.tsv").open(newline="") as handle:
        return {row["image"]: row["plate"] for row in csv.DictReader(handle, delimiter="\t")}


def _photo(name: str) -> bytes:
    return (PLATES / name).read_bytes()


@needs_photos
@pytest.mark.parametrize(("name", "regions"), SAMPLES)
def test_reads_the_plate_of_a_real_photo(
    engine: LocalEngine, labels: dict[str, str], name: str, regions: tuple[str, ...]
) -> None:
    response = engine.read(_photo(name), regions=regions)

    assert response["results"], f"no plate read in {name}"
    assert response["results"][0]["plate"] == labels[name].lower()


@needs_photos
def test_response_has_the_plate_reader_shape(engine: LocalEngine) -> None:
    response = engine.read(
        _photo("br/HPM9362.jpg"), regions=["br"], camera_id="gate", filename="HPM9362.jpg", mmc=True
    )

    schemas = pytest.importorskip("bridge.core.schemas")
    schemas.validate("plate-reader-response", response)
    assert response["version"] == 1
    assert response["camera_id"] == "gate"
    assert response["filename"] == "HPM9362.jpg"
    assert ISO_UTC.match(response["timestamp"])
    assert (response["image_width"], response["image_height"]) == (1280, 960)
    assert response["processing_time"] > 0
    best = response["results"][0]
    assert best["region"]["code"] == "br"
    assert best["candidates"][0] == {"plate": best["plate"], "score": best["score"]}
    assert 1 <= len(best["candidates"]) <= 5
    box = best["box"]
    assert all(isinstance(box[key], int) and box[key] >= 0 for key in ("xmin", "ymin", "xmax", "ymax"))
    assert box["xmin"] < box["xmax"] < 1280
    assert box["ymin"] < box["ymax"] < 960
    assert best["vehicle"]["type"] == "Unknown"
    assert all(0 <= result["score"] <= 1 and 0 <= result["dscore"] <= 1 for result in response["results"])
    scores = [result["score"] for result in response["results"]]
    assert scores == sorted(scores, reverse=True)


@needs_photos
def test_timestamp_given_is_kept(engine: LocalEngine) -> None:
    response = engine.read(_photo("us/car1.jpg"), timestamp="2024-05-01T10:00:00Z")

    assert response["timestamp"] == "2024-05-01T10:00:00Z"


def test_a_blank_picture_has_no_plates(engine: LocalEngine) -> None:
    import cv2
    import numpy as np

    encoded, png = cv2.imencode(".png", np.full((120, 200, 3), 255, np.uint8))
    assert encoded
    response = engine.read(png.tobytes())

    assert response["results"] == []
    assert (response["image_width"], response["image_height"]) == (200, 120)


@pytest.mark.parametrize("payload", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n truncated"])
def test_bytes_that_are_not_an_image_are_refused(engine: LocalEngine, payload: bytes) -> None:
    with pytest.raises(PayloadNotImage):
        engine.read(payload)


def test_an_image_claiming_too_many_pixels_is_refused_before_decoding(engine: LocalEngine) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for bomb in (images.png_bomb(30000, 30000), images.jpeg_claiming(65000, 60000)):
        with pytest.raises(PayloadTooLarge, match=r"more than the limit of 50,000,000 pixels"):
            engine.read(bomb)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before < 200
    # The cap is the engine's setting: a 64x48 picture over a 3,000-pixel cap is refused too.
    with pytest.raises(PayloadTooLarge, match=r"64x48 pixels \(3,072\), more than the limit of 3,000"):
        LocalEngine(max_pixels=3000).read(images.jpeg(64, 48))


@needs_photos
def test_threads_share_one_engine_and_load_it_once(labels: dict[str, str]) -> None:
    fresh = LocalEngine(threads=1)
    names = [name for name, _ in SAMPLES] + ["br/HPM9362.jpg"]
    plates: dict[int, str] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(len(names))

    def read(index: int, name: str) -> None:
        try:
            start.wait()
            results = fresh.read(_photo(name), regions=["br", "us", "it"])["results"]
            plates[index] = results[0]["plate"] if results else ""
        except BaseException as exc:  # collected for the main thread's assertion
            failures.append(exc)

    threads = [threading.Thread(target=read, args=(i, name)) for i, name in enumerate(names)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not failures
    assert [plates[i] for i in range(len(names))] == [labels[name].lower() for name in names]


def test_a_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    monkeypatch.delitem(sys.modules, "bridge.engines.local")

    with pytest.raises(ImportError, match=re.escape("pip install 'plate-bridge[local]'")):
        importlib.import_module("bridge.engines.local")


def test_missing_models_name_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "MODEL_PACKAGE", "no_such_model_package")

    with pytest.raises(ImportError, match=re.escape("pip install 'plate-bridge[local]'")):
        LocalEngine().load()


def test_overlay_dates_and_times_are_not_plates() -> None:
    for overlay in ("2014-04-28 11:08:05", "2014-05", "28/04/2014", "07:43:50", "2014:05-12"):
        assert cues.DATE_OR_TIME.search(overlay), overlay
    for plate in ("1T4:3213", "ABC-1234", "AB-123-CD", "RK 026 AJ"):
        assert not cues.DATE_OR_TIME.search(plate), plate


def test_layouts_pick_the_region() -> None:
    assert plate_patterns.matching_regions("ABC1D23", ["us", "br"]) == ["br"]
    assert plate_patterns.matching_regions("RK026AJ", ["it", "fr", "br"]) == ["it", "fr"]
    assert plate_patterns.matching_regions("MAB1234", ["de"]) == ["de"]
    assert plate_patterns.base_region("br_sc") == "br"
    assert plate_patterns.layouts_for(["br", "br-sp"]) == ["LLLDLDD", "LLLDDDD"]


def test_layout_reads_digits_as_letters_where_the_layout_wants_letters() -> None:
    # A Mercosul line read as "A8C1D23": the second position is a B by layout, though 8 is the likelier glyph.
    def character(best: str, runner_up: str) -> recognition.Character:
        probabilities = [0.0] * len(recognition.ALPHANUMERICS)
        probabilities[recognition.ALPHANUMERICS.index(best)] = 0.6
        if runner_up != best:
            probabilities[recognition.ALPHANUMERICS.index(runner_up)] = 0.35
        import numpy as np

        return recognition.Character(np.array(probabilities, np.float32))

    line = [character(a, b) for a, b in zip("A8C1D23", "ABC1D23", strict=True)]
    box = detection.TextBox(__import__("numpy").zeros((4, 2), "float32"), 0.9)

    with_hint = ranking.rank_candidates(box, line, ("br",))
    without_hint = ranking.rank_candidates(box, line, ())

    assert with_hint is not None and with_hint.candidates[0][0] == "abc1d23"
    assert with_hint.region[0] == "br"
    # Without a hint every known layout may correct, and Mercosul is the one that fits.
    assert without_hint is not None and without_hint.candidates[0][0] == "abc1d23"
    assert "a8c1d23" in [text for text, _ in without_hint.candidates]


# -- evaluate() ---------------------------------------------------------------------------------------


def _fake_reader(answers: dict[bytes, list[list[str]]]) -> Any:
    def read(image: bytes, regions: Any) -> dict[str, Any]:
        results = [
            {"plate": plates[0], "candidates": [{"plate": p, "score": 0.5} for p in plates]}
            for plates in answers[image]
        ]
        return {"results": results}

    return read


def test_evaluate_counts_top1_top5_per_set_and_total(tmp_path: Path) -> None:
    for folder, name, content in [("us", "a.jpg", b"a"), ("us", "b.jpg", b"b"), ("eu", "c.jpg", b"c")]:
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / name).write_bytes(content)
    labels_path = tmp_path / "labels.tsv"
    labels_path.write_text("image\tplate\nus/a.jpg\tABC-123\nus/b.jpg\tXYZ 789\neu/c.jpg\tRK026AJ\n")
    read = _fake_reader({b"a": [["abc123"]], b"b": [["xyz780", "xyz789"]], b"c": [["nope"], ["other"]]})

    report = evaluate(labels_path, read)

    by_set = {summary.name: summary for summary in report.sets()}
    assert (by_set["us"].images, by_set["us"].exact, by_set["us"].top_k) == (2, 1, 2)
    assert (by_set["eu"].images, by_set["eu"].exact, by_set["eu"].top_k) == (1, 0, 0)
    assert (by_set["total"].images, by_set["total"].exact) == (3, 1)
    table = report.as_table()
    assert table.splitlines()[0].startswith("| set | images | top-1")
    assert "| total | 3 | 1 | 33.3 | 66.7 |" in table
    document = report.as_dict()
    assert [entry["set"] for entry in document["sets"]] == ["us", "eu", "total"]
    assert {miss["image"] for miss in document["misses"]} == {"us/b.jpg", "eu/c.jpg"}
    assert evaluate(labels_path, read, limit=1).sets()[-1].images == 1


def test_normalize_plate_ignores_case_spaces_and_dashes() -> None:
    assert normalize_plate(" ab-12 3c ") == "AB123C"


@needs_photos
def test_evaluate_runs_the_engine_on_real_photos(engine: LocalEngine, tmp_path: Path) -> None:
    rows = ["set\timage\tplate"]
    with (PLATES / "labels.tsv").open(newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["image"] == "br/HPM9362.jpg":
                (tmp_path / "br").mkdir()
                shutil.copy(PLATES / row["image"], tmp_path / row["image"])
                rows.append(f"{row['set']}\t{row['image']}\t{row['plate']}")
    (tmp_path / "labels.tsv").write_text("\n".join(rows) + "\n")

    report = evaluate(
        tmp_path / "labels.tsv", lambda image, regions: engine.read(image, regions=regions), ["br"]
    )

    total = report.sets()[-1]
    assert (total.images, total.exact, total.top_k) == (1, 1, 1)
    assert total.median_ms > 0
