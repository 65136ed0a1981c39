"""Where the text is: the PP-OCR text detector's lines (DB post-processing), plate-shaped regions from
vertical edges where the detector saw nothing, the windows of a closer look, and the boxes' geometry."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime

# Detection scale (short side, long side at most). Below the detector's own 736 (PP-OCR's default, which
# the naive baseline uses): half the time, and plates are large, clear text at it. Small or faint plates
# get a closer look (bridge/engines/local/engine.py) in a few windows around what the first look saw.
DETECTION_SCALE = (480, 1024)
NAIVE_DETECTION_SCALE = (736, 1600)
PROPOSAL_THRESHOLD = 0.15  # a faint text response, worth a closer look when plate-shaped
PIXEL_THRESHOLD = 0.3  # DB text-map threshold, as PP-OCR uses it
BOX_THRESHOLD = 0.5  # mean text probability a box needs
UNCLIP_RATIO = 1.6  # DB boxes are shrunk text kernels; this grows them back
MAX_TEXT_BOXES = 32  # boxes read per frame; a street scene with more is rare and slow
# Plate regions from vertical edges (`edge_regions`), the classic plate localiser, for plates the text
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


@dataclass
class TextBox:
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


def detect(
    detector: onnxruntime.InferenceSession, picture: np.ndarray, short_side: int, long_side: int
) -> tuple[list[TextBox], list[TextBox]]:
    """Text lines (best first), and faint or small plate-shaped text worth a closer look."""
    height, width = picture.shape[:2]
    scale = min(short_side / min(height, width), long_side / max(height, width))
    resized_height = max(32, round(height * scale / 32) * 32)
    resized_width = max(32, round(width * scale / 32) * 32)
    resized = cv2.resize(picture, (resized_width, resized_height))
    tensor = (resized.astype(np.float32) / 255.0 - 0.5) / 0.5
    tensor = tensor.transpose(2, 0, 1)[np.newaxis]
    text_map = detector.run(None, {detector.get_inputs()[0].name: tensor})[0][0, 0]
    x_scale, y_scale = width / resized_width, height / resized_height
    boxes = []
    for box in _boxes(text_map, PIXEL_THRESHOLD, x_scale, y_scale, width, height):
        if box.score >= BOX_THRESHOLD and box.height >= 8 and box.width >= box.height * 0.8:
            boxes.append(box)
    boxes.sort(key=lambda box: box.score * box.height, reverse=True)
    proposals = [
        box
        for box in _boxes(text_map, PROPOSAL_THRESHOLD, x_scale, y_scale, width, height)
        if box.score >= PROPOSAL_THRESHOLD
        and box.width >= 1.5 * box.height
        and (box.score < BOX_THRESHOLD or box.height < 16)
    ]
    proposals.sort(key=lambda box: box.score, reverse=True)
    return boxes[:MAX_TEXT_BOXES], proposals


def _boxes(
    text_map: np.ndarray, threshold: float, x_scale: float, y_scale: float, width: int, height: int
) -> list[TextBox]:
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
        boxes.append(TextBox(_order_corners(corners), score))
    return boxes


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


def crop(picture: np.ndarray, box: TextBox) -> np.ndarray:
    width, height = max(2, round(box.width)), max(2, round(box.height))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    transform = cv2.getPerspectiveTransform(box.corners, target)
    return cv2.warpPerspective(
        picture, transform, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )


def windows(picture: np.ndarray, boxes: list[TextBox]) -> list[tuple[int, int, int, int]]:
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


def edge_regions(picture: np.ndarray) -> list[TextBox]:
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
        found.append(TextBox(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32), fill))
    # Largest solid blobs first: a plate close enough to read is among the larger textured patches, and
    # the small ones are mostly grilles, foliage and text too small to read anyway.
    found.sort(key=lambda box: box.score * box.width * box.height, reverse=True)
    return found[:MAX_EDGE_REGIONS]


def not_covered(candidates: list[TextBox], boxes: list[TextBox]) -> list[TextBox]:
    """The `candidates` of which no box of `boxes` (nor an earlier candidate kept) covers half."""
    kept: list[TextBox] = []
    for candidate in candidates:
        area = box_area(candidate)
        if not any(intersection(candidate, other) > 0.5 * area for other in boxes + kept):
            kept.append(candidate)
    return kept


def joined_neighbours(boxes: list[TextBox]) -> list[TextBox]:
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
                joined.append(TextBox(corners, min(left.score, right.score)))
    return joined


def box_area(box: TextBox) -> float:
    x0, y0, x1, y1 = box.bounds()
    return max(1.0, (x1 - x0) * (y1 - y0))


def intersection(box: TextBox, other: TextBox) -> float:
    """The area two boxes' bounds share."""
    x0, y0, x1, y1 = box.bounds()
    ox0, oy0, ox1, oy1 = other.bounds()
    return max(0.0, min(x1, ox1) - max(x0, ox0)) * max(0.0, min(y1, oy1) - max(y0, oy0))
