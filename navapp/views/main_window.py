"""Main window: four views (axial, 3D, sagittal, coronal), the vertebra table, menus and status bar.

Loading runs on a worker thread (`navapp.workers`); its outcome comes back as signals handled
here, on the GUI thread. Errors are translated in one place, `_on_job_failed`: bad input
(`InputError`) becomes a warning dialog with its one-line message, anything else an
"internal error" dialog — the app never goes down with a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, QThread, Signal, Slot
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QWidget,
)

from inference import __version__
from inference.errors import InputError
from inference.io.image_file import IMAGE_SUFFIXES
from inference.volume import Volume

from ..display import WINDOW_PRESETS
from ..state.session import LabelSet, Session
from ..workers import LoadedCase, Worker, load_case, load_labels, start_worker
from ..workers.worker import ERROR_LOG
from .slice_view import SliceView
from .vertebra_table import VertebraTable
from .view3d import View3D

APP_NAME = "SpineNav"
_IMAGE_FILTER = "CT images (" + " ".join(f"*{s}" for s in IMAGE_SUFFIXES) + " *.dcm);;All files (*)"
_LABEL_FILTER = "Label maps (" + " ".join(f"*{s}" for s in IMAGE_SUFFIXES) + ");;All files (*)"


class MainWindow(QMainWindow):
    """The SpineNav desktop window.

    Parameters
    ----------
    show_dialogs : bool
        False for unattended runs (``--screenshot``): errors go to the status bar and
        `load_failed` only, never to a modal dialog.

    Signals
    -------
    load_finished()
        A CT (and its labels, when asked for) is shown.
    load_failed(object)
        Loading stopped with this exception (`InputError` for bad input); the old case stays.
    """

    load_finished = Signal()
    load_failed = Signal(object)

    def __init__(self, *, show_dialogs: bool = True, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.show_dialogs = show_dialogs
        self.session = Session(self)
        self._worker: Worker | None = None
        self._thread: QThread | None = None
        self._closed = False
        self._last_dir = str(Path.cwd())

        self.setObjectName("main_window")
        self.setWindowTitle(APP_NAME)
        self.resize(1400, 900)
        self._build_views()
        self._build_actions()
        self._build_status_bar()
        self._build_menus_and_toolbar()
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

        self.vertebra_table = VertebraTable(self.session)
        dock = QDockWidget("Vertebrae", self)
        dock.setObjectName("vertebra_dock")
        dock.setWidget(self.vertebra_table)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.resizeDocks([dock], [330], Qt.Orientation.Horizontal)
        self.session.ct_changed.connect(self._on_ct_changed)

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
            self.screenshot_action,
            None,
            self.quit_action,
        ):
            file_menu.addSeparator() if a is None else file_menu.addAction(a)
        view_menu = self.menuBar().addMenu("&View")
        for a in self.window_actions.values():
            view_menu.addAction(a)
        view_menu.addSeparator()
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
            *self.window_actions.values(),
            None,
            self.reset_camera_action,
        ):
            toolbar.addSeparator() if a is None else toolbar.addAction(a)

    # ---- public API (menus, command line, tests) ----------------------------------------------
    def open_case(self, ct_path: str | Path, labels_path: str | Path | None = None) -> bool:
        """Load a CT and optionally its label map in the background; False when busy."""
        job = partial(load_case, Path(ct_path), None if labels_path is None else Path(labels_path))
        return self._start_job(job, "loading CT", self._on_case_loaded)

    def open_labels(self, labels_path: str | Path) -> bool:
        """Load a vertebra label map for the current CT in the background; False when busy or no CT."""
        ct = self.session.ct
        if ct is None:
            self._report_input_error(InputError(labels_path, "open a CT first; labels are shown on their CT"))
            return False
        return self._start_job(
            partial(load_labels, Path(labels_path), ct), "loading labels", self._on_labels_loaded
        )

    def save_screenshot(self, path: str | Path) -> None:
        """Write a PNG of the whole window; raises `InputError` when the file cannot be written."""
        path = Path(path)
        self.view3d.render_scene()
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
            self.statusBar().showMessage("Cancelling…")

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
        self, job: Callable[..., Any], description: str, on_finished: Callable[[Any], None]
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
        self._set_busy(True, description)
        self._thread = start_worker(worker, self, on_thread_finished=self._on_thread_finished)
        return True

    def _set_busy(self, busy: bool, message: str = "") -> None:
        self.progress_bar.setValue(0)
        self.progress_bar.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.cancel_button.setEnabled(busy)
        for action in self._job_actions:
            action.setEnabled(not busy)
        if busy:
            self.statusBar().showMessage(f"{message[:1].upper()}{message[1:]}…")

    @property
    def _job_actions(self) -> tuple[QAction, ...]:
        return (
            self.open_ct_action,
            self.open_dicom_action,
            self.open_labels_action,
            self.open_label_folder_action,
        )

    @Slot(float, str)
    def _on_job_progress(self, fraction: float, message: str) -> None:
        self.progress_bar.setValue(int(round(1000 * min(max(fraction, 0.0), 1.0))))
        if message:
            self.statusBar().showMessage(f"{message[:1].upper()}{message[1:]}…")

    @Slot(object)
    def _on_case_loaded(self, case: LoadedCase) -> None:
        if self._closed:
            return
        self.session.set_ct(case.ct, case.label_set)
        self._after_load(case.ct, case.label_set)

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
            text = "CT loaded — no vertebra labels (File → Open labels…)"
        else:
            names = [v.name for v in label_set.vertebrae]
            text = (
                f"{len(names)} vertebrae: {names[0]}–{names[-1]}"
                if names
                else "the label map has no vertebra"
            )
        for warning in ct.metadata.get("warnings", []):
            text += f" · {warning}"
        self.statusBar().showMessage(text)
        self.load_finished.emit()

    @Slot(str)
    def _on_job_failed(self, message: str) -> None:
        if self._closed:
            return
        error = self._worker.error if self._worker is not None else None
        if isinstance(error, InputError):
            self._report_input_error(error)
        else:
            self.statusBar().showMessage(f"Internal error: {message}")
            if self.show_dialogs:
                QMessageBox.critical(
                    self,
                    "SpineNav — internal error",
                    f"Internal error: {message}\n\nDetails were written to {ERROR_LOG}.",
                )
        self.load_failed.emit(error if error is not None else RuntimeError(message))

    def _report_input_error(self, error: InputError) -> None:
        self.statusBar().showMessage(f"Error: {error}")
        if self.show_dialogs:
            QMessageBox.warning(self, "SpineNav — cannot open", str(error))

    @Slot()
    def _on_job_cancelled(self) -> None:
        if not self._closed:
            self.statusBar().showMessage("Cancelled — nothing changed", 5000)

    @Slot()
    def _on_thread_finished(self) -> None:
        thread, self._thread, self._worker = self._thread, None, None
        if thread is not None:
            thread.deleteLater()
        if not self._closed:
            self._set_busy(False)

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

    @Slot(float, float)
    def _on_window_changed(self, width: float, level: float) -> None:
        for name, action in self.window_actions.items():
            action.setChecked(WINDOW_PRESETS[name] == (width, level))


def _ct_summary(ct: Volume, obliquity_deg: float) -> str:
    """One status-bar line: grid size, spacing, series."""
    md = ct.metadata
    size = "×".join(str(s) for s in ct.size)
    spacing = "×".join(f"{s:.3g}" for s in ct.spacing)
    series = md.get("series_description") or Path(md.get("source_path") or "").name
    parts = [f"{size} voxels", f"{spacing} mm"]
    if series:
        parts.append(str(series))
    uid = md.get("series_uid")
    if uid:
        parts.append(f"series …{str(uid)[-12:]}")
    if obliquity_deg > 0.5:
        parts.append(f"oblique {obliquity_deg:.1f}° (shown on the voxel grid)")
    return "  ·  ".join(parts)
