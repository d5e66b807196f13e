"""The bundle of ``spinenav analyze``.

With segmentation (the default pipeline) it is the full bundle of `inference.export.bundle`
(DESIGN §5): meshes, labels.nii.gz, lesions.nii.gz, DICOM-SEG for DICOM input, and per vertebra the
label's probability, the ±1 shift probabilities, lesion scores and QA flags. A pipeline run without
segmentation gives manifest.json, vertebrae.json / .csv and centers.mrk.json only; its manifest
says that masks and meshes are not part of it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ..measure import vertebra_voxel_counts
from ..pipeline import AnalysisResult
from ..progress import CancelToken, ProgressCallback, check_cancel, report
from ..volume import Volume
from .atomic import atomic_output_dir, check_output_dir
from .bundle import SCHEMA_VERSION, ExportResult, VertebraRecord, ct_identity, manifest_header, write_bundle
from .formats import csv_bytes, file_record, json_bytes, markups_json, mm, point

CONFIDENCE_SOURCE = "localizer + column decoding (posterior probability of the label)"


def write_analysis_bundle(
    out_dir: str | Path,
    result: AnalysisResult,
    ct: Volume,
    *,
    input_path: str | Path | None = None,
    corrections: list[dict[str, Any]] | None = None,
    extra_files: dict[str, bytes] | None = None,
    manifest_extra: dict[str, Any] | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ExportResult:
    """Write centers and labels of ``result`` (from `Pipeline.analyze` on ``ct``) as a bundle.

    ``corrections`` (the user's label edits: what, from, to, time) are recorded in the manifest;
    ``extra_files`` and ``manifest_extra`` as in `write_bundle` (the planned screws).
    Atomic (nothing appears at ``out_dir`` unless complete) and byte-identical for the same input
    except the manifest's ``created`` time. Raises `OutputExistsError` for a non-empty ``out_dir``
    without ``force``.
    """
    if result.segmentation is not None and result.segmentation.labels.array.any():
        return _write_full(out_dir, result, ct, input_path, corrections, force, progress, cancel, extra_files,
                           manifest_extra)
    t0 = time.perf_counter()
    tell = report(progress)
    inputs = [input_path, ct.metadata.get("source_path")]
    check_output_dir(out_dir, force=force, inputs=inputs)
    docs = []
    for v in result.vertebrae:
        docs.append(
            {
                "name": v.name,
                "id": v.id,
                "center_lps": point(v.center_lps),
                "body_center_lps": None,
                "volume_ml": None,
                "mesh_volume_ml": None,
                "voxels": None,
                "confidence": mm(v.confidence, 4),
                "confidence_source": CONFIDENCE_SOURCE,
                "p_shift_cranial": mm(v.p_shift_cranial, 4),
                "p_shift_caudal": mm(v.p_shift_caudal, 4),
                "detection_score": mm(v.detection_score, 4),
                "rib_ml": None if v.rib_ml is None else mm(v.rib_ml, 2),
                "alternatives": v.alternatives,
                "lesion_score": None,
                "qa_flags": list(v.qa_flags),
                "stl": None,
                "mesh_triangles": None,
            }
        )
    with atomic_output_dir(out_dir, force=force, inputs=inputs) as tmp:
        tell(0.2, "writing vertebrae")
        (tmp / "vertebrae.json").write_bytes(
            json_bytes({"schema_version": SCHEMA_VERSION, "coordinate_system": "LPS", "units": "mm", "vertebrae": docs})
        )
        (tmp / "vertebrae.csv").write_bytes(csv_bytes(docs))
        points = [
            (v.name, v.center_lps, f"{v.name} center (localizer), p={v.confidence:.2f}") for v in result.vertebrae
        ]
        (tmp / "centers.mrk.json").write_bytes(json_bytes(markups_json(points)))
        check_cancel(cancel)
        files = [
            file_record(tmp, p)
            for p in sorted(tmp.rglob("*"), key=lambda p: p.relative_to(tmp).as_posix())
            if p.is_file()
        ]
        inputs: dict[str, Any] = {
            "ct": ct_identity(Path(input_path) if input_path else None, ct),
            "grid": ct.geometry_dict(),
            "analysis": result.compute(),
        }
        manifest = {
            **manifest_header(inputs, result.models),
            "contents": "centers and labels only: per-vertebra masks, meshes and label maps need the "
            "segmentation model, which is not part of this version",
            "vertebrae": [v.name for v in result.vertebrae],
            "qa": list(result.qa),
            "corrections": list(corrections or []),
            "files": files,
            "warnings": [],
        }
        (tmp / "manifest.json").write_bytes(json_bytes(manifest))
        check_cancel(cancel)
    tell(1.0, "bundle written")
    records = [
        VertebraRecord(
            name=v.name,
            id=v.id,
            center_lps=v.center_lps,
            volume_ml=float("nan"),
            voxels=0,
            stl="",
            mesh_volume_ml=float("nan"),
            mesh_triangles=0,
            confidence=v.confidence,
            confidence_source=CONFIDENCE_SOURCE,
            qa_flags=list(v.qa_flags),
        )
        for v in result.vertebrae
    ]
    out = Path(os.path.abspath(Path(out_dir).expanduser()))
    return ExportResult(out, records, files, [], time.perf_counter() - t0)


def _write_full(out_dir, result: AnalysisResult, ct: Volume, input_path, corrections, force, progress,
                cancel, extra_files=None, manifest_extra=None) -> ExportResult:
    """The full bundle: masks and meshes from the segmentation, labels' probabilities as extras."""
    seg = result.segmentation
    extras = {}
    for v in result.vertebrae:
        extras[v.id] = {
            "confidence": v.confidence,
            "confidence_source": CONFIDENCE_SOURCE,
            "alternatives": v.alternatives,
            "lesion_score": v.lesion_score,
            "qa_flags": list(v.qa_flags),
            "lesion_type": v.lesion_type,
            "lesion_scores": {k: mm(x, 4) for k, x in v.lesion_scores.items()},
            "p_shift_cranial": mm(v.p_shift_cranial, 4),
            "p_shift_caudal": mm(v.p_shift_caudal, 4),
            "detection_score": mm(v.detection_score, 4),
            "rib_ml": None if v.rib_ml is None else mm(v.rib_ml, 2),
            "localizer_center_lps": point(v.center_lps),
        }
    info = {"ct": ct_identity(Path(input_path) if input_path else None, ct),
            "analysis": result.compute()}
    return write_bundle(
        out_dir,
        seg.labels,
        ct=ct,
        input_info=info,
        models=result.models,
        lesions=seg.lesions,
        extra_per_vertebra=_only_masked(extras, seg.labels),
        corrections=corrections,
        qa=result.qa,
        extra_files=extra_files,
        manifest_extra=manifest_extra,
        force=force,
        progress=progress,
        cancel=cancel,
    )


def _only_masked(extras: dict[int, dict[str, Any]], labels: Volume) -> dict[int, dict[str, Any]]:
    """Extras of the vertebrae that have voxels (the others are named in the QA notes instead)."""
    ids = vertebra_voxel_counts(labels)
    return {vid: e for vid, e in extras.items() if vid in ids}
