"""The accuracy protocol of DESIGN §7 on two label maps: per-vertebra metrics, identification, shifts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import SimpleITK as sitk

from .. import registry
from ..errors import InputError
from ..volume import Volume
from .metrics import compare_masks, label_boxes, label_centroids, union_crop

ID_DISTANCE_MM = 20.0
"""VerSe identification radius: a predicted center farther than this from the reference misses."""

REGIONS = ("cervical", "thoracic", "lumbar", "sacral")

NOTE = (
    "Agreement with the given reference. Whether the reference is an expert segmentation or another "
    "model's prediction is unknown to this tool; only an expert reference measures accuracy."
)

DEFINITIONS = {
    "dice": "2|P∩R|/(|P|+|R|) per label on the reference grid; 0 when the label is in only one of the two",
    "hd95_mm": "95th percentile of the pooled symmetric boundary-voxel distances (pred→ref and ref→pred)",
    "msd_mm": "mean of the same pooled symmetric boundary-voxel distances",
    "center_error_mm": "distance from the predicted center to the reference mask centroid of that label",
    "identified": f"predicted center of that label within {ID_DISTANCE_MM:g} mm of the reference "
    "centroid and no other reference centroid closer to it (VerSe)",
    "shift": "predicted level minus reference level in cranio-caudal order (T13/L6 count only when "
    "present); +1 means the predicted name is one level too caudal",
}


def evaluate_labels(
    pred: Volume | None,
    truth: Volume,
    pred_centers: Mapping[int, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Compare a predicted vertebra label map with a reference one (DESIGN §7).

    Parameters
    ----------
    pred, truth : Volume
        Integer label maps with VerSe ids (`inference.registry`), ``array`` indexed ``[k, j, i]``,
        LPS geometry. When the grids differ, ``pred`` is resampled onto the ``truth`` grid
        (nearest neighbour); metrics are always computed on the ``truth`` grid. ``pred`` may be
        None for a centers-only prediction: mask metrics (Dice, HD95, MSD) are then None.
    pred_centers : mapping of int to array of shape (3,), optional
        Predicted center of each vertebra id, (x, y, z) LPS mm (a bundle's ``center_lps``).
        Ids without a center here use the centroid of their predicted mask.

    Returns
    -------
    dict
        JSON-ready report, floats rounded to 3 decimals, ``None`` where a value is undefined:
        ``per_vertebra`` (one record per id in either map, cranio-caudal order), ``per_region``,
        ``overall``, ``shifts``, ``mislabels``, ``missed``, ``false_positives``, ``inputs``,
        ``grid``, ``coordinate_system`` ("LPS"), ``units`` ("mm"), ``definitions`` and ``note``.
        Means of Dice run over all records (a missed or false-positive vertebra counts 0);
        means of HD95, MSD and center error over the vertebrae where they are defined; the
        identification rate is over the reference vertebrae.

    Raises
    ------
    InputError
        Unknown label ids, or grids that do not overlap in LPS space.
    """
    pred_boxes, ref_boxes = ({} if pred is None else _checked_boxes(pred)), _checked_boxes(truth)
    # Centers come from the prediction's own grid: resampling onto a coarser reference would blur them.
    centers = {} if pred is None else label_centroids(pred, pred_boxes)
    for vid, c in (pred_centers or {}).items():
        c = np.asarray(c, dtype=float).reshape(3)
        if int(vid) not in registry.VALID_IDS or not np.isfinite(c).all():
            raise InputError(None if pred is None else pred.metadata.get("source_path"),
                             f"predicted center {vid!r}: {c.tolist()} is not a VerSe id with a finite point")
        centers[int(vid)] = c
    resampled = pred is not None and not pred.same_grid(truth)
    pred_array = None if pred is None else np.asarray(pred.array)
    if resampled:
        pred_array = _resample_onto(pred, truth)
        pred_boxes = label_boxes(pred_array)

    ref_centers = label_centroids(truth, ref_boxes)
    pred_ids, ref_ids = set(centers), set(ref_boxes)
    spacing_kji = truth.spacing[::-1]

    identified = _identified(centers, ref_centers)
    rows = []
    for vid in registry.sort_ids(pred_ids | ref_ids):
        v = registry.by_id(vid)
        row: dict[str, Any] = {
            "name": v.name, "id": vid, "region": v.region,
            "in_reference": vid in ref_ids, "in_prediction": vid in pred_ids,
            "dice": None if pred is None else 0.0, "hd95_mm": None, "msd_mm": None, "center_error_mm": None,
            "identified": identified.get(vid),
            "pred_center_lps": _r(centers.get(vid)), "reference_center_lps": _r(ref_centers.get(vid)),
        }
        if vid in pred_boxes and vid in ref_boxes:
            crop = union_crop([pred_boxes[vid], ref_boxes[vid]], truth.array.shape)
            m = compare_masks(pred_array[crop] == vid, truth.array[crop] == vid, spacing_kji)
            row.update(dice=_r(m.dice), hd95_mm=_r(m.hd95_mm), msd_mm=_r(m.msd_mm))
        if vid in centers and vid in ref_centers:
            row["center_error_mm"] = _r(np.linalg.norm(centers[vid] - ref_centers[vid]))
        rows.append(row)

    shifts, mislabels = _shifts_and_mislabels(centers, ref_centers)
    return {
        "coordinate_system": "LPS",
        "units": "mm",
        "per_vertebra": rows,
        "per_region": {region: _summary([r for r in rows if r["region"] == region]) for region in REGIONS},
        "overall": _summary(rows),
        "shifts": shifts,
        "mislabels": mislabels,
        "missed": [r["name"] for r in rows if r["in_reference"] and not r["in_prediction"]],
        "false_positives": [r["name"] for r in rows if r["in_prediction"] and not r["in_reference"]],
        "inputs": {
            "prediction": None if pred is None else pred.metadata.get("source_path"),
            "reference": truth.metadata.get("source_path"),
            "reference_convention": truth.metadata.get("label_convention"),
        },
        "grid": {
            "compared_on": "reference",
            "prediction_resampled": resampled,
            "reference_size": list(truth.size),
            "reference_spacing_mm": [round(s, 6) for s in truth.spacing],
        },
        "definitions": dict(DEFINITIONS),
        "note": NOTE,
    }


# ---- identification and level shifts -----------------------------------------------------------
def _identified(centers: Mapping[int, np.ndarray], ref_centers: Mapping[int, np.ndarray]) -> dict[int, bool]:
    """VerSe identification of every reference vertebra (reference id → identified)."""
    out = {}
    ref_ids = list(ref_centers)
    ref_xyz = np.array([ref_centers[i] for i in ref_ids]).reshape(-1, 3)
    for n, vid in enumerate(ref_ids):
        if vid not in centers:
            out[vid] = False
            continue
        d = np.linalg.norm(ref_xyz - centers[vid], axis=1)
        # "no other reference centroid closer": ties keep the vertebra identified
        out[vid] = bool(d[n] <= ID_DISTANCE_MM and d[n] <= d.min())
    return out


def _shifts_and_mislabels(
    centers: Mapping[int, np.ndarray], ref_centers: Mapping[int, np.ndarray]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Predicted vertebrae sitting on (nearest, within 20 mm) a reference vertebra of another label."""
    if not ref_centers:
        return [], []
    pos = registry.level_positions(set(centers) | set(ref_centers))
    ref_ids = list(ref_centers)
    ref_xyz = np.array([ref_centers[i] for i in ref_ids])
    shifts, mislabels = [], []
    for vid in registry.sort_ids(centers):
        d = np.linalg.norm(ref_xyz - centers[vid], axis=1)
        nearest = int(np.argmin(d))
        ref_vid = ref_ids[nearest]
        if ref_vid == vid or d[nearest] > ID_DISTANCE_MM:
            continue
        step = pos[vid] - pos[ref_vid]
        pred_name, ref_name = registry.name_of(vid), registry.name_of(ref_vid)
        record = {
            "predicted": pred_name, "predicted_id": vid, "reference": ref_name, "reference_id": ref_vid,
            "shift": step, "distance_mm": _r(d[nearest]),
            "text": f"predicted {pred_name} at reference {ref_name} (shift {step:+d})",
        }
        (shifts if abs(step) == 1 else mislabels).append(record)
    return shifts, mislabels


# ---- summaries ------------------------------------------------------------------------------------
def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over a group of per-vertebra records (see `evaluate_labels` for which records count)."""
    ref = [r for r in rows if r["in_reference"]]
    n_identified = sum(bool(r["identified"]) for r in ref)
    matched = [r for r in rows if r["in_reference"] and r["in_prediction"]]
    return {
        "mean_dice": _mean(r["dice"] for r in rows),
        "mean_dice_matched": _mean(r["dice"] for r in matched),
        "mean_hd95_mm": _mean(r["hd95_mm"] for r in rows),
        "mean_msd_mm": _mean(r["msd_mm"] for r in rows),
        "mean_center_error_mm": _mean(r["center_error_mm"] for r in rows),
        "id_rate": _r(n_identified / len(ref)) if ref else None,
        "n_reference": len(ref),
        "n_predicted": sum(r["in_prediction"] for r in rows),
        "n_identified": n_identified,
        "n_matched": len(matched),
        "n_missed": sum(r["in_reference"] and not r["in_prediction"] for r in rows),
        "n_false_positives": sum(r["in_prediction"] and not r["in_reference"] for r in rows),
    }


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return _r(float(np.mean(vals))) if vals else None


def _r(x: Any) -> Any:
    """Round for JSON: floats and vectors to 3 decimals; non-finite → None."""
    if x is None:
        return None
    arr = np.asarray(x, dtype=float)
    if arr.ndim:
        return [_r(v) for v in arr.tolist()]
    return round(float(arr), 3) if np.isfinite(arr) else None


# ---- grids ------------------------------------------------------------------------------------------
def _checked_boxes(volume: Volume) -> dict[int, tuple[slice, slice, slice]]:
    """`label_boxes` of a label map after checking that it holds VerSe ids only."""
    path = volume.metadata.get("source_path")
    if not np.issubdtype(volume.array.dtype, np.integer) or volume.array.min() < 0:
        raise InputError(path, "a label map must hold non-negative integer ids (read it with read_label_map)")
    boxes = label_boxes(volume.array)
    unknown = sorted(i for i in boxes if i not in registry.VALID_IDS)
    if unknown:
        raise InputError(path, f"unknown vertebra ids {unknown[:10]} (VerSe numbering expected: 1–26, 28)")
    return boxes


def _resample_onto(pred: Volume, truth: Volume) -> np.ndarray:
    """``pred`` labels on ``truth``'s grid (nearest neighbour), as an array ``[k, j, i]``."""
    (lo_p, hi_p), (lo_t, hi_t) = pred.extent(), truth.extent()
    if np.any(np.maximum(lo_p, lo_t) >= np.minimum(hi_p, hi_t)):
        raise InputError(pred.metadata.get("source_path"),
                         "the bundle and the reference do not overlap in LPS space; are they the same scan?")
    f = sitk.ResampleImageFilter()
    f.SetSize(truth.size)
    f.SetOutputSpacing(truth.spacing)
    f.SetOutputOrigin(truth.origin)
    f.SetOutputDirection(tuple(truth.direction.flatten()))
    # identity transform: both grids are already placed in the one LPS frame
    f.SetTransform(sitk.Transform())
    f.SetInterpolator(sitk.sitkNearestNeighbor)
    f.SetDefaultPixelValue(0)
    return sitk.GetArrayFromImage(f.Execute(pred.to_sitk()))
