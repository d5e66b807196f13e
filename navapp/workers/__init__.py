"""Background jobs: a Qt worker around core callables, and the jobs it runs (load, analyse, export)."""

from .analysis import AnalysisRunner, PipelineFactory
from .export import export_bundle
from .loading import LoadedCase, load_case, load_labels
from .worker import Worker, start_worker

__all__ = [
    "AnalysisRunner",
    "LoadedCase",
    "PipelineFactory",
    "Worker",
    "export_bundle",
    "load_case",
    "load_labels",
    "start_worker",
]
