"""The rib cue: how much rib the segmenter sees where a rib meets each vertebra.

A rib head articulates with its vertebra's body (and, above T11, with the transverse process);
its neck runs beside the transverse process. So beside a rib-bearing vertebra, a few centimetres
to each side and just behind the body's center, there is rib; beside a lumbar vertebra there is
its own transverse process, which is vertebra, not rib. The segmenter has a rib channel (trained on
the synthetic engine's painted ribs, outside the vertebrae); the cue is the volume of voxels it
calls rib (probability ≥ `RIB_THRESHOLD`) in a box beside each center (`ZONE_LATERAL_MM`,
`ZONE_POSTERIOR_MM`, `ZONE_AXIAL_MM`, LPS axes). Ribs of the levels above, which descend as they
run outwards, lie farther out and are mostly not counted. `inference.label` reads the cue through a
likelihood table measured on held-out synthetic CT (`inference.train.calibrate_labeling`).

Where the zone lies mostly outside the scan the cue is unknown (None), not "no rib".
"""

from __future__ import annotations

import numpy as np

ZONE_LATERAL_MM = (25.0, 64.0)
"""Distance to either side of the center (|x|) where rib necks and the start of the shaft lie, out to
the crop's edge (the segmenter's crop is 128 mm wide)."""
ZONE_POSTERIOR_MM = (-10.0, 45.0)
"""From just in front of the center to behind it (y, LPS: posterior is positive)."""
ZONE_AXIAL_MM = 8.0
"""Half height of the zone along z."""
RIB_THRESHOLD = 0.5
MIN_IN_VIEW = 0.6
"""Below this fraction of the zone inside the scan the cue is unknown."""


def zone_mask(shape: tuple[int, int, int], center_kji: np.ndarray, spacing: float) -> np.ndarray:
    """Boolean [k, j, i] mask of the rib zone around ``center_kji`` on an LPS-aligned grid."""
    k, j, i = (np.arange(n) for n in shape)
    dz = (k - center_kji[0]) * spacing
    dy = (j - center_kji[1]) * spacing
    dx = np.abs(i - center_kji[2]) * spacing
    return ((np.abs(dz) < ZONE_AXIAL_MM)[:, None, None]
            & ((dy >= ZONE_POSTERIOR_MM[0]) & (dy < ZONE_POSTERIOR_MM[1]))[None, :, None]
            & ((dx >= ZONE_LATERAL_MM[0]) & (dx < ZONE_LATERAL_MM[1]))[None, None, :])


def rib_zone_ml(rib_prob: np.ndarray, center_kji: np.ndarray, spacing: float,
                in_view: tuple[np.ndarray, np.ndarray] | None = None, own: np.ndarray | None = None) -> float | None:
    """Volume (ml) called rib in the rib zone of one vertebra.

    Parameters
    ----------
    rib_prob : np.ndarray, [k, j, i]
        Rib probability on an LPS-aligned crop of ``spacing`` mm voxels.
    center_kji : np.ndarray, (3,)
        The vertebra's center in crop voxels.
    in_view : (lo, hi), optional
        Crop voxels from ``lo`` (inclusive) to ``hi`` (exclusive), (k, j, i), hold scan data; the
        rest of the crop is padding outside the scan.
    own : np.ndarray of bool, [k, j, i], optional
        The vertebra's own mask on the crop: not counted (its processes are not ribs).

    Returns
    -------
    float or None
        None where less than `MIN_IN_VIEW` of the zone is in view.
    """
    zone = zone_mask(rib_prob.shape, np.asarray(center_kji, dtype=float), spacing)
    full = _zone_voxels(spacing)
    if in_view is not None:
        lo = np.clip(np.asarray(in_view[0], int), 0, rib_prob.shape)
        hi = np.clip(np.asarray(in_view[1], int), 0, rib_prob.shape)
        inside = np.zeros(rib_prob.shape, bool)
        inside[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
        zone &= inside
    if zone.sum() < MIN_IN_VIEW * full:
        return None
    if own is not None:
        zone &= ~own
    return float(np.count_nonzero(rib_prob[zone] >= RIB_THRESHOLD)) * spacing**3 / 1000.0


def _zone_voxels(spacing: float) -> float:
    """Voxels of a whole zone (both sides)."""
    return (2 * (ZONE_LATERAL_MM[1] - ZONE_LATERAL_MM[0]) * (ZONE_POSTERIOR_MM[1] - ZONE_POSTERIOR_MM[0])
            * 2 * ZONE_AXIAL_MM) / spacing**3
