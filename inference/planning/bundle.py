"""`spinenav plan OUT`: add proposed pedicle screws to a bundle (trajectories.json + Slicer line markups).

The bundle is rewritten atomically (a complete copy with the new files and an updated manifest
replaces it), so a failure leaves the old bundle as it was. Existing trajectories are replaced
only with ``force``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import registry
from ..errors import InputError
from ..export.atomic import atomic_output_dir
from ..export.bundle import SCHEMA_VERSION
from ..export.formats import SLICER_MARKUPS_SCHEMA, file_record, json_bytes, point
from ..io.image_file import read_image_file
from ..measure import CUT_AREA_MM2, field_of_view_cut, vertebra_centers
from ..progress import CancelToken, ProgressCallback, check_cancel, report
from .screws import CATALOGUE, GRADES, Catalogue, Screw, VertebraModel, plan_vertebra

PLANNED_REGIONS = ("thoracic", "lumbar")
TRAJECTORIES = "trajectories.json"
TRAJECTORY_MARKUPS = "trajectories.mrk.json"
AUTOMATIC = "automatic proposal along the pedicle axis from the vertebra mask (inference.planning)"


def parse_levels(text: str | None) -> list[int] | None:
    """``"T10-L5"`` or ``"L4,L5"`` → VerSe ids in cranio-caudal order (None: every planned level)."""
    if not text:
        return None
    out: list[int] = []
    for part in text.split(","):
        try:
            out += registry.parse_level_range(part)
        except KeyError:
            raise InputError(None, f"--levels {text!r}: unknown level name; write e.g. T10-L5 or L4,L5") from None
        except ValueError:
            raise InputError(None, f"--levels {text!r}: write a range as FIRST-LAST, e.g. T10-L5") from None
    return registry.sort_ids(set(out))


CUT_MARGIN_MM = 10.0
"""A screw whose axis passes closer than this to where the scan's edge cuts its vertebra is not
proposed: the bone around it is partly outside the image, so neither its size nor its grade can
be trusted."""


@dataclass
class PlanResult:
    """What `plan_labels_with_models` gives: vertebra models (level name → `VertebraModel`, to
    grade edited screws), the proposed screws, and why anything wanted was not planned
    (``"T12 left"`` or ``"T11"`` → a sentence)."""

    models: dict[str, VertebraModel]
    screws: list[Screw]
    not_planned: dict[str, str] = field(default_factory=dict)
    ct_note: str = "no CT given: graded on the mask only"


def plan_labels(labels, levels: list[int] | None = None, *, ct=None, progress: ProgressCallback | None = None,
                cancel: CancelToken | None = None, trajectory: str = "straight-forward",
                catalogue: Catalogue = CATALOGUE) -> list[Screw]:
    """Two screws per planned level of a label map (thoracic and lumbar levels unless ``levels``);
    with ``ct`` (on any grid) each screw also gets its breach against bone by HU."""
    return plan_labels_with_models(labels, levels, ct=ct, progress=progress, cancel=cancel, trajectory=trajectory,
                                   catalogue=catalogue).screws


def plan_labels_with_models(labels, levels: list[int] | None = None, *, ct=None,
                            progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                            trajectory: str = "straight-forward", catalogue: Catalogue = CATALOGUE) -> PlanResult:
    """`plan_labels` with the vertebra models and the reasons for what was not planned."""
    tell = report(progress)
    centers = vertebra_centers(labels)
    present = registry.sort_ids(centers)
    wanted = [vid for vid in present if (levels is None and registry.by_id(vid).region in PLANNED_REGIONS)
              or (levels is not None and vid in levels)]
    result = PlanResult({}, [])
    ct_image = None if ct is None else ct.to_sitk()  # once, not once per vertebra
    for n, vid in enumerate(wanted):
        check_cancel(cancel)
        name = registry.name_of(vid)
        tell(n / max(len(wanted), 1), f"planning {name}")
        k = present.index(vid)
        up = None
        if 0 < k < len(present) - 1:
            up = centers[present[k - 1]] - centers[present[k + 1]]  # cranial neighbour minus caudal one
        cut, cut_mm2 = field_of_view_cut(labels, vid)
        if cut_mm2 > CUT_AREA_MM2:  # decided before the vertebra's model is built
            result.not_planned[name] = (
                f"not planned: the scan's edge cuts {name} across {cut_mm2:.0f} mm² of bone (more than a process "
                "tip); plan it on a scan that shows the whole vertebra")
            continue
        try:
            model, level_screws = plan_vertebra(labels, vid, up_hint=None if up is None else up / np.linalg.norm(up),
                                                ct=ct_image, trajectory=trajectory, catalogue=catalogue)
        except ValueError as exc:
            result.not_planned[name] = f"not planned: {exc}"
            continue
        result.models[model.level] = model
        for side, why in model.skipped.items():
            result.not_planned[f"{model.level} {side}"] = f"not planned: {why}"
        kept = []
        for s in level_screws:
            gap = None if cut is None else _distance_to_segment(cut, s.entry_lps, s.target_lps).min()
            if gap is not None and gap < CUT_MARGIN_MM:
                result.not_planned[f"{s.level} {s.side}"] = (
                    f"not planned: the scan's edge cuts {s.level} {gap:.0f} mm from this screw's axis; "
                    "plan it on a scan that shows the whole vertebra")
            else:
                kept.append(s)
        if len(kept) < 2:
            for s in kept:
                s.collides = False  # its partner was dropped
        result.screws += kept
    tell(1.0, f"{len(result.screws)} screws")
    return result


def _distance_to_segment(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip((points - a) @ ab / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


def trajectory_files(screws: list[Screw]) -> dict[str, bytes]:
    """trajectories.json and trajectories.mrk.json of ``screws`` (bundle-relative name → bytes)."""
    return {TRAJECTORIES: json_bytes(trajectories_doc(screws)), TRAJECTORY_MARKUPS: json_bytes(line_markups(screws))}


def plan_manifest(screws: list[Screw], method: str, not_planned: dict[str, str] | None = None) -> dict[str, Any]:
    """The manifest's ``plan`` section."""
    return {
        "levels": [registry.name_of(v) for v in registry.sort_ids({registry.id_of(s.level) for s in screws})],
        "screws": len(screws),
        "method": method,
        "grades": summary(screws),
        "not_planned": dict(not_planned or {}),
    }


def plan_bundle(bundle: str | Path, levels: list[int] | None = None, *, ct_path: str | Path | None = None,
                force: bool = False, progress: ProgressCallback | None = None,
                cancel: CancelToken | None = None, trajectory: str = "straight-forward",
                catalogue: Catalogue = CATALOGUE) -> PlanResult:
    """Plan screws on the bundle's labels.nii.gz and add trajectories.json / .mrk.json to it.

    The breach against bone by HU needs the CT: ``ct_path``, else the CT the manifest names when it
    is still there and on the labels' grid.
    """
    bundle = Path(bundle)
    manifest_path, labels_path = bundle / "manifest.json", bundle / "labels.nii.gz"
    if not manifest_path.is_file():
        raise InputError(bundle, "not a SpineNav bundle (manifest.json missing); give the folder of 'spinenav analyze'")
    if not labels_path.is_file():
        raise InputError(bundle, "the bundle has no labels.nii.gz (a centers-only analysis?); run 'spinenav analyze' "
                         "with segmentation first")
    if (bundle / TRAJECTORIES).exists() and not force:
        raise InputError(bundle / TRAJECTORIES, "exists already; pass --force to replace the planned screws")
    labels = read_image_file(labels_path, what="label map")
    manifest = json.loads(manifest_path.read_text())
    _check_levels(bundle, labels, levels)
    ct, ct_note = _bundle_ct(manifest, labels, ct_path)
    result = plan_labels_with_models(labels, levels, ct=ct, progress=progress, cancel=cancel, trajectory=trajectory,
                                     catalogue=catalogue)
    result.ct_note = ct_note
    screws = result.screws
    if not screws:
        why = "; ".join(f"{name}: {reason}" for name, reason in result.not_planned.items()) or "no level to plan"
        kept = " (the screws already planned are kept)" if (bundle / TRAJECTORIES).exists() else ""
        raise InputError(bundle, f"no screw could be planned{kept}: {why}")
    with atomic_output_dir(bundle, force=True) as tmp:
        for item in bundle.iterdir():
            if item.name in (TRAJECTORIES, TRAJECTORY_MARKUPS):
                continue
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        for name, data in trajectory_files(screws).items():
            (tmp / name).write_bytes(data)
        check_cancel(cancel)
        files = [file_record(tmp, p) for p in sorted(tmp.rglob("*"), key=lambda p: p.relative_to(tmp).as_posix())
                 if p.is_file() and p.name != "manifest.json"]
        manifest["files"] = files
        manifest["plan"] = plan_manifest(screws, AUTOMATIC, result.not_planned)
        manifest["plan"]["ct_breach"] = ct_note
        manifest["plan"]["trajectory"] = trajectory
        manifest["plan"]["catalogue"] = catalogue.to_json()
        (tmp / "manifest.json").write_bytes(json_bytes(manifest))
    return result


def read_catalogue(path: str | Path) -> Catalogue:
    """The screw catalogue in a JSON file ``{"diameters_mm": [...], "lengths_mm": [...]}``; `InputError` naming
    the file for anything else."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise InputError(path, f"cannot read the catalogue ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not a JSON catalogue ({exc}); write {{\"diameters_mm\": [...], "
                         "\"lengths_mm\": [...]}") from None
    if not isinstance(doc, dict) or set(doc) - {"diameters_mm", "lengths_mm"}:
        raise InputError(path, "a catalogue holds only \"diameters_mm\" and \"lengths_mm\" (lists of mm)")
    try:
        values = {k: tuple(float(v) for v in doc.get(k, getattr(CATALOGUE, k))) for k in ("diameters_mm", "lengths_mm")}
        return Catalogue(**values)
    except (TypeError, ValueError) as exc:
        raise InputError(path, f"bad catalogue: {exc}") from None


def _check_levels(bundle: Path, labels, levels: list[int] | None) -> None:
    """`InputError` when none of the asked levels (default: thoracic and lumbar) is in the bundle."""
    present = registry.sort_ids([int(v) for v in np.unique(labels.array) if v != 0 and int(v) in registry.VALID_IDS])
    wanted = (levels if levels is not None
              else [v for v in present if registry.by_id(v).region in PLANNED_REGIONS])
    if not set(wanted) & set(present):
        held = f"{registry.name_of(present[0])}–{registry.name_of(present[-1])}" if present else "no vertebra"
        asked = ("thoracic or lumbar levels" if levels is None
                 else ", ".join(registry.name_of(v) for v in levels[:3]) + ("…" if len(levels) > 3 else ""))
        raise InputError(bundle, f"holds {held}, none of the {asked} asked for; choose --levels among those it holds")


def _bundle_ct(manifest: dict[str, Any], labels, ct_path: str | Path | None):
    """(CT volume or None, a sentence saying which CT the HU breach uses, or why none)."""
    from ..io import read_ct

    named = (manifest.get("input") or {}).get("ct", {}).get("path")
    path = Path(ct_path) if ct_path is not None else Path(named) if named else None
    if path is None or not path.exists():
        if ct_path is not None:
            raise InputError(ct_path, "not found; give the CT the bundle was made from, or leave --ct out")
        if named is None:
            return None, "the bundle names no CT (give one with --ct): graded on the mask only"
        return None, f"the CT named in the manifest ({named}) is not there: graded on the mask only"
    ct = read_ct(path)
    if not ct.same_grid(labels):
        if ct_path is not None:
            raise InputError(ct_path, "is not on the grid of the bundle's labels; give the CT the bundle was made from")
        return None, f"{path} is no longer on the labels' grid: graded on the mask only"
    return ct, f"from {path}"


def trajectories_doc(screws: list[Screw]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "coordinate_system": "LPS",
        "units": "mm",
        "grading": "Gertzbein-Robbins on the vertebra mask: " + ", ".join(
            f"{g} < {lim:g} mm" if np.isfinite(lim) else f"{g} beyond" for g, lim in GRADES[1:]),
        "screws": [s.to_json() for s in screws],
    }


def summary(screws: list[Screw]) -> dict[str, Any]:
    grades = [s.grade for s in screws]
    by_hu = [s.cortex_grade for s in screws if s.cortex_grade is not None]
    return {
        "per_grade": {g: grades.count(g) for g, _ in GRADES},
        "a_or_b": round(sum(g in "AB" for g in grades) / len(grades), 3) if grades else None,
        "by_hu_a_or_b": round(sum(g in "AB" for g in by_hu) / len(by_hu), 3) if by_hu else None,
        "entering_canal": sum(s.enters_canal for s in screws),
        "colliding_pairs": sum(s.collides for s in screws) // 2,
    }


def line_markups(screws: list[Screw]) -> dict[str, Any]:
    """3D Slicer markups document with one line (entry → tip) per screw, LPS."""
    markups = []
    for s in screws:
        markups.append({
            "type": "Line",
            "name": f"{s.level} {s.side} {s.diameter_mm:g}x{s.length_mm:g} ({s.grade})",
            "coordinateSystem": "LPS",
            "coordinateUnits": "mm",
            "locked": True,
            "controlPoints": [
                {"id": "1", "label": "entry", "position": point(s.entry_lps), "positionStatus": "defined"},
                {"id": "2", "label": "tip", "position": point(s.target_lps), "positionStatus": "defined"},
            ],
        })
    return {"@schema": SLICER_MARKUPS_SCHEMA, "markups": markups}
