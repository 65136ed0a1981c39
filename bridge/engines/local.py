"""Offline plate reading with the PP-OCR ONNX models that ship inside the `rapidocr` wheel."""

from __future__ import annotations

import importlib.util
import itertools
import logging
import math
import os
import re
import threading
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.core.errors import PayloadNotImage
from bridge.core.plates import NEAR_MISS_COST, plate_distance
from bridge.engines import plate_patterns
from bridge.imaging.images import MAX_IMAGE_PIXELS, check_pixels

try:
    import cv2
    import numpy as np
    import onnx
    import onnxruntime
    from onnx import numpy_helper
except ImportError as exc:  # pragma: no cover - depends on the installed extra
    raise ImportError(
        f"the local engine needs onnxruntime, onnx, OpenCV and the PP-OCR models ({exc.name} is missing):"
        " pip install 'plate-bridge[local]'"
    ) from exc

log = logging.getLogger(__name__)

# The package whose wheel carries the models; it is only located on disk, never imported, so none of its
# start-up code (or its model downloader) runs.
MODEL_PACKAGE = "rapidocr"
DETECTION_MODEL = "PP-OCRv6_det_small.onnx"
RECOGNITION_MODEL = "PP-OCRv6_rec_small.onnx"

ALPHANUMERICS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Reduced classes of the recognizer: 0 blank, 1..36 the alphanumerics, 37 anything else.
BLANK, OTHER = 0, len(ALPHANUMERICS) + 1
ZERO, LETTER_O = ALPHANUMERICS.index("0"), ALPHANUMERICS.index("O")
# Letters and digits plate fonts draw alike, both ways round, and the share of one's probability that
# counts for the other where a layout rules the one out.
LOOK_ALIKE_SHARE = 0.5
LOOK_ALIKES = tuple(
    pair
    for letter, digit in ("O0", "I1", "B8", "S5", "Z2", "G6")
    for pair in ((letter, digit), (digit, letter))
)

# Detection scale (short side, long side at most). Below the detector's own 736 (PP-OCR's default, which
# the naive baseline uses): half the time, and plates are large, clear text at it. Small or faint plates
# get a closer look (CLOSER_ZOOM times their pixels) in a few windows around what the first look saw.
DETECTION_SCALE = (480, 1024)
NAIVE_DETECTION_SCALE = (736, 1600)
CLOSER_ZOOM = 2
MAX_CLOSER_LOOKS = 2
CLOSER_MAX_HEIGHT = 32  # lines taller than this are not small: a closer look would not read them better
CLOSER_MAX_SIDE = 768  # the long side of a closer look: a window around a whole plate is large
PROPOSAL_THRESHOLD = 0.15  # a faint text response, worth a closer look when plate-shaped
CONFIDENT_SCORE = 0.6
PIXEL_THRESHOLD = 0.3  # DB text-map threshold, as PP-OCR uses it
BOX_THRESHOLD = 0.5  # mean text probability a box needs
UNCLIP_RATIO = 1.6  # DB boxes are shrunk text kernels; this grows them back
RECOGNITION_HEIGHT = 48
RECOGNITION_MIN_WIDTH = 160
BATCH_WIDTH_SPREAD = 1.5  # a batch's widest crop at most this times its narrowest: padding is work too
MAX_LINE_ASPECT = 12  # width over height: a longer line is a sentence or banner, not a plate
MAX_TEXT_BOXES = 32  # boxes read per frame; a street scene with more is rare and slow
CHARACTER_ALTERNATIVES = 3  # alternatives per character explored for candidates
MAX_CANDIDATES = 5
MAX_DROPPED_CHARACTERS = 2
MIN_RESULT_SCORE = 0.2
# A reading of 4 characters or fewer is rarely a whole plate (a fleet number, a badge, a plate's half):
# it counts this much less. One that fits no published layout, with no hint, counts NO_LAYOUT_PRIOR.
SHORT_PLATE_PRIOR = 0.7
NO_LAYOUT_PRIOR = 0.65
# Plate regions from vertical edges (`_edge_regions`), the classic plate localiser, for plates the text
# detector does not respond to at DETECTION_SCALE (dark, faint or busy US plates): found on a copy at
# most EDGE_SCALE pixels long, characters' strokes closed into blobs (EDGE_CLOSE), specks opened away
# (EDGE_OPEN); a blob counts when it has a plate's proportions and fills its box.
EDGE_SCALE = 640
EDGE_CLOSE = (13, 3)
EDGE_OPEN = (5, 5)
EDGE_ASPECT = (1.5, 7.0)
EDGE_MIN_FILL = 0.5
EDGE_MAX_WIDTH = 0.4  # of the frame: wider is a bumper or a sign
EDGE_PAD = 0.5  # heights added left and right: closing may stop short of the outer characters
MAX_EDGE_REGIONS = 4
# A line's width per character over its height, below which its characters are drawn narrow as on US
# plates (0.3 to 0.45 measured on the detector's boxes, against 0.45 to 0.6 for EU and Brazilian ones).
NARROW_PITCH = 0.40
# The EU plate's blue band: OpenCV hues (0-180) of the blue, the saturation and brightness that tell it
# from grey in dim, hazy photos, and the share of the strip it fills.
BAND_HUES = (95, 130)
BAND_MIN_SATURATION = 45
BAND_MIN_VALUE = 30
BAND_MIN_SHARE = 0.5  # of a column's pixels
BAND_WIDTH = (0.2, 0.9)  # in characters' heights
# Austria's red stripes: OpenCV hues of red (they wrap around 0), saturation and brightness, the share of
# a row they fill, and how far (in the line's heights) above and below the characters they are looked for.
STRIPE_HUES = (10, 165)
STRIPE_MIN_SATURATION = 80
STRIPE_MIN_VALUE = 60
STRIPE_MIN_SHARE = 0.5
STRIPE_REACH = 0.6
# Separators and marks read on plates and around them; they split nothing and are dropped from plates.
PLATE_SYMBOLS = frozenset(" -.:/|·•'\"")
# 2014-04-28, 28/04/2014, 11:08:05: what a camera's overlay prints, and no plate looks like. The
# look-arounds keep a plate's badge read as a colon (`1T4:3213`) from passing for a time.
DATE_OR_TIME = re.compile(
    r"(?<![0-9A-Z])(?:(?:19|20)\d{2}\s*[-/.:]\s*\d{1,2}"
    r"|\d{1,2}\s*[-/.]\s*\d{1,2}\s*[-/.]\s*(?:19|20)\d{2}"
    r"|\d{1,2}\s*:\s*\d{2}(?:\s*:\s*\d{2})?)(?![0-9A-Z])"
)


@dataclass
class _TextBox:
    """A detected text line: its corners (tl, tr, br, bl) in image pixels and detection score."""

    corners: np.ndarray
    score: float

    @property
    def height(self) -> float:
        return float(
            (
                np.linalg.norm(self.corners[3] - self.corners[0])
                + np.linalg.norm(self.corners[2] - self.corners[1])
            )
            / 2
        )

    @property
    def width(self) -> float:
        return float(
            (
                np.linalg.norm(self.corners[1] - self.corners[0])
                + np.linalg.norm(self.corners[2] - self.corners[3])
            )
            / 2
        )

    def bounds(self) -> tuple[float, float, float, float]:
        xs, ys = self.corners[:, 0], self.corners[:, 1]
        return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


@dataclass
class _Character:
    """One character of a read line: the recognizer's probabilities over the 36 alphanumerics."""

    probabilities: np.ndarray
    _best: dict[tuple[str, float], tuple[str, float]] = field(default_factory=dict, repr=False)

    def best(self, allowed: str = ALPHANUMERICS, share: float = LOOK_ALIKE_SHARE) -> tuple[str, float]:
        """The likeliest of the `allowed` characters. Where a layout allows a letter but not its look-alike
        digit (or the other way round), part of the look-alike's probability counts for it: the position
        settles O/0, I/1, B/8, S/5, Z/2, G/6 (but a confident glyph still outweighs a layout's wish)."""
        key = (allowed, share)
        if key not in self._best:
            probabilities = self.probabilities
            if share and len(allowed) < len(ALPHANUMERICS):
                probabilities = probabilities.copy()
                for symbol, twin in LOOK_ALIKES:
                    if symbol in allowed and twin not in allowed:
                        probabilities[ALPHANUMERICS.index(symbol)] += (
                            share * self.probabilities[ALPHANUMERICS.index(twin)]
                        )
            index = max((ALPHANUMERICS.index(symbol) for symbol in allowed), key=probabilities.__getitem__)
            self._best[key] = (ALPHANUMERICS[index], float(probabilities[index]))
        return self._best[key]

    @property
    def presence(self) -> float:
        """How sure the recognizer is that a character (rather than nothing or a symbol) is here."""
        return float(self.probabilities.sum())

    def alternatives(self, count: int, *, zero_for_o: bool = False) -> list[tuple[str, float]]:
        """The likeliest characters when nothing says letter or digit. With `zero_for_o` an O counts as a
        0: plate fonts draw them alike and some numbering schemes avoid the letter O; layouts can still
        ask for the letter (`best`)."""
        probabilities = self.probabilities.copy()
        if zero_for_o:
            probabilities[ZERO] += probabilities[LETTER_O]
            probabilities[LETTER_O] = 0.0
        order = np.argsort(probabilities)[::-1][:count]
        return [(ALPHANUMERICS[i], float(probabilities[i])) for i in order]


@dataclass
class _Reading:
    """A plate reading: the box it came from and its ranked candidates (plate, score)."""

    box: _TextBox
    candidates: list[tuple[str, float]] = field(default_factory=list)
    region: tuple[str, float] = ("unknown", 0.0)
    cue: str | None = None

    @property
    def score(self) -> float:
        return self.candidates[0][1] if self.candidates else 0.0


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
        self._recognizer: onnxruntime.InferenceSession | None = None
        self._labels: list[str] = []
        self._class_columns: list[np.ndarray] = []
        self._symbol_columns = np.zeros(0, bool)

    def load(self) -> None:
        """Load both models once; later calls (from any thread) return at once."""
        if self._recognizer is not None:
            return
        with self._lock:
            if self._recognizer is not None:
                return
            model_dir = self._model_dir or _packaged_model_dir()
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self._threads or min(os.cpu_count() or 1, 4)
            options.log_severity_level = 3
            providers = ["CPUExecutionProvider"]
            detector = onnxruntime.InferenceSession(
                str(model_dir / DETECTION_MODEL), options, providers=providers
            )
            model, self._labels = _recognition_model(
                model_dir / RECOGNITION_MODEL, plate_characters_only=self._plate_characters_only
            )
            recognizer = onnxruntime.InferenceSession(model, options, providers=providers)
            self._class_columns = _alphanumeric_columns(self._labels)
            self._symbol_columns = np.array([label in PLATE_SYMBOLS for label in self._labels])
            self._detector = detector
            self._recognizer = recognizer

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
        picture = _decode(image, self.max_pixels)
        self.load()
        readings = self._read_plates(picture, tuple(region.lower() for region in regions))
        height, width = picture.shape[:2]
        return {
            "processing_time": round((time.perf_counter() - started) * 1000, 3),
            "results": [_result(reading, width, height) for reading in readings],
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
        picture = _decode(image, self.max_pixels)
        self.load()
        boxes, _ = self._detect(picture, *NAIVE_DETECTION_SCALE)
        lines = self._recognize([_crop(picture, box) for box in boxes])
        return [
            (text, float(np.mean([c.best()[1] for c in characters])) if characters else 0.0)
            for characters, text in lines
        ]

    # -- the pipeline -----------------------------------------------------------------------------------

    def _read_plates(self, picture: np.ndarray, regions: tuple[str, ...]) -> list[_Reading]:
        boxes, proposals = self._detect(picture, *DETECTION_SCALE)
        state_names: list[_TextBox] = []
        readings = self._read_lines(picture, boxes, regions, state_names)
        if not any(reading.score >= CONFIDENT_SCORE for reading in readings):
            # The detector misses some plates at this scale (dark, faint, busy ones) that a plate localiser
            # finds: plate-shaped regions dense in vertical edges where it saw no text. Read as they are
            # (rough crops), they rank where to look closer; their own readings only stand where nothing
            # better was read.
            edge_boxes = _not_covered(_edge_regions(picture), boxes)
            edge_readings = self._read_lines(picture, edge_boxes, regions, state_names)
            edge_readings.sort(key=lambda reading: reading.score, reverse=True)
            # Small or faint plates: look again, closer, but only around what the first look found (plate
            # regions, best read first, then those read as nothing; small lines read without confidence;
            # faint plate-shaped text), never the whole frame at a larger scale.
            targets = [reading.box for reading in edge_readings]
            targets += [box for box in edge_boxes if not any(box is reading.box for reading in edge_readings)]
            targets += [reading.box for reading in readings if reading.box.height < CLOSER_MAX_HEIGHT]
            targets += proposals
            for x0, y0, x1, y1 in _windows(picture, targets)[:MAX_CLOSER_LOOKS]:
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
            readings += _not_covered_readings(edge_readings, readings)
        readings.sort(key=lambda reading: reading.score, reverse=True)
        return _suppress_overlaps(readings)

    def _read_lines(
        self,
        picture: np.ndarray,
        boxes: list[_TextBox],
        regions: tuple[str, ...],
        state_names: list[_TextBox],
    ) -> list[_Reading]:
        """Recognize the lines in `boxes` (and pairs of them that may be one plate), rank each as a plate.

        `state_names` holds the lines of the frame read so far as a US state's name; lines read here as one
        are added to it, so a plate read in a later pass still sees the name printed above it.
        """
        boxes = [
            box for box in boxes + _joined_neighbours(boxes) if box.width <= MAX_LINE_ASPECT * box.height
        ]
        # The EU band's country letter may be read into the line (FFG482KT): such a line is also read from
        # the band's edge, and that reading replaces it when it is the same line less its first character.
        band_edges = [_band_edge(picture, box) for box in boxes]
        trims = [
            (index, _trimmed(box, edge))
            for index, (box, edge) in enumerate(zip(boxes, band_edges, strict=True))
            if edge is not None
        ]
        trims = [(index, trim) for index, trim in trims if trim is not boxes[index]]
        lines = self._recognize([_crop(picture, box) for box in boxes + [trim for _, trim in trims]])
        for (index, trim), trim_line in zip(trims, lines[len(boxes) :], strict=True):
            whole, rest = _alphanumerics(lines[index][0]), _alphanumerics(trim_line[0])
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
            if _looks_like_date_or_time(text) or any(box is name for name in state_names):
                continue  # the time stamp cameras print over the picture; a state's name
            cue = None
            if edge is not None:
                striped = _red_stripes(picture, box, edge)
                cue = plate_patterns.EU_BAND_STRIPED if striped else plate_patterns.EU_BAND
            if cue is None and any(_above_or_below(name, box) for name in state_names):
                cue = plate_patterns.US_STATE
            reading = _rank_candidates(box, characters, regions, cue)
            if reading is not None and reading.score >= MIN_RESULT_SCORE:
                readings.append(reading)
        return readings

    def _detect(
        self, picture: np.ndarray, short_side: int, long_side: int
    ) -> tuple[list[_TextBox], list[_TextBox]]:
        """Text lines (best first), and faint or small plate-shaped text worth a closer look."""
        assert self._detector is not None
        height, width = picture.shape[:2]
        scale = min(short_side / min(height, width), long_side / max(height, width))
        resized_height = max(32, round(height * scale / 32) * 32)
        resized_width = max(32, round(width * scale / 32) * 32)
        resized = cv2.resize(picture, (resized_width, resized_height))
        tensor = (resized.astype(np.float32) / 255.0 - 0.5) / 0.5
        tensor = tensor.transpose(2, 0, 1)[np.newaxis]
        text_map = self._detector.run(None, {self._detector.get_inputs()[0].name: tensor})[0][0, 0]
        x_scale, y_scale = width / resized_width, height / resized_height
        boxes = []
        for box in self._boxes(text_map, PIXEL_THRESHOLD, x_scale, y_scale, width, height):
            if box.score >= BOX_THRESHOLD and box.height >= 8 and box.width >= box.height * 0.8:
                boxes.append(box)
        boxes.sort(key=lambda box: box.score * box.height, reverse=True)
        proposals = [
            box
            for box in self._boxes(text_map, PROPOSAL_THRESHOLD, x_scale, y_scale, width, height)
            if box.score >= PROPOSAL_THRESHOLD
            and box.width >= 1.5 * box.height
            and (box.score < BOX_THRESHOLD or box.height < 16)
        ]
        proposals.sort(key=lambda box: box.score, reverse=True)
        return boxes[:MAX_TEXT_BOXES], proposals

    @staticmethod
    def _boxes(
        text_map: np.ndarray, threshold: float, x_scale: float, y_scale: float, width: int, height: int
    ) -> list[_TextBox]:
        """DB post-processing: the text map's regions over `threshold` as boxes in image pixels."""
        bitmap = (text_map > threshold).astype(np.uint8)
        bitmap = cv2.dilate(bitmap, np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        boxes = []
        for contour in contours:
            (center_x, center_y), (rect_w, rect_h), angle = cv2.minAreaRect(contour)
            if min(rect_w, rect_h) < 3:
                continue
            score = _mean_inside(text_map, contour)
            if score < threshold:
                continue
            grow = rect_w * rect_h * UNCLIP_RATIO / (2 * (rect_w + rect_h))
            corners = cv2.boxPoints(((center_x, center_y), (rect_w + 2 * grow, rect_h + 2 * grow), angle))
            corners[:, 0] = np.clip(corners[:, 0] * x_scale, 0, width - 1)
            corners[:, 1] = np.clip(corners[:, 1] * y_scale, 0, height - 1)
            boxes.append(_TextBox(_order_corners(corners), score))
        return boxes

    def _recognize(self, crops: list[np.ndarray]) -> list[tuple[list[_Character], str]]:
        """Read each crop as a line; crops of similar width share a batch, so little of it is padding."""
        assert self._recognizer is not None
        widths = [max(8, math.ceil(RECOGNITION_HEIGHT * crop.shape[1] / crop.shape[0])) for crop in crops]
        order = sorted(range(len(crops)), key=widths.__getitem__)
        batches: list[list[int]] = []
        for index in order:
            if batches and widths[index] <= BATCH_WIDTH_SPREAD * max(
                RECOGNITION_MIN_WIDTH, widths[batches[-1][0]]
            ):
                batches[-1].append(index)
            else:
                batches.append([index])
        lines: list[tuple[list[_Character], str]] = [([], "")] * len(crops)
        input_name = self._recognizer.get_inputs()[0].name
        for members in batches:
            batch_width = max(RECOGNITION_MIN_WIDTH, *(widths[index] for index in members))
            batch = np.zeros((len(members), 3, RECOGNITION_HEIGHT, batch_width), np.float32)
            for row, index in enumerate(members):
                resized = cv2.resize(crops[index], (widths[index], RECOGNITION_HEIGHT)).astype(np.float32)
                batch[row, :, :, : widths[index]] = ((resized / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
            probabilities = self._recognizer.run(None, {input_name: batch})[0]
            for row, index in enumerate(members):
                lines[index] = self._characters(probabilities[row])
        return lines

    def _characters(self, probabilities: np.ndarray) -> tuple[list[_Character], str]:
        """Greedy CTC decoding over blank, the alphanumerics (any case or width) and everything else.

        Returns the alphanumerics with their probabilities, and the whole text with symbols kept.
        """
        reduced = np.zeros((probabilities.shape[0], OTHER + 1), np.float32)
        reduced[:, BLANK] = probabilities[:, 0]
        for index, columns in enumerate(self._class_columns, start=1):
            reduced[:, index] = probabilities[:, columns].sum(axis=1)
        reduced[:, OTHER] = probabilities[:, self._symbol_columns].sum(axis=1)
        reduced /= np.maximum(reduced.sum(axis=1, keepdims=True), 1e-6)
        path = reduced.argmax(axis=1)
        characters = []
        text = []
        frame = 0
        while frame < len(path):
            symbol = path[frame]
            end = frame
            while end + 1 < len(path) and path[end + 1] == symbol:
                end += 1
            if symbol not in (BLANK, OTHER):
                peak = frame + int(reduced[frame : end + 1, symbol].argmax())
                characters.append(_Character(reduced[peak, 1:OTHER].copy()))
                text.append(ALPHANUMERICS[symbol - 1])
            elif symbol == OTHER:
                peak = frame + int(reduced[frame : end + 1, OTHER].argmax())
                text.append(
                    self._labels[int(np.where(self._symbol_columns, probabilities[peak], -1).argmax())]
                )
            frame = end + 1
        return characters, "".join(text)


# -- helpers ------------------------------------------------------------------------------------------


def _packaged_model_dir() -> Path:
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the local engine needs the PP-OCR models of the {MODEL_PACKAGE!r} package:"
            " pip install 'plate-bridge[local]'"
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "models"
    if not (model_dir / RECOGNITION_MODEL).is_file():
        raise ImportError(
            f"{model_dir} has no {RECOGNITION_MODEL}; install the pinned version:"
            " pip install 'plate-bridge[local]'"
        )
    return model_dir


def _recognition_model(path: Path, *, plate_characters_only: bool) -> tuple[bytes, list[str]]:
    """The recognizer, cut down to the characters a plate can show, and its output labels.

    Plates use Latin letters, digits and a few separators; the model's thousands of other scripts'
    characters only steal probability from the letter or digit they resemble, and scoring them and
    holding their probabilities at every step costs memory (a fifth of the engine's peak) and time (a
    few percent of a frame). The classifier at the end (a MatMul and an Add over every character, then a
    Softmax) keeps the columns of the CTC blank, the alphanumerics in any case or width, and the
    separators: the softmax over those is what decoding renormalised to anyway, so the readings stay the
    same.
    """
    model = onnx.load(str(path))
    # PaddleOCR's labels: column 0 is the CTC blank, then the dictionary, then the space.
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    labels = ["", *metadata["character"].splitlines(), " "]
    if not plate_characters_only:
        return model.SerializeToString(), labels
    symbols = (column for column, label in enumerate(labels) if label in PLATE_SYMBOLS)
    kept = sorted({0, *np.concatenate(_alphanumeric_columns(labels)).tolist(), *symbols})
    classifier = [tensor for tensor in model.graph.initializer if tensor.dims[-1:] == [len(labels)]]
    if len(classifier) != 2:  # the weights and the bias; anything else is a model this code does not know
        log.warning(
            "%s: no classifier over its %d characters to cut down; the recognizer runs whole",
            path.name,
            len(labels),
        )
        return model.SerializeToString(), labels
    for tensor in classifier:
        pruned = numpy_helper.to_array(tensor)[..., kept]
        tensor.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(pruned), tensor.name))
    del model.graph.value_info[:]  # shapes inferred for the whole classifier; onnxruntime infers them again
    model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value = len(kept)
    return model.SerializeToString(), [labels[column] for column in kept]


def _alphanumeric_columns(labels: list[str]) -> list[np.ndarray]:
    """For each of the 36 alphanumerics, the output columns that spell it (upper, lower, full width)."""
    columns: dict[str, list[int]] = {symbol: [] for symbol in ALPHANUMERICS}
    for column, label in enumerate(labels):
        folded = unicodedata.normalize("NFKC", label).upper()
        if folded in columns:
            columns[folded].append(column)
    return [np.array(columns[symbol]) for symbol in ALPHANUMERICS]


def _looks_like_date_or_time(text: str) -> bool:
    return bool(DATE_OR_TIME.search(text))


def _decode(image: bytes, max_pixels: int) -> np.ndarray:
    if not isinstance(image, bytes | bytearray | memoryview) or len(image) == 0:
        raise PayloadNotImage("the payload is empty or not bytes")
    # The header's size, checked before OpenCV allocates the picture: its own cap (CV_IO_MAX_IMAGE_PIXELS,
    # 2^30) lets a 100 kB PNG claim 30000x30000 pixels and take 2.7 GB.
    check_pixels(bytes(image), max_pixels)
    picture = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
    if picture is None:
        raise PayloadNotImage("the payload is not a decodable image (JPEG or PNG expected)")
    return picture


def _order_corners(points: np.ndarray) -> np.ndarray:
    """Order four points as top-left, top-right, bottom-right, bottom-left."""
    by_x = points[np.argsort(points[:, 0])]
    left, right = by_x[:2], by_x[2:]
    top_left, bottom_left = left[np.argsort(left[:, 1])]
    top_right, bottom_right = right[np.argsort(right[:, 1])]
    return np.array([top_left, top_right, bottom_right, bottom_left], np.float32)


def _mean_inside(text_map: np.ndarray, contour: np.ndarray) -> float:
    x, y, w, h = cv2.boundingRect(contour)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [contour.reshape(-1, 2) - (x, y)], 1)
    return float(cv2.mean(text_map[y : y + h, x : x + w], mask)[0])


def _crop(picture: np.ndarray, box: _TextBox) -> np.ndarray:
    width, height = max(2, round(box.width)), max(2, round(box.height))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    transform = cv2.getPerspectiveTransform(box.corners, target)
    return cv2.warpPerspective(
        picture, transform, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )


def _windows(picture: np.ndarray, boxes: list[_TextBox]) -> list[tuple[int, int, int, int]]:
    """Windows (x0, y0, x1, y1) for a closer look around `boxes`, in order, each a plate's surroundings.

    A box may be a whole faint plate or a part of one: its window reaches two of its heights (and half its
    width) further on every side. A box whose centre an earlier window holds gets none.
    """
    image_height, image_width = picture.shape[:2]
    windows: list[tuple[int, int, int, int]] = []
    for box in boxes:
        x0, y0, x1, y1 = box.bounds()
        height, width = y1 - y0, x1 - x0
        center_x, center_y = (x0 + x1) / 2, (y0 + y1) / 2
        if any(wx0 <= center_x < wx1 and wy0 <= center_y < wy1 for wx0, wy0, wx1, wy1 in windows):
            continue
        reach_x, reach_y = max(0.5 * width, 2 * height, 16), max(2 * height, 16)
        windows.append(
            (
                max(0, int(x0 - reach_x)),
                max(0, int(y0 - reach_y)),
                min(image_width, math.ceil(x1 + reach_x)),
                min(image_height, math.ceil(y1 + reach_y)),
            )
        )
    return windows


def _edge_regions(picture: np.ndarray) -> list[_TextBox]:
    """Regions of a plate's proportions dense in vertical edges, the largest solid ones (at most a few).

    A plate's characters are close vertical strokes on a plain ground: the horizontal gradient's strong
    pixels (Otsu's threshold) closed along the line make one solid blob of the plate's text, where the
    text detector may see nothing (it was trained on documents and scenes, not plates at 20 pixels).
    Busy textures (grilles, foliage) make blobs too; the recognizer and the plate priors sort them out.
    """
    height, width = picture.shape[:2]
    scale = min(1.0, EDGE_SCALE / max(height, width))
    small = cv2.resize(picture, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    edges = cv2.convertScaleAbs(cv2.Sobel(grey, cv2.CV_16S, 1, 0, ksize=3))
    _, binary = cv2.threshold(edges, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, EDGE_CLOSE))
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, EDGE_OPEN))
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    small_width = small.shape[1]
    found = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        if h < 6 or w < 18 or w > EDGE_MAX_WIDTH * small_width:
            continue
        if not EDGE_ASPECT[0] <= w / h <= EDGE_ASPECT[1]:
            continue
        fill = cv2.contourArea(contour) / (w * h)
        if fill < EDGE_MIN_FILL:
            continue
        pad = EDGE_PAD * h
        x0, x1 = max(0.0, x - pad) / scale, min(small_width - 1.0, x + w + pad) / scale
        y0, y1 = y / scale, (y + h) / scale
        found.append(_TextBox(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32), fill))
    # Largest solid blobs first: a plate close enough to read is among the larger textured patches, and
    # the small ones are mostly grilles, foliage and text too small to read anyway.
    found.sort(key=lambda box: box.score * box.width * box.height, reverse=True)
    return found[:MAX_EDGE_REGIONS]


def _not_covered(candidates: list[_TextBox], boxes: list[_TextBox]) -> list[_TextBox]:
    """The `candidates` of which no box of `boxes` (nor an earlier candidate kept) covers half."""
    kept: list[_TextBox] = []
    for candidate in candidates:
        area = _area(candidate)
        if not any(_intersection(candidate, other) > 0.5 * area for other in boxes + kept):
            kept.append(candidate)
    return kept


def _not_covered_readings(candidates: list[_Reading], readings: list[_Reading]) -> list[_Reading]:
    """The `candidates` whose boxes no reading of `readings` covers by half."""
    kept = _not_covered([candidate.box for candidate in candidates], [reading.box for reading in readings])
    return [candidate for candidate in candidates if any(candidate.box is box for box in kept)]


def _joined_neighbours(boxes: list[_TextBox]) -> list[_TextBox]:
    """Boxes for lines the detector split in two (a plate's halves around a gap, badge or dash)."""
    joined = []
    for left in boxes:
        lx0, ly0, lx1, ly1 = left.bounds()
        for right in boxes:
            if right is left:
                continue
            rx0, ry0, rx1, ry1 = right.bounds()
            height = max(ly1 - ly0, ry1 - ry0)
            similar_height = min(ly1 - ly0, ry1 - ry0) > 0.7 * height
            same_line = abs((ly0 + ly1) - (ry0 + ry1)) / 2 < 0.3 * height
            gap = rx0 - lx1
            if similar_height and same_line and -0.3 * height <= gap <= 1.2 * height and rx0 > lx0:
                x0, y0, x1, y1 = min(lx0, rx0), min(ly0, ry0), max(lx1, rx1), max(ly1, ry1)
                corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)
                joined.append(_TextBox(corners, min(left.score, right.score)))
    return joined


def _band_edge(picture: np.ndarray, box: _TextBox) -> float | None:
    """Where the EU's blue band ends (its right edge, image x) when it shows left of this line's characters.

    The band is a blue stripe about half the characters' height wide, just left of the first one: inside
    the line's box (which takes in a margin) or just outside it. It counts when blue columns make such a
    stripe with no blue on either side of it or above it (a blue car), and no white plate left of it.
    """
    x0, y0, _, y1 = box.bounds()
    height = y1 - y0
    image_height, image_width = picture.shape[:2]
    left, right = max(0, round(x0 - 0.8 * height)), min(image_width, round(x0 + 1.0 * height))
    top, bottom = max(0, round(y0 - 1.2 * height)), min(image_height, round(y1 - 0.1 * height))
    middle = round(y0 + 0.1 * height) - top  # the band's rows start here; the rows above are the check
    if right - left < 4 or middle < 2 or bottom - top - middle < 2:
        return None
    hsv = cv2.cvtColor(picture[top:bottom, left:right], cv2.COLOR_BGR2HSV)
    blue = (
        (hsv[..., 0] >= BAND_HUES[0])
        & (hsv[..., 0] <= BAND_HUES[1])
        & (hsv[..., 1] >= BAND_MIN_SATURATION)
        & (hsv[..., 2] >= BAND_MIN_VALUE)
    )
    band_columns = blue[middle:].mean(axis=0) >= BAND_MIN_SHARE
    above_columns = blue[: max(1, middle - round(0.4 * height))].mean(axis=0) >= BAND_MIN_SHARE
    # White plate left of a blue stripe makes it a character in blue ink (California's), not the band,
    # which sits at the plate's edge.
    white = (hsv[middle:, :, 1] < 60) & (hsv[middle:, :, 2] >= 150)
    white_columns = white.mean(axis=0) >= BAND_MIN_SHARE
    edge = max(2, round(0.2 * height))
    # Runs of blue columns: one as wide as a band, ending inside the window, with no blue above it.
    edges = np.flatnonzero(np.diff(np.concatenate(([0], band_columns.astype(np.int8), [0]))))
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        if not (BAND_WIDTH[0] * height <= end - start <= BAND_WIDTH[1] * height):
            continue
        if start == 0 or end == len(band_columns) or above_columns[start:end].mean() >= 0.5:
            continue
        if white_columns[max(0, start - edge) : start].mean() >= 0.5:
            continue
        return float(left + end)
    return None


def _red_stripes(picture: np.ndarray, box: _TextBox, band_edge: float) -> bool:
    """Whether red stripes run above and below this line's characters, right of the band, as along the top
    and bottom edges of Austria's plates.

    A stripe is a row red over most of the characters' width, within about half their height of them,
    with nothing dark between it and them: on the plate, not a red car beyond the plate's frame. The
    characters' own rows must not be red (a red sign).
    """
    x0, y0, x1, y1 = box.bounds()
    height = y1 - y0
    top = max(0, round(y0 - STRIPE_REACH * height))
    bottom = min(picture.shape[0], round(y1 + STRIPE_REACH * height))
    left, right = round(max(x0, band_edge)), round(x1)
    if right - left < 4 or bottom - top < 4:
        return False
    hsv = cv2.cvtColor(picture[top:bottom, left:right], cv2.COLOR_BGR2HSV)
    red = (
        ((hsv[..., 0] <= STRIPE_HUES[0]) | (hsv[..., 0] >= STRIPE_HUES[1]))
        & (hsv[..., 1] >= STRIPE_MIN_SATURATION)
        & (hsv[..., 2] >= STRIPE_MIN_VALUE)
    )
    red_rows = red.mean(axis=1) >= STRIPE_MIN_SHARE
    dark_rows = (hsv[..., 2] < STRIPE_MIN_VALUE).mean(axis=1) >= STRIPE_MIN_SHARE
    center = round((y0 + y1) / 2) - top
    reach = round(0.25 * height)
    if red_rows[max(0, center - reach) : center + reach + 1].any():
        return False
    above = [row for row in range(center - reach - 1, -1, -1) if red_rows[row] or dark_rows[row]]
    below = [row for row in range(center + reach + 1, len(red_rows)) if red_rows[row] or dark_rows[row]]
    # The first row met going out from the characters that is red or dark must be red, on both sides.
    return bool(above and below and red_rows[above[0]] and red_rows[below[0]])


def _alphanumerics(characters: list[_Character]) -> str:
    return "".join(character.best()[0] for character in characters)


def _trimmed(box: _TextBox, x: float) -> _TextBox:
    """`box` without what lies left of `x` (the band and its country letters), if a line is left."""
    corners = box.corners.copy()
    corners[0, 0], corners[3, 0] = max(corners[0, 0], x), max(corners[3, 0], x)
    trimmed = _TextBox(corners, box.score)
    return trimmed if trimmed.width >= trimmed.height else box


def _above_or_below(other: _TextBox, box: _TextBox) -> bool:
    """True when `other` is a line just above or below `box` (a state's name on the plate, say)."""
    x0, y0, x1, y1 = box.bounds()
    ox0, oy0, ox1, oy1 = other.bounds()
    height = y1 - y0
    overlap = min(x1, ox1) - max(x0, ox0)
    return other is not box and overlap > 0 and y0 - 2 * height <= (oy0 + oy1) / 2 <= y1 + 2 * height


def _rank_candidates(
    box: _TextBox, characters: list[_Character], regions: tuple[str, ...], cue: str | None = None
) -> _Reading | None:
    """Ranked candidates for a line; `cue` is what the plate shows of its country (`_band_edge`...)."""
    if len(characters) < 3:
        return None
    if not regions and cue == plate_patterns.US_STATE:
        regions = ("us",)  # a state's name on the plate says where it is from, as a hint would
    # With no hint, the cue says which countries' layouts apply.
    layout_regions = regions or plate_patterns.regions_for_cue(cue)
    proposals: dict[str, float] = {}
    # A 0 only counts as a digit when the recognizer saw a zero rather than an O (a word like PROPERTY
    # must not pass for a plate because its O's read as zeros).
    saw_zero = any(character.best()[0] == "0" for character in characters)
    zero_for_o = bool(regions) and all(
        plate_patterns.base_region(region) in plate_patterns.REGIONS_WITHOUT_LETTER_O for region in regions
    )
    if not regions and cue is None:
        # US characters are drawn narrow (about half as wide as tall, against two thirds in Europe and
        # Brazil), and US serials avoid the letter O: a narrow line's round glyph is a zero.
        zero_for_o = box.width < NARROW_PITCH * box.height * len(characters)

    def propose(text: str, probabilities: Sequence[float]) -> None:
        if not text:
            return
        confidence = math.exp(sum(math.log(max(p, 1e-6)) for p in probabilities) / len(probabilities))
        score = confidence * _plate_prior(text, regions, layout_regions, saw_zero=saw_zero)
        proposals[text] = max(score, proposals.get(text, 0.0))

    # The recognizer's own alternatives: a small beam over each character's best guesses.
    beam: list[tuple[str, list[float]]] = [("", [])]
    for character in characters:
        beam = [
            (text + symbol, [*probabilities, probability])
            for text, probabilities in beam
            for symbol, probability in character.alternatives(CHARACTER_ALTERNATIVES, zero_for_o=zero_for_o)
        ]
        beam.sort(key=lambda item: math.prod(item[1]), reverse=True)
        beam = beam[:12]
    for text, probabilities in beam:
        propose(text, probabilities)

    # The layouts of the requested regions, over every window of the line: the recognizer's best letter
    # where the layout wants a letter and best digit where it wants a digit (O/0, I/1, B/8, S/5 ...).
    classes = {"L": ALPHANUMERICS[10:], "D": ALPHANUMERICS[:10], "N": ALPHANUMERICS[1:10], "A": ALPHANUMERICS}
    # A line may carry a character or two more than the plate (a frame edge, a badge, a doubled stroke).
    # With no hint every known layout may correct a reading, but only with one character left out: the
    # many layouts together would otherwise fit almost any line.
    layouts = plate_patterns.layouts_for(layout_regions)
    max_dropped = MAX_DROPPED_CHARACTERS if regions else 1
    # Look-alikes only count for the wanted class when the country is known (a hint or a cue): every
    # country's layouts together would turn any line into some plate. For the same reason a line the
    # recognizer read as a word (no digit: ARIZONA, ZOMBIE) is no plate unless the country is known.
    share = LOOK_ALIKE_SHARE if regions or cue else 0.0
    if not share and not any(symbol.isdigit() for symbol in beam[0][0]):
        return None
    for layout in layouts:
        extra = len(characters) - len(layout)
        if not 0 <= extra <= max_dropped:
            continue
        for kept in itertools.combinations(range(len(characters)), len(layout)):
            picks = [
                characters[index].best(classes[symbol], share)
                for index, symbol in zip(kept, layout, strict=True)
            ]
            # Characters left out count against the reading as the chance they are not there.
            dropped = [characters[index] for index in range(len(characters)) if index not in kept]
            propose(
                "".join(symbol for symbol, _ in picks),
                [probability for _, probability in picks] + [1.0 - c.presence for c in dropped],
            )

    ranked = sorted(proposals.items(), key=lambda item: item[1], reverse=True)[:MAX_CANDIDATES]
    # The recognizer's own reading stays a candidate, however many layout fixes outrank it (a vanity
    # plate fits no layout).
    own = beam[0][0]
    if own in proposals and own not in dict(ranked):
        ranked[-1] = (own, proposals[own])
    reading = _Reading(box, [(text.lower(), round(score, 3)) for text, score in ranked], cue=cue)
    reading.region = _region_of(ranked[0][0], regions, cue)
    return reading


def _plate_prior(
    text: str, regions: tuple[str, ...], layout_regions: Sequence[str], *, saw_zero: bool
) -> float:
    """How much `text` looks like a plate: generic shape first, then the layouts of the regions."""
    has_digit = any(symbol in "123456789" for symbol in text) or (saw_zero and "0" in text)
    if not (has_digit and plate_patterns.GENERIC_PLATE.match(text)):
        return 0.1
    length = SHORT_PLATE_PRIOR if len(text) <= 4 else 1.0
    if plate_patterns.fits_layout(text, layout_regions):
        return length
    return length * (0.6 if regions else NO_LAYOUT_PRIOR)


def _region_of(text: str, regions: tuple[str, ...], cue: str | None = None) -> tuple[str, float]:
    """The region to report: a hinted one the layout fits, else the one country the plate can be from.

    A single hinted country is reported even when no layout of it fits (vanity plates): the camera is
    there. Otherwise nothing is better than a guess (`unknown`).
    """
    if regions:
        matches = plate_patterns.matching_regions(text, regions)
        if matches:
            return matches[0], round(1.0 / len(matches), 3)
        if len({plate_patterns.base_region(region) for region in regions}) == 1:
            return regions[0], 0.1
        return "unknown", 0.0
    country = plate_patterns.infer_country(text, cue)
    # A band seen and a layout only one country uses is strong; a layout alone, with no band, less so.
    if country is not None:
        return country, 0.8 if cue else 0.5
    return "unknown", 0.0


def _suppress_overlaps(readings: list[_Reading]) -> list[_Reading]:
    """Keep the best reading where boxes overlap (a joined line and its halves, say)."""
    kept: list[_Reading] = []
    for reading in readings:
        area = _area(reading.box)
        if not any(
            _intersection(reading.box, other.box) > 0.5 * min(area, _area(other.box)) for other in kept
        ):
            kept.append(reading)
    return kept


def _area(box: _TextBox) -> float:
    x0, y0, x1, y1 = box.bounds()
    return max(1.0, (x1 - x0) * (y1 - y0))


def _intersection(box: _TextBox, other: _TextBox) -> float:
    """The area two boxes' bounds share."""
    x0, y0, x1, y1 = box.bounds()
    ox0, oy0, ox1, oy1 = other.bounds()
    return max(0.0, min(x1, ox1) - max(x0, ox0)) * max(0.0, min(y1, oy1) - max(y0, oy0))


def _result(reading: _Reading, width: int, height: int) -> dict[str, Any]:
    x0, y0, x1, y1 = reading.box.bounds()
    plate, score = reading.candidates[0]
    code, region_score = reading.region
    return {
        "box": {
            "xmin": max(0, int(x0)),
            "ymin": max(0, int(y0)),
            "xmax": min(width - 1, math.ceil(x1)),
            "ymax": min(height - 1, math.ceil(y1)),
        },
        "plate": plate,
        "region": {"code": code, "score": region_score},
        "score": round(min(1.0, score), 3),
        "dscore": round(min(1.0, reading.box.score), 3),
        "candidates": [{"plate": text, "score": round(min(1.0, s), 3)} for text, s in reading.candidates],
        "vehicle": {"type": "Unknown", "score": 0, "box": {"xmin": 0, "ymin": 0, "xmax": 0, "ymax": 0}},
    }
