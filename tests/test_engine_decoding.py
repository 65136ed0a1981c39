"""The offline engine's decoding rules on synthetic lines and pictures: layouts, cues, region attribution."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip(
    "rapidocr", reason="the local engine's models are not installed: pip install 'plate-bridge[local]'"
)

import cv2
import numpy as np

from bridge.core import plate_patterns
from bridge.engines import local
from bridge.engines.local import cues, detection, models, ranking, recognition

BLUE = (153, 51, 0)  # BGR of the EU band's blue
RED = (45, 16, 200)  # BGR of Austria's red stripes
WHITE, BLACK = (255, 255, 255), (0, 0, 0)


def _character(best: str, runner_up: str | None = None) -> recognition.Character:
    """A character the recognizer read as `best` (0.6), with `runner_up` (0.35) as the alternative."""
    probabilities = np.zeros(len(recognition.ALPHANUMERICS), np.float32)
    probabilities[recognition.ALPHANUMERICS.index(best)] = 0.6 if runner_up else 0.95
    if runner_up:
        probabilities[recognition.ALPHANUMERICS.index(runner_up)] = 0.35
    return recognition.Character(probabilities)


def _line(read: str, alternatives: str | None = None) -> list[recognition.Character]:
    alternatives = alternatives or read
    return [_character(a, b if b != a else None) for a, b in zip(read, alternatives, strict=True)]


def _box(x0: float, y0: float, x1: float, y1: float) -> detection.TextBox:
    return detection.TextBox(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32), 0.9)


BOX = _box(0, 0, 100, 20)


# -- region attribution -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "plate",
    [
        "7ABC123",  # California, and Belgium's layout too
        "RK026AJ",  # Slovakia, Italy, France... share it
        "ABC1234",  # old Brazil, many US states, Germany...
        "WA56660",  # Poland, Denmark, Norway, some US states
    ],
)
def test_a_layout_several_countries_issue_names_no_country(plate: str) -> None:
    assert plate_patterns.infer_country(plate, None) is None
    assert ranking.region_of(plate, ()) == ("unknown", 0.0)


def test_a_layout_only_one_country_issues_names_it() -> None:
    assert plate_patterns.infer_country("ABC1D23", None) == "br"  # Mercosul
    assert plate_patterns.infer_country("4B39376", None) == "cz"
    assert ranking.region_of("ABC1D23", ())[0] == "br"


def test_the_eu_band_narrows_the_countries() -> None:
    # A Belgian serial fits a Californian one; with the EU band only Belgium is left.
    assert plate_patterns.infer_country("1ABC234", None) is None
    assert plate_patterns.infer_country("1ABC234", plate_patterns.EU_BAND) == "be"
    assert ranking.region_of("1ABC234", (), plate_patterns.EU_BAND) == ("be", 0.8)
    # Still ambiguous inside the EU: no country.
    assert plate_patterns.infer_country("RK026AJ", plate_patterns.EU_BAND) is None


def test_a_state_name_reads_as_a_us_hint() -> None:
    reading = ranking.rank_candidates(BOX, _line("7ABC123"), (), plate_patterns.US_STATE)

    assert reading is not None
    assert reading.candidates[0][0] == "7abc123"
    assert reading.region[0] == "us"


def test_hints_report_a_matching_hinted_region_or_the_one_country_hinted() -> None:
    assert ranking.region_of("ABC1D23", ("us", "br")) == ("br", 1.0)
    assert ranking.region_of("VANITY1", ("us",)) == ("us", 0.1)  # vanity plate: the camera is in the US
    # Several countries hinted and none fits: no guess among them.
    assert ranking.region_of("VANITY1", ("us", "br")) == ("unknown", 0.0)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("California", True),
        ("CALIFORNA", True),  # a letter missed
        ("WISCONSIN AMERICA'S DAIRYLAND", True),
        ("Ohio", True),
        ("dmv.ca.gov", False),
        ("OHIOAN", False),  # a short name only counts as the whole line
        ("7ABC123", False),
        ("SUNTRUP", False),
    ],
)
def test_state_names(text: str, names: bool) -> None:
    assert plate_patterns.names_us_state(text) is names


# -- the layout lattice -------------------------------------------------------------------------------


def test_position_fixes_follow_the_layout() -> None:
    # Old Brazilian LLLDDDD read with a 2 where a letter goes and an S where a digit goes (the O/0 in
    # third place is a toss-up): with the hint, each position takes the likeliest character of its class.
    line = _line("N2O627S", "NZ06275")

    reading = ranking.rank_candidates(BOX, line, ("br",))

    assert reading is not None
    assert reading.candidates[0][0] == "nzo6275"
    assert reading.region == ("br", 1.0)


def test_a_look_alike_counts_for_the_class_the_position_wants() -> None:
    # An old Brazilian plate whose fourth character the recognizer is sure is a B (0.9, an 8 at 0.05):
    # the layout wants a digit there, and part of the B's probability counts for the 8.
    line = [_character(symbol) for symbol in "ABCB234"]
    line[3] = recognition.Character(np.zeros(len(recognition.ALPHANUMERICS), np.float32))
    line[3].probabilities[recognition.ALPHANUMERICS.index("B")] = 0.9
    line[3].probabilities[recognition.ALPHANUMERICS.index("8")] = 0.05

    reading = ranking.rank_candidates(BOX, line, ("br",))

    assert reading is not None
    assert reading.candidates[0][0] == "abc8234"
    # The recognizer's own reading stays among the candidates.
    assert "abcb234" in [text for text, _ in reading.candidates]


def test_the_eu_band_lets_only_eu_layouts_correct() -> None:
    # LLLDDDL is Mexican; no EU country issues it, so with the EU band the last D is read as the 0 of a
    # Polish or Greek LLLDDDD serial.
    line = _line("ABC123D", "ABC1230")

    without_band = ranking.rank_candidates(BOX, line, ())
    with_band = ranking.rank_candidates(BOX, line, (), plate_patterns.EU_BAND)

    assert without_band is not None and without_band.candidates[0][0] == "abc123d"
    assert with_band is not None and with_band.candidates[0][0] == "abc1230"


def test_a_band_without_red_stripes_is_not_austrian() -> None:
    # LLDDDLL (Slovakia, Italy, France) with an O/0 in sixth place also fits Austria's LLDDDDL; only
    # Austria's plates carry red stripes, so without them the letter the Slovak layout wants wins.
    line = _line("BA3020Z", "BA302OZ")

    plain = ranking.rank_candidates(BOX, line, (), plate_patterns.EU_BAND)
    striped = ranking.rank_candidates(BOX, line, (), plate_patterns.EU_BAND_STRIPED)

    assert plain is not None and plain.candidates[0][0] == "ba302oz"
    assert striped is not None and striped.candidates[0][0] == "ba3020z"
    assert "at" not in plate_patterns.regions_for_cue(plate_patterns.EU_BAND)
    assert "at" in plate_patterns.regions_for_cue(plate_patterns.EU_BAND_STRIPED)


def test_narrow_characters_read_a_round_glyph_as_zero() -> None:
    # The recognizer slightly prefers O; on a line as narrow as a US plate's the zero wins, on a wider
    # (European) one the O stays.
    # (Both readings fit some country's layout, so only the glyph decides.)
    line = _line("CLTO108", "CLT0108")

    narrow = ranking.rank_candidates(_box(0, 0, 50, 20), line, ())
    wide = ranking.rank_candidates(_box(0, 0, 84, 20), line, ())

    assert narrow is not None and narrow.candidates[0][0] == "clt0108"
    assert wide is not None and wide.candidates[0][0] == "clto108"


def test_a_word_is_not_made_a_plate_by_layouts() -> None:
    # ARIZONA with the look-alikes a layout could want (AR120NA fits LLDDDLL): no digit read, no plate.
    reading = ranking.rank_candidates(BOX, _line("ARIZONA", "AR120NA"), ())

    assert reading is None or reading.score < ranking.MIN_RESULT_SCORE


def test_without_a_country_look_alikes_do_not_rewrite_a_confident_reading() -> None:
    # K179658 fits no layout; KI79658 fits several. With no hint nor cue the confident 1 stays a 1; with
    # a hint whose layouts want a letter there, half its probability counts for the I.
    line = [_character(symbol) for symbol in "K179658"]

    reading = ranking.rank_candidates(BOX, line, ())
    hinted = ranking.rank_candidates(BOX, line, ("pl",))

    assert reading is not None and reading.candidates[0][0] == "k179658"
    assert hinted is not None and hinted.candidates[0][0] == "ki79658"


def test_a_leading_zero_fits_no_czech_serial() -> None:
    assert plate_patterns.matching_regions("4B39376", ["cz"]) == ["cz"]
    assert plate_patterns.matching_regions("0DC9387", ["cz"]) == []


def test_a_dealer_name_is_no_plate() -> None:
    assert ranking.rank_candidates(BOX, _line("SUNTRUP"), ()) is None


# -- cues seen in pictures ----------------------------------------------------------------------------


def _plate_picture(
    *, band: bool, car: tuple[int, int, int] = (90, 90, 90), stripes: bool = False, frame: bool = False
) -> np.ndarray:
    """A car-coloured picture with a white plate; the line's box covers the characters' area."""
    picture = np.full((200, 400, 3), car, np.uint8)
    if frame:
        cv2.rectangle(picture, (96, 76), (304, 128), (30, 30, 30), -1)
    cv2.rectangle(picture, (100, 80), (300, 124), WHITE, -1)
    if stripes:  # Austria's: red along the top and bottom edges
        cv2.rectangle(picture, (100, 80), (300, 84), RED, -1)
        cv2.rectangle(picture, (100, 120), (300, 124), RED, -1)
    if band:
        cv2.rectangle(picture, (100, 80), (118, 124), BLUE, -1)
    return picture


LINE = _box(114, 88, 296, 116)  # the detector's box takes in a margin, and here the band's edge


def test_the_eu_band_is_seen_left_of_the_characters() -> None:
    edge = cues.band_edge(_plate_picture(band=True), LINE)

    assert edge == pytest.approx(118, abs=2)  # where the band ends, inside the line's box


def test_a_line_is_read_from_the_band_edge() -> None:
    trimmed = cues.trimmed(LINE, 118)

    assert trimmed.bounds() == (118, 88, 296, 116)
    # A band edge past most of the line leaves the line as it was.
    assert cues.trimmed(LINE, 280) is LINE


def test_no_band_no_cue() -> None:
    assert cues.band_edge(_plate_picture(band=False), LINE) is None


def test_blue_characters_are_not_a_band() -> None:
    # California prints its serial in dark blue: the first character's stroke is a blue stripe, but with
    # white plate on its left.
    picture = _plate_picture(band=False)
    cv2.putText(picture, "8MZR417", (122, 116), cv2.FONT_HERSHEY_SIMPLEX, 1.1, BLUE, 5)

    assert cues.band_edge(picture, LINE) is None


def test_red_stripes_along_the_plate_are_austrias() -> None:
    assert cues.red_stripes(_plate_picture(band=True, stripes=True), LINE, 118)
    assert not cues.red_stripes(_plate_picture(band=True), LINE, 118)


def test_a_red_car_beyond_the_plates_frame_is_no_stripe() -> None:
    red_car = (30, 30, 180)
    assert not cues.red_stripes(_plate_picture(band=True, car=red_car, frame=True), LINE, 118)
    # Red where the characters are: a sign, not a plate's stripes.
    assert not cues.red_stripes(np.full((200, 400, 3), red_car, np.uint8), LINE, 118)


def _austrian_style_plate(*, stripes: bool) -> bytes:
    picture = np.full((720, 1280, 3), 70, np.uint8)
    cv2.rectangle(picture, (420, 330), (860, 432), WHITE, -1)
    if stripes:
        cv2.rectangle(picture, (420, 330), (860, 340), RED, -1)
        cv2.rectangle(picture, (420, 422), (860, 432), RED, -1)
    cv2.rectangle(picture, (420, 330), (460, 432), BLUE, -1)
    cv2.putText(picture, "GU1234A", (472, 404), cv2.FONT_HERSHEY_SIMPLEX, 1.9, BLACK, 5)
    encoded, png = cv2.imencode(".png", picture)
    assert encoded
    return png.tobytes()


def test_only_a_plate_with_red_stripes_is_reported_austrian() -> None:
    # LLDDDDL: of the countries on the band, only Austria issues it.
    engine = local.LocalEngine()

    [striped] = engine.read(_austrian_style_plate(stripes=True))["results"]
    [plain] = engine.read(_austrian_style_plate(stripes=False))["results"]

    assert striped["plate"] == plain["plate"] == "gu1234a"
    assert striped["region"]["code"] == "at"
    assert plain["region"]["code"] == "unknown"


def test_a_blue_car_is_not_a_band() -> None:
    assert cues.band_edge(_plate_picture(band=False, car=BLUE), LINE) is None
    assert cues.band_edge(_plate_picture(band=True, car=BLUE), LINE) is None


def test_a_state_name_above_the_line_is_near_it() -> None:
    name = _box(130, 60, 280, 80)
    far = _box(130, 0, 280, 10)
    aside = _box(320, 60, 390, 80)

    assert cues.above_or_below(name, LINE)
    assert not cues.above_or_below(far, LINE)
    assert not cues.above_or_below(aside, LINE)
    assert not cues.above_or_below(LINE, LINE)


# -- the closer look ----------------------------------------------------------------------------------


def test_closer_look_windows_surround_a_plate_and_stay_in_the_frame() -> None:
    picture = np.zeros((720, 1280, 3), np.uint8)
    faint = _box(600, 400, 640, 410)  # a part of a small plate
    inside = _box(610, 402, 630, 408)  # its centre is in the first window: no second look there
    corner = _box(0, 0, 30, 10)

    windows = detection.windows(picture, [faint, inside, corner])

    assert windows == [(580, 380, 660, 430), (0, 0, 50, 30)]
    # A window is a view of the frame, not a copy.
    x0, y0, x1, y1 = windows[0]
    assert np.shares_memory(picture[y0:y1, x0:x1], picture)


def test_a_small_plate_in_a_large_frame_is_read() -> None:
    picture = np.full((720, 1280, 3), 120, np.uint8)
    cv2.rectangle(picture, (600, 400), (782, 442), WHITE, -1)
    cv2.putText(picture, "ABC1234", (606, 434), cv2.FONT_HERSHEY_SIMPLEX, 0.98, BLACK, 2)
    encoded, png = cv2.imencode(".png", picture)
    assert encoded

    response = local.LocalEngine().read(png.tobytes())

    assert [result["plate"] for result in response["results"]] == ["abc1234"]
    box = response["results"][0]["box"]
    assert 590 <= box["xmin"] < box["xmax"] <= 800 and 390 <= box["ymin"] < box["ymax"] <= 450


def test_fits_layout_checks_every_layout_of_the_regions_at_once() -> None:
    assert plate_patterns.fits_layout("ABC1D23", ["us", "br"])
    assert not plate_patterns.fits_layout("ABC1D23", ["us"])
    assert plate_patterns.fits_layout("MAB1234", ["de"])  # a regular-expression layout
    assert not plate_patterns.fits_layout("ABC1234", [])
    assert not plate_patterns.fits_layout("ABC1234X", ["br"])  # whole plate, not a prefix


# -- plate regions from vertical edges ----------------------------------------------------------------


def _street(seed: int = 7) -> np.ndarray:
    """A 1280x720 frame of smooth shading with a low-contrast plate and a few distractors."""
    rows = np.linspace(60, 140, 720, dtype=np.float32)[:, np.newaxis]
    picture = np.repeat(np.repeat(rows, 1280, axis=1)[..., np.newaxis], 3, axis=2).astype(np.uint8)
    noise = np.random.default_rng(seed).integers(-6, 7, picture.shape)
    picture = np.clip(picture.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    cv2.rectangle(picture, (100, 100), (400, 108), WHITE, -1)  # a thin bright bar: no plate's shape
    cv2.circle(picture, (1000, 200), 60, (40, 40, 40), -1)  # a dark blob: no vertical strokes
    return picture


def test_edge_regions_find_a_plate_the_size_of_a_distant_one() -> None:
    picture = _street()
    # A plate 100x50 pixels (a car some 10 m away in a 1280x720 frame), grey on grey, as at dusk.
    cv2.rectangle(picture, (600, 420), (700, 470), (170, 170, 170), -1)
    cv2.putText(picture, "CJ8P4V", (606, 456), cv2.FONT_HERSHEY_SIMPLEX, 0.75, (60, 60, 60), 2)

    regions = detection.edge_regions(picture)

    assert 1 <= len(regions) <= detection.MAX_EDGE_REGIONS
    (_, text_height), _ = cv2.getTextSize("CJ8P4V", cv2.FONT_HERSHEY_SIMPLEX, 0.75, 2)
    characters = (610, 456 - text_height, 690, 456)  # most of the characters' area
    covering = [box for box in regions if _covered_share(box, characters) >= 0.8]
    assert covering, [box.bounds() for box in regions]
    x0, y0, x1, y1 = covering[0].bounds()
    assert x0 >= 560 and x1 <= 740 and y0 >= 400 and y1 <= 490  # the plate's surroundings, not the frame


def test_edge_regions_of_a_plain_frame_are_none() -> None:
    assert detection.edge_regions(_street()) == []


def test_regions_the_detector_already_holds_are_not_read_again() -> None:
    detected = _box(600, 430, 700, 465)
    same_place = _box(590, 425, 705, 470)
    elsewhere = _box(100, 100, 200, 140)
    duplicate = _box(102, 100, 200, 141)

    kept = detection.not_covered([same_place, elsewhere, duplicate], [detected])

    assert kept == [elsewhere]


def _covered_share(box: detection.TextBox, target: tuple[int, int, int, int]) -> float:
    x0, y0, x1, y1 = box.bounds()
    tx0, ty0, tx1, ty1 = target
    covered = max(0.0, min(x1, tx1) - max(x0, tx0)) * max(0.0, min(y1, ty1) - max(y0, ty0))
    return covered / ((tx1 - tx0) * (ty1 - ty0))


# -- priors across lines --------------------------------------------------------------------------------


def test_a_four_character_line_ranks_below_a_plate_read_as_well() -> None:
    # A taxi's fleet number above its plate, both read with the same confidence.
    fleet = ranking.rank_candidates(BOX, _line("1056"), ())
    plate = ranking.rank_candidates(BOX, _line("75061H1"), ())

    assert fleet is not None and plate is not None
    assert plate.score > fleet.score


def test_a_line_fitting_a_published_layout_outranks_one_that_fits_none() -> None:
    # A Brazilian plate (LLLDDDD) and a sticker's text of the same length and confidence.
    plate = ranking.rank_candidates(BOX, _line("OZV6697"), ())
    sticker = ranking.rank_candidates(BOX, _line("T60SUV1"), ())

    assert plate is not None and sticker is not None
    assert plate.score / sticker.score == pytest.approx(1 / ranking.NO_LAYOUT_PRIOR, rel=0.02)


def test_the_recognizer_cut_to_plate_characters_reads_as_the_whole_one() -> None:
    """The engine keeps only the classifier columns a plate can use; a line's characters and their
    probabilities must come out as the whole recognizer's do after decoding's renormalisation."""
    crops = []
    for text, width in (("ABC1234", 300), ("KA-05 MX", 330), ("O0I1B8", 240)):
        crop = np.full((60, width, 3), 235, np.uint8)
        cv2.putText(crop, text, (8, 44), cv2.FONT_HERSHEY_SIMPLEX, 1.3, BLACK, 3)
        crops.append(crop)
    cut, whole = local.LocalEngine(), local.LocalEngine(plate_characters_only=False)
    cut.load()
    whole.load()

    assert len(cut._recognizer.labels) < 300 < len(whole._recognizer.labels)
    for (cut_characters, cut_text), (whole_characters, whole_text) in zip(
        cut._recognize(crops), whole._recognize(crops), strict=True
    ):
        assert cut_text == whole_text
        assert len(cut_characters) == len(whole_characters) >= 5
        for mine, theirs in zip(cut_characters, whole_characters, strict=True):
            np.testing.assert_allclose(mine.probabilities, theirs.probabilities, atol=1e-4)


def test_a_recognizer_without_the_known_classifier_runs_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A model whose last layer is not the MatMul and Add over its characters is not cut, but used as it
    is, with a warning (a model_dir with other models)."""
    onnx = pytest.importorskip("onnx")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Softmax", ["x"], ["y"], axis=2)],
        "recognizer",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 4])],
    )
    model = onnx.helper.make_model(graph)
    onnx.helper.set_model_props(model, {"character": "A\n字"})
    path = tmp_path / "recognizer.onnx"
    onnx.save(model, str(path))

    serialized, labels = models.recognition_model(path, plate_characters_only=True)

    assert labels == ["", "A", "字", " "]
    assert onnx.load_from_string(serialized).graph.output[0].type.tensor_type.shape.dim[-1].dim_value == 4
    assert "no classifier over its 4 characters to cut down" in caplog.text
