"""Main window: four views (axial, 3D, sagittal, coronal), the vertebra table, menus and status bar.

Loading, analysis and export run on a worker thread (`navapp.workers`), one job at a time, with a
progress bar and a Cancel button in the status bar; their outcome comes back as signals handled
here, on the GUI thread. Errors are translated in one place, `_on_job_failed`: bad input
(`InputError`) and missing models (`WeightsError`) become a warning dialog with their one-line
message, anything else an "internal error" dialog — the app never goes down with a traceback.
Label corrections (rename, shift, delete, undo) are actions here that call the session.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QMimeData, QSettings, QSize, Qt, QThread, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
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
from inference.corrections import DOWN, UP, CorrectionError
from inference.errors import InputError, WeightsError
from inference.export.atomic import is_bundle
from inference.io.image_file import IMAGE_SUFFIXES
from inference.volume import Volume

from ..display import WINDOW_PRESETS
from ..state.session import SOURCE_ANALYSIS, LabelSet, ScrewPlan, Session
from ..workers import (
    AnalysisOutcome,
    AnalysisRunner,
    LoadedCase,
    PipelineFactory,
    Worker,
    analyze_for_display,
    export_bundle,
    load_case,
    load_labels,
    plan_screws,
    start_worker,
)
from ..workers.worker import ERROR_LOG
from .screw_panel import ScrewPanel
from .slice_view import SliceView
from .vertebra_table import VertebraTable
from .view3d import STANDARD_VIEWS, View3D

APP_NAME = "SpineNav"
RECENT_KEY = "recent_cts"
MAX_RECENT = 8
_IMAGE_FILTER = "CT images (" + " ".join(f"*{s}" for s in IMAGE_SUFFIXES) + " *.dcm);;All files (*)"
_LABEL_FILTER = "Label maps (" + " ".join(f"*{s}" for s in IMAGE_SUFFIXES) + ");;All files (*)"
LOAD, ANALYSIS, EXPORT, PLAN = "load", "analysis", "export", "plan"
"""Job kinds: each has its own outcome signals and dialog titles."""
_FAILURE_TITLES = {LOAD: "cannot open", ANALYSIS: "cannot analyse", EXPORT: "cannot export", PLAN: "cannot plan"}
_NO_MODELS_TEXT = "Viewing, label maps and export keep working; the analysis needs the model weights."


class MainWindow(QMainWindow):
    """The SpineNav desktop window.

    Parameters
    ----------
    show_dialogs : bool
        False for unattended runs (``--screenshot``): errors go to the status bar and the
        ``*_failed`` signals only, never to a modal dialog.
    pipeline_factory : callable, optional
        Builds the analysis pipeline (default: the installed models); called once, on the worker
        thread of the first analysis. Tests pass one with a fake model.

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
    ) -> None:
        super().__init__(parent)
        self.show_dialogs = show_dialogs
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

    def _action(
        self, text: str, slot: Callable[[], Any], shortcut: QKeySequence | str | None = None, tip: str = ""
    ) -> QAction:
        action = QAction(text, self)
        action.triggered.connect(slot)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
        return action

    def _build_actions(self) -> None:
        self.open_ct_action = self._action(
            "Open CT file…",
            self._on_open_ct_file,
            QKeySequence.StandardKey.Open,
            "Open a CT: NIfTI, NRRD, MetaImage or one DICOM file",
        )
        self.open_dicom_action = self._action(
            "Open DICOM folder…",
            self._on_open_dicom_folder,
            "Ctrl+Shift+O",
            "Open the CT series in a DICOM folder",
        )
        self.open_labels_action = self._action(
            "Open labels…",
            self._on_open_labels_file,
            "Ctrl+L",
            "Open a vertebra label map on the CT's grid (VerSe or TotalSegmentator)",
        )
        self.open_label_folder_action = self._action(
            "Open label folder…",
            self._on_open_labels_folder,
            None,
            "Open a TotalSegmentator output folder (vertebrae_*.nii.gz)",
        )
        self.analyze_action = self._action(
            "Analyze",
            self._on_analyze,
            "Ctrl+Return",
            "Find and name every vertebra of this CT (runs in the background; Cancel stops it)",
        )
        self.plan_action = self._action(
            "Plan screws",
            self.plan_screws,
            "Ctrl+P",
            "Propose two pedicle screws per thoracic and lumbar level on the shown masks (background)",
        )
        self.export_action = self._action(
            "Export bundle…",
            self._on_export,
            "Ctrl+E",
            "Write the robot bundle (centers, names, corrections; meshes for a label map) to a folder",
        )
        self.rename_action = self._action(
            "Rename…", self._on_rename, "F2", "Give the selected vertebra another name"
        )
        self.shift_up_action = self._action(
            "Shift up",
            lambda: self._on_shift(UP),
            "Ctrl+Up",
            "Every vertebra takes the name of the level above it (L1 → T12)",
        )
        self.shift_down_action = self._action(
            "Shift down",
            lambda: self._on_shift(DOWN),
            "Ctrl+Down",
            "Every vertebra takes the name of the level below it (T12 → L1)",
        )
        self.delete_action = self._action(
            "Delete",
            self._on_delete,
            QKeySequence.StandardKey.Delete,
            "Remove the selected vertebra (a false detection) from the views and the export",
        )
        self.undo_action = self._action(
            "Undo", self._on_undo, QKeySequence.StandardKey.Undo, "Take back the last correction"
        )
        for action in self.correction_actions:
            # the table's context menu and buttons carry them; the shortcuts work in the whole window
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.screenshot_action = self._action(
            "Save screenshot…", self._on_save_screenshot, "Ctrl+Shift+S", "Save a PNG of this window"
        )
        self.quit_action = self._action("Quit", self.close, QKeySequence.StandardKey.Quit)
        self.window_actions: dict[str, QAction] = {}
        group = QActionGroup(self)
        for i, (name, (width, level)) in enumerate(WINDOW_PRESETS.items(), start=1):
            action = self._action(
                f"{name} window",
                partial(self.session.set_window_preset, name),
                f"Ctrl+{i}",
                f"CT window {name}: W {width:g} L {level:g} HU",
            )
            action.setCheckable(True)
            group.addAction(action)
            self.window_actions[name] = action
        self.window_actions["Bone"].setChecked(True)
        self.session.window_changed.connect(self._on_window_changed)
        self.reset_camera_action = self._action(
            "Reset camera", self.view3d.reset_camera, "Ctrl+R", "Fit the 3D view to the spine"
        )
        self.lesions_action = self._action(
            "Lesions",
            self._on_lesions_toggled,
            "Ctrl+Shift+L",
            "Show regions of lesion suspicion in red: inside see-through vertebrae in 3D, as a heat on the slices; "
            "flags for review, not a diagnosis",
        )
        self.lesions_action.setCheckable(True)
        self.choose_series_action = self._action(
            "Choose series…",
            self._on_choose_series,
            None,
            "This DICOM folder holds several CT series: open another one",
        )
        self.isolate_action = self._action(
            "Isolate selected",
            lambda: self.view3d.set_isolated(self.isolate_action.isChecked()),
            "Ctrl+I",
            "Show only the selected vertebra in 3D (all again when unticked or nothing is selected)",
        )
        self.isolate_action.setCheckable(True)
        self.view_actions: dict[str, QAction] = {}
        for n, name in enumerate(STANDARD_VIEWS, start=1):
            self.view_actions[name] = self._action(
                f"{name} view", partial(self.view3d.set_view, name), f"Alt+{n}",
                f"Look at the spine from {name.lower()}",
            )
        self.about_action = self._action("About SpineNav", self._on_about)

    def _build_menus_and_toolbar(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        for a in (
            self.open_ct_action,
            self.open_dicom_action,
            None,
            self.open_labels_action,
            self.open_label_folder_action,
            None,
            self.choose_series_action,
            None,
            self.export_action,
            self.screenshot_action,
            None,
        ):
            file_menu.addSeparator() if a is None else file_menu.addAction(a)
        self.recent_menu = file_menu.addMenu("Open recent")
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        spine_menu = self.menuBar().addMenu("&Vertebrae")
        spine_menu.addAction(self.analyze_action)
        spine_menu.addAction(self.plan_action)
        spine_menu.addSeparator()
        for a in self.correction_actions:
            spine_menu.addAction(a)
        view_menu = self.menuBar().addMenu("&View")
        for a in self.window_actions.values():
            view_menu.addAction(a)
        view_menu.addSeparator()
        view_menu.addAction(self.lesions_action)
        view_menu.addAction(self.isolate_action)
        view_menu.addSeparator()
        for a in self.view_actions.values():
            view_menu.addAction(a)
        view_menu.addAction(self.reset_camera_action)
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(self.about_action)

        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main_toolbar")
        toolbar.setMovable(False)
        toolbar.setIconSize(QSize(16, 16))
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for a in (
            self.open_ct_action,
            self.open_dicom_action,
            self.open_labels_action,
            None,
            self.analyze_action,
            self.plan_action,
            self.export_action,
            None,
            *self.window_actions.values(),
            None,
            self.lesions_action,
            self.reset_camera_action,
        ):
            toolbar.addSeparator() if a is None else toolbar.addAction(a)

    # ---- several series in one folder ---------------------------------------------------------
    def other_ct_series(self) -> list[dict[str, str]]:
        """The other CT series of the shown CT's DICOM folder (``uid``, ``summary``)."""
        ct = self.session.ct
        return list(ct.metadata.get("other_ct_series") or []) if ct is not None else []

    def _on_choose_series(self) -> None:
        ct = self.session.ct
        others = self.other_ct_series()
        if ct is None or not others:
            return
        current = f"(shown) {ct.metadata.get('series_description') or ''} {ct.metadata.get('series_uid') or ''}"
        items = [current, *[o["summary"] for o in others]]
        choice, ok = QInputDialog.getItem(self, "Choose series", "CT series in this folder:", items, 0, False)
        if not ok or choice == current:
            return
        uid = others[items.index(choice) - 1]["uid"]
        self.open_case(ct.metadata["source_path"], series_uid=uid)

    # ---- recent files and drag and drop --------------------------------------------------------
    def recent_paths(self) -> list[str]:
        """CTs opened successfully, most recent first (kept in the user's settings)."""
        value = self.settings.value(RECENT_KEY, [])
        paths = [value] if isinstance(value, str) else list(value or [])
        return [p for p in paths if isinstance(p, str)][:MAX_RECENT]

    def _remember(self, path: str) -> None:
        paths = [path, *[p for p in self.recent_paths() if p != path]][:MAX_RECENT]
        self.settings.setValue(RECENT_KEY, paths)
        self._update_recent_menu()

    def _update_recent_menu(self) -> None:
        self.recent_menu.clear()
        paths = self.recent_paths()
        for path in paths:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(partial(self.open_case, path))
        self.recent_menu.setEnabled(bool(paths))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if _dropped_path(event.mimeData()) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        path = _dropped_path(event.mimeData())
        if path is None:
            event.ignore()
            return
        event.acceptProposedAction()
        if not self.open_case(path):
            self.statusBar().showMessage("Busy: wait for the current job or cancel it, then drop the CT again")

    # ---- public API (menus, command line, tests) ----------------------------------------------
    def open_case(
        self,
        ct_path: str | Path,
        labels_path: str | Path | None = None,
        *,
        analyze: bool = False,
        series_uid: str | None = None,
    ) -> bool:
        """Load a CT and optionally its label map in the background; False when busy.

        With ``analyze`` the analysis starts as soon as the CT is shown; ``series_uid`` picks one
        CT series of a DICOM folder that holds several.
        """
        job = partial(load_case, Path(ct_path), None if labels_path is None else Path(labels_path),
                      series_uid=series_uid)
        started = self._start_job(job, "loading CT", LOAD, self._on_case_loaded)
        if started:
            self._analyze_after_load = analyze
        return started

    def open_labels(self, labels_path: str | Path) -> bool:
        """Load a vertebra label map for the current CT in the background; False when busy or no CT."""
        ct = self.session.ct
        if ct is None:
            self._report_input_error(InputError(labels_path, "open a CT first; labels are shown on their CT"))
            return False
        return self._start_job(
            partial(load_labels, Path(labels_path), ct), "loading labels", LOAD, self._on_labels_loaded
        )

    def analyze(self) -> bool:
        """Find and name the vertebrae of the current CT in the background; False when busy or no CT.

        The pipeline is created on the first run (on the worker thread) and reused afterwards.
        """
        ct = self.session.ct
        if ct is None:
            self._report_input_error(InputError(None, "open a CT first; the analysis runs on the CT shown"))
            return False
        job = partial(analyze_for_display, self.analysis_runner, ct)
        started = self._start_job(job, "analysis", ANALYSIS, self._on_analysis_done)
        if started:
            self._job_ct = ct
        return started

    def export_bundle(self, out_dir: str | Path, *, force: bool = False) -> bool:
        """Write the bundle of the shown vertebrae, corrections applied, in the background.

        An analysis gives its own full bundle (centers and names only when it ran without
        segmentation), a label map the full one (meshes, label map). A non-empty ``out_dir`` is
        refused (an error dialog) unless ``force``. False when busy or when there is nothing to export.
        """
        session = self.session
        if session.ct is None or session.vertebra_source is None:
            self._report_input_error(
                InputError(out_dir, "nothing to export yet; run Analyze or open a label map first"), EXPORT
            )
            return False
        job = partial(
            export_bundle,
            Path(out_dir),
            ct=session.ct,
            analysis=session.analysis,
            labels=None if session.analysis is not None else session.labels,
            id_map=session.id_map,
            corrections=session.corrections,
            screws=list(session.screw_plan.screws) if session.screw_plan is not None else [],
            not_planned=dict(session.screw_plan.not_planned) if session.screw_plan is not None else {},
            force=force,
        )
        return self._start_job(job, "export", EXPORT, self._on_export_done)

    def plan_screws(self) -> bool:
        """Propose screws on the shown masks (names as corrected) in the background; False when busy or no masks."""
        session = self.session
        if session.label_set is None or not session.vertebrae:
            self._report_input_error(InputError(None, "open a label map or analyse the CT first: screws are "
                                                "planned on vertebra masks"), PLAN)
            return False
        job = partial(plan_screws, session.label_set.labels, session.id_map, ct=session.ct)
        return self._start_job(job, "planning screws", PLAN, self._on_plan_done)

    @Slot(object)
    def _on_plan_done(self, plan: ScrewPlan) -> None:
        if self._closed:
            return
        self.session.set_screw_plan(plan)
        self.screw_dock.raise_()
        n_ab = sum(s.grade in "AB" for s in plan.screws)
        text = f"{len(plan.screws)} screws proposed, {n_ab} grade A or B: check each one"
        if plan.not_planned:
            text += f" · not planned: {', '.join(plan.not_planned)} (see the Screws panel)"
        self.statusBar().showMessage(text)
        self.plan_finished.emit()

    def save_screenshot(self, path: str | Path) -> None:
        """Write a PNG of the whole window; raises `InputError` when the file cannot be written."""
        path = Path(path)
        self.view3d.render_now()
        image = self.grab()
        if not image.save(str(path), "PNG"):
            raise InputError(path, "cannot write the PNG here; check that the folder exists and is writable")

    def is_busy(self) -> bool:
        """True while a background job (or its thread) is running."""
        return self._thread is not None

    def cancel_job(self) -> None:
        """Ask the running job to stop at its next cancel point."""
        if self._worker is not None:
            self._worker.cancel()
            self.cancel_button.setEnabled(False)
            self.statusBar().showMessage("Cancelling… (the running step finishes first)")

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
    def _start_job(
        self, job: Callable[..., Any], description: str, kind: str, on_finished: Callable[[Any], None]
    ) -> bool:
        if self._closed:
            return False
        if self._thread is not None:
            self.statusBar().showMessage("Busy — wait for the current job or cancel it", 5000)
            return False
        worker = Worker(job, description=description)
        worker.progress.connect(self._on_job_progress)
        worker.finished.connect(on_finished)
        worker.failed.connect(self._on_job_failed)
        worker.cancelled.connect(self._on_job_cancelled)
        self._worker = worker
        self._job_kind = kind
        self._set_busy(True, description)
        self._thread = start_worker(worker, self, on_thread_finished=self._on_thread_finished)
        return True

    def _set_busy(self, busy: bool, message: str = "") -> None:
        if busy:  # QProgressBar.setValue repaints the window at once: only while it is hidden
            self.progress_bar.setValue(0)
        self.progress_bar.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.cancel_button.setEnabled(busy)
        self._update_actions()
        if busy:
            self.statusBar().showMessage(f"{message[:1].upper()}{message[1:]}…")

    @property
    def correction_actions(self) -> tuple[QAction, ...]:
        return (
            self.rename_action,
            self.shift_up_action,
            self.shift_down_action,
            self.delete_action,
            self.undo_action,
        )

    @Slot()
    def _update_actions(self) -> None:
        """Enable what makes sense now: nothing that starts a job or changes names while one runs."""
        if not hasattr(self, "vertebra_table"):
            return  # still building the window
        idle = self._worker is None and self._thread is None and not self._closed
        session = self.session
        has_vertebrae = bool(session.vertebrae)
        selected = session.selected_id != 0
        for action in (
            self.open_ct_action,
            self.open_dicom_action,
            self.open_labels_action,
            self.open_label_folder_action,
        ):
            action.setEnabled(idle)
        self.analyze_action.setEnabled(idle and session.ct is not None)
        self.export_action.setEnabled(idle and has_vertebrae)
        self.plan_action.setEnabled(idle and has_vertebrae and session.label_set is not None)
        self.rename_action.setEnabled(idle and selected)
        self.delete_action.setEnabled(idle and selected)
        self.shift_up_action.setEnabled(idle and has_vertebrae)
        self.shift_down_action.setEnabled(idle and has_vertebrae)
        self.undo_action.setEnabled(idle and bool(session.corrections))
        self.lesions_action.setEnabled(session.label_set is not None and session.label_set.lesion_mesh is not None)
        self.choose_series_action.setEnabled(idle and bool(self.other_ct_series()))

    @Slot(float, str)
    def _on_job_progress(self, fraction: float, message: str) -> None:
        self.progress_bar.setValue(int(round(1000 * min(max(fraction, 0.0), 1.0))))
        if message:
            prefix = {ANALYSIS: "Analysis: ", EXPORT: "Export: ", PLAN: "Planning: "}.get(self._job_kind, "")
            text = f"{prefix}{message}" if prefix else f"{message[:1].upper()}{message[1:]}"
            self.statusBar().showMessage(f"{text}…")

    @Slot(object)
    def _on_case_loaded(self, case: LoadedCase) -> None:
        if self._closed:
            return
        self.session.set_ct(case.ct, case.label_set)
        source = case.ct.metadata.get("source_path")
        if source:
            self._remember(str(source))
        self._after_load(case.ct, case.label_set)
        if self._analyze_after_load:
            self._next_job = self.analyze

    @Slot(object)
    def _on_labels_loaded(self, label_set: LabelSet) -> None:
        if self._closed:
            return
        if self.session.ct is None or not self.session.ct.same_grid(label_set.labels):
            return  # the CT changed meanwhile; these labels belong to the old one
        self.session.set_labels(label_set)
        self._after_load(self.session.ct, label_set)

    def _after_load(self, ct: Volume, label_set: LabelSet | None) -> None:
        if label_set is None:
            text = "CT loaded — press Analyze to find the vertebrae, or open a label map"
        else:
            names = [v.name for v in label_set.vertebrae]
            text = (
                f"{len(names)} vertebrae: {names[0]}–{names[-1]}"
                if names
                else "the label map has no vertebra"
            )
        for warning in ct.metadata.get("warnings", []):
            text += f" · {warning}"
        n_other = len(ct.metadata.get("other_ct_series") or [])
        if n_other:
            text += f" · this folder holds {n_other} more CT series: File → Choose series…"
        self.statusBar().showMessage(text)
        self.load_finished.emit()

    @Slot(object)
    def _on_analysis_done(self, outcome: AnalysisOutcome) -> None:
        if self._closed:
            return
        if self.session.ct is not self._job_ct:
            return  # the CT changed meanwhile; this analysis belongs to the old one
        # shown in a later pass of the event loop, so that the end of the worker thread and the
        # new scene are not handled in one go (each takes tens of ms with a software renderer)
        QTimer.singleShot(0, partial(self._show_analysis, outcome, self._job_ct))

    def _show_analysis(self, outcome: AnalysisOutcome, ct: Volume) -> None:
        if self._closed or self.session.ct is not ct:
            return
        result = outcome.result
        self.session.set_analysis(result, outcome.label_set)
        names = [v.name for v in self.session.vertebrae]
        text = f"{len(names)} vertebrae found: {names[0]}–{names[-1]}" if names else "No vertebra found"
        if result.qa:
            text += f" · {len(result.qa)} to check (see the vertebra panel)"
        seconds = sum(result.timings.values())
        self.statusBar().showMessage(f"{text} · {seconds:.1f} s on {result.device}")
        self.analysis_finished.emit()

    @Slot(object)
    def _on_export_done(self, result: Any) -> None:
        if self._closed:
            return
        self._last_export_dir = str(result.out_dir.parent)
        self.statusBar().showMessage(
            f"Bundle written to {result.out_dir}: {len(result.vertebrae)} vertebrae, "
            f"{len(self.session.corrections)} corrections, LPS mm"
        )
        self.export_finished.emit(result)

    @Slot(str)
    def _on_job_failed(self, message: str) -> None:
        if self._closed:
            return
        kind = self._job_kind
        error = self._worker.error if self._worker is not None else None
        if isinstance(error, WeightsError):
            self.statusBar().showMessage(f"Models not available: {error}")
            if self.show_dialogs:
                QMessageBox.warning(self, "SpineNav — models not available", f"{error}\n\n{_NO_MODELS_TEXT}")
        elif isinstance(error, InputError):
            self._report_input_error(error, kind)
        else:
            self.statusBar().showMessage(f"Internal error: {message}")
            if self.show_dialogs:
                QMessageBox.critical(
                    self,
                    "SpineNav — internal error",
                    f"Internal error: {message}\n\nDetails were written to {ERROR_LOG}.",
                )
        error = error if error is not None else RuntimeError(message)
        {LOAD: self.load_failed, ANALYSIS: self.analysis_failed, EXPORT: self.export_failed,
         PLAN: self.plan_failed}[kind].emit(error)

    def _report_input_error(self, error: InputError, kind: str = LOAD) -> None:
        self.statusBar().showMessage(f"Error: {error}")
        if self.show_dialogs:
            QMessageBox.warning(self, f"SpineNav — {_FAILURE_TITLES[kind]}", str(error))

    @Slot()
    def _on_job_cancelled(self) -> None:
        if not self._closed:
            what = {LOAD: "Loading", ANALYSIS: "Analysis", EXPORT: "Export", PLAN: "Planning"}[self._job_kind]
            self.statusBar().showMessage(f"{what} cancelled — nothing changed", 5000)
            self.job_cancelled.emit(self._job_kind)

    @Slot()
    def _on_thread_finished(self) -> None:
        thread, self._thread, self._worker = self._thread, None, None
        self._job_ct = None
        if thread is not None:
            thread.deleteLater()
        next_job, self._next_job = self._next_job, None
        if not self._closed:
            self._set_busy(False)
            if next_job is not None:  # in its own pass of the event loop, after the repaint
                QTimer.singleShot(0, next_job)

    # ---- menu slots ---------------------------------------------------------------------------
    @Slot()
    def _on_open_ct_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open CT file", self._last_dir, _IMAGE_FILTER)
        if path:
            self._last_dir = str(Path(path).parent)
            self.open_case(path)

    @Slot()
    def _on_open_dicom_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open DICOM folder", self._last_dir)
        if path:
            self._last_dir = path
            self.open_case(path)

    @Slot()
    def _on_open_labels_file(self) -> None:
        if self.session.ct is None:
            self._report_input_error(InputError(None, "open a CT first; labels are shown on their CT"))
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open vertebra labels", self._last_dir, _LABEL_FILTER)
        if path:
            self._last_dir = str(Path(path).parent)
            self.open_labels(path)

    @Slot()
    def _on_open_labels_folder(self) -> None:
        if self.session.ct is None:
            self._report_input_error(InputError(None, "open a CT first; labels are shown on their CT"))
            return
        path = QFileDialog.getExistingDirectory(self, "Open TotalSegmentator folder", self._last_dir)
        if path:
            self._last_dir = path
            self.open_labels(path)

    @Slot()
    def _on_save_screenshot(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save screenshot", str(Path(self._last_dir) / "spinenav.png"), "PNG images (*.png)"
        )
        if not path:
            return
        try:
            self.save_screenshot(path)
        except InputError as exc:
            self._report_input_error(exc)
        else:
            self.statusBar().showMessage(f"Saved {path}", 5000)

    @Slot()
    def _on_analyze(self) -> None:
        n = len(self.session.corrections)
        if n and self.session.vertebra_source == SOURCE_ANALYSIS and not self._confirm(
            "Analyze again",
            f"A new analysis replaces the current one and its {n} correction{'s' if n > 1 else ''}. Go on?",
        ):
            return
        self.analyze()

    @Slot()
    def _on_export(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export bundle to an empty folder", self._last_export_dir)
        if not folder:
            return
        target = self._confirm_export_target(Path(folder))
        if target is not None:
            self.export_bundle(target[0], force=target[1])

    def _confirm_export_target(self, folder: Path) -> tuple[Path, bool] | None:
        """The folder to write and whether to replace it; None when the user backs out.

        An empty or new folder is used as it is. An existing bundle is replaced only after a
        confirmation. Any other non-empty folder is never emptied: the bundle goes into a new
        subfolder instead, if the user agrees.
        """
        if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
            return folder, False
        if is_bundle(folder):  # the core's output-folder policy: --force replaces only a SpineNav bundle
            n = sum(1 for p in folder.rglob("*") if p.is_file())
            if self._confirm(
                "Replace bundle",
                f"{folder} holds a bundle already ({n} files). Replace it? Its files will be deleted once "
                "the new bundle is complete.",
            ):
                return folder, True
            return None
        case = Path(str(self.session.ct.metadata.get("source_path") or "case")).name if self.session.ct else "case"
        stem = case.split(".")[0] or "case"
        sub = folder / f"{stem}_spinenav"
        n = 2
        while sub.exists() and any(sub.iterdir()):
            sub, n = folder / f"{stem}_spinenav_{n}", n + 1
        if self._confirm(
            "Folder not empty",
            f"{folder} is not empty and is not a SpineNav bundle; it will not be touched. Write the bundle "
            f"into the new folder {sub.name} inside it?",
        ):
            return sub, False
        return None

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
    def _on_cancel_clicked(self) -> None:
        self.cancel_job()

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


def _dropped_path(mime: QMimeData) -> str | None:
    """The first local file or folder of a drop (a DICOM folder, a volume file), else None."""
    if not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile() and Path(url.toLocalFile()).exists():
            return url.toLocalFile()
    return None


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
