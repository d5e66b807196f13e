"""The vertebra shape library (``assets/shapes/``, built by `inference.synth.build_shapes`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..assets import assets_dir

SHAPES_DIR = assets_dir() / "shapes"


@dataclass(frozen=True)
class Shape:
    """One vertebra mask in its canonical frame (origin = its centroid, +z = local spine axis, LPS mm).

    Attributes
    ----------
    name : str
        ``"<level>@<source>"``, e.g. ``"L3@verse010"``.
    level : str
        ``"C1"`` … ``"L5"``, ``"S1"`` (sacrum) or ``"pelvis"``.
    mask : np.ndarray, shape (K, J, I), bool
        1 mm voxels, axes [z, y, x] of the canonical frame.
    origin : np.ndarray, shape (3,)
        Canonical (x, y, z) mm of voxel [0, 0, 0].
    meta : dict
        The shape's ``shapes.json`` record (landmarks in canonical mm: ``body_center``,
        ``body_half_size`` (LR, AP, SI), ``canal_center``, ``canal_radius``, ``tp_left``, ``tp_right``;
        ``next_offset`` to the caudal neighbour's centroid in the same scan when known).
    """

    name: str
    level: str
    mask: np.ndarray
    origin: np.ndarray
    meta: dict[str, Any]

    def get(self, key: str) -> np.ndarray:
        """A landmark as a float array (canonical mm)."""
        return np.asarray(self.meta[key], dtype=float)

    @property
    def coarse(self) -> bool:
        return bool(self.meta.get("coarse"))

    @cached_property
    def endplates(self) -> dict[int, Endplate]:
        """The body's superior (+1) and inferior (−1) endplates, measured on the mask (canonical mm).

        The stored ``body_half_size`` spans everything in front of the canal, which in the neck includes
        the transverse processes and uncinate processes (C3: ±22 mm wide for a ±9 mm body): a disc or a
        stacking step sized from it is wrong. Here the endplate height is the top (bottom) of the body's
        central column, and its footprint the body's cross-section 2.5 mm inside that endplate.
        """
        return _endplates(self)


@dataclass(frozen=True)
class Endplate:
    """One body endplate in a shape's canonical frame (mm): centre of its footprint and half extents."""

    x: float
    y: float
    z: float  # height of the endplate surface at the body's centre (concave endplates: the deepest point)
    half_x: float
    half_y: float


def _endplates(shape: Shape) -> dict[int, Endplate]:
    bc, hs = shape.get("body_center"), shape.get("body_half_size")
    zz, yy, xx = np.nonzero(shape.mask)
    pts = np.c_[xx, yy, zz] * 1.0 + shape.origin  # 1 mm voxels
    front = float(shape.meta["canal_center"][1]) - float(shape.meta["canal_radius"])
    body = pts[pts[:, 1] < front - 1.0]
    column = body[(np.abs(body[:, 0] - bc[0]) <= 3.0) & (np.abs(body[:, 1] - bc[1]) <= 0.5 * hs[1])]
    out = {}
    for sign in (1, -1):
        if len(column) < 5:
            z = float(bc[2] + sign * hs[2])
        else:
            z = float(column[:, 2].max() if sign > 0 else column[:, 2].min()) + 0.5 * sign
        slab = body[np.abs(body[:, 2] - (z - 2.5 * sign)) <= 1.0]
        if len(slab) < 20:
            out[sign] = Endplate(float(bc[0]), float(bc[1]), z, float(hs[0]), float(hs[1]))
            continue
        lo, hi = np.percentile(slab[:, :2], 3, axis=0), np.percentile(slab[:, :2], 97, axis=0)
        out[sign] = Endplate(float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2, z,
                             max(float(hi[0] - lo[0]) / 2, 3.0), max(float(hi[1] - lo[1]) / 2, 3.0))
    return out


@lru_cache(maxsize=4)
def load_library(directory: str | None = None, *, include_unusable: bool = False) -> dict[str, list[Shape]]:
    """The shapes synthesis draws from, grouped by level name (``"L3"`` → shapes of L3 from every source).

    Shapes the field of view cuts (``cut``) and probable compression fractures (``compressed``) are left
    out unless ``include_unusable``. Cached: the library is read once per process (about 1 MB compressed).
    """
    folder = Path(directory) if directory else SHAPES_DIR
    doc = json.loads((folder / "shapes.json").read_text())
    packed = np.load(folder / "shapes.npz")
    out: dict[str, list[Shape]] = {}
    for rec in doc["shapes"]:
        if not include_unusable and (rec.get("cut") or rec.get("compressed")):
            continue
        size_ijk = rec["size"]
        n = int(np.prod(size_ijk))
        bits = np.unpackbits(packed[f"mask_{rec['index']:03d}"], count=n).astype(bool)
        mask = bits.reshape(size_ijk[::-1])
        mask.setflags(write=False)
        shape = Shape(rec["name"], rec["level"], mask, np.asarray(rec["origin"], dtype=float), rec)
        out.setdefault(rec["level"], []).append(shape)
    return out
