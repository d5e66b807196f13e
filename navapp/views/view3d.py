"""3D view: one surface per vertebra (registry colours), the CT's outline box and L/P/S axes.

Everything is drawn in the LPS patient frame in mm, exactly as `inference` delivers meshes and
centres. The scene is changed only from session slots, on the GUI thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyvista as pv
from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget
from pyvistaqt import QtInteractor

from ..state.session import Session

NO_LABELS_TEXT = (
    "No vertebra labels loaded — open a label map (File → Open labels…); "
    "automatic analysis arrives with the models"
)
NO_CT_TEXT = "No CT loaded — open one with File → Open CT file… or Open DICOM folder…"

_BACKGROUND = (0.11, 0.12, 0.14)
_DIMMED_OPACITY = 0.35  # other vertebrae while one is selected
_CROSSHAIR_COLOUR = (1.0, 0.78, 0.0)


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
        self._crosshair_actor: Any = None

        session.ct_changed.connect(self._on_ct_changed)
        session.labels_changed.connect(self._on_labels_changed)
        session.selection_changed.connect(self._on_selection_changed)
        session.crosshair_changed.connect(self._on_crosshair_changed)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(480, 400)

    # ---- public -------------------------------------------------------------------------------
    def reset_camera(self) -> None:
        """Look at the patient from the front-left, superior up; fit the spine (or the CT box)."""
        plotter = self.plotter
        if self.vertebra_actors:
            bounds = np.array([a.GetBounds() for a in self.vertebra_actors.values()])
            lo, hi = bounds[:, 0::2].min(axis=0), bounds[:, 1::2].max(axis=0)
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

    def _on_labels_changed(self) -> None:
        self._clear_vertebrae()
        label_set = self.session.label_set
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
            if label_set.vertebrae:
                # names beside the spine, on the patient's right (screen left in the default view)
                points = np.array([v.center_lps for v in label_set.vertebrae]) + np.array([-45.0, 0.0, 0.0])
                self.plotter.add_point_labels(
                    points,
                    [v.name for v in label_set.vertebrae],
                    font_size=14,
                    text_color="white",
                    shape=None,
                    show_points=False,
                    always_visible=True,
                    name="vertebra_names",
                    render=False,
                )
        self._update_message()
        self.reset_camera()

    def _on_selection_changed(self, vertebra_id: int) -> None:
        for vid, actor in self.vertebra_actors.items():
            actor.prop.opacity = 1.0 if vertebra_id in (0, vid) else _DIMMED_OPACITY
        self.render_scene()

    def _on_crosshair_changed(self, lps: np.ndarray | None) -> None:
        if self._crosshair_actor is None or lps is None:
            return
        self._crosshair_actor.position = tuple(float(v) for v in lps)
        self.render_scene()

    # ---- helpers ------------------------------------------------------------------------------
    def _clear_vertebrae(self) -> None:
        for actor in self.vertebra_actors.values():
            self.plotter.remove_actor(actor, render=False)
        self.plotter.remove_actor("vertebra_names", render=False)
        self.vertebra_actors.clear()

    def _update_message(self) -> None:
        if self.session.ct is None:
            text = NO_CT_TEXT
        elif self.session.label_set is None or not self.session.label_set.vertebrae:
            text = NO_LABELS_TEXT
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
