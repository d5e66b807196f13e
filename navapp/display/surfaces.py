"""Surface meshes as VTK polydata ready to draw: built on a worker thread, drawn on the GUI thread.

A `SurfaceMesh` (numpy vertices and faces, LPS mm) becomes a `pyvista.PolyData` with outward
vertex normals. Doing this in the job that made the meshes, not in the 3D view's slot, keeps
the normal computation (tens of ms for a spine) off the GUI thread; the view then only adds
actors. VTK data objects may be built on one thread and used on another as long as no two
threads touch them at once, which the job's hand-over guarantees.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyvista as pv

DISPLAY_TRIANGLES = 6000
"""Triangles per surface on screen. The exported meshes keep every triangle (20 000 per vertebra
by default); on screen a quarter of that looks the same (edges ~1.5 mm on a lumbar vertebra,
finer than the 2 mm segmentation grid) and is drawn four times faster, which matters on a
workstation without a GPU where Mesa draws a 200 000-triangle spine in ~0.07 s per frame."""


def surface_polydata(mesh: Any, max_triangles: int | None = DISPLAY_TRIANGLES) -> pv.PolyData:
    """``mesh`` (``vertices`` (N, 3) LPS mm, ``faces`` (M, 3) int) as polydata with vertex normals,
    decimated (quadric, volume-preserving) to about ``max_triangles`` (None: all of them)."""
    vertices = np.asarray(mesh.vertices, dtype=float)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    cells = np.hstack([np.full((len(faces), 1), 3, dtype=np.int64), faces]).ravel()
    poly = pv.PolyData(vertices, cells)
    if len(faces) == 0:
        return poly
    if max_triangles is not None and len(faces) > max_triangles:
        poly = poly.decimate(1.0 - max_triangles / len(faces), volume_preservation=True)
    # the meshes are closed and consistently wound outward already: no reorientation, no splitting
    return poly.compute_normals(cell_normals=False, point_normals=True, split_vertices=False,
                                consistent_normals=False, auto_orient_normals=False)


def surface_polydata_all(meshes: dict[int, Any]) -> dict[int, pv.PolyData]:
    """`surface_polydata` of every mesh that has faces, by the same key."""
    return {key: surface_polydata(m) for key, m in meshes.items() if m is not None and len(m.faces)}
