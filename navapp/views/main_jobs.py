"""The main window's job control: loading, analysis, export and planning on a worker thread, one job at a
time, with progress, Cancel, and every outcome (done, failed, cancelled) handled on the GUI thread.

Errors are translated in one place, `_on_job_failed`: bad input (`InputError`) and missing models
(`WeightsError`) become a warning dialog with their one-line message, anything else an "internal
error" dialog: the app never goes down with a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QMessageBox,
)

from inference.errors import InputError, WeightsError
from inference.volume import Volume

from ..state.session import SOURCE_ANALYSIS, LabelSet, ScrewPlan
from ..workers import (
    AnalysisOutcome,
    LoadedCase,
    Worker,
    analyze_for_display,
    export_bundle,
    plan_screws,
    start_worker,
)
from ..workers.worker import ERROR_LOG

LOAD, ANALYSIS, EXPORT, PLAN = "load", "analysis", "export", "plan"
"""Job kinds: each has its own outcome signals and dialog titles."""
_FAILURE_TITLES = {LOAD: "cannot open", ANALYSIS: "cannot analyse", EXPORT: "cannot export", PLAN: "cannot plan"}
_NO_MODELS_TEXT = "Viewing, label maps and export keep working; the analysis needs the model weights."


class JobControl:
    """Mixin of `navapp.views.main_window.MainWindow`: starts jobs and handles their outcomes.

    No ``@Slot`` here: PySide6 aborts on slots declared outside the QObject subclass; signals reach
    these methods as plain callables.
    """

    def analyze(self) -> bool:
        """Find and name the vertebrae of the current CT in the background; False when busy or no CT.

        The pipeline is created on the first run (on the worker thread) and reused afterwards.
        """
        ct = self.session.ct
        if ct is None:
            self._report_input_error(InputError(None, "open a CT first; the analysis runs on the CT shown"))
            return False
        job = partial(analyze_for_display, self.analysis_runner, ct)
        started = self._start_job(job, "analysis", ANALYSIS, self._on_analysis_done)
        if started:
            self._job_ct = ct
        return started

    def export_bundle(self, out_dir: str | Path, *, force: bool = False) -> bool:
        """Write the bundle of the shown vertebrae, corrections applied, in the background.

        An analysis gives its own full bundle (centers and names only when it ran without
        segmentation), a label map the full one (meshes, label map). A non-empty ``out_dir`` is
        refused (an error dialog) unless ``force``. False when busy or when there is nothing to export.
        """
        session = self.session
        if session.ct is None or session.vertebra_source is None:
            self._report_input_error(
                InputError(out_dir, "nothing to export yet; run Analyze or open a label map first"), EXPORT
            )
            return False
        job = partial(
            export_bundle,
            Path(out_dir),
            ct=session.ct,
            analysis=session.analysis,
            labels=None if session.analysis is not None else session.labels,
            id_map=session.id_map,
            corrections=session.corrections,
            screws=list(session.screw_plan.screws) if session.screw_plan is not None else [],
            not_planned=dict(session.screw_plan.not_planned) if session.screw_plan is not None else {},
            force=force,
        )
        return self._start_job(job, "export", EXPORT, self._on_export_done)

    def plan_screws(self) -> bool:
        """Propose screws on the shown masks (names as corrected) in the background; False when busy or no masks."""
        session = self.session
        if session.label_set is None or not session.vertebrae:
            self._report_input_error(InputError(None, "open a label map or analyse the CT first: screws are "
                                                "planned on vertebra masks"), PLAN)
            return False
        job = partial(plan_screws, session.label_set.labels, session.id_map, ct=session.ct)
        return self._start_job(job, "planning screws", PLAN, self._on_plan_done)

    def _on_plan_done(self, plan: ScrewPlan) -> None:
        if self._closed:
            return
        self.session.set_screw_plan(plan)
        self.screw_dock.raise_()
        n_ab = sum(s.grade in "AB" for s in plan.screws)
        text = f"{len(plan.screws)} screws proposed, {n_ab} grade A or B: check each one"
        if plan.not_planned:
            text += f" · not planned: {', '.join(plan.not_planned)} (see the Screws panel)"
        self.statusBar().showMessage(text)
        self.plan_finished.emit()

    def is_busy(self) -> bool:
        """True while a background job (or its thread) is running."""
        return self._thread is not None

    def cancel_job(self) -> None:
        """Ask the running job to stop at its next cancel point."""
        if self._worker is not None:
            self._worker.cancel()
            self.cancel_button.setEnabled(False)
            self.statusBar().showMessage("Cancelling… (the running step finishes first)")

    def _start_job(
        self, job: Callable[..., Any], description: str, kind: str, on_finished: Callable[[Any], None]
    ) -> bool:
        if self._closed:
            return False
        if self._thread is not None:
            self.statusBar().showMessage("Busy — wait for the current job or cancel it", 5000)
            return False
        worker = Worker(job, description=description)
        worker.progress.connect(self._on_job_progress)
        worker.finished.connect(on_finished)
        worker.failed.connect(self._on_job_failed)
        worker.cancelled.connect(self._on_job_cancelled)
        self._worker = worker
        self._job_kind = kind
        self._set_busy(True, description)
        self._thread = start_worker(worker, self, on_thread_finished=self._on_thread_finished)
        return True

    def _set_busy(self, busy: bool, message: str = "") -> None:
        if busy:  # QProgressBar.setValue repaints the window at once: only while it is hidden
            self.progress_bar.setValue(0)
        self.progress_bar.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.cancel_button.setEnabled(busy)
        self._update_actions()
        if busy:
            self.statusBar().showMessage(f"{message[:1].upper()}{message[1:]}…")

    def _on_job_progress(self, fraction: float, message: str) -> None:
        self.progress_bar.setValue(int(round(1000 * min(max(fraction, 0.0), 1.0))))
        if message:
            prefix = {ANALYSIS: "Analysis: ", EXPORT: "Export: ", PLAN: "Planning: "}.get(self._job_kind, "")
            text = f"{prefix}{message}" if prefix else f"{message[:1].upper()}{message[1:]}"
            self.statusBar().showMessage(f"{text}…")

    def _on_case_loaded(self, case: LoadedCase) -> None:
        if self._closed:
            return
        self.session.set_ct(case.ct, case.label_set)
        source = case.ct.metadata.get("source_path")
        if source:
            self._remember(str(source))
        self._after_load(case.ct, case.label_set)
        if self._analyze_after_load:
            self._next_job = self.analyze

    def _on_labels_loaded(self, label_set: LabelSet) -> None:
        if self._closed:
            return
        if self.session.ct is None or not self.session.ct.same_grid(label_set.labels):
            return  # the CT changed meanwhile; these labels belong to the old one
        self.session.set_labels(label_set)
        self._after_load(self.session.ct, label_set)

    def _after_load(self, ct: Volume, label_set: LabelSet | None) -> None:
        if label_set is None:
            text = "CT loaded — press Analyze to find the vertebrae, or open a label map"
        else:
            names = [v.name for v in label_set.vertebrae]
            text = (
                f"{len(names)} vertebrae: {names[0]}–{names[-1]}"
                if names
                else "the label map has no vertebra"
            )
        for warning in ct.metadata.get("warnings", []):
            text += f" · {warning}"
        n_other = len(ct.metadata.get("other_ct_series") or [])
        if n_other:
            text += f" · this folder holds {n_other} more CT series: File → Choose series…"
        self.statusBar().showMessage(text)
        self.load_finished.emit()

    def _on_analysis_done(self, outcome: AnalysisOutcome) -> None:
        if self._closed:
            return
        if self.session.ct is not self._job_ct:
            return  # the CT changed meanwhile; this analysis belongs to the old one
        # shown in a later pass of the event loop, so that the end of the worker thread and the
        # new scene are not handled in one go (each takes tens of ms with a software renderer)
        QTimer.singleShot(0, partial(self._show_analysis, outcome, self._job_ct))

    def _show_analysis(self, outcome: AnalysisOutcome, ct: Volume) -> None:
        if self._closed or self.session.ct is not ct:
            return
        result = outcome.result
        self.session.set_analysis(result, outcome.label_set)
        names = [v.name for v in self.session.vertebrae]
        text = f"{len(names)} vertebrae found: {names[0]}–{names[-1]}" if names else "No vertebra found"
        if result.qa:
            text += f" · {len(result.qa)} to check (see the vertebra panel)"
        took = f"{sum(result.timings.values()):.1f} s " if self.show_timings else ""
        self.statusBar().showMessage(f"{text} · {took}on {result.device}")
        self.analysis_finished.emit()

    def _on_export_done(self, result: Any) -> None:
        if self._closed:
            return
        self._last_export_dir = str(result.out_dir.parent)
        self.statusBar().showMessage(
            f"Bundle written to {result.out_dir}: {len(result.vertebrae)} vertebrae, "
            f"{len(self.session.corrections)} corrections, LPS mm"
        )
        self.export_finished.emit(result)

    def _on_job_failed(self, message: str) -> None:
        if self._closed:
            return
        kind = self._job_kind
        error = self._worker.error if self._worker is not None else None
        if isinstance(error, WeightsError):
            self.statusBar().showMessage(f"Models not available: {error}")
            if self.show_dialogs:
                QMessageBox.warning(self, "SpineNav — models not available", f"{error}\n\n{_NO_MODELS_TEXT}")
        elif isinstance(error, InputError):
            self._report_input_error(error, kind)
        else:
            self.statusBar().showMessage(f"Internal error: {message}")
            if self.show_dialogs:
                QMessageBox.critical(
                    self,
                    "SpineNav — internal error",
                    f"Internal error: {message}\n\nDetails were written to {ERROR_LOG}.",
                )
        error = error if error is not None else RuntimeError(message)
        {LOAD: self.load_failed, ANALYSIS: self.analysis_failed, EXPORT: self.export_failed,
         PLAN: self.plan_failed}[kind].emit(error)

    def _report_input_error(self, error: InputError, kind: str = LOAD) -> None:
        self.statusBar().showMessage(f"Error: {error}")
        if self.show_dialogs:
            QMessageBox.warning(self, f"SpineNav — {_FAILURE_TITLES[kind]}", str(error))

    def _on_job_cancelled(self) -> None:
        if not self._closed:
            what = {LOAD: "Loading", ANALYSIS: "Analysis", EXPORT: "Export", PLAN: "Planning"}[self._job_kind]
            self.statusBar().showMessage(f"{what} cancelled — nothing changed", 5000)
            self.job_cancelled.emit(self._job_kind)

    def _on_thread_finished(self) -> None:
        thread, self._thread, self._worker = self._thread, None, None
        self._job_ct = None
        if thread is not None:
            thread.deleteLater()
        next_job, self._next_job = self._next_job, None
        if not self._closed:
            self._set_busy(False)
            if next_job is not None:  # in its own pass of the event loop, after the repaint
                QTimer.singleShot(0, next_job)

    def _on_analyze(self) -> None:
        n = len(self.session.corrections)
        if n and self.session.vertebra_source == SOURCE_ANALYSIS and not self._confirm(
            "Analyze again",
            f"A new analysis replaces the current one and its {n} correction{'s' if n > 1 else ''}. Go on?",
        ):
            return
        self.analyze()

    def _on_cancel_clicked(self) -> None:
        self.cancel_job()
