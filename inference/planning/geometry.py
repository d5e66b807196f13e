"""One vertebra's mask on a fine local grid, its anatomical frame, canal and pedicle isthmi.

Everything is measured on the mask alone (the label map of a bundle or the pipeline), resampled
with linear interpolation of the binary mask onto an axis-aligned LPS grid of ``LOCAL_SPACING_MM``
around the vertebra. The vertebra's frame: ``e_z`` along the spine (towards the head, from the
neighbours' centroids when known), ``e_y`` from the body's centre towards the canal (posterior),
``e_x = e_y × e_z`` towards the patient's left.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..volume import Volume

LOCAL_SPACING_MM = 0.5
MARGIN_MM = 12.0
SLAB_MM = 6.0
"""Half thickness of the mid-vertebra slab in which the canal is found."""
LEFT, RIGHT = +1, -1
PEDICLE_REACH_MM = 14.0
"""Pedicles lie within this distance lateral of the canal's wall (beyond: transverse processes)."""
PEDICLE_AREA_RATIO = 1.6
"""Cross-sections up to this multiple of the isthmus area belong to the pedicle proper (axis fit)."""


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


def local_mask(labels: Volume, vertebra_id: int) -> LocalMask:
    """The vertebra's mask on a ``LOCAL_SPACING_MM`` LPS-aligned grid (linear interpolation, threshold 0.5)."""
    arr = np.asarray(labels.array) == vertebra_id
    box = ndimage.find_objects(arr.astype(np.uint8))
    if not box or box[0] is None:
        raise ValueError(f"vertebra {vertebra_id} has no voxel in the label map")
    sl = box[0]
    corners = np.array([[i, j, k] for i in (sl[2].start - 1, sl[2].stop) for j in (sl[1].start - 1, sl[1].stop)
                        for k in (sl[0].start - 1, sl[0].stop)], float)
    pts = labels.index_to_lps(corners)
    lo, hi = pts.min(axis=0) - MARGIN_MM, pts.max(axis=0) + MARGIN_MM
    size = np.ceil((hi - lo) / LOCAL_SPACING_MM).astype(int) + 1
    image = sitk.GetImageFromArray(arr.astype(np.float32))
    image.SetSpacing([float(s) for s in labels.spacing])
    image.SetOrigin([float(o) for o in labels.origin])
    image.SetDirection([float(v) for v in np.asarray(labels.direction).ravel()])
    out = sitk.Resample(image, [int(s) for s in size], sitk.Transform(), sitk.sitkLinear, [float(v) for v in lo],
                        [LOCAL_SPACING_MM] * 3, np.eye(3).ravel().tolist(), 0.0, sitk.sitkFloat32)
    inside = sitk.GetArrayFromImage(out) >= 0.5
    return LocalMask(inside, lo, LOCAL_SPACING_MM, float(max(labels.spacing)))


def local_ct(ct: Volume | sitk.Image, mask: LocalMask) -> np.ndarray:
    """CT HU on ``mask``'s grid (linear interpolation; air outside the scan). Planning several
    vertebrae converts the CT to an image once and passes that."""
    image = ct if isinstance(ct, sitk.Image) else ct.to_sitk()
    size = [int(n) for n in mask.inside.shape[::-1]]
    out = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, [float(v) for v in mask.origin],
                        [float(mask.spacing)] * 3, np.eye(3).ravel().tolist(), -1024.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def vertebra_frame(mask: LocalMask, up_hint: np.ndarray | None = None) -> VertebraFrame:
    """Axes, canal and body centre of one vertebra (see the module text)."""
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
    return VertebraFrame(centroid, e_x, e_y, e_z, canal, radius, body_center, half, depth)


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


@dataclass
class Isthmus:
    side: int
    point: np.ndarray
    """Centre of the narrowest cross-section of the pedicle (LPS mm)."""
    width_mm: float
    """Transverse width (along e_x) of the pedicle at the isthmus."""
    height_mm: float
    axis: np.ndarray
    """Unit direction of the pedicle axis, pointing anterior (into the body)."""
    n_sections: int


def find_isthmus(mask: LocalMask, frame: VertebraFrame, side: int) -> Isthmus | None:
    """The pedicle of ``side`` (LEFT / RIGHT): narrowest cross-section between body and posterior arch."""
    if frame.canal_center is None:
        return None
    pts = mask.points
    loc = frame.local(pts)  # origin at the canal centre
    r = frame.canal_radius_mm
    lateral = side * loc[:, 0]
    # pedicles flank the canal at its antero-posterior middle, lateral to its wall
    keep = (lateral > 0.7 * r) & (lateral < r + PEDICLE_REACH_MM) & (np.abs(loc[:, 2]) < 15.0)
    loc = loc[keep]
    s = mask.spacing
    sections, section_cells = [], []
    for y in np.arange(-0.7 * r, 0.7 * r + s / 2, s):
        sl = loc[np.abs(loc[:, 1] - y) < s / 2]
        if len(sl) < 4:
            continue
        # the part connected to the canal's side: the component nearest the canal wall in x
        img, lo = _raster(sl[:, [0, 2]], s)
        lab, n = ndimage.label(img)
        if n > 1:
            comp = np.argwhere(lab > 0)
            xs = comp[:, 0] * s + lo[0]
            near = lab[tuple(comp[np.argmin(side * xs)])]
            img = lab == near
        cells = np.argwhere(img) * s + lo
        area = len(cells) * s * s
        height = cells[:, 1].max() - cells[:, 1].min() + s
        width = 4.0 * area / (np.pi * height)  # of the ellipse with this area and height
        sections.append((y, area, cells[:, 0].mean(), cells[:, 1].mean(), width, height))
        section_cells.append(cells)
    if len(sections) < 3:
        return None
    sec = np.array(sections)
    # the isthmus: the narrowest part of a smoothed area profile, among sections that are not mere
    # slivers (at the ends of the range, or cut by the segmentation)
    smooth = np.convolve(sec[:, 1], np.ones(3) / 3, mode="same")
    smooth[[0, -1]] = sec[[0, -1], 1]
    solid = sec[:, 1] >= 0.35 * np.median(sec[:, 1])
    if not solid.any():
        return None
    k = int(np.argmin(np.where(solid, smooth, np.inf)))
    y, _, x, z, width, height = sec[k]
    o = frame.canal_center
    point = o + x * frame.e_x + y * frame.e_y + z * frame.e_z
    if not mask.contains(point)[0]:
        # a curved or notched section's centre can fall outside it: take its cell nearest that centre,
        # so the trajectory is searched from bone
        cells = section_cells[k]
        x, z = cells[int(np.argmin(np.hypot(cells[:, 0] - x, cells[:, 1] - z)))]
        point = o + x * frame.e_x + y * frame.e_y + z * frame.e_z
    # the pedicle proper: the run of sections around the isthmus not much wider than it (the body and
    # the lamina, where the sections widen, would bend the axis)
    lo = hi = k
    while lo > 0 and sec[lo - 1, 1] < PEDICLE_AREA_RATIO * sec[k, 1]:
        lo -= 1
    while hi < len(sec) - 1 and sec[hi + 1, 1] < PEDICLE_AREA_RATIO * sec[k, 1]:
        hi += 1
    run = sec[lo : hi + 1]
    if len(run) >= 4:
        # the pedicle axis: a line through the sections' centres (x and z as functions of y), pointing anterior
        ax = np.polyfit(run[:, 0], run[:, 2], 1)[0]
        az = np.polyfit(run[:, 0], run[:, 3], 1)[0]
        axis = _unit(-(ax * frame.e_x + 1.0 * frame.e_y + az * frame.e_z))
    else:
        axis = _unit(frame.body_center - point)
    return Isthmus(side, point, float(width), float(height), axis, len(run))


def _raster(xz: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    lo = xz.min(axis=0)
    ij = np.rint((xz - lo) / s).astype(int)
    img = np.zeros(ij.max(axis=0) + 1, bool)
    img[ij[:, 0], ij[:, 1]] = True
    return img, lo


def _perp(v: np.ndarray, axis: np.ndarray) -> np.ndarray:
    return v - (v @ axis) * axis


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    if n < 1e-9:
        raise ValueError("degenerate direction")
    return v / n
