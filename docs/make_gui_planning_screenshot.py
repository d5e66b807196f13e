"""Make docs/gui_planning.png: the app after Analyze and Plan screws on the sample CT (shipped models, CPU).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_gui_planning_screenshot.py

Opens the sample CT in the main window, analyses it, plans screws, selects the left L3 screw and
moves the crosshair to its middle so that the slices cut it, then saves a PNG of the window.
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

OUT = ROOT / "docs" / "gui_planning.png"


def main() -> int:
    app = QApplication.instance() or QApplication([])
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(show_dialogs=False, settings=settings)
    window.resize(1600, 1000)
    window.show()

    def when_idle(start) -> None:
        if window.is_busy():
            QTimer.singleShot(50, lambda: when_idle(start))
        else:
            start()

    def planned() -> None:
        screws = window.session.screw_plan.screws
        n = next((i for i, s in enumerate(screws) if s.level == "L3" and s.side == "left"), 0)
        window.session.select_screw(n)
        window.session.set_crosshair((screws[n].entry_lps + screws[n].target_lps) / 2)
        QTimer.singleShot(800, lambda: (window.save_screenshot(OUT), app.quit()))

    window.analysis_finished.connect(lambda: when_idle(window.plan_screws))
    window.plan_finished.connect(planned)
    for failed in (window.load_failed, window.analysis_failed, window.plan_failed):
        failed.connect(lambda error: (print(f"error: {error}", file=sys.stderr), app.exit(1)))
    QTimer.singleShot(0, lambda: window.open_case(ROOT / "assets/sample/abdomen_ct_3mm.nii.gz", analyze=True))
    code = app.exec()
    window.close()
    if code == 0:
        print(f"wrote {OUT}")
    return code


if __name__ == "__main__":
    sys.exit(main())
