"""`read_ct`: the one entry point for a CT, whatever its format, and its printable summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, display_path
from ..progress import CancelToken, ProgressCallback, check_cancel, report
from ..volume import Volume
from .checks import check_hounsfield
from .image_file import IMAGE_SUFFIXES, is_image_file, read_image_file
from .paths import check_input_path


def read_ct(
    path: str | Path,
    *,
    series_uid: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Volume:
    """Read a CT from a DICOM folder or file, NIfTI, NRRD or MetaImage file.

    Returns a `Volume` in Hounsfield units with LPS geometry. ``metadata`` always has
    ``source_path``, ``source_format``, ``modality`` (``None`` when the format does not say) and
    ``warnings`` (list of one-line notes such as resampling done); DICOM inputs add the series,
    frame of reference and scanner facts (see `inference.io.dicom`); ``series_uid`` picks one CT
    series of a DICOM folder that holds several (default: the best one).

    Raises `InputError` with a one-line message for anything that is not a usable 3D CT.
    """
    progress = report(progress)
    check_cancel(cancel)
    path = check_input_path(path, what="CT")
    if path.is_file() and is_image_file(path):
        progress(0.0, "reading image")
        volume = read_image_file(path, what="CT")
        volume.array = _as_int16_if_lossless(volume.array)
        volume.metadata.setdefault("modality", None)
        volume.metadata.setdefault("warnings", [])
    else:
        from .dicom import read_dicom  # pydicom import only when needed

        if path.is_file() and path.stat().st_size > 0 and not _looks_like_dicom(path):
            raise InputError(path, f"not a CT file SpineNav reads; give a DICOM folder or one of "
                             f"{', '.join(IMAGE_SUFFIXES)}")
        volume = read_dicom(path, series_uid=series_uid, progress=progress, cancel=cancel)
    check_hounsfield(path, volume.array)
    progress(1.0, "CT loaded")
    return volume


def _as_int16_if_lossless(array: np.ndarray) -> np.ndarray:
    """HU stored as wider integers (int32/int64 NIfTI) → int16, as DICOM reads give; else unchanged."""
    if np.issubdtype(array.dtype, np.integer) and array.dtype != np.int16 and array.size:
        lo, hi = array.min(), array.max()
        if lo >= np.iinfo(np.int16).min and hi <= np.iinfo(np.int16).max:
            return array.astype(np.int16)
    return array


def _looks_like_dicom(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(132)
    # Part-10 files carry 'DICM' at 128; raw (preamble-less) files start with a group-0008 tag.
    return head[128:132] == b"DICM" or head[:2] in (b"\x08\x00", b"\x02\x00") or path.suffix.lower() in (".dcm", "")


def ct_info(volume: Volume) -> dict[str, Any]:
    """JSON-ready facts about a CT: geometry (LPS mm), identity and scanner, HU range."""
    md = volume.metadata
    arr = volume.array
    info: dict[str, Any] = volume.geometry_dict()
    info.update(
        {
            "source_path": md.get("source_path"),
            "source_format": md.get("source_format"),
            "modality": md.get("modality"),
            "series_uid": md.get("series_uid"),
            "frame_of_reference_uid": md.get("frame_of_reference_uid"),
            "study_uid": md.get("study_uid"),
            "series_description": md.get("series_description"),
            "manufacturer": md.get("manufacturer"),
            "model": md.get("model"),
            "kernel": md.get("kernel"),
            "kvp": md.get("kvp"),
            "slice_thickness": md.get("slice_thickness"),
            "patient_position": md.get("patient_position"),
            "dtype": str(arr.dtype),
            "hu_min": float(np.min(arr)),
            "hu_max": float(np.max(arr)),
            "extent_mm": [round(float(s * n), 3) for s, n in zip(volume.spacing, volume.size, strict=True)],
            "warnings": list(md.get("warnings", [])),
            "other_series": list(md.get("other_series", [])),
        }
    )
    return info


def format_ct_info(info: dict[str, Any]) -> str:
    """Human-readable version of `ct_info`."""
    d = info["direction"]
    lines = [
        f"source        {display_path(info['source_path'])} ({info['source_format']})",
        f"modality      {info['modality'] or 'not stated by the file'}",
        f"size (i,j,k)  {' x '.join(str(s) for s in info['size'])} voxels",
        f"spacing       {' x '.join(f'{s:g}' for s in info['spacing'])} mm",
        f"extent        {' x '.join(f'{s:g}' for s in info['extent_mm'])} mm",
        f"origin (LPS)  {', '.join(f'{o:.3f}' for o in info['origin'])} mm",
        "direction     " + " | ".join(" ".join(f"{v:+.4f}" for v in d[r::3]) for r in range(3)) + "  (i | j | k axes)",
        f"HU range      {info['hu_min']:g} … {info['hu_max']:g} ({info['dtype']})",
    ]
    for key, label in [("series_uid", "series UID"), ("frame_of_reference_uid", "frame of ref."),
                       ("series_description", "description"), ("manufacturer", "manufacturer"),
                       ("model", "model"), ("kernel", "kernel"), ("kvp", "kVp"),
                       ("slice_thickness", "thickness mm"), ("patient_position", "patient pos.")]:
        if info.get(key) not in (None, ""):
            lines.append(f"{label:<14}{info[key]}")
    for s in info["other_series"]:
        lines.append(f"other series  {s}")
    for w in info["warnings"]:
        lines.append(f"warning       {w}")
    return "\n".join(lines)
