"""The robot bundle (DESIGN §5): meshes, centers and labels in one verified LPS frame.

`write_bundle` takes a label map already in memory (the pipeline's output), `export_labels`
reads one from disk first (``spinenav export-labels``). Both write atomically (see
`inference.export.atomic`) and give byte-identical files for the same input, except
``manifest.json``'s ``created`` field: that one is the UTC time of the run, or the time given by
the ``SOURCE_DATE_EPOCH`` environment variable (reproducible-builds convention) when it is set.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__, registry
from ..errors import InputError, display_path
from ..io.grid import onto_grid
from ..measure import body_centers, vertebra_centers, vertebra_voxel_counts
from ..mesh import MeshConfig, SurfaceMesh, mesh_label_map, stl_bytes
from ..progress import CancelToken, ProgressCallback, check_cancel, report, sub_progress
from ..volume import Volume
from .atomic import atomic_output_dir, check_output_dir
from .dicom_seg import dicom_seg_blocker, write_dicom_seg
from .formats import csv_bytes, file_record, json_bytes, markups_json, mm, point, sha256_file, write_nifti

SCHEMA_VERSION = "1.0"
"""Version of the bundle layout (manifest.json, vertebrae.json); bump on incompatible changes."""

SMALL_VOLUME_ML = 5.0
"""Below this a vertebra is flagged ``small_volume`` (a whole C3 is ~15 ml, a lumbar body alone ~30 ml)."""

SMALL_VS_NEIGHBOUR = 0.5
"""…and also when it is under this fraction of both neighbours' volumes (cut off by the field of view)."""

LABEL_SOURCE = "label map"
"""``confidence_source`` of vertebrae taken from a given label map (their label is not a guess)."""

_PROTECTED = {"name", "id", "center_lps", "body_center_lps", "volume_ml", "mesh_volume_ml", "stl", "voxels"}


@dataclass
class VertebraRecord:
    """One vertebra of a bundle, as written to vertebrae.json (coordinates LPS mm)."""

    name: str
    id: int
    center_lps: np.ndarray
    volume_ml: float
    voxels: int
    stl: str
    mesh_volume_ml: float
    mesh_triangles: int
    body_center_lps: np.ndarray | None = None
    confidence: float | None = 1.0
    confidence_source: str = LABEL_SOURCE
    alternatives: list[Any] = field(default_factory=list)
    lesion_score: float | None = None
    qa_flags: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "id": self.id,
            "center_lps": point(self.center_lps),
            "body_center_lps": point(self.body_center_lps),
            "volume_ml": mm(self.volume_ml),
            "mesh_volume_ml": mm(self.mesh_volume_ml),
            "voxels": self.voxels,
            "confidence": None if self.confidence is None else mm(self.confidence, 4),
            "confidence_source": self.confidence_source,
            "alternatives": list(self.alternatives),
            "lesion_score": None if self.lesion_score is None else mm(self.lesion_score, 4),
            "qa_flags": list(self.qa_flags),
            "stl": self.stl,
            "mesh_triangles": self.mesh_triangles,
        }
        doc.update(self.extra)
        return doc


@dataclass
class ExportResult:
    """What `write_bundle` wrote.

    Attributes
    ----------
    out_dir : Path
        The bundle folder (absolute).
    vertebrae : list of VertebraRecord
        Cranio-caudal order.
    files : list of dict
        ``{"path", "bytes", "sha256"}`` of every file except manifest.json (as in the manifest).
    warnings : list of str
        One-line notes (also in manifest.json).
    seconds : float
        Wall time of the export.
    """

    out_dir: Path
    vertebrae: list[VertebraRecord]
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
    labels: Volume,
    *,
    ct: Volume | None = None,
    input_info: dict[str, Any] | None = None,
    models: list[dict[str, Any]] | None = None,
    lesions: Volume | None = None,
    subregions: Volume | None = None,
    extra_per_vertebra: dict[int, dict[str, Any]] | None = None,
    corrections: list[dict[str, Any]] | None = None,
    qa: list[str] | None = None,
    extra_files: dict[str, bytes] | None = None,
    manifest_extra: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
    force: bool = False,
    mesh_config: MeshConfig | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ExportResult:
    """Write the robot bundle for a vertebra label map (DESIGN §5).

    Parameters
    ----------
    out_dir : path
        Bundle folder to create (its parent must exist).
    labels : Volume
        VerSe ids (DESIGN §3), integer array (K, J, I). With ``ct`` it must lie on the CT's grid;
        a map that stores the same voxels with permuted or flipped axes is reoriented exactly.
    ct : Volume, optional
        The CT; names its identity in the manifest, and a DICOM CT (``metadata["dicom_files"]``)
        adds segmentation.dcm.
    input_info : dict, optional
        Merged into the manifest's ``input`` (paths, hashes; `export_labels` fills it).
    models : list of dict, optional
        Models that produced the labels (name, version, sha256), listed in the manifest.
    lesions : Volume, optional
        Lesion probability map on the same grid → lesions.nii.gz (float32).
    subregions : Volume, optional
        VerSe subregion map on the label grid → ``body_center_lps`` per vertebra.
    extra_per_vertebra : dict, optional
        VerSe id → fields for that vertebra's record: ``confidence``, ``confidence_source``,
        ``alternatives``, ``lesion_score`` replace the defaults, ``qa_flags`` are added, other keys
        are stored as given (JSON values).
    corrections : list of dict, optional
        The user's label corrections (what, from, to, time), recorded in the manifest.
    qa : list of str, optional
        The analysis' case-level QA notes, recorded in the manifest.
    extra_files, manifest_extra : dict, optional
        More files (bundle-relative name → bytes, e.g. the planned screws' trajectories.json) and
        manifest sections (e.g. ``plan``) written with the bundle.
    warnings : list of str, optional
        One-line notes about the input (e.g. overlapping masks resolved), first in the manifest's
        ``warnings``.
    force : bool
        Replace an existing non-empty ``out_dir`` (only once the new bundle is complete).
    mesh_config : MeshConfig, optional
    progress, cancel
        Progress callback; the cancel token is checked between vertebrae and between files.

    Returns
    -------
    ExportResult

    Raises
    ------
    InputError
        Bad labels (empty, non-integer, unknown ids), grids that differ, an output folder that
        cannot be written. `OutputExistsError` for a non-empty ``out_dir`` without ``force``.
    CancelledError
        When cancelled; nothing is written and ``out_dir`` is untouched.
    """
    t0 = time.perf_counter()
    progress = report(progress)
    where = labels.metadata.get("source_path")
    inputs = [where, None if ct is None else ct.metadata.get("source_path")]
    check_output_dir(out_dir, force=force, inputs=inputs)  # fail fast, before any work
    labels = _checked_labels(labels, where)
    if ct is not None:
        labels = onto_grid(labels, ct, path=where)
    grid = ct if ct is not None else labels
    if lesions is not None:
        lesions = onto_grid(lesions, grid, path=lesions.metadata.get("source_path"), what="lesion map")
    if subregions is not None:
        subregions = onto_grid(subregions, grid, path=subregions.metadata.get("source_path"), what="subregion map")
    extras = _checked_extras(extra_per_vertebra or {}, labels)
    warnings = list(warnings or [])

    with atomic_output_dir(out_dir, force=force, inputs=inputs) as tmp:
        progress(0.0, "measuring vertebrae")
        centers = vertebra_centers(labels)
        counts = vertebra_voxel_counts(labels)
        bodies = body_centers(labels, subregions) if subregions is not None else {}
        check_cancel(cancel)
        meshes = mesh_label_map(
            labels, config=mesh_config, progress=sub_progress(progress, 0.05, 0.8), cancel=cancel
        )
        voxel_ml = float(np.prod(labels.spacing)) / 1000.0
        records = _records(centers, counts, voxel_ml, bodies, meshes, extras)

        progress(0.8, "writing meshes")
        (tmp / "meshes").mkdir()
        for rec in records:
            check_cancel(cancel)
            header = f"SpineNav {rec.name} (VerSe id {rec.id}) surface, LPS mm"
            (tmp / rec.stl).write_bytes(stl_bytes(meshes[rec.id], header))
        docs = [r.to_json() for r in records]
        (tmp / "vertebrae.json").write_bytes(
            json_bytes({"schema_version": SCHEMA_VERSION, "coordinate_system": "LPS", "units": "mm", "vertebrae": docs})
        )
        (tmp / "vertebrae.csv").write_bytes(csv_bytes(docs))
        points = [(r.name, r.center_lps, f"{r.name} center (mask centroid), VerSe id {r.id}") for r in records]
        (tmp / "centers.mrk.json").write_bytes(json_bytes(markups_json(points)))

        check_cancel(cancel)
        progress(0.85, "writing label map")
        write_nifti(tmp / "labels.nii.gz", grid, labels.array.astype(np.uint8))
        if lesions is not None:
            write_nifti(tmp / "lesions.nii.gz", grid, lesions.array.astype(np.float32))
        if ct is not None:
            check_cancel(cancel)
            reason = dicom_seg_blocker(labels, ct)
            if reason is None:
                progress(0.9, "writing DICOM-SEG")
                try:
                    write_dicom_seg(tmp / "segmentation.dcm", labels, ct, models=models, warnings=warnings)
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
        manifest = _manifest(labels, ct, input_info, models, files, records, warnings)
        manifest["qa"] = list(qa or [])
        manifest["corrections"] = list(corrections or [])
        manifest.update(manifest_extra or {})
        (tmp / "manifest.json").write_bytes(json_bytes(manifest))
        check_cancel(cancel)
    out = Path(os.path.abspath(Path(out_dir).expanduser()))
    progress(1.0, "bundle written")
    return ExportResult(out, records, files, warnings, time.perf_counter() - t0)


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
    from ..io import read_ct, read_label_map
    from ..io.image_file import read_image_file

    progress = report(progress)
    check_output_dir(out_dir, force=force, inputs=[labels_path, ct_path, subregions_path])
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
    flagged: dict[int, dict[str, Any]] = {}
    for pair in labels.metadata.get("overlaps", {}):
        for vid in pair:
            flagged[vid] = {"qa_flags": ["mask_overlap_resolved"]}
    return write_bundle(
        out_dir,
        labels,
        ct=ct,
        input_info=info,
        subregions=subregions,
        extra_per_vertebra=flagged,
        warnings=labels.metadata.get("warnings"),
        force=force,
        mesh_config=mesh_config,
        progress=sub_progress(progress, 0.1, 1.0),
        cancel=cancel,
    )


# ---- helpers ----------------------------------------------------------------------------------------
def _checked_labels(labels: Volume, where: str | None) -> Volume:
    array = labels.array
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or not np.array_equal(array, np.round(array)):
            raise InputError(where, "the label map has non-integer values (a probability map?); give integer "
                             "vertebra labels")
    elif not np.issubdtype(array.dtype, np.integer):
        raise InputError(where, f"the label map has {array.dtype} values; give integer vertebra labels")
    if array.size == 0 or not array.any():
        raise InputError(where, "the label map contains no vertebra (all voxels are background)")
    ids = np.unique(array)
    if ids.min() < 0:
        raise InputError(where, f"the label map has negative values ({int(ids.min())}); give VerSe ids ≥ 0")
    unknown = [int(i) for i in ids if i != 0 and int(i) not in registry.VALID_IDS]
    if unknown:
        raise InputError(where, f"unknown vertebra ids {unknown[:10]} (VerSe numbering: 1–26, 28); convert the "
                         "labels first (read_label_map does it for TotalSegmentator files)")
    if array.dtype != np.uint8:
        labels = Volume(array.astype(np.uint8), labels.spacing, labels.origin, labels.direction, dict(labels.metadata))
    return labels


def _checked_extras(extras: dict[int, dict[str, Any]], labels: Volume) -> dict[int, dict[str, Any]]:
    out = {}
    for vid, fields in extras.items():
        bad = sorted(_PROTECTED & set(fields))
        if bad:
            raise ValueError(f"extra_per_vertebra[{vid}] may not set {bad}: they are measured from the labels")
        out[int(vid)] = dict(fields)
    return out


def _records(
    centers: dict[int, np.ndarray],
    counts: dict[int, int],
    voxel_ml: float,
    bodies: dict[int, np.ndarray],
    meshes: dict[int, SurfaceMesh],
    extras: dict[int, dict[str, Any]],
) -> list[VertebraRecord]:
    ids = registry.sort_ids(centers)
    volumes = {vid: counts[vid] * voxel_ml for vid in ids}
    records = []
    for n, vid in enumerate(ids):
        name = registry.name_of(vid)
        mesh = meshes[vid]
        rep = mesh.report
        flags = []
        if rep is not None and rep.touches_border:
            flags.append("touches_image_border")
        if rep is not None and rep.mask_components > 1:
            flags.append("multiple_components")
        neighbours = [volumes[ids[m]] for m in (n - 1, n + 1) if 0 <= m < len(ids)]
        if volumes[vid] < SMALL_VOLUME_ML or (
            neighbours and all(volumes[vid] < SMALL_VS_NEIGHBOUR * v for v in neighbours)
        ):
            flags.append("small_volume")
        rec = VertebraRecord(
            name=name,
            id=vid,
            center_lps=centers[vid],
            volume_ml=volumes[vid],
            voxels=counts[vid],
            stl=f"meshes/{name}.stl",
            mesh_volume_ml=mesh.volume_ml,
            mesh_triangles=mesh.n_faces,
            body_center_lps=bodies.get(vid),
        )
        extra = dict(extras.get(vid, {}))
        for key in ("confidence", "confidence_source", "alternatives", "lesion_score"):
            if key in extra:
                setattr(rec, key, extra.pop(key))
        flags += [f for f in extra.pop("qa_flags", []) if f not in flags]
        rec.qa_flags = flags
        rec.extra = extra
        records.append(rec)
    return records


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


def _manifest(
    labels: Volume,
    ct: Volume | None,
    input_info: dict[str, Any] | None,
    models: list[dict[str, Any]] | None,
    files: list[dict[str, Any]],
    records: list[VertebraRecord],
    warnings: list[str],
) -> dict[str, Any]:
    grid = ct if ct is not None else labels
    inputs: dict[str, Any] = {}
    if labels.metadata.get("source_path"):
        inputs["labels"] = {"path": labels.metadata["source_path"]}
    if ct is not None and "ct" not in (input_info or {}):
        inputs["ct"] = ct_identity(None, ct)
    for key, value in (input_info or {}).items():
        inputs[key] = value
    inputs["grid"] = grid.geometry_dict()
    return {
        **manifest_header(inputs, models),
        "vertebrae": [r.name for r in records],
        "files": files,
        "warnings": list(warnings),
    }


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
