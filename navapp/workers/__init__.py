"""Background jobs: a Qt worker around core callables, and the loading jobs it runs."""

from .loading import LoadedCase, load_case, load_labels
from .worker import Worker, start_worker

__all__ = ["LoadedCase", "Worker", "load_case", "load_labels", "start_worker"]
