"""The generated demo images in examples/images/: present, valid, labelled, reproducible by their script."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bridge.imaging.images import JPEG_MAGIC, PNG_MAGIC

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
IMAGES = EXAMPLES / "images"
SCRIPT = EXAMPLES / "make_images.py"
LABELS = IMAGES / "labels.tsv"

# Plate formats per set, as the labels store them (upper case, no spaces or dashes).
FORMATS = {
    "gb": r"[A-Z]{2}[0-9]{2}[A-Z]{3}",
    "eu": r"[A-Z0-9]{5,8}",
    "us": r"[0-9][A-Z]{3}[0-9]{3}",
    "br": r"[A-Z]{3}[0-9][A-Z][0-9]{2}",
}


def read_labels(path: Path = LABELS) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


ROWS = read_labels()


def test_labels_header_and_plate_formats() -> None:
    assert LABELS.read_text(encoding="utf-8").splitlines()[0] == "set\timage\tplate"
    assert {row["set"] for row in ROWS} == set(FORMATS)
    for row in ROWS:
        assert re.fullmatch(FORMATS[row["set"]], row["plate"]), row


def test_labels_cover_six_jpegs_and_a_png() -> None:
    suffixes = [Path(row["image"]).suffix for row in ROWS]
    assert suffixes.count(".jpg") == 6
    assert suffixes.count(".png") == 1
    assert len({row["image"] for row in ROWS}) == len(ROWS)


def test_folder_holds_only_listed_files() -> None:
    # A stale image left behind by a renamed scene would be published by the demo but never labelled.
    listed = {row["image"] for row in ROWS} | {"labels.tsv", "README.md"}
    assert {p.name for p in IMAGES.iterdir()} == listed


def test_readme_names_the_script_and_license() -> None:
    text = (IMAGES / "README.md").read_text(encoding="utf-8")
    assert "make_images.py" in text
    assert "MIT" in text


@pytest.mark.parametrize("row", ROWS, ids=[row["image"] for row in ROWS])
def test_image_is_valid(row: dict[str, str]) -> None:
    path = LABELS.parent / row["image"]
    data = path.read_bytes()
    with Image.open(path) as img:
        img.load()
        fmt, size, mode = img.format, img.size, img.mode
    assert mode == "RGB"
    if path.suffix == ".jpg":
        assert data.startswith(JPEG_MAGIC)
        assert fmt == "JPEG"
        assert size == (1280, 720)
        assert 60_000 <= len(data) <= 150_000
    else:
        assert data.startswith(PNG_MAGIC)
        assert fmt == "PNG"
        assert size == (320, 240)
        assert len(data) <= 150_000


def generate(out: Path) -> dict[str, bytes]:
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], check=True, capture_output=True)
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def versions_line(files: dict[str, bytes]) -> str:
    """The README line naming the libraries whose versions decide the exact output bytes."""
    lines = files["README.md"].decode("utf-8").splitlines()
    return next(line for line in lines if "Pillow" in line)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """One run of the script into a temporary folder, shared by the two tests below (a run takes seconds)."""
    return generate(tmp_path_factory.mktemp("fresh"))


def test_script_is_deterministic(fresh: dict[str, bytes], tmp_path: Path) -> None:
    assert generate(tmp_path) == fresh


def test_script_reproduces_the_committed_files(fresh: dict[str, bytes]) -> None:
    committed = {p.name: p.read_bytes() for p in sorted(IMAGES.iterdir())}
    if versions_line(fresh) != versions_line(committed):
        # Other Pillow/FreeType/libjpeg builds rasterise and encode differently: the bytes cannot match.
        pytest.skip(f"committed files were made with other libraries ({versions_line(committed)})")
    assert fresh.keys() == committed.keys()
    changed = [name for name in fresh if fresh[name] != committed[name]]
    assert not changed, f"rerun `python examples/make_images.py`: {changed} differ from its output"
