"""Progress reporting and cancellation shared by every long-running stage.

A stage takes ``progress: ProgressCallback | None`` and ``cancel: CancelToken | None`` as keyword
arguments, calls ``progress(fraction, message)`` with ``fraction`` in [0, 1], and calls
``cancel.raise_if_cancelled()`` between units of work. The CLI turns progress into a terminal bar,
the GUI worker into Qt signals; no stage knows which.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .errors import CancelledError

ProgressCallback = Callable[[float, str], None]


def _ignore(fraction: float, message: str) -> None:
    pass


class CancelToken:
    """Thread-safe cancel flag: the GUI thread sets it, the worker checks it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise CancelledError("cancelled by the user")


def check_cancel(cancel: CancelToken | None) -> None:
    """Raise `CancelledError` when ``cancel`` is set; a ``None`` token never cancels."""
    if cancel is not None:
        cancel.raise_if_cancelled()


def report(progress: ProgressCallback | None) -> ProgressCallback:
    """Return a callable progress function (a no-op for ``None``)."""
    return progress if progress is not None else _ignore


def sub_progress(progress: ProgressCallback | None, start: float, stop: float) -> ProgressCallback:
    """Map a sub-stage's [0, 1] onto [start, stop] of the parent's progress."""
    parent = report(progress)

    def _sub(fraction: float, message: str) -> None:
        parent(start + (stop - start) * min(max(fraction, 0.0), 1.0), message)

    return _sub
