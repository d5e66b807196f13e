"""Plausibility checks: a scan's intensities (Hounsfield units?) and a segmentation's volume for
the level and contact with neighbours.

Reference figures come from the real vertebra masks of the shape library (assets/shapes, VerSe and
TotalSegmentator label maps) and from reference label maps: neighbouring vertebrae share at most
~1100 mm² of mask surface (facet joints, endplates at low resolution); more means two masks leak
into each other.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
from scipy import ndimage

from . import registry
from .assets import assets_dir
from .measure import label_boxes, union_box, vertebra_volumes_ml
from .volume import Volume

SHAPES_JSON = assets_dir() / "shapes" / "shapes.json"
TOUCH_MM2 = 1500.0
"""Mask interface above which two vertebrae are flagged ``touching_neighbour``."""
VOLUME_SLACK = (0.6, 1.5)
"""A volume outside [0.6 × smallest, 1.5 × largest] library volume of its level is ``implausible_volume``."""
NO_DARKER_THAN_HU = -200.0
"""A CT in Hounsfield units holds air (-1000) or at least fat (-100) around the spine; a scan whose
darkest voxel is brighter than this was likely exported through a display window (the bone-window
row of docs/localization.md: names 4 of 18 right instead of 9) or is not in HU at all."""
NO_BRIGHTER_THAN_HU = 300.0
"""Cortical bone reads 500-1500 HU; a scan with nothing brighter than this shows no bone in HU."""
METAL_HU = 2500.0
"""Above the densest cortical bone (about 1500-2000 HU): screws, rods, cages, dense cement. Scanners without
an extended HU scale clip metal at 3071, which is still above this."""
METAL_REACH_MM = 10.0
"""Metal this close to a vertebra's mask (its streaks and blooming reach that far) flags it ``metal_nearby``."""
METAL_MIN_ML = 0.02
"""Less metal than this (a few voxels at 1 mm: noise, a calcified speck at a clipped scale) is ignored."""


def intensity_notes(ct: Volume) -> list[str]:
    """Case-level warnings for a scan whose values do not look like Hounsfield units of a CT with bone."""
    if ct.array.size == 0:
        return []
    lo, hi = float(np.min(ct.array)), float(np.max(ct.array))
    notes = []
    if lo > NO_DARKER_THAN_HU:
        notes.append(f"the scan holds nothing darker than {lo:g} HU (air reads about -1000 HU, fat -100): it was "
                     "probably exported through a display window or is not in Hounsfield units, and the models "
                     "fail on such scans; analyze the original CT series")
    if hi < NO_BRIGHTER_THAN_HU:
        notes.append(f"the scan holds nothing brighter than {hi:g} HU (bone reads 500-1500 HU): no bone in view, "
                     "or the values are not Hounsfield units")
    return notes


@lru_cache(maxsize=1)
def volume_ranges() -> dict[int, tuple[float, float]]:
    """VerSe id → (min, max) volume in ml of the real masks of that level in the shape library."""
    shapes = json.loads(SHAPES_JSON.read_text())["shapes"]
    out: dict[int, list[float]] = {}
    for s in shapes:
        if s.get("derived") or s.get("cut") or s.get("compressed") or s.get("volume_ml") is None:
            continue
        out.setdefault(int(s["id"]), []).append(float(s["volume_ml"]))
    ranges = {vid: (min(v), max(v)) for vid, v in out.items()}
    # transitional levels take the range of the level they resemble; levels without a real mask
    # in the library take the span of their nearest known neighbours
    for extra, like in (("T13", "T12"), ("L6", "L5")):
        if registry.id_of(like) in ranges:
            ranges.setdefault(registry.id_of(extra), ranges[registry.id_of(like)])
    order = registry.sort_ids(list(registry.VALID_IDS))
    known = [n for n, vid in enumerate(order) if vid in ranges]
    for n, vid in enumerate(order):
        if vid in ranges or not known:
            continue
        above = [m for m in known if m < n][-1:]
        below = [m for m in known if m > n][:1]
        near = [ranges[order[m]] for m in above + below]
        ranges[vid] = (min(r[0] for r in near), max(r[1] for r in near))
    return ranges


def implausible_volume(vid: int, volume_ml: float) -> bool:
    lo_hi = volume_ranges().get(int(vid))
    if lo_hi is None:
        return False
    return not (VOLUME_SLACK[0] * lo_hi[0] <= volume_ml <= VOLUME_SLACK[1] * lo_hi[1])


def contact_areas(labels: Volume) -> dict[tuple[int, int], float]:
    """Shared mask surface (mm²) of every pair of different labels that touch (6-neighbourhood)."""
    boxes = label_boxes(labels)
    if len(boxes) < 2:
        return {}
    arr = np.asarray(labels.array)[union_box(boxes.values())]  # a spine fills a small part of a CT-size map
    sx, sy, sz = labels.spacing
    face = {0: sx * sy, 1: sx * sz, 2: sy * sz}  # array axes k, j, i
    out: dict[tuple[int, int], float] = {}
    for ax in range(3):
        a = arr[tuple(slice(None, -1) if d == ax else slice(None) for d in range(3))]
        b = arr[tuple(slice(1, None) if d == ax else slice(None) for d in range(3))]
        m = (a != b) & (a > 0) & (b > 0)
        if not m.any():
            continue
        lo, hi = np.minimum(a[m], b[m]).astype(np.int32), np.maximum(a[m], b[m]).astype(np.int32)
        pairs, counts = np.unique(lo * 256 + hi, return_counts=True)
        for p, c in zip(pairs.tolist(), counts.tolist(), strict=True):
            key = (p // 256, p % 256)
            out[key] = out.get(key, 0.0) + c * face[ax]
    return out


def mask_flags(labels: Volume, partial: set[int]) -> tuple[dict[int, list[str]], list[str]]:
    """Per-vertebra flags and case notes for a predicted label map.

    ``partial`` holds the ids already known to be cut by the field of view (their volume is not
    judged).
    """
    flags: dict[int, list[str]] = {}
    notes: list[str] = []
    for vid, ml in vertebra_volumes_ml(labels).items():
        if vid in partial:
            continue
        if implausible_volume(vid, ml):
            lo, hi = volume_ranges()[vid]
            library = f"{lo:.0f} ml, one shape" if round(lo) == round(hi) else f"{lo:.0f}–{hi:.0f} ml"
            flags.setdefault(vid, []).append("implausible_volume")
            notes.append(f"{registry.name_of(vid)}: mask volume {ml:.1f} ml is unusual for its level "
                         f"(library {library}): check the mask and the label")
    for (a, b), area in sorted(contact_areas(labels).items()):
        if area > TOUCH_MM2:
            for vid in (a, b):
                flags.setdefault(vid, []).append("touching_neighbour")
            notes.append(f"{registry.name_of(a)} and {registry.name_of(b)} masks share {area:.0f} mm² of "
                         "surface: they may have leaked into each other")
    return flags, notes


def metal_flags(labels: Volume, hu: np.ndarray) -> tuple[dict[int, list[str]], list[str]]:
    """``metal_nearby`` for every vertebra with at least `METAL_MIN_ML` of voxels of `METAL_HU` or more within
    `METAL_REACH_MM` of its mask, and one case note naming them. ``hu``: the CT values on ``labels``' grid
    (same shape). Masks, centres and screw grades near implants are less reliable: the networks never saw
    hardware on real CT, and its streaks change the bone around it."""
    hu = np.asarray(hu)
    if hu.shape != labels.array.shape:
        raise ValueError(f"the CT values ({hu.shape}) are not on the label map's grid ({labels.array.shape})")
    if hu.size == 0 or float(hu.max()) < METAL_HU:
        return {}, []
    spacing_kji = np.asarray(labels.spacing, float)[::-1]
    reach = np.ceil(METAL_REACH_MM / spacing_kji).astype(int)
    voxel_ml = float(np.prod(spacing_kji)) / 1000.0
    flags: dict[int, list[str]] = {}
    for vid, box in label_boxes(labels).items():
        near = tuple(slice(max(b.start - r, 0), min(b.stop + r, n))
                     for b, r, n in zip(box, reach, labels.array.shape, strict=True))
        metal = hu[near] >= METAL_HU
        if metal.sum() * voxel_ml < METAL_MIN_ML:
            continue
        outside = ndimage.distance_transform_edt(labels.array[near] != vid, sampling=spacing_kji)
        if np.count_nonzero(metal & (outside <= METAL_REACH_MM)) * voxel_ml >= METAL_MIN_ML:
            flags[vid] = ["metal_nearby"]
    notes = []
    if flags:
        names = ", ".join(registry.name_of(v) for v in registry.sort_ids(flags))
        notes.append(f"metal (≥ {METAL_HU:.0f} HU) in or within {METAL_REACH_MM:.0f} mm of {names}: implants and "
                     "their streaks make the masks, centres and screw grades there less reliable; check them by eye")
    return flags, notes
