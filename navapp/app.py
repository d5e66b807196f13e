"""``spinenav-gui [PATH] [--labels LABELS] [--screenshot FILE] [--self-test]`` (DESIGN §4).

Parses arguments, creates the QApplication and the main window, nothing more. With
``--screenshot`` the app loads the case, runs the analysis when no ``--labels`` are given and the
models are installed, renders, writes a PNG of the main window and exits: 0 on success, 2 with
one line on stderr (``error: <path>: <what to do>``) for bad input, 1 for missing or corrupt
model weights (``error: ...``, as ``spinenav analyze``) or an internal error. ``--self-test``
runs the whole workflow on the bundled sample CT in the window (load, analyse, plan screws, export
to a temporary folder, check the bundle) and exits 0 when every step worked: a check of an
installation that needs no person.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

SCREENSHOT_SIZE = (1600, 1000)
SCREENSHOT_TIMEOUT_S = 600
_SETTLE_MS = 300  # let layouts settle and every view paint once before grabbing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spinenav-gui",
        description="SpineNav desktop app: CT slice views, vertebra labels and 3D meshes (LPS mm).",
    )
    parser.add_argument("path", nargs="?", type=Path, help="CT: DICOM folder or file, NIfTI, NRRD or MHA")
    parser.add_argument(
        "--labels",
        type=Path,
        help="vertebra label map on the CT's grid: VerSe map, TotalSegmentator file or folder",
    )
    parser.add_argument(
        "--screenshot",
        type=Path,
        metavar="FILE",
        help="load, render, save a PNG of the main window to FILE and exit",
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="analyse the bundled sample CT, plan screws, export a bundle to a temporary folder; exit 0 if all worked",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the app; returns the process exit code (0 ok, 1 internal error, 2 bad input or usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage or help
        return exc.code if isinstance(exc.code, int) else 2
    if args.labels is not None and args.path is None:
        print(f"error: {args.labels}: --labels needs the CT they belong to; give PATH too", file=sys.stderr)
        return 2
    if not _display_available():
        print(
            "error: no display available; run under a desktop session or `xvfb-run -a spinenav-gui ...`",
            file=sys.stderr,
        )
        return 2

    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from .resources import icon_path
    from .views.main_window import APP_NAME, MainWindow
    from .workers.preload import freeze_startup_objects, preload_compute_modules

    preload_compute_modules()  # before the event loop: imports would freeze a shown window

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "spinenav-gui"])
    app.setApplicationName(APP_NAME)
    icon = icon_path()
    if icon is not None:
        app.setWindowIcon(QIcon(str(icon)))

    if args.self_test:
        return _run_self_test(app)

    if args.screenshot is not None:
        analyze, note = args.path is not None and args.labels is None, None
        if analyze:
            from .workers.analysis import weights_installed

            analyze = weights_installed()
            if not analyze:
                note = "note: no model weights installed; the screenshot shows the CT without analysis"
        window = MainWindow(show_dialogs=False, show_timings=False)
        freeze_startup_objects()
        return _run_screenshot(app, window, args.path, args.labels, args.screenshot, analyze=analyze, note=note)

    window = MainWindow()
    freeze_startup_objects()  # before the event loop, with the imports above
    window.show()
    if args.path is not None:
        window.open_case(args.path, args.labels)
    try:
        return int(app.exec())
    finally:
        window.shutdown()


def _run_screenshot(
    app, window, path: Path | None, labels: Path | None, out: Path, *, analyze: bool = False, note: str | None = None
) -> int:
    """Load (and analyse), render, save the PNG, quit; errors become one stderr line and an exit code.

    ``note`` is printed on stderr once the CT is loaded (why no analysis was run).
    """
    from PySide6.QtCore import QTimer

    from inference.errors import InputError, SpineNavError

    def capture() -> None:
        try:
            window.save_screenshot(out)
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            app.exit(2)
        else:
            app.exit(0)

    def settle_and_capture() -> None:
        QTimer.singleShot(_SETTLE_MS, capture)

    def on_loaded() -> None:
        if note:
            print(note, file=sys.stderr)
        if not analyze:  # else the analysis follows the loading, and its outcome ends the run
            settle_and_capture()

    def on_failed(error: BaseException) -> None:
        if isinstance(error, InputError):
            print(f"error: {error}", file=sys.stderr)
            app.exit(2)
        elif isinstance(error, SpineNavError):  # missing or corrupt weights
            print(f"error: {error}", file=sys.stderr)
            app.exit(1)
        else:
            print(f"internal error: {error}", file=sys.stderr)
            app.exit(1)

    def on_timeout() -> None:
        print(f"internal error: no screenshot after {SCREENSHOT_TIMEOUT_S} s", file=sys.stderr)
        app.exit(1)

    window.load_finished.connect(on_loaded)
    window.load_failed.connect(on_failed)
    window.analysis_finished.connect(settle_and_capture)
    window.analysis_failed.connect(on_failed)
    window.resize(*SCREENSHOT_SIZE)
    window.show()
    watchdog = QTimer(window)
    watchdog.setSingleShot(True)
    watchdog.timeout.connect(on_timeout)
    watchdog.start(SCREENSHOT_TIMEOUT_S * 1000)
    if path is None:
        QTimer.singleShot(0, settle_and_capture)
    else:
        QTimer.singleShot(0, lambda: window.open_case(path, labels, analyze=analyze))
    try:
        return int(app.exec())
    finally:
        watchdog.stop()
        window.close()
        window.deleteLater()


def _run_self_test(app) -> int:
    """Sample CT → analysis → screws → bundle, in a real window; one line per step on stdout."""
    import json
    import tempfile

    from PySide6.QtCore import QSettings, QTimer

    from .resources import assets_dir
    from .views.main_window import MainWindow

    sample = assets_dir() / "sample" / "abdomen_ct_3mm.nii.gz"
    tmp = Path(tempfile.mkdtemp(prefix="spinenav-self-test-"))
    window = MainWindow(show_dialogs=False, settings=QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat))
    outcome = {"code": 1}

    def fail(step: str, why: object) -> None:
        print(f"self-test FAILED at {step}: {why}", file=sys.stderr)
        app.exit(1)

    def when_idle(step: str, start) -> None:
        """Start the next job once the previous one's worker thread is gone."""
        if window.is_busy():
            QTimer.singleShot(50, lambda: when_idle(step, start))
        elif not start():
            fail(step, "could not start")

    def analysed() -> None:
        names = [v.name for v in window.session.vertebrae]
        print(f"analysis: {len(names)} vertebrae ({', '.join(names)}), masks: {window.session.label_set is not None}")
        if len(names) < 5 or window.session.label_set is None:
            fail("analysis", "fewer than 5 vertebrae or no masks on the sample CT")
        else:
            when_idle("planning", window.plan_screws)

    def planned() -> None:
        screws = window.session.screw_plan.screws if window.session.screw_plan else []
        print(f"planning: {len(screws)} screws")
        if not screws:
            fail("planning", "no screw proposed")
        else:
            when_idle("export", lambda: window.export_bundle(tmp / "bundle"))

    def exported(result) -> None:
        manifest = json.loads((result.out_dir / "manifest.json").read_text())
        paths = {f["path"] for f in manifest["files"]}
        needed = {"labels.nii.gz", "vertebrae.json", "trajectories.json"}
        if not needed <= paths or not any(p.startswith("meshes/") for p in paths):
            fail("export", f"the bundle lacks {sorted(needed - paths)}")
            return
        print(f"export: {len(paths)} files in a temporary bundle (LPS mm), removed after the check")
        print("self-test passed")
        outcome["code"] = 0
        app.exit(0)

    window.load_failed.connect(lambda e: fail("loading", e))
    window.analysis_finished.connect(analysed)
    window.analysis_failed.connect(lambda e: fail("analysis", e))
    window.plan_finished.connect(planned)
    window.plan_failed.connect(lambda e: fail("planning", e))
    window.export_finished.connect(exported)
    window.export_failed.connect(lambda e: fail("export", e))
    window.resize(*SCREENSHOT_SIZE)
    window.show()
    watchdog = QTimer(window)
    watchdog.setSingleShot(True)
    watchdog.timeout.connect(lambda: fail("timeout", f"not done after {SCREENSHOT_TIMEOUT_S} s"))
    watchdog.start(SCREENSHOT_TIMEOUT_S * 1000)
    QTimer.singleShot(0, lambda: window.open_case(sample, analyze=True))
    try:
        code = int(app.exec())
    finally:
        watchdog.stop()
        window.close()
        window.deleteLater()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return code if code else outcome["code"]


def _display_available() -> bool:
    """False on a Linux box with no X11/Wayland display and no explicit Qt platform."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))


if __name__ == "__main__":
    sys.exit(main())
