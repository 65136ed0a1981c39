"""The offline reader: `LocalEngine` reads every plate of a frame with the PP-OCR models, in passes.

A first look over the whole frame at a small scale (`detection`); where it reads nothing with
confidence, plate-shaped regions found from vertical edges and a closer look in a few windows around
what the first look saw. Each pass recognizes its lines (`recognition`), looks for what the plate shows
of its country (`cues`) and ranks the candidates as plates (`ranking`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime

from bridge.core import plate_patterns
from bridge.core.errors import PayloadNotImage
from bridge.core.plates import NEAR_MISS_COST, plate_distance
from bridge.engines.local.cues import above_or_below, band_edge, looks_like_date_or_time, red_stripes, trimmed
from bridge.engines.local.detection import (
    DETECTION_SCALE,
    NAIVE_DETECTION_SCALE,
    TextBox,
    crop,
    detect,
    edge_regions,
    joined_neighbours,
    not_covered,
    windows,
)
from bridge.engines.local.models import load_models
from bridge.engines.local.ranking import (
    MIN_RESULT_SCORE,
    Reading,
    not_covered_readings,
    rank_candidates,
    result,
    suppress_overlaps,
)
from bridge.engines.local.recognition import Character, Recognizer, alphanumerics
from bridge.imaging.images import MAX_IMAGE_PIXELS, check_pixels

# A pass that reads a plate this sure ends the search: no edge regions, no closer look.
CONFIDENT_SCORE = 0.6
# Small or faint plates get a closer look (CLOSER_ZOOM times their pixels) in at most MAX_CLOSER_LOOKS
# windows around what the first look saw.
CLOSER_ZOOM = 2
MAX_CLOSER_LOOKS = 2
CLOSER_MAX_HEIGHT = 32  # lines taller than this are not small: a closer look would not read them better
CLOSER_MAX_SIDE = 768  # the long side of a closer look: a window around a whole plate is large
MAX_LINE_ASPECT = 12  # width over height: a longer line is a sentence or banner, not a plate


class LocalEngine:
    """Reads plates offline; answers in the shape of Plate Recognizer's `POST /v1/plate-reader/`."""

    def __init__(
        self,
        *,
        model_dir: Path | None = None,
        threads: int | None = None,
        max_pixels: int = MAX_IMAGE_PIXELS,
        plate_characters_only: bool = True,
    ) -> None:
        """`plate_characters_only=False` runs the recognizer as shipped, over every character it knows
        (the naive baseline does); the readings are the same, only slower."""
        self._model_dir = model_dir
        self._plate_characters_only = plate_characters_only
        self._threads = threads
        self.max_pixels = max_pixels
        self._lock = threading.Lock()
        self._detector: onnxruntime.InferenceSession | None = None
        self._recognizer: Recognizer | None = None

    def load(self) -> None:
        """Load both models once; later calls (from any thread) return at once."""
        if self._recognizer is not None:
            return
        with self._lock:
            if self._recognizer is not None:
                return
            self._detector, self._recognizer = load_models(
                self._model_dir, threads=self._threads, plate_characters_only=self._plate_characters_only
            )

    def read(
        self,
        image: bytes,
        *,
        regions: Sequence[str] = (),
        camera_id: str | None = None,
        timestamp: str | None = None,
        mmc: bool = False,
        config: Mapping[str, Any] | None = None,
        filename: str | None = None,
    ) -> dict[str, Any]:
        """Read every plate in `image` (JPEG or PNG bytes); `mmc` and `config` are accepted and ignored."""
        started = time.perf_counter()
        picture = decode(image, self.max_pixels)
        self.load()
        readings = self._read_plates(picture, tuple(region.lower() for region in regions))
        height, width = picture.shape[:2]
        return {
            "processing_time": round((time.perf_counter() - started) * 1000, 3),
            "results": [result(reading, width, height) for reading in readings],
            "filename": filename,
            "version": 1,
            "camera_id": camera_id,
            "timestamp": timestamp or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "image_width": width,
            "image_height": height,
        }

    def read_text(self, image: bytes) -> list[tuple[str, float]]:
        """Every text line of `image` with its mean character confidence, plate-unaware.

        The naive pass `plate-bridge evaluate --baseline` measures the engine against: one detection of the
        whole frame at the detector's own scale, every line recognized, no layouts, no second scale.
        """
        picture = decode(image, self.max_pixels)
        self.load()
        boxes, _ = self._detect(picture, *NAIVE_DETECTION_SCALE)
        lines = self._recognize([crop(picture, box) for box in boxes])
        return [
            (text, float(np.mean([c.best()[1] for c in characters])) if characters else 0.0)
            for characters, text in lines
        ]

    # -- the pipeline -----------------------------------------------------------------------------------

    def _read_plates(self, picture: np.ndarray, regions: tuple[str, ...]) -> list[Reading]:
        boxes, proposals = self._detect(picture, *DETECTION_SCALE)
        state_names: list[TextBox] = []
        readings = self._read_lines(picture, boxes, regions, state_names)
        if not any(reading.score >= CONFIDENT_SCORE for reading in readings):
            # The detector misses some plates at this scale (dark, faint, busy ones) that a plate localiser
            # finds: plate-shaped regions dense in vertical edges where it saw no text. Read as they are
            # (rough crops), they rank where to look closer; their own readings only stand where nothing
            # better was read.
            edge_boxes = not_covered(edge_regions(picture), boxes)
            edge_readings = self._read_lines(picture, edge_boxes, regions, state_names)
            edge_readings.sort(key=lambda reading: reading.score, reverse=True)
            # Small or faint plates: look again, closer, but only around what the first look found (plate
            # regions, best read first, then those read as nothing; small lines read without confidence;
            # faint plate-shaped text), never the whole frame at a larger scale.
            targets = [reading.box for reading in edge_readings]
            targets += [box for box in edge_boxes if not any(box is reading.box for reading in edge_readings)]
            targets += [reading.box for reading in readings if reading.box.height < CLOSER_MAX_HEIGHT]
            targets += proposals
            for x0, y0, x1, y1 in windows(picture, targets)[:MAX_CLOSER_LOOKS]:
                window = picture[y0:y1, x0:x1]  # a view: the frame is not copied
                height, width = window.shape[:2]
                found, _ = self._detect(
                    window,
                    CLOSER_ZOOM * min(height, width),
                    min(CLOSER_ZOOM * max(height, width), CLOSER_MAX_SIDE),
                )
                for box in found:
                    box.corners += np.array([x0, y0], np.float32)
                readings += self._read_lines(picture, found, regions, state_names)
                if any(reading.score >= CONFIDENT_SCORE for reading in readings):
                    break
            readings += not_covered_readings(edge_readings, readings)
        readings.sort(key=lambda reading: reading.score, reverse=True)
        return suppress_overlaps(readings)

    def _read_lines(
        self,
        picture: np.ndarray,
        boxes: list[TextBox],
        regions: tuple[str, ...],
        state_names: list[TextBox],
    ) -> list[Reading]:
        """Recognize the lines in `boxes` (and pairs of them that may be one plate), rank each as a plate.

        `state_names` holds the lines of the frame read so far as a US state's name; lines read here as one
        are added to it, so a plate read in a later pass still sees the name printed above it.
        """
        boxes = [box for box in boxes + joined_neighbours(boxes) if box.width <= MAX_LINE_ASPECT * box.height]
        # The EU band's country letter may be read into the line (FFG482KT): such a line is also read from
        # the band's edge, and that reading replaces it when it is the same line less its first character.
        band_edges = [band_edge(picture, box) for box in boxes]
        trims = [
            (index, trimmed(box, edge))
            for index, (box, edge) in enumerate(zip(boxes, band_edges, strict=True))
            if edge is not None
        ]
        trims = [(index, trim) for index, trim in trims if trim is not boxes[index]]
        lines = self._recognize([crop(picture, box) for box in boxes + [trim for _, trim in trims]])
        for (index, trim), trim_line in zip(trims, lines[len(boxes) :], strict=True):
            whole, rest = alphanumerics(lines[index][0]), alphanumerics(trim_line[0])
            # (The last character is left out of the comparison: the box's edge may read as a stray one.)
            if (
                len(whole) > len(rest) > 2
                and plate_distance(whole[1 : len(rest)], rest[:-1]) <= NEAR_MISS_COST
            ):
                boxes[index], lines[index] = trim, trim_line
        lines = lines[: len(boxes)]
        state_names += [
            box for box, (_, text) in zip(boxes, lines, strict=True) if plate_patterns.names_us_state(text)
        ]
        readings = []
        for box, edge, (characters, text) in zip(boxes, band_edges, lines, strict=True):
            if looks_like_date_or_time(text) or any(box is name for name in state_names):
                continue  # the time stamp cameras print over the picture; a state's name
            cue = None
            if edge is not None:
                striped = red_stripes(picture, box, edge)
                cue = plate_patterns.EU_BAND_STRIPED if striped else plate_patterns.EU_BAND
            if cue is None and any(above_or_below(name, box) for name in state_names):
                cue = plate_patterns.US_STATE
            reading = rank_candidates(box, characters, regions, cue)
            if reading is not None and reading.score >= MIN_RESULT_SCORE:
                readings.append(reading)
        return readings

    def _detect(
        self, picture: np.ndarray, short_side: int, long_side: int
    ) -> tuple[list[TextBox], list[TextBox]]:
        assert self._detector is not None
        return detect(self._detector, picture, short_side, long_side)

    def _recognize(self, crops: list[np.ndarray]) -> list[tuple[list[Character], str]]:
        assert self._recognizer is not None
        return self._recognizer.recognize(crops)


def decode(image: bytes, max_pixels: int) -> np.ndarray:
    if not isinstance(image, bytes | bytearray | memoryview) or len(image) == 0:
        raise PayloadNotImage("the payload is empty or not bytes")
    # The header's size, checked before OpenCV allocates the picture: its own cap (CV_IO_MAX_IMAGE_PIXELS,
    # 2^30) lets a 100 kB PNG claim 30000x30000 pixels and take 2.7 GB.
    check_pixels(bytes(image), max_pixels)
    picture = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
    if picture is None:
        raise PayloadNotImage("the payload is not a decodable image (JPEG or PNG expected)")
    return picture
