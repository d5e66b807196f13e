"""Closed per-vertebra surface meshes in LPS millimetres (DESIGN §1 "mesh" stage).

`mesh_label_map` builds one closed, outward-oriented surface per vertebra of a label map with VTK
(through ``vtkmodules`` only: no pyvista, no GUI); `SurfaceMesh` holds it as numpy arrays;
`stl_bytes` / `write_stl` store it as deterministic binary STL.
"""

from .extract import DEFAULT_CONFIG, MeshConfig, mesh_label_map, mesh_mask
from .stl import read_stl, stl_bytes, write_stl
from .surface import MeshReport, SurfaceMesh, closed_and_oriented, signed_volume

__all__ = [
    "DEFAULT_CONFIG",
    "MeshConfig",
    "MeshReport",
    "SurfaceMesh",
    "closed_and_oriented",
    "mesh_label_map",
    "mesh_mask",
    "read_stl",
    "signed_volume",
    "stl_bytes",
    "write_stl",
]
