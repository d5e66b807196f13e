"""Import the computing modules before the window opens.

Python runs one thread at a time under its interpreter lock, and importing a module holds that
lock from start to end: torch's import alone holds it for over a second in ~0.15 s pieces. Done
lazily on a worker thread, the first Analyze would freeze the window in those pieces; done here,
before the event loop starts, it costs start-up time instead (about 2 s on a 2-core CPU).
"""

from __future__ import annotations

import gc
import importlib
import logging
import time

LOG = logging.getLogger("spinenav.gui")

COMPUTE_MODULES = (
    "torch",
    "SimpleITK",
    "inference.io",
    "inference.io.dicom",
    "inference.io.series",
    "inference.pipeline",
    "inference.segment",
    "inference.mesh",
    "inference.export",
    "inference.corrections",
    "inference.export.dicom_seg",
    "highdicom",
    "inference.planning",
    "vtkmodules.vtkFiltersCore",
)


def preload_compute_modules() -> float:
    """Import `COMPUTE_MODULES`; returns the seconds it took.

    A module that cannot be imported is logged and left for the job that needs it, which then
    reports the problem as its own error: preloading only moves work, it never stops the app.
    """
    t0 = time.perf_counter()
    for name in COMPUTE_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            LOG.warning("could not import %s before the window opened: %s", name, exc)
    seconds = time.perf_counter() - t0
    LOG.info("computing modules imported in %.1f s", seconds)
    return seconds


def freeze_startup_objects() -> int:
    """Exempt every object alive now from Python's cyclic garbage collector (`gc.freeze`); returns
    how many there are.

    The imports above leave about half a million objects (torch, VTK, pydicom); each full collection
    walks all of them, holding the interpreter lock, and the collections that the analysis's own
    allocations set off grew to 0.29 s (measured with `gc.callbacks`): the window's longest freeze
    (`benchmarks/bench_gui_responsiveness.py`: 225-310 ms before, 78-126 ms in 8 runs after, chest DICOM,
    2 cores).
    Modules, classes and the window live as long as the app, so nothing is lost by never scanning them
    again (reference counting still frees them); objects made later, the models and every case
    included, are collected as before. Call it once the window exists, before the event loop starts.
    """
    gc.collect()
    gc.freeze()
    count = gc.get_freeze_count()
    LOG.info("%d start-up objects exempted from garbage collection", count)
    return count
