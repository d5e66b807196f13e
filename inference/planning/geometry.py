"""One vertebra's mask on a fine local grid, its anatomical frame and canal.

Everything is measured on the mask alone (the label map of a bundle or the pipeline), resampled
with linear interpolation of the binary mask onto an axis-aligned LPS grid of ``LOCAL_SPACING_MM``
around the vertebra. The vertebra's frame: ``e_z`` the normal of the body's superior endplate
(towards the head; `endplate_normal`, or the neighbours' centroids' direction where the endplate
cannot be fitted), ``e_y`` from the body's centre towards the canal (posterior), turned about e_z onto the
vertebra's plane of left-right symmetry (`symmetry_axis`), ``e_x = e_y × e_z`` towards the patient's
left. A screw "parallel to the superior endplate" has a caudal angle of 0 in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import registry
from ..measure import label_boxes
from ..volume import Volume

LOCAL_SPACING_MM = 0.5
MARGIN_MM = 8.0
"""Room around the vertebra on its local grid: a shaft point beyond it is graded as 99 mm outside (E)."""
SLAB_MM = 6.0
"""Half thickness of the mid-vertebra slab in which the canal is found."""
LEFT, RIGHT = +1, -1
ENDPLATE_CORE = 0.6
"""The superior endplate is fitted over this fraction of the body's half-width and half-depth (its rim,
osteophytes and the ring apophysis left out)."""
ENDPLATE_MAX_TILT_DEG = 35.0
"""An endplate fit tilted more than this from the spine's axis (neighbours' direction) is not trusted."""
ENDPLATE_MIN_CELLS = 30
"""Fewest 1 mm cells of endplate surface a plane is fitted to."""


@dataclass
class LocalMask:
    """A binary mask on an axis-aligned LPS grid: voxel [k, j, i] at ``origin + spacing * (i, j, k)``."""

    inside: np.ndarray
    origin: np.ndarray
    spacing: float
    source_spacing_mm: float = 0.0
    """Largest voxel size of the label map the mask was resampled from: gaps narrower than one such voxel
    are sampling, not missing bone (0: the mask is its own source)."""

    def to_index(self, lps: np.ndarray) -> np.ndarray:
        """LPS (N, 3) → continuous array indices (N, 3) in [k, j, i] order."""
        return ((np.asarray(lps, float) - self.origin) / self.spacing)[..., ::-1]

    @cached_property
    def points(self) -> np.ndarray:
        """LPS (N, 3) of the voxels inside (computed once; frame and isthmus search both need them)."""
        return self.to_lps(np.argwhere(self.inside))

    def to_lps(self, kji: np.ndarray) -> np.ndarray:
        return np.asarray(kji, float)[..., ::-1] * self.spacing + self.origin

    def contains(self, lps: np.ndarray) -> np.ndarray:
        idx = np.rint(self.to_index(np.atleast_2d(lps))).astype(int)
        ok = np.all((idx >= 0) & (idx < np.array(self.inside.shape)), axis=1)
        out = np.zeros(len(idx), bool)
        out[ok] = self.inside[tuple(idx[ok].T)]
        return out


@dataclass
class VertebraFrame:
    centroid: np.ndarray
    e_x: np.ndarray
    e_y: np.ndarray
    e_z: np.ndarray
    canal_center: np.ndarray | None
    canal_radius_mm: float
    body_center: np.ndarray
    body_half_width_mm: float = 15.0
    body_half_depth_mm: float = 15.0

    def local(self, lps: np.ndarray) -> np.ndarray:
        """LPS (N, 3) → (x', y', z') in the vertebra's frame, origin at the canal centre (or centroid)."""
        o = self.canal_center if self.canal_center is not None else self.centroid
        d = np.atleast_2d(lps) - o
        return np.stack([d @ self.e_x, d @ self.e_y, d @ self.e_z], axis=1)


def local_mask(labels: Volume, vertebra_id: int, spacing_mm: float = LOCAL_SPACING_MM) -> LocalMask:
    """The vertebra's mask on a ``spacing_mm`` LPS-aligned grid (linear interpolation, threshold 0.5)."""
    arr = np.asarray(labels.array) == vertebra_id
    box = ndimage.find_objects(arr.astype(np.uint8))
    if not box or box[0] is None:
        raise ValueError(f"vertebra {vertebra_id} has no voxel in the label map")
    sl = box[0]
    corners = np.array([[i, j, k] for i in (sl[2].start - 1, sl[2].stop) for j in (sl[1].start - 1, sl[1].stop)
                        for k in (sl[0].start - 1, sl[0].stop)], float)
    pts = labels.index_to_lps(corners)
    lo, hi = pts.min(axis=0) - MARGIN_MM, pts.max(axis=0) + MARGIN_MM
    size = np.ceil((hi - lo) / spacing_mm).astype(int) + 1
    # resample only the vertebra's box (two voxels around it), not the whole label map
    start = [max(s.start - 2, 0) for s in sl]
    crop = arr[tuple(slice(a, s.stop + 2) for a, s in zip(start, sl, strict=True))]
    image = sitk.GetImageFromArray(crop.astype(np.float32))
    image.SetSpacing([float(s) for s in labels.spacing])
    image.SetOrigin([float(o) for o in labels.index_to_lps(np.array([start[::-1]], float))[0]])
    image.SetDirection([float(v) for v in np.asarray(labels.direction).ravel()])
    out = sitk.Resample(image, [int(s) for s in size], sitk.Transform(), sitk.sitkLinear, [float(v) for v in lo],
                        [spacing_mm] * 3, np.eye(3).ravel().tolist(), 0.0, sitk.sitkFloat32)
    inside = sitk.GetArrayFromImage(out) >= 0.5
    return LocalMask(inside, lo, spacing_mm, float(max(labels.spacing)))


BODY_CENTER_SPACING_MM = 1.0
"""Grid on which `body_centers_from_shape` reads each vertebra (its frame needs no finer)."""


def body_centers_from_shape(labels: Volume) -> dict[int, np.ndarray]:
    """Vertebral-body centre (LPS mm) of each vertebra of ``labels`` from its shape alone: the centroid of
    the mask in front of the spinal canal (`vertebra_frame`), for vertebrae with a canal and a body (not C1,
    not the sacrum). For label maps without VerSe subregions (every analysis)."""
    no_body = {registry.id_of("C1"), registry.id_of("S1")}
    out: dict[int, np.ndarray] = {}
    shape = labels.array.shape
    for vid, box in label_boxes(labels).items():
        if vid in no_body or vid not in registry.VALID_IDS:
            continue
        padded = tuple(slice(max(b.start - 2, 0), min(b.stop + 2, n)) for b, n in zip(box, shape, strict=True))
        frame = vertebra_frame(local_mask(labels.crop(padded), vid, BODY_CENTER_SPACING_MM), symmetric=False)
        if frame.canal_center is not None:
            out[vid] = frame.body_center
    return out


def local_ct(ct: Volume | sitk.Image, mask: LocalMask) -> np.ndarray:
    """CT HU on ``mask``'s grid (linear interpolation; air outside the scan). Planning several
    vertebrae converts the CT to an image once and passes that."""
    image = ct if isinstance(ct, sitk.Image) else ct.to_sitk()
    size = [int(n) for n in mask.inside.shape[::-1]]
    out = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, [float(v) for v in mask.origin],
                        [float(mask.spacing)] * 3, np.eye(3).ravel().tolist(), -1024.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def vertebra_frame(mask: LocalMask, up_hint: np.ndarray | None = None, symmetric: bool = True) -> VertebraFrame:
    """Axes, canal and body centre of one vertebra (see the module text); ``symmetric=False`` skips the
    search for the plane of symmetry (the body centre does not depend on it)."""
    pts = mask.points
    centroid = pts.mean(axis=0)
    e_z = _unit(up_hint if up_hint is not None else np.array([0.0, 0.0, 1.0]))
    e_y = _unit(_perp(np.array([0.0, 1.0, 0.0]), e_z))
    canal, radius = None, 0.0
    for _ in range(2):  # find the canal in the current frame, then straighten the frame on it
        e_x = np.cross(e_y, e_z)
        canal, radius = _find_canal(pts, centroid, e_x, e_y, e_z, mask.spacing)
        ref = canal if canal is not None else centroid + 15.0 * e_y
        rel = pts - ref
        body = pts[(rel @ e_y) < -max(radius, 4.0)]
        body_center = body.mean(axis=0) if len(body) else centroid - 10.0 * e_y
        half = float(np.percentile(np.abs((body - body_center) @ np.cross(e_y, e_z)), 95)) if len(body) else 15.0
        depth = float(np.percentile(np.abs((body - body_center) @ e_y), 95)) if len(body) else 15.0
        if canal is None:
            break
        e_y = _unit(_perp(canal - body_center, e_z))
    e_x = np.cross(e_y, e_z)
    frame = VertebraFrame(centroid, e_x, e_y, e_z, canal, radius, body_center, half, depth)
    normal = endplate_normal(pts, frame)
    if normal is None:
        return frame
    e_z = normal
    e_y = _unit(_perp((canal if canal is not None else centroid + 15.0 * e_y) - body_center, e_z))
    if canal is not None and symmetric:
        e_y = symmetry_axis(mask, canal, e_y, e_z)
    return VertebraFrame(centroid, np.cross(e_y, e_z), e_y, e_z, canal, radius, body_center, half, depth)


SYMMETRY_MAX_DEG = 20.0
"""Largest turn of the body-to-canal axis about e_z that `symmetry_axis` searches."""
SYMMETRY_MIN_OVERLAP = 0.7
"""Below this mirror overlap the mask is too asymmetric (cut, broken) to set the axis: the body-to-canal
axis stays."""
SYMMETRY_POINTS = 6000


def symmetry_axis(mask: LocalMask, canal: np.ndarray, e_y: np.ndarray, e_z: np.ndarray) -> np.ndarray:
    """``e_y`` turned about ``e_z`` onto the vertebra's plane of left-right symmetry: of the planes
    containing e_z, near the canal's centre (±3 mm) and within `SYMMETRY_MAX_DEG` of the body-to-canal
    axis, the one whose mirror image of the mask overlaps the mask most (coarse, then fine search). The
    axis a surgeon reads on the axial slice (body, canal and spinous process in one line), so that a
    vertebra's axial rotation does not tilt one screw medially and the other laterally."""
    pts = mask.points[:: max(1, len(mask.points) // SYMMETRY_POINTS)]
    rel = pts - canal
    e_x = np.cross(e_y, e_z)
    x, y = rel @ e_x, rel @ e_y

    def overlap(deg: float, off: float) -> float:
        t = np.radians(deg)
        axis_x = np.cos(t) * e_x + np.sin(t) * e_y  # the turned frame's x
        across = x * np.cos(t) + y * np.sin(t) - off
        return float(mask.contains(pts - 2.0 * across[:, None] * axis_x).mean())

    grid = [(d, o) for d in np.arange(-SYMMETRY_MAX_DEG, SYMMETRY_MAX_DEG + 1e-9, 2.0)
            for o in np.arange(-3.0, 3.01, 1.0)]
    d0, o0 = max(grid, key=lambda g: overlap(*g))
    fine = [(d, o) for d in d0 + np.arange(-1.5, 1.51, 0.5) for o in o0 + np.arange(-0.75, 0.76, 0.25)
            if abs(d) <= SYMMETRY_MAX_DEG]
    best = max(fine, key=lambda g: overlap(*g))
    if overlap(*best) < SYMMETRY_MIN_OVERLAP:
        return e_y
    t = np.radians(best[0])
    return _unit(np.cos(t) * e_y - np.sin(t) * e_x)


def endplate_normal(pts: np.ndarray, frame: VertebraFrame) -> np.ndarray | None:
    """Unit normal (LPS, towards the head) of the body's superior endplate: a plane fitted, with two rounds
    of trimming, to the top surface of the body's core (`ENDPLATE_CORE`); None when too little of it is
    seen or the fit tilts more than `ENDPLATE_MAX_TILT_DEG` from ``frame.e_z``."""
    rel = pts - frame.body_center
    x, y, z = rel @ frame.e_x, rel @ frame.e_y, rel @ frame.e_z
    core = (x / max(frame.body_half_width_mm, 1.0)) ** 2 + (y / max(frame.body_half_depth_mm, 1.0)) ** 2 \
        <= ENDPLATE_CORE**2
    if core.sum() < ENDPLATE_MIN_CELLS:
        return None
    cells = np.floor(np.stack([x[core], y[core]], axis=1)).astype(int)  # 1 mm cells of the footprint
    order = np.lexsort((-z[core], cells[:, 1], cells[:, 0]))
    cells, top = cells[order], z[core][order]
    first = np.ones(len(cells), bool)
    first[1:] = np.any(cells[1:] != cells[:-1], axis=1)  # the highest point of each cell
    cx, cy, cz = cells[first, 0] + 0.5, cells[first, 1] + 0.5, top[first]
    if len(cz) < ENDPLATE_MIN_CELLS:
        return None
    keep = np.ones(len(cz), bool)
    for _ in range(3):
        a = np.column_stack([cx[keep], cy[keep], np.ones(keep.sum())])
        coef, *_ = np.linalg.lstsq(a, cz[keep], rcond=None)
        resid = cz - (coef[0] * cx + coef[1] * cy + coef[2])
        keep = np.abs(resid) <= max(2.0, 2.5 * float(np.median(np.abs(resid[keep]))))
        if keep.sum() < ENDPLATE_MIN_CELLS:
            return None
    n = _unit(-coef[0] * frame.e_x - coef[1] * frame.e_y + frame.e_z)
    if np.degrees(np.arccos(np.clip(n @ frame.e_z, -1.0, 1.0))) > ENDPLATE_MAX_TILT_DEG:
        return None
    return n


def _find_canal(pts, centroid, e_x, e_y, e_z, spacing) -> tuple[np.ndarray | None, float]:
    """Centre and equivalent radius of the hole in the mid-vertebra slab's projection along e_z."""
    rel = pts - centroid
    slab = pts[np.abs(rel @ e_z) < SLAB_MM]
    if len(slab) < 10:
        return None, 0.0
    xy = np.stack([(slab - centroid) @ e_x, (slab - centroid) @ e_y], axis=1)
    lo = xy.min(axis=0) - 2.0
    grid_shape = np.ceil((xy.max(axis=0) + 2.0 - lo) / spacing).astype(int) + 1
    img = np.zeros(grid_shape, bool)
    ij = np.rint((xy - lo) / spacing).astype(int)
    img[ij[:, 0], ij[:, 1]] = True
    img = ndimage.binary_closing(img, iterations=2)
    for close_mm in (0.0, 2.0, 4.0):  # a canal whose ring has a gap (thin laminae) needs a closing first
        ring = ndimage.binary_closing(img, iterations=int(close_mm / spacing)) if close_mm else img
        hole = ndimage.binary_fill_holes(ring) & ~ring
        lab, n = ndimage.label(hole)
        if n:
            sizes = ndimage.sum(hole, lab, range(1, n + 1))
            k = int(np.argmax(sizes)) + 1
            area = sizes[k - 1] * spacing**2
            if area >= 20.0:
                c = np.argwhere(lab == k).mean(axis=0) * spacing + lo
                center = centroid + c[0] * e_x + c[1] * e_y
                return center, float(np.sqrt(area / np.pi))
    return None, 0.0


def _perp(v: np.ndarray, axis: np.ndarray) -> np.ndarray:
    return v - (v @ axis) * axis


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    if n < 1e-9:
        raise ValueError("degenerate direction")
    return v / n
