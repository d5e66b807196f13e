"""Table of the session's vertebrae: level, confidence and QA flags (analysis) or volume (label map).

Selecting a row selects that vertebra in the session, which moves the crosshair to its centre and
highlights it in every view. Corrections (rename, shift, delete) are the main window's actions;
the table only shows their outcome. Without vertebrae it gives way to a message saying how to
get them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
)
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QStackedWidget, QTableView, QWidget

from inference import registry
from inference.models.lesion import NOT_SCORED

from ..state.session import SOURCE_ANALYSIS, SOURCE_LABELS, Session, VertebraInfo
from .view3d import NO_CT_TEXT, NO_LABELS_TEXT, nothing_found_text

QA_TEXT = {
    "label_uncertain": "uncertain label",
    "label_unanchored": "no landmark read from the scan",
    "partial_at_border": "cut by scan edge",
    "gap_above": "gap above",
    "gap_below": "gap below",
    "label_corrected": "corrected",
    "implausible_volume": "unusual volume",
    "touching_neighbour": "merges with neighbour",
    "no_mask": "no mask",
    "metal_nearby": "metal nearby",
    "lesion_suspected:lytic": "lesion? (lytic)",
    "lesion_suspected:blastic": "lesion? (blastic)",
    "lesion_suspected:fracture": "fracture?",
}
"""How the analysis' QA flags read in the table (unknown flags are shown as they are)."""

_DOUBT = QColor(255, 196, 0, 110)  # background of an uncertain label
_LESION = QColor(255, 150, 0, 90)  # background of a flagged lesion suspicion: amber, "look here", not red
LESION_EVIDENCE = ("a suspicion to review, not a diagnosis: the classifier learned from synthetic CT only; its "
                   "flag threshold (0.5) was set for 5 % false alarms on synthetic vertebrae, and it has not been "
                   "validated on real lesions")
"""What a lesion score is worth, shown with every score (tooltip)."""

_Index = QModelIndex | QPersistentModelIndex


class VertebraTableModel(QAbstractTableModel):
    """Rows = the session's vertebrae as shown now (after corrections), head to foot."""

    HEADERS = ("Level", "Confidence", "Lesion", "Vol. (ml)", "Centre LPS (mm)", "QA")
    LEVEL, CONFIDENCE, LESION, VOLUME, CENTRE, QA = range(6)
    """QA last: it is the one column of free text, stretched and wrapped to the table's width."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.session = session
        self._rows: list[VertebraInfo] = []
        session.vertebrae_changed.connect(self._on_vertebrae_changed)
        session.ct_changed.connect(self._on_vertebrae_changed)

    def vertebra_at(self, row: int) -> VertebraInfo:
        return self._rows[row]

    def row_of(self, vertebra_id: int) -> int:
        """Row of a VerSe id, or -1."""
        return next((r for r, v in enumerate(self._rows) if v.id == vertebra_id), -1)

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008 - Qt override
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008 - Qt override
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:  # noqa: N802
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.HEADERS[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        v = self._rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == self.LEVEL:
                corrected = v.source_id and v.source_id != v.id
                return f"{v.name}  (was {registry.name_of(v.source_id)})" if corrected else v.name
            if col == self.CONFIDENCE:
                return "—" if v.confidence is None else f"{100.0 * v.confidence:.0f} %"
            if col == self.LESION:
                if v.lesion_score is None:
                    return "—"
                return f"review: {v.lesion_type}?" if v.lesion_type else "no flag"
            if col == self.QA:
                return ", ".join(QA_TEXT.get(f, f) for f in v.qa_flags)
            if col == self.VOLUME:
                return "—" if math.isnan(v.volume_ml) else f"{v.volume_ml:.1f}"
            return ", ".join(f"{round(float(c)):d}" for c in v.center_lps)  # whole mm; the tooltip has 0.1 mm
        if role == Qt.ItemDataRole.DecorationRole and col == self.LEVEL:
            return QColor(*v.colour)
        if role == Qt.ItemDataRole.BackgroundRole and col in (self.CONFIDENCE, self.QA):
            return _DOUBT if "label_uncertain" in v.qa_flags else None
        if role == Qt.ItemDataRole.BackgroundRole and col == self.LESION:
            return _LESION if v.lesion_type else None
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (self.CONFIDENCE, self.VOLUME, self.CENTRE):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(v)
        return None

    def _tooltip(self, v: VertebraInfo) -> str:
        lines = [f"{v.name} (VerSe id {v.id})"]
        if v.source_id and v.source_id != v.id:
            lines.append(f"renamed by you; found as {registry.name_of(v.source_id)}")
        if v.confidence is not None:
            lines.append(f"probability of this label: {100.0 * v.confidence:.1f} %")
        if v.lesion_score is not None:
            kind = f" ({v.lesion_type})" if v.lesion_type else ""
            lines.append(f"lesion suspicion score {v.lesion_score:.2f}{kind} (flagged at 0.5): {LESION_EVIDENCE}")
        elif v.name in NOT_SCORED:
            lines.append("lesion suspicion: not assessed at C1, C2 and the sacrum (the classifier never learned them)")
        if v.rib_ml is not None:
            lines.append(f"rib found beside it: {v.rib_ml:.2f} ml (the labeling's rib cue)")
        if v.ribs_seen is not None:
            lines.append("ribs seen in the bone beside it: " + ribs_seen_words(v.ribs_seen))
        if v.qa_flags:
            lines.append("flags: " + ", ".join(v.qa_flags))
        lines.append("centre (mask centroid, exported): " + ", ".join(f"{c:.1f}" for c in v.center_lps) + " mm LPS")
        if v.body_center_lps is not None:
            lines.append("body centre (marked on the slices): " + ", ".join(f"{c:.1f}" for c in v.body_center_lps)
                         + " mm LPS")
        return "\n".join(lines)

    def _on_vertebrae_changed(self, *_: object) -> None:
        self.beginResetModel()
        self._rows = list(self.session.vertebrae)
        self.endResetModel()


class VertebraTable(QStackedWidget):
    """The table, or a message page when there is nothing to list."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setObjectName("vertebra_table")
        self.message = QLabel(NO_CT_TEXT, self)
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setMargin(12)
        self.model = VertebraTableModel(session)
        self.view = QTableView(self)
        self.view.setModel(self.model)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.verticalHeader().setVisible(False)
        self.view.setAlternatingRowColors(True)
        self.view.setWordWrap(True)
        self.view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header = self.view.horizontalHeader()
        for col in range(self.model.columnCount()):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(VertebraTableModel.QA, QHeaderView.ResizeMode.Stretch)
        header.setStretchLastSection(False)
        self.addWidget(self.message)
        self.addWidget(self.view)

        self.view.selectionModel().selectionChanged.connect(self._on_rows_selected)
        self.model.modelReset.connect(self._on_model_reset)
        session.selection_changed.connect(self._on_selection_changed)
        self._on_model_reset()

    def select_row(self, row: int) -> None:
        """Select a row as a user click would (moves the crosshair to that vertebra)."""
        self.view.selectRow(row)

    def names(self) -> list[str]:
        """The level names listed, top to bottom."""
        return [self.model.vertebra_at(r).name for r in range(self.model.rowCount())]

    def _on_rows_selected(self, selected: QItemSelection, deselected: QItemSelection) -> None:
        rows = self.view.selectionModel().selectedRows()
        if rows:
            self.session.select_vertebra(self.model.vertebra_at(rows[0].row()).id)

    def _on_selection_changed(self, vertebra_id: int) -> None:
        row = self.model.row_of(vertebra_id)
        selection = self.view.selectionModel()
        current = [i.row() for i in selection.selectedRows()]
        if row < 0:
            if current:
                selection.clearSelection()
            return
        if current != [row]:
            # a selection made elsewhere (a click in a slice view) must not move the crosshair again
            selection.blockSignals(True)
            selection.select(
                self.model.index(row, 0),
                QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
            )
            selection.blockSignals(False)
            self.view.viewport().update()
            self.view.scrollTo(self.model.index(row, 0))

    def _on_model_reset(self) -> None:
        # an analysis has probabilities and flags (and volumes once segmented); a label map volumes only
        source = self.session.vertebra_source
        m = VertebraTableModel
        has_volumes = any(np.isfinite(v.volume_ml) for v in self.session.vertebrae)
        self.view.setColumnHidden(m.CONFIDENCE, source == SOURCE_LABELS)
        self.view.setColumnHidden(m.LESION, not any(v.lesion_score is not None for v in self.session.vertebrae))
        self.view.setColumnHidden(m.QA, source == SOURCE_LABELS)
        self.view.setColumnHidden(m.VOLUME, not has_volumes)
        header = self.view.horizontalHeader()
        for col in (m.QA, m.CENTRE):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        stretch = m.QA if source == SOURCE_ANALYSIS else m.CENTRE
        header.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
        if self.model.rowCount() > 0:
            self.setCurrentWidget(self.view)
        else:
            self.message.setText(NO_CT_TEXT if self.session.ct is None else NO_LABELS_TEXT
                                 if self.session.analysis is None else nothing_found_text(self.session))
            self.setCurrentWidget(self.message)


def ribs_seen_words(sides: dict[str, bool | None]) -> str:
    """What `inference.column.rib_pairs` saw on each side, in words (the table's tooltip)."""
    words = {True: "a rib", False: "none", None: "not in view"}
    return f"left {words[sides.get('left')]}, right {words[sides.get('right')]}"
