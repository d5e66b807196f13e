"""Vertebra candidates from the localizer's outputs: heatmap peaks, refined centers, level votes.

`run_localizer` puts a CT on the 4 mm working grid and runs the network (whole volume at once;
at 4 mm even a 512×512×800 scan is ~100×100×400 voxels); `find_candidates` turns the 8 mm outputs
into candidates: local maxima of the center heatmap above a threshold, centers refined to
sub-voxel precision by the heatmap-weighted mean around each peak (in LPS mm), and each
candidate's level probabilities averaged over the voxels near it (the input of `inference.label`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from .models.localizer import CLASSES, INPUT_SPACING_MM, TRAINING_FIELD, LocalizerNet, scan_descriptor
from .precision import autocast
from .preprocess import AIR_HU, WorkingGrid, normalize_hu, resample_ct, working_grid
from .progress import CancelToken, check_cancel
from .volume import Volume

PEAK_THRESHOLD = 0.35
"""Heatmap value (target peak 1) above which a local maximum is a vertebra candidate."""
MIN_DISTANCE_MM = 14.0
"""Two candidates closer than this are one (the smallest, cervical, center spacing is ~15 mm)."""
OFF_COLUMN_MM = 40.0
"""A candidate this far sideways from its neighbours' median is not on the column (see `drop_off_column`)."""
VOTE_RADIUS_MM = 10.0
"""Level probabilities are averaged over the non-background voxels within this distance of a center."""


@dataclass
class LocalizerOutput:
    """Network outputs on the 4 mm working grid (arrays [k, j, i])."""

    grid: WorkingGrid
    heatmap: np.ndarray
    probs: np.ndarray  # (len(CLASSES), k, j, i) softmax
    descriptor: np.ndarray


@dataclass(eq=False)  # compared by identity (its arrays have no single truth value)
class Candidate:
    center_lps: np.ndarray
    score: float
    level_probs: np.ndarray  # over CLASSES[1:] (levels), sums to 1
    foreground: float  # mean non-background probability near the center


def run_localizer(
    model: LocalizerNet,
    ct: Volume,
    device: torch.device,
    *,
    descriptor: np.ndarray | None = None,
    cancel: CancelToken | None = None,
    precision: str = "fp32",
    mirror: bool = False,
) -> LocalizerOutput:
    """Resample ``ct`` to 4 mm, run the network on the whole volume, upsample outputs to 4 mm.
    ``precision``: fp32, or fp16 / bf16 autocast on CUDA (`inference.precision`). ``mirror``: also run
    it on the left-right mirrored volume (a training augmentation) and average heatmap and level
    probabilities of the two passes (test-time augmentation; twice the network time)."""
    grid = working_grid(ct, INPUT_SPACING_MM)
    hu = resample_ct(ct, grid, cancel=cancel, device=device)
    check_cancel(cancel)
    if descriptor is None:
        descriptor = scan_descriptor(ct.spacing, hu)
    shape = np.array(hu.shape)
    padded, off = input_field(shape, model.divisor)
    x = np.full(padded, AIR_HU, np.float32)
    sl = tuple(slice(o, o + n) for o, n in zip(off, shape, strict=True))  # the scan in the field
    x[sl] = hu
    xt = torch.from_numpy(normalize_hu(x))[None, None].to(device)
    dt = torch.from_numpy(descriptor[None].astype(np.float32)).to(device)
    # the network pass is one call: hooks on its layers check the cancel token between layers
    hooks = [m.register_forward_pre_hook(lambda *_: check_cancel(cancel)) for m in model.modules()
             if cancel is not None and not list(m.children())]
    flips = (False, True) if mirror else (False,)
    heat, probs = 0.0, 0.0  # sums over the passes, cut to the scan
    try:
        with torch.inference_mode():
            for flip in flips:
                with autocast(device, precision):
                    out = model(xt.flip(4) if flip else xt, dt).float()
                out = F.interpolate(out.flip(4) if flip else out, scale_factor=2, mode="trilinear",
                                    align_corners=False)[0, :, sl[0], sl[1], sl[2]]
                heat = heat + out[0]
                probs = probs + torch.softmax(out[1:], dim=0)
    finally:
        for h in hooks:
            h.remove()
    n = len(flips)
    return LocalizerOutput(grid, (heat / n).cpu().numpy(), (probs / n).cpu().numpy(), descriptor)


def input_field(shape: np.ndarray, divisor: int) -> tuple[np.ndarray, np.ndarray]:
    """Size (k, j, i) of the network input for a scan of ``shape`` working-grid voxels, and where the
    scan starts in it. The localizer was trained on `TRAINING_FIELD` crops with air around any scan
    smaller than that (`inference.train.train_localizer.sample_patch`), so a smaller scan is centred
    in an air-filled field of that size, not fed alone: alone, the network's zero padding meets its
    edges, as soft tissue (0 HU) it never saw in training. On 100 held-out synthetic cases this found
    1303 true vertebrae against 1246 and named 1072 right against 1009 (docs/labeling_calibration.md,
    before and after 2026-12-04). Sizes are rounded up to a multiple of ``divisor``; the start is
    even, so the network's 8 mm output voxels cover the same pairs of scan voxels as without the field."""
    shape = np.asarray(shape, int)
    padded = (np.ceil(np.maximum(shape, TRAINING_FIELD) / divisor) * divisor).astype(int)
    return padded, (padded - shape) // 4 * 2


def find_candidates(out: LocalizerOutput, threshold: float = PEAK_THRESHOLD) -> list[Candidate]:
    """Heatmap peaks → candidates (unordered)."""
    heat = out.heatmap
    size = max(3, int(round(MIN_DISTANCE_MM / out.grid.spacing)) | 1)
    peaks = (heat == ndimage.maximum_filter(heat, size=size, mode="nearest")) & (heat > threshold)
    kji = np.argwhere(peaks)
    order = np.argsort(-heat[tuple(kji.T)])
    kept: list[np.ndarray] = []
    for p in kji[order]:
        if all(np.linalg.norm((p - q) * out.grid.spacing) >= MIN_DISTANCE_MM for q in kept):
            kept.append(p)
    return [candidate_at(out, p) for p in kept]


def candidate_at(out: LocalizerOutput, p: np.ndarray) -> Candidate:
    """The candidate at working-grid voxel ``p`` (k, j, i): its center refined to the heatmap-weighted mean
    of the voxels next to ``p``, its level votes averaged over the foreground within `VOTE_RADIUS_MM`."""
    heat = out.heatmap
    p = np.asarray(p, int)
    r = int(np.ceil(VOTE_RADIUS_MM / out.grid.spacing))
    offs = np.argwhere(np.ones((2 * r + 1,) * 3, bool)) - r
    offs = offs[np.linalg.norm(offs, axis=1) * out.grid.spacing <= VOTE_RADIUS_MM]
    pts = p + offs
    pts = pts[np.all((pts >= 0) & (pts < np.array(heat.shape)), axis=1)]
    w = np.clip(heat[tuple(pts.T)], 0, None)
    near = pts[np.linalg.norm(pts - p, axis=1) <= 1.5]
    wn = np.clip(heat[tuple(near.T)], 0, None)
    c_kji = (near * wn[:, None]).sum(0) / wn.sum() if wn.sum() > 1e-6 else p.astype(float)
    pr = out.probs[(slice(None), *pts.T)]  # (C, n)
    fg = 1.0 - pr[0]
    votes = (pr[1:] * (fg * (w + 0.1))[None]).sum(axis=1)
    votes = votes / max(votes.sum(), 1e-9)
    return Candidate(out.grid.index_to_lps(c_kji[::-1]), float(heat[tuple(p)]), votes, float(fg.mean()))


def candidate_placed_at(out: LocalizerOutput, point_lps: np.ndarray, min_score: float) -> Candidate:
    """A candidate that bone geometry, not the heatmap, placed at ``point_lps``: its centre stays there, it
    takes the localizer's level votes around the nearest working-grid voxel (`candidate_at`) and the
    heatmap's score there, raised to ``min_score`` (what the neighbours that vouch for it scored)."""
    point = np.asarray(point_lps, float)
    kji = np.round(out.grid.lps_to_index(point[None])[0][::-1]).astype(int)
    found = candidate_at(out, np.clip(kji, 0, np.array(out.heatmap.shape) - 1))
    return Candidate(point, max(found.score, min_score), found.level_probs, found.foreground)


def drop_off_column(cands: list[Candidate], max_offset_mm: float = OFF_COLUMN_MM) -> list[Candidate]:
    """Drop candidates far beside the column: farther than ``max_offset_mm`` left or right (LPS x) of
    the median of their 4 nearest neighbours (femoral heads and shoulders give such peaks; a vertebra
    cut by the field of view may sit far anterior or posterior of its neighbours' centers, so the
    A-P offset is not used)."""
    if len(cands) < 4:
        return cands
    pts = np.array([c.center_lps for c in cands])
    kept = []
    for n, c in enumerate(cands):
        d = np.linalg.norm(pts - pts[n], axis=1)
        d[n] = np.inf
        near = pts[np.argsort(d)[:4]]
        if abs(pts[n, 0] - np.median(near[:, 0])) <= max_offset_mm:
            kept.append(c)
    return kept


def order_head_to_foot(cands: list[Candidate]) -> list[Candidate]:
    """Sort along the column: by the principal axis of the centers, oriented superior first."""
    if len(cands) < 3:
        return sorted(cands, key=lambda c: -c.center_lps[2])
    pts = np.array([c.center_lps for c in cands])
    mean = pts.mean(0)
    _, _, vt = np.linalg.svd(pts - mean)
    axis = vt[0] if vt[0][2] >= 0 else -vt[0]
    return sorted(cands, key=lambda c: -float((c.center_lps - mean) @ axis))


__all__ = ["CLASSES", "Candidate", "LocalizerOutput", "candidate_at", "candidate_placed_at", "drop_off_column",
           "find_candidates", "input_field", "order_head_to_foot", "run_localizer"]
