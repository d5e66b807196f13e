"""The arch of the vertebra above the column's top, cut off by the scan's upper edge (DESIGN §1).

A thoracic or lumbar vertebra's inferior articular processes and spinous process reach down behind and beside
the arch of the vertebra below. A scan whose upper edge passes through the disc above its top vertebra therefore
still holds a piece of the next vertebra up: its posterior elements, without a body (a "sliver": the abdomen
scan's T11, 1.9-2.2 ml of articular and spinous process in its top three slices). That piece has no heatmap peak
of its own, so the candidate chain ends one vertebra short and the column shows one level fewer than the scan
holds (11 of the 11 anchored misses on real CT before this step).

Above the chain's top vertebra, on the CT grid, bone (above the column's bone threshold) that no mask claims,
even grown by one voxel, is split into connected pieces. A piece belongs to the sliver when

- it touches the scan's upper edge slice (it was cut there),
- it comes within `NEAR_MM` of the top vertebra's mask (a facet joint, or spinous processes overlapping),
- in the straightened spine's frame (`inference.column.straighten`) its centre lies above the top vertebra's
  centre, at least `BEHIND_MM` behind the centreline (behind the body: the arch), within `LATERAL_MM` of it left
  to right, and at least `INSIDE` of it within `OUTER_MM` left to right (ribs leave sideways).

The pieces kept, grown back by one voxel into unclaimed bone, are one sliver when together they hold `MIN_ML` to
`MAX_ML`. Only the upper edge is looked at: below the column's bottom vertebra the next one's superior articular
processes barely rise above its body, and on real CT every piece this rule found there was the bottom vertebra's
own bone its mask had left out (the TPTBox cutout's L4 in 9 of 10 conditions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..volume import Volume
from .straighten import StraightSpine
from .track import BONE_HU, BONE_HU_WINDOWED, looks_bone_windowed

EDGE_MM = 30.0
"""The top vertebra's mask comes this close to the scan's upper edge, or nothing above it is looked for."""
NEAR_MM = 8.0
"""A sliver's piece comes this close to the top vertebra's mask."""
BEHIND_MM = 15.0
"""… its centre lies at least this far behind the centreline (the T11 slivers on real CT: 37-43 mm)."""
LATERAL_MM = 20.0
"""… and this close to it left to right (articular processes lie 8-15 mm out, the spinous process on it)."""
OUTER_MM = 30.0
INSIDE = 0.9
"""… with this fraction of it within `OUTER_MM` left to right of the centreline."""
MIN_ML, MAX_ML = 0.5, 10.0
"""The sliver's volume, all its pieces together (a whole C3 is ~15 ml)."""
SAMPLE = 2000
"""Voxels of a piece placed in the column's frame, at most."""


@dataclass(frozen=True)
class Sliver:
    mask: np.ndarray
    """Voxel indices (N, 3) in (k, j, i) order on the CT grid."""
    center_lps: np.ndarray
    ml: float


def top_sliver(ct: Volume, labels: Volume, spine: StraightSpine, tag: int) -> Sliver | None:
    """The sliver above the chain's top vertebra (``tag`` in ``labels``, on ``ct``'s grid); None if there is
    none (see the module docstring)."""
    lab = labels.array
    own_idx = np.argwhere(lab == tag)
    if len(own_idx) == 0:
        return None
    axis = ct.superior_array_axis
    spacing = np.asarray(ct.spacing, float)[::-1]  # (k, j, i) mm
    shape = np.array(lab.shape)
    high = float(ct.direction[2, 2 - axis]) > 0  # the array index grows toward the head along `axis`
    edge = shape[axis] - 1 if high else 0
    reach = own_idx[:, axis].max() if high else own_idx[:, axis].min()
    if abs(edge - reach) * spacing[axis] > EDGE_MM:
        return None
    pad = np.ceil((OUTER_MM + NEAR_MM) / spacing).astype(int)
    lo = np.maximum(own_idx.min(axis=0) - pad, 0)
    hi = np.minimum(own_idx.max(axis=0) + pad + 1, shape)
    if high:
        hi[axis] = shape[axis]
    else:
        lo[axis] = 0
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    sub_lab = lab[box]
    thr = BONE_HU_WINDOWED if looks_bone_windowed(ct) else BONE_HU
    bone = ct.array[box] >= thr
    unclaimed = bone & (sub_lab == 0)
    cube = np.ones((3, 3, 3), bool)
    pieces, n = ndi.label(bone & ~ndi.binary_dilation(sub_lab != 0, cube), cube)
    if n == 0:
        return None
    near_own = ndi.distance_transform_edt(sub_lab != tag, sampling=spacing) <= NEAR_MM
    own_s = spine.from_lps(ct.index_to_lps(own_idx[:, ::-1].mean(axis=0)[None]))[0, 0]
    # the pieces that touch the edge slice and come near the top vertebra, no bigger than a sliver on their own
    # (a rib, a body), read off whole arrays: a noisy scan's box holds thousands of specks of bone
    ml = np.bincount(pieces.ravel(), minlength=n + 1) * np.prod(spacing) / 1000.0
    at_edge, near = np.zeros(n + 1, bool), np.zeros(n + 1, bool)
    at_edge[np.take(pieces, edge - lo[axis], axis=axis)] = True
    near[pieces[near_own]] = True
    at_edge[0] = False  # the background
    objects = ndi.find_objects(pieces)
    keep = np.zeros(n + 1, bool)
    for p in np.flatnonzero(at_edge & near & (ml <= MAX_ML)):
        sl = objects[p - 1]
        idx = np.argwhere(pieces[sl] == p) + np.array([s.start for s in sl])
        # where the piece lies in the column's frame, from at most `SAMPLE` of its voxels (a 10 ml piece of a
        # 0.5 mm scan holds 80 000, and `from_lps` compares each point with every centreline sample)
        step = max(1, len(idx) // SAMPLE)
        s_ap_lr = spine.from_lps(ct.index_to_lps((idx[::step] + lo)[:, ::-1].astype(float)))
        s, ap, lr = s_ap_lr.mean(axis=0)
        keep[p] = (s > own_s and ap >= BEHIND_MM and abs(lr) <= LATERAL_MM
                   and np.mean(np.abs(s_ap_lr[:, 2]) <= OUTER_MM) >= INSIDE)
    if not keep.any():
        return None
    mask = ndi.binary_dilation(keep[pieces], cube, mask=unclaimed)
    total = float(mask.sum() * np.prod(spacing) / 1000.0)
    if not MIN_ML <= total <= MAX_ML:
        return None
    idx = np.argwhere(mask) + lo
    return Sliver(idx, ct.index_to_lps(idx[:, ::-1].mean(axis=0)[None].astype(float))[0], total)
