"""What every image SpineNav reads must satisfy, checked in one place for every format.

- `check_geometry`: the grid a header declares (spacing, origin, direction, extent) is a patient's,
  checked before a single voxel is read: no made-up geometry ever replaces a damaged one.
- `check_memory`: what reading (or analysing) would allocate stays within a stated memory budget,
  checked from the header before allocating.
- `check_hounsfield`: the values are Hounsfield units, whatever the stored type (integers or
  floats): label maps, masks, pictures and absurd rescales are refused as what they are.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError

MEMORY_BUDGET_ENV = "SPINENAV_MEMORY_BUDGET_GB"
"""Environment variable that sets the memory budget in GB (decimal), e.g. ``SPINENAV_MEMORY_BUDGET_GB=16``."""

DEFAULT_BUDGET_FRACTION = 0.75
"""Without the variable the budget is this fraction of the machine's physical memory."""

MAX_EXTENT_MM = 2500.0
"""Longest plausible side of a CT grid: a whole-body scan is under 2 m; beyond this the header is damaged."""

MIN_SPACING_MM = 0.01
"""Finest plausible voxel side (micro-CT is ~0.01 mm; clinical CT 0.2–5 mm)."""

MAX_ABS_ORIGIN_MM = 1.0e6
"""An origin farther than a kilometre from the scanner's isocentre is a damaged header."""

HU_MIN_PLAUSIBLE, HU_MAX_PLAUSIBLE = -50_000.0, 100_000.0
"""Stored CT values lie in about -32768 (padding) … 30000 (metal, extended scale); far beyond: a wrong rescale."""

MIN_HU_SPAN = 100.0
"""A CT holds air, soft tissue and bone: its values span far more than this many HU."""

LABEL_MAP_MAX_VALUES = 64
"""Non-negative integer values below 256 with at most this many distinct values: a label map."""


def memory_budget_bytes() -> int:
    """The memory budget in bytes: ``$SPINENAV_MEMORY_BUDGET_GB`` or 75 % of physical memory."""
    text = os.environ.get(MEMORY_BUDGET_ENV, "").strip()
    if text:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if math.isfinite(value) and value > 0:
            return int(value * 1e9)
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = 16 * 10**9
    return int(DEFAULT_BUDGET_FRACTION * physical)


def check_memory(path: str | Path | None, need_bytes: float, doing: str) -> None:
    """`InputError` when ``doing`` (e.g. "reading it") would need more than the memory budget."""
    budget = memory_budget_bytes()
    if need_bytes > budget:
        raise InputError(path, f"{doing} would need about {need_bytes / 1e9:.1f} GB of memory, more than SpineNav's "
                         f"budget of {budget / 1e9:.1f} GB ({MEMORY_BUDGET_ENV}); crop or resample the CT to the "
                         "spine, or run on a machine with more memory")


def check_geometry(
    path: str | Path | None,
    *,
    size: Sequence[int],
    spacing: Sequence[float],
    origin: Sequence[float],
    direction: Sequence[float],
    what: str = "image",
) -> None:
    """`InputError` unless the declared grid is one a patient's scan can have.

    Parameters
    ----------
    size : (3,) int
        Voxels along i, j, k.
    spacing, origin : (3,) float
        mm, LPS, ITK order.
    direction : (9,) float
        Row-major 3×3 ITK direction matrix (columns are the axes).
    """
    spacing = [float(s) for s in spacing]
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise InputError(path, f"the header declares voxel spacing {_fmt(spacing)} mm (zero, negative or not a "
                         "number); "
                         f"the geometry of this {what} is damaged, export it again with its geometry")
    if min(spacing) < MIN_SPACING_MM:
        raise InputError(path, f"the header declares voxels of {_fmt(spacing)} mm, finer than any CT "
                         f"({MIN_SPACING_MM} mm); the geometry is damaged, export the {what} again")
    extent = [s * n for s, n in zip(spacing, size, strict=True)]
    if max(extent) > MAX_EXTENT_MM:
        raise InputError(path, f"the header declares a grid of {_fmt(extent, 0)} mm ({'×'.join(map(str, size))} voxels "
                         f"of {_fmt(spacing)} mm), larger than any patient; the spacing in the header is wrong, "
                         f"export the {what} again")
    origin = [float(o) for o in origin]
    if not all(math.isfinite(o) and abs(o) <= MAX_ABS_ORIGIN_MM for o in origin):
        raise InputError(path, f"the header declares an origin of {_fmt(origin)} mm; the geometry is damaged, export "
                         f"the {what} again")
    d = np.asarray([float(v) for v in direction], dtype=float)
    if d.size != 9 or not np.isfinite(d).all():
        raise InputError(path, f"the header's orientation holds values that are not numbers; the geometry of this "
                         f"{what} is damaged, export it again")
    m = d.reshape(3, 3)
    if not np.allclose(m.T @ m, np.eye(3), atol=1e-3):
        raise InputError(path, f"the {what}'s direction matrix is not orthonormal (sheared or degenerate axes); "
                         "resample it onto a regular grid first")


def check_hounsfield(path: str | Path | None, array: np.ndarray) -> None:
    """`InputError` for values that cannot be a CT in Hounsfield units, whatever the stored dtype.

    Refused: NaN/Inf; values far outside any CT's range (a wrong rescale slope: 1e6, 1e30); a
    constant or nearly constant image (slope 0 or 0.001); label maps and masks (few non-negative
    integers, e.g. ``vertebrae_T12.nii.gz`` or a VerSe mask stored as float64); picture values
    (0–255 or 0–1). A CT holds air or fat far below 0 HU and bone far above.
    """
    if array.size == 0:
        return
    floating = np.issubdtype(array.dtype, np.floating)
    if floating and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InputError(path, f"{bad} voxels are NaN or infinite; the CT is corrupt (or its rescale overflows), "
                         "export it again")
    lo, hi = float(array.min()), float(array.max())
    if lo < HU_MIN_PLAUSIBLE or hi > HU_MAX_PLAUSIBLE:
        raise InputError(path, f"holds values from {lo:.4g} to {hi:.4g}, not Hounsfield units (a CT lies within about "
                         "-3000 … 30000); the rescale slope or intercept of the export is wrong, export the "
                         "original values")
    if lo >= 0 and hi <= 255:
        integral = not floating or bool(np.array_equal(array, np.round(array)))
        if integral:
            distinct = int(np.count_nonzero(np.bincount(array.ravel().astype(np.uint8), minlength=256)))
            if distinct <= LABEL_MAP_MAX_VALUES:
                raise InputError(path, f"holds {distinct} distinct values from {lo:g} to {hi:g}: a label map or mask, "
                                 "not a CT; open the CT image (label maps go in as references: spinenav evaluate "
                                 "--truth, or File → Open labels…)")
        scale = "0-1" if hi <= 1 else f"{lo:g}-{hi:g}"
        raise InputError(path, f"holds picture values {scale}, not Hounsfield units (a CT holds air at about -1000); "
                         "export the CT series with its original values")
    if hi - lo < MIN_HU_SPAN:
        raise InputError(path, f"its values span only {lo:.4g} to {hi:.4g}: not a CT in Hounsfield units (a constant "
                         "image, or a wrong rescale slope); export the original CT values")


def _fmt(values: Sequence[float], digits: int = 4) -> str:
    return "×".join(f"{v:.{digits}g}" if digits else f"{v:.0f}" for v in values)
