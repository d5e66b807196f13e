"""3D view: vertebra surfaces and/or center markers (registry colours) with their names, the CT's
outline box and an orientation cube.

Everything is drawn in the LPS patient frame in mm, exactly as `inference` delivers meshes and
centres. A label map gives one surface per vertebra; an analysis (centers only, no masks yet) gives
one sphere per vertebra center; when both are loaded the surfaces stay and the markers name them.
The scene is changed only from session slots, on the GUI thread.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pyvista as pv
from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget
from pyvistaqt import QtInteractor

from inference import registry

from ..state.session import SOURCE_ANALYSIS, Session
from .screw_panel import GRADE_COLOURS

NO_LABELS_TEXT = (
    "No vertebrae yet — press Analyze to find and name them, or open a label map (File → Open labels…)"
)
NO_CT_TEXT = "No CT loaded — open one with File → Open CT file… or Open DICOM folder…"

_BACKGROUND = (0.11, 0.12, 0.14)
_DIMMED_OPACITY = 0.35  # other vertebrae while one is selected
_SEE_THROUGH_OPACITY = 0.45  # vertebrae while lesions or screws (inside the bone) are shown
_DIMMED_OPACITY_LESIONS = 0.15
_LESION_COLOUR = (0.95, 0.1, 0.1)
STANDARD_VIEWS = {  # name → (camera direction from the spine, view-up), LPS
    "Anterior": ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
    "Posterior": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "Left": ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "Right": ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "Superior": ((0.0, 0.0, 1.0), (0.0, -1.0, 0.0)),
    "Inferior": ((0.0, 0.0, -1.0), (0.0, -1.0, 0.0)),
}
_CROSSHAIR_COLOUR = (1.0, 0.78, 0.0)
MARKER_RADIUS_MM = 6.0
"""Sphere drawn at each analysed vertebra center."""
_NAME_OFFSET_MM = np.array([-45.0, 0.0, 0.0])  # names beside the spine, on the patient's right


def surface_to_polydata(mesh: Any) -> pv.PolyData:
    """A core surface mesh (``vertices`` (N, 3) LPS mm, ``faces`` (M, 3) int) as `pyvista.PolyData`."""
    vertices = np.asarray(mesh.vertices, dtype=float)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    cells = np.hstack([np.full((len(faces), 1), 3, dtype=np.int64), faces]).ravel()
    return pv.PolyData(vertices, cells)


class View3D(QWidget):
    """pyvistaqt interactor plus a message line for what is missing (no CT, no labels)."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setObjectName("view3d")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.message = QLabel(NO_CT_TEXT, self)
        self.message.setObjectName("view3d_message")
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setStyleSheet("QLabel { background: #2a2d33; color: #e6e6e6; padding: 6px; }")
        layout.addWidget(self.message)
        # auto_update=False: we render when the scene changes instead of on a timer
        self.plotter = QtInteractor(self, auto_update=False)
        self.plotter.set_background(_BACKGROUND)
        self.plotter.add_orientation_widget(_orientation_cube(), viewport=(0.0, 0.0, 0.16, 0.22))
        layout.addWidget(self.plotter, 1)
        self.vertebra_actors: dict[int, Any] = {}
        """Surface actors by label-map id (as in the file, before corrections)."""
        self.marker_actors: dict[int, Any] = {}
        """Center spheres of an analysis by vertebra id as shown."""
        self._crosshair_actor: Any = None
        self.lesion_actor: Any = None
        """Translucent-red surface of the analysis' lesion suspicion (None without one)."""
        self.lesions_visible = False
        self.isolated = False
        """Only the selected vertebra is drawn."""
        self.screw_actors: list[Any] = []
        self.handle_widgets: dict[str, Any] = {}
        """Draggable spheres at the selected screw's ``entry`` and ``tip``."""
        # a left click on a vertebra selects it (its row, the slices and the crosshair follow)
        self.plotter.enable_mesh_picking(self._on_pick, use_actor=True, show=False, show_message=False,
                                         left_clicking=True)

        session.ct_changed.connect(self._on_ct_changed)
        session.labels_changed.connect(self._on_labels_changed)
        session.vertebrae_changed.connect(self._on_vertebrae_changed)
        session.selection_changed.connect(self._on_selection_changed)
        session.crosshair_changed.connect(self._on_crosshair_changed)
        session.screws_changed.connect(self._on_screws_changed)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(480, 400)

    # ---- public -------------------------------------------------------------------------------
    def reset_camera(self) -> None:
        """Look at the patient from the front-left, superior up; fit the spine (or the CT box)."""
        plotter = self.plotter
        actors = [*self.vertebra_actors.values(), *self.marker_actors.values()]
        if actors:
            bounds = np.array([a.GetBounds() for a in actors])
            lo, hi = bounds[:, 0::2].min(axis=0), bounds[:, 1::2].max(axis=0)
            # room for the names on the patient's right
            lo = np.minimum(lo, lo + _NAME_OFFSET_MM)
        elif self.session.ct is not None:
            lo, hi = self.session.ct.physical_bounds()
        else:
            plotter.reset_camera()
            self.render_scene()
            return
        centre = (np.asarray(lo) + np.asarray(hi)) / 2.0
        # from anterior (−P), a little toward patient Left (+L) and above (+S): the spine's front and side
        view_dir = np.array([0.55, -1.0, 0.25])
        plotter.camera_position = [tuple(centre + 500.0 * view_dir), tuple(centre), (0.0, 0.0, 1.0)]
        plotter.reset_camera(bounds=(lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]))
        plotter.camera.zoom(0.9)  # a margin around the spine
        self.render_scene()

    def render_scene(self) -> None:
        """Draw the scene now (no-op once the plotter is closed)."""
        if not getattr(self.plotter, "_closed", True):
            self.plotter.render()

    def close_plotter(self) -> None:
        """Release the VTK render window (call once, when the window closes)."""
        self.plotter.close()

    # ---- session slots ------------------------------------------------------------------------
    def _on_ct_changed(self) -> None:
        self._clear_vertebrae()
        self.plotter.remove_actor("ct_outline", render=False)
        self._crosshair_actor = None
        self.plotter.remove_actor("crosshair", render=False)
        ct = self.session.ct
        if ct is not None:
            self.plotter.add_mesh(
                _grid_outline(ct),
                color=(0.75, 0.75, 0.75),
                line_width=1,
                name="ct_outline",
                pickable=False,
                render=False,
            )
            self._crosshair_actor = self.plotter.add_mesh(
                pv.Sphere(radius=3.0, center=(0.0, 0.0, 0.0)),
                color=_CROSSHAIR_COLOUR,
                name="crosshair",
                pickable=False,
                render=False,
            )
        self._update_message()
        self.reset_camera()

    def set_view(self, name: str) -> None:
        """Look at the spine from a standard direction: one of `STANDARD_VIEWS` (A, P, L, R, S, I)."""
        direction, up = STANDARD_VIEWS[name]
        actors = [a for a in self.vertebra_actors.values() if a.GetVisibility()] or list(self.marker_actors.values())
        if actors:
            bounds = np.array([a.GetBounds() for a in actors])
            lo, hi = bounds[:, 0::2].min(axis=0), bounds[:, 1::2].max(axis=0)
        elif self.session.ct is not None:
            lo, hi = self.session.ct.physical_bounds()
        else:
            return
        centre = (np.asarray(lo) + np.asarray(hi)) / 2.0
        self.plotter.camera_position = [tuple(centre + 800.0 * np.asarray(direction)), tuple(centre), up]
        self.plotter.reset_camera(bounds=(lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]))
        self.render_scene()

    def set_isolated(self, isolated: bool) -> None:
        """Draw only the selected vertebra (or all again)."""
        self.isolated = bool(isolated)
        self._on_vertebrae_changed(new_vertebrae=False)

    def _on_pick(self, actor: Any) -> None:
        lut = self.session.label_display_lut()
        for label_id, a in self.vertebra_actors.items():
            if a is actor and int(lut[label_id]):
                self.session.select_vertebra(int(lut[label_id]))
                return
        for vid, a in self.marker_actors.items():
            if a is actor:
                self.session.select_vertebra(vid)
                return

    def drag_handle(self, which: str, center_lps) -> None:
        """What dragging the ``entry`` or ``tip`` sphere of the selected screw to ``center_lps`` does."""
        i = self.session.selected_screw
        if self.session.screw_plan is None or i < 0:
            return
        key = "target_lps" if which == "tip" else "entry_lps"
        self.session.edit_screw(i, **{key: np.asarray(center_lps, dtype=float)})

    def _on_screws_changed(self) -> None:
        for actor in self.screw_actors:
            self.plotter.remove_actor(actor, render=False)
        self.screw_actors.clear()
        self.plotter.clear_sphere_widgets()
        self.handle_widgets.clear()
        plan = self.session.screw_plan
        for n, s in enumerate(plan.screws if plan is not None else []):
            axis = s.target_lps - s.entry_lps
            cylinder = pv.Cylinder(center=tuple(s.entry_lps + axis / 2), direction=tuple(axis),
                                   radius=s.diameter_mm / 2, height=float(np.linalg.norm(axis)), resolution=24)
            colour = np.array(GRADE_COLOURS[s.grade]) / 255.0
            self.screw_actors.append(self.plotter.add_mesh(cylinder, color=colour, smooth_shading=True,
                                                           name=f"screw_{n}", pickable=False, render=False))
            if n == self.session.selected_screw:
                for which, point in (("entry", s.entry_lps), ("tip", s.target_lps)):
                    # the edit runs after the widget's own event (it rebuilds the widgets)
                    self.handle_widgets[which] = self.plotter.add_sphere_widget(
                        lambda center, w=which: QTimer.singleShot(0, partial(self.drag_handle, w, np.array(center))),
                        center=tuple(point), radius=2.5, color="yellow", selected_color="orange",
                        test_callback=False)
        self._on_selection_changed(self.session.selected_id)  # see-through vertebrae while screws are shown

    def set_lesions_visible(self, visible: bool) -> None:
        """Show the lesion-suspicion surface inside see-through vertebrae (or hide it)."""
        self.lesions_visible = bool(visible)
        if self.lesion_actor is not None:
            self.lesion_actor.SetVisibility(self.lesions_visible)
        self._on_selection_changed(self.session.selected_id)

    def _on_labels_changed(self) -> None:
        for actor in self.vertebra_actors.values():
            self.plotter.remove_actor(actor, render=False)
        self.vertebra_actors.clear()
        self.plotter.remove_actor("lesions", render=False)
        self.lesion_actor = None
        label_set = self.session.label_set
        if label_set is not None and label_set.lesion_mesh is not None:
            self.lesion_actor = self.plotter.add_mesh(
                surface_to_polydata(label_set.lesion_mesh),
                color=_LESION_COLOUR,
                smooth_shading=True,
                name="lesions",
                pickable=False,
                render=False,
            )
            self.lesion_actor.SetVisibility(self.lesions_visible)
        if label_set is not None:
            for info in label_set.vertebrae:
                mesh = label_set.meshes.get(info.id)
                if mesh is None or len(mesh.faces) == 0:
                    continue
                self.vertebra_actors[info.id] = self.plotter.add_mesh(
                    surface_to_polydata(mesh),
                    color=np.array(info.colour) / 255.0,
                    smooth_shading=True,
                    specular=0.3,
                    name=f"vertebra_{info.name}",
                    render=False,
                )
        # the session follows with vertebrae_changed, which colours, names and frames them

    def _on_vertebrae_changed(self, new_vertebrae: bool = True) -> None:
        session = self.session
        lut = session.label_display_lut()
        selected = session.selected_id
        for label_id, actor in self.vertebra_actors.items():
            shown = int(lut[label_id])
            actor.SetVisibility(bool(shown) and (not self.isolated or selected in (0, shown)))
            if shown:
                actor.prop.color = np.array(registry.by_id(shown).color) / 255.0
        for actor in self.marker_actors.values():
            self.plotter.remove_actor(actor, render=False)
        self.marker_actors.clear()
        self.plotter.remove_actor("vertebra_names", render=False)
        vertebrae = session.vertebrae
        if session.vertebra_source == SOURCE_ANALYSIS:
            for v in vertebrae:
                self.marker_actors[v.id] = self.plotter.add_mesh(
                    pv.Sphere(radius=MARKER_RADIUS_MM, center=tuple(v.center_lps)),
                    color=np.array(v.colour) / 255.0,
                    smooth_shading=True,
                    name=f"marker_{v.name}",
                    render=False,
                )
        if vertebrae:
            self.plotter.add_point_labels(
                np.array([v.center_lps for v in vertebrae]) + _NAME_OFFSET_MM,
                [v.name for v in vertebrae],
                font_size=14,
                text_color="white",
                shape=None,
                show_points=False,
                always_visible=True,
                name="vertebra_names",
                render=False,
            )
        self._update_message()
        self._on_selection_changed(session.selected_id, render=False)
        if new_vertebrae:
            self.reset_camera()
        else:
            self.render_scene()

    def _on_selection_changed(self, vertebra_id: int, render: bool = True) -> None:
        lut = self.session.label_display_lut()
        plan = self.session.screw_plan
        see_through = (self.lesions_visible and self.lesion_actor is not None) or bool(plan and plan.screws)
        for label_id, actor in self.vertebra_actors.items():
            if self.isolated:
                shown = int(lut[label_id])
                actor.SetVisibility(bool(shown) and vertebra_id in (0, shown))
            full = _SEE_THROUGH_OPACITY if see_through else 1.0
            dimmed = _DIMMED_OPACITY_LESIONS if see_through else _DIMMED_OPACITY
            actor.prop.opacity = full if vertebra_id in (0, int(lut[label_id])) else dimmed
        for vid, actor in self.marker_actors.items():
            actor.prop.opacity = 1.0 if vertebra_id in (0, vid) else _DIMMED_OPACITY
        if render:
            self.render_scene()

    def _on_crosshair_changed(self, lps: np.ndarray | None) -> None:
        if self._crosshair_actor is None or lps is None:
            return
        self._crosshair_actor.position = tuple(float(v) for v in lps)
        self.render_scene()

    # ---- helpers ------------------------------------------------------------------------------
    def _clear_vertebrae(self) -> None:
        for actor in [*self.vertebra_actors.values(), *self.marker_actors.values()]:
            self.plotter.remove_actor(actor, render=False)
        self.plotter.remove_actor("vertebra_names", render=False)
        self.vertebra_actors.clear()
        self.marker_actors.clear()

    def _update_message(self) -> None:
        if self.session.ct is None:
            text = NO_CT_TEXT
        elif not self.session.vertebrae:
            text = NO_LABELS_TEXT if self.session.vertebra_source is None else "No vertebra found"
        else:
            text = ""
        self.message.setText(text)
        self.message.setVisible(bool(text))


def _orientation_cube() -> Any:
    """A cube whose faces name the patient directions (L/R, P/A, S/I), as in 3D Slicer."""
    from vtkmodules.vtkRenderingAnnotation import vtkAnnotatedCubeActor

    assembly = pv.create_axes_orientation_box(
        xlabel="L",
        ylabel="P",
        zlabel="S",
        x_face_color=(0.7, 0.3, 0.3),
        y_face_color=(0.3, 0.6, 0.3),
        z_face_color=(0.3, 0.4, 0.75),
        color_box=True,
        opacity=1.0,
        text_scale=0.55,
        edge_color="black",
    )
    parts = assembly.GetParts()
    parts.InitTraversal()
    for _ in range(parts.GetNumberOfItems()):
        part = parts.GetNextProp()
        if isinstance(part, vtkAnnotatedCubeActor):
            letters = {"XPlus": "L", "XMinus": "R", "YPlus": "P", "YMinus": "A", "ZPlus": "S", "ZMinus": "I"}
            for face, letter in letters.items():
                getattr(part, f"Set{face}FaceText")(letter)
                getattr(part, f"Get{face}FaceProperty")().SetColor(1.0, 1.0, 1.0)
    return assembly


def _grid_outline(ct: Any) -> pv.PolyData:
    """The 12 edges of the CT's voxel grid (outer voxel faces) in LPS mm — oblique grids stay oblique."""
    lo = np.full(3, -0.5)
    hi = np.array(ct.size, dtype=float) - 0.5
    corners_ijk = np.array(
        [[x, y, z] for z in (lo[2], hi[2]) for y in (lo[1], hi[1]) for x in (lo[0], hi[0])]
    )
    corners = ct.index_to_lps(corners_ijk)
    edges = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7)]
    lines = np.hstack([[2, a, b] for a, b in edges]).astype(np.int64)
    return pv.PolyData(corners, lines=lines)
