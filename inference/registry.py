"""The one list of vertebra ids, names, regions and colours (DESIGN §3), and converters.

VerSe numbering: 1–7 = C1–C7, 8–19 = T1–T12, 20–24 = L1–L5, 25 = L6, 26 = sacrum/S1, 28 = T13,
0 = background. Imports nothing heavy (no numpy, no torch) so any module and the CLI can read it.
"""

from __future__ import annotations

import colorsys
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Vertebra:
    id: int
    name: str
    region: str  # "cervical" | "thoracic" | "lumbar" | "sacral"
    color: tuple[int, int, int]  # display RGB 0–255
    order: int  # cranio-caudal position: C1 = 0, ..., T12, T13, L1, ..., L5, L6, sacrum


LEVEL_HUES = (0.58, 0.17, 0.75, 0.35, 0.11, 0.50, 0.25)
"""Hues (0–1) given to the levels in turn, cranio-caudal: neighbours always differ in hue (azure, yellow, violet,
green, orange, cyan, lime), and one hue comes back only seven levels further on. No red: red is the lesion
overlay's."""
_REGION_SV = {"cervical": (0.45, 1.0), "thoracic": (0.65, 0.95), "lumbar": (0.85, 0.85), "sacral": (0.85, 0.85)}
"""(saturation, value) per region: the region reads from how deep the colours are (cervical pale, lumbar
deep); the name beside each vertebra says the rest."""


def _build() -> tuple[Vertebra, ...]:
    names: list[tuple[int, str, str]] = []
    names += [(i, f"C{i}", "cervical") for i in range(1, 8)]
    names += [(7 + i, f"T{i}", "thoracic") for i in range(1, 13)]
    names += [(28, "T13", "thoracic")]
    names += [(19 + i, f"L{i}", "lumbar") for i in range(1, 6)]
    names += [(25, "L6", "lumbar"), (26, "S1", "sacral")]
    out = []
    for order, (vid, name, region) in enumerate(names):
        sat, val = _REGION_SV[region]
        turn, k = divmod(order, len(LEVEL_HUES))
        val *= 1.0 - 0.15 * (turn % 2)  # a hue that comes back is a little darker: no two levels alike
        rgb = colorsys.hsv_to_rgb(LEVEL_HUES[k], sat, val)
        out.append(Vertebra(vid, name, region, tuple(int(round(255 * c)) for c in rgb), order))
    return tuple(out)


VERTEBRAE: tuple[Vertebra, ...] = _build()
"""All vertebrae in cranio-caudal order (T13 after T12, L6 after L5)."""

BY_ID: dict[int, Vertebra] = {v.id: v for v in VERTEBRAE}
BY_NAME: dict[str, Vertebra] = {v.name: v for v in VERTEBRAE}
VALID_IDS: frozenset[int] = frozenset(BY_ID)
BACKGROUND = 0

LEVEL_ORDER: tuple[int, ...] = tuple(v.id for v in VERTEBRAE)
"""VerSe ids in cranio-caudal order (C1 … T12, T13, L1 … L5, L6, S1): the one level order."""

TRANSITIONAL: frozenset[int] = frozenset({BY_NAME["T13"].id, BY_NAME["L6"].id})
"""T13 and L6 exist in a few percent of people only: level counts pass over them unless one is present."""

# TotalSegmentator v2 "total" task: 25 sacrum, 26 S1, 27 L5, ..., 49 C2, 50 C1. Both the sacrum and
# S1 classes map to our single sacrum/S1 id 26.
_TS_TOTAL_NAMES = ["sacrum", "S1", "L5", "L4", "L3", "L2", "L1"] + [f"T{i}" for i in range(12, 0, -1)] + [
    f"C{i}" for i in range(7, 0, -1)
]
TOTALSEG_TOTAL_TO_VERSE: dict[int, int] = {
    25 + n: (26 if name in ("sacrum", "S1") else BY_NAME[name].id) for n, name in enumerate(_TS_TOTAL_NAMES)
}

_TS_FILE = re.compile(r"^(?:vertebrae_(?P<name>[CTLS]\d{1,2})|(?P<sacrum>sacrum))\.nii(?:\.gz)?$", re.IGNORECASE)


def by_id(vid: int) -> Vertebra:
    """The vertebra with VerSe id ``vid``; `KeyError` for unknown ids."""
    return BY_ID[int(vid)]


def name_of(vid: int) -> str:
    return BY_ID[int(vid)].name


def id_of(name: str) -> int:
    """VerSe id of a vertebra name (``"L3"``, ``"t13"``, ``"sacrum"``, ``"S1"``)."""
    key = name.strip().upper()
    if key in ("SACRUM", "S"):
        key = "S1"
    try:
        return BY_NAME[key].id
    except KeyError:
        raise KeyError(f"unknown vertebra name {name!r}") from None


def from_totalseg_total(ts_id: int) -> int | None:
    """VerSe id for a TotalSegmentator v2 ``total`` class id, or ``None`` for non-vertebra classes."""
    return TOTALSEG_TOTAL_TO_VERSE.get(int(ts_id))


def from_totalseg_filename(filename: str) -> int | None:
    """VerSe id for a TotalSegmentator mask file name (``vertebrae_L3.nii.gz``, ``sacrum.nii.gz``).

    Returns ``None`` for files that are not vertebra masks (organs, ribs, ...).
    """
    m = _TS_FILE.match(filename)
    if not m:
        return None
    if m.group("sacrum"):
        return 26
    try:
        return id_of(m.group("name"))
    except KeyError:
        return None


def sort_ids(ids) -> list[int]:
    """Vertebra ids in cranio-caudal order (C1 first, sacrum last)."""
    return sorted((int(i) for i in ids), key=lambda i: BY_ID[i].order)


def level_positions(present) -> dict[int, int]:
    """Cranio-caudal position of every level, counting T13 and L6 only when among ``present``.

    Without this, T12 → L1 would be two steps (T13 sits between them in `LEVEL_ORDER`) in the usual
    spine that has no T13.
    """
    present = set(int(i) for i in present)
    seq = [vid for vid in LEVEL_ORDER if vid not in TRANSITIONAL or vid in present]
    return {vid: n for n, vid in enumerate(seq)}


def neighbours(vid: int) -> tuple[list[int], list[int]]:
    """Ids one level above and below ``vid``, as a ±1 shift counts them: T12 and T13 both lie one
    level above L1 (a transitional level is a detour, not a step)."""
    k = LEVEL_ORDER.index(int(vid))
    out: list[list[int]] = []
    for step in (-1, +1):
        ids: list[int] = []
        j = k + step
        while 0 <= j < len(LEVEL_ORDER):
            ids.append(LEVEL_ORDER[j])
            if LEVEL_ORDER[j] not in TRANSITIONAL:
                break
            j += step
        out.append(ids)
    return out[0], out[1]


def parse_level_range(text: str) -> list[int]:
    """``"T10-L5"`` → ids of T10 … L5 in cranio-caudal order (a single name gives one level)."""
    parts = [p for p in re.split(r"\s*[-–:]\s*", text.strip()) if p]
    if len(parts) not in (1, 2):
        raise ValueError(f"level range {text!r}: expected e.g. 'T10-L5'")
    a, b = BY_ID[id_of(parts[0])].order, BY_ID[id_of(parts[-1])].order
    lo, hi = min(a, b), max(a, b)
    return [v.id for v in VERTEBRAE if lo <= v.order <= hi]
