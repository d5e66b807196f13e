"""2D slice views (axial, coronal, sagittal) of the CT with the vertebra label overlay.

Each view shows one plane of the session's CT in radiological orientation (see
`navapp.display.orientation`), keeps the true aspect ratio from the voxel spacing, and labels its
edges with patient directions. The label overlay is drawn with the user's corrections; analysed
vertebra centers near the shown slice are drawn as named points. Mouse: wheel (or Up/Down,
PageUp/PageDown) scrolls slices, left click or drag moves the crosshair (and selects the vertebra
under it or the nearest analysed center), right drag changes the window (horizontal: width,
vertical: level).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QWheelEvent,
)
from PySide6.QtWidgets import QSizePolicy, QWidget

from inference import registry

from ..display import PLANES, compose_overlay, label_colour_table, window_to_uint8
from ..display.imaging import add_lesion_heat
from ..state.session import SOURCE_ANALYSIS, Session
from .screw_panel import GRADE_COLOURS

PLANE_COLOURS = {
    "axial": QColor(225, 80, 80),
    "sagittal": QColor(235, 205, 70),
    "coronal": QColor(110, 200, 100),
}
"""Title colours per plane, as in 3D Slicer (red axial, yellow sagittal, green coronal)."""

_BACKGROUND = QColor(0, 0, 0)
_TEXT = QColor(230, 230, 230)
_LETTER = QColor(255, 215, 120)
_CROSSHAIR = QColor(255, 200, 0, 190)
_LETTER_MARGIN = 20  # px kept free around the image for the orientation letters
CENTER_RANGE_MM = 20.0
"""Vertebra centers this close to the shown slice are drawn (fading with distance)."""
_CENTER_RADIUS_PX = 5.0


class SliceView(QWidget):
    """One plane of the CT, drawn with QPainter from a numpy slice (no VTK).

    Parameters
    ----------
    session : Session
    plane : str
        ``"axial"``, ``"coronal"`` or ``"sagittal"``.
    """

    def __init__(self, session: Session, plane: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.plane = PLANES[plane]
        self.setObjectName(f"slice_view_{plane}")
        self.setMinimumSize(160, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self._colours = label_colour_table()
        self._ct_display: np.ndarray | None = None  # [s, p, l] view of the CT array
        self._label_display: np.ndarray | None = None
        self._lesion_display: np.ndarray | None = None  # the analysis' lesion map, [s, p, l]
        self.lesions_visible = False
        self._label_lut = np.arange(256, dtype=np.uint8)  # label-map id → id drawn (corrections)
        self._crosshair: np.ndarray | None = None  # display indices (l, p, s), continuous
        self._index = 0
        self._rgb: np.ndarray | None = None  # composed slice, (rows, cols, 3) uint8
        self._image: QImage | None = None
        self._image_key: tuple | None = None
        self._annotations_visible = True
        self._drag_start: tuple[QPointF, tuple[float, float]] | None = None

        session.ct_changed.connect(self._on_ct_changed)
        session.labels_changed.connect(self._on_labels_changed)
        session.vertebrae_changed.connect(self._on_vertebrae_changed)
        session.crosshair_changed.connect(self._on_crosshair_changed)
        session.window_changed.connect(self._on_window_changed)
        session.selection_changed.connect(self._on_selection_changed)
        session.screws_changed.connect(self.update)
        self._on_ct_changed()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(480, 400)

    # ---- public, for menus and tests ----------------------------------------------------------
    @property
    def slice_index(self) -> int:
        """Index of the shown slice along the plane's normal (0 … slice_count - 1)."""
        return self._index

    def slice_rgb(self) -> np.ndarray | None:
        """The slice as drawn, before scaling: (rows, cols, 3) uint8, screen orientation."""
        self._ensure_image()
        return self._rgb

    def set_annotations_visible(self, visible: bool) -> None:
        """Show or hide text, orientation letters and crosshair (e.g. for a clean export)."""
        self._annotations_visible = bool(visible)
        self.update()

    def image_rect(self) -> QRectF:
        """Where the slice image is drawn in widget coordinates (aspect ratio from spacing)."""
        frame = self.session.frame
        if frame is None:
            return QRectF()
        rows, cols = frame.plane_shape(self.plane)
        pixel_h, pixel_w = frame.pixel_size_mm(self.plane)
        height_mm, width_mm = rows * pixel_h, cols * pixel_w
        avail = QRectF(self.rect()).adjusted(_LETTER_MARGIN, _LETTER_MARGIN, -_LETTER_MARGIN, -_LETTER_MARGIN)
        if avail.width() <= 1 or avail.height() <= 1:
            return QRectF()
        scale = min(avail.width() / width_mm, avail.height() / height_mm)
        w, h = width_mm * scale, height_mm * scale
        return QRectF(avail.center().x() - w / 2, avail.center().y() - h / 2, w, h)

    def widget_point(self, lps: np.ndarray) -> QPointF | None:
        """Widget position of an LPS point (mm) projected onto this plane."""
        frame = self.session.frame
        rect = self.image_rect()
        if frame is None or rect.isEmpty():
            return None
        row, col = frame.to_screen(frame.lps_to_display(lps), self.plane)
        rows, cols = frame.plane_shape(self.plane)
        return QPointF(
            rect.left() + (col + 0.5) * rect.width() / cols, rect.top() + (row + 0.5) * rect.height() / rows
        )

    # ---- session slots ------------------------------------------------------------------------
    def _on_ct_changed(self) -> None:
        frame, ct = self.session.frame, self.session.ct
        self._ct_display = None if ct is None or frame is None else frame.to_display(ct.array)
        self._label_display = None
        self._crosshair = None
        self._index = 0
        self._invalidate()

    def _on_labels_changed(self) -> None:
        labels, frame = self.session.labels, self.session.frame
        self._label_display = None if labels is None or frame is None else frame.to_display(labels.array)
        seg = getattr(self.session.analysis, "segmentation", None)
        lesions = None if seg is None or labels is None else seg.lesions
        self._lesion_display = (None if lesions is None or frame is None or not lesions.same_grid(labels)
                                else frame.to_display(lesions.array))
        self._invalidate()

    def set_lesions_visible(self, visible: bool) -> None:
        """Draw the analysis' lesion suspicion as a red heat over the slice (or not)."""
        self.lesions_visible = bool(visible)
        self._invalidate()

    def _on_vertebrae_changed(self, *_: object) -> None:
        self._label_lut = self.session.label_display_lut()
        self._invalidate()

    def _on_crosshair_changed(self, lps: np.ndarray | None) -> None:
        frame = self.session.frame
        if lps is None or frame is None:
            self._crosshair = None
        else:
            self._crosshair = frame.lps_to_display(lps)
            index = int(
                np.clip(np.rint(self._crosshair[self.plane.normal]), 0, frame.slice_count(self.plane) - 1)
            )
            if index != self._index:
                self._index = index
                self._image_key = None
        self.update()

    def _on_window_changed(self, width: float, level: float) -> None:
        self._invalidate()

    def _on_selection_changed(self, vertebra_id: int) -> None:
        self._invalidate()

    def _invalidate(self) -> None:
        self._image_key = None
        self.update()

    # ---- image --------------------------------------------------------------------------------
    def _ensure_image(self) -> None:
        frame = self.session.frame
        if self._ct_display is None or frame is None:
            self._rgb, self._image = None, None
            return
        key = (
            self._index,
            self.session.window,
            self.session.selected_id,
            id(self._label_display),
            self.lesions_visible and self._lesion_display is not None,
        )
        if key == self._image_key and self._image is not None:
            return
        hu = frame.extract(self._ct_display, self.plane, self._index)
        grey = window_to_uint8(hu, *self.session.window)
        labels = (
            None
            if self._label_display is None
            else self._label_lut[frame.extract(self._label_display, self.plane, self._index)]
        )
        rgb = compose_overlay(grey, labels, self._colours, selected_id=self.session.selected_id)
        if self.lesions_visible and self._lesion_display is not None:
            from inference.segment import LESION_FLAG  # imported with the models already (preload)

            rgb = add_lesion_heat(rgb, frame.extract(self._lesion_display, self.plane, self._index), LESION_FLAG)
        rows, cols = rgb.shape[:2]
        self._rgb = rgb
        self._image = QImage(rgb.data, cols, rows, 3 * cols, QImage.Format.Format_RGB888).copy()
        self._image_key = key

    # ---- painting -----------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        try:
            painter.fillRect(self.rect(), _BACKGROUND)
            self._ensure_image()
            if self._image is None:
                self._paint_empty(painter)
                return
            rect = self.image_rect()
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            painter.drawImage(rect, self._image)
            if self._annotations_visible:
                painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
                self._paint_centers(painter)
                self._paint_screws(painter)
                self._paint_crosshair(painter, rect)
                self._paint_text(painter)
        finally:
            painter.end()

    def _paint_empty(self, painter: QPainter) -> None:
        painter.setPen(QColor(150, 150, 150))
        painter.drawText(
            self.rect(),
            Qt.AlignmentFlag.AlignCenter,
            f"{self.plane.name.capitalize()}\nNo CT loaded — File → Open CT file…",
        )

    def _paint_crosshair(self, painter: QPainter, rect: QRectF) -> None:
        if self.session.crosshair_lps is None:
            return
        point = self.widget_point(self.session.crosshair_lps)
        if point is None:
            return
        gap = 8.0
        painter.setPen(QPen(_CROSSHAIR, 1.0))
        x, y = point.x(), point.y()
        painter.drawLine(QPointF(rect.left(), y), QPointF(x - gap, y))
        painter.drawLine(QPointF(x + gap, y), QPointF(rect.right(), y))
        painter.drawLine(QPointF(x, rect.top()), QPointF(x, y - gap))
        painter.drawLine(QPointF(x, y + gap), QPointF(x, rect.bottom()))

    def _paint_centers(self, painter: QPainter) -> None:
        """Analysed vertebrae whose marker (`VertebraInfo.marker_lps`, the body centre where known) lies
        within `CENTER_RANGE_MM` of this slice, with their names."""
        frame, session = self.session.frame, self.session
        if frame is None or session.vertebra_source != SOURCE_ANALYSIS:
            return
        normal = self.plane.normal
        font = QFont(self.font())
        font.setBold(True)
        painter.setFont(font)
        for v in session.vertebrae:
            distance = abs(frame.lps_to_display(v.marker_lps)[normal] - self._index) * frame.spacing[normal]
            if distance > CENTER_RANGE_MM:
                continue
            point = self.widget_point(v.marker_lps)
            if point is None:
                continue
            alpha = int(255 * (1.0 - 0.7 * max(distance - 3.0, 0.0) / (CENTER_RANGE_MM - 3.0)))
            selected = v.id == session.selected_id
            radius = _CENTER_RADIUS_PX * (1.5 if selected else 1.0)
            painter.setPen(QPen(QColor(0, 0, 0, alpha), 1.5))
            painter.setBrush(QColor(*v.colour, alpha))
            painter.drawEllipse(point, radius, radius)
            if selected:
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.setPen(QPen(QColor(255, 255, 255, alpha), 1.5))
                painter.drawEllipse(point, radius + 3, radius + 3)
            text_at = QPointF(point.x() + radius + 4, point.y() + 4)
            painter.setPen(QColor(0, 0, 0, alpha))  # a shadow keeps the name readable on bone
            painter.drawText(text_at + QPointF(1, 1), v.name)
            painter.setPen(QColor(255, 255, 255, alpha))  # the dot carries the colour; dark shades read badly
            painter.drawText(text_at, v.name)
        painter.setBrush(Qt.BrushStyle.NoBrush)

    def screw_segments(self) -> list[tuple[int, QPointF, QPointF]]:
        """(screw index, start, end) in widget pixels of the screw parts that cross this slice.

        A part crosses when its axis passes within the screw's radius (plus half a voxel) of the
        slice plane; the whole screw is shown when it lies in the plane.
        """
        frame, plan = self.session.frame, self.session.screw_plan
        if frame is None or plan is None:
            return []
        normal = self.plane.normal
        out = []
        for n, s in enumerate(plan.screws):
            t = np.linspace(0.0, 1.0, 64)
            pts = s.entry_lps + t[:, None] * (s.target_lps - s.entry_lps)
            along = np.array([frame.lps_to_display(p)[normal] for p in pts])
            dist = np.abs(along - self._index) * frame.spacing[normal]
            near = np.nonzero(dist <= s.diameter_mm / 2 + frame.spacing[normal] / 2)[0]
            if len(near) < 2:
                continue
            a, b = self.widget_point(pts[near[0]]), self.widget_point(pts[near[-1]])
            if a is not None and b is not None:
                out.append((n, a, b))
        return out

    def _paint_screws(self, painter: QPainter) -> None:
        plan = self.session.screw_plan
        rect = self.image_rect()
        frame = self.session.frame
        if plan is None or frame is None or rect.isEmpty():
            return
        rows, cols = frame.plane_shape(self.plane)
        px_per_mm = rect.width() / (cols * frame.spacing[self.plane.col_axis]) if cols else 1.0
        for n, a, b in self.screw_segments():
            s = plan.screws[n]
            width = max(2.0, s.diameter_mm * px_per_mm)
            pen = QPen(QColor(*GRADE_COLOURS[s.grade], 200), width)
            pen.setCapStyle(Qt.PenCapStyle.FlatCap)
            painter.setPen(pen)
            painter.drawLine(a, b)
            if n == self.session.selected_screw:
                painter.setPen(QPen(QColor(255, 230, 0), 1.5))
                painter.drawLine(a, b)

    def _paint_text(self, painter: QPainter) -> None:
        frame = self.session.frame
        if frame is None:
            return
        r = QRectF(self.rect()).adjusted(4, 2, -4, -2)
        font = QFont(self.font())
        font.setBold(True)
        font.setPointSizeF(max(font.pointSizeF(), 9.0) + 2)
        painter.setFont(font)
        painter.setPen(_LETTER)
        letters = self.plane.edge_letters()
        align = Qt.AlignmentFlag
        painter.drawText(r, align.AlignHCenter | align.AlignTop, letters["top"])
        painter.drawText(r, align.AlignHCenter | align.AlignBottom, letters["bottom"])
        painter.drawText(r, align.AlignLeft | align.AlignVCenter, letters["left"])
        painter.drawText(r, align.AlignRight | align.AlignVCenter, letters["right"])

        font.setBold(False)
        font.setPointSizeF(font.pointSizeF() - 2)
        painter.setFont(font)
        painter.setPen(PLANE_COLOURS[self.plane.name])
        painter.drawText(r, align.AlignLeft | align.AlignTop, self.plane.name.capitalize())
        painter.setPen(_TEXT)
        count = frame.slice_count(self.plane)
        painter.drawText(r, align.AlignRight | align.AlignTop, f"{self._index + 1} / {count}")
        width, level = self.session.window
        painter.drawText(r, align.AlignLeft | align.AlignBottom, f"W {width:g}  L {level:g}")
        probe = self._probe_text()
        if probe:
            painter.drawText(r, align.AlignRight | align.AlignBottom, probe)

    def _probe_text(self) -> str:
        """HU (and vertebra) under the crosshair."""
        if self._crosshair is None or self._ct_display is None or self.session.frame is None:
            return ""
        l, p, s = (int(v) for v in np.rint(self.session.frame.clamp(self._crosshair)))
        text = f"{float(self._ct_display[s, p, l]):.0f} HU"
        if self._label_display is not None:
            vid = int(self._label_lut[self._label_display[s, p, l]])
            if vid in registry.BY_ID:
                text = f"{registry.name_of(vid)}  {text}"
        return text

    # ---- interaction --------------------------------------------------------------------------
    def scroll(self, steps: int) -> None:
        """Move the crosshair ``steps`` slices along the plane's normal (positive: toward L, P or S)."""
        frame, lps = self.session.frame, self.session.crosshair_lps
        if frame is None or lps is None or steps == 0:
            return
        display = frame.lps_to_display(lps)
        display[self.plane.normal] = np.rint(display[self.plane.normal]) + steps
        self.session.set_crosshair(frame.display_to_lps(frame.clamp(display)))

    def _display_at(self, pos: QPointF) -> np.ndarray | None:
        """Display indices (l, p, s) under a widget position, on the current slice; None outside the image."""
        frame = self.session.frame
        rect = self.image_rect()
        if frame is None or rect.isEmpty() or not rect.contains(pos):
            return None
        rows, cols = frame.plane_shape(self.plane)
        col = (pos.x() - rect.left()) / rect.width() * cols - 0.5
        row = (pos.y() - rect.top()) / rect.height() * rows - 0.5
        return frame.clamp(frame.from_screen(row, col, self.plane, self._index))

    def _move_crosshair_to(self, pos: QPointF) -> None:
        frame = self.session.frame
        display = self._display_at(pos)
        if display is None or frame is None:
            return
        self.session.set_crosshair(frame.display_to_lps(display))
        if self._label_display is not None:
            l, p, s = (int(v) for v in np.rint(display))
            vid = int(self._label_lut[self._label_display[s, p, l]])
            if vid and self.session.vertebra(vid) is not None:
                self.session.select_vertebra(vid, move_crosshair=False)
                return
        nearest = self._nearest_center(frame.display_to_lps(display))
        if nearest:
            self.session.select_vertebra(nearest, move_crosshair=False)

    def _nearest_center(self, lps: np.ndarray) -> int:
        """Id of the analysed vertebra whose marker is within `CENTER_RANGE_MM` of ``lps``, else 0."""
        if self.session.vertebra_source != SOURCE_ANALYSIS or not self.session.vertebrae:
            return 0
        distances = [float(np.linalg.norm(v.marker_lps - lps)) for v in self.session.vertebrae]
        n = int(np.argmin(distances))
        return self.session.vertebrae[n].id if distances[n] <= CENTER_RANGE_MM else 0

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt override
        delta = event.angleDelta().y()
        if delta:
            self.scroll(int(np.sign(delta)) * max(1, abs(delta) // 120))
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        steps = {Qt.Key.Key_Up: 1, Qt.Key.Key_Down: -1, Qt.Key.Key_PageUp: 10, Qt.Key.Key_PageDown: -10}
        if event.key() in steps:
            self.scroll(steps[event.key()])
            event.accept()
        else:
            super().keyPressEvent(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if event.button() == Qt.MouseButton.LeftButton:
            self._move_crosshair_to(event.position())
        elif event.button() == Qt.MouseButton.RightButton:
            self._drag_start = (event.position(), self.session.window)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._move_crosshair_to(event.position())
        elif event.buttons() & Qt.MouseButton.RightButton and self._drag_start is not None:
            start, (width, level) = self._drag_start
            dx, dy = event.position().x() - start.x(), event.position().y() - start.y()
            # 4 HU per pixel: a full-screen drag spans the useful CT range
            self.session.set_window(width + 4.0 * dx, level - 4.0 * dy)
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        self._drag_start = None
        event.accept()
