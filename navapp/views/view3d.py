"""3D view: vertebra surfaces and/or center markers (registry colours) with their names, the CT's
outline box and an orientation cube.

Everything is drawn in the LPS patient frame in mm, exactly as `inference` delivers meshes and
centres. A label map gives one surface per vertebra; an analysis (centers only, no masks yet) gives
one sphere per vertebra center; when both are loaded the surfaces stay and the markers name them.
The scene is changed only from session slots, on the GUI thread.
"""

from __future__ import annotations

import logging
from functools import cache, partial
from typing import Any

import numpy as np
import pyvista as pv
from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget
from pyvistaqt import QtInteractor
from vtkmodules.vtkRenderingCore import vtkPolyDataMapper

from inference import registry

from ..display.surfaces import surface_polydata
from ..state.session import SOURCE_ANALYSIS, Session
from .screw_panel import GRADE_COLOURS

LOG = logging.getLogger("spinenav.gui")

def nothing_found_text(session) -> str:
    """What the app says when an analysis found no vertebra: the analysis' own reason and what to do."""
    notes = [] if session.analysis is None else [q for q in session.analysis.qa if q.startswith("no vertebra found")]
    why = notes[0] if notes else "no vertebra found"
    return (f"Analysis finished: {why[0].upper()}{why[1:].rstrip('.')} — check that the series shows the spine, "
            "or open a label map")


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
SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "swiftshader", "gdi generic", "basic render")
"""OpenGL renderer names of CPU rasterizers (Mesa, Windows' fallback): see `View3D.adapt_to_renderer`."""
SURFACE_DELAY_MS = 20
"""New surfaces are added this long after the labels change, once the rest has been painted, and
shown as long after that."""
_DONE, _BUILD, _REVEAL = "done", "build", "reveal"
_CROSSHAIR_COLOUR = (1.0, 0.78, 0.0)
MARKER_RADIUS_MM = 6.0
"""Sphere drawn at each analysed vertebra center."""
_NAME_OFFSET_MM = np.array([-45.0, 0.0, 0.0])  # names beside the spine, on the patient's right


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
        # auto_update=False: we render when the scene changes instead of on a timer
        self.plotter = QtInteractor(self, auto_update=False)
        self.plotter.set_background(_BACKGROUND)
        self.plotter.add_orientation_widget(_orientation_cube(), viewport=(0.0, 0.0, 0.2, 0.3))
        layout.addWidget(self.plotter, 1)
        # the message floats over the top of the scene instead of taking layout space: showing or
        # hiding it must not resize the render window (each resize is one more full render)
        self.message.raise_()
        self._vertebra_actors: dict[int, Any] = {}
        self._scene_stage = _DONE
        self._marker_actors: dict[int, Any] = {}
        self._crosshair_actor: Any = None
        self._lesion_actor: Any = None
        self.lesions_visible = False
        self.isolated = False
        """Only the selected vertebra is drawn."""
        self.software_rendering: bool | None = None
        """The OpenGL renderer rasterizes on the CPU (None until known: see `adapt_to_renderer`)."""
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

    @property
    def _plotter_open(self) -> bool:
        """False once the plotter is closed (or not yet set up): nothing may touch its window then."""
        return not getattr(self.plotter, "_closed", True)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._place_message()

    def _place_message(self) -> None:
        width = self.width()
        self.message.setGeometry(0, 0, width, self.message.heightForWidth(width))

    @property
    def vertebra_actors(self) -> dict[int, Any]:
        """Surface actors by label-map id (as in the file, before corrections); builds pending ones."""
        self.build_surfaces()
        return self._vertebra_actors

    @property
    def marker_actors(self) -> dict[int, Any]:
        """Center spheres of an analysis by vertebra id as shown; builds pending ones."""
        self.build_surfaces()
        return self._marker_actors

    @property
    def lesion_actor(self) -> Any:
        """Translucent-red surface of the analysis' lesion suspicion (None without one)."""
        self.build_surfaces()
        return self._lesion_actor

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(480, 400)

    # ---- public -------------------------------------------------------------------------------
    def reset_camera(self) -> None:
        """Look at the patient from the front-left, superior up; fit the spine (or the CT box)."""
        plotter = self.plotter
        actors = [*self._vertebra_actors.values(), *self._marker_actors.values()]
        if actors:
            bounds = np.array([a.GetBounds() for a in actors])
            lo, hi = bounds[:, 0::2].min(axis=0), bounds[:, 1::2].max(axis=0)
            # room for the names on the patient's right
            lo = np.minimum(lo, lo + _NAME_OFFSET_MM)
        elif self.session.ct is not None:
            lo, hi = self.session.ct.physical_bounds()
        else:
            plotter.renderer.reset_camera(render=False)
            self.render_scene()
            return
        centre = (np.asarray(lo) + np.asarray(hi)) / 2.0
        # from anterior (−P), a little toward patient Left (+L) and above (+S): the spine's front and side
        view_dir = np.array([0.55, -1.0, 0.45])
        plotter.camera_position = [tuple(centre + 500.0 * view_dir), tuple(centre), (0.0, 0.0, 1.0)]
        plotter.renderer.reset_camera(render=False, bounds=(lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]))
        plotter.camera.zoom(1.1)  # the fit is to the bounding sphere: a tall, thin spine can come closer
        self.render_scene()

    def render_scene(self) -> None:
        """Redraw at the next pass of the event loop: Qt merges the requests of one pass into one
        paint, so a slot that changes many actors costs one render, after it returns (no-op once
        the plotter is closed)."""
        if self._plotter_open:
            QWidget.update(self.plotter)  # the widget's repaint, not pyvista's Plotter.update

    def adapt_to_renderer(self) -> None:
        """Once the window is on screen: on a CPU rasterizer (Mesa llvmpipe in a VM or under Xvfb,
        a remote desktop without GPU), trade 4× multisampling for FXAA. Multisampling quadruples
        the fragments to shade, and a spine of ~200 000 triangles then takes ~0.2 s per frame on
        two cores instead of ~0.04 s; the frame rate, not the edge quality, decides whether the
        view can be turned. A GPU keeps multisampling."""
        if self.software_rendering is not None or not self.plotter.isVisible():
            return
        caps = self.plotter.ren_win.ReportCapabilities() or ""
        renderer = next((line for line in caps.splitlines() if "renderer string" in line.lower()), "")
        self.software_rendering = any(name in renderer.lower() for name in SOFTWARE_RENDERERS)
        if self.software_rendering:
            LOG.info("3D view: %s is a software renderer; FXAA instead of multisampling", renderer.split(":")[-1])
            self.plotter.ren_win.SetMultiSamples(0)
            self.plotter.enable_anti_aliasing("fxaa")

    def render_now(self) -> None:
        """Draw the scene now, surfaces included (for a screenshot; no-op once the plotter is closed)."""
        self.build_surfaces()
        if self._plotter_open:
            self.plotter.render()

    def close_plotter(self) -> None:
        """Release the VTK render window (call once, when the window closes)."""
        self.plotter.close()
        # pyvistaqt keeps Python wrappers of its Qt GL context and that context's surface after close.
        # Once Qt deletes them, shiboken's map from C++ address to wrapper still holds those wrappers,
        # and a new Qt object at the same address comes back as the dead one (a File menu returned as
        # a QSurface, seen once in CI). Drop them while they are still valid.
        forget = getattr(self.plotter, "_forget_context", None)
        if callable(forget):
            forget()

    # ---- session slots ------------------------------------------------------------------------
    def _on_ct_changed(self) -> None:
        self.adapt_to_renderer()
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
        self.build_surfaces()
        direction, up = STANDARD_VIEWS[name]
        actors = [a for a in self._vertebra_actors.values() if a.GetVisibility()] or list(self._marker_actors.values())
        if actors:
            bounds = np.array([a.GetBounds() for a in actors])
            lo, hi = bounds[:, 0::2].min(axis=0), bounds[:, 1::2].max(axis=0)
        elif self.session.ct is not None:
            lo, hi = self.session.ct.physical_bounds()
        else:
            return
        centre = (np.asarray(lo) + np.asarray(hi)) / 2.0
        self.plotter.camera_position = [tuple(centre + 800.0 * np.asarray(direction)), tuple(centre), up]
        self.plotter.renderer.reset_camera(render=False, bounds=(lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]))
        self.render_scene()

    def set_isolated(self, isolated: bool) -> None:
        """Draw only the selected vertebra (or all again)."""
        self.build_surfaces()
        self.isolated = bool(isolated)
        self._on_vertebrae_changed(new_vertebrae=False)

    def _on_pick(self, actor: Any) -> None:
        lut = self.session.label_display_lut()
        for label_id, a in self._vertebra_actors.items():
            if a is actor and int(lut[label_id]):
                self.session.select_vertebra(int(lut[label_id]))
                return
        for vid, a in self._marker_actors.items():
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
        self.build_surfaces()
        self.lesions_visible = bool(visible)
        if self._lesion_actor is not None:
            self._lesion_actor.SetVisibility(self.lesions_visible)
        self._on_selection_changed(self.session.selected_id)

    def _on_labels_changed(self) -> None:
        for actor in self._vertebra_actors.values():
            self.plotter.remove_actor(actor, render=False)
        self._vertebra_actors.clear()
        self.plotter.remove_actor("lesions", render=False)
        self._lesion_actor = None
        # The new scene comes in two later passes of the event loop, each with its own paint: first
        # the actors (hidden) with the markers, names and camera, then the surfaces shown, whose
        # first frame uploads every triangle (~50 ms for a spine with a software renderer). Done
        # here, all of it would be painted in the same pass as the table and the slices that follow
        # this signal, one long freeze. Whoever reads the actors before then gets them built.
        if self.session.label_set is not None:
            if self._scene_stage == _DONE:
                # a real delay: a zero-delay call would still run in this pass, before the paint
                QTimer.singleShot(SURFACE_DELAY_MS, self._advance_scene)
            self._scene_stage = _BUILD

    def build_surfaces(self) -> None:
        """Finish the scene of new labels now if that is still to do (see `_on_labels_changed`)."""
        while self._scene_stage != _DONE and self._plotter_open:
            self._advance_scene(reschedule=False)

    def _advance_scene(self, reschedule: bool = True) -> None:
        if not self._plotter_open:
            return
        if self._scene_stage == _BUILD:
            self._scene_stage = _REVEAL
            self._build_scene()
            for actor in [*self._vertebra_actors.values(), self._lesion_actor]:
                if actor is not None:
                    actor.VisibilityOff()
            if reschedule:
                QTimer.singleShot(SURFACE_DELAY_MS, self._advance_scene)
        elif self._scene_stage == _REVEAL:
            self._scene_stage = _DONE
            self._style_surfaces()
            if self._lesion_actor is not None:
                self._lesion_actor.SetVisibility(self.lesions_visible)
            self._on_selection_changed(self.session.selected_id)

    def _build_scene(self) -> None:
        label_set = self.session.label_set
        if label_set is None:
            self._on_vertebrae_changed(new_vertebrae=True)
            return
        if label_set.lesion_mesh is not None:
            self._lesion_actor = self._add_surface(
                label_set.lesion_surface if label_set.lesion_surface is not None
                else surface_polydata(label_set.lesion_mesh),
                _LESION_COLOUR,
                name="lesions",
                pickable=False,
            )  # shown or not when the scene is revealed (`_advance_scene`)
        for info in label_set.vertebrae:
            surface = label_set.surfaces.get(info.id)
            if surface is None:
                mesh = label_set.meshes.get(info.id)
                if mesh is None or len(mesh.faces) == 0:
                    continue
                surface = surface_polydata(mesh)
            self._vertebra_actors[info.id] = self._add_surface(
                surface, np.array(info.colour) / 255.0, name=f"vertebra_{info.name}", specular=0.3)
        self._on_vertebrae_changed(new_vertebrae=True)  # markers, names, colours, selection, camera

    def _style_surfaces(self) -> None:
        """Visibility and colour of each surface under its current name (after corrections)."""
        lut = self.session.label_display_lut()
        selected = self.session.selected_id
        for label_id, actor in self._vertebra_actors.items():
            shown = int(lut[label_id])
            actor.SetVisibility(bool(shown) and (not self.isolated or selected in (0, shown)))
            if shown:
                actor.prop.color = np.array(registry.by_id(shown).color) / 255.0

    def _on_vertebrae_changed(self, new_vertebrae: bool = True) -> None:
        if self._scene_stage == _BUILD:
            return  # new labels: _build_scene draws everything once their surfaces are in
        session = self.session
        self._style_surfaces()
        for actor in self._marker_actors.values():
            self.plotter.remove_actor(actor, render=False)
        self._marker_actors.clear()
        self.plotter.remove_actor("vertebra_names", render=False)
        vertebrae = session.vertebrae
        if session.vertebra_source == SOURCE_ANALYSIS:
            for v in vertebrae:
                marker = self._add_surface(_marker_sphere(), np.array(v.colour) / 255.0, name=f"marker_{v.name}")
                marker.position = tuple(float(c) for c in v.center_lps)
                self._marker_actors[v.id] = marker
        if vertebrae:
            self.plotter.add_point_labels(
                name_positions(np.array([v.center_lps for v in vertebrae])),
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
        see_through = (self.lesions_visible and self._lesion_actor is not None) or bool(plan and plan.screws)
        for label_id, actor in self._vertebra_actors.items():
            if self.isolated:
                shown = int(lut[label_id])
                actor.SetVisibility(bool(shown) and vertebra_id in (0, shown))
            full = _SEE_THROUGH_OPACITY if see_through else 1.0
            dimmed = _DIMMED_OPACITY_LESIONS if see_through else _DIMMED_OPACITY
            actor.prop.opacity = full if vertebra_id in (0, int(lut[label_id])) else dimmed
        for vid, actor in self._marker_actors.items():
            actor.prop.opacity = 1.0 if vertebra_id in (0, vid) else _DIMMED_OPACITY
        if render:
            self.render_scene()

    def _on_crosshair_changed(self, lps: np.ndarray | None) -> None:
        if self._crosshair_actor is None or lps is None:
            return
        self._crosshair_actor.position = tuple(float(v) for v in lps)
        self.render_scene()

    # ---- helpers ------------------------------------------------------------------------------
    def _add_surface(self, surface: pv.PolyData, colour: Any, *, name: str, specular: float = 0.0,
                     pickable: bool = True) -> pv.Actor:
        """An actor for a surface that carries its normals, added without a render.

        A bare mapper and actor instead of ``add_mesh``: no normals recomputed, no scalar or colour
        map machinery, a fraction of a millisecond per vertebra on the GUI thread.
        """
        mapper = vtkPolyDataMapper()
        mapper.SetInputData(surface)
        mapper.ScalarVisibilityOff()
        actor = pv.Actor(mapper=mapper)
        actor.prop.color = colour
        actor.prop.interpolation = "gouraud"
        actor.prop.specular = specular
        actor.SetPickable(pickable)
        self.plotter.add_actor(actor, name=name, reset_camera=False, render=False)
        return actor

    def _clear_vertebrae(self) -> None:
        for actor in [*self._vertebra_actors.values(), *self._marker_actors.values()]:
            self.plotter.remove_actor(actor, render=False)
        self.plotter.remove_actor("vertebra_names", render=False)
        self._vertebra_actors.clear()
        self._marker_actors.clear()

    def _update_message(self) -> None:
        if self.session.ct is None:
            text = NO_CT_TEXT
        elif not self.session.vertebrae:
            text = NO_LABELS_TEXT if self.session.vertebra_source is None else (
                nothing_found_text(self.session) if self.session.analysis is not None else "No vertebra in the labels")
        else:
            text = ""
        self.message.setText(text)
        self._place_message()
        self.message.setVisible(bool(text))


@cache
def _marker_sphere() -> pv.PolyData:
    """The center marker at the origin (one polydata shared by every marker actor)."""
    return pv.Sphere(radius=MARKER_RADIUS_MM, center=(0.0, 0.0, 0.0)).compute_normals()


NAME_GAP_MM = 14.0
"""Least head-to-foot distance between two names in the 3D view (a partial vertebra's center can lie a few
mm from its neighbour's)."""


def name_positions(centers_lps: np.ndarray) -> np.ndarray:
    """Where the vertebra names go in 3D: beside each center (`_NAME_OFFSET_MM`), moved apart head to foot so
    that no two are closer than `NAME_GAP_MM` (the lower of two names moves down)."""
    pos = np.asarray(centers_lps, float).reshape(-1, 3) + _NAME_OFFSET_MM
    order = np.argsort(-pos[:, 2])  # head first
    for a, b in zip(order, order[1:], strict=False):
        pos[b, 2] = min(pos[b, 2], pos[a, 2] - NAME_GAP_MM)
    return pos


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
