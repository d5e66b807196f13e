"""Main window: four views (axial, 3D, sagittal, coronal), the vertebra table, menus and status bar.

The window is put together from what it holds, one module each: `main_actions` (actions, menus,
toolbar), `main_jobs` (loading, analysis, export and planning on a worker thread, their outcomes and
the one place errors are translated) and `main_files` (open dialogs, recent files, drag and drop,
the export folder). Here: the views, the docks, the status bar, the label corrections (rename, shift,
delete, undo, calling the session) and the reactions to the session's signals.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QThread, Signal, Slot
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from inference import __version__
from inference.corrections import UP, CorrectionError
from inference.errors import InputError
from inference.volume import Volume

from ..display import WINDOW_PRESETS
from ..state.session import SOURCE_ANALYSIS, Session
from ..workers import (
    AnalysisRunner,
    PipelineFactory,
    Worker,
)
from .main_actions import Actions
from .main_files import FileHandling
from .main_jobs import JobControl
from .screw_panel import ScrewPanel
from .slice_view import SliceView
from .vertebra_table import VertebraTable
from .view3d import View3D

APP_NAME = "SpineNav"


class MainWindow(FileHandling, JobControl, Actions, QMainWindow):
    """The SpineNav desktop window.

    Parameters
    ----------
    show_dialogs : bool
        False for unattended runs (``--screenshot``): errors go to the status bar and the
        ``*_failed`` signals only, never to a modal dialog.
    pipeline_factory : callable, optional
        Builds the analysis pipeline (default: the installed models); called once, on the worker
        thread of the first analysis. Tests pass one with a fake model.
    show_timings : bool
        False for screenshots: the status bar leaves out how long the analysis took, so that the
        same case gives the same picture (``make docs`` leaves no diff).

    Signals
    -------
    load_finished()
        A CT (and its labels, when asked for) is shown.
    load_failed(object)
        Loading stopped with this exception (`InputError` for bad input); the old case stays.
    analysis_finished()
        An analysis result is shown.
    analysis_failed(object)
        The analysis stopped with this exception (`WeightsError`, `InputError`, …); nothing changed.
    export_finished(object)
        A bundle was written (`inference.export.ExportResult`).
    export_failed(object)
        The export stopped with this exception; nothing was written.
    job_cancelled(str)
        The job of this kind (``"load"``, ``"analysis"``, ``"export"``) stopped on Cancel.
    """

    load_finished = Signal()
    load_failed = Signal(object)
    analysis_finished = Signal()
    analysis_failed = Signal(object)
    export_finished = Signal(object)
    export_failed = Signal(object)
    plan_finished = Signal()
    plan_failed = Signal(object)
    job_cancelled = Signal(str)

    def __init__(
        self,
        *,
        show_dialogs: bool = True,
        pipeline_factory: PipelineFactory | None = None,
        settings: QSettings | None = None,
        parent: QWidget | None = None,
        show_timings: bool = True,
    ) -> None:
        super().__init__(parent)
        self.show_dialogs = show_dialogs
        self.show_timings = show_timings  # off for screenshots: the same case gives the same picture
        self.settings = settings if settings is not None else QSettings("SpineNav", "SpineNav")
        self.session = Session(self)
        self.analysis_runner = AnalysisRunner(pipeline_factory)
        self._worker: Worker | None = None
        self._thread: QThread | None = None
        self._job_kind = ""
        self._job_ct: Volume | None = None  # the CT an analysis was started on
        self._analyze_after_load = False
        self._next_job: Callable[[], Any] | None = None  # started once the current job's thread is gone
        self._closed = False
        self._last_dir = str(Path.cwd())
        self._last_export_dir = self._last_dir

        self.setObjectName("main_window")
        self.setWindowTitle(APP_NAME)
        self.resize(1400, 900)
        self._build_views()
        self._build_actions()
        self._build_status_bar()
        self._build_menus_and_toolbar()
        self._build_vertebra_dock()
        self.session.vertebrae_changed.connect(self._on_vertebrae_changed)
        self.session.selection_changed.connect(self._update_actions)
        self.setAcceptDrops(True)
        self._update_recent_menu()
        self._on_ct_changed()

    # ---- construction -------------------------------------------------------------------------
    def _build_views(self) -> None:
        self.axial_view = SliceView(self.session, "axial")
        self.coronal_view = SliceView(self.session, "coronal")
        self.sagittal_view = SliceView(self.session, "sagittal")
        self.view3d = View3D(self.session)
        # 3D Slicer's four-up: axial | 3D over sagittal | coronal
        top, bottom = QSplitter(Qt.Orientation.Horizontal), QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self.axial_view)
        top.addWidget(self.view3d)
        bottom.addWidget(self.sagittal_view)
        bottom.addWidget(self.coronal_view)
        columns = QSplitter(Qt.Orientation.Vertical)
        columns.addWidget(top)
        columns.addWidget(bottom)
        for splitter in (top, bottom, columns):
            splitter.setChildrenCollapsible(False)
            for i in range(splitter.count()):
                splitter.setStretchFactor(i, 1)
        # keep the two rows' column borders aligned when the user drags one
        top.splitterMoved.connect(lambda *_: bottom.setSizes(top.sizes()))
        bottom.splitterMoved.connect(lambda *_: top.setSizes(bottom.sizes()))
        self.setCentralWidget(columns)

        self.session.ct_changed.connect(self._on_ct_changed)

    def _build_vertebra_dock(self) -> None:
        """The vertebra table with the correction buttons under it and the analysis' case notes."""
        self.vertebra_table = VertebraTable(self.session)
        self.vertebra_table.view.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.vertebra_table.view.addActions(list(self.correction_actions))
        self.vertebra_table.view.doubleClicked.connect(lambda _index: self.rename_action.trigger())
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.setSpacing(2)
        for action in self.correction_actions:
            button = QToolButton()
            button.setDefaultAction(action)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            buttons.addWidget(button)
        buttons.addStretch(1)
        self.qa_label = QLabel("")
        self.qa_label.setObjectName("qa_notes")
        self.qa_label.setWordWrap(True)
        self.qa_label.setStyleSheet("QLabel { color: #b36b00; padding: 2px; }")
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.vertebra_table, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.qa_label)
        dock = QDockWidget("Vertebrae", self)
        dock.setObjectName("vertebra_dock")
        dock.setWidget(panel)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.resizeDocks([dock], [520], Qt.Orientation.Horizontal)
        self.screw_panel = ScrewPanel(self.session)
        self.screw_dock = QDockWidget("Screws", self)
        self.screw_dock.setObjectName("screw_dock")
        self.screw_dock.setWidget(self.screw_panel)
        self.screw_dock.setFeatures(dock.features())
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.screw_dock)
        self.tabifyDockWidget(dock, self.screw_dock)
        dock.raise_()

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.ct_info_label = QLabel("")
        self.ct_info_label.setObjectName("ct_info")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        # hidden between jobs but keeping their place: a status bar that changed height would
        # resize, and so re-render, the 3D and slice views at the start and end of every job
        for widget in (self.progress_bar, self.cancel_button):
            policy = widget.sizePolicy()
            policy.setRetainSizeWhenHidden(True)
            widget.setSizePolicy(policy)
        bar.addPermanentWidget(self.ct_info_label)
        bar.addPermanentWidget(self.progress_bar)
        bar.addPermanentWidget(self.cancel_button)
        self._set_busy(False)

    # ---- several series in one folder ---------------------------------------------------------

    # ---- recent files and drag and drop --------------------------------------------------------

    # ---- public API (menus, command line, tests) ----------------------------------------------

    def save_screenshot(self, path: str | Path) -> None:
        """Write a PNG of the whole window; raises `InputError` when the file cannot be written."""
        path = Path(path)
        self.view3d.render_now()
        image = self.grab()
        if not image.save(str(path), "PNG"):
            raise InputError(path, "cannot write the PNG here; check that the folder exists and is writable")

    def shutdown(self) -> None:
        """Stop the background job, wait for its thread and release the 3D view (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait()  # returns at the job's next cancel point
            self._thread = None
            self._worker = None
        self.view3d.close_plotter()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        self.shutdown()
        super().closeEvent(event)

    # ---- jobs ---------------------------------------------------------------------------------

    # ---- menu slots ---------------------------------------------------------------------------

    def _confirm(self, title: str, text: str) -> bool:
        """Yes/No question; unattended runs (no dialogs) answer No."""
        if not self.show_dialogs:
            return False
        answer = QMessageBox.question(
            self,
            f"SpineNav — {title.lower()}",
            text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    @Slot()
    def _on_rename(self) -> None:
        info = self.session.vertebra(self.session.selected_id)
        if info is None:
            self.statusBar().showMessage("Select the vertebra to rename in the table first", 5000)
            return
        names = self.session.names_available_for(info.id)
        name, ok = QInputDialog.getItem(
            self, "Rename vertebra", f"New name for {info.name}:", names, names.index(info.name), False
        )
        if ok and name and name != info.name:
            self._correct(lambda: self.session.rename_vertebra(info.id, name), f"{info.name} renamed {name}")

    def _on_shift(self, direction: int) -> None:
        word = "up" if direction == UP else "down"
        self._correct(lambda: self.session.shift_labels(direction), f"All names shifted {word} by one level")

    @Slot()
    def _on_delete(self) -> None:
        info = self.session.vertebra(self.session.selected_id)
        if info is None:
            self.statusBar().showMessage("Select the vertebra to delete in the table first", 5000)
            return
        self._correct(lambda: self.session.delete_vertebra(info.id), f"{info.name} deleted (Undo brings it back)")

    @Slot()
    def _on_undo(self) -> None:
        if self.session.undo_correction():
            self.statusBar().showMessage("Last correction undone", 5000)

    def _correct(self, change: Callable[[], str | None], done: str) -> None:
        """Apply one correction; a refused one becomes a dialog, an odd result a status-bar warning."""
        try:
            warning = change()
        except CorrectionError as exc:
            self.statusBar().showMessage(f"Not changed: {exc}", 8000)
            if self.show_dialogs:
                QMessageBox.warning(self, "SpineNav — cannot correct", str(exc))
            return
        self.statusBar().showMessage(f"{done} · warning: {warning}" if warning else done, 8000)

    @Slot()
    def _on_about(self) -> None:
        QMessageBox.about(
            self,
            "About SpineNav",
            f"SpineNav {__version__}\n\nSpine CT viewer and robot bundle export; all coordinates "
            "LPS mm.\nResearch software, not a medical device.",
        )

    # ---- session slots ------------------------------------------------------------------------
    @Slot()
    def _on_ct_changed(self) -> None:
        self._update_actions()
        ct = self.session.ct
        if ct is None:
            self.setWindowTitle(APP_NAME)
            self.ct_info_label.setText("No CT")
            return
        source = ct.metadata.get("source_path") or ""
        self.setWindowTitle(f"{APP_NAME} — {Path(source).name or 'CT'}")
        self.ct_info_label.setText(
            _ct_summary(ct, self.session.frame.obliquity_deg if self.session.frame else 0.0)
        )

    @Slot(bool)
    def _on_vertebrae_changed(self, new_vertebrae: bool) -> None:
        session = self.session
        notes = list(session.analysis.qa) if session.vertebra_source == SOURCE_ANALYSIS else []
        if session.corrections:
            n = len(session.corrections)
            notes.append(f"{n} correction{'s' if n > 1 else ''} by you (kept in the export)")
        self.qa_label.setText("\n".join(f"• {n[:1].upper()}{n[1:]}" for n in notes))
        self.qa_label.setVisible(bool(notes))
        self._update_actions()

    def _on_lesions_toggled(self) -> None:
        visible = self.lesions_action.isChecked()
        self.view3d.set_lesions_visible(visible)
        for view in (self.axial_view, self.sagittal_view, self.coronal_view):
            view.set_lesions_visible(visible)

    @Slot(float, float)
    def _on_window_changed(self, width: float, level: float) -> None:
        for name, action in self.window_actions.items():
            action.setChecked(WINDOW_PRESETS[name] == (width, level))


def _ct_summary(ct: Volume, obliquity_deg: float) -> str:
    """One status-bar line: patient (DICOM), grid size, spacing, series."""
    md = ct.metadata
    size = "×".join(str(s) for s in ct.size)
    spacing = "×".join(f"{s:.3g}" for s in ct.spacing)
    series = md.get("series_description") or Path(md.get("source_path") or "").name
    parts = []
    patient = md.get("patient") or {}
    who = " ".join(str(v).replace("^", " ").strip() for v in (patient.get("name"), patient.get("id")) if v)
    if who:
        date = patient.get("study_date") or ""
        parts.append(f"{who}" + (f" ({date[:4]}-{date[4:6]}-{date[6:]})" if len(date) == 8 else ""))
    parts += [f"{size} voxels", f"{spacing} mm"]
    if series:
        parts.append(str(series))
    uid = md.get("series_uid")
    if uid:
        parts.append(f"series …{str(uid)[-12:]}")
    if obliquity_deg > 0.5:
        parts.append(f"oblique {obliquity_deg:.1f}° (shown on the voxel grid)")
    return "  ·  ".join(parts)
