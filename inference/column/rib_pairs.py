"""Which vertebrae carry ribs, read from bone (DESIGN §1: name the column from anatomical anchors).

The last rib pair is the landmark a reader counts the thoracolumbar junction from: ribs at T12, none at
L1. The segmenter's rib channel (`inference.ribs`) sees little of the thin real 11th and 12th ribs (the
sample CT's T12 and L1 fall in the same bin), so here ribs are read from the CT itself, once every
candidate has a mask:

- bone (at least `BONE_HU`; a bone-window export's own threshold where it is lower) outside every
  vertebra mask grown by `MASK_MARGIN_VOX` voxels, on an LPS grid of `GRID_MM` around the column, within
  `LATERAL_MM` to either side of the line through the vertebrae's centres and `AP_MM` about it;
- a connected piece of it is a rib on one side when it starts within `NECK_MM` of the centre line and
  runs out beyond `REACH_MM` (transverse processes end short of that, and they are their vertebra's own
  mask) and holds `MIN_ML` to `MAX_ML` of bone (more: an ilium, or vessels full of contrast merged
  with bone);
- the rib belongs to the vertebra whose mask it touches most (within `TOUCH_MM`) at its medial end
  (the part within `NECK_MM` + 10 mm of the centre line and `NECK_AP_MM` about it: the head and neck,
  behind the body's centre, where the aorta is not).

A side is unknown (None) where no rib was seen and the scan does not reach `REACH_MM` beside the vertebra,
or does not hold the span a rib of this vertebra runs through (`RIB_SPAN_MM`: from just above the centre to
well below it, as ribs descend). Both sides are unknown for a vertebra whose centre lies within
`MIN_PITCH_MM` of another's: two detections of one vertebra (one of them would
take its rib and the other, named one level lower, none) or candidates off the column.
Seeing no rib says little on its own (a short 12th rib, a field of view cut behind the bodies, synthetic
ribs dimmed toward soft tissue), so the naming reads only what is seen (`inference.label`), and the
last-rib anchor asks for a rib at the vertebra named T12 (or T13) and, with both sides in view, none at L1.

Measured on the real cases of docs/localization.md (2026-12-07, the shipped pipeline's masks; 6 scans,
up to 6 conditions each): ribs were seen only beside true thoracic vertebrae (never beside a lumbar
vertebra or the sacrum); the sample's and the small crop's T12 on both sides, as acquired, with noise and
display-windowed, on one side bone-windowed, with 5 mm slices and cut to 120 mm; the chest DICOM's T2-T10
on both sides (its first rib leaves T1 inside T1's mask and is not seen; T11 sits at the scan's edge).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..preprocess import WorkingGrid, resample_ct, resample_labels
from ..volume import Volume
from .track import BONE_HU_WINDOWED, looks_bone_windowed

GRID_MM = 1.5
BONE_HU = 150.0
"""Rib cortex after resampling to `GRID_MM`: thin ribs fall below the tracker's 200 HU with 5 mm slices or
a display window that saturates bone at 240 HU."""
MASK_MARGIN_VOX = 2
LATERAL_MM = 110.0
AP_MM = (-50.0, 70.0)
"""About the vertebrae's centre line (LPS y; posterior positive): ribs run back from the heads, then forward."""
NECK_MM = 35.0
REACH_MM = 60.0
MIN_ML, MAX_ML = 0.2, 15.0
"""Rib pieces in the box held 1.1-9.0 ml on the real cases; an ilium cut by a 120 mm field of view 23 ml."""
NECK_AP_MM = (-20.0, 45.0)
TOUCH_MM = 4.5
MIN_NECK_ML = 0.05
RIB_SPAN_MM = (-28.0, 20.0)
"""Along the scan's axis about the vertebra's centre (superior positive): the scan must hold this for "no rib".
Where the ribs seen on the real cases cross `REACH_MM` (55-65 mm out): from 25 mm below their vertebra's centre
to 19 mm above it (its mask's centroid lies behind and above the body's centre in the upper chest)."""
MIN_PITCH_MM = 15.0
"""Closest two vertebrae's centres can lie (cervical: ~15 mm; the thoracolumbar junction ~30 mm). A vertebra cut by
the scan's edge has its centre pulled toward its neighbour: the sample's T11 sliver lies 14 mm above T12's centre
along the scan's axis, 24 mm away in all."""


@dataclass(frozen=True)
class RibSides:
    """Ribs seen beside one vertebra: True (seen), False (in view, none), None (not in view)."""

    left: bool | None
    right: bool | None

    @property
    def seen(self) -> bool:
        return bool(self.left) or bool(self.right)

    @property
    def absent(self) -> bool:
        """Both sides in view and no rib on either."""
        return self.left is False and self.right is False


def rib_sides(ct: Volume, labels: Volume, centers: dict[int, np.ndarray]) -> dict[int, RibSides]:
    """The ribs beside each vertebra ``tag`` of ``centers`` (LPS mm), whose mask is ``labels == tag``
    (a label map on ``ct``'s grid). See the module docstring."""
    if len(centers) == 0:
        return {}
    tags = list(centers)
    c = np.array([centers[t] for t in tags], dtype=float)
    grid = _grid_around(c)
    hu = resample_ct(ct, grid)
    lab = resample_labels(labels, grid)  # tags below 256: candidates are at most a few dozen
    thr = min(BONE_HU, BONE_HU_WINDOWED) if looks_bone_windowed(ct) else BONE_HU
    o, s = np.asarray(grid.origin), grid.spacing
    k, j, i = hu.shape
    zs = o[2] + s * np.arange(k)
    order = np.argsort(c[:, 2])
    xc = np.interp(zs, c[order, 2], c[order, 0])
    yc = np.interp(zs, c[order, 2], c[order, 1])
    dx = np.broadcast_to((o[0] + s * np.arange(i))[None, None, :] - xc[:, None, None], hu.shape)
    dy = np.broadcast_to((o[1] + s * np.arange(j))[None, :, None] - yc[:, None, None], hu.shape)
    box = (np.abs(dx) <= LATERAL_MM) & (dy >= AP_MM[0]) & (dy <= AP_MM[1])
    bone = (hu >= thr) & box & ~ndi.binary_dilation(lab > 0, iterations=MASK_MARGIN_VOX)
    pieces, n = ndi.label(bone, structure=np.ones((3, 3, 3)))
    seen: dict[int, set[str]] = {t: set() for t in tags}
    vox_ml = s**3 / 1000.0
    piece_ml = np.bincount(pieces.ravel(), minlength=n + 1) * vox_ml
    sized = (piece_ml >= MIN_ML) & (piece_ml <= MAX_ML)
    margin = int(round(TOUCH_MM / s)) + 3
    for p, sl in enumerate(ndi.find_objects(pieces), start=1):
        if sl is None or not sized[p]:  # a speck of noise or an ilium: no slicing needed
            continue
        sl = tuple(slice(max(0, x.start - margin), x.stop + margin) for x in sl)  # room for the touched mask
        piece = pieces[sl] == p
        for side, sign in (("left", 1.0), ("right", -1.0)):  # LPS: +x is the patient's left
            out = dx[sl] * sign
            if not (piece & (out > 0) & (out <= NECK_MM)).any() or not (piece & (out >= REACH_MM)).any():
                continue
            neck = piece & (out > 0) & (out <= NECK_MM + 10.0) & (dy[sl] >= NECK_AP_MM[0]) & (dy[sl] <= NECK_AP_MM[1])
            tag = _touched(neck, lab[sl], s)
            if tag in seen:
                seen[tag].add(side)
    lo, hi = ct.physical_bounds()
    crowded = _crowded(c)
    result = {}
    for n, (t, centre) in enumerate(zip(tags, c, strict=True)):
        if crowded[n]:
            result[t] = RibSides(None, None)
            continue
        spans = lo[2] <= centre[2] + RIB_SPAN_MM[0] and centre[2] + RIB_SPAN_MM[1] <= hi[2]
        sides = {}
        for side, sign in (("left", 1.0), ("right", -1.0)):
            in_view = spans and lo[0] <= centre[0] + sign * (REACH_MM + 5.0) <= hi[0]
            sides[side] = True if side in seen[t] else (False if in_view else None)
        result[t] = RibSides(**sides)
    return result


def _crowded(c: np.ndarray) -> np.ndarray:
    """Which of the centres ``c`` (LPS mm) has another within `MIN_PITCH_MM`."""
    d = np.linalg.norm(c[:, None, :] - c[None, :, :], axis=-1)
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1) < MIN_PITCH_MM


def _grid_around(c: np.ndarray) -> WorkingGrid:
    """An LPS grid of `GRID_MM` holding the box about the centres that `rib_sides` looks in."""
    lo = np.array([c[:, 0].min() - LATERAL_MM, c[:, 1].min() + AP_MM[0], c[:, 2].min() - 40.0])
    hi = np.array([c[:, 0].max() + LATERAL_MM, c[:, 1].max() + AP_MM[1], c[:, 2].max() + 40.0])
    size = np.maximum(1, np.ceil((hi - lo) / GRID_MM)).astype(int)
    return WorkingGrid(tuple(float(x) for x in lo), GRID_MM, tuple(int(x) for x in size))


def _touched(neck: np.ndarray, lab: np.ndarray, spacing: float) -> int | None:
    """The tag whose mask ``neck`` (a rib's medial end) touches most, within `TOUCH_MM`; None if none."""
    if neck.sum() * spacing**3 / 1000.0 < MIN_NECK_ML:
        return None
    grown = ndi.binary_dilation(neck, iterations=max(1, int(round(TOUCH_MM / spacing))) + 2)
    near = lab[grown]
    near = near[near > 0]
    if near.size == 0:
        return None
    values, counts = np.unique(near, return_counts=True)
    return int(values[np.argmax(counts)])
