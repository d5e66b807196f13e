"""Vertebra label maps from other tools, converted to VerSe ids (DESIGN §3).

Accepted:
- a VerSe-numbered map (1–7 C, 8–19 T, 20–24 L, 25 L6, 26 sacrum, 28 T13);
- a TotalSegmentator v2 ``total`` multilabel file (vertebrae 25–50; organs etc. are dropped);
- a folder of TotalSegmentator binary masks ``vertebrae_<NAME>.nii.gz`` / ``sacrum.nii.gz``, or one
  such file alone (its name gives the level).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from .. import registry
from ..errors import InputError
from ..volume import Volume
from .image_file import read_image_file

Convention = Literal["auto", "verse", "totalseg"]


def read_label_map(path: str | Path, *, convention: Convention = "auto") -> Volume:
    """Read vertebra labels as a `Volume` of uint8 VerSe ids on the label file's own grid.

    ``metadata["label_convention"]`` says which convention was read. Raises `InputError` for
    non-integer values, unknown ids, and maps without any vertebra.
    """
    path = Path(path)
    if path.is_dir():
        vol = _read_totalseg_folder(path, sorted(path.iterdir()))
    elif registry.from_totalseg_filename(path.name) is not None and convention == "auto":
        vol = _read_totalseg_folder(path, [path])
    else:
        vol = read_image_file(path, what="label map")
        ids = _integer_ids(path, vol.array)
        conv = _guess_convention(ids) if convention == "auto" else convention
        vol = _convert(path, vol, ids, conv)
    if not vol.array.any():
        raise InputError(path, "the label map contains no vertebra (all voxels are background)")
    return vol


def _integer_ids(path: Path, array: np.ndarray) -> np.ndarray:
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or not np.array_equal(array, np.round(array)):
            raise InputError(path, "the label map has non-integer values (a probability map or a resampled "
                             "image?); give integer vertebra labels")
    ids = np.unique(array)
    if ids.min() < 0:
        raise InputError(path, f"the label map has negative values ({int(ids.min())}); give vertebra ids ≥ 0")
    return ids.astype(np.int64)


def _guess_convention(ids: np.ndarray) -> str:
    # VerSe never uses 27 or anything above 28; TotalSegmentator 'total' puts L5 at 27 and C1 at 50.
    return "totalseg" if (ids.max() > 28 or 27 in ids) else "verse"


def _convert(path: Path, vol: Volume, ids: np.ndarray, convention: str) -> Volume:
    lut = np.zeros(int(ids.max()) + 1, dtype=np.uint8)
    if convention == "verse":
        unknown = [int(i) for i in ids if i != 0 and i not in registry.VALID_IDS]
        if unknown:
            raise InputError(path, f"unknown label ids {unknown[:10]} for VerSe numbering (valid: 1–26, 28); for a "
                             "TotalSegmentator file pass --convention totalseg")
        for i in ids:
            lut[i] = i
    elif convention == "totalseg":
        for i in ids:
            lut[i] = registry.from_totalseg_total(int(i)) or 0
    else:
        raise InputError(path, f"unknown label convention {convention!r}; use auto, verse or totalseg")
    arr = lut[np.asarray(vol.array, dtype=np.int64)]
    return vol.with_array(arr, label_convention=convention)


def _read_totalseg_folder(folder: Path, candidates: list[Path]) -> Volume:
    """Binary per-vertebra masks (TotalSegmentator file names) merged into one VerSe map."""
    files = [p for p in candidates if registry.from_totalseg_filename(p.name) is not None]
    if not files:
        raise InputError(folder, "no vertebra mask files (vertebrae_<NAME>.nii.gz or sacrum.nii.gz) in this folder; "
                         "give a TotalSegmentator output folder or a label file")
    base: Volume | None = None
    labels: np.ndarray | None = None
    for f in files:
        vol = read_image_file(f, what="mask")
        ids = _integer_ids(f, vol.array)
        if ids.max() > 1:
            raise InputError(f, f"expected a binary 0/1 mask, found values up to {int(ids.max())}")
        if base is None:
            base, labels = vol, np.zeros(vol.array.shape, dtype=np.uint8)
        elif not base.same_grid(vol):
            raise InputError(f, f"this mask is on a different grid than {files[0].name}; all masks must share one grid")
        vid = registry.from_totalseg_filename(f.name)
        fg = vol.array > 0
        overlap = fg & (labels > 0) & (labels != vid)
        if overlap.any():
            raise InputError(f, f"{int(overlap.sum())} voxels overlap another vertebra mask; fix the masks")
        labels[fg] = vid
    assert base is not None and labels is not None  # files is non-empty
    return base.with_array(labels, label_convention="totalseg-masks",
                           source_path=str(folder.resolve()), source_format="totalseg-masks")


