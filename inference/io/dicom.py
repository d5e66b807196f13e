"""`read_dicom`: a DICOM CT series (folder, one slice of it, or an enhanced multi-frame file) → `Volume`.

Steps: find the files and pick the CT series (`inference.io.series`), check the frames agree
(orientation, pixel spacing, size), sort them along the slice normal, refuse what cannot be a
volume (one slice, missing slices, two phases mixed), decode the pixels through pydicom, apply the
modality rescale (→ HU), and resample only where the stack is not a regular orthogonal grid
(gantry tilt, uneven slice steps). Every problem with the input becomes a one-line `InputError`
naming the file or folder and saying what to do.

Geometry (DICOM PS3.3 C.7.6.2): the pixel at (row r, column c) of a frame lies at
``IPP + c * column_spacing * row_cosine + r * row_spacing * column_cosine``, LPS mm; PixelSpacing
is stored as [row spacing, column spacing]. The volume's i axis is the row cosine (along a row),
j the column cosine, k the slice normal row × column, so ``array[k, j, i]`` is frame k's pixel
(row j, column i) and the direction matrix is right-handed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import iter_pixels
from pydicom.uid import UID, ImplicitVRLittleEndian

from ..errors import InputError, display_path
from ..progress import CancelToken, ProgressCallback, check_cancel, report, sub_progress
from ..volume import Volume
from .checks import check_geometry, check_memory
from .image_file import MAX_VOXELS
from .series import (
    Frame,
    ScanResult,
    Series,
    choose_ct_series,
    dcmread_any,
    quiet_pydicom,
    read_header,
    scan_folder,
)

SAME_POSITION_MM = 0.01
"""Two frames closer than this along the normal are at the same position."""
GAP_FACTOR = 1.5
"""A step at least this many times the median step means slices are missing."""
UNEVEN_TOLERANCE = 0.01
"""Relative deviation from the median step above which the stack is resampled to a uniform step."""
TILT_TOLERANCE_DEG = 0.1
"""Angle between the slice normal and the line of slice positions above which the stack is sheared."""
SHIFT_TOLERANCE_VOXELS = 0.5
"""In-plane drift of slice positions (voxels) that is corrected even when the tilt angle is tiny."""


@dataclass
class _Stack:
    """Frames sorted along the slice normal, with the numbers the resampling needs.

    ``along`` (K,) is each frame's position along the normal (mm); ``offsets`` (K, 2) the in-plane
    drift of its ImagePositionPatient from the first frame's, in voxels along (i, j).
    """

    frames: list[Frame]
    row: np.ndarray
    col: np.ndarray
    normal: np.ndarray
    along: np.ndarray
    offsets: np.ndarray
    step: float
    uneven: bool
    tilt_deg: float
    sheared: bool

    @property
    def spacing(self) -> tuple[float, float, float]:
        row_spacing, col_spacing = self.frames[0].pixel_spacing
        return (col_spacing, row_spacing, self.step)


def read_dicom(
    path: str | Path,
    *,
    series_uid: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Volume:
    """Read a DICOM CT into a `Volume` in HU with LPS geometry.

    Parameters
    ----------
    path : folder or file
        A folder (searched recursively; the best CT series is read: CT image storage, not a
        localizer, axial first, then most slices), a DICOMDIR (its folder is searched), one
        single-frame slice (its folder's series that contains it is read), or an enhanced
        multi-frame CT file (read alone).
    series_uid : str, optional
        For a folder: read the CT series with this SeriesInstanceUID instead of the best one.
    progress, cancel
        Progress callback ``(fraction, message)`` and cancel token, checked between files.

    Returns
    -------
    Volume
        ``array`` (K, J, I) = (slices along the normal, rows, columns): int16 HU when every value is
        an integer that fits, else float32. ``metadata`` holds ``source_path``, ``source_format``
        ("dicom"), ``modality`` ("CT"), ``series_uid``, ``study_uid``, ``frame_of_reference_uid``,
        ``sop_class_uid``, ``series_description``, ``manufacturer``, ``model``, ``kernel``, ``kvp``,
        ``slice_thickness``, ``patient_position``, ``n_files``, ``warnings``, ``other_series``,
        ``other_ct_series`` (``{"uid", "summary"}`` of the folder's other readable CT series) and
        ``dicom_files`` (the source files in k order; empty when the grid was resampled, since a
        DICOM-SEG cannot reference a resampled grid). ``patient`` (id, name, study date) is kept
        for the app's case header; no bundle file or terminal summary carries it.

    Raises
    ------
    InputError
        One line naming the file or folder, for anything that is not a usable 3D CT.
    """
    path = Path(path)
    progress = report(progress)
    check_cancel(cancel)
    scan: ScanResult | None = None
    if path.is_file() and path.name.upper() == "DICOMDIR":
        # the index of a CD/DVD export: the images are in the folders beside it
        path = path.parent
    if path.is_dir():
        scan = scan_folder(path, recursive=True, progress=sub_progress(progress, 0.0, 0.2), cancel=cancel)
        chosen, others = choose_ct_series(scan.series(), path)
        if series_uid is not None and chosen.uid != series_uid:
            every = [chosen, *others]
            wanted = next((s for s in every if s.uid == series_uid and s.is_ct), None)
            if wanted is None:
                raise InputError(path, f"no CT series with SeriesInstanceUID {series_uid} here; choose one of "
                                 f"{', '.join(s.uid for s in every if s.is_ct)}")
            chosen, others = wanted, [s for s in every if s is not wanted]
    elif path.is_file():
        head = read_header(path)
        if not head.is_ct_image:
            raise InputError(path, f"this file is {head.kind}, not a CT image; give a CT series")
        if head.is_localizer:
            raise InputError(
                path,
                "this is a CT localizer (scout) image, not a slice of a CT volume; give the axial series",
            )
        if head.is_enhanced:
            chosen, others = Series(head.group_key(), [head]), []
        else:
            scan = scan_folder(
                path.parent, recursive=False, progress=sub_progress(progress, 0.0, 0.2), cancel=cancel
            )
            series = scan.series()
            chosen = next((s for s in series if any(f.path == path for f in s.files)), Series("", [head]))
            others = [s for s in series if s is not chosen]
    else:
        raise InputError(path, "no such file or folder; check the path")
    notes: list[str] = []
    if scan is not None and (note := scan.skipped_note()):
        notes.append(note)
    try:
        volume = _read_series(chosen, path, notes, progress=sub_progress(progress, 0.2, 1.0), cancel=cancel)
    except InputError as exc:
        if scan is None or not scan.n_skipped or exc.path != display_path(path):
            raise
        # a slice "missing" from the series may be one of the files that could not be read
        raise InputError(exc.path, f"{exc.message} (note: {scan.skipped_note()})") from None
    volume.metadata["other_series"] = [s.summary() for s in others]
    volume.metadata["other_ct_series"] = [
        {"uid": s.uid, "summary": s.summary()} for s in others if s.is_ct and s.n_images >= 2 and s.uid
    ]
    return volume


# ---- the chosen series → Volume ----------------------------------------------------------------------------
def _read_series(
    series: Series, where: Path, notes: list[str], *, progress: ProgressCallback, cancel: CancelToken | None
) -> Volume:
    bad = next((f for f in series.files if f.problem), None)
    if bad is not None:
        raise InputError(bad.path, bad.problem)
    frames = _drop_copies([fr for f in series.files for fr in f.frames], where, notes)
    _check_frames(frames, where)
    if len(frames) < 2:
        raise InputError(
            where,
            "the series has a single slice; a 3D CT volume is needed (give the folder with the whole series)",
        )
    stack = _sort_and_check(frames, where)
    direction = np.column_stack([stack.row, stack.col, stack.normal])
    check_geometry(where, size=(stack.frames[0].columns, stack.frames[0].rows, len(stack.frames)),
                   spacing=stack.spacing, origin=stack.frames[0].position, direction=direction.flatten(),
                   what="CT series")
    array = _read_pixels(stack.frames, progress=sub_progress(progress, 0.0, 0.9), cancel=cancel)
    origin = np.asarray(stack.frames[0].position, dtype=float)
    files_in_order = list(dict.fromkeys(str(fr.path.resolve()) for fr in stack.frames))
    resampled = False
    if stack.sheared:
        progress(0.9, "correcting gantry tilt")
        array, lo = _unshear(array, stack.offsets)
        spacing_i, spacing_j = stack.spacing[0], stack.spacing[1]
        origin = origin + lo[0] * spacing_i * stack.row + lo[1] * spacing_j * stack.col
        grown = f"{array.shape[2]}×{array.shape[1]}"
        notes.append(
            f"gantry tilt of {stack.tilt_deg:.2f}° (slices sheared): resampled onto an orthogonal grid, "
            f"in-plane size {stack.frames[0].columns}×{stack.frames[0].rows} grown to {grown}"
        )
        resampled = True
    if stack.uneven:
        check_cancel(cancel)
        progress(0.95, "resampling to a uniform slice step")
        steps = np.diff(stack.along)
        array = _resample_along_normal(array, stack.along - stack.along[0], stack.step)
        notes.append(
            f"uneven slice spacing ({steps.min():.3g}–{steps.max():.3g} mm): resampled to a uniform "
            f"{stack.step:.4g} mm step with linear interpolation"
        )
        resampled = True
    if resampled:
        files_in_order_out: list[str] = []
        notes.append(
            "the grid was resampled, so a DICOM-SEG cannot reference the source slices (dicom_files is empty)"
        )
    else:
        files_in_order_out = files_in_order
    first = series.first
    missing = [
        name
        for name, uid in (
            ("SeriesInstanceUID", first.series_uid),
            ("StudyInstanceUID", first.study_uid),
            ("FrameOfReferenceUID", first.frame_of_reference_uid),
        )
        if not uid
    ]
    if missing:
        notes.append(
            f"the files have no {', '.join(missing)} (anonymised?); a DICOM-SEG or a robot cannot "
            "reference this series by its UIDs"
        )
    metadata: dict[str, Any] = {
        "source_path": str(where.resolve()),
        "source_format": "dicom",
        "modality": "CT",
        "series_uid": first.series_uid or None,
        "study_uid": first.study_uid or None,
        "frame_of_reference_uid": first.frame_of_reference_uid or None,
        "sop_class_uid": first.sop_class_uid,
        "series_description": first.series_description or None,
        **{
            k: first.facts.get(k)
            for k in ("manufacturer", "model", "kernel", "kvp", "slice_thickness", "patient_position")
        },
        "patient": {k: first.facts.get(f"patient_{k}") for k in ("id", "name")} | {
            "study_date": first.facts.get("study_date")},
        "n_files": len(files_in_order),
        "warnings": notes,
        "other_series": [],
        "dicom_files": files_in_order_out,
    }
    progress(1.0, "DICOM series read")
    return Volume(array, stack.spacing, tuple(origin), direction, metadata)


def _drop_copies(frames: list[Frame], where: Path, notes: list[str]) -> list[Frame]:
    """Drop the second copy of an instance, e.g. a file copied twice into the folder.

    A copy has the same SOPInstanceUID, frame and position. The position is part of the key because
    some anonymisers give every file one constant UID: those files are distinct slices, not copies.
    """
    seen: dict[tuple, Frame] = {}
    kept: list[Frame] = []
    dropped: list[tuple[Frame, Frame]] = []
    for fr in frames:
        key = (fr.sop_instance_uid, fr.frame_index, tuple(np.round(fr.position, 3)))
        if fr.sop_instance_uid and key in seen:
            dropped.append((fr, seen[key]))
            continue
        seen[key] = fr
        kept.append(fr)
    if dropped:
        copy, original = dropped[0]
        notes.append(
            f"dropped {len(dropped)} duplicate {'copy' if len(dropped) == 1 else 'copies'} of the same "
            f"instance (e.g. {_rel(copy.path, where)} repeats {_rel(original.path, where)})"
        )
    return kept


def _check_frames(frames: list[Frame], where: Path) -> None:
    """Refuse empty or gigantic grids (before any allocation) and frames that disagree with the first."""
    first = frames[0]
    for fr in frames:
        if fr.rows <= 0 or fr.columns <= 0:
            raise InputError(
                fr.path,
                f"the header declares an empty image ({fr.rows} rows × {fr.columns} columns); "
                "the file is damaged, copy it again",
            )
        if (fr.rows, fr.columns) != (first.rows, first.columns):
            raise InputError(
                where,
                f"image size differs within the series: {_rel(first.path, where)} is "
                f"{first.columns}×{first.rows}, {_rel(fr.path, where)} is {fr.columns}×{fr.rows}; "
                "give a folder with one series only",
            )
        if not np.allclose(fr.pixel_spacing, first.pixel_spacing, rtol=1e-3, atol=1e-4):
            raise InputError(
                where,
                f"PixelSpacing differs within the series: {_rel(first.path, where)} has "
                f"{_mm(first.pixel_spacing)}, {_rel(fr.path, where)} has {_mm(fr.pixel_spacing)}; "
                "give a folder with one series only",
            )
        if not np.allclose(fr.orientation, first.orientation, atol=1e-3):
            raise InputError(
                where,
                f"ImageOrientationPatient differs within the series ({_rel(first.path, where)} "
                f"vs {_rel(fr.path, where)}); slices of one volume must share their orientation, "
                "give a folder with one series only",
            )
    n_vox = first.rows * first.columns * len(frames)
    if n_vox > MAX_VOXELS:
        raise InputError(
            where,
            f"the headers declare {first.columns}×{first.rows}×{len(frames)} voxels, more than "
            f"SpineNav reads ({MAX_VOXELS:.0e}); the files are damaged or not a CT volume",
        )
    # int16 HU, or float32 when a rescale is not integral; plus one decoded frame at a time
    check_memory(where, n_vox * 4, f"reading {first.columns}×{first.rows}×{len(frames)} DICOM voxels")
    if min(first.pixel_spacing) <= 0:
        raise InputError(
            first.path, f"PixelSpacing {_mm(first.pixel_spacing)} is not positive; the header is damaged"
        )
    row, col = np.array(first.orientation[:3]), np.array(first.orientation[3:])
    if (
        abs(np.linalg.norm(row) - 1) > 0.01
        or abs(np.linalg.norm(col) - 1) > 0.01
        or abs(float(row @ col)) > 0.01
    ):
        raise InputError(
            first.path,
            f"ImageOrientationPatient {list(first.orientation)} is not two orthogonal unit "
            "vectors; the header is damaged",
        )


def _sort_and_check(frames: list[Frame], where: Path) -> _Stack:
    """Sort frames along the slice normal and measure steps, gaps and tilt (refusing what cannot be fixed)."""
    o = frames[0].orientation
    row = np.array(o[:3], dtype=float)
    row /= np.linalg.norm(row)
    col = np.array(o[3:], dtype=float)
    col -= (col @ row) * row  # exact orthogonality: Volume.direction must be orthonormal
    col /= np.linalg.norm(col)
    normal = np.cross(row, col)
    positions = np.array([fr.position for fr in frames], dtype=float)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    frames = [frames[k] for k in order]
    positions, along = positions[order], along[order]
    steps = np.diff(along)

    same = np.flatnonzero(steps < SAME_POSITION_MM)
    if same.size:
        a, b = frames[same[0]], frames[same[0] + 1]
        pairs = "two slices" if same.size == 1 else f"{same.size} pairs of slices"
        raise InputError(
            where,
            f"{pairs} share a position (e.g. {_rel(a.path, where)}{_frame(a)} and "
            f"{_rel(b.path, where)}{_frame(b)} at {along[same[0]]:.2f} mm along the slice normal): "
            "the series mixes acquisitions or phases; export one phase per series and load that",
        )
    step = float(np.median(steps))
    gaps = np.flatnonzero(steps >= GAP_FACTOR * step)
    if gaps.size:
        g = gaps[0]
        raise InputError(
            where,
            f"slices are missing between positions {along[g]:.2f} and {along[g + 1]:.2f} mm along "
            f"the slice normal (a {steps[g]:.2f} mm gap where the step is {step:.2f} mm, after "
            f"{_rel(frames[g].path, where)}{_frame(frames[g])}); copy the complete series",
        )
    uneven = bool(np.abs(steps - step).max() > UNEVEN_TOLERANCE * step)

    spacing_j, spacing_i = frames[0].pixel_spacing
    drift = positions - positions[0]
    offsets = np.column_stack([drift @ row / spacing_i, drift @ col / spacing_j])
    line = positions[-1] - positions[0]
    cos_tilt = abs(float(line @ normal)) / float(np.linalg.norm(line))
    tilt_deg = math.degrees(math.acos(min(cos_tilt, 1.0)))
    sheared = tilt_deg > TILT_TOLERANCE_DEG or float(np.abs(offsets).max()) > SHIFT_TOLERANCE_VOXELS
    if sheared:
        span = np.ceil(offsets.max(axis=0) - offsets.min(axis=0) - 1e-6)
        n_out = (frames[0].columns + span[0]) * (frames[0].rows + span[1]) * len(frames)
        if n_out > MAX_VOXELS:
            raise InputError(
                where,
                f"gantry tilt of {tilt_deg:.1f}° would need a grid of {n_out:.3g} voxels to "
                "correct; the slice positions are implausible",
            )
    return _Stack(frames, row, col, normal, along, offsets, step, uneven, tilt_deg, sheared)


# ---- pixels ------------------------------------------------------------------------------------------------
def _read_pixels(
    frames: list[Frame], *, progress: ProgressCallback, cancel: CancelToken | None
) -> np.ndarray:
    """Decode every frame into one (K, rows, columns) array of HU, in the frames' order.

    int16 while every slice's rescaled values are integers within int16; promoted to float32 as soon
    as one is not (so a typical CT never needs a float copy).
    """
    rows, cols, n = frames[0].rows, frames[0].columns, len(frames)
    integral = all(_is_int(fr.slope) and _is_int(fr.intercept) for fr in frames)
    out = np.empty((n, rows, cols), dtype=np.int16 if integral else np.float32)
    by_file: dict[Path, dict[int, int]] = {}  # file → {frame index in the file: k}
    for k, fr in enumerate(frames):
        by_file.setdefault(fr.path, {})[fr.frame_index or 0] = k
    for done, (path, wanted) in enumerate(by_file.items()):
        check_cancel(cancel)
        if done % 4 == 0:
            progress(done / len(by_file), f"reading DICOM pixels {done}/{len(by_file)}")

        def store(index: int, raw: np.ndarray, wanted: dict[int, int] = wanted) -> None:
            nonlocal out
            k = wanted[index]
            fr = frames[k]
            if out.dtype == np.int16:
                hu = raw.astype(np.int64 if raw.dtype.itemsize >= 4 else np.int32)
                if fr.slope != 1:
                    hu *= int(fr.slope)
                if fr.intercept:
                    hu += int(fr.intercept)
                if hu.size and (hu.min() < -32768 or hu.max() > 32767):
                    out = out.astype(np.float32)
                out[k] = hu
            else:
                out[k] = raw.astype(np.float64) * fr.slope + fr.intercept

        _decode(path, rows, cols, wanted, store)
    progress(1.0, "pixels read")
    return out


def _decode(
    path: Path, rows: int, cols: int, wanted: dict[int, int], store: Callable[[int, np.ndarray], None]
) -> None:
    """Decode the ``wanted`` frames of one file and hand each to ``store(frame index, (rows, cols) array)``.

    Frames of a multi-frame file are decoded and stored one at a time, so a big enhanced CT never
    holds its whole decoded pixel data beside the output volume.
    """
    with quiet_pydicom():  # header values convert lazily on access: odd ones warn there, not at reading
        ds = _open_pixels(path, rows, cols)
        ts = UID(str(ds.file_meta.TransferSyntaxUID))
        single = int(ds.get("NumberOfFrames") or 1) == 1
        stored: set[int] = set()
        index = 0
        frames: Iterator[np.ndarray] | None = None
        while True:
            try:
                if frames is None:
                    frames = iter([ds.pixel_array]) if single else iter_pixels(ds)
                frame = next(frames, None)
            except Exception as exc:  # noqa: BLE001 - decoders (pylibjpeg, gdcm) raise assorted types
                name = ts.name if ts.name != str(ts) else f"transfer syntax {ts}"
                raise InputError(
                    path,
                    f"cannot decode the pixel data ({name}: {_short(exc)}); convert the series to "
                    "uncompressed DICOM (e.g. gdcmconv --raw) and load that",
                ) from None
            if frame is None:
                break
            if index in wanted:
                if frame.shape != (rows, cols):
                    raise InputError(
                        path,
                        f"frame {index + 1} decodes to shape {frame.shape}, the header says "
                        f"{rows} × {cols}; the file is damaged",
                    )
                store(index, frame)
                stored.add(index)
            index += 1
    if stored != set(wanted):
        raise InputError(
            path, f"only {index} frames could be decoded, the header declares more; the file is damaged"
        )


def _open_pixels(path: Path, rows: int, cols: int) -> Dataset:
    """The whole dataset of a file whose pixels are about to be decoded, checked for truncation."""
    try:
        ds = dcmread_any(path, stop_before_pixels=False)
    except Exception as exc:  # noqa: BLE001 - a file that changed or is cut short can fail in many ways
        raise InputError(
            path,
            f"the file cannot be read ({type(exc).__name__}); it is damaged or truncated, copy "
            "it again from the source",
        ) from None
    if "PixelData" not in ds:
        raise InputError(path, "the file has no pixel data; copy the series again from the source")
    meta = ds.file_meta
    if "TransferSyntaxUID" not in meta:
        # raw (preamble-less) files: pydicom guessed the encoding while reading
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ts = UID(str(meta.TransferSyntaxUID))
    try:
        samples = int(ds.get("SamplesPerPixel") or 1)
        bits = int(ds.BitsAllocated)
        declared = int(ds.get("NumberOfFrames") or 1)
    except (AttributeError, TypeError, ValueError):
        raise InputError(
            path,
            "the pixel description (BitsAllocated, SamplesPerPixel) is missing or damaged; "
            "copy the file again from the source",
        ) from None
    if samples != 1:
        raise InputError(
            path, f"{samples} samples per pixel (a colour image), not a CT slice; give the CT series"
        )
    if ts.is_transfer_syntax and not ts.is_compressed:
        expected = (rows * cols * declared * bits + 7) // 8
        got = len(ds.PixelData)
        if got < expected:
            raise InputError(
                path,
                f"the pixel data is truncated ({got} of {expected} bytes); copy the file again "
                "from the source",
            )
        if got > expected + (expected % 2):  # one padding byte makes an odd length even
            raise InputError(
                path,
                f"the pixel data holds {got} bytes where {rows} rows × {cols} columns × {declared} frame(s) of "
                f"{bits} bits need {expected}: the image size in the header is wrong (the image would be sheared "
                "or cut); export the series again",
            )
    return ds


# ---- resampling --------------------------------------------------------------------------------------------
def _unshear(array: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undo a gantry-tilt shear: shift each slice in-plane onto one common, grown grid.

    Parameters
    ----------
    array : (K, J, I)
        Slices sorted along the normal.
    offsets : (K, 2)
        In-plane position of each slice's pixel (0, 0) relative to slice 0's, in voxels along (i, j).

    Returns
    -------
    out : (K, J', I') float32
        Every slice resampled (linear) onto the grid whose pixel (0, 0) is at ``lo`` of slice 0's
        pixel frame; I' and J' grow so that no input pixel is lost. Outside a slice's data: the
        minimum of the input (the scanner's "no data" value, usually air or padding).
    lo : (2,)
        In-plane (i, j) offset in voxels of the new grid's first pixel.
    """
    from scipy.ndimage import affine_transform

    k_n, j_n, i_n = array.shape
    lo = offsets.min(axis=0)
    span = np.ceil(offsets.max(axis=0) - lo - 1e-6).astype(int)
    out = np.empty((k_n, j_n + span[1], i_n + span[0]), dtype=np.float32)
    fill = float(array.min())
    for k in range(k_n):
        # output (j', i') samples input (j' + lo_j - off_j, i' + lo_i - off_i) of slice k
        shift = (lo[1] - offsets[k, 1], lo[0] - offsets[k, 0])
        affine_transform(
            array[k].astype(np.float32),
            np.eye(2),
            offset=shift,
            output=out[k],
            output_shape=out.shape[1:],
            order=1,
            mode="constant",
            cval=fill,
        )
    return out, lo


def _resample_along_normal(array: np.ndarray, along: np.ndarray, step: float) -> np.ndarray:
    """Linear interpolation of (K, J, I) slices at ``along`` (mm, increasing, from 0) onto 0, step, 2·step…"""
    n_out = int(math.floor(along[-1] / step + 1e-6)) + 1
    targets = step * np.arange(n_out)
    lower = np.clip(np.searchsorted(along, targets, side="right") - 1, 0, len(along) - 2)
    weight = (targets - along[lower]) / (along[lower + 1] - along[lower])
    out = np.empty((n_out,) + array.shape[1:], dtype=np.float32)
    for m in range(n_out):
        a, w = lower[m], float(np.clip(weight[m], 0.0, 1.0))
        out[m] = (1.0 - w) * array[a].astype(np.float32) + w * array[a + 1].astype(np.float32)
    return out


# ---- helpers -----------------------------------------------------------------------------------------------
def _is_int(value: float) -> bool:
    return float(value).is_integer() and abs(value) < 2**15


def _mm(pair: tuple[float, ...]) -> str:
    return "×".join(f"{v:g}" for v in pair) + " mm"


def _frame(fr: Frame) -> str:
    return "" if fr.frame_index is None else f" frame {fr.frame_index + 1}"


def _rel(path: Path, where: Path) -> str:
    base = where if where.is_dir() else where.parent
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _short(exc: BaseException, limit: int = 80) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
