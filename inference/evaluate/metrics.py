"""Per-mask overlap and surface metrics on label maps, computed on small crops.

All arrays are indexed ``[k, j, i]`` like `inference.volume.Volume.array`; spacings passed to these
functions are in that same array order ``(sz, sy, sx)`` mm (the reverse of ``Volume.spacing``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..volume import Volume

# Face connectivity: a voxel is on the surface when one of its 6 face neighbours is outside the mask.
_FACE_NEIGHBOURS = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class MaskComparison:
    """Agreement of one predicted and one reference binary mask.

    Attributes
    ----------
    dice : float
        ``2 |P ∩ R| / (|P| + |R|)``, in [0, 1].
    hd95_mm : float
        95th percentile of the pooled symmetric surface distances, mm (see `compare_masks`).
    msd_mm : float
        Mean of the pooled symmetric surface distances, mm.
    """

    dice: float
    hd95_mm: float
    msd_mm: float


def label_boxes(array: np.ndarray) -> dict[int, tuple[slice, slice, slice]]:
    """Bounding box of every non-zero label.

    Parameters
    ----------
    array : np.ndarray, shape (K, J, I), integer
        Label map.

    Returns
    -------
    dict
        label id → tuple of slices ``(k, j, i)`` enclosing that label (end exclusive).
    """
    array = np.asarray(array)
    if not array.any():
        return {}
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"label_boxes needs an integer label map, got {array.dtype}")
    objects = ndimage.find_objects(array)
    return {n + 1: box for n, box in enumerate(objects) if box is not None}


def label_centroids(
    volume: Volume, boxes: dict[int, tuple[slice, slice, slice]] | None = None
) -> dict[int, np.ndarray]:
    """Centroid of every non-zero label of a label map, in LPS mm.

    Parameters
    ----------
    volume : Volume
        Integer label map; ``array`` indexed ``[k, j, i]``.
    boxes : dict, optional
        ``label_boxes(volume.array)`` when already computed.

    Returns
    -------
    dict
        label id → centroid, shape (3,), (x, y, z) LPS mm (mean of the voxel centres).
    """
    centers = {}
    for vid, box in (label_boxes(volume.array) if boxes is None else boxes).items():
        kji = np.argwhere(volume.array[box] == vid).mean(axis=0) + [s.start for s in box]
        centers[vid] = volume.index_to_lps(kji[::-1][None, :])[0]
    return centers


def surface(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels of a binary mask: mask voxels with a face neighbour outside the mask.

    Voxels on the edge of the array count as boundary (the outside is taken as background).
    """
    return mask & ~ndimage.binary_erosion(mask, structure=_FACE_NEIGHBOURS, border_value=0)


def compare_masks(
    pred: np.ndarray, ref: np.ndarray, spacing_kji: tuple[float, float, float]
) -> MaskComparison:
    """Dice, HD95 and mean surface distance of two non-empty binary masks on one grid.

    Definitions: the surface of a mask is its set of boundary voxels (`surface`). For every
    surface voxel of ``pred`` the Euclidean distance (mm, voxel centre to voxel centre, honouring
    anisotropic spacing) to the nearest surface voxel of ``ref`` is taken, and vice versa. Both
    directions are pooled into one set of distances; HD95 is its 95th percentile (linear
    interpolation) and the mean surface distance (MSD, also called ASSD) is its mean. Identical
    masks give 0 for both.

    Parameters
    ----------
    pred, ref : np.ndarray, shape (K, J, I), bool
        Masks on the same grid, each with at least one voxel. Pass a crop holding both masks:
        distances only depend on voxels of the two masks, so the result equals the full-grid one.
    spacing_kji : tuple of float
        Voxel size along the array axes ``(k, j, i)`` in mm, i.e. ``Volume.spacing[::-1]``.

    Returns
    -------
    MaskComparison
    """
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if not pred.any() or not ref.any():
        raise ValueError("compare_masks needs two non-empty masks")
    n_pred, n_ref = int(pred.sum()), int(ref.sum())
    dice = 2.0 * int(np.count_nonzero(pred & ref)) / (n_pred + n_ref)
    surf_pred, surf_ref = surface(pred), surface(ref)
    sampling = tuple(float(s) for s in spacing_kji)
    # distance of every voxel to the nearest surface voxel of the *other* mask (EDT of the complement)
    to_ref = ndimage.distance_transform_edt(~surf_ref, sampling=sampling)[surf_pred]
    to_pred = ndimage.distance_transform_edt(~surf_pred, sampling=sampling)[surf_ref]
    pooled = np.concatenate([to_ref, to_pred])
    return MaskComparison(dice=dice, hd95_mm=float(np.percentile(pooled, 95)), msd_mm=float(pooled.mean()))


def union_crop(
    boxes: list[tuple[slice, slice, slice]], shape: tuple[int, ...], margin: int = 1
) -> tuple[slice, slice, slice]:
    """Smallest box holding all ``boxes``, grown by ``margin`` voxels and clipped to ``shape``."""
    lo = np.min([[s.start for s in b] for b in boxes], axis=0) - margin
    hi = np.max([[s.stop for s in b] for b in boxes], axis=0) + margin
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
