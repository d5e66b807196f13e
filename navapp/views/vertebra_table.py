"""Table of labelled vertebrae: level, centre (LPS mm) and volume (ml); read-only for now.

Selecting a row selects that vertebra in the session, which moves the crosshair to its centre and
highlights its mesh. Without labels the table gives way to a message saying how to get them.
"""

from __future__ import annotations

import math
from typing import Any

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

from ..state.session import Session, VertebraInfo
from .view3d import NO_CT_TEXT, NO_LABELS_TEXT

_Index = QModelIndex | QPersistentModelIndex


class VertebraTableModel(QAbstractTableModel):
    """Rows = the session's vertebrae in cranio-caudal order."""

    HEADERS = ("Level", "Centre L, P, S (mm)", "Volume (ml)")

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.session = session
        self._rows: list[VertebraInfo] = []
        session.labels_changed.connect(self._on_labels_changed)
        session.ct_changed.connect(self._on_labels_changed)

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
            if col == 0:
                return v.name
            if col == 1:
                return ", ".join(f"{c:.1f}" for c in v.center_lps)
            return "—" if math.isnan(v.volume_ml) else f"{v.volume_ml:.1f}"
        if role == Qt.ItemDataRole.DecorationRole and col == 0:
            return QColor(*v.colour)
        if role == Qt.ItemDataRole.TextAlignmentRole and col > 0:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{v.name} (VerSe id {v.id}); centre in LPS mm"
        return None

    def _on_labels_changed(self) -> None:
        self.beginResetModel()
        label_set = self.session.label_set
        self._rows = [] if label_set is None else list(label_set.vertebrae)
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
        header = self.view.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.addWidget(self.message)
        self.addWidget(self.view)

        self.view.selectionModel().selectionChanged.connect(self._on_rows_selected)
        self.model.modelReset.connect(self._on_model_reset)
        session.selection_changed.connect(self._on_selection_changed)
        self._on_model_reset()

    def select_row(self, row: int) -> None:
        """Select a row as a user click would (moves the crosshair to that vertebra)."""
        self.view.selectRow(row)

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
        if self.model.rowCount() > 0:
            self.setCurrentWidget(self.view)
        else:
            self.message.setText(NO_CT_TEXT if self.session.ct is None else NO_LABELS_TEXT)
            self.setCurrentWidget(self.message)
