"""The session model: what is loaded and what the user points at, as Qt signals.

Views never talk to each other; they read the `Session` and react to its signals (the napari
"model + Qt views" split). The session holds data computed elsewhere (`inference`), the user's
label corrections, the planned screws and the display state (window/level, crosshair, selected
vertebra). It computes nothing itself, except the quick re-grading of a screw the user moves.

Vertebrae come from one *source* at a time: the analysis result when one was run on this CT since
its labels were loaded, otherwise the label map. Corrections (`navapp.state.corrections`) map the
source's ids to the ids shown; the source data are never modified, the export applies the map.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from inference import corrections as corr
from inference import registry
from inference.corrections import CORRECTED_FLAG
from inference.volume import Volume

from ..display import WINDOW_PRESETS, DisplayFrame

if TYPE_CHECKING:
    from inference.case import Case
    from inference.planning import Screw, VertebraModel

DEFAULT_WINDOW = "Bone"

SOURCE_ANALYSIS, SOURCE_LABELS = "analysis", "labels"


@dataclass(frozen=True, eq=False)
class VertebraInfo:
    """One vertebra as shown in the table, the slice views and the 3D view.

    Attributes
    ----------
    id, name, colour
        VerSe id, registry name and display RGB as shown now (after corrections).
    center_lps : np.ndarray, shape (3,)
        LPS mm: the vertebra's one center (`inference.case.Vertebra.center_lps`: its mask's centroid,
        or the localizer's point when it has no mask), the point the bundle exports.
    volume_ml : float
        Millilitres, NaN when there is no mask.
    source_id : int
        The id in the label map or analysis it came from (0: same as ``id``).
    confidence : float or None
        Posterior probability of the analysis' label; None for a given label map.
    qa_flags : tuple of str
        Quality flags of the analysis (``label_uncertain``, ``gap_above``, …).
    lesion_score, lesion_type : float or None, str or None
        The analysis' lesion suspicion (0–1) and its type when flagged; None without segmentation
        and at the levels not assessed (C1, C2, sacrum).
    rib_ml : float or None
        The analysis' rib cue: rib volume found beside the vertebra (`inference.ribs`); None when not measured.
    body_center_lps : np.ndarray or None
        LPS mm: the centre of the vertebral body (in front of the canal; `inference.case.Vertebra`), where the
        slice views mark the vertebra; None where the analysis found none (C1, the sacrum, no mask).
    ribs_seen : dict or None
        The analysis' ribs read from bone beside the vertebra (`inference.case.Vertebra.ribs_seen`).
    """

    id: int
    name: str
    center_lps: np.ndarray
    volume_ml: float
    colour: tuple[int, int, int]
    source_id: int = 0
    confidence: float | None = None
    qa_flags: tuple[str, ...] = ()
    lesion_score: float | None = None
    lesion_type: str | None = None
    rib_ml: float | None = None
    body_center_lps: np.ndarray | None = None
    ribs_seen: dict[str, bool | None] | None = None

    @property
    def marker_lps(self) -> np.ndarray:
        """Where the slice views mark this vertebra and the crosshair goes when it is selected: the body
        centre when known (the mask's centroid lies near the canal), else `center_lps`."""
        return self.center_lps if self.body_center_lps is None else self.body_center_lps

    def shown_as(self, vertebra_id: int) -> VertebraInfo:
        """This vertebra under another (corrected) id."""
        v = registry.by_id(vertebra_id)
        flags = self.qa_flags if CORRECTED_FLAG in self.qa_flags else (*self.qa_flags, CORRECTED_FLAG)
        return VertebraInfo(
            v.id, v.name, self.center_lps, self.volume_ml, v.color, self.source_id or self.id, self.confidence, flags,
            self.lesion_score, self.lesion_type, self.rib_ml, self.body_center_lps, self.ribs_seen,
        )


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
    lesion_mesh : surface mesh or None
        Surface around the voxels of an analysis' lesion map at or above the flag threshold.
    surfaces : dict
        VerSe id → the mesh as polydata with normals, ready to draw (`navapp.display.surfaces`),
        built by the job that made the meshes; the 3D view builds any that is missing.
    lesion_surface : polydata or None
        ``lesion_mesh`` ready to draw.
    """

    labels: Volume
    vertebrae: list[VertebraInfo]
    meshes: dict[int, Any]
    lesion_mesh: Any = None
    surfaces: dict[int, Any] = field(default_factory=dict)
    lesion_surface: Any = None

    def by_id(self, vertebra_id: int) -> VertebraInfo | None:
        return next((v for v in self.vertebrae if v.id == vertebra_id), None)


@dataclass(eq=False)
class ScrewPlan:
    """Planned screws (edited in place), the vertebra models that grade them by level name, and
    why a wanted screw or level was not planned (``"T12 left"`` → sentence)."""

    screws: list[Screw]
    models: dict[str, VertebraModel]
    not_planned: dict[str, str] = field(default_factory=dict)


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
                vid,
            )
        )
    return rows


def analysis_infos(result: Case, volumes_ml: dict[int, float] | None = None) -> list[VertebraInfo]:
    """Rows for the vertebrae of an analysis, in its (head-to-foot) order (volumes from its masks)."""
    volumes_ml = volumes_ml or {}
    return [
        VertebraInfo(
            int(v.id),
            registry.name_of(v.id),
            np.asarray(v.center_lps, dtype=float),
            float(volumes_ml.get(int(v.id), float("nan"))),
            registry.by_id(v.id).color,
            int(v.id),
            float(v.confidence),
            tuple(v.qa_flags),
            None if v.lesion_score is None else float(v.lesion_score),
            v.lesion_type,
            v.rib_ml,
            None if v.body_center_lps is None else np.asarray(v.body_center_lps, dtype=float),
            v.ribs_seen,
        )
        for v in result.vertebrae
    ]


class Session(QObject):
    """The loaded case, its vertebrae with the user's corrections, and the shared view state.

    Signals
    -------
    ct_changed()
        A new CT (or none) was set; labels and analysis were cleared with it.
    labels_changed()
        The label map and its meshes were set or cleared.
    vertebrae_changed(bool)
        The vertebrae shown changed: True for new ones (labels, an analysis), False after a
        correction (same vertebrae, other names, maybe fewer).
    crosshair_changed(object)
        The crosshair moved; payload is its LPS position in mm, ndarray shape (3,).
    selection_changed(int)
        The selected vertebra's VerSe id as shown (0: none).
    window_changed(float, float)
        New CT display window (width, level) in HU.
    screws_changed()
        The planned screws changed (a new plan, an edit, or the plan was dropped).
    """

    ct_changed = Signal()
    labels_changed = Signal()
    vertebrae_changed = Signal(bool)
    crosshair_changed = Signal(object)
    selection_changed = Signal(int)
    window_changed = Signal(float, float)
    screws_changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.screw_plan: ScrewPlan | None = None
        self.selected_screw = -1
        self.ct: Volume | None = None
        self.frame: DisplayFrame | None = None
        self.label_set: LabelSet | None = None
        self.analysis: Case | None = None
        self.crosshair_lps: np.ndarray | None = None
        self.selected_id: int = 0
        self.window: tuple[float, float] = WINDOW_PRESETS[DEFAULT_WINDOW]
        self.vertebrae: list[VertebraInfo] = []
        """The vertebrae as shown now (after corrections), head to foot."""
        self._source_rows: list[VertebraInfo] = []
        self._id_map: corr.IdMap = {}
        self._corrections: list[corr.Correction] = []
        self._undo: list[corr.IdMap] = []

    # ---- data ---------------------------------------------------------------------------------
    @property
    def labels(self) -> Volume | None:
        return None if self.label_set is None else self.label_set.labels

    @property
    def vertebra_source(self) -> str | None:
        """`SOURCE_ANALYSIS`, `SOURCE_LABELS` or None (nothing to list)."""
        if self.analysis is not None:
            return SOURCE_ANALYSIS
        return SOURCE_LABELS if self.label_set is not None else None

    def set_ct(self, ct: Volume | None, label_set: LabelSet | None = None) -> None:
        """Show a new CT (and optionally its labels); the crosshair goes to the CT's centre."""
        self.ct = ct
        self.frame = None if ct is None else DisplayFrame.from_volume(ct)
        self.label_set = None
        self.analysis = None
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
        """Replace the labels (None clears them); they become the vertebra source, replacing an analysis.

        The labels must be on the CT's grid.
        """
        if label_set is not None:
            if self.ct is None:
                raise ValueError("labels need a CT to sit on")
            if not self.ct.same_grid(label_set.labels):
                raise ValueError("labels are not on the CT grid")
        self.label_set = label_set
        self.analysis = None
        self.labels_changed.emit()
        self._reset_vertebrae()

    def set_analysis(self, result: Case | None, label_set: LabelSet | None = None) -> None:
        """Show an analysis of the current CT (None clears it).

        ``label_set`` holds the analysis' own segmentation (masks and meshes) and replaces the shown
        labels; without one, a loaded label map stays displayed.
        """
        if result is not None and self.ct is None:
            raise ValueError("an analysis needs its CT")
        if label_set is not None and not self.ct.same_grid(label_set.labels):
            raise ValueError("the analysis' labels are not on the CT grid")
        self.analysis = result  # before labels_changed: the slices take the lesion map from it
        if label_set is not None:
            self.label_set = label_set
            self.labels_changed.emit()
        self._reset_vertebrae()

    def vertebra(self, vertebra_id: int) -> VertebraInfo | None:
        """The vertebra shown with this id, or None."""
        return next((v for v in self.vertebrae if v.id == vertebra_id), None)

    # ---- corrections --------------------------------------------------------------------------
    @property
    def corrections(self) -> list[corr.Correction]:
        """The corrections in effect, oldest first (undone ones are gone)."""
        return list(self._corrections)

    @property
    def id_map(self) -> corr.IdMap:
        """Source id → id shown (0: deleted), for every vertebra of the source."""
        return dict(self._id_map)

    def label_display_lut(self) -> np.ndarray:
        """uint8 lookup table (256,) from label-map voxel ids to the ids to draw them as.

        The identity unless the label map is the vertebra source and was corrected.
        """
        lut = np.arange(256, dtype=np.uint8)
        if self.vertebra_source == SOURCE_LABELS:
            for src, cur in self._id_map.items():
                lut[src] = cur
        return lut

    def names_available_for(self, vertebra_id: int) -> list[str]:
        """Registry names that vertebra ``vertebra_id`` could be renamed to (unused ones), head first."""
        used = {v.id for v in self.vertebrae}
        return [v.name for v in registry.VERTEBRAE if v.id not in used or v.id == vertebra_id]

    def rename_vertebra(self, vertebra_id: int, new_name: str) -> str | None:
        """Rename one vertebra; returns a one-line warning when the names are now out of order.

        Raises `CorrectionError` for an unknown or already used name.
        """
        self._apply(*corr.rename(self._id_map, vertebra_id, new_name))
        return corr.order_problem(self._id_map)

    def shift_labels(self, direction: int) -> None:
        """Shift every label one level (`corrections.UP` or `corrections.DOWN`); `CorrectionError` at C1/S1."""
        self._apply(*corr.shift(self._id_map, direction))

    def delete_vertebra(self, vertebra_id: int) -> None:
        """Remove one vertebra (a false detection) from what is shown and exported."""
        self._apply(*corr.delete(self._id_map, vertebra_id))

    def undo_correction(self) -> bool:
        """Take back the last correction; False when there is none."""
        if not self._undo:
            return False
        previous = self._undo.pop()
        restored = [src for src, cur in previous.items() if cur and not self._id_map.get(src)]
        self._corrections.pop()
        self._set_id_map(previous)
        if len(restored) == 1:  # an undone deletion: select what came back, as before the deletion
            self.select_vertebra(previous[restored[0]], move_crosshair=False)
        return True

    def _apply(self, id_map: corr.IdMap, record: corr.Correction) -> None:
        self._undo.append(self._id_map)
        self._corrections.append(record)
        self._set_id_map(id_map)

    def _reset_vertebrae(self) -> None:
        source = self.vertebra_source
        if source == SOURCE_ANALYSIS:
            volumes = {v.id: v.volume_ml for v in self.label_set.vertebrae} if self.label_set is not None else {}
            rows = analysis_infos(self.analysis, volumes)
        elif source == SOURCE_LABELS:
            rows = list(self.label_set.vertebrae)
        else:
            rows = []
        self._source_rows = rows
        self._corrections, self._undo = [], []
        self._set_id_map(corr.identity_map([v.source_id or v.id for v in rows]), new_source=True)

    # ---- planned screws ----------------------------------------------------------------------------
    def set_screw_plan(self, plan: ScrewPlan | None) -> None:
        """Show planned screws (None drops them)."""
        self.screw_plan = plan
        self.selected_screw = 0 if plan is not None and plan.screws else -1
        self.screws_changed.emit()

    def select_screw(self, index: int) -> None:
        if self.screw_plan is not None and 0 <= index < len(self.screw_plan.screws) and index != self.selected_screw:
            self.selected_screw = index
            self.screws_changed.emit()

    def edit_screw(self, index: int, **changes: Any) -> Screw:
        """Change one screw (``entry_lps``, ``target_lps``, ``diameter_mm``, ``length_mm``) and grade it again.

        A new length keeps the entry and the direction; moving the tip or the entry keeps the
        other end and sets the length to the new distance.
        """
        from inference.planning import evaluate, screws_collide

        plan = self.screw_plan
        if plan is None:
            raise ValueError("no planned screws")
        old = plan.screws[index]
        if "length_mm" in changes and "target_lps" not in changes:
            changes["target_lps"] = old.entry_lps + float(changes["length_mm"]) * old.direction
        elif "target_lps" in changes or "entry_lps" in changes:
            entry = np.asarray(changes.get("entry_lps", old.entry_lps), float)
            tip = np.asarray(changes.get("target_lps", old.target_lps), float)
            length = round(float(np.linalg.norm(tip - entry)), 1)
            changes |= {"entry_lps": entry, "target_lps": tip, "length_mm": length}
        new = evaluate(plan.models[old.level], dataclasses.replace(old, notes=["edited"], **changes))
        plan.screws[index] = new
        pair = [s for s in plan.screws if s.level == new.level]
        flag = len(pair) == 2 and screws_collide(*pair)
        for s in pair:
            s.collides = flag
        self.screws_changed.emit()
        return new

    def _drop_screws(self) -> None:
        if self.screw_plan is not None:
            self.set_screw_plan(None)

    def _set_id_map(self, id_map: corr.IdMap, *, new_source: bool = False) -> None:
        self._drop_screws()  # planned on the previous names or masks
        selected_source = next((v.source_id for v in self.vertebrae if v.id == self.selected_id), 0)
        self._id_map = dict(id_map)
        self.vertebrae = [
            row.shown_as(self._id_map[row.source_id]) if self._id_map[row.source_id] != row.id else row
            for row in self._source_rows
            if self._id_map[row.source_id]
        ]
        self.vertebrae_changed.emit(new_source)
        # the selection follows the vertebra through a rename or shift
        selected = 0 if new_source else self._id_map.get(selected_source, 0)
        if selected != self.selected_id:
            self.selected_id = selected
            self.selection_changed.emit(selected)

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
        """Select a vertebra by its id as shown (0 clears); by default the crosshair jumps to its marker
        (`VertebraInfo.marker_lps`: the body centre where known)."""
        info = self.vertebra(vertebra_id)
        vertebra_id = info.id if info is not None else 0
        if vertebra_id != self.selected_id:
            self.selected_id = vertebra_id
            self.selection_changed.emit(vertebra_id)
        if info is not None and move_crosshair:
            self.set_crosshair(info.marker_lps)

    def set_window(self, width: float, level: float) -> None:
        """CT display window in HU (width ≥ 1)."""
        window = (max(float(width), 1.0), float(level))
        if window != self.window:
            self.window = window
            self.window_changed.emit(*window)

    def set_window_preset(self, name: str) -> None:
        """One of `WINDOW_PRESETS` ("Bone", "Soft tissue")."""
        self.set_window(*WINDOW_PRESETS[name])
