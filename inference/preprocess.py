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
import torch
from torch.nn import functional as F

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


MIN_FILTER_VOXELS = 4
"""Fewest voxels per axis ITK's recursive Gaussian accepts."""


def working_grid(volume: Volume, spacing: float) -> WorkingGrid:
    """The axis-aligned grid of ``spacing`` mm covering ``volume``'s physical extent."""
    k, j, i = volume.array.shape
    corners = np.array([[a, b, c] for a in (-0.5, i - 0.5) for b in (-0.5, j - 0.5) for c in (-0.5, k - 0.5)])
    pts = volume.index_to_lps(corners)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    size = np.maximum(1, np.ceil((hi - lo) / spacing - 1e-6)).astype(int)
    origin = lo + spacing / 2.0
    return WorkingGrid(tuple(float(o) for o in origin), float(spacing), tuple(int(s) for s in size))


def resample_ct(ct: Volume, grid: WorkingGrid, cancel: CancelToken | None = None,
                device: torch.device | None = None) -> np.ndarray:
    """CT HU on ``grid`` (float32 [k, j, i]): Gaussian anti-aliasing, then linear interpolation.

    On the CPU this is ITK's recursive Gaussian and linear resampling, as in training. With a CUDA
    ``device`` the same steps run on the GPU (`resample_ct_torch`: a sampled Gaussian cut at four
    sigmas, trilinear sampling), which differs from ITK's by a few HU at most (measured in
    `benchmarks/bench_precision.py`) and takes the seconds-long smoothing of a big scan off the CPU.

    Only the part of ``ct`` that ``grid`` needs is read: the CT box under the grid, grown by five
    anti-aliasing sigmas (the filter's tail beyond that weighs < 1e-6: the result differs from
    smoothing the whole CT by far less than 0.1 HU). A segmentation crop of a big scan is a small
    part of it. ``cancel`` aborts the ITK filters from their progress events (`CancelledError`).
    """
    sigma = [max(0.01, 0.5 * np.sqrt(max(grid.spacing**2 - s**2, 0.0))) for s in ct.spacing]
    box = needed_box(ct, grid, margin_mm=5.0 * max(sigma))
    if box is not None:
        ct = ct.crop(box)
    if device is not None and device.type == "cuda":
        check_cancel(cancel)
        return resample_ct_torch(ct, grid, sigma if max(sigma) > 0.05 else [0.0] * 3, device)
    image = sitk.Cast(ct.to_sitk(), sitk.sitkFloat32)
    short = [max(0, MIN_FILTER_VOXELS - n) for n in image.GetSize()]
    if max(sigma) > 0.05 and any(short):
        # ITK's recursive Gaussian needs 4 voxels per axis: a crop at the scan's edge can have fewer.
        # Repeat the edge voxels (zero-flux padding keeps the geometry; the resampling reads only the grid).
        image = sitk.ZeroFluxNeumannPad(image, [n // 2 for n in short], [n - n // 2 for n in short])
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


def resample_ct_torch(ct: Volume, grid: WorkingGrid, sigma_mm: list[float], device: torch.device) -> np.ndarray:
    """`resample_ct` in torch on ``device``: separable Gaussian (``sigma_mm`` per i, j, k axis, cut at
    four sigmas, edges extended), then trilinear sampling at ``grid``'s voxel centres; points half a
    voxel or more outside the CT's outer voxel centres are air (as ITK resamples)."""
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(ct.array)).to(device=device, dtype=torch.float32)
        for axis, (s_mm, sp) in enumerate(zip(sigma_mm, ct.spacing, strict=True)):  # i, j, k
            s = s_mm / sp
            if s < 0.1:
                continue  # a Gaussian this narrow leaves the voxels as they are
            r = int(np.ceil(4.0 * s))
            t = torch.arange(-r, r + 1, device=device, dtype=torch.float32)
            w = torch.exp(-0.5 * (t / s) ** 2)
            dim = 2 - axis  # array dims are (k, j, i)
            moved = x.movedim(dim, -1)
            shape = moved.shape
            rows = moved.reshape(-1, 1, shape[-1])
            rows = F.pad(rows, (r, r), mode="replicate")
            x = F.conv1d(rows, (w / w.sum()).view(1, 1, -1)).reshape(shape).movedim(-1, dim).contiguous()
        gi, gj, gk = (torch.arange(n, device=device, dtype=torch.float64) for n in grid.size)
        pk, pj, pi = torch.meshgrid(gk, gj, gi, indexing="ij")
        lps = torch.stack([pi, pj, pk], dim=-1) * grid.spacing + torch.tensor(grid.origin, device=device,
                                                                               dtype=torch.float64)
        to_index = torch.tensor(np.linalg.inv(ct.index_to_lps_matrix[:3, :3]), device=device, dtype=torch.float64)
        ijk = (lps - torch.tensor(ct.origin, device=device, dtype=torch.float64)) @ to_index.T
        size = torch.tensor(ct.array.shape[::-1], device=device, dtype=torch.float64)  # (ni, nj, nk)
        # as ITK resamples; but a point exactly half a voxel outside (where a working grid's edge plane
        # can sit) falls either way there, with the rounding of its scanline arithmetic
        inside = ((ijk >= -0.5 - 1e-6) & (ijk < size - 0.5 - 1e-6)).all(dim=-1)
        norm = (2.0 * ijk / torch.clamp(size - 1, min=1) - 1.0).to(torch.float32)
        out = F.grid_sample(x[None, None], norm[None], mode="bilinear", padding_mode="border", align_corners=True)
        out = torch.where(inside, out[0, 0], torch.tensor(AIR_HU, device=device))
        return out.cpu().numpy()


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
