"""The working grid (DESIGN §1): any CT → a fixed-spacing, axis-aligned LPS grid for the models.

Training (synthetic CT) and inference (real CT) go through these same functions, so a model
always sees the same thing: voxels of ``spacing`` mm whose array axes [k, j, i] run along
S, P and L (identity direction matrix), HU anti-aliased (Gaussian) before downsampling, clipped
and scaled to about [-1, 1.5].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .progress import CancelToken, check_cancel
from .volume import Volume

HU_LOW, HU_HIGH = -1000.0, 1500.0
"""HU range kept for the networks (metal and cortex above 1500 HU carry no extra information)."""

AIR_HU = -1024.0


@dataclass(frozen=True)
class WorkingGrid:
    """An axis-aligned LPS grid: voxel (i, j, k) sits at ``origin + spacing * (i, j, k)``."""

    origin: tuple[float, float, float]
    spacing: float
    size: tuple[int, int, int]  # (i, j, k)

    def index_to_lps(self, ijk: np.ndarray) -> np.ndarray:
        return np.asarray(self.origin) + self.spacing * np.asarray(ijk, dtype=float)

    def lps_to_index(self, lps: np.ndarray) -> np.ndarray:
        return (np.asarray(lps, dtype=float) - np.asarray(self.origin)) / self.spacing

    def reference_image(self) -> sitk.Image:
        ref = sitk.Image([int(s) for s in self.size], sitk.sitkFloat32)
        ref.SetSpacing([float(self.spacing)] * 3)
        ref.SetOrigin([float(o) for o in self.origin])
        ref.SetDirection(np.eye(3).flatten().tolist())
        return ref


def working_grid(volume: Volume, spacing: float) -> WorkingGrid:
    """The axis-aligned grid of ``spacing`` mm covering ``volume``'s physical extent."""
    k, j, i = volume.array.shape
    corners = np.array([[a, b, c] for a in (-0.5, i - 0.5) for b in (-0.5, j - 0.5) for c in (-0.5, k - 0.5)])
    pts = volume.index_to_lps(corners)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    size = np.maximum(1, np.ceil((hi - lo) / spacing - 1e-6)).astype(int)
    origin = lo + spacing / 2.0
    return WorkingGrid(tuple(float(o) for o in origin), float(spacing), tuple(int(s) for s in size))


def resample_ct(ct: Volume, grid: WorkingGrid, cancel: CancelToken | None = None) -> np.ndarray:
    """CT HU on ``grid`` (float32 [k, j, i]): Gaussian anti-aliasing, then linear interpolation.

    Only the part of ``ct`` that ``grid`` needs is read: the CT box under the grid, grown by five
    anti-aliasing sigmas (the filter's tail beyond that weighs < 1e-6: the result differs from
    smoothing the whole CT by far less than 0.1 HU). A segmentation crop of a big scan is a small
    part of it. ``cancel`` aborts the ITK filters from their progress events (`CancelledError`).
    """
    sigma = [max(0.01, 0.5 * np.sqrt(max(grid.spacing**2 - s**2, 0.0))) for s in ct.spacing]
    box = needed_box(ct, grid, margin_mm=5.0 * max(sigma))
    if box is not None:
        k, j, i = box
        corner = ct.index_to_lps(np.array([[i.start, j.start, k.start]], float))[0]
        ct = Volume(ct.array[box], ct.spacing, tuple(float(v) for v in corner), ct.direction.copy(), {})
    image = sitk.Cast(ct.to_sitk(), sitk.sitkFloat32)
    if max(sigma) > 0.05:
        smooth = sitk.SmoothingRecursiveGaussianImageFilter()
        smooth.SetSigma([float(x) for x in sigma])
        image = _execute(smooth, image, cancel)
    resample = sitk.ResampleImageFilter()
    resample.SetReferenceImage(grid.reference_image())
    resample.SetInterpolator(sitk.sitkLinear)
    resample.SetDefaultPixelValue(AIR_HU)
    resample.SetOutputPixelType(sitk.sitkFloat32)
    return sitk.GetArrayFromImage(_execute(resample, image, cancel))


def needed_box(ct: Volume, grid: WorkingGrid, margin_mm: float) -> tuple[slice, slice, slice] | None:
    """The box of ``ct``'s array (k, j, i) under ``grid``, grown by ``margin_mm`` and one voxel for the
    interpolation; None when that is the whole CT (or nothing of it)."""
    n = np.array(grid.size) - 1
    corners = np.array([[a, b, c] for a in (0, n[0]) for b in (0, n[1]) for c in (0, n[2])], float)
    ijk = ct.lps_to_index(grid.index_to_lps(corners))
    grow = np.ceil(margin_mm / np.asarray(ct.spacing)) + 1
    shape = np.array(ct.array.shape[::-1])
    lo = np.clip(np.floor(ijk.min(axis=0) - grow).astype(int), 0, shape)
    hi = np.clip(np.ceil(ijk.max(axis=0) + grow).astype(int) + 1, 0, shape)
    if np.any(hi <= lo) or (np.all(lo == 0) and np.all(hi == shape)):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo[::-1], hi[::-1], strict=True))


def _execute(f: sitk.ImageFilter, image: sitk.Image, cancel: CancelToken | None) -> sitk.Image:
    """Run an ITK filter that aborts when ``cancel`` is set."""
    if cancel is not None:
        f.AddCommand(sitk.sitkProgressEvent, lambda: f.Abort() if cancel.cancelled else None)
    check_cancel(cancel)
    try:
        return f.Execute(image)
    except RuntimeError:
        check_cancel(cancel)  # an abort surfaces as a RuntimeError: report it as a cancellation
        raise


def resample_labels(labels: Volume, grid: WorkingGrid) -> np.ndarray:
    """Label ids on ``grid`` (uint8 [k, j, i]), nearest neighbour."""
    image = labels.to_sitk()
    if image.GetPixelID() != sitk.sitkUInt8:
        image = sitk.Cast(image, sitk.sitkUInt8)
    out = sitk.Resample(image, grid.reference_image(), sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(out)


def normalize_hu(hu: np.ndarray) -> np.ndarray:
    """HU → network input: clipped to [HU_LOW, HU_HIGH] and divided by 1000 (float32)."""
    return (np.clip(hu, HU_LOW, HU_HIGH) / 1000.0).astype(np.float32)
