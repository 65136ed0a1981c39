"""Render the demo camera images in examples/images/: synthetic street scenes with one licence plate each."""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont, features

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "images"
SEED = 20240611
# Scenes are drawn at twice their size and scaled down: that antialiases every edge without per-shape work.
SS = 2
JPEG_QUALITY = 85

Color = tuple[int, int, int]
Point = tuple[float, float]
Shape = Callable[[ImageDraw.ImageDraw], None]

EU_BLUE: Color = (0, 51, 153)
EU_YELLOW: Color = (255, 204, 0)
PLATE_BLACK: Color = (18, 18, 20)


@dataclass(frozen=True)
class Scene:
    """One generated image: what is on its plate and how the street around it looks."""

    file: str
    region: str  # the `set` column of labels.tsv
    style: str  # plate design, see render_plate
    text: str  # as printed on the plate; the label is this without spaces or dashes
    view: str  # "rear" or "front" of the car
    body: Color
    backdrop: str  # "city", "suburb" or "overcast"
    size: tuple[int, int] = (1280, 720)
    car_w: int = 600  # car width in output pixels; every car part scales with it
    plate_w: int = 180  # plate width in output pixels
    cx: int = 640
    ground: int = 660  # y of the tyres' contact with the road
    state: str = ""

    @property
    def label(self) -> str:
        return "".join(ch for ch in self.text.upper() if ch.isalnum())


SCENES: tuple[Scene, ...] = (
    # BD51 SMR is the DVLA's own specimen plate.
    Scene("gb_rear_yellow.jpg", "gb", "gb-rear", "BD51 SMR", "rear", (150, 18, 24), "city", cx=610),
    Scene("gb_front_white.jpg", "gb", "gb-front", "YR68 KHN", "front", (190, 192, 196), "suburb", cx=680),
    Scene("eu_de_rear.jpg", "eu", "de", "M KL 4821", "rear", (24, 44, 92), "overcast", cx=650, plate_w=190),
    Scene("eu_fr_front.jpg", "eu", "fr", "FG-482-KT", "front", (232, 232, 228), "city", cx=600, plate_w=185),
    Scene(
        "us_ca_rear.jpg",
        "us",
        "us",
        "8MZR417",
        "rear",
        (58, 60, 66),
        "suburb",
        cx=660,
        plate_w=150,
        state="California",
    ),
    # BRA2E19 is the specimen plate of the Mercosul standard.
    Scene(
        "br_mercosul_rear.jpg", "br", "br", "BRA2E19", "rear", (200, 140, 32), "overcast", cx=620, plate_w=175
    ),
    # A small PNG frame, as a low-resolution camera sends: the car fills it so the plate stays readable.
    Scene(
        "us_small.png",
        "us",
        "us",
        "6TRJ244",
        "rear",
        (20, 110, 120),
        "city",
        size=(320, 240),
        car_w=250,
        plate_w=70,
        cx=160,
        ground=232,
        state="California",
    ),
)


# ---------------------------------------------------------------- drawing helpers


def vertical_gradient(size: tuple[int, int], top: Color, bottom: Color) -> Image.Image:
    """An RGB image fading from `top` to `bottom`."""
    mask = Image.linear_gradient("L").resize(size, Image.Resampling.BILINEAR)
    return Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), mask)


def paint(
    img: Image.Image, shape: Shape, fill: Color | Image.Image, alpha: int = 255, clip: Shape | None = None
) -> None:
    """Paint `fill` (a colour or an image the size of `img`) through the mask `shape` draws, within `clip`."""
    mask = Image.new("L", img.size, 0)
    shape(ImageDraw.Draw(mask))
    if clip is not None:
        inside = Image.new("L", img.size, 0)
        clip(ImageDraw.Draw(inside))
        mask = ImageChops.multiply(mask, inside)
    if alpha < 255:
        mask = mask.point(lambda v: v * alpha // 255)
    img.paste(fill, None, mask)


def paint_gradient(img: Image.Image, shape: Shape, box: Sequence[float], top: Color, bottom: Color) -> None:
    """Paint a vertical gradient spanning `box` through the mask `shape` draws (shading of a curved panel)."""
    x0, y0, x1, y1 = (round(v) for v in box)
    layer = Image.new("RGB", img.size, top)
    layer.paste(vertical_gradient((max(1, x1 - x0), max(1, y1 - y0)), top, bottom), (x0, y0))
    layer.paste(bottom, (x0, y1, img.width, img.height))
    paint(img, shape, layer)


def shade(color: Color, factor: float) -> Color:
    """`color` darkened (factor < 1) or lightened towards white (factor > 1)."""
    r, g, b = (round(c * factor) if factor <= 1 else round(c + (255 - c) * (factor - 1)) for c in color)
    return r, g, b


def star(cx: float, cy: float, r: float) -> list[Point]:
    """The points of a five-pointed star (the EU and Mercosul emblems)."""
    pts = []
    for i in range(10):
        rad = r if i % 2 == 0 else r * 0.42
        a = -math.pi / 2 + i * math.pi / 5
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


# ---------------------------------------------------------------- plates

MM = 4  # plate drawing resolution in pixels per millimetre, before it is scaled onto the car


def glyphs(
    text: str, height: int, max_width: int | None = None, bold: float = 0.05, tracking: float = 0.06
) -> Image.Image:
    """`text` as an L mask exactly `height` px tall (cap height), squeezed to `max_width` if wider.

    The bundled font is a regular weight; a stroke in the same colour makes it as heavy as plate lettering,
    and `tracking` (a fraction of the font size) keeps the thickened characters from touching.
    """
    size = 200
    font = ImageFont.load_default(size=size)
    stroke = round(size * bold)
    gap = size * tracking
    width = sum(font.getlength(ch) for ch in text) + gap * len(text) + 2 * stroke
    mask = Image.new("L", (round(width), 2 * size), 0)
    draw = ImageDraw.Draw(mask)
    x = float(stroke)
    for ch in text:
        draw.text((x, size // 2), ch, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
        x += font.getlength(ch) + gap
    mask = mask.crop(mask.getbbox())
    width = round(mask.width * height / mask.height)
    if max_width is not None:
        width = min(width, max_width)
    return mask.resize((width, height), Image.Resampling.LANCZOS)


def eu_band(plate: Image.Image, width_mm: float, letters: str) -> None:
    """The blue band on the left with the ring of twelve stars and the country letters."""
    h = plate.height
    bw = round(width_mm * MM)
    draw = ImageDraw.Draw(plate)
    draw.rectangle((0, 0, bw - 1, h - 1), fill=EU_BLUE)
    cx, cy, ring = bw / 2, h * 0.33, bw * 0.3
    for i in range(12):
        a = i * math.pi / 6
        draw.polygon(star(cx + ring * math.cos(a), cy + ring * math.sin(a), bw * 0.06), fill=EU_YELLOW)
    mark = glyphs(letters, round(h * 0.3), bold=0.03)
    plate.paste((255, 255, 255), (round(cx - mark.width / 2), round(h * 0.6)), mark)


def place_text(plate: Image.Image, text: str, box: Sequence[float], color: Color, bold: float = 0.05) -> None:
    """Centre `text` in `box` (mm), as tall as the box."""
    x0, y0, x1, y1 = (v * MM for v in box)
    mask = glyphs(text, round(y1 - y0), round(x1 - x0), bold)
    plate.paste(color, (round((x0 + x1 - mask.width) / 2), round(y0)), mask)


def plate_gb(text: str, front: bool) -> Image.Image:
    """UK plate, 520x111 mm: yellow at the rear, white at the front with the UK identifier band."""
    plate = Image.new("RGB", (520 * MM, 111 * MM), (246, 246, 240) if front else (250, 200, 20))
    left = 11
    if front:
        ImageDraw.Draw(plate).rectangle((0, 0, 44 * MM, plate.height), fill=EU_BLUE)
        place_text(plate, "UK", (4, 62, 40, 90), (255, 255, 255), bold=0.03)
        left = 50
    place_text(plate, text, (left, 16, 509, 95), PLATE_BLACK)
    return plate


def plate_de(text: str) -> Image.Image:
    """German plate, 520x110 mm: EU band, district letters, the two seals, then letters and digits."""
    plate = Image.new("RGB", (520 * MM, 110 * MM), (244, 244, 240))
    eu_band(plate, 40, "D")
    district, rest = text.split(" ", 1)
    place_text(plate, district, (46, 17, 110, 92), PLATE_BLACK)
    mask = glyphs(rest, 75 * MM, 360 * MM)
    x = 152 * MM
    plate.paste(PLATE_BLACK, (x, 17 * MM), mask)
    # Between district and the rest: the inspection sticker above the state registration seal.
    seal_x = 129 * MM
    draw = ImageDraw.Draw(plate)
    r = 13 * MM
    draw.ellipse(
        (seal_x - r, 22 * MM, seal_x + r, 22 * MM + 2 * r), fill=(120, 170, 60), outline=(60, 60, 60)
    )
    draw.ellipse(
        (seal_x - r, 60 * MM, seal_x + r, 60 * MM + 2 * r), fill=(200, 200, 190), outline=(60, 60, 60)
    )
    draw.ellipse((seal_x - r / 2, 67 * MM, seal_x + r / 2, 67 * MM + r), fill=(150, 40, 40))
    return plate


def plate_fr(text: str) -> Image.Image:
    """French SIV plate, 520x110 mm: EU band with F on the left, the region band on the right."""
    plate = Image.new("RGB", (520 * MM, 110 * MM), (246, 246, 242))
    eu_band(plate, 40, "F")
    draw = ImageDraw.Draw(plate)
    draw.rectangle((480 * MM, 0, plate.width, plate.height), fill=EU_BLUE)
    # The region logo: a white roundel over the department number.
    draw.ellipse((487 * MM, 12 * MM, 513 * MM, 38 * MM), fill=(240, 240, 240))
    draw.polygon([(493 * MM, 30 * MM), (500 * MM, 16 * MM), (507 * MM, 30 * MM)], fill=(200, 30, 40))
    place_text(plate, "75", (484, 62, 516, 92), (255, 255, 255), bold=0.03)
    place_text(plate, text, (48, 18, 472, 93), PLATE_BLACK)
    return plate


def plate_us(text: str, state: str) -> Image.Image:
    """US plate, 12x6 inches: state name in small red type, characters in dark blue, bolt holes, sticker."""
    plate = Image.new("RGB", (305 * MM, 152 * MM))
    plate.paste(vertical_gradient(plate.size, (250, 251, 253), (226, 230, 238)))
    draw = ImageDraw.Draw(plate)
    navy: Color = (22, 32, 110)
    # The state name in a slanted "script": shear the mask since the bundled font has no italic.
    name = glyphs(state, 24 * MM, 170 * MM, bold=0.03)
    name = name.transform(
        (name.width + name.height // 3, name.height),
        Image.Transform.AFFINE,
        (1, 0.3, -name.height * 0.3, 0, 1, 0),
        Image.Resampling.BICUBIC,
    )
    plate.paste((190, 20, 30), (round((plate.width - name.width) / 2), 10 * MM), name)
    place_text(plate, text, (20, 46, 285, 120), navy, bold=0.055)
    place_text(
        plate, "DMV.CA.GOV" if state == "California" else state.upper(), (100, 128, 205, 140), navy, 0.02
    )
    for x in (60, 245):
        for y in (16, 136):
            draw.ellipse(((x - 5) * MM, (y - 4) * MM, (x + 5) * MM, (y + 4) * MM), fill=(150, 150, 155))
    draw.rounded_rectangle((255 * MM, 8 * MM, 294 * MM, 36 * MM), 2 * MM, fill=(230, 120, 30))
    place_text(plate, "24", (262, 14, 287, 30), (20, 20, 20), bold=0.02)
    draw.rounded_rectangle((0, 0, plate.width - 1, plate.height - 1), 6 * MM, outline=navy, width=2 * MM)
    return plate


def plate_br(text: str) -> Image.Image:
    """Brazilian Mercosul plate, 400x130 mm: blue header with BRASIL and the flag, black characters."""
    plate = Image.new("RGB", (400 * MM, 130 * MM), (246, 246, 244))
    draw = ImageDraw.Draw(plate)
    draw.rectangle((0, 0, plate.width, 30 * MM), fill=(0, 56, 168))
    place_text(plate, "BRASIL", (150, 8, 250, 23), (255, 255, 255), bold=0.03)
    # Mercosul emblem on the left: the Southern Cross as four small white stars.
    for sx, sy, r in ((20, 9, 3.5), (28, 15, 3), (22, 22, 3), (14, 16, 2.5)):
        draw.polygon(star(sx * MM, sy * MM, r * MM), fill=(255, 255, 255))
    fx0, fy0, fx1, fy1 = 358 * MM, 6 * MM, 392 * MM, 25 * MM
    draw.rectangle((fx0, fy0, fx1, fy1), fill=(0, 150, 60))
    mx, my = (fx0 + fx1) / 2, (fy0 + fy1) / 2
    draw.polygon(
        [(fx0 + 2 * MM, my), (mx, fy0 + 2 * MM), (fx1 - 2 * MM, my), (mx, fy1 - 2 * MM)], fill=EU_YELLOW
    )
    draw.ellipse((mx - 5 * MM, my - 5 * MM, mx + 5 * MM, my + 5 * MM), fill=(0, 40, 120))
    place_text(plate, "BR", (8, 98, 30, 112), PLATE_BLACK, bold=0.03)
    place_text(plate, text, (36, 40, 380, 112), PLATE_BLACK)
    draw.rectangle((0, 0, plate.width - 1, plate.height - 1), outline=(40, 40, 40), width=2 * MM)
    return plate


def render_plate(scene: Scene) -> Image.Image:
    """The plate of `scene`, drawn at MM px/mm, with a faint reflective sheen."""
    style = scene.style
    if style in ("gb-rear", "gb-front"):
        plate = plate_gb(scene.text, front=style == "gb-front")
    elif style == "de":
        plate = plate_de(scene.text)
    elif style == "fr":
        plate = plate_fr(scene.text)
    elif style == "us":
        plate = plate_us(scene.text, scene.state)
    elif style == "br":
        plate = plate_br(scene.text)
    else:
        raise ValueError(f"unknown plate style {style!r}")
    # Retroreflective sheeting catches the light unevenly: a soft diagonal highlight.
    w, h = plate.size
    paint(
        plate,
        lambda d: d.polygon([(w * 0.15, 0), (w * 0.35, 0), (w * 0.2, h), (0, h)], fill=255),
        (255, 255, 255),
        40,
    )
    return plate


# ---------------------------------------------------------------- backdrops


def city(img: Image.Image, base: int, rng: random.Random) -> None:
    """A row of apartment blocks with window grids, a few windows lit."""
    draw = ImageDraw.Draw(img)
    walls = [(150, 80, 60), (190, 175, 150), (130, 130, 135), (170, 120, 90), (210, 200, 185)]
    x = -rng.randint(0, 60) * SS
    while x < img.width:
        bw, bh = rng.randint(110, 260) * SS, rng.randint(140, 320) * SS
        wall = rng.choice(walls)
        draw.rectangle((x, base - bh, x + bw, base), fill=wall)
        draw.rectangle((x + bw - 10 * SS, base - bh, x + bw, base), fill=shade(wall, 0.75))
        for wy in range(base - bh + 18 * SS, base - 40 * SS, 34 * SS):
            for wx in range(x + 14 * SS, x + bw - 34 * SS, 30 * SS):
                lit = rng.random() < 0.12
                glass = (250, 225, 150) if lit else shade((70, 90, 110), rng.uniform(0.8, 1.2))
                draw.rectangle((wx, wy, wx + 16 * SS, wy + 20 * SS), fill=glass)
        x += bw


def overcast(img: Image.Image, base: int, rng: random.Random) -> None:
    """A distant tree line behind a wall along the pavement."""
    draw = ImageDraw.Draw(img)
    for _ in range(40):
        tx, r = rng.randint(0, img.width), rng.randint(40, 90) * SS
        draw.ellipse((tx - r, base - 2.6 * r, tx + r, base), fill=(55, 75, 55))
    draw.rectangle((0, base - 60 * SS, img.width, base), fill=(150, 140, 130))
    for bx in range(0, img.width, 24 * SS):
        draw.line((bx, base - 60 * SS, bx, base), fill=(130, 120, 110), width=SS)


def suburb(img: Image.Image, base: int, rng: random.Random) -> None:
    """Detached houses with pitched roofs, street trees and a hedge."""
    draw = ImageDraw.Draw(img)
    x = rng.randint(-200, 0) * SS
    while x < img.width:
        hw, hh = rng.randint(260, 380) * SS, rng.randint(120, 170) * SS
        draw.rectangle((x, base - hh, x + hw, base), fill=rng.choice([(235, 225, 205), (200, 170, 140)]))
        ridge = (x + hw / 2, base - hh - 90 * SS)
        roof = [(x - 15 * SS, base - hh), ridge, (x + hw + 15 * SS, base - hh)]
        draw.polygon(roof, fill=rng.choice([(110, 60, 50), (80, 80, 90)]))
        for wx in (x + 40 * SS, x + hw - 100 * SS):
            draw.rectangle((wx, base - hh + 30 * SS, wx + 60 * SS, base - hh + 80 * SS), fill=(80, 100, 120))
        x += hw + rng.randint(80, 200) * SS
    for _ in range(9):
        tx, r = rng.randint(0, img.width), rng.randint(50, 100) * SS
        draw.rectangle((tx - 6 * SS, base - r, tx + 6 * SS, base), fill=(90, 65, 45))
        for _ in range(5):  # a crown of overlapping leaf clumps in varied greens
            ox, oy = tx + rng.uniform(-0.6, 0.6) * r, base - r + rng.uniform(-1.0, -0.3) * r
            green = shade((60, 110, 50), rng.uniform(0.7, 1.2))
            draw.ellipse((ox - r * 0.7, oy - r * 0.7, ox + r * 0.7, oy + r * 0.7), fill=green)
    draw.rectangle((0, base - 22 * SS, img.width, base), fill=(70, 110, 55))


BACKDROPS: dict[str, tuple[Color, Color, Callable[[Image.Image, int, random.Random], None]]] = {
    "city": ((120, 160, 210), (205, 220, 235), city),
    "suburb": ((90, 150, 220), (190, 215, 240), suburb),
    "overcast": ((165, 170, 178), (215, 217, 220), overcast),
}


def backdrop(img: Image.Image, kind: str, horizon: int, rng: random.Random) -> None:
    """Sky, whatever stands along the far kerb, pavement and road, all on `img` (supersampled)."""
    w, h = img.size
    sky_top, sky_bottom, scenery = BACKDROPS[kind]
    img.paste(vertical_gradient((w, horizon), sky_top, sky_bottom), (0, 0))
    base = horizon - 6 * SS
    scenery(img, base, rng)
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, base, w, horizon + 8 * SS), fill=(175, 172, 168))  # pavement
    draw.rectangle((0, horizon + 8 * SS, w, horizon + 14 * SS), fill=(205, 203, 200))  # kerb
    road_top = horizon + 14 * SS
    img.paste(vertical_gradient((w, h - road_top), (112, 112, 116), (72, 72, 76)), (0, road_top))
    for _ in range(14):  # patches and stains, so the asphalt is not uniform
        px, py, r = rng.randint(0, w), rng.randint(road_top, h), rng.randint(20, 90) * SS
        stain = (px - r, py - r / 4, px + r, py + r / 4)
        paint(img, lambda d, stain=stain: d.ellipse(stain, fill=255), (40, 40, 44), 18)
    # Lane markings in perspective towards a vanishing point on the horizon.
    vx, vy = w * 0.5, horizon
    steps = 14
    for end_x, dashed in ((-w * 0.9, False), (w * 1.6, True)):
        for i in range(steps):
            t0, t1 = (i / steps) ** 2, ((i + (0.55 if dashed else 1)) / steps) ** 2
            p0 = (vx + (end_x - vx) * t0, vy + (h - vy) * t0)
            p1 = (vx + (end_x - vx) * t1, vy + (h - vy) * t1)
            if p0[1] >= road_top:
                draw.line((p0, p1), fill=(225, 225, 215), width=max(SS, round(12 * SS * t1)))


# ---------------------------------------------------------------- car


def draw_car(img: Image.Image, scene: Scene, plate: Image.Image) -> None:
    """A car seen from behind or in front, centred at scene.cx, its tyres on scene.ground (supersampled)."""
    u = scene.car_w / 100 * SS
    cx, gy = scene.cx * SS, scene.ground * SS

    def p(x: float, y: float) -> Point:
        """Car coordinates (units of a hundredth of its width, y up from the ground) to image pixels."""
        return cx + x * u, gy + y * u

    def box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        return (*p(x0, y0), *p(x1, y1))

    def poly(pts: Sequence[Point]) -> list[Point]:
        return [p(x, y) for x, y in pts]

    body = scene.body
    front = scene.view == "front"
    # Soft contact shadow under the car.
    shadow = Image.new("L", img.size, 0)
    ImageDraw.Draw(shadow).ellipse(box(-58, -6, 58, 3), fill=170)
    shadow = shadow.filter(ImageFilter.GaussianBlur(5 * u))
    img.paste((20, 20, 22), None, shadow)

    draw = ImageDraw.Draw(img)
    for side in (-1, 1):  # tyres, only their lower part shows below the body
        x0, x1 = sorted((side * 31, side * 47))
        draw.rounded_rectangle(box(x0, -17, x1, 0), round(3 * u), fill=(24, 24, 26))
        draw.rounded_rectangle(box(x0 + 1.5, -15, x1 - 1.5, -1), round(2 * u), fill=(34, 34, 37))

    # Greenhouse (pillars and roof) in body colour, then the glass.
    cabin = [(-45, -56), (-41, -75), (-37, -81), (-31, -84), (31, -84), (37, -81), (41, -75), (45, -56)]
    paint_gradient(
        img,
        lambda d: d.polygon(poly(cabin), fill=255),
        box(-45, -84, 45, -56),
        shade(body, 1.15),
        shade(body, 0.8),
    )
    glass = [(-39, -58), (-36, -74), (-33, -79), (-28, -81), (28, -81), (33, -79), (36, -74), (39, -58)]
    paint_gradient(
        img, lambda d: d.polygon(poly(glass), fill=255), box(-39, -81, 39, -58), (96, 112, 128), (28, 34, 42)
    )
    if front:  # seats and a rear-view mirror behind the windscreen
        for sx in (-18, 18):
            draw.rounded_rectangle(box(sx - 9, -70, sx + 9, -58), round(3 * u), fill=(22, 24, 28))
        draw.rounded_rectangle(box(-5, -78, 5, -74.5), round(u), fill=(30, 30, 34))
    else:  # headrests seen through the rear window
        for sx in (-20, 20):
            draw.rounded_rectangle(box(sx - 7, -67, sx + 7, -60), round(2 * u), fill=(20, 22, 26))
    # Reflection of the sky across the glass.
    paint(
        img,
        lambda d: d.polygon(poly([(-30, -81), (-14, -81), (-32, -58), (-39, -58)]), fill=255),
        (230, 240, 250),
        55,
    )
    paint(
        img,
        lambda d: d.polygon(poly([(6, -81), (13, -81), (-2, -58), (-9, -58)]), fill=255),
        (230, 240, 250),
        35,
    )
    for side in (-1, 1):  # door mirrors
        x0, x1 = sorted((side * 45, side * 54))
        draw.rounded_rectangle(box(x0, -62, x1, -55), round(1.5 * u), fill=shade(body, 0.85))

    # Main body: a rounded slab shaded light at the top (sky) to dark at the sills.
    def slab(d: ImageDraw.ImageDraw) -> None:
        d.rounded_rectangle(box(-50, -58, 50, -9), round(8 * u), fill=255)

    paint_gradient(img, slab, box(-50, -58, 50, -9), shade(body, 1.25), shade(body, 0.55))
    # Darker flanks: the sides turn away from the camera.
    for side in (-1, 1):
        x0, x1 = sorted((side * 50, side * 43))
        paint(img, lambda d, x0=x0, x1=x1: d.rectangle(box(x0, -60, x1, -5), fill=255), (0, 0, 0), 45, slab)
    # Shoulder crease catching the light.
    draw.line((p(-46, -52), p(46, -52)), fill=shade(body, 1.45), width=max(1, round(0.7 * u)))
    # The bumper's top edge: a shadowed seam under a lit lip.
    draw.line((p(-49, -23), p(49, -23)), fill=shade(body, 0.45), width=max(1, round(0.5 * u)))
    draw.line((p(-49, -22.3), p(49, -22.3)), fill=shade(body, 1.2), width=max(1, round(0.4 * u)))

    if front:
        for side in (-1, 1):  # headlights
            outline = [(side * 47, -49), (side * 26, -47), (side * 25, -41), (side * 46, -42)]
            draw.polygon(poly(outline), fill=(70, 74, 80))
            inner = [(side * 45, -48), (side * 27, -46.5), (side * 26.5, -42.5), (side * 44.5, -43)]
            paint_gradient(
                img,
                lambda d, inner=inner: d.polygon(poly(inner), fill=255),
                box(-47, -49, 47, -42),
                (245, 247, 250),
                (170, 176, 186),
            )
            cxl = side * 38
            draw.ellipse(box(cxl - 3, -47.5, cxl + 3, -43), fill=(255, 255, 250))
            draw.line(
                (p(side * 44, -43.4), p(side * 28, -42.8)), fill=(255, 255, 255), width=max(1, round(0.6 * u))
            )
        # Grille with horizontal bars, a badge, then the bumper intake and fog lights.
        draw.rounded_rectangle(box(-21, -49, 21, -39), round(2.5 * u), fill=(28, 29, 32))
        for gy_bar in (-46.5, -44, -41.5):
            draw.line((p(-19, gy_bar), p(19, gy_bar)), fill=(70, 72, 76), width=max(1, round(0.5 * u)))
        draw.ellipse(box(-3, -46.5, 3, -41.5), fill=(200, 203, 208))
        draw.rounded_rectangle(box(-33, -20, 33, -12), round(2.5 * u), fill=(26, 27, 30))
        for side in (-1, 1):
            draw.ellipse(box(side * 41 - 3, -20, side * 41 + 3, -15), fill=(225, 225, 215))
        plate_cy = -29.0
    else:
        for side in (-1, 1):  # tail lights with a reversing lamp
            outline = [(side * 49.5, -55), (side * 29, -54), (side * 30, -45), (side * 49, -44)]
            draw.polygon(poly(outline), fill=(110, 8, 12))
            inner = [(side * 48, -54), (side * 31, -53), (side * 31.5, -46), (side * 47.5, -45.5)]
            paint_gradient(
                img,
                lambda d, inner=inner: d.polygon(poly(inner), fill=255),
                box(-49, -55, 49, -45),
                (235, 55, 55),
                (150, 12, 16),
            )
            rx = side * 40
            draw.rectangle(
                box(min(rx, rx + side * 5), -50.5, max(rx, rx + side * 5), -48), fill=(235, 235, 235)
            )
            x0, x1 = sorted((side * 46, side * 38))
            draw.rounded_rectangle(box(x0, -17, x1, -15.5), round(0.5 * u), fill=(160, 20, 20))  # reflector
        # Third brake light, the boot lid's gap, badge, diffuser and exhaust.
        draw.rounded_rectangle(box(-10, -80, 10, -79), round(0.5 * u), fill=(200, 20, 20))
        draw.line((p(-28, -57), p(28, -57)), fill=shade(body, 0.6), width=max(1, round(0.5 * u)))
        draw.ellipse(box(-3.5, -53, 3.5, -49), fill=(205, 208, 212))
        draw.rounded_rectangle(box(-44, -13, 44, -9), round(1.5 * u), fill=(32, 33, 36))
        draw.ellipse(box(28, -12.5, 35, -9.5), fill=(12, 12, 12))
        plate_cy = -36.0

    # Plate in a shallow recess, scaled from its own drawing resolution.
    pw = scene.plate_w * SS
    ph = round(pw * plate.height / plate.width)
    px, py = round(cx - pw / 2), round(gy + plate_cy * u - ph / 2)
    m = round(1.5 * u)
    draw.rounded_rectangle((px - m, py - m, px + pw + m, py + ph + m), round(u), fill=shade(body, 0.5))
    img.paste(plate.resize((pw, ph), Image.Resampling.LANCZOS), (px, py))
    # Plate lamp light falls on the top edge of a rear plate; a front plate gets a shadow from the bumper.
    top_tone = (255, 255, 240) if not front else (0, 0, 0)
    paint(img, lambda d: d.rectangle((px, py, px + pw, py + ph * 0.2), fill=255), top_tone, 25)


# ---------------------------------------------------------------- camera


def camera(img: Image.Image, rng: random.Random) -> Image.Image:
    """Lens softness, vignetting and sensor noise, so the frame does not look like a vector drawing."""
    img = img.filter(ImageFilter.GaussianBlur(0.6))
    w, h = img.size
    ring = Image.radial_gradient("L").resize((w, h), Image.Resampling.BILINEAR)
    vignette = ring.point(lambda v: 255 - round(60 * (v / 255) ** 2))
    img = ImageChops.multiply(img, Image.merge("RGB", (vignette, vignette, vignette)))
    # Less noise on the small frame: it stands for a low-resolution camera that sends compact PNGs.
    amp = 5 if w >= 640 else 2
    # random.Random.randbytes is seeded and portable, unlike Pillow's effect_noise (C rand()).
    noise = Image.frombytes("L", (w, h), rng.randbytes(w * h)).point(lambda v: v * (2 * amp + 1) // 256)
    return ImageChops.add(img, Image.merge("RGB", (noise, noise, noise)), scale=1.0, offset=-amp)


def render(scene: Scene, index: int) -> Image.Image:
    """The finished frame of `scene`; its randomness comes from SEED and its index only."""
    rng = random.Random(SEED * 100 + index)
    w, h = scene.size
    img = Image.new("RGB", (w * SS, h * SS))
    horizon = round(h * 0.5) * SS
    backdrop(img, scene.backdrop, horizon, rng)
    # The background is out of focus next to the car the camera is focused on.
    img = img.filter(ImageFilter.GaussianBlur(1.6 * SS * w / 1280))
    draw_car(img, scene, render_plate(scene))
    img = img.resize((w, h), Image.Resampling.LANCZOS)
    return camera(img, rng)


def versions() -> str:
    """The library versions that decide the exact bytes of the output."""
    return (
        f"Pillow {Image.__version__}, FreeType {features.version('freetype2')}, "
        f"libjpeg-turbo {features.version('libjpeg_turbo')}, zlib {features.version('zlib')}"
    )


README = """\
# Example camera images

- Generated by `examples/make_images.py` (run `python examples/make_images.py` to rebuild them).
- Synthetic scenes: no real photographs, cars or plates; the plate numbers follow real formats.
- `labels.tsv` lists each image with its plate (upper case, letters and digits only).
- License: same as the project, MIT.
- Byte-identical output needs the same libraries: {versions}.
"""


def write_all(out: Path) -> list[Path]:
    """Render every scene into `out` with labels.tsv and README.md; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index, scene in enumerate(SCENES):
        img = render(scene, index)
        path = out / scene.file
        if path.suffix == ".png":
            img.save(path, "PNG", optimize=True)
        else:
            img.save(path, "JPEG", quality=JPEG_QUALITY, optimize=True)
        written.append(path)
    labels = out / "labels.tsv"
    rows = ["set\timage\tplate"] + [f"{s.region}\t{s.file}\t{s.label}" for s in SCENES]
    labels.write_text("\n".join(rows) + "\n", encoding="utf-8")
    readme = out / "README.md"
    readme.write_text(README.format(versions=versions()), encoding="utf-8")
    return [*written, labels, readme]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    for path in write_all(args.out):
        print(f"{path}  {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
