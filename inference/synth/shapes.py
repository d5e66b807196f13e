"""The vertebra shape library (``assets/shapes/``, built by `inference.synth.build_shapes`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

SHAPES_DIR = Path(__file__).resolve().parents[2] / "assets" / "shapes"


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


@lru_cache(maxsize=2)
def load_library(directory: str | None = None) -> dict[str, list[Shape]]:
    """All shapes grouped by level name (``"L3"`` → shapes of L3 from every source).

    Cached: the library is read once per process (about 0.3 MB compressed).
    """
    folder = Path(directory) if directory else SHAPES_DIR
    doc = json.loads((folder / "shapes.json").read_text())
    packed = np.load(folder / "shapes.npz")
    out: dict[str, list[Shape]] = {}
    for rec in doc["shapes"]:
        size_ijk = rec["size"]
        n = int(np.prod(size_ijk))
        bits = np.unpackbits(packed[f"mask_{rec['index']:03d}"], count=n).astype(bool)
        mask = bits.reshape(size_ijk[::-1])
        mask.setflags(write=False)
        shape = Shape(rec["name"], rec["level"], mask, np.asarray(rec["origin"], dtype=float), rec)
        out.setdefault(rec["level"], []).append(shape)
    return out
