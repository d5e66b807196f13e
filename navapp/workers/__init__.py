"""Background jobs: a Qt worker around core callables, and the jobs it runs (load, analyse, export)."""

from .analysis import AnalysisOutcome, AnalysisRunner, PipelineFactory, analyze_for_display
from .export import export_bundle
from .loading import LoadedCase, load_case, load_labels
from .planning import plan_screws
from .worker import Worker, start_worker

__all__ = [
    "AnalysisOutcome",
    "AnalysisRunner",
    "LoadedCase",
    "PipelineFactory",
    "Worker",
    "analyze_for_display",
    "export_bundle",
    "load_case",
    "load_labels",
    "plan_screws",
    "start_worker",
]
