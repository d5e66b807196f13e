"""Putting a label map on its CT's grid without resampling.

A label file written by another tool often stores the CT's own voxel lattice with its axes
permuted or flipped (TotalSegmentator writes LAS NIfTI for an LPS DICOM series). Such a map is
brought onto the CT grid by transposing and flipping the array: an exact, lossless operation.
Anything else (a different spacing, size, origin or rotation) is refused: labels are never
interpolated silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..volume import Volume

TOLERANCE_MM = 0.01
"""Largest allowed distance between corresponding voxel centres of the two grids (mm)."""


def onto_grid(labels: Volume, reference: Volume, *, path: str | Path | None = None, what: str = "label map") -> Volume:
    """Return ``labels`` on ``reference``'s grid, transposed/flipped if needed (never resampled).

    Parameters
    ----------
    labels : Volume
        Label map (any integer dtype).
    reference : Volume
        The grid to match (the CT).
    path : path, optional
        Named in the error message.
    what : str
        What ``labels`` is, for the error message.

    Raises
    ------
    InputError
        When the label voxels are not the reference voxels (says both sizes and spacings).
    """
    if labels.same_grid(reference, tol_mm=TOLERANCE_MM):
        return _on(reference, labels.array, labels)
    # reference index (i, j, k) → label index: must be a signed permutation plus an integer shift
    to_label = np.linalg.inv(labels.index_to_lps_matrix) @ reference.index_to_lps_matrix
    rot, shift = to_label[:3, :3], to_label[:3, 3]
    perm = np.rint(rot)
    ok = (
        np.allclose(rot, perm, atol=1e-4)
        and np.allclose(np.abs(perm).sum(axis=0), 1)
        and np.allclose(np.abs(perm).sum(axis=1), 1)
    )
    if ok:
        src_axis = np.argmax(np.abs(perm), axis=0)  # label axis (i=0, j=1, k=2) of each reference axis
        sign = perm[src_axis, np.arange(3)]
        shift_i = np.rint(shift)
        ref_size = np.array(reference.size)
        lab_size = np.array(labels.size)
        # every reference voxel must land on a label voxel
        ok = (
            np.allclose(shift, shift_i, atol=1e-3)
            and sorted(src_axis.tolist()) == [0, 1, 2]
            and _covers(sign, src_axis, shift_i, ref_size, lab_size)
        )
    if not ok:
        raise InputError(
            path,
            f"the {what} is not on the CT's grid: {_describe(labels)} vs the CT's {_describe(reference)}; "
            f"give the {what} made for this CT (SpineNav does not resample labels)",
        )
    # Build the reference-ordered array: array axes are (k, j, i) = reversed (i, j, k).
    arr = labels.array
    lab_axes_kji = [2 - src_axis[2 - a] for a in range(3)]  # for each reference array axis, the label array axis
    arr = np.transpose(arr, lab_axes_kji)
    index = []
    for a in range(3):  # reference array axis a ↔ reference index axis 2 - a
        r = 2 - a
        n = reference.size[r]
        start = int(shift_i[src_axis[r]])
        if sign[r] > 0:
            index.append(slice(start, start + n))
        else:
            stop = start - n
            index.append(slice(start, stop if stop >= 0 else None, -1))
    out = np.ascontiguousarray(arr[tuple(index)])
    if out.shape != reference.array.shape:
        raise InputError(
            path, f"the {what} is not on the CT's grid: {_describe(labels)} vs the CT's {_describe(reference)}"
        )
    return _on(reference, out, labels)


def _on(reference: Volume, array: np.ndarray, labels: Volume) -> Volume:
    """``array`` with the reference's exact geometry and the labels' own metadata."""
    return Volume(array, reference.spacing, reference.origin, reference.direction.copy(), dict(labels.metadata))


def _covers(
    sign: np.ndarray, src_axis: np.ndarray, shift: np.ndarray, ref_size: np.ndarray, lab_size: np.ndarray
) -> bool:
    """True when the mapped reference grid lies inside the label grid on every axis."""
    for r in range(3):
        s = src_axis[r]
        first = shift[s]
        last = shift[s] + sign[r] * (ref_size[r] - 1)
        if min(first, last) < 0 or max(first, last) > lab_size[s] - 1:
            return False
    return True


def _describe(v: Volume) -> str:
    size = "×".join(str(s) for s in v.size)
    spacing = "×".join(f"{s:g}" for s in v.spacing)
    origin = ", ".join(f"{o:.1f}" for o in v.origin)
    return f"{size} voxels of {spacing} mm at ({origin}) LPS"
