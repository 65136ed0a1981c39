"""What a plate shows of where it is from, beside its characters: the EU's blue band (and the country
letters read into the line from it), Austria's red stripes, a US state's name above or below; and the
date or time a camera prints over the picture, which is no plate."""

from __future__ import annotations

import re

import cv2
import numpy as np

from bridge.engines.local.detection import TextBox

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
# 2014-04-28, 28/04/2014, 11:08:05: what a camera's overlay prints, and no plate looks like. The
# look-arounds keep a plate's badge read as a colon (`1T4:3213`) from passing for a time.
DATE_OR_TIME = re.compile(
    r"(?<![0-9A-Z])(?:(?:19|20)\d{2}\s*[-/.:]\s*\d{1,2}"
    r"|\d{1,2}\s*[-/.]\s*\d{1,2}\s*[-/.]\s*(?:19|20)\d{2}"
    r"|\d{1,2}\s*:\s*\d{2}(?:\s*:\s*\d{2})?)(?![0-9A-Z])"
)


def looks_like_date_or_time(text: str) -> bool:
    return bool(DATE_OR_TIME.search(text))


def band_edge(picture: np.ndarray, box: TextBox) -> float | None:
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


def red_stripes(picture: np.ndarray, box: TextBox, band_edge: float) -> bool:
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


def trimmed(box: TextBox, x: float) -> TextBox:
    """`box` without what lies left of `x` (the band and its country letters), if a line is left."""
    corners = box.corners.copy()
    corners[0, 0], corners[3, 0] = max(corners[0, 0], x), max(corners[3, 0], x)
    trimmed = TextBox(corners, box.score)
    return trimmed if trimmed.width >= trimmed.height else box


def above_or_below(other: TextBox, box: TextBox) -> bool:
    """True when `other` is a line just above or below `box` (a state's name on the plate, say)."""
    x0, y0, x1, y1 = box.bounds()
    ox0, oy0, ox1, oy1 = other.bounds()
    height = y1 - y0
    overlap = min(x1, ox1) - max(x0, ox0)
    return other is not box and overlap > 0 and y0 - 2 * height <= (oy0 + oy1) / 2 <= y1 + 2 * height
