"""Make the app's screenshots in docs/ (shipped models, CPU):

- docs/gui_planning.png: the sample CT after Analyze and Plan screws, the left L3 screw selected;
- docs/gui_chest_analysis.png and docs/gui_chest_planning.png: the 141-slice chest DICOM of
  ../shared/data/real after Analyze with T7 selected, and after Plan screws with the left T7 screw
  selected (skipped when that folder is absent).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_gui_screenshots.py

Each case opens in a fresh main window, is analysed and planned; the crosshair moves to the middle of
the selected screw so that the slices cut it. docs/gui_analysis.png (the sample after Analyze) comes from
`spinenav-gui CT --screenshot PNG`.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from navapp.views.main_window import MainWindow  # noqa: E402

SAMPLE = ROOT / "assets/sample/abdomen_ct_3mm.nii.gz"
CHEST = ROOT.parent / "shared/data/real/chest_ct_dicom_1mm/dicom"


def screenshots(app: QApplication, ct: Path, level: str, planned_png: Path, analysed_png: Path | None = None) -> int:
    """Open ``ct``, analyse it (with ``analysed_png``: select ``level`` and save that), plan screws, select
    ``level``'s left screw and save ``planned_png``; the event loop's exit code."""
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(show_dialogs=False, settings=settings, show_timings=False)
    window.resize(1600, 1000)
    window.show()

    def when_idle(then) -> None:
        if window.is_busy():
            QTimer.singleShot(50, lambda: when_idle(then))
        else:
            then()

    def analysed() -> None:
        if analysed_png is None:
            window.plan_screws()
            return
        shown = next((v for v in window.session.vertebrae if v.name == level), None)
        if shown is not None:  # the crosshair to its body centre: every slice cuts the spine there
            window.session.select_vertebra(shown.id)
        QTimer.singleShot(800, lambda: (window.save_screenshot(analysed_png), print(f"wrote {analysed_png}"),
                                        window.plan_screws()))

    def planned() -> None:
        screws = window.session.screw_plan.screws
        n = next((i for i, s in enumerate(screws) if s.level == level and s.side == "left"), 0)
        window.session.select_screw(n)
        window.session.set_crosshair((screws[n].entry_lps + screws[n].target_lps) / 2)
        QTimer.singleShot(800, lambda: (window.save_screenshot(planned_png), app.quit()))

    window.analysis_finished.connect(lambda: QTimer.singleShot(800, lambda: when_idle(analysed)))
    window.plan_finished.connect(planned)
    for failed in (window.load_failed, window.analysis_failed, window.plan_failed):
        failed.connect(lambda error: (print(f"error: {error}", file=sys.stderr), app.exit(1)))
    QTimer.singleShot(0, lambda: window.open_case(ct, analyze=True))
    code = app.exec()
    window.close()
    if code == 0:
        print(f"wrote {planned_png}")
    return code


def main() -> int:
    app = QApplication.instance() or QApplication([])
    code = screenshots(app, SAMPLE, "L3", ROOT / "docs/gui_planning.png")
    if code == 0 and CHEST.is_dir():
        code = screenshots(app, CHEST, "T7", ROOT / "docs/gui_chest_planning.png", ROOT / "docs/gui_chest_analysis.png")
    elif code == 0:
        print(f"skipped the chest DICOM screenshots: {CHEST} is not there")
    return code


if __name__ == "__main__":
    sys.exit(main())
