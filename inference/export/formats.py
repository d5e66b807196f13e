"""The bundle's small files, each with deterministic bytes: JSON, CSV, Slicer markups, NIfTI.

Coordinates are LPS millimetres everywhere and every file that holds them says so.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..volume import Volume

SLICER_MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/main/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)

# Slicer stores a control point's orientation in the file's coordinate system; identity in its
# internal RAS frame reads as diag(-1, -1, 1) in LPS, which is what Slicer itself writes.
_LPS_IDENTITY_ORIENTATION = [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0]

CSV_COLUMNS = [
    "name",
    "id",
    "center_lps_x_mm",
    "center_lps_y_mm",
    "center_lps_z_mm",
    "body_center_lps_x_mm",
    "body_center_lps_y_mm",
    "body_center_lps_z_mm",
    "volume_ml",
    "mesh_volume_ml",
    "confidence",
    "confidence_source",
    "lesion_score",
    "qa_flags",
    "stl",
]
"""Columns of vertebrae.csv (centers in LPS mm; qa_flags joined with ';')."""


def mm(value: float, digits: int = 3) -> float:
    """Round for a file: fixed digits, no ``-0.0``."""
    return round(float(value), digits) + 0.0


def point(xyz: Sequence[float] | np.ndarray | None, digits: int = 3) -> list[float] | None:
    return None if xyz is None else [mm(c, digits) for c in xyz]


def json_bytes(doc: Any) -> bytes:
    """UTF-8 JSON, two-space indent, keys in insertion order, trailing newline.

    A path whose bytes are not UTF-8 (held by Python as lone surrogates) is written as a JSON
    ``\\udcXX`` escape: valid JSON that reads back as the same path in Python.
    """
    return (json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8", "backslashreplace")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_record(root: Path, path: Path) -> dict[str, Any]:
    """``{"path", "bytes", "sha256"}`` of a bundle file (path relative to the bundle, POSIX)."""
    return {"path": path.relative_to(root).as_posix(), "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def csv_bytes(records: Sequence[dict[str, Any]]) -> bytes:
    """vertebrae.csv: one row per vertebra record (as in vertebrae.json), `CSV_COLUMNS` order."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for rec in records:
        center = rec["center_lps"]
        body = rec.get("body_center_lps") or [None, None, None]
        writer.writerow(
            [
                rec["name"],
                rec["id"],
                *(_cell(c) for c in center),
                *(_cell(c) for c in body),
                _cell(rec["volume_ml"]),
                _cell(rec.get("mesh_volume_ml")),
                _cell(rec.get("confidence")),
                rec.get("confidence_source") or "",
                _cell(rec.get("lesion_score")),
                ";".join(rec.get("qa_flags") or []),
                rec.get("stl") or "",
            ]
        )
    return buf.getvalue().encode("utf-8")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        return repr(value)
    return str(value)


def markups_json(points: Sequence[tuple[str, np.ndarray, str]], *, name: str = "Vertebra centers") -> dict[str, Any]:
    """3D Slicer markups (fiducial list) document, coordinates LPS mm.

    Parameters
    ----------
    points : sequence of (label, position (3,) LPS mm, description)
    name : str
        The markup node's name in Slicer.
    """
    control_points = [
        {
            "id": str(n + 1),
            "label": label,
            "description": description,
            "associatedNodeID": "",
            "position": point(position),
            "orientation": list(_LPS_IDENTITY_ORIENTATION),
            "selected": True,
            "locked": True,
            "visibility": True,
            "positionStatus": "defined",
        }
        for n, (label, position, description) in enumerate(points)
    ]
    return {
        "@schema": SLICER_MARKUPS_SCHEMA,
        "markups": [
            {
                "type": "Fiducial",
                "name": name,
                "coordinateSystem": "LPS",
                "coordinateUnits": "mm",
                "locked": True,
                "fixedNumberOfControlPoints": False,
                "labelFormat": "%N-%d",
                "lastUsedControlPointNumber": len(control_points),
                "controlPoints": control_points,
                "measurements": [],
                "display": {
                    "visibility": True,
                    "opacity": 1.0,
                    "color": [1.0, 0.5, 0.0],
                    "selectedColor": [1.0, 0.5, 0.0],
                    "propertiesLabelVisibility": False,
                    "pointLabelsVisibility": True,
                    "textScale": 3.0,
                    "glyphType": "Sphere3D",
                    "glyphScale": 2.0,
                },
            }
        ],
    }


def write_nifti(path: Path, volume: Volume, array: np.ndarray | None = None) -> None:
    """Write ``array`` (default ``volume.array``) on ``volume``'s grid as gzipped NIfTI.

    SimpleITK converts the LPS geometry to the NIfTI RAS affine itself. Its gzip stream carries
    no timestamp (mtime 0) and the header no date, so equal inputs give equal bytes (tested).
    """
    from ..io.paths import itk_write_path

    image = volume.to_sitk() if array is None else volume.with_array(array).to_sitk()
    writer = sitk.ImageFileWriter()
    with itk_write_path(path) as name:
        writer.SetFileName(name)
        writer.UseCompressionOn()
        writer.Execute(image)
