"""`Volume`: a CT (or label map) array with its exact patient geometry.

Conventions (DESIGN §2):
- ``array`` is indexed ``[k, j, i]`` (slice, row, column), as ``SimpleITK.GetArrayFromImage`` returns it.
- ``spacing`` and ``origin`` are in (x, y, z) = (i, j, k) order, millimetres; ``direction`` is the
  3×3 ITK direction matrix whose *columns* are the LPS unit vectors of the i, j and k axes.
- A voxel index (i, j, k) sits at ``origin + direction @ (spacing * (i, j, k))`` in LPS mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk


@dataclass
class Volume:
    """An image on a regular grid in the LPS patient frame.

    Attributes
    ----------
    array : np.ndarray, shape (K, J, I)
        Voxel values (HU for CT, integer ids for label maps).
    spacing : tuple of float, (sx, sy, sz), mm
    origin : tuple of float, (x, y, z), LPS mm of voxel (0, 0, 0)'s centre
    direction : np.ndarray, shape (3, 3), orthonormal; columns are the i, j, k axes in LPS
    metadata : dict
        Source identity and scanner facts (modality, series_uid, frame_of_reference_uid, ...).
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Volume needs a 3D array [k, j, i], got shape {self.array.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        if any(s <= 0 or not np.isfinite(s) for s in self.spacing):
            raise ValueError(f"spacing must be positive and finite, got {self.spacing}")

    # ---- geometry -----------------------------------------------------------------------------
    @property
    def size(self) -> tuple[int, int, int]:
        """Grid size in (i, j, k) order, like ``SimpleITK.Image.GetSize()``."""
        k, j, i = self.array.shape
        return (i, j, k)

    @property
    def index_to_lps_matrix(self) -> np.ndarray:
        """4×4 homogeneous matrix mapping (i, j, k, 1) to (x, y, z, 1) in LPS mm."""
        m = np.eye(4)
        m[:3, :3] = self.direction @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    @property
    def superior_array_axis(self) -> int:
        """The axis of ``array`` (0 = k, 1 = j, 2 = i) closest to the patient's S–I direction."""
        return 2 - int(np.argmax(np.abs(self.direction[2])))

    def index_to_lps(self, ijk: np.ndarray) -> np.ndarray:
        """Continuous voxel indices (N, 3) in (i, j, k) order → LPS mm (N, 3)."""
        ijk = np.asarray(ijk, dtype=float)
        m = self.index_to_lps_matrix
        return ijk @ m[:3, :3].T + m[:3, 3]

    def lps_to_index(self, lps: np.ndarray) -> np.ndarray:
        """LPS mm (N, 3) → continuous voxel indices (N, 3) in (i, j, k) order."""
        lps = np.asarray(lps, dtype=float)
        m = self.index_to_lps_matrix
        return np.linalg.solve(m[:3, :3], (lps - m[:3, 3]).T).T

    def physical_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned LPS box (min, max) of the voxel *centres* of the grid."""
        corners = np.array(
            [[i, j, k] for i in (0, self.size[0] - 1) for j in (0, self.size[1] - 1) for k in (0, self.size[2] - 1)],
            dtype=float,
        )
        pts = self.index_to_lps(corners)
        return pts.min(axis=0), pts.max(axis=0)

    def extent(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned LPS box (min, max) of the grid's voxels including their outer halves, mm."""
        lo, hi = -0.5, np.array(self.size, dtype=float) - 0.5
        corners = np.array([[i, j, k] for i in (lo, hi[0]) for j in (lo, hi[1]) for k in (lo, hi[2])])
        pts = self.index_to_lps(corners)
        return pts.min(axis=0), pts.max(axis=0)

    def same_grid(self, other: Volume, tol_mm: float = 1e-3) -> bool:
        """True when both volumes have the same size and voxel positions (within ``tol_mm``)."""
        if self.size != other.size:
            return False
        m1, m2 = self.index_to_lps_matrix, other.index_to_lps_matrix
        span = np.array(self.size, dtype=float)
        # compare the positions of the grid's corners rather than raw matrices: tolerance in mm
        corners = np.array([[0, 0, 0], [span[0], 0, 0], [0, span[1], 0], [0, 0, span[2]]])
        h = np.c_[corners, np.ones(4)]
        return bool(np.abs(h @ m1.T - h @ m2.T).max() <= tol_mm)

    def with_array(self, array: np.ndarray, **metadata: Any) -> Volume:
        """A volume on the same grid holding ``array`` (e.g. a label map for this CT)."""
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} differs from the grid {self.array.shape}")
        return Volume(array, self.spacing, self.origin, self.direction.copy(), {**self.metadata, **metadata})

    def crop(self, box: tuple[slice, slice, slice]) -> Volume:
        """The part of this volume in ``box`` (array slices k, j, i with explicit starts; a view), in
        the same frame: its origin is the box's first voxel."""
        start = np.array([[box[2].start, box[1].start, box[0].start]], float)
        return Volume(self.array[box], self.spacing, tuple(self.index_to_lps(start)[0]), self.direction.copy(),
                      dict(self.metadata))

    # ---- SimpleITK bridge ---------------------------------------------------------------------
    def to_sitk(self) -> sitk.Image:
        img = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(tuple(self.direction.flatten()))
        return img

    @classmethod
    def from_sitk(cls, image: sitk.Image, metadata: dict[str, Any] | None = None) -> Volume:
        if image.GetDimension() != 3:
            raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
        return cls(
            array=sitk.GetArrayFromImage(image),
            spacing=image.GetSpacing(),
            origin=image.GetOrigin(),
            direction=np.array(image.GetDirection()).reshape(3, 3),
            metadata=dict(metadata or {}),
        )

    def geometry_dict(self) -> dict[str, Any]:
        """Plain-JSON geometry (LPS mm), the same keys ``spinenav info --json`` prints."""
        return {
            "coordinate_system": "LPS",
            "size": list(self.size),
            "spacing": [round(s, 6) for s in self.spacing],
            "origin": [round(o, 6) for o in self.origin],
            "direction": [round(float(d), 9) for d in self.direction.flatten()],
        }
