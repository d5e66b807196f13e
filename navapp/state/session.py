"""The session model: what is loaded and what the user points at, as Qt signals.

Views never talk to each other; they read the `Session` and react to its signals (the napari
"model + Qt views" split). The session holds data computed elsewhere (`inference`) and the
display state (window/level, crosshair, selected vertebra). It computes nothing itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from inference import registry
from inference.volume import Volume

from ..display import WINDOW_PRESETS, DisplayFrame

DEFAULT_WINDOW = "Bone"


@dataclass(frozen=True, eq=False)
class VertebraInfo:
    """One labelled vertebra as shown in the table and the 3D view.

    ``center_lps`` is in LPS mm, shape (3,); ``volume_ml`` in millilitres (both from
    `inference.measure`).
    """

    id: int
    name: str
    center_lps: np.ndarray
    volume_ml: float
    colour: tuple[int, int, int]


@dataclass(frozen=True, eq=False)
class LabelSet:
    """Vertebra labels on the CT grid with what was computed from them.

    Attributes
    ----------
    labels : Volume
        uint8 VerSe ids on the CT grid.
    vertebrae : list of VertebraInfo
        Cranio-caudal order.
    meshes : dict
        VerSe id → surface mesh (``vertices`` (N, 3) float LPS mm, ``faces`` (M, 3) int).
    """

    labels: Volume
    vertebrae: list[VertebraInfo]
    meshes: dict[int, Any]

    def by_id(self, vertebra_id: int) -> VertebraInfo | None:
        return next((v for v in self.vertebrae if v.id == vertebra_id), None)


def vertebra_infos(centers: dict[int, np.ndarray], volumes_ml: dict[int, float]) -> list[VertebraInfo]:
    """Table rows for the ids in ``centers``, cranio-caudal, with registry names and colours."""
    rows = []
    for vid in registry.sort_ids(centers):
        v = registry.by_id(vid)
        rows.append(
            VertebraInfo(
                vid,
                v.name,
                np.asarray(centers[vid], dtype=float),
                float(volumes_ml.get(vid, float("nan"))),
                v.color,
            )
        )
    return rows


class Session(QObject):
    """The loaded case and the shared view state.

    Signals
    -------
    ct_changed()
        A new CT (or none) was set; labels were cleared with it.
    labels_changed()
        Labels, vertebra list and meshes were set or cleared.
    crosshair_changed(object)
        The crosshair moved; payload is its LPS position in mm, ndarray shape (3,).
    selection_changed(int)
        The selected vertebra's VerSe id (0: none).
    window_changed(float, float)
        New CT display window (width, level) in HU.
    """

    ct_changed = Signal()
    labels_changed = Signal()
    crosshair_changed = Signal(object)
    selection_changed = Signal(int)
    window_changed = Signal(float, float)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ct: Volume | None = None
        self.frame: DisplayFrame | None = None
        self.label_set: LabelSet | None = None
        self.crosshair_lps: np.ndarray | None = None
        self.selected_id: int = 0
        self.window: tuple[float, float] = WINDOW_PRESETS[DEFAULT_WINDOW]

    # ---- data ---------------------------------------------------------------------------------
    @property
    def labels(self) -> Volume | None:
        return None if self.label_set is None else self.label_set.labels

    def set_ct(self, ct: Volume | None, label_set: LabelSet | None = None) -> None:
        """Show a new CT (and optionally its labels); the crosshair goes to the CT's centre."""
        self.ct = ct
        self.frame = None if ct is None else DisplayFrame.from_volume(ct)
        self.label_set = None
        self.selected_id = 0
        self.ct_changed.emit()
        self.set_labels(label_set)
        if ct is None:
            self.crosshair_lps = None
            self.crosshair_changed.emit(None)
        else:
            centre = (np.array(ct.size, dtype=float) - 1.0) / 2.0
            self.set_crosshair(ct.index_to_lps(centre[None, :])[0])

    def set_labels(self, label_set: LabelSet | None) -> None:
        """Replace the labels (None clears them); the labels must be on the CT's grid."""
        if label_set is not None:
            if self.ct is None:
                raise ValueError("labels need a CT to sit on")
            if not self.ct.same_grid(label_set.labels):
                raise ValueError("labels are not on the CT grid")
        self.label_set = label_set
        if self.selected_id:
            self.selected_id = 0
            self.selection_changed.emit(0)
        self.labels_changed.emit()

    # ---- view state ---------------------------------------------------------------------------
    def set_crosshair(self, lps: np.ndarray) -> None:
        """Move the crosshair to ``lps`` (mm, shape (3,)), clipped to the CT's voxel centres."""
        if self.ct is None or self.frame is None:
            return
        clipped = self.frame.display_to_lps(self.frame.clamp(self.frame.lps_to_display(lps)))
        if self.crosshair_lps is not None and np.allclose(clipped, self.crosshair_lps, atol=1e-6):
            return
        self.crosshair_lps = clipped
        self.crosshair_changed.emit(clipped.copy())

    def select_vertebra(self, vertebra_id: int, *, move_crosshair: bool = True) -> None:
        """Select a vertebra by VerSe id (0 clears); by default the crosshair jumps to its centre."""
        info = None if self.label_set is None else self.label_set.by_id(vertebra_id)
        vertebra_id = info.id if info is not None else 0
        if vertebra_id != self.selected_id:
            self.selected_id = vertebra_id
            self.selection_changed.emit(vertebra_id)
        if info is not None and move_crosshair:
            self.set_crosshair(info.center_lps)

    def set_window(self, width: float, level: float) -> None:
        """CT display window in HU (width ≥ 1)."""
        window = (max(float(width), 1.0), float(level))
        if window != self.window:
            self.window = window
            self.window_changed.emit(*window)

    def set_window_preset(self, name: str) -> None:
        """One of `WINDOW_PRESETS` ("Bone", "Soft tissue")."""
        self.set_window(*WINDOW_PRESETS[name])
