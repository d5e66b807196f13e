"""From a volume's voxel axes to screen orientation (display only, no resampling).

A CT array is indexed ``[k, j, i]`` and its direction matrix may point the i, j, k axes anywhere
(flipped, permuted, slightly oblique). For display, each patient axis L, P, S is paired with the
voxel axis closest to it, and the array is transposed and flipped (views only, no copy) into a
*display array* indexed ``[s, p, l]``: ``l`` grows toward patient Left, ``p`` toward Posterior,
``s`` toward Superior. Oblique series are shown on their own voxel grid along the nearest patient
axes; `DisplayFrame.obliquity_deg` says how far off that is.

Screen conventions (radiological, as in 3D Slicer and most PACS):

========  ==============  =================  ===============
plane     screen left     screen top         slice normal
========  ==============  =================  ===============
axial     patient Right   Anterior           S (scroll: I↔S)
coronal   patient Right   Superior           P (scroll: A↔P)
sagittal  Anterior        Superior           L (scroll: R↔L)
========  ==============  =================  ===============
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np

from inference.volume import Volume

# LPS axis numbers: 0 = x (toward Left), 1 = y (toward Posterior), 2 = z (toward Superior)
_LPS_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))  # (letter at the low end, letter at the high end)


@dataclass(frozen=True)
class PlaneSpec:
    """How one 2D view cuts the display array and lays it on screen.

    ``row_axis``/``col_axis`` are LPS axis numbers shown along screen rows (top → bottom) and
    columns (left → right); ``*_flip`` means screen order runs against the axis (e.g. Superior up
    needs the S axis flipped, as screen rows grow downward).
    """

    name: str
    normal: int
    row_axis: int
    row_flip: bool
    col_axis: int
    col_flip: bool

    def edge_letters(self) -> dict[str, str]:
        """Orientation letters at the screen edges: keys ``left``, ``right``, ``top``, ``bottom``."""
        lo_r, hi_r = _LPS_LETTERS[self.row_axis]
        lo_c, hi_c = _LPS_LETTERS[self.col_axis]
        top, bottom = (hi_r, lo_r) if self.row_flip else (lo_r, hi_r)
        left, right = (hi_c, lo_c) if self.col_flip else (lo_c, hi_c)
        return {"left": left, "right": right, "top": top, "bottom": bottom}


PLANES: dict[str, PlaneSpec] = {
    "axial": PlaneSpec("axial", normal=2, row_axis=1, row_flip=False, col_axis=0, col_flip=False),
    "coronal": PlaneSpec("coronal", normal=1, row_axis=2, row_flip=True, col_axis=0, col_flip=False),
    "sagittal": PlaneSpec("sagittal", normal=0, row_axis=2, row_flip=True, col_axis=1, col_flip=False),
}


@dataclass(frozen=True, eq=False)
class DisplayFrame:
    """Pairing of a volume's voxel axes with the patient axes L, P, S.

    Attributes
    ----------
    volume_axis : tuple of int
        For LPS axis ``w`` (0 = L, 1 = P, 2 = S), the voxel axis (0 = i, 1 = j, 2 = k) shown along it.
    flip : tuple of bool
        For LPS axis ``w``, True when that voxel index grows *against* the patient axis.
    shape : tuple of int
        Number of voxels along L, P, S.
    spacing : tuple of float
        Voxel spacing in mm along L, P, S.
    obliquity_deg : float
        Largest angle between a voxel axis and the patient axis it is shown along (0 for axis-aligned).
    """

    volume_axis: tuple[int, int, int]
    flip: tuple[bool, bool, bool]
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    obliquity_deg: float
    _index_to_lps: np.ndarray
    _origin: np.ndarray

    @classmethod
    def from_volume(cls, volume: Volume) -> DisplayFrame:
        d = np.asarray(volume.direction, dtype=float)
        # The permutation that keeps the most of each axis; for an axis-aligned scan it is exact.
        best = max(permutations(range(3)), key=lambda p: sum(abs(d[w, p[w]]) for w in range(3)))
        flip = tuple(bool(d[w, best[w]] < 0) for w in range(3))
        cos = [min(abs(d[w, best[w]]), 1.0) for w in range(3)]
        return cls(
            volume_axis=tuple(int(c) for c in best),
            flip=flip,
            shape=tuple(int(volume.size[c]) for c in best),
            spacing=tuple(float(volume.spacing[c]) for c in best),
            obliquity_deg=float(np.degrees(np.arccos(min(cos)))),
            _index_to_lps=volume.index_to_lps_matrix[:3, :3].copy(),
            _origin=np.asarray(volume.origin, dtype=float),
        )

    # ---- arrays -------------------------------------------------------------------------------
    def to_display(self, array: np.ndarray) -> np.ndarray:
        """A ``[k, j, i]`` array of this grid as a display array ``[s, p, l]`` (a view, no copy)."""
        # numpy axis of voxel axis c (i=0, j=1, k=2) is 2 - c; display numpy axes are S, P, L
        out = array.transpose([2 - self.volume_axis[w] for w in (2, 1, 0)])
        flips = tuple(slice(None, None, -1) if self.flip[w] else slice(None) for w in (2, 1, 0))
        return out[flips]

    # ---- points -------------------------------------------------------------------------------
    def lps_to_display(self, lps: np.ndarray) -> np.ndarray:
        """LPS mm, shape (3,) → continuous display indices ``(l, p, s)``, shape (3,)."""
        ijk = np.linalg.solve(self._index_to_lps, np.asarray(lps, dtype=float) - self._origin)
        out = np.empty(3)
        for w in range(3):
            c = self.volume_axis[w]
            out[w] = (self.shape[w] - 1 - ijk[c]) if self.flip[w] else ijk[c]
        return out

    def display_to_lps(self, lps_index: np.ndarray) -> np.ndarray:
        """Continuous display indices ``(l, p, s)``, shape (3,) → LPS mm, shape (3,)."""
        ijk = np.empty(3)
        for w in range(3):
            v = float(lps_index[w])
            ijk[self.volume_axis[w]] = (self.shape[w] - 1 - v) if self.flip[w] else v
        return self._index_to_lps @ ijk + self._origin

    def clamp(self, lps_index: np.ndarray) -> np.ndarray:
        """Display indices clipped to the grid (voxel centres 0 … n-1 on each axis)."""
        return np.clip(np.asarray(lps_index, dtype=float), 0, np.array(self.shape) - 1)

    # ---- planes -------------------------------------------------------------------------------
    def slice_count(self, plane: PlaneSpec) -> int:
        return self.shape[plane.normal]

    def plane_shape(self, plane: PlaneSpec) -> tuple[int, int]:
        """(rows, columns) of a slice of this plane on screen."""
        return self.shape[plane.row_axis], self.shape[plane.col_axis]

    def pixel_size_mm(self, plane: PlaneSpec) -> tuple[float, float]:
        """(height, width) of one screen pixel of the slice in mm, for the aspect ratio."""
        return self.spacing[plane.row_axis], self.spacing[plane.col_axis]

    def extract(self, display_array: np.ndarray, plane: PlaneSpec, index: int) -> np.ndarray:
        """The 2D slice ``index`` along ``plane.normal`` in screen order ``[row, column]``."""
        where: list[int | slice] = [slice(None)] * 3
        where[2 - plane.normal] = int(index)
        img = display_array[tuple(where)]
        remaining = [a for a in (2, 1, 0) if a != plane.normal]  # LPS axes left, in numpy order
        if remaining != [plane.row_axis, plane.col_axis]:
            img = img.T
        if plane.row_flip:
            img = img[::-1, :]
        if plane.col_flip:
            img = img[:, ::-1]
        return img

    def to_screen(self, lps_index: np.ndarray, plane: PlaneSpec) -> tuple[float, float]:
        """Display indices ``(l, p, s)`` → continuous (row, column) in the plane's slice image."""
        rows, cols = self.plane_shape(plane)
        r = float(lps_index[plane.row_axis])
        c = float(lps_index[plane.col_axis])
        return (rows - 1 - r if plane.row_flip else r), (cols - 1 - c if plane.col_flip else c)

    def from_screen(self, row: float, col: float, plane: PlaneSpec, normal_index: float) -> np.ndarray:
        """(row, column) in a slice image of ``plane`` at ``normal_index`` → display indices ``(l, p, s)``."""
        rows, cols = self.plane_shape(plane)
        out = np.zeros(3)
        out[plane.row_axis] = rows - 1 - row if plane.row_flip else row
        out[plane.col_axis] = cols - 1 - col if plane.col_flip else col
        out[plane.normal] = normal_index
        return out
