"""Per-vertebra measurements on a label map: centers (LPS mm) and volumes (ml).

All functions take `Volume` label maps (array (K, J, I) indexed [k, j, i], 0 = background) and
return plain dicts keyed by label id, so they work for VerSe ids and any other integer labels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from . import registry
from .volume import Volume

BODY_SUBREGIONS = (49, 50)
"""VerSe subregion labels of the vertebral body: 49 corpus border, 50 corpus."""


def label_boxes(labels: Volume) -> dict[int, tuple[slice, slice, slice]]:
    """Bounding box of every non-zero label, as ``array`` slices (k, j, i), in one pass.

    Raises
    ------
    ValueError
        For a non-integer or negative label map.
    """
    array = labels.array
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"a label map must be integer-valued, got {array.dtype}")
    if array.size == 0 or array.max() == 0:
        return {}
    if array.min() < 0:
        raise ValueError("label maps hold ids ≥ 0")
    boxes = {n + 1: sl for n, sl in enumerate(ndimage.find_objects(array)) if sl is not None}
    return {vid: boxes[vid] for vid in _ordered(boxes)}


def vertebra_voxel_counts(labels: Volume) -> dict[int, int]:
    """Number of voxels of each label (cranio-caudal order for VerSe ids)."""
    counts = np.bincount(labels.array.ravel(), minlength=1) if labels.array.size else np.zeros(1, int)
    return {vid: int(counts[vid]) for vid in _ordered(np.flatnonzero(counts[1:]) + 1)}


def vertebra_volumes_ml(labels: Volume) -> dict[int, float]:
    """Volume of each label: voxel count × voxel volume, in millilitres."""
    voxel_ml = float(np.prod(labels.spacing)) / 1000.0
    return {vid: n * voxel_ml for vid, n in vertebra_voxel_counts(labels).items()}


def vertebra_centers(labels: Volume) -> dict[int, np.ndarray]:
    """Centroid of each label's voxels in LPS mm.

    Parameters
    ----------
    labels : Volume
        Integer label map.

    Returns
    -------
    dict
        Label id → center, shape (3,), (x, y, z) LPS mm (the mean of the voxel-centre
        positions; exact for any direction matrix because the index → LPS map is affine).
    """
    return {vid: _centroid(labels, labels.array[box] == vid, box) for vid, box in label_boxes(labels).items()}


def body_centers(labels: Volume, subregions: Volume) -> dict[int, np.ndarray]:
    """Vertebral-body centroid of each vertebra, from a VerSe subregion map.

    Parameters
    ----------
    labels : Volume
        Vertebra label map.
    subregions : Volume
        VerSe subregion map on the same grid (41–50; the body is 49 corpus border + 50 corpus).

    Returns
    -------
    dict
        Label id → body center (3,), LPS mm, for vertebrae whose mask overlaps the body labels.

    Raises
    ------
    ValueError
        When the two maps are not on the same grid.
    """
    if not labels.same_grid(subregions):
        raise ValueError(
            f"the subregion map's grid {subregions.size} @ {subregions.spacing} mm differs from the label "
            f"map's {labels.size} @ {labels.spacing} mm"
        )
    out: dict[int, np.ndarray] = {}
    for vid, box in label_boxes(labels).items():
        body = (labels.array[box] == vid) & np.isin(subregions.array[box], BODY_SUBREGIONS)
        if body.any():
            out[vid] = _centroid(labels, body, box)
    return out


def _centroid(grid: Volume, mask: np.ndarray, box: tuple[slice, slice, slice]) -> np.ndarray:
    """LPS centroid of the True voxels of ``mask`` (the sub-block ``box`` of ``grid``)."""
    # Marginal sums over a crop instead of ndimage.center_of_mass on the whole map: the latter
    # allocates full-size float64 coordinate products (~0.5 GB each on a 512×512×229 grid).
    n = np.count_nonzero(mask)
    if n == 0:
        raise ValueError("empty mask has no centroid")
    ijk = []
    for axis_kji, sl in zip((2, 1, 0), (box[2], box[1], box[0]), strict=True):
        other = tuple(a for a in range(3) if a != axis_kji)
        profile = mask.sum(axis=other, dtype=np.int64)
        ijk.append(sl.start + float(np.dot(profile, np.arange(len(profile), dtype=np.float64))) / n)
    return grid.index_to_lps(np.array([ijk]))[0]


def _ordered(ids) -> list[int]:
    ids = [int(i) for i in ids]
    return registry.sort_ids(ids) if all(i in registry.VALID_IDS for i in ids) else sorted(ids)
