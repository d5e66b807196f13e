"""Loading jobs: read a CT and its vertebra labels, measure and mesh them — all through `inference`.

These functions run on a worker thread. They only call the computing core in order and bundle
its results for the session; they touch no widget and no VTK object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inference.progress import CancelToken, ProgressCallback, check_cancel, report, sub_progress
from inference.volume import Volume

from ..state.session import LabelSet, vertebra_infos


@dataclass(frozen=True, eq=False)
class LoadedCase:
    """A CT and, when a label map was given, its labels with centres, volumes and meshes."""

    ct: Volume
    label_set: LabelSet | None


def load_case(
    ct_path: str | Path,
    labels_path: str | Path | None = None,
    *,
    series_uid: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> LoadedCase:
    """Read a CT (DICOM folder/file, NIfTI, NRRD, MHA) and optionally its vertebra label map.

    ``series_uid`` picks one CT series of a DICOM folder that holds several.

    Raises `InputError` for unreadable input and for labels that are not on the CT's grid.
    """
    from inference.io import read_ct

    progress = report(progress)
    ct = read_ct(ct_path, series_uid=series_uid, progress=sub_progress(progress, 0.0, 0.35 if labels_path else 1.0),
                 cancel=cancel)
    label_set = None
    if labels_path is not None:
        label_set = load_labels(labels_path, ct, progress=sub_progress(progress, 0.35, 1.0), cancel=cancel)
    progress(1.0, "loaded")
    return LoadedCase(ct, label_set)


def load_labels(
    labels_path: str | Path,
    ct: Volume,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> LabelSet:
    """Read a vertebra label map for ``ct``, then its centres, volumes and one mesh per vertebra.

    Accepts what `inference.io.read_label_map` reads (VerSe map, TotalSegmentator file or folder).
    Raises `InputError` when the map is not on the CT's grid: labels are never resampled silently.
    """
    from inference.io import onto_grid, read_label_map

    progress = report(progress)
    progress(0.0, "reading labels")
    labels = read_label_map(labels_path)
    check_cancel(cancel)
    labels = onto_grid(labels, ct, path=labels_path)  # exact re-index of flipped/permuted grids
    from inference.measure import vertebra_centers, vertebra_volumes_ml
    from inference.mesh import mesh_label_map

    progress(0.1, "measuring vertebrae")
    centers = vertebra_centers(labels)
    volumes = vertebra_volumes_ml(labels)
    check_cancel(cancel)
    from ..display.surfaces import surface_polydata_all

    meshes = dict(mesh_label_map(labels, progress=sub_progress(progress, 0.15, 0.95), cancel=cancel))
    surfaces = surface_polydata_all(meshes)
    progress(1.0, "labels loaded")
    return LabelSet(labels, vertebra_infos(centers, volumes), meshes, surfaces=surfaces)


def _grid_text(volume: Volume) -> str:
    size = "×".join(str(s) for s in volume.size)
    spacing = "×".join(f"{s:g}" for s in volume.spacing)
    origin = ", ".join(f"{o:.1f}" for o in volume.origin)
    return f"{size} voxels of {spacing} mm at {origin} LPS"
