"""Per-vertebra measurements on a label map: centers (LPS mm) and volumes (ml).

All functions take `Volume` label maps (array (K, J, I) indexed [k, j, i], 0 = background) and
return plain dicts keyed by label id, so they work for VerSe ids and any other integer labels.
"""

from __future__ import annotations

from collections.abc import Iterable

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
    lo: dict[int, list[int]] = {}
    hi: dict[int, list[int]] = {}
    for k0, slab in _slabs(array):
        for n, sl in enumerate(ndimage.find_objects(slab)):
            if sl is None:
                continue
            start = [sl[0].start + k0, sl[1].start, sl[2].start]
            stop = [sl[0].stop + k0, sl[1].stop, sl[2].stop]
            if n + 1 in lo:
                lo[n + 1] = [min(a, b) for a, b in zip(lo[n + 1], start, strict=True)]
                hi[n + 1] = [max(a, b) for a, b in zip(hi[n + 1], stop, strict=True)]
            else:
                lo[n + 1], hi[n + 1] = start, stop
    return {vid: tuple(slice(a, b) for a, b in zip(lo[vid], hi[vid], strict=True)) for vid in _ordered(lo)}


def union_box(boxes: Iterable[tuple[slice, slice, slice]]) -> tuple[slice, slice, slice] | None:
    """The smallest box holding all ``boxes`` (array slices with explicit starts and stops); None for none."""
    boxes = list(boxes)
    if not boxes:
        return None
    return tuple(slice(min(b[d].start for b in boxes), max(b[d].stop for b in boxes)) for d in range(3))


def vertebra_voxel_counts(labels: Volume) -> dict[int, int]:
    """Number of voxels of each label (cranio-caudal order for VerSe ids)."""
    counts = np.zeros(1, np.int64)
    for _, slab in _slabs(labels.array):
        part = np.bincount(slab.ravel(), minlength=len(counts))
        counts = np.pad(counts, (0, len(part) - len(counts))) + part
    return {vid: int(counts[vid]) for vid in _ordered(np.flatnonzero(counts[1:]) + 1)}


SLAB_VOXELS = 2_000_000
"""Whole-map passes go slab by slab: numpy and scipy hold Python's interpreter lock for the length
of one call, and a call over a whole CT-size map (~40 M voxels, ~0.1 s) would freeze the desktop
app's window while a worker thread measures."""


def _slabs(array: np.ndarray, voxels: int | None = None):
    """(first k, array[k0:k1]) in slabs of about ``voxels`` voxels along the first axis."""
    voxels = SLAB_VOXELS if voxels is None else voxels
    per_slice = max(1, int(np.prod(array.shape[1:])))
    step = max(1, voxels // per_slice)
    for k0 in range(0, array.shape[0], step):
        yield k0, array[k0:k0 + step]


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


CUT_AREA_MM2 = 200.0
"""A vertebra cut by the scan's edge across more bone than this is incomplete: the tip of a process
touching the edge is ~50-100 mm², a cut through the body or the arch ~1000 mm² and more."""


def field_of_view_cut_areas(labels: Volume) -> dict[int, float]:
    """mm² of each label's voxels on the faces of the image grid, counted per face as
    `field_of_view_cut` counts them; labels wholly inside the grid are absent."""
    a = labels.array
    spacing_kji = np.asarray(labels.spacing, float)[::-1]
    areas = np.zeros(1)
    for axis in range(3):
        pixel_mm2 = float(np.prod(np.delete(spacing_kji, axis)))
        for index in (0, a.shape[axis] - 1):
            part = np.bincount(np.take(a, index, axis=axis).ravel(), minlength=len(areas)) * pixel_mm2
            areas = np.pad(areas, (0, len(part) - len(areas))) + part
    return {int(v): float(areas[v]) for v in np.flatnonzero(areas[1:]) + 1}


def field_of_view_cut(labels, vertebra_id: int) -> tuple[np.ndarray | None, float]:
    """Where the field of view cuts ``vertebra_id``: LPS points (N, 3) of its voxels on the faces of
    the image grid (None when it lies wholly inside) and the area of that cut in mm²."""
    a = labels.array
    spacing_kji = np.asarray(labels.spacing, float)[::-1]
    found, area = [], 0.0
    for axis in range(3):
        pixel_mm2 = float(np.prod(np.delete(spacing_kji, axis)))
        for index in (0, a.shape[axis] - 1):
            face = np.argwhere(np.take(a, index, axis=axis) == vertebra_id)
            if len(face):
                found.append(np.insert(face, axis, index, axis=1))
                area += len(face) * pixel_mm2
    if not found:
        return None, 0.0
    kji = np.concatenate(found)
    return labels.index_to_lps(kji[:, ::-1].astype(float)), area


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
