"""`SurfaceMesh`: a triangle surface in LPS millimetres, with the checks a robot relies on.

Plain numpy: no VTK here, so the GUI, the exporter and the tests can use meshes without the
extraction pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph


@dataclass(frozen=True)
class MeshReport:
    """How a mesh was made and how far it moved from its mask.

    Attributes
    ----------
    mask_voxels : int
        Voxels in the mask the surface encloses.
    mask_volume_ml : float
        ``mask_voxels`` × voxel volume, millilitres (the reference volume).
    extracted_volume_ml : float
        Enclosed volume of the raw iso-surface, before smoothing (ml).
    smoothed_volume_ml : float
        Enclosed volume after smoothing and decimation, before the volume correction (ml).
    volume_ml : float
        Enclosed volume of the final surface (ml).
    offset_mm : float
        Distance the surface was moved along its normals to restore the mask volume (mm; > 0
        outwards). 0 when the correction is off.
    extracted_triangles : int
        Triangles before decimation.
    mask_components : int
        26-connected pieces of the mask (each becomes one closed surface).
    touches_border : bool
        The mask reaches the edge of the image grid (the surface is closed there by padding).
    decimated : bool
        False when decimation was skipped or undone because it would have opened the surface.
    seconds : float
        Wall time to build this mesh.
    """

    mask_voxels: int
    mask_volume_ml: float
    extracted_volume_ml: float
    smoothed_volume_ml: float
    volume_ml: float
    offset_mm: float
    extracted_triangles: int
    mask_components: int
    touches_border: bool
    decimated: bool
    seconds: float

    @property
    def volume_change(self) -> float:
        """Relative change of the enclosed volume against the mask volume (final surface)."""
        return self.volume_ml / self.mask_volume_ml - 1.0 if self.mask_volume_ml > 0 else 0.0

    @property
    def smoothing_volume_change(self) -> float:
        """Relative change against the mask volume before the volume correction."""
        return self.smoothed_volume_ml / self.mask_volume_ml - 1.0 if self.mask_volume_ml > 0 else 0.0


@dataclass(frozen=True, eq=False)
class SurfaceMesh:
    """A triangle surface in the LPS patient frame.

    Attributes
    ----------
    vertices : np.ndarray, shape (N, 3), float64
        Vertex positions (x, y, z), LPS mm.
    faces : np.ndarray, shape (M, 3), int64
        Vertex indices of each triangle, counter-clockwise seen from outside (right-hand rule
        gives the outward normal).
    report : MeshReport or None
        How the mesh was built (None for meshes made by hand).
    """

    vertices: np.ndarray
    faces: np.ndarray
    report: MeshReport | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        v = np.ascontiguousarray(self.vertices, dtype=np.float64).reshape(-1, 3)
        f = np.ascontiguousarray(self.faces, dtype=np.int64).reshape(-1, 3)
        if f.size and (f.min() < 0 or f.max() >= len(v)):
            raise ValueError(f"faces index vertices outside 0..{len(v) - 1}")
        v.setflags(write=False)
        f.setflags(write=False)
        object.__setattr__(self, "vertices", v)
        object.__setattr__(self, "faces", f)

    # ---- sizes --------------------------------------------------------------------------------
    @property
    def n_vertices(self) -> int:
        return int(len(self.vertices))

    @property
    def n_faces(self) -> int:
        return int(len(self.faces))

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned LPS box (min (3,), max (3,)) in mm."""
        if not self.n_vertices:
            return np.zeros(3), np.zeros(3)
        return self.vertices.min(axis=0), self.vertices.max(axis=0)

    # ---- geometry -----------------------------------------------------------------------------
    def face_normals(self) -> np.ndarray:
        """Unit outward normals (M, 3); zero rows for degenerate triangles."""
        tri = self.vertices[self.faces]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        length = np.linalg.norm(n, axis=1, keepdims=True)
        return np.divide(n, length, out=np.zeros_like(n), where=length > 0)

    @property
    def area_mm2(self) -> float:
        tri = self.vertices[self.faces]
        return float(0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum())

    @property
    def signed_volume_mm3(self) -> float:
        """Enclosed volume by the divergence theorem (mm³); > 0 when normals point outwards."""
        return signed_volume(self.vertices, self.faces)

    @property
    def volume_ml(self) -> float:
        """Enclosed volume in millilitres (cm³)."""
        return self.signed_volume_mm3 / 1000.0

    # ---- topology -----------------------------------------------------------------------------
    @property
    def is_watertight(self) -> bool:
        """Every edge is shared by exactly two triangles that traverse it in opposite directions.

        That makes the surface closed *and* consistently oriented (no holes, no flipped faces,
        no edge shared by three or more triangles).
        """
        return closed_and_oriented(self.faces)

    @property
    def n_components(self) -> int:
        """Connected pieces of the surface (triangles sharing vertices)."""
        if not self.n_faces:
            return 0
        used = np.unique(self.faces)
        remap = np.full(self.n_vertices, -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        f = remap[self.faces]
        rows = np.concatenate([f[:, 0], f[:, 1]])
        cols = np.concatenate([f[:, 1], f[:, 2]])
        graph = sparse.coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(len(used), len(used)))
        n, _ = csgraph.connected_components(graph, directed=False)
        return int(n)


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed enclosed volume (mm³) of a closed triangle surface, vertices (N, 3), faces (M, 3)."""
    if len(faces) == 0:
        return 0.0
    # Centre first: the sum of signed tetrahedra is translation-invariant for a closed surface,
    # but far from the origin (LPS coordinates of hundreds of mm) it loses digits.
    v = np.asarray(vertices, dtype=np.float64)
    v = v - v.mean(axis=0)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def closed_and_oriented(faces: np.ndarray) -> bool:
    """True when each directed edge occurs once and its reverse occurs once (closed, oriented)."""
    faces = np.asarray(faces, dtype=np.int64)
    if len(faces) == 0:
        return False
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    if np.any(directed[:, 0] == directed[:, 1]):
        return False  # degenerate triangle with a repeated vertex
    n = int(faces.max()) + 1
    key = directed[:, 0] * n + directed[:, 1]
    if len(np.unique(key)) != len(key):
        return False  # the same directed edge twice: flipped face or non-manifold edge
    reverse = directed[:, 1] * n + directed[:, 0]
    return bool(np.isin(reverse, key, assume_unique=True).all())
