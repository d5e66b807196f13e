"""The robot bundle (DESIGN §5): meshes, centers and labels in one verified LPS frame.

`write_bundle` writes a `Case` (the pipeline's, or one built from a label map): it is the one
writer of every bundle, full or centers-only. `export_labels` reads a label map from disk first
(``spinenav export-labels``). Both write atomically (see
`inference.export.atomic`) and give byte-identical files for the same input, except
``manifest.json``'s ``created`` field: that one is the UTC time of the run, or the time given by
the ``SOURCE_DATE_EPOCH`` environment variable (reproducible-builds convention) when it is set.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__, registry
from ..case import Case, Vertebra, case_from_labels
from ..errors import InputError, display_path
from ..measure import body_centers, vertebra_voxel_counts
from ..mesh import MeshConfig, SurfaceMesh, mesh_label_map, stl_bytes
from ..planning.geometry import body_centers_from_shape
from ..progress import CancelToken, ProgressCallback, check_cancel, report, sub_progress
from ..volume import Volume
from .atomic import atomic_output_dir, check_output_dir
from .dicom_seg import dicom_seg_blocker, write_dicom_seg
from .formats import csv_bytes, file_record, json_bytes, markups_json, sha256_file, write_nifti

SCHEMA_VERSION = "1.0"
"""Version of the bundle layout (manifest.json, vertebrae.json); bump on incompatible changes."""

SMALL_VOLUME_ML = 5.0
"""Below this a vertebra is flagged ``small_volume`` (a whole C3 is ~15 ml, a lumbar body alone ~30 ml)."""

SMALL_VS_NEIGHBOUR = 0.5
"""…and also when it is under this fraction of both neighbours' volumes (cut off by the field of view)."""

CENTERS_ONLY = "centers and labels only (an analysis without segmentation): no masks, meshes or label map"
"""manifest.json ``contents`` of a bundle written from a case without a label map."""


@dataclass
class ExportResult:
    """What `write_bundle` wrote.

    Attributes
    ----------
    out_dir : Path
        The bundle folder (absolute).
    vertebrae : list of Vertebra
        As written (measured from their masks when the case has a label map), cranio-caudal.
    files : list of dict
        ``{"path", "bytes", "sha256"}`` of every file except manifest.json (as in the manifest).
    warnings : list of str
        One-line notes (also in manifest.json).
    seconds : float
        Wall time of the export.
    """

    out_dir: Path
    vertebrae: list[Vertebra]
    files: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """A few lines for the terminal: where, how many vertebrae, which, which files."""
        names = ", ".join(v.name for v in self.vertebrae)
        n_stl = sum(1 for f in self.files if f["path"].startswith("meshes/"))
        size = sum(f["bytes"] for f in self.files)
        others = [f["path"] for f in self.files if not f["path"].startswith("meshes/")]
        lines = [
            f"bundle written to {display_path(self.out_dir)} in {self.seconds:.1f} s (coordinates LPS mm)",
            f"  {len(self.vertebrae)} vertebrae: {names}",
            f"  files: manifest.json, {', '.join(others)}, meshes/ ({n_stl} STL); {size / 2**20:.1f} MB in all",
        ]
        flagged = [f"{v.name} ({', '.join(v.qa_flags)})" for v in self.vertebrae if v.qa_flags]
        if flagged:
            lines.append(f"  check: {'; '.join(flagged)}")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def write_bundle(
    out_dir: str | Path,
    case: Case,
    *,
    extra_files: dict[str, bytes] | None = None,
    manifest_extra: dict[str, Any] | None = None,
    force: bool = False,
    mesh_config: MeshConfig | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ExportResult:
    """Write the robot bundle of ``case`` (DESIGN §5): the one writer of every bundle.

    With a label map (``case.labels``): per vertebra an STL mesh, volumes and QA flags measured from
    its mask, labels.nii.gz, lesions.nii.gz (when the case has a lesion map) and segmentation.dcm
    for a DICOM CT; vertebrae without a voxel are left out (the case's QA notes name them). Without
    one (a centers-only analysis): vertebrae.json / .csv and centers.mrk.json, and the manifest says
    so. Every center written is the vertebra's ``center_lps``, the point the app and the terminal show.

    Parameters
    ----------
    out_dir : path
        Bundle folder to create (its parent must exist).
    case : Case
        Its label and lesion maps lie on the CT's grid (`case_from_labels` and the pipeline see to it).
    extra_files, manifest_extra : dict, optional
        More files (bundle-relative name → bytes, e.g. the planned screws' trajectories.json) and
        manifest sections (e.g. ``plan``) written with the bundle.
    force : bool
        Replace an existing bundle at ``out_dir`` (only once the new one is complete).
    mesh_config : MeshConfig, optional
    progress, cancel
        Progress callback; the cancel token is checked between vertebrae and between files.

    Raises
    ------
    InputError
        An output folder that cannot be written or may not be replaced (`check_output_dir`), a
        case without vertebrae. `OutputExistsError` for a non-empty ``out_dir`` without ``force``.
    CancelledError
        When cancelled; nothing is written and ``out_dir`` is untouched.
    """
    t0 = time.perf_counter()
    progress = report(progress)
    labels, ct = case.labels, case.ct
    inputs = [None if labels is None else labels.metadata.get("source_path"),
              None if ct is None else ct.metadata.get("source_path")]
    check_output_dir(out_dir, force=force, inputs=inputs)  # fail fast, before any work
    grid = ct if ct is not None else labels
    warnings = list(case.warnings)

    with atomic_output_dir(out_dir, force=force, inputs=inputs) as tmp:
        if labels is not None:
            progress(0.0, "measuring vertebrae")
            check_cancel(cancel)
            meshes = mesh_label_map(
                labels, config=mesh_config, progress=sub_progress(progress, 0.05, 0.8), cancel=cancel
            )
            vertebrae = _measured(case, labels, meshes)
            progress(0.8, "writing meshes")
            (tmp / "meshes").mkdir()
            for v in vertebrae:
                check_cancel(cancel)
                header = f"SpineNav {v.name} (VerSe id {v.id}) surface, LPS mm"
                (tmp / v.stl).write_bytes(stl_bytes(meshes[v.id], header))
            points = [(v.name, v.center_lps, f"{v.name} center (mask centroid), VerSe id {v.id}") for v in vertebrae]
        else:
            vertebrae = [v.replace(qa_flags=list(v.qa_flags)) for v in case.vertebrae]
            points = [(v.name, v.center_lps, f"{v.name} center (localizer), p={v.confidence:.2f}")
                      for v in vertebrae]
        docs = [v.to_json() for v in vertebrae]
        (tmp / "vertebrae.json").write_bytes(
            json_bytes({"schema_version": SCHEMA_VERSION, "coordinate_system": "LPS", "units": "mm", "vertebrae": docs})
        )
        (tmp / "vertebrae.csv").write_bytes(csv_bytes(docs))
        (tmp / "centers.mrk.json").write_bytes(json_bytes(markups_json(points)))

        if labels is not None:
            check_cancel(cancel)
            progress(0.85, "writing label map")
            write_nifti(tmp / "labels.nii.gz", grid, labels.array.astype(np.uint8))
            if case.lesions is not None:
                write_nifti(tmp / "lesions.nii.gz", grid, case.lesions.array.astype(np.float32))
            if ct is not None:
                check_cancel(cancel)
                reason = dicom_seg_blocker(labels, ct)
                if reason is None:
                    progress(0.9, "writing DICOM-SEG")
                    try:
                        write_dicom_seg(tmp / "segmentation.dcm", labels, ct, models=case.models, warnings=warnings)
                    except ValueError as exc:
                        warnings.append(f"segmentation.dcm not written: {exc}")
                elif ct.metadata.get("source_format") == "dicom":
                    warnings.append(f"segmentation.dcm not written: {reason}")

        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
        check_cancel(cancel)
        progress(0.97, "writing manifest")
        files = [file_record(tmp, p) for p in sorted(tmp.rglob("*"), key=lambda p: p.relative_to(tmp).as_posix())
                 if p.is_file()]
        manifest = _manifest(case, grid, files, vertebrae, warnings)
        manifest.update(manifest_extra or {})
        (tmp / "manifest.json").write_bytes(json_bytes(manifest))
        check_cancel(cancel)
    out = Path(os.path.abspath(Path(out_dir).expanduser()))
    progress(1.0, "bundle written")
    return ExportResult(out, vertebrae, files, warnings, time.perf_counter() - t0)


def export_labels(
    labels_path: str | Path,
    out_dir: str | Path,
    *,
    ct_path: str | Path | None = None,
    subregions_path: str | Path | None = None,
    convention: str = "auto",
    force: bool = False,
    mesh_config: MeshConfig | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ExportResult:
    """Bundle from an existing label map, without inference (``spinenav export-labels``).

    Parameters
    ----------
    labels_path : path
        VerSe label map, TotalSegmentator multilabel file, a folder of TotalSegmentator
        ``vertebrae_<NAME>.nii.gz`` masks, or one such file (its name gives the level).
    out_dir : path
        Bundle folder to create.
    ct_path : path, optional
        The CT the labels were drawn on (file or DICOM folder). Without it the geometry comes
        from the label file.
    subregions_path : path, optional
        VerSe subregion map (49/50 = vertebral body) for body centers.
    convention : {"auto", "verse", "totalseg"}
    force, mesh_config, progress, cancel
        As in `write_bundle`.

    Raises
    ------
    InputError
        Unreadable or unusable inputs (see `inference.io.read_label_map`, `inference.io.read_ct`)
        and everything `write_bundle` refuses.
    """
    return write_bundle(out_dir, read_labels_case(labels_path, ct_path=ct_path, subregions_path=subregions_path,
                                                  convention=convention, check_out=(out_dir, force),
                                                  progress=progress, cancel=cancel),
                        force=force, mesh_config=mesh_config, progress=sub_progress(report(progress), 0.1, 1.0),
                        cancel=cancel)


def read_labels_case(
    labels_path: str | Path,
    *,
    ct_path: str | Path | None = None,
    subregions_path: str | Path | None = None,
    convention: str = "auto",
    check_out: tuple[str | Path, bool] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Case:
    """A `Case` from a label map on disk (and its CT), with the inputs' identities for the manifest.

    ``check_out`` = (output folder, force): checked before any reading, so that a bad output folder
    fails before seconds of work.
    """
    from ..io import read_ct, read_label_map
    from ..io.image_file import read_image_file

    progress = report(progress)
    if check_out is not None:
        check_output_dir(check_out[0], force=check_out[1], inputs=[labels_path, ct_path, subregions_path])
    labels_path = Path(labels_path)
    progress(0.0, "reading labels")
    labels = read_label_map(labels_path, convention=convention)  # type: ignore[arg-type]
    check_cancel(cancel)
    ct = None
    if ct_path is not None:
        ct = read_ct(ct_path, progress=sub_progress(progress, 0.02, 0.1), cancel=cancel)
    subregions = None
    if subregions_path is not None:
        subregions = read_image_file(subregions_path, what="subregion map")
    info: dict[str, Any] = {"labels": _file_identity(labels_path)}
    info["labels"]["convention"] = labels.metadata.get("label_convention")
    if ct is not None:
        info["ct"] = ct_identity(Path(ct_path), ct)  # type: ignore[arg-type]
    if subregions_path is not None:
        info["subregions"] = _file_identity(Path(subregions_path))
    flags: dict[int, list[str]] = {}
    for pair in labels.metadata.get("overlaps", {}):
        for vid in pair:
            flags[vid] = ["mask_overlap_resolved"]
    return case_from_labels(labels, ct=ct, subregions=subregions, input_info=info,
                            warnings=labels.metadata.get("warnings"), qa_flags=flags)


def read_bundle_case(bundle: str | Path, *, ct_path: str | Path | None = None) -> Case:
    """The `Case` a bundle on disk holds (its label and lesion maps, vertebrae, notes and inputs).

    The CT is read only when the bundle holds a DICOM-SEG, which refers to its slices: from
    ``ct_path``, else from the path its manifest names. Raises `InputError` for a folder that is not
    a bundle, or a needed CT that is not there.
    """
    from ..io.image_file import read_image_file
    from ..io.paths import check_input_path

    bundle = check_input_path(bundle, what="bundle", kind="folder")
    try:
        manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
        records = json.loads((bundle / "vertebrae.json").read_text(encoding="utf-8"))["vertebrae"]
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(bundle, "not a SpineNav bundle (manifest.json or vertebrae.json missing or unreadable); "
                         "give the folder of 'spinenav analyze' or 'spinenav export-labels'") from None
    labels = read_image_file(bundle / "labels.nii.gz", what="label map") if (bundle / "labels.nii.gz").is_file() \
        else None
    lesions = read_image_file(bundle / "lesions.nii.gz", what="lesion map") if (bundle / "lesions.nii.gz").is_file() \
        else None
    for part in (labels, lesions):  # the bundle's own files, not inputs: rewriting the bundle may replace them
        if part is not None:
            part.metadata.pop("source_path", None)
    if labels is not None:
        labels = labels.with_array(labels.array.astype(np.uint8))
    inputs = dict(manifest.get("input") or {})
    compute = inputs.pop("analysis", None)
    ct = None
    if (bundle / "segmentation.dcm").is_file():
        from ..io import read_ct

        named = ct_path or (inputs.get("ct") or {}).get("path")
        if not named or not Path(named).exists():
            raise InputError(bundle, "its DICOM-SEG refers to the CT slices, and the CT the manifest names is not "
                             "there; pass the CT with --ct")
        ct = read_ct(named)
    vertebrae = [_vertebra_of(r) for r in records]
    return Case(ct, vertebrae, labels=labels, lesions=lesions, qa=list(manifest.get("qa") or []),
                warnings=list(manifest.get("warnings") or []), models=list(manifest.get("models") or []),
                compute=compute, run_config=manifest.get("run_config"),
                corrections=list(manifest.get("corrections") or []), input_info=inputs)


def _vertebra_of(r: dict[str, Any]) -> Vertebra:
    """A `Vertebra` from its vertebrae.json record (measured fields are measured again when written)."""
    def arr(key: str) -> np.ndarray | None:
        return None if r.get(key) is None else np.asarray(r[key], dtype=float)

    return Vertebra(
        int(r["id"]), arr("center_lps"), confidence=r.get("confidence"),
        confidence_source=r.get("confidence_source") or "label map", alternatives=list(r.get("alternatives") or []),
        p_shift_cranial=r.get("p_shift_cranial"), p_shift_caudal=r.get("p_shift_caudal"),
        detection_score=r.get("detection_score"), localizer_center_lps=arr("localizer_center_lps"),
        lesion_score=r.get("lesion_score"), lesion_type=r.get("lesion_type"),
        lesion_scores=dict(r.get("lesion_scores") or {}), rib_ml=r.get("rib_ml"),
        ribs_seen=r.get("ribs_seen"),
        qa_flags=[f for f in r.get("qa_flags") or [] if f not in MEASURED_FLAGS],
        body_center_lps=arr("body_center_lps"),
    )


MEASURED_FLAGS = ("touches_image_border", "multiple_components", "small_volume")
"""QA flags the writer measures from the masks (`_measured`), so a bundle read back does not carry them twice."""


# ---- helpers ----------------------------------------------------------------------------------------
def _measured(case: Case, labels: Volume, meshes: dict[int, SurfaceMesh]) -> list[Vertebra]:
    """The case's vertebrae that have voxels, with what their masks and meshes measure (cranio-caudal).

    Flags measured here (``touches_image_border``, ``multiple_components``, ``small_volume``) come
    first, the case's own flags after them.
    """
    counts = vertebra_voxel_counts(labels)
    # measured on the masks being written, whatever the case carries: a merge or an edit changes them
    bodies = body_centers(labels, case.subregions) if case.subregions is not None else body_centers_from_shape(labels)
    voxel_ml = float(np.prod(labels.spacing)) / 1000.0
    ids = registry.sort_ids(counts)
    volumes = {vid: counts[vid] * voxel_ml for vid in ids}
    by_id = {v.id: v for v in case.vertebrae}
    out = []
    for n, vid in enumerate(ids):
        v = by_id.get(vid)
        if v is None:
            raise ValueError(f"the label map holds {registry.name_of(vid)}, which the case does not list")
        rep = meshes[vid].report
        flags = []
        if rep is not None and rep.touches_border:
            flags.append("touches_image_border")
        if rep is not None and rep.mask_components > 1:
            flags.append("multiple_components")
        neighbours = [volumes[ids[m]] for m in (n - 1, n + 1) if 0 <= m < len(ids)]
        if volumes[vid] < SMALL_VOLUME_ML or (
            neighbours and all(volumes[vid] < SMALL_VS_NEIGHBOUR * x for x in neighbours)
        ):
            flags.append("small_volume")
        flags += [f for f in v.qa_flags if f not in flags]
        out.append(v.replace(
            qa_flags=flags, volume_ml=volumes[vid], voxels=counts[vid],
            body_center_lps=bodies.get(vid, v.body_center_lps), stl=f"meshes/{v.name}.stl",
            mesh_volume_ml=meshes[vid].volume_ml, mesh_triangles=meshes[vid].n_faces,
        ))
    return out


def _created() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.strip().isdigit():
        moment = _dt.datetime.fromtimestamp(int(epoch), tz=_dt.UTC)
    else:
        moment = _dt.datetime.now(tz=_dt.UTC)
    return moment.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def manifest_header(inputs: dict[str, Any], models: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The fields every bundle's manifest.json starts with (schema, software, time, frame, inputs, models)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "software": {"name": "spinenav", "version": __version__},
        "created": _created(),
        "coordinate_system": "LPS",
        "units": "mm",
        "input": inputs,
        "models": list(models or []),
    }


def _manifest(case: Case, grid: Volume | None, files: list[dict[str, Any]], vertebrae: list[Vertebra],
              warnings: list[str]) -> dict[str, Any]:
    labels, ct = case.labels, case.ct
    inputs: dict[str, Any] = {}
    if labels is not None and labels.metadata.get("source_path"):
        inputs["labels"] = {"path": labels.metadata["source_path"]}
    if ct is not None and "ct" not in case.input_info:
        inputs["ct"] = ct_identity(None, ct)
    for key, value in case.input_info.items():
        if key not in ("analysis", "grid"):
            inputs[key] = value
    if case.compute is not None:
        inputs["analysis"] = dict(case.compute)
    if grid is not None:
        inputs["grid"] = grid.geometry_dict()
    elif "grid" in case.input_info:  # a centers-only case read back from its bundle
        inputs["grid"] = case.input_info["grid"]
    doc = manifest_header(inputs, case.models)
    if labels is None:
        doc["contents"] = CENTERS_ONLY
    if case.run_config is not None:
        doc["run_config"] = dict(case.run_config)
    doc.update({
        "vertebrae": [v.name for v in vertebrae],
        "files": files,
        "warnings": list(warnings),
        "qa": list(case.qa),
        "corrections": list(case.corrections),
    })
    return doc


def _file_identity(path: Path) -> dict[str, Any]:
    """Absolute path and sha256 of an input file, or of each vertebra file of a mask folder."""
    path = Path(os.path.abspath(path))
    if path.is_file():
        return {"path": str(path), "sha256": sha256_file(path)}
    files = sorted(p for p in path.iterdir() if p.is_file() and registry.from_totalseg_filename(p.name) is not None)
    return {"path": str(path), "files": [{"name": p.name, "sha256": sha256_file(p)} for p in files]}


def ct_identity(path: Path | None, ct: Volume) -> dict[str, Any]:
    md = ct.metadata
    source = md.get("source_path") or (str(Path(os.path.abspath(path))) if path is not None else None)
    out: dict[str, Any] = {"path": source, "format": md.get("source_format")}
    if md.get("source_format") == "dicom" or md.get("dicom_files"):
        out.update(
            {
                "series_instance_uid": md.get("series_uid"),
                "frame_of_reference_uid": md.get("frame_of_reference_uid"),
                "study_instance_uid": md.get("study_uid"),
                "n_files": len(md.get("dicom_files") or []) or md.get("n_files"),
            }
        )
    elif source and Path(source).is_file():
        out["sha256"] = sha256_file(Path(source))
    return out
