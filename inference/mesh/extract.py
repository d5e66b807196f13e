"""Closed per-vertebra surfaces from a label map, built with VTK on a cropped, padded sub-volume.

Pipeline for one mask (all in the crop's axis-aligned millimetre frame, then mapped to LPS):

1. crop to the mask's bounding box, fill enclosed cavities (a hollow body would otherwise get a
   second, inward shell inside the bone) and pad one background voxel on every side, so a mask that
   touches the edge of the image still gives a closed surface (the surface is closed half a
   voxel beyond the last mask voxel);
2. ``vtkDiscreteFlyingEdges3D`` at the mask label: a watertight, consistently wound triangle
   surface through the voxel-face midpoints (every piece of the mask gives its own closed
   surface; none is dropped);
3. ``vtkWindowedSincPolyDataFilter`` with normalized coordinates: removes the voxel staircase
   without the shrinking of Laplacian smoothing;
4. ``vtkQuadricDecimation`` down to `MeshConfig.target_triangles` (undone for a mesh where it
   would open the surface);
5. ``vtkPolyDataNormals`` with consistent ordering; the signed volume decides the outward side;
6. optional volume correction: marching cubes cuts the corners of the voxel staircase and the
   smoothing rounds them further, so small or thin masks lose a few percent of volume (a 2.5
   voxel radius sphere loses ~8 %, while the voxel count is unbiased). The surface is moved
   along its vertex normals by the one distance that restores the mask volume, capped at
   `MeshConfig.max_offset_voxels`;
7. vertices (scaled crop index) → voxel index (i, j, k), kept inside the image's extent (half a
   voxel beyond the outer voxel centres) → LPS mm with `Volume.index_to_lps`, so
   any direction matrix (oblique, flipped, PIR/LAS files) puts them where they belong; a
   left-handed direction matrix mirrors the surface, so the winding is reversed to keep normals
   outward.

Everything is deterministic: the same mask and config give the same arrays, bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from vtkmodules.util import numpy_support, vtkConstants

if not hasattr(numpy_support, "vtkConstants"):
    # VTK 9.5's vtk_to_numpy uses this name, unimported, when it copies an implicit array (as the
    # frozen app's meshes have): give it the module it means
    numpy_support.vtkConstants = vtkConstants
from vtkmodules.vtkCommonDataModel import vtkImageData, vtkPolyData
from vtkmodules.vtkFiltersCore import vtkPolyDataNormals, vtkQuadricDecimation, vtkWindowedSincPolyDataFilter
from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D

from .. import registry
from ..progress import CancelToken, ProgressCallback, check_cancel, report
from ..volume import Volume
from .surface import MeshReport, SurfaceMesh, closed_and_oriented, signed_volume


@dataclass(frozen=True, kw_only=True)
class MeshConfig:
    """How surfaces are built (keyword-only).

    Attributes
    ----------
    smoothing_iterations : int
        Windowed-sinc iterations (0 = no smoothing).
    smoothing_pass_band : float
        Windowed-sinc pass band in (0, 2); smaller smooths more (3D Slicer's default surface
        smoothing uses 0.01; 0.05 keeps thin processes at 3 mm voxels).
    target_triangles : int or None
        Decimate each vertebra's surface to about this many triangles; None keeps all. A lumbar
        vertebra at 1 mm gives ~25 000 raw triangles, a cervical one at 0.3 mm ~150 000.
    preserve_volume : bool
        Move the surface along its normals to restore the mask's volume (see module notes).
    max_offset_voxels : float
        Largest volume-correcting offset, in units of the smallest voxel spacing.
    """

    smoothing_iterations: int = 20
    smoothing_pass_band: float = 0.05
    target_triangles: int | None = 20_000
    preserve_volume: bool = True
    max_offset_voxels: float = 0.5

    def __post_init__(self) -> None:
        if self.smoothing_iterations < 0:
            raise ValueError(f"smoothing_iterations must be ≥ 0, got {self.smoothing_iterations}")
        if not 0.0 < self.smoothing_pass_band < 2.0:
            raise ValueError(f"smoothing_pass_band must be in (0, 2), got {self.smoothing_pass_band}")
        if self.target_triangles is not None and self.target_triangles < 100:
            raise ValueError(f"target_triangles must be ≥ 100 or None, got {self.target_triangles}")
        if self.max_offset_voxels < 0:
            raise ValueError(f"max_offset_voxels must be ≥ 0, got {self.max_offset_voxels}")


DEFAULT_CONFIG = MeshConfig()

_FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


def mesh_label_map(
    labels: Volume,
    *,
    ids: Iterable[int] | None = None,
    config: MeshConfig | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> dict[int, SurfaceMesh]:
    """One closed surface per label of a vertebra label map, in LPS mm.

    Parameters
    ----------
    labels : Volume
        Integer label map, array (K, J, I) indexed [k, j, i]; 0 is background.
    ids : iterable of int, optional
        Labels to mesh (default: every non-zero label present).
    config : MeshConfig, optional
    progress, cancel
        ``progress(fraction, message)``; the cancel token is checked before each vertebra.

    Returns
    -------
    dict
        Label id → `SurfaceMesh` (vertices (N, 3) LPS mm, faces (M, 3)), in cranio-caudal order
        for VerSe ids. Each mesh's ``report`` tells its volume change and timing.

    Raises
    ------
    ValueError
        A requested id is not in the map, or the map is not integer-valued.
    CancelledError
        When ``cancel`` is set.
    """
    config = config or DEFAULT_CONFIG
    progress = report(progress)
    array = labels.array
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"mesh_label_map needs an integer label map, got {array.dtype}")
    if array.size and array.min() < 0:
        raise ValueError("label maps hold ids ≥ 0")
    objects = ndimage.find_objects(array) if array.size and array.max() > 0 else []
    present = [n + 1 for n, sl in enumerate(objects) if sl is not None]
    if ids is None:
        wanted = present
    else:
        wanted = sorted({int(i) for i in ids})
        missing = sorted(set(wanted) - set(present))
        if missing:
            raise ValueError(f"labels {missing} are not in the label map (present: {present})")
    order = registry.sort_ids(wanted) if all(i in registry.VALID_IDS for i in wanted) else sorted(wanted)
    meshes: dict[int, SurfaceMesh] = {}
    for n, vid in enumerate(order):
        check_cancel(cancel)
        name = registry.name_of(vid) if vid in registry.VALID_IDS else str(vid)
        progress(n / max(len(order), 1), f"meshing {name}")
        box = objects[vid - 1]
        meshes[vid] = _mesh_box(array[box] == vid, box, labels, config)
    check_cancel(cancel)
    progress(1.0, "meshes done")
    return meshes


def mesh_mask(mask: Volume, *, config: MeshConfig | None = None) -> SurfaceMesh:
    """A closed surface around the non-zero voxels of ``mask``, in LPS mm.

    Parameters
    ----------
    mask : Volume
        Binary (or any) array (K, J, I); non-zero voxels are inside.
    config : MeshConfig, optional

    Raises
    ------
    ValueError
        When the mask is empty.
    """
    inside = np.asarray(mask.array) != 0
    objects = ndimage.find_objects(inside.astype(np.uint8))
    if not objects or objects[0] is None:
        raise ValueError("the mask is empty; there is no surface to build")
    box = objects[0]
    return _mesh_box(inside[box], box, mask, config or DEFAULT_CONFIG)


# ---- one mask -------------------------------------------------------------------------------------------
def _mesh_box(crop: np.ndarray, box: tuple[slice, ...], grid: Volume, config: MeshConfig) -> SurfaceMesh:
    """Mesh ``crop`` (bool, (K, J, I) sub-block ``box`` of ``grid``'s array)."""
    t0 = time.perf_counter()
    # an enclosed cavity (a hollow body, a gap inside the mask) would be meshed as a second, inward
    # shell inside the bone: a robot registering to the surface needs the outer one only
    crop = ndimage.binary_fill_holes(crop)
    spacing = np.array(grid.spacing)  # (sx, sy, sz) = along (i, j, k)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    n_voxels = int(np.count_nonzero(crop))
    touches = any(sl.start == 0 or sl.stop == dim for sl, dim in zip(box, grid.array.shape, strict=True))
    _, n_pieces = ndimage.label(crop, structure=_FULL_CONNECTIVITY)

    # Background padding closes the surface where the mask meets the crop (and image) border.
    padded = np.pad(crop.astype(np.uint8), 1)
    poly = _flying_edges(padded, spacing)
    extracted = _arrays(poly)
    extracted_ml = signed_volume(*extracted) / 1000.0
    n_extracted = len(extracted[1])

    if config.smoothing_iterations > 0:
        poly = _smooth(poly, config)
    poly = _consistent(poly)
    vertices, faces = _arrays(poly)
    decimated = False
    if config.target_triangles is not None and len(faces) > config.target_triangles:
        # Quadric decimation keeps the winding but now and then leaves a dangling "fin" triangle
        # where it collapsed a thin spike; those are removed. Anything else that is not closed is
        # dropped: a robot needs a closed surface more than a small file.
        dec_vertices, dec_faces = _arrays(_decimate(poly, config.target_triangles))
        dec_faces = _remove_fins(dec_faces)
        if closed_and_oriented(dec_faces):
            vertices, faces, decimated = dec_vertices, dec_faces, True
    vertices, faces = _compact(vertices, faces)
    if signed_volume(vertices, faces) < 0:
        faces = faces[:, ::-1]
    smoothed_ml = signed_volume(vertices, faces) / 1000.0

    offset = 0.0
    if config.preserve_volume and n_voxels:
        limit = config.max_offset_voxels * float(spacing.min())
        vertices, offset = _restore_volume(vertices, faces, n_voxels * voxel_ml * 1000.0, limit)

    # scaled crop index → voxel index (i, j, k) of the full grid → LPS mm. Nothing is known beyond
    # the image, so the surface of a mask cut by the image edge stays on the edge (the volume
    # correction would otherwise push it out by a fraction of a voxel).
    start_ijk = np.array([box[2].start, box[1].start, box[0].start], dtype=float) - 1.0
    ijk = np.clip(vertices / spacing + start_ijk, -0.5, np.array(grid.size, dtype=float) - 0.5)
    lps = grid.index_to_lps(ijk)
    if np.linalg.det(grid.direction) < 0:
        faces = faces[:, ::-1]  # a mirroring direction matrix flips the winding
    final_ml = signed_volume(lps, faces) / 1000.0
    if faces.size and final_ml <= 0:
        raise RuntimeError("mesh orientation check failed: the surface's normals point inwards")
    rep = MeshReport(
        mask_voxels=n_voxels,
        mask_volume_ml=n_voxels * voxel_ml,
        extracted_volume_ml=extracted_ml,
        smoothed_volume_ml=smoothed_ml,
        volume_ml=final_ml,
        offset_mm=offset,
        extracted_triangles=n_extracted,
        mask_components=int(n_pieces),
        touches_border=bool(touches),
        decimated=decimated,
        seconds=time.perf_counter() - t0,
    )
    return SurfaceMesh(lps, faces, rep)


def _flying_edges(padded: np.ndarray, spacing: np.ndarray) -> vtkPolyData:
    image = vtkImageData()
    k, j, i = padded.shape
    image.SetDimensions(i, j, k)  # VTK's x runs fastest, like i in a C-ordered [k, j, i] array
    image.SetSpacing(*(float(s) for s in spacing))
    image.SetOrigin(0.0, 0.0, 0.0)
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(padded).ravel(), deep=True)
    image.GetPointData().SetScalars(scalars)
    fe = vtkDiscreteFlyingEdges3D()
    fe.SetInputData(image)
    fe.SetValue(0, 1)
    fe.ComputeNormalsOff()
    fe.ComputeGradientsOff()
    fe.ComputeScalarsOff()
    fe.Update()
    return fe.GetOutput()


def _smooth(poly: vtkPolyData, config: MeshConfig) -> vtkPolyData:
    sinc = vtkWindowedSincPolyDataFilter()
    sinc.SetInputData(poly)
    sinc.SetNumberOfIterations(config.smoothing_iterations)
    sinc.SetPassBand(config.smoothing_pass_band)
    sinc.NormalizeCoordinatesOn()  # numerically stable, and the result does not depend on the size
    sinc.BoundarySmoothingOff()
    sinc.FeatureEdgeSmoothingOff()
    sinc.NonManifoldSmoothingOn()
    sinc.Update()
    return sinc.GetOutput()


def _decimate(poly: vtkPolyData, target: int) -> vtkPolyData:
    dec = vtkQuadricDecimation()
    dec.SetInputData(poly)
    dec.SetTargetReduction(1.0 - target / poly.GetNumberOfPolys())
    dec.VolumePreservationOn()
    dec.Update()
    return dec.GetOutput()


def _consistent(poly: vtkPolyData) -> vtkPolyData:
    normals = vtkPolyDataNormals()
    normals.SetInputData(poly)
    normals.ConsistencyOn()
    normals.SplittingOff()  # splitting would duplicate vertices along sharp edges and open the surface
    # Auto-orientation is left off: the global signed-volume check orients instead (it also holds for
    # a surface with a tunnel, which the filled cavities do not remove).
    normals.AutoOrientNormalsOff()
    # With both outputs off the filter skips its work (the consistency pass included).
    normals.ComputePointNormalsOff()
    normals.ComputeCellNormalsOn()
    normals.Update()
    return normals.GetOutput()


def _arrays(poly: vtkPolyData) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (N, 3) float64, faces (M, 3) int64) of a triangle-only vtkPolyData."""
    if poly.GetNumberOfPoints() == 0 or poly.GetNumberOfPolys() == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    vertices = numpy_support.vtk_to_numpy(poly.GetPoints().GetData()).astype(np.float64)
    cells = poly.GetPolys()
    offsets = numpy_support.vtk_to_numpy(cells.GetOffsetsArray())
    if np.any(np.diff(offsets) != 3):
        raise RuntimeError("the surface filter returned polygons that are not triangles")
    faces = numpy_support.vtk_to_numpy(cells.GetConnectivityArray()).astype(np.int64).reshape(-1, 3)
    return vertices, faces


def _remove_fins(faces: np.ndarray) -> np.ndarray:
    """Drop triangles that enclose nothing: ones with a vertex no other triangle uses, and pairs
    of the same triangle with both windings; repeated until none is left."""
    while len(faces):
        key = np.sort(faces, axis=1)
        _, first, counts = np.unique(key, axis=0, return_index=True, return_counts=True)
        keep = np.zeros(len(faces), dtype=bool)
        keep[first[counts == 1]] = True  # every copy of a repeated triangle goes
        uses = np.bincount(faces.ravel(), minlength=int(faces.max()) + 1)
        keep &= (uses[faces] > 1).all(axis=1)
        if keep.all():
            break
        faces = faces[keep]
    return faces


def _compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop vertices no triangle uses (decimation leaves them behind), keeping the order."""
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.ravel()] = True
    if used.all():
        return vertices, faces
    remap = np.cumsum(used) - 1
    return vertices[used], remap[faces]


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (N, 3)."""
    tri = vertices[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 × area
    normals = np.zeros_like(vertices)
    for c in range(3):
        np.add.at(normals, faces[:, c], face_n)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)


def _restore_volume(
    vertices: np.ndarray, faces: np.ndarray, target_mm3: float, limit_mm: float
) -> tuple[np.ndarray, float]:
    """Offset the surface along its vertex normals until it encloses ``target_mm3``.

    Returns the moved vertices and the offset (mm). The enclosed volume grows by about area ×
    offset, so three Newton steps settle it to well under 0.1 %.
    """
    if len(faces) == 0:
        return vertices, 0.0
    normals = _vertex_normals(vertices, faces)
    tri = vertices[faces]
    area = 0.5 * float(np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum())
    if area <= 0:
        return vertices, 0.0
    offset = 0.0
    moved = vertices
    for _ in range(3):
        step = (target_mm3 - signed_volume(moved, faces)) / area
        offset = float(np.clip(offset + step, -limit_mm, limit_mm))
        moved = vertices + offset * normals
    return moved, offset
