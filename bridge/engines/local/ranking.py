"""Which reading is the plate: candidates for a line from the recognizer's alternatives and the
countries' layouts, scored by how much they look like a plate, the region to report, overlapping
readings thinned out, and the answer in Plate Recognizer's shape."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.core import plate_patterns
from bridge.engines.local.detection import TextBox, box_area, intersection, not_covered
from bridge.engines.local.recognition import ALPHANUMERICS, LOOK_ALIKE_SHARE, Character

CHARACTER_ALTERNATIVES = 3  # alternatives per character explored for candidates
MAX_CANDIDATES = 5
MAX_DROPPED_CHARACTERS = 2
MIN_RESULT_SCORE = 0.2  # a line's best candidate below this is no plate
# A reading of 4 characters or fewer is rarely a whole plate (a fleet number, a badge, a plate's half):
# it counts this much less. One that fits no published layout, with no hint, counts NO_LAYOUT_PRIOR.
SHORT_PLATE_PRIOR = 0.7
NO_LAYOUT_PRIOR = 0.65
# A line's width per character over its height, below which its characters are drawn narrow as on US
# plates (0.3 to 0.45 measured on the detector's boxes, against 0.45 to 0.6 for EU and Brazilian ones).
NARROW_PITCH = 0.40


@dataclass
class Reading:
    """A plate reading: the box it came from and its ranked candidates (plate, score)."""

    box: TextBox
    candidates: list[tuple[str, float]] = field(default_factory=list)
    region: tuple[str, float] = ("unknown", 0.0)
    cue: str | None = None

    @property
    def score(self) -> float:
        return self.candidates[0][1] if self.candidates else 0.0


def rank_candidates(
    box: TextBox, characters: list[Character], regions: tuple[str, ...], cue: str | None = None
) -> Reading | None:
    """Ranked candidates for a line; `cue` is what the plate shows of its country (`band_edge`...)."""
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
    reading = Reading(box, [(text.lower(), round(score, 3)) for text, score in ranked], cue=cue)
    reading.region = region_of(ranked[0][0], regions, cue)
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


def region_of(text: str, regions: tuple[str, ...], cue: str | None = None) -> tuple[str, float]:
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


def suppress_overlaps(readings: list[Reading]) -> list[Reading]:
    """Keep the best reading where boxes overlap (a joined line and its halves, say)."""
    kept: list[Reading] = []
    for reading in readings:
        area = box_area(reading.box)
        if not any(
            intersection(reading.box, other.box) > 0.5 * min(area, box_area(other.box)) for other in kept
        ):
            kept.append(reading)
    return kept


def not_covered_readings(candidates: list[Reading], readings: list[Reading]) -> list[Reading]:
    """The `candidates` whose boxes no reading of `readings` covers by half."""
    kept = not_covered([candidate.box for candidate in candidates], [reading.box for reading in readings])
    return [candidate for candidate in candidates if any(candidate.box is box for box in kept)]


def result(reading: Reading, width: int, height: int) -> dict[str, Any]:
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
