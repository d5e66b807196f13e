"""Vertebra label maps from other tools, converted to VerSe ids (DESIGN §3).

Accepted:
- a VerSe-numbered map (1–7 C, 8–19 T, 20–24 L, 25 L6, 26 sacrum, 28 T13);
- a TotalSegmentator v2 ``total`` multilabel file (vertebrae 25–50; organs etc. are dropped);
- a folder of TotalSegmentator binary masks ``vertebrae_<NAME>.nii.gz`` / ``sacrum.nii.gz``, or one
  such file alone (its name gives the level). Any non-zero value is foreground. Masks of one
  folder may share voxels (TotalSegmentator's dataset masks overlap by tens of voxels at
  neighbouring vertebrae): a shared voxel goes to the vertebra in which it lies deeper (the one
  whose surface is farther from it, Euclidean distance in mm); ties go to the cranial one. The
  count per pair is kept in ``metadata["overlaps"]`` and ``metadata["warnings"]``.

Every map must look like one label per vertebra (`check_vertebra_map`): a body/disc map (1 =
bodies, 2 = discs) or a VerSe subregion map (41–50) would otherwise be read as C1, C2, … .
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage

from .. import registry
from ..errors import InputError
from ..volume import Volume
from .image_file import read_image_file
from .paths import check_input_path

Convention = Literal["auto", "verse", "totalseg"]


MAX_VERTEBRA_SPAN_MM = 100.0
"""Longest head-to-feet span of one vertebra's label (real maps here: at most 68 mm, processes included)."""
MAX_SACRUM_SPAN_MM = 180.0
"""…of the sacrum's label (real maps here: at most 126 mm)."""
MIN_LEVEL_STEP_MM = 5.0
"""Neighbouring levels' centres lie at least this far apart head to feet (real: 15 mm and more)."""


def read_label_map(path: str | Path, *, convention: Convention = "auto", anatomy_check: bool = True) -> Volume:
    """Read vertebra labels as a `Volume` of uint8 VerSe ids on the label file's own grid.

    ``metadata["label_convention"]`` says which convention was read. Raises `InputError` for
    non-integer values, unknown ids, maps without any vertebra and (``anatomy_check``) maps whose
    labels are not one per vertebra (`check_vertebra_map`).
    """
    path = check_input_path(path, what="label map")
    if path.is_dir():
        try:
            entries = sorted(path.iterdir())
        except OSError as exc:
            raise InputError(path, f"cannot list the folder ({exc.strerror}); check its permissions") from None
        vol = _read_totalseg_folder(path, entries)
    elif registry.from_totalseg_filename(path.name) is not None and convention == "auto":
        vol = _read_totalseg_folder(path, [path])
    else:
        vol = read_image_file(path, what="label map")
        ids = _integer_ids(path, vol.array)
        conv = _guess_convention(ids) if convention == "auto" else convention
        vol = _convert(path, vol, ids, conv)
    if not vol.array.any():
        raise InputError(path, "the label map contains no vertebra (all voxels are background)")
    if anatomy_check:
        check_vertebra_map(path, vol)
    return vol


def check_vertebra_map(path: str | Path | None, vol: Volume) -> None:
    """`InputError` unless each label of ``vol`` (VerSe ids) can be one vertebra.

    One vertebra spans at most `MAX_VERTEBRA_SPAN_MM` head to feet (the sacrum `MAX_SACRUM_SPAN_MM`),
    and neighbouring levels follow each other from head to feet. A body/disc map (label 1 = every
    body) breaks the first rule, a subregion map (labels 41–50: parts of every vertebra) both.
    """
    boxes = ndimage.find_objects(np.asarray(vol.array))
    middle: dict[int, float] = {}
    for index, box in enumerate(boxes):
        if box is None:
            continue
        vid = index + 1
        corners = np.array([[i, j, k] for i in (box[2].start - 0.5, box[2].stop - 0.5)
                            for j in (box[1].start - 0.5, box[1].stop - 0.5)
                            for k in (box[0].start - 0.5, box[0].stop - 0.5)])
        z = vol.index_to_lps(corners)[:, 2]
        span = float(z.max() - z.min())
        limit = MAX_SACRUM_SPAN_MM if vid == registry.id_of("sacrum") else MAX_VERTEBRA_SPAN_MM
        if span > limit:
            raise InputError(path, f"not a vertebra label map: label {registry.name_of(vid)} spans {span:.0f} mm from "
                             f"head to feet, where one vertebra spans at most {limit:.0f} mm (a body/disc or subregion "
                             "map?); give a map with one label per vertebra (VerSe or TotalSegmentator numbering)")
        middle[vid] = float(z.mean())
    ids = registry.sort_ids(list(middle))
    order = registry.sort_ids(list(registry.VALID_IDS))
    pairs = [(a, b) for a, b in zip(ids, ids[1:], strict=False) if order.index(b) == order.index(a) + 1]
    wrong = [(a, b) for a, b in pairs if middle[a] - middle[b] < MIN_LEVEL_STEP_MM]
    if len(pairs) >= 2 and 2 * len(wrong) >= len(pairs):
        a, b = wrong[0]
        raise InputError(path, f"not a vertebra label map: {len(wrong)} of {len(pairs)} neighbouring labels are not "
                         f"ordered from head to feet (e.g. {registry.name_of(a)} is not above {registry.name_of(b)}; a "
                         "subregion map?); give a map with one label per vertebra (VerSe or TotalSegmentator "
                         "numbering)")


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
    """Per-vertebra masks (TotalSegmentator file names) merged into one VerSe map; overlaps resolved.

    Any non-zero, finite value is foreground. A voxel two masks claim goes to the mask in which it
    lies deeper (distance to that mask's surface, mm); equal depths go to the cranial vertebra.
    """
    files = [p for p in candidates if registry.from_totalseg_filename(p.name) is not None]
    if not files:
        raise InputError(folder, "no vertebra mask files (vertebrae_<NAME>.nii.gz or sacrum.nii.gz) in this folder; "
                         "give a TotalSegmentator output folder or a label file")
    base: Volume | None = None
    masks: list[tuple[int, tuple[slice, slice, slice], np.ndarray]] = []  # (VerSe id, box, mask in the box)
    for f in files:
        vol = read_image_file(f, what="mask")
        if np.issubdtype(vol.array.dtype, np.floating) and not np.isfinite(vol.array).all():
            raise InputError(f, "the mask holds NaN or infinite values; export it again")
        if base is None:
            base = vol
        elif not base.same_grid(vol):
            raise InputError(f, f"this mask is on a different grid than {files[0].name}; all masks must share one grid")
        fg = np.asarray(vol.array) != 0
        box = ndimage.find_objects(fg.astype(np.uint8))
        if box and box[0] is not None:
            masks.append((registry.from_totalseg_filename(f.name), box[0], fg[box[0]].copy()))
        del vol, fg
    assert base is not None  # files is non-empty
    order = registry.sort_ids(list(registry.VALID_IDS))
    masks.sort(key=lambda m: order.index(m[0]))  # cranio-caudal
    labels = np.zeros(base.array.shape, dtype=np.uint8)
    for vid, box, mask in masks:
        labels[box][mask] = vid  # provisional: later masks win shared voxels, corrected below
    overlaps: dict[tuple[int, int], int] = {}
    depth_cache: dict[int, np.ndarray] = {}

    def depth(n: int) -> np.ndarray:
        if n not in depth_cache:
            mask = masks[n][2]
            padded = np.pad(mask, 1)  # the box edge is the mask's surface too
            depth_cache[n] = ndimage.distance_transform_edt(padded, sampling=base.spacing[::-1])[1:-1, 1:-1, 1:-1]
        return depth_cache[n]

    for a in range(len(masks)):
        for b in range(a + 1, len(masks)):
            inter = _intersect(masks[a][1], masks[b][1])
            if inter is None:
                continue
            in_a, in_b = _sub(inter, masks[a][1]), _sub(inter, masks[b][1])
            shared = masks[a][2][in_a] & masks[b][2][in_b]
            n_shared = int(shared.sum())
            if not n_shared:
                continue
            overlaps[(masks[a][0], masks[b][0])] = n_shared
            deeper_b = depth(b)[in_b] > depth(a)[in_a]  # ties stay with a, the cranial one
            region = labels[inter]
            region[shared & ~deeper_b] = masks[a][0]
            region[shared & deeper_b] = masks[b][0]
    notes = [f"{registry.name_of(a)}/{registry.name_of(b)}: {n} voxels in both masks, each given to the vertebra in "
             "which it lies deeper" for (a, b), n in overlaps.items()]
    return base.with_array(labels, label_convention="totalseg-masks", overlaps=overlaps,
                           warnings=list(base.metadata.get("warnings", [])) + notes,
                           source_path=str(folder.resolve()), source_format="totalseg-masks")


def _intersect(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, ...] | None:
    out = tuple(slice(max(x.start, y.start), min(x.stop, y.stop)) for x, y in zip(a, b, strict=True))
    return None if any(s.start >= s.stop for s in out) else out


def _sub(inner: tuple[slice, ...], outer: tuple[slice, ...]) -> tuple[slice, ...]:
    """``inner`` (array coordinates) relative to the box ``outer``."""
    return tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer, strict=True))
