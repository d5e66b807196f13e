"""The big CT grids of the benchmarks: a CT resampled (linear) onto a finer grid over the same extent.

Used by bench_big_volume.py and bench_precision.py (a real spine at the size of a thin-slice
thoraco-abdominal scan, from the small sample CT). Not a benchmark itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import SimpleITK as sitk

from inference.volume import Volume


def resampled(ct: Volume, size: Sequence[int]) -> Volume:
    """``ct`` on a grid of ``size`` (I, J, K) voxels covering its extent, int16 HU, air outside."""
    img = ct.to_sitk()
    extent = [sp * n for sp, n in zip(img.GetSpacing(), img.GetSize(), strict=True)]
    spacing = [e / n for e, n in zip(extent, size, strict=True)]
    origin = img.TransformContinuousIndexToPhysicalPoint(
        [-0.5 + 0.5 * s / o for s, o in zip(spacing, img.GetSpacing(), strict=True)])
    big = sitk.Resample(img, [int(n) for n in size], sitk.Transform(), sitk.sitkLinear, origin, spacing,
                        img.GetDirection(), -1024, sitk.sitkInt16)
    return Volume.from_sitk(big, {"source_path": "resampled sample"})
