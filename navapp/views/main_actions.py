"""The main window's actions, menus and toolbar, and which of them are enabled in the current state.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence

from inference.corrections import DOWN, UP

from ..display import WINDOW_PRESETS
from .view3d import STANDARD_VIEWS


class Actions:
    """Mixin of `navapp.views.main_window.MainWindow`: builds and updates its actions and menus.

    No ``@Slot`` here: PySide6 aborts on slots declared outside the QObject subclass; signals reach
    these methods as plain callables.
    """

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

    @property
    def correction_actions(self) -> tuple[QAction, ...]:
        return (
            self.rename_action,
            self.shift_up_action,
            self.shift_down_action,
            self.delete_action,
            self.undo_action,
        )

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
