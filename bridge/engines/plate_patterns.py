"""Licence-plate layouts per region code, the hints that steer the local engine's reading."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import cache

# A layout is one character class per position: L a letter, D a digit, A either. Only the layouts in
# current or long-standing use are listed; a region missing here reads without a layout.
PLATE_LAYOUTS: dict[str, tuple[str, ...]] = {
    # Brazil: Mercosul since 2018, and the grey plates it replaces.
    "br": ("LLLDLDD", "LLLDDDD"),
    "ar": ("LLDDDLL", "LLLDDD"),
    "uy": ("LLLDDDD",),
    "py": ("LLLLDDD", "LLLDDDD"),
    "cl": ("LLLLDD", "LLDDDD"),
    "it": ("LLDDDLL",),
    "fr": ("LLDDDLL",),
    "es": ("DDDDLLL",),
    "pt": ("LLDDLL", "DDLLDD", "DDDDLL", "LLDDDD"),
    "gb": ("LLDDLLL",),
    "ie": ("DDLDDDDDD", "DDDLDDDDD", "DDLLDDDDD", "DDDLLDDDD"),
    "pl": ("LLDDDDD", "LLLDDDD", "LLDDDLL", "LLLDDLL", "LLLLDDD"),
    "cz": ("DLDDDDD", "DLLDDDD"),
    "sk": ("LLDDDLL",),
    "hu": ("LLLDDD", "LLLLDDD"),
    "ro": ("LLDDLLL", "LDDLLL", "LDDDLLL"),
    "bg": ("LLDDDDLL", "LDDDDLL"),
    "hr": ("LLDDDLL", "LLDDDDLL"),
    "si": ("LLLLDDD",),
    "gr": ("LLLDDDD",),
    "se": ("LLLDDD", "LLLDDL"),
    "fi": ("LLLDDD",),
    "dk": ("LLDDDDD",),
    "no": ("LLDDDDD",),
    "lt": ("LLLDDD",),
    "lv": ("LLDDDD",),
    "ee": ("DDDLLL",),
    "at": ("LDDDDLL", "LLDDDLL", "LLDDDDL"),
    "ch": ("LLDDDDDD", "LLDDDDD", "LLDDDD"),
    # Germany: district (1-3 letters), 1-2 letters, 1-4 digits; a regular expression says it better.
    "de": ("re:[A-Z]{2,5}[0-9]{1,4}[EH]?",),
    "nl": ("LLDDDL", "LDDDLL", "LLLDDL", "LDDLLL", "DLLLDD", "DDLLLD", "LLDDLL", "DDLLDD"),
    "be": ("DLLLDDD",),
    "lu": ("LLDDDD",),
    # United States: layouts many states issue (LLDLDL is Missouri's); others and vanity plates read with
    # the generic rule only.
    "us": ("DLLLDDD", "LLLDDDD", "LLLDDD", "DDDLLL", "DLLDDD", "LLDDDDD", "LLDLDL"),
    "ca": ("LLLLDDD", "LLLDDD", "DDDLLL", "LLLDDDD"),
    "mx": ("LLLDDDL", "LLDDDDL"),
    "au": ("LLLDDL", "DLLDLL", "LLLDDD", "DLLLDDD"),
}

# Regions whose serials (outside vanity plates) mostly avoid the letter O, so a round glyph reads as 0.
REGIONS_WITHOUT_LETTER_O = frozenset({"us", "ca"})

# Regions tried, in this order, when the caller gives none: with no hint the layouts only rank.
DEFAULT_REGION_ORDER: tuple[str, ...] = tuple(PLATE_LAYOUTS)

# A generic plate: 4 to 8 letters and digits with at least one digit (vanity plates rarely lack one).
GENERIC_PLATE = re.compile(r"^(?=.*[0-9])[A-Z0-9]{4,8}$")


def base_region(code: str) -> str:
    """The country of a region code: `us-ca` -> `us`; `br_sc` (as the API lists it) -> `br`."""
    return code.lower().replace("_", "-").split("-")[0]


@cache
def _compiled(layout: str) -> re.Pattern[str]:
    if layout.startswith("re:"):
        return re.compile(f"^{layout[3:]}$")
    classes = {"L": "[A-Z]", "D": "[0-9]", "A": "[A-Z0-9]"}
    return re.compile("^" + "".join(classes[symbol] for symbol in layout) + "$")


def layouts_for(regions: Iterable[str]) -> list[str]:
    """The fixed-position layouts (no regular expressions) of the given regions, without repeats."""
    found: list[str] = []
    for region in regions:
        for layout in PLATE_LAYOUTS.get(base_region(region), ()):
            if not layout.startswith("re:") and layout not in found:
                found.append(layout)
    return found


def matching_regions(plate: str, regions: Sequence[str]) -> list[str]:
    """The regions among `regions` (given codes, kept as given) whose layouts fit `plate` (upper case)."""
    return [
        region
        for region in regions
        if any(_compiled(layout).match(plate) for layout in PLATE_LAYOUTS.get(base_region(region), ()))
    ]


def fits_layout(plate: str, regions: Sequence[str]) -> bool:
    """True when `plate` fits a layout of one of `regions`."""
    return bool(matching_regions(plate, regions))
