"""The sacrum's centre from the bone below L5 (DESIGN §1: place what the column shows, not one heatmap peak).

The localizer's sacrum point is its least sure one: on the sample CT it sits on S1's body, 29 mm above and
in front of the sacrum's centroid (18 mm on the bone-windowed scan's), and 5-19 mm off on held-out
synthetic CT, in no fixed direction. The segmenter centres the sacrum's tall crop there and was trained
with the crop on the centroid, so the mask stops at mid-sacrum (Dice 0.55 through the pipeline on the
sample against 0.80 from the reference centre; docs/experiments/README.md, "Sacrum-jitter fine-tune").

The sacrum is the bone below L5 between the sacro-iliac joints. In the frame of the column at L5 (``u``
from L4's centre to L5's, pointing to the feet; left-right and antero-posterior perpendicular to it), the
sacrum's point is the centroid of the bone voxels (the column tracker's threshold: 200 HU, 100 HU on a
bone-window export) that lie

- from half the L4-L5 distance below L5's centre (the L5/S1 disc) to `DEPTH_MM` further down,
- within `HALF_WIDTH_MM` of L5's centre left and right (the sacral body and the inner alae; the ilia lie
  beyond the joints at about ±40-50 mm),
- from `AP_MM[0]` in front of L5's centre to `AP_MM[1]` behind it.

Measured with the reference L4 and L5 centres: 4.3-4.9 mm from the reference sacrum centroid on the
sample CT as acquired, with noise, HU +100, bone-window export and display window (the localizer's point:
29 mm as acquired), and 3.0-7.2 mm on the five held-out synthetic cases of the first 30 calibration cases
holding a whole sacrum; half-widths of 30 and 40 mm gave 2.6-8.0 mm, 45 and 55 mm up to 20 mm (the ilia).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import registry
from ..localize import Candidate, LocalizerOutput, candidate_placed_at
from ..models.localizer import LEVEL_IDS
from ..models.segmenter import SACRUM_IDS
from ..volume import Volume
from .track import BONE_HU, BONE_HU_WINDOWED, looks_bone_windowed

DEPTH_MM = 110.0
"""How far below the L5/S1 disc the sacrum (with the coccyx's start) can reach along the column."""
HALF_WIDTH_MM = 35.0
"""Left-right half-width of the region: the sacral body and the inner alae, not the ilia."""
AP_MM = (-60.0, 70.0)
"""Antero-posterior extent of the region about L5's centre (negative: in front): the promontory in front,
the sacrum curving back below."""
LAST_LUMBAR_IDS = frozenset({registry.id_of("L5"), registry.id_of("L6")})
"""Levels directly above the sacrum."""
MIN_BONE_ML = 15.0
"""Less bone than this in the region (a scan cut just below L5): the localizer's point is kept."""


def sacrum_point(ct: Volume, l4: np.ndarray, l5: np.ndarray) -> np.ndarray | None:
    """The sacrum's centre (LPS mm) from the bone below L5, given the centres of L4 and L5 (see the module
    docstring); None when the region holds less than `MIN_BONE_ML` of bone."""
    l4, l5 = np.asarray(l4, float), np.asarray(l5, float)
    pitch = float(np.linalg.norm(l5 - l4))
    if pitch < 1.0:
        return None
    u = (l5 - l4) / pitch
    lr = np.array([1.0, 0.0, 0.0]) - u[0] * u
    if np.linalg.norm(lr) < 1e-6:
        return None
    lr /= np.linalg.norm(lr)
    ap = np.cross(u, lr)
    s0 = 0.5 * pitch
    # the region's bounding box on the CT grid, so that only its voxels are thresholded
    corners = np.array([l5 + s * u + x * lr + y * ap for s in (s0, s0 + DEPTH_MM)
                        for x in (-HALF_WIDTH_MM, HALF_WIDTH_MM) for y in AP_MM])
    ijk = ct.lps_to_index(corners)
    lo = np.maximum(np.floor(ijk.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1, np.array(ct.size))
    if np.any(hi <= lo):
        return None
    box = ct.array[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
    thr = BONE_HU_WINDOWED if looks_bone_windowed(ct) else BONE_HU
    kji = np.argwhere(box > thr)
    if len(kji) == 0:
        return None
    pts = ct.index_to_lps((kji[:, ::-1] + lo).astype(float)) - l5
    s, x, y = pts @ u, pts @ lr, pts @ ap
    inside = (s > s0) & (s < s0 + DEPTH_MM) & (np.abs(x) < HALF_WIDTH_MM) & (y > AP_MM[0]) & (y < AP_MM[1])
    if inside.sum() * float(np.prod(ct.spacing)) / 1000.0 < MIN_BONE_ML:
        return None
    return l5 + pts[inside].mean(axis=0)


def with_sacrum_from_bone(ct: Volume, cands: list[Candidate], localizer: LocalizerOutput | None = None
                          ) -> list[Candidate]:
    """``cands`` (head to foot) with each candidate whose strongest vote is the sacrum moved to
    `sacrum_point` of the two candidates above it (taken as L4 and L5), where that point exists.

    With the ``localizer``'s output: when no candidate votes for the sacrum and the lowest votes for the
    last lumbar vertebra (L5, or L6), a candidate is added at `sacrum_point` below it, with the localizer's
    votes there (`candidate_placed_at`) and the lower detection score of the two above it (the bone vouches for it
    as much as for them): the sacrum whose heatmap peak a bone-window export lost."""
    out = list(cands)
    for n, c in enumerate(cands):
        if n < 2 or _strongest(c) not in SACRUM_IDS:
            continue
        point = sacrum_point(ct, cands[n - 2].center_lps, cands[n - 1].center_lps)
        if point is not None:
            out[n] = dataclasses.replace(c, center_lps=point)
    if (localizer is None or len(cands) < 2 or any(_strongest(c) in SACRUM_IDS for c in cands)
            or _strongest(cands[-1]) not in LAST_LUMBAR_IDS):
        return out
    point = sacrum_point(ct, cands[-2].center_lps, cands[-1].center_lps)
    if point is None:
        return out
    return [*out, candidate_placed_at(localizer, point, min(cands[-1].score, cands[-2].score))]


def _strongest(c: Candidate) -> int:
    """The VerSe id of a candidate's strongest level vote."""
    return LEVEL_IDS[int(np.argmax(c.level_probs))]
