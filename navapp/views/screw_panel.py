"""The screw panel: planned pedicle screws with their sizes, angles and breach grades, and their editing.

Rows list the session's screws; the selected one can be resized (diameter, length) and its tip or
entry nudged by 1 mm medial/lateral/cranial/caudal in the vertebra's own frame. In the 3D view its
entry and tip can also be dragged. Every change is graded again at once (Gertzbein–Robbins on the
vertebra mask). Proposals are for the surgeon to check; they are not a validated plan.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..state.session import Session

GRADE_COLOURS = {"A": (60, 170, 75), "B": (170, 200, 60), "C": (240, 160, 40), "D": (230, 80, 40), "E": (200, 30, 30)}
"""Gertzbein–Robbins grade → RGB (green: inside bone … red: far outside)."""
HEADERS = ("Level", "Side", "Size (mm)", "Med °", "Caud °", "Breach", "Grade", "By HU")
HEADER_TIPS = ("", "", "diameter × length", "medial angle in the vertebra's frame",
               "caudal angle in the vertebra's frame (tip below entry)", "distance outside the vertebra mask (mm)",
               "Gertzbein–Robbins grade of that breach", "grade and breach (mm) against bone by CT HU")
NOTE = ("Proposals to check and edit. Grades: distance of the screw outside the vertebra mask "
        "(A none, B < 2 mm, C 2–4, D 4–6, E ≥ 6 mm); By HU: the same against bone in the CT (≥ 200 HU near "
        "the mask), stricter on thick slices; not a validated plan.")
STEP_MM = 1.0


class ScrewPanel(QWidget):
    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setObjectName("screw_panel")
        self.table = QTableWidget(0, len(HEADERS), self)
        self.table.setHorizontalHeaderLabels(HEADERS)
        for c, tip in enumerate(HEADER_TIPS):
            self.table.horizontalHeaderItem(c).setToolTip(tip)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._on_row_selected)
        self.diameter = QDoubleSpinBox(self)
        self.diameter.setRange(4.0, 8.5)
        self.diameter.setSingleStep(0.5)
        self.diameter.setDecimals(1)
        self.diameter.setSuffix(" mm")
        self.length = QSpinBox(self)
        self.length.setRange(20, 60)
        self.length.setSingleStep(5)
        self.length.setSuffix(" mm")
        self.diameter.editingFinished.connect(lambda: self._edit(diameter_mm=float(self.diameter.value())))
        self.length.editingFinished.connect(lambda: self._edit(length_mm=float(self.length.value())))
        self.end = QComboBox(self)
        self.end.addItems(["tip", "entry"])
        self.nudge_buttons: dict[str, QPushButton] = {}
        nudges = QHBoxLayout()
        for name in ("medial", "lateral", "cranial", "caudal"):
            button = QPushButton(name, self)
            button.setToolTip(f"Move the chosen end {STEP_MM:g} mm {name} (vertebra frame)")
            button.clicked.connect(lambda _=False, n=name: self.nudge(n))
            self.nudge_buttons[name] = button
            nudges.addWidget(button)
        grid = QGridLayout()
        grid.addWidget(QLabel("Diameter"), 0, 0)
        grid.addWidget(self.diameter, 0, 1)
        grid.addWidget(QLabel("Length"), 0, 2)
        grid.addWidget(self.length, 0, 3)
        grid.addWidget(QLabel("Move"), 1, 0)
        grid.addWidget(self.end, 1, 1)
        self.message = QLabel("Open a label map or analyse the CT, then Plan screws.", self)
        self.message.setWordWrap(True)
        note = QLabel(NOTE, self)
        note.setWordWrap(True)
        note.setStyleSheet("QLabel { color: #666; }")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.message)
        layout.addWidget(self.table, 1)
        layout.addLayout(grid)
        layout.addLayout(nudges)
        layout.addWidget(note)
        session.screws_changed.connect(self.refresh)
        self.refresh()

    # ---- public -------------------------------------------------------------------------------
    def nudge(self, direction: str) -> None:
        """Move the chosen end (tip or entry) of the selected screw by STEP_MM in the vertebra's frame."""
        plan, i = self.session.screw_plan, self.session.selected_screw
        if plan is None or i < 0:
            return
        screw = plan.screws[i]
        frame = plan.models[screw.level].frame
        side = 1.0 if screw.side == "left" else -1.0
        step = {"medial": -side * frame.e_x, "lateral": side * frame.e_x, "cranial": frame.e_z,
                "caudal": -frame.e_z}[direction] * STEP_MM
        key = "target_lps" if self.end.currentText() == "tip" else "entry_lps"
        self._edit(**{key: getattr(screw, key) + step})

    def grades(self) -> list[str]:
        return [self.table.item(r, HEADERS.index("Grade")).text() for r in range(self.table.rowCount())]

    def refresh(self) -> None:
        plan = self.session.screw_plan
        screws = plan.screws if plan is not None else []
        self.table.blockSignals(True)
        self.table.setRowCount(len(screws))
        for r, s in enumerate(screws):
            by_hu = "" if s.cortex_grade is None else f"{s.cortex_grade} {s.cortex_breach_mm:.1f}"
            cells = (s.level, s.side, f"{s.diameter_mm:.1f} × {s.length_mm:.0f}", _degrees(s.medial_deg),
                     _degrees(s.caudal_deg), f"{s.breach_mm:.1f}", s.grade, by_hu)
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                grade = {HEADERS.index("Grade"): s.grade, HEADERS.index("By HU"): s.cortex_grade}.get(c)
                if grade is not None:
                    item.setBackground(QColor(*GRADE_COLOURS[grade]))
                flags = [f for f, on in (("enters the canal", s.enters_canal), ("touches the other screw", s.collides))
                         if on]
                item.setToolTip("; ".join(flags + s.notes))
                self.table.setItem(r, c, item)
        if 0 <= self.session.selected_screw < len(screws):
            self.table.selectRow(self.session.selected_screw)
        self.table.blockSignals(False)
        selected = plan is not None and 0 <= self.session.selected_screw < len(screws)
        for w in (self.diameter, self.length, self.end, *self.nudge_buttons.values()):
            w.setEnabled(selected)
        if selected:
            s = screws[self.session.selected_screw]
            for box, value in ((self.diameter, s.diameter_mm), (self.length, int(round(s.length_mm)))):
                box.blockSignals(True)
                box.setValue(value)
                box.blockSignals(False)
        if plan is None:
            self.message.setText("No screws planned. Vertebrae → Plan screws proposes two per thoracic and "
                                 "lumbar level.")
        else:
            n_ab = sum(s.grade in "AB" for s in screws)
            text = (f"{len(screws)} screws, {n_ab} grade A or B. Drag the yellow entry and tip spheres in 3D, "
                    "or edit below.")
            text += "".join(f"\n{what}: {why}" for what, why in plan.not_planned.items())
            self.message.setText(text)

    # ---- slots --------------------------------------------------------------------------------
    def _on_row_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.session.select_screw(rows[0].row())

    def _edit(self, **changes) -> None:
        i = self.session.selected_screw
        if self.session.screw_plan is None or i < 0:
            return
        current = self.session.screw_plan.screws[i]
        same = all(np.allclose(getattr(current, k), v) for k, v in changes.items())
        if not same:
            self.session.edit_screw(i, **changes)


def _degrees(value: float) -> str:
    """An angle to 0.1°, "0.0" for a straight screw (never "-0.0")."""
    return f"{round(value, 1) + 0.0:.1f}"
