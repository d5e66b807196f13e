"""The export job: the session's vertebrae, with the user's corrections applied, as a robot bundle.

An analysis is written with `inference.export.analysis.write_analysis_bundle` (meshes from its own
segmentation, or centers and labels only), a label map with `inference.export.write_bundle` (meshes,
label map, DICOM-SEG). Corrections reach
the files through a corrected copy of the source (the session's own data stay untouched) and are
listed in the manifest. Runs on a worker thread: relabelling a whole label map is volume work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inference import registry
from inference.label import LEVELS
from inference.progress import CancelToken, ProgressCallback, check_cancel, report, sub_progress
from inference.volume import Volume

from ..state.corrections import CORRECTED_FLAG, TRANSITIONAL, Correction

if TYPE_CHECKING:
    from inference.export import ExportResult
    from inference.pipeline import AnalysisResult, VertebraResult
    from inference.planning import Screw


PLAN_METHOD = "proposed by SpineNav (inference.planning), reviewed and possibly edited in the app"


def corrected_analysis(result: AnalysisResult, id_map: Mapping[int, int]) -> AnalysisResult:
    """A copy of ``result`` with the corrections of ``id_map`` (source id → id, 0 = deleted) applied.

    A renamed vertebra gets its new id and name, the ``label_corrected`` flag, and the model's
    probabilities for the new name where the analysis knows them (its top alternatives); 0 where
    it does not. Deleted vertebrae are left out; the order (head to foot) is kept.
    """
    vertebrae = []
    for v in result.vertebrae:
        new_id = int(id_map.get(int(v.id), v.id))
        if new_id == 0:
            continue
        vertebrae.append(v if new_id == v.id else _renamed(v, new_id))
    seg = result.segmentation
    if seg is not None:
        masks = {int(id_map.get(k, k)): dataclasses.replace(m, id=int(id_map.get(k, k))) for k, m in seg.masks.items()}
        seg = dataclasses.replace(seg, labels=corrected_labels(seg.labels, id_map),
                                  masks={k: m for k, m in masks.items() if k})
    return dataclasses.replace(result, vertebrae=vertebrae, segmentation=seg)


def corrected_labels(labels: Volume, id_map: Mapping[int, int]) -> Volume:
    """The label map with each source id replaced by its corrected id (0 erases a vertebra)."""
    lut = np.arange(256, dtype=np.uint8)
    for src, cur in id_map.items():
        lut[int(src)] = int(cur)
    array = labels.array
    return labels.with_array(lut[array] if array.dtype == np.uint8 else lut[array.astype(np.intp)])


def export_bundle(
    out_dir: str | Path,
    *,
    ct: Volume,
    analysis: AnalysisResult | None = None,
    labels: Volume | None = None,
    id_map: Mapping[int, int],
    corrections: Sequence[Correction] = (),
    screws: Sequence[Screw] = (),
    not_planned: Mapping[str, str] | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ExportResult:
    """Write the bundle of an analysis (when given) or else of a label map, corrections applied.

    Raises what the writers raise: `OutputExistsError` for a non-empty ``out_dir`` without
    ``force``, `InputError` for an unusable folder or an empty result, `CancelledError`.
    """
    tell = report(progress)
    records = [c.to_json() for c in corrections]
    extra_files, manifest_extra = None, None
    if screws:
        from inference.planning.bundle import plan_manifest, trajectory_files

        extra_files = trajectory_files(list(screws))
        manifest_extra = {"plan": plan_manifest(list(screws), PLAN_METHOD, dict(not_planned or {}))}
    if analysis is not None:
        from inference.export.analysis import write_analysis_bundle

        tell(0.0, "applying corrections")
        return write_analysis_bundle(
            out_dir,
            corrected_analysis(analysis, id_map),
            ct,
            input_path=ct.metadata.get("source_path"),
            corrections=records,
            extra_files=extra_files,
            manifest_extra=manifest_extra,
            force=force,
            progress=sub_progress(tell, 0.05, 1.0),
            cancel=cancel,
        )
    if labels is None:
        raise ValueError("nothing to export: give an analysis or a label map")
    from inference.export import write_bundle

    tell(0.0, "applying corrections")
    fixed = corrected_labels(labels, id_map)
    check_cancel(cancel)
    changed = {cur: {"qa_flags": [CORRECTED_FLAG]} for src, cur in id_map.items() if cur and cur != src}
    return write_bundle(
        out_dir,
        fixed,
        ct=ct,
        extra_per_vertebra=changed,
        corrections=records,
        extra_files=extra_files,
        manifest_extra=manifest_extra,
        force=force,
        progress=sub_progress(tell, 0.05, 1.0),
        cancel=cancel,
    )


def _renamed(v: VertebraResult, new_id: int) -> VertebraResult:
    posterior = {a["name"]: float(a["p"]) for a in v.alternatives}
    posterior.setdefault(v.name, float(v.confidence))
    above, below = _neighbour_names(new_id)
    name = registry.name_of(new_id)
    flags = list(v.qa_flags) + ([CORRECTED_FLAG] if CORRECTED_FLAG not in v.qa_flags else [])
    return dataclasses.replace(
        v,
        id=new_id,
        name=name,
        confidence=posterior.get(name, 0.0),
        p_shift_cranial=sum(posterior.get(n, 0.0) for n in above),
        p_shift_caudal=sum(posterior.get(n, 0.0) for n in below),
        qa_flags=flags,
        alternatives=[dict(a) for a in v.alternatives],
    )


def _neighbour_names(vertebra_id: int) -> tuple[list[str], list[str]]:
    """Names one level above and below (T12 and T13 both lie one level above L1), as the decoder counts."""
    k = LEVELS.index(vertebra_id)
    out: list[list[str]] = []
    for step in (-1, +1):
        names: list[str] = []
        j = k + step
        while 0 <= j < len(LEVELS):
            names.append(registry.name_of(LEVELS[j]))
            if LEVELS[j] not in TRANSITIONAL:
                break
            j += step
        out.append(names)
    return out[0], out[1]


__all__ = ["CORRECTED_FLAG", "corrected_analysis", "corrected_labels", "export_bundle"]
