"""Evaluating a robot bundle (DESIGN §5) against reference labels: reading and checking its files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .. import registry
from ..errors import InputError
from ..io import read_label_map
from ..io.labels import Convention
from ..volume import Volume
from .protocol import evaluate_labels

LABELS_FILE = "labels.nii.gz"
VERTEBRAE_FILE = "vertebrae.json"


def evaluate_bundle(
    bundle_dir: str | Path, truth_path: str | Path, *, convention: Convention = "auto"
) -> dict[str, Any]:
    """Accuracy of a bundle's labels and centers against a reference label map (DESIGN §7).

    Parameters
    ----------
    bundle_dir : path
        Bundle folder holding ``vertebrae.json`` (``center_lps`` per vertebra, LPS mm) and, unless
        it is a centers-only bundle, ``labels.nii.gz`` (VerSe ids on the CT grid).
    truth_path : path
        Reference labels: a VerSe map, a TotalSegmentator multilabel file, or a folder / file of
        TotalSegmentator ``vertebrae_<NAME>.nii.gz`` masks.
    convention : {"auto", "verse", "totalseg"}
        Numbering of ``truth_path`` (see `inference.io.read_label_map`).

    Returns
    -------
    dict
        The report of `evaluate_labels`, with ``inputs`` naming the bundle files and the reference.

    Raises
    ------
    InputError
        Missing folder, not a bundle, malformed ``vertebrae.json``, unreadable labels or reference,
        or a reference that does not overlap the bundle in LPS space.
    """
    bundle = Path(bundle_dir)
    if not bundle.exists():
        raise InputError(bundle, "bundle folder not found; check the path")
    if not bundle.is_dir():
        raise InputError(bundle, "not a folder; give the bundle folder written by 'spinenav analyze' or "
                         "'spinenav export-labels'")
    labels_path, vertebrae_path = bundle / LABELS_FILE, bundle / VERTEBRAE_FILE
    if not vertebrae_path.is_file():
        raise InputError(bundle, f"not a SpineNav bundle ({vertebrae_path.name} missing); give the folder "
                         "written by 'spinenav analyze' or 'spinenav export-labels'")
    centers = read_bundle_centers(vertebrae_path)
    # a centers-only bundle (localization without segmentation) is judged on centers and labels only
    # the bundle's own masks are judged, not vetted: a leaking mask is a result to score
    pred = read_label_map(labels_path, convention="verse", anatomy_check=False) if labels_path.is_file() else None
    truth = read_label_map(truth_path, convention=convention)
    _check_same_scan(bundle, pred, truth, truth_path)
    report = evaluate_labels(pred, truth, centers)
    report["inputs"] = {
        "bundle": str(bundle.resolve()),
        "labels": str(labels_path.resolve()) if pred is not None else None,
        "vertebrae": str(vertebrae_path.resolve()),
        "reference": str(Path(truth_path).resolve()),
        "reference_convention": truth.metadata.get("label_convention"),
    }
    return report


def read_bundle_centers(path: str | Path) -> dict[int, np.ndarray]:
    """Predicted centers from a bundle's ``vertebrae.json``.

    Returns
    -------
    dict
        VerSe id → center, shape (3,), (x, y, z) LPS mm.

    Raises
    ------
    InputError
        Unreadable or malformed file: not a JSON object with a ``vertebrae`` list, a coordinate
        system other than LPS, a record without a valid id/name or ``center_lps`` of 3 finite
        numbers, or the same vertebra twice.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        reason = exc.strerror or exc
        raise InputError(path, f"cannot read the file ({reason}); check its permissions") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"malformed vertebrae.json ({exc}); export the bundle again") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("vertebrae"), list):
        raise InputError(path, "malformed vertebrae.json: expected an object with a 'vertebrae' list; "
                         "export the bundle again")
    system = doc.get("coordinate_system", "LPS")
    if system != "LPS":
        raise InputError(path, f"coordinate_system is {system!r}; SpineNav bundles hold LPS coordinates")
    centers: dict[int, np.ndarray] = {}
    for n, rec in enumerate(doc["vertebrae"]):
        where = f"malformed vertebrae.json: vertebrae[{n}]"
        if not isinstance(rec, dict):
            raise InputError(path, f"{where} is not an object; export the bundle again")
        vid = _record_id(path, where, rec)
        center = rec.get("center_lps")
        if (not isinstance(center, list) or len(center) != 3
                or not all(_is_number(c) and math.isfinite(c) for c in center)):
            raise InputError(path, f"{where} ({registry.name_of(vid)}): center_lps must be 3 finite numbers "
                             "(x, y, z LPS mm)")
        if vid in centers:
            name = registry.name_of(vid)
            raise InputError(path, f"{where}: {name} is listed twice; export the bundle again")
        centers[vid] = np.array(center, dtype=float)
    return centers


def _record_id(path: Path, where: str, rec: dict[str, Any]) -> int:
    """VerSe id of one record, from ``id`` and/or ``name`` (which must agree)."""
    vid, name = rec.get("id"), rec.get("name")
    if vid is not None and (not _is_number(vid) or vid not in registry.VALID_IDS or vid != int(vid)):
        raise InputError(path, f"{where}: id {vid!r} is not a VerSe vertebra id (1–26, 28)")
    if name is not None:
        try:
            from_name = registry.id_of(str(name))
        except KeyError:
            raise InputError(path, f"{where}: unknown vertebra name {name!r}") from None
        if vid is not None and vid != from_name:
            raise InputError(path, f"{where}: name {name!r} and id {vid} disagree")
        vid = from_name
    if vid is None:
        raise InputError(path, f"{where} has neither 'id' nor 'name'")
    return int(vid)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _check_same_scan(bundle: Path, pred, truth, truth_path) -> None:
    """`InputError` when the reference's vertebrae lie outside the bundle's scan: another patient or scan.

    The bundle's scan is its label map's grid, or for a centers-only bundle the grid its manifest
    records. Without either there is nothing to compare and the check is skipped.
    """
    grid = pred
    if grid is None:
        try:
            g = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))["input"]["grid"]
            shape = tuple(int(v) for v in reversed(g["size"]))  # (k, j, i); a view, nothing allocated
            grid = Volume(np.broadcast_to(np.zeros((1, 1, 1), np.uint8), shape), g["spacing"], g["origin"],
                          np.reshape(g["direction"], (3, 3)))
            lo_p, hi_p = grid.extent()
        except (OSError, ValueError, KeyError, TypeError):
            return
    else:
        lo_p, hi_p = grid.extent()
    fg = np.argwhere(np.asarray(truth.array) > 0)
    if not fg.size:
        return
    ijk = np.array([fg.min(axis=0)[::-1], fg.max(axis=0)[::-1]], dtype=float)
    corners = np.array([[ijk[a, 0], ijk[b, 1], ijk[c, 2]] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    pts = truth.index_to_lps(corners)
    lo_t, hi_t = pts.min(axis=0), pts.max(axis=0)
    if np.any(np.maximum(lo_p, lo_t) >= np.minimum(hi_p, hi_t)):
        raise InputError(truth_path, "the reference's vertebrae lie outside the bundle's scan (no overlap in LPS "
                         "space): it belongs to another scan; give the reference drawn on the CT of this bundle")

