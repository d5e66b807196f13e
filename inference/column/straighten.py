"""The straightened spine: a curved planar reformat of the CT along the column's centreline (DESIGN §1).

The tracked centreline (`inference.column.track`) is smoothed, extended a little past both ends (the end
vertebrae the track does not reach) and sampled every `STEP_MM` of arc length. At each sample a frame is
built: the tangent ``t`` (towards the head), the left-right axis ``lr`` (the patient's left, LPS +x, made
perpendicular to ``t``) and the antero-posterior axis ``ap = t × lr`` (posterior). The CT is resampled on
the planes perpendicular to the curve, giving a volume ``[s, ap, lr]`` in which the column is straight:
vertebrae are stacked along ``s`` whatever the lordosis, kyphosis or scoliosis, and discs are planes of
constant ``s``.

Coordinates: a straightened point ``(s, ap, lr)`` (mm) is the LPS point ``C(s) + ap·AP(s) + lr·LR(s)``.
`StraightSpine.to_lps` and `StraightSpine.from_lps` convert both ways (round trip within 0.5 mm for points
within the slab of a centreline with the column's curvature; tests/test_column.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..volume import Volume
from .track import ColumnTrack

STEP_MM = 1.0
"""Sample spacing of the straightened volume along the curve and in each plane."""
SMOOTH_MM = 8.0
"""Gaussian smoothing of the tracked centreline (σ, along the column)."""
EXTEND_MM = 40.0
"""The centreline is extended this far past each end of the track along its end tangent: the end vertebra,
which the track stops short of (a centre needs the canal behind it), still lies in the straightened volume."""
AP_RANGE_MM = (-55.0, 75.0)
"""Antero-posterior extent of each plane (negative: anterior): the body in front, the arch and the spinous
process behind."""
LR_HALF_MM = 80.0
"""Left-right half-width of each plane: the transverse processes, the rib heads and the sacral alae."""
AIR = -1000.0
"""Value of samples outside the CT."""


@dataclass
class StraightSpine:
    """A CT resampled along its column's centreline.

    Attributes
    ----------
    s_mm : (N,) float
        Arc length of each plane from the caudal end, mm (plane n is at ``s_mm[n]``; the curve runs feet to head).
    centre_lps : (N, 3) float
        The centreline point of each plane, LPS mm.
    tangent, ap_axis, lr_axis : (N, 3) float
        Unit axes of each plane's frame in LPS (towards the head, posterior, the patient's left).
    ap_mm, lr_mm : (A,), (L,) float
        Offsets of the sample rows and columns within a plane.
    hu : (N, A, L) float32
        The resampled CT ([s, ap, lr]); `AIR` outside the scan.
    inside : (N,) bool
        Whether the plane's centre point lies inside the scan.
    """

    s_mm: np.ndarray
    centre_lps: np.ndarray
    tangent: np.ndarray
    ap_axis: np.ndarray
    lr_axis: np.ndarray
    ap_mm: np.ndarray
    lr_mm: np.ndarray
    hu: np.ndarray
    inside: np.ndarray

    def to_lps(self, sal: np.ndarray) -> np.ndarray:
        """(n, 3) straightened points (s, ap, lr) in mm → LPS mm (frames interpolated between planes)."""
        sal = np.atleast_2d(np.asarray(sal, float))
        c, ap, lr = (self._at(a, sal[:, 0]) for a in (self.centre_lps, self.ap_axis, self.lr_axis))
        return c + sal[:, 1:2] * ap + sal[:, 2:3] * lr

    def from_lps(self, lps: np.ndarray) -> np.ndarray:
        """(n, 3) LPS points → (s, ap, lr) mm: the plane each point lies in, then its offsets in that plane.

        The plane is found from the nearest centreline sample and refined by Newton steps on
        ``(p - C(s))·t(s) = 0``; a point beyond either end gets ``s`` outside ``s_mm``'s range.
        """
        p = np.atleast_2d(np.asarray(lps, float))
        d = np.linalg.norm(p[:, None, :] - self.centre_lps[None], axis=2)  # (n, N); N ≤ ~1000
        s = self.s_mm[np.argmin(d, axis=1)].astype(float)
        for _ in range(4):
            c, t = self._at(self.centre_lps, s), self._at(self.tangent, s)
            s = s + np.einsum("ij,ij->i", p - c, t) / np.maximum(np.linalg.norm(t, axis=1), 1e-9)
        c, ap, lr = (self._at(a, s) for a in (self.centre_lps, self.ap_axis, self.lr_axis))
        rel = p - c
        return np.column_stack([s, np.einsum("ij,ij->i", rel, ap), np.einsum("ij,ij->i", rel, lr)])

    def _at(self, arr: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Linear interpolation of per-plane rows at arc lengths ``s`` (extrapolated linearly past the ends)."""
        f = (np.asarray(s, float) - self.s_mm[0]) / STEP_MM
        n0 = np.clip(np.floor(f).astype(int), 0, len(self.s_mm) - 2)
        w = (f - n0)[:, None]
        return arr[n0] * (1 - w) + arr[n0 + 1] * w


def centreline(track: ColumnTrack) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed, extended centreline of ``track`` sampled every `STEP_MM`: (s_mm, points_lps), feet first."""
    pts = np.asarray(track.points_lps, float)
    if len(pts) < 2:
        raise ValueError("a centreline needs at least two tracked points")
    step = float(np.median(np.linalg.norm(np.diff(pts, axis=0), axis=1)))
    sigma = SMOOTH_MM / max(step, 1e-6)
    smooth = np.column_stack([ndi.gaussian_filter1d(pts[:, a], sigma, mode="nearest") for a in range(3)])
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(smooth, axis=0), axis=1))])
    n_ext = int(round(EXTEND_MM / STEP_MM))
    inner = np.arange(0.0, s[-1] + 1e-9, STEP_MM)
    curve = np.column_stack([np.interp(inner, s, smooth[:, a]) for a in range(3)])
    # extend along the end tangents (taken over the last 10 mm, steadier than one step)
    k = min(len(curve) - 1, int(round(10.0 / STEP_MM)))
    t0 = _unit(curve[k] - curve[0]) if k else np.array([0.0, 0.0, 1.0])
    t1 = _unit(curve[-1] - curve[-1 - k]) if k else np.array([0.0, 0.0, 1.0])
    steps = np.arange(1, n_ext + 1)[:, None] * STEP_MM
    curve = np.vstack([curve[0] - steps[::-1] * t0, curve, curve[-1] + steps * t1])
    return np.arange(len(curve)) * STEP_MM, curve


def straighten(ct: Volume, track: ColumnTrack, *, resample: bool = True) -> StraightSpine:
    """The straightened spine of ``ct`` along ``track`` (see the module docstring); with ``resample``
    False only the frames (``hu`` left empty: the coordinate maps need no voxels)."""
    return along_curve(ct, *centreline(track), resample=resample)


def along_curve(ct: Volume, s: np.ndarray, curve: np.ndarray, *, resample: bool = True) -> StraightSpine:
    """The straightened spine of ``ct`` along ``curve`` ((N, 3) LPS points `STEP_MM` apart, feet first,
    at arc lengths ``s``)."""
    tangent = np.gradient(curve, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    left = np.array([1.0, 0.0, 0.0])
    lr = left[None] - (tangent @ left)[:, None] * tangent
    lr /= np.maximum(np.linalg.norm(lr, axis=1, keepdims=True), 1e-9)
    ap = np.cross(tangent, lr)
    ap_mm = np.arange(AP_RANGE_MM[0], AP_RANGE_MM[1] + 1e-9, STEP_MM)
    lr_mm = np.arange(-LR_HALF_MM, LR_HALF_MM + 1e-9, STEP_MM)
    idx = ct.lps_to_index(curve)
    inside = np.all((idx > -0.5) & (idx < np.array(ct.size) - 0.5), axis=1)
    spine = StraightSpine(s, curve, tangent, ap, lr, ap_mm, lr_mm, np.zeros((0, 0, 0), np.float32), inside)
    if resample:
        spine.hu = sample_planes(ct, spine, order=1, fill=AIR)
    return spine


def sample_planes(volume: Volume, spine: StraightSpine, *, order: int = 1, fill: float = 0.0) -> np.ndarray:
    """``volume`` resampled on the planes of ``spine``: an [s, ap, lr] array (``order`` 1 for a CT, 0 for
    labels; ``fill`` outside the volume)."""
    out_dtype = np.float32 if order else volume.array.dtype
    out = np.empty((len(spine.s_mm), len(spine.ap_mm), len(spine.lr_mm)), out_dtype)
    ap_off = spine.ap_mm[:, None, None]
    lr_off = spine.lr_mm[None, :, None]
    for n in range(len(spine.s_mm)):  # plane by plane: bounded memory on long columns
        plane = spine.centre_lps[n][None, None] + ap_off * spine.ap_axis[n] + lr_off * spine.lr_axis[n]
        ijk = volume.lps_to_index(plane.reshape(-1, 3))
        out[n] = ndi.map_coordinates(volume.array, ijk[:, ::-1].T, order=order, mode="constant", cval=fill,
                                     output=out_dtype).reshape(out.shape[1:])
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)

