"""Run a long job off the GUI thread and report through Qt signals (STYLE habit 4).

The job is a plain callable ``fn(progress=..., cancel=...)`` from the computing core; the
`Worker` turns its ``progress(fraction, message)`` calls into a Qt signal, gives it a
`CancelToken`, and translates its outcome into exactly one of ``finished``, ``failed`` or
``cancelled``, followed by ``done``. Widgets and VTK are only touched by the slots connected to
these signals, which run on the GUI thread.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from inference.errors import CancelledError, SpineNavError
from inference.progress import CancelToken, ProgressCallback

Job = Callable[..., Any]
"""``fn(*, progress: ProgressCallback, cancel: CancelToken) -> result``."""

PROGRESS_INTERVAL_S = 0.1
"""Shortest time between two progress reports with the same message (see `Worker._report`)."""

ERROR_LOG = Path(tempfile.gettempdir()) / "spinenav-gui-error.log"


class Worker(QObject):
    """Runs one job once, on whatever thread it lives in (see `start_worker`).

    Signals
    -------
    progress(float, str)
        Fraction done in [0, 1] and a short message.
    finished(object)
        The job's return value.
    failed(str)
        One-line message; ``error`` holds the exception: a `SpineNavError` raised on purpose
        (`InputError` for bad input, `WeightsError` for missing models), or anything else, an
        internal error whose traceback went to `ERROR_LOG`.
    cancelled()
        The job stopped at a cancel point.
    done()
        Emitted last, whatever the outcome.
    """

    progress = Signal(float, str)
    finished = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    done = Signal()

    def __init__(self, fn: Job, *, description: str = "working") -> None:
        super().__init__()
        self._fn = fn
        self.description = description
        self.cancel_token = CancelToken()
        self.error: BaseException | None = None
        self._last_message: str | None = None
        self._last_emit = 0.0

    def cancel(self) -> None:
        """Ask the job to stop at its next cancel point (thread-safe)."""
        self.cancel_token.cancel()

    def _report(self, fraction: float, message: str) -> None:
        # every emission is one queued call on the GUI thread, and a reader or filter can report
        # thousands of times a second: the bar gets a new message at once, the same message's
        # fraction at most every PROGRESS_INTERVAL_S
        now = time.monotonic()
        message = str(message)
        if message == self._last_message and now - self._last_emit < PROGRESS_INTERVAL_S and fraction < 1.0:
            return
        self._last_message, self._last_emit = message, now
        self.progress.emit(float(fraction), message)

    @Slot()
    def run(self) -> None:
        progress: ProgressCallback = self._report
        try:
            result = self._fn(progress=progress, cancel=self.cancel_token)
        except CancelledError:
            self.cancelled.emit()
        except SpineNavError as exc:  # typed errors carry a readable one-line message already
            self.error = exc
            self.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - the GUI shows it; a worker must never take the app down
            self.error = exc
            _log_traceback()
            self.failed.emit(f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        else:
            self.finished.emit(result)
        finally:
            self.done.emit()


def _log_traceback() -> None:
    try:
        ERROR_LOG.write_text(traceback.format_exc())
    except OSError:
        pass


def start_worker(
    worker: Worker, parent: QObject | None = None, *, on_thread_finished: Callable[[], None] | None = None
) -> QThread:
    """Move ``worker`` to a new thread and start it; the thread quits when the job is done.

    ``on_thread_finished`` is connected before the thread starts, so it cannot be missed. The
    caller keeps references to worker and thread until then and must ``wait()`` on the thread
    before the application quits (`MainWindow` does this when it closes).
    """
    thread = QThread(parent)
    thread.setObjectName(f"spinenav-{worker.description}")
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    # direct: QThread.quit is thread-safe, and the thread must end even while the GUI thread waits on it
    worker.done.connect(thread.quit, Qt.ConnectionType.DirectConnection)
    if on_thread_finished is not None:
        thread.finished.connect(on_thread_finished)
    thread.start()
    return thread
