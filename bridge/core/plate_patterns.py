"""Licence-plate layouts per region code, the hints that steer the local engine's reading."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from functools import cache

# A layout is one character class per position: L a letter, D a digit, N a digit but 0, A either. Only
# the layouts in current or long-standing use are listed; a region missing here reads without a layout.
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
    "cz": ("NLDDDDD", "NLLDDDD"),  # the first digit numbers a series from 1
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
    "be": ("NLLLDDD",),
    "lu": ("LLDDDD",),
    # United States: layouts many states issue (LLDLDL is Missouri's); others and vanity plates read with
    # the generic rule only.
    "us": ("NLLLDDD", "LLLDDDD", "LLLDDD", "DDDLLL", "DLLDDD", "LLDDDDD", "LLDLDL"),
    "ca": ("LLLLDDD", "LLLDDD", "DDDLLL", "LLLDDDD"),
    "mx": ("LLLDDDL", "LLDDDDL"),
    "au": ("LLLDDL", "DLLDLL", "LLLDDD", "DLLLDDD"),
}

# Regions whose serials (outside vanity plates) mostly avoid the letter O, so a round glyph reads as 0.
REGIONS_WITHOUT_LETTER_O = frozenset({"us", "ca"})

# What a plate shows of its country besides its serial (`local.ranking.rank_candidates`'s `cue`):
# - EU_BAND: the blue band with the country's letters left of the characters (EU Regulation 2411/98; the
#   EEA and the UK issued it too), as `local.cues.band_edge` finds it;
# - EU_BAND_STRIPED: the band, and a red stripe along the plate's top and bottom edges as Austria's
#   plates have (red-white-red, the flag's colours): no other country on the band draws them;
# - US_STATE: a US state's name printed above or below the characters.
EU_BAND, EU_BAND_STRIPED, US_STATE = "eu", "eu-striped", "us-state"
STRIPED_REGIONS = frozenset({"at"})
EU_BAND_REGIONS = frozenset(
    {
        "it", "fr", "es", "pt", "gb", "ie", "pl", "cz", "sk", "hu", "ro", "bg", "hr", "si", "gr", "se",
        "fi", "dk", "no", "lt", "lv", "ee", "at", "de", "nl", "be", "lu",
    }
)  # fmt: skip

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
    classes = {"L": "[A-Z]", "D": "[0-9]", "N": "[1-9]", "A": "[A-Z0-9]"}
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
    return bool(_any_layout(tuple(regions)).match(plate))


@cache
def _any_layout(regions: tuple[str, ...]) -> re.Pattern[str]:
    """One expression for every layout of `regions` (a plate is checked against them all, often)."""
    layouts = {layout for region in regions for layout in PLATE_LAYOUTS.get(base_region(region), ())}
    return re.compile("|".join(f"(?:{_compiled(layout).pattern})" for layout in sorted(layouts)) or "(?!)")


US_STATE_NAMES = (
    "ALABAMA", "ALASKA", "ARIZONA", "ARKANSAS", "CALIFORNIA", "COLORADO", "CONNECTICUT", "DELAWARE",
    "FLORIDA", "GEORGIA", "HAWAII", "IDAHO", "ILLINOIS", "INDIANA", "IOWA", "KANSAS", "KENTUCKY",
    "LOUISIANA", "MAINE", "MARYLAND", "MASSACHUSETTS", "MICHIGAN", "MINNESOTA", "MISSISSIPPI", "MISSOURI",
    "MONTANA", "NEBRASKA", "NEVADA", "NEWHAMPSHIRE", "NEWJERSEY", "NEWMEXICO", "NEWYORK",
    "NORTHCAROLINA", "NORTHDAKOTA", "OHIO", "OKLAHOMA", "OREGON", "PENNSYLVANIA", "RHODEISLAND",
    "SOUTHCAROLINA", "SOUTHDAKOTA", "TENNESSEE", "TEXAS", "UTAH", "VERMONT", "VIRGINIA", "WASHINGTON",
    "WESTVIRGINIA", "WISCONSIN", "WYOMING",
)  # fmt: skip


def names_us_state(text: str) -> bool:
    """True when a read line is a US state's name (as plates print it: alone, or in a slogan).

    Names of 6 letters or more may sit inside a longer line (`WISCONSIN AMERICA'S DAIRYLAND`) or miss a
    letter; shorter ones (OHIO, UTAH, IOWA...) must be the whole line, or too many words would contain one.
    """
    letters = "".join(symbol for symbol in text.upper() if "A" <= symbol <= "Z")
    for name in US_STATE_NAMES:
        if letters == name or (len(name) >= 6 and name in letters):
            return True
        near_in_length = len(name) >= 7 and abs(len(letters) - len(name)) <= 1
        if near_in_length and difflib.SequenceMatcher(None, letters, name).ratio() >= 0.85:
            return True
    return False


def regions_for_cue(cue: str | None) -> tuple[str, ...]:
    """The regions whose plates may look like this: the EU's for its band (Austria only with its red
    stripes), the US for a state's name, else all (a cue may be missed).

    Stripes seen do not make a plate Austrian (a red car above and below a plate looks the same), but a
    band without them rules Austria out: its layouts would otherwise read Slovak, Italian or French
    `LLDDDLL` plates with a look-alike in sixth place as `LLDDDDL` (BA302OZ as BA3020Z).
    """
    if cue == EU_BAND:
        return tuple(
            region
            for region in DEFAULT_REGION_ORDER
            if region in EU_BAND_REGIONS and region not in STRIPED_REGIONS
        )
    if cue == EU_BAND_STRIPED:
        return tuple(region for region in DEFAULT_REGION_ORDER if region in EU_BAND_REGIONS)
    if cue == US_STATE:
        return ("us",)
    return DEFAULT_REGION_ORDER


def infer_country(plate: str, cue: str | None) -> str | None:
    """The one country whose published layouts fit `plate` (upper case), or None.

    No hint given, a country is only named when nothing else fits: among the EU's when the plate shows the
    EU band, among all known otherwise (older EU plates have no band). Several countries fitting (Slovak
    and Italian plates share a layout, Californian and Belgian ones too) name none: a wrong country is
    worse than none.
    """
    countries = {base_region(region) for region in matching_regions(plate, regions_for_cue(cue))}
    return countries.pop() if len(countries) == 1 else None
