"""Vertebrae the candidate chain skipped, found from the masks of their neighbours (DESIGN §1).

The chain of `inference.column.bodies` follows the localizer's heatmap. Where that heatmap is flat along
the column (a CT angiogram cut from behind: 0.26-0.43 over the whole thoracic column) the chain can take
every other vertebra at a steady doubled spacing, which its spacing prior cannot tell from tall
vertebrae. The segmenter's masks can: each mask covers its own vertebra, so between two neighbouring
candidates a stretch of the column that no mask claims but bone fills, longer than any disc, is a
vertebra nobody asked for.

Between each pair of neighbouring candidates (head to foot), along the straight line joining their
centres, every `STEP_MM` a disc of radius `RADIUS_MM` perpendicular to the line is sampled:

- the fraction of the disc any mask claims;
- the fraction that is bone (above `BONE_HU`, `BONE_HU_WINDOWED` on a bone-window export) no mask claims.

The longest run of samples claimed below `CLAIMED_MAX` is the unclaimed stretch. It is a missed vertebra
when it is at least `MIN_RUN_MM` long (a disc with the masks' margins measured at most 14 mm on real
CT, a skipped thoracic vertebra 21-32 mm) and holds on average at least `MIN_BONE` unclaimed bone (a disc
holds almost none). The missed vertebra's point is the middle of that stretch: the line between two
vertebra centres passes near the centre of the one between them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..volume import Volume
from .track import BONE_HU, BONE_HU_WINDOWED, looks_bone_windowed

STEP_MM = 1.0
"""Sample spacing along the line between two candidates."""
RADIUS_MM = 12.0
"""Radius of the sampled disc: the back half of a body and the canal behind the centroid line."""
DISC_STEP_MM = 1.5
"""Sample spacing within the disc."""
CLAIMED_MAX = 0.05
"""A disc with less than this fraction claimed by any mask is unclaimed."""
MIN_RUN_MM = 18.0
"""Shortest unclaimed stretch that can be a vertebra: longer than a disc with the masks' margins."""
MIN_BONE = 0.15
"""Mean fraction of unclaimed bone in the stretch for it to be a vertebra rather than a disc."""


def missed_vertebrae(ct: Volume, labels: Volume, centers_lps: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """The vertebrae missed between neighbouring candidates: (n, LPS point) for each, where ``n`` is the index
    of the candidate above it in ``centers_lps`` (head to foot) and the point lies between n and n + 1.
    ``labels`` holds the candidates' masks on ``ct``'s grid (any non-zero value is a claim)."""
    centers = np.asarray(centers_lps, float).reshape(-1, 3)
    thr = BONE_HU_WINDOWED if looks_bone_windowed(ct) else BONE_HU
    found = []
    for n in range(len(centers) - 1):
        point = _unclaimed_vertebra(ct, labels, centers[n], centers[n + 1], thr)
        if point is not None:
            found.append((n, point))
    return found


def _unclaimed_vertebra(ct: Volume, labels: Volume, a: np.ndarray, b: np.ndarray, thr: float) -> np.ndarray | None:
    """The middle of the unclaimed, bone-filled stretch between centres ``a`` and ``b``; None if there is none."""
    length = float(np.linalg.norm(b - a))
    if length < MIN_RUN_MM:
        return None
    u = (b - a) / length
    e1 = np.cross(u, [1.0, 0.0, 0.0]) if abs(u[0]) < 0.9 else np.cross(u, [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(u, e1)
    g = np.arange(-RADIUS_MM, RADIUS_MM + 1e-9, DISC_STEP_MM)
    disc = np.array([(x, y) for x in g for y in g if x * x + y * y <= RADIUS_MM ** 2])
    t = np.arange(0.0, length, STEP_MM)
    pts = a + (t[:, None, None] * u + disc[None, :, :1] * e1 + disc[None, :, 1:] * e2)  # (T, D, 3)
    flat = pts.reshape(-1, 3)
    lab = ndi.map_coordinates(labels.array, labels.lps_to_index(flat)[:, ::-1].T, order=0, cval=0)
    hu = ndi.map_coordinates(ct.array, ct.lps_to_index(flat)[:, ::-1].T, order=1, cval=-1000.0, output=np.float32)
    lab, hu = lab.reshape(len(t), -1), hu.reshape(len(t), -1)
    claimed = (lab != 0).mean(axis=1)
    bone = ((hu > thr) & (lab == 0)).mean(axis=1)
    start, stop = _longest_run(claimed < CLAIMED_MAX)
    if (stop - start) * STEP_MM < MIN_RUN_MM or bone[start:stop].mean() < MIN_BONE:
        return None
    return a + u * t[(start + stop - 1) // 2]


def _longest_run(on: np.ndarray) -> tuple[int, int]:
    """(start, stop) of the longest run of True in ``on``; (0, 0) when there is none."""
    best, n0 = (0, 0), None
    for k, v in enumerate([*on.tolist(), False]):
        if v and n0 is None:
            n0 = k
        elif not v and n0 is not None:
            if k - n0 > best[1] - best[0]:
                best = (n0, k)
            n0 = None
    return best
