"""Candidates whose mask missed their own body, seeded again on the column (DESIGN §1).

A candidate is the localizer's heatmap maximum near the column (`inference.column.bodies`), which the
segmenter takes as the centre of its crop. Where the scan's edge cuts a vertebra's body, the heatmap's
maximum can lie on the part that is whole, its posterior arch: the TPTBox lumbar cutout's L4, whose body
runs out of the scan at its lower edge, had its candidate 33 mm behind the centreline, and the segmenter,
seeded there, gave it its arch alone (Dice 0.31, centre 22 mm off).

The tracked centreline runs through the bodies (`inference.column.track`), so every vertebra with a body
comes near the centreline in the plane of its candidate. A candidate is seeded again on the centreline point
in its plane, and the masks are segmented once more, when

- its mask misses that point (no voxel of it within `HOLD_MM`),
- but reaches within `ARCH_MM` of it, as a vertebra's own arch does: a mask farther out is a spinous process
  alone, which in the thoracic column hangs down to the plane of the next body (the abdomen scan's partial
  T11 under metal, 41 mm; the CT angiogram, 43 mm), and
- no other mask holds the point (within `OTHER_MM`): where one does, the candidate is not in the plane of its
  own body (C1, which has none, lies beside C2's dens), and moving it would take its neighbour's body.
"""

from __future__ import annotations

import numpy as np

from ..volume import Volume
from .straighten import StraightSpine

HOLD_MM = 10.0
"""A mask holds its body when one of its voxels lies this close to the centreline point in its candidate's
plane. Whole vertebrae whose candidate's plane lies in or next to a disc came within 3-8 mm on real CT (the
abdomen scan and its crop under 5 mm slices, metal and a bone-window export); masks of an arch alone lie
behind the canal, 18-24 mm away (the TPTBox cutout's L4)."""
ARCH_MM = 30.0
"""… and reaches this close, as its lamina and pedicles do (18-24 mm on the TPTBox L4 under five conditions);
a spinous process alone lies farther (41-43 mm on real CT)."""
OTHER_MM = 3.0
"""Another mask holds the point when one of its voxels lies this close to it."""


def off_body_candidates(spine: StraightSpine, labels: Volume, centers_lps: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(n, LPS point) for each candidate ``n`` of ``centers_lps`` whose mask (tag n + 1 in ``labels``) misses
    the centreline point in its plane but reaches within an arch's length of it, while no other mask holds it:
    the point to seed it on instead (see the module docstring).
    Candidates beyond the centreline's ends and points outside the label map are skipped."""
    centers = np.asarray(centers_lps, float).reshape(-1, 3)
    if len(centers) == 0:
        return []
    s = spine.from_lps(centers)[:, 0]
    found = []
    for n, s_n in enumerate(s):
        if not spine.s_mm[0] <= s_n <= spine.s_mm[-1]:
            continue
        point = spine.to_lps(np.array([[s_n, 0.0, 0.0]]))[0]
        near = _labels_near(labels, point, ARCH_MM)
        if near is None:
            continue
        values, dist = near
        own = values == n + 1
        if own[dist <= HOLD_MM].any() or not own.any() or np.any(values[dist <= OTHER_MM] != 0):
            continue
        found.append((n, point))
    return found


def _labels_near(labels: Volume, point: np.ndarray, radius_mm: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The label values of the voxels within ``radius_mm`` of ``point`` and their distances to it (mm);
    None when the point lies outside the map."""
    centre = labels.lps_to_index(point[None])[0]  # (i, j, k)
    shape_ijk = np.array(labels.array.shape[::-1])
    if np.any(centre < -0.5) or np.any(centre > shape_ijk - 0.5):
        return None
    reach = np.ceil(radius_mm / np.array(labels.spacing)).astype(int)
    lo = np.maximum(np.round(centre).astype(int) - reach, 0)
    hi = np.minimum(np.round(centre).astype(int) + reach + 1, shape_ijk)
    box = labels.array[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
    kk, jj, ii = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo[::-1], hi[::-1], strict=True)), indexing="ij")
    lps = labels.index_to_lps(np.column_stack([ii.ravel(), jj.ravel(), kk.ravel()]))
    dist = np.linalg.norm(lps - point, axis=1)
    inside = dist <= radius_mm
    return box.ravel()[inside], dist[inside]
