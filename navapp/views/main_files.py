"""The main window's file handling: open dialogs, recent files, drag and drop, the DICOM series chooser,
screenshots and the choice of an export folder (the core's output-folder policy, asked as a question).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from PySide6.QtCore import QMimeData
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QInputDialog,
)

from inference.errors import InputError
from inference.export.atomic import is_bundle
from inference.io.image_file import IMAGE_SUFFIXES

from ..workers import (
    load_case,
    load_labels,
)
from .main_jobs import LOAD

RECENT_KEY = "recent_cts"
MAX_RECENT = 8
_IMAGE_FILTER = "CT images (" + " ".join(f"*{s}" for s in IMAGE_SUFFIXES) + " *.dcm);;All files (*)"
_LABEL_FILTER = "Label maps (" + " ".join(f"*{s}" for s in IMAGE_SUFFIXES) + ");;All files (*)"


class FileHandling:
    """Mixin of `navapp.views.main_window.MainWindow`: what the window does with files and folders.

    No ``@Slot`` here: PySide6 aborts on slots declared outside the QObject subclass; signals reach
    these methods as plain callables.
    """

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

    def _on_open_ct_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open CT file", self._last_dir, _IMAGE_FILTER)
        if path:
            self._last_dir = str(Path(path).parent)
            self.open_case(path)

    def _on_open_dicom_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open DICOM folder", self._last_dir)
        if path:
            self._last_dir = path
            self.open_case(path)

    def _on_open_labels_file(self) -> None:
        if self.session.ct is None:
            self._report_input_error(InputError(None, "open a CT first; labels are shown on their CT"))
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open vertebra labels", self._last_dir, _LABEL_FILTER)
        if path:
            self._last_dir = str(Path(path).parent)
            self.open_labels(path)

    def _on_open_labels_folder(self) -> None:
        if self.session.ct is None:
            self._report_input_error(InputError(None, "open a CT first; labels are shown on their CT"))
            return
        path = QFileDialog.getExistingDirectory(self, "Open TotalSegmentator folder", self._last_dir)
        if path:
            self._last_dir = path
            self.open_labels(path)

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


def _dropped_path(mime: QMimeData) -> str | None:
    """The first local file or folder of a drop (a DICOM folder, a volume file), else None."""
    if not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile() and Path(url.toLocalFile()).exists():
            return url.toLocalFile()
    return None
