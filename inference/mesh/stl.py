"""Binary STL with deterministic bytes: fixed header text, no timestamp, float32 LPS mm."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .surface import SurfaceMesh

_TRIANGLE = np.dtype(
    [("normal", "<f4", (3,)), ("v0", "<f4", (3,)), ("v1", "<f4", (3,)), ("v2", "<f4", (3,)), ("attr", "<u2")]
)


def stl_header(text: str) -> bytes:
    """The 80-byte header: ASCII ``text`` padded with spaces.

    A binary STL must not start with ``solid`` (readers would take it for ASCII STL), so such a
    text gets a prefix.
    """
    raw = text.encode("ascii", errors="replace")
    if raw.lstrip().lower().startswith(b"solid"):
        raw = b"binary " + raw
    return raw[:80].ljust(80, b" ")


def stl_bytes(mesh: SurfaceMesh, header: str = "SpineNav surface, LPS mm") -> bytes:
    """Binary STL of ``mesh``: the same mesh and header always give the same bytes.

    Vertices are stored as float32 LPS mm (STL has no unit field; the header says mm and LPS).
    Facet normals are computed from the triangle winding (outward).
    """
    out = np.zeros(mesh.n_faces, dtype=_TRIANGLE)
    out["normal"] = mesh.face_normals()
    tri = mesh.vertices[mesh.faces]
    out["v0"], out["v1"], out["v2"] = tri[:, 0], tri[:, 1], tri[:, 2]
    return stl_header(header) + np.uint32(mesh.n_faces).tobytes() + out.tobytes()


def write_stl(path: str | Path, mesh: SurfaceMesh, header: str = "SpineNav surface, LPS mm") -> int:
    """Write ``mesh`` as binary STL; returns the number of bytes written."""
    data = stl_bytes(mesh, header)
    Path(path).write_bytes(data)
    return len(data)


def read_stl(path: str | Path) -> SurfaceMesh:
    """Read a binary STL written by `write_stl` (vertices shared where coordinates are equal).

    Only binary STL is read; this is for checking bundles, not a general STL reader.
    """
    data = Path(path).read_bytes()
    if len(data) < 84:
        raise ValueError(f"{path}: too short for a binary STL")
    n = int(np.frombuffer(data, "<u4", count=1, offset=80)[0])
    if len(data) != 84 + n * _TRIANGLE.itemsize:
        raise ValueError(f"{path}: size does not match its {n} triangles (ASCII STL or damaged)")
    tri = np.frombuffer(data, _TRIANGLE, count=n, offset=84)
    corners = np.stack([tri["v0"], tri["v1"], tri["v2"]], axis=1).reshape(-1, 3)
    vertices, inverse = np.unique(corners, axis=0, return_inverse=True)
    return SurfaceMesh(vertices.astype(np.float64), inverse.reshape(-1, 3))
