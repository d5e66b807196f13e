"""Benchmark: the longest event-loop stall of the desktop app while it loads and analyses a CT.

A 5 ms QTimer records the gaps between its ticks while the window opens the CT (the chest DICOM
beside the repository when present, else the sample CT), runs Analyze with the shipped models and
shows the result. A gap far above 5 ms is time the window could not repaint or react. Needs a
display: run under ``xvfb-run -a``.

Usage: xvfb-run -a python benchmarks/bench_gui_responsiveness.py [CT]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_CTS = [ROOT.parent / "shared/data/real/chest_ct_dicom_1mm/dicom", ROOT / "assets/sample/abdomen_ct_3mm.nii.gz"]


def main() -> int:
    if not os.environ.get("DISPLAY"):
        print("skipped: no display (run under xvfb-run -a)")
        return 0
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from navapp.views.main_window import MainWindow
    from navapp.workers.preload import freeze_startup_objects, preload_compute_modules

    preload_seconds = preload_compute_modules()  # as `spinenav-gui` does before its window opens

    path = Path(sys.argv[1]) if len(sys.argv) > 1 else next(p for p in DEFAULT_CTS if p.exists())
    app = QApplication.instance() or QApplication([])
    settings = QSettings(str(Path("/tmp") / "spinenav-bench.ini"), QSettings.Format.IniFormat)
    window = MainWindow(show_dialogs=False, settings=settings)
    freeze_startup_objects()  # as `spinenav-gui` does
    window.resize(1400, 900)
    window.show()
    t_paint = time.perf_counter()
    app.processEvents()  # the first paint (OpenGL context, shaders) is start-up, reported apart
    first_paint = time.perf_counter() - t_paint
    gaps: list[tuple[float, str]] = []
    last = [time.perf_counter()]
    phase = ["loading"]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append((now - last[0], phase[0]))
        last[0] = now

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(tick)
    timer.start()
    done = []
    window.load_finished.connect(lambda: phase.__setitem__(0, "analysis"))  # the window starts the analysis next
    window.analysis_finished.connect(lambda: (phase.__setitem__(0, "shown"), QTimer.singleShot(1500, app.quit),
                                              done.append(time.perf_counter())))
    window.analysis_failed.connect(lambda *_: app.quit())
    t0 = time.perf_counter()
    window.open_case(path, analyze=True)
    QTimer.singleShot(600_000, app.quit)  # a watchdog: never hang a benchmark run
    app.exec()
    timer.stop()
    window.close()
    if not done:
        print(f"{path}: the analysis did not finish")
        return 1
    print(f"  start-up: computing modules imported in {preload_seconds:.1f} s, first paint {1000 * first_paint:.0f} ms")
    for name in ("loading", "analysis", "shown"):
        worst = max((g for g, p in gaps if p == name), default=0.0)
        print(f"  {name:<9} longest stall {1000 * worst:6.0f} ms")
    print(f"{path.name if path.name != 'dicom' else path.parent.name}: open + analyse + show {done[0] - t0:.1f} s; "
          f"longest event-loop stall {1000 * max(g for g, _ in gaps):.0f} ms (goal < 100 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
