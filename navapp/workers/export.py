"""The export job: the session's vertebrae, with the user's corrections applied, as a robot bundle.

The case is the analysis (`inference.case.Case`) when one was run, else the label map made into one
(`inference.case.case_from_labels`); the corrections are applied by the core
(`inference.corrections.apply`) and the bundle is written by its one writer
(`inference.export.write_bundle`), exactly as ``spinenav correct`` does. Runs on a worker thread:
relabelling a whole label map is volume work. The session's own data stay untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from inference.progress import CancelToken, ProgressCallback, check_cancel, report, sub_progress
from inference.volume import Volume

if TYPE_CHECKING:
    from inference.case import Case
    from inference.corrections import Correction
    from inference.export import ExportResult
    from inference.planning import Screw


PLAN_METHOD = "proposed by SpineNav (inference.planning), reviewed and possibly edited in the app"


def export_bundle(
    out_dir: str | Path,
    *,
    ct: Volume,
    analysis: Case | None = None,
    labels: Volume | None = None,
    id_map: Mapping[int, int],
    corrections: Sequence[Correction] = (),
    screws: Sequence[Screw] = (),
    not_planned: Mapping[str, str] | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ExportResult:
    """Write the bundle of an analysis (when given) or else of a label map, corrections applied.

    Raises what the writer raises: `OutputExistsError` for a non-empty ``out_dir`` without
    ``force``, `InputError` for an unusable folder, `CancelledError`.
    """
    from inference import corrections as corr
    from inference.case import case_from_labels
    from inference.export import write_bundle

    tell = report(progress)
    extra_files, manifest_extra = None, None
    if screws:
        from inference.planning.bundle import plan_manifest, trajectory_files

        extra_files = trajectory_files(list(screws))
        manifest_extra = {"plan": plan_manifest(list(screws), PLAN_METHOD, dict(not_planned or {}))}
    if analysis is None and labels is None:
        raise ValueError("nothing to export: give an analysis or a label map")
    tell(0.0, "applying corrections")
    case = analysis if analysis is not None else case_from_labels(labels, ct=ct)
    fixed = corr.apply(case, id_map, corrections)
    check_cancel(cancel)
    return write_bundle(out_dir, fixed, extra_files=extra_files, manifest_extra=manifest_extra, force=force,
                        progress=sub_progress(tell, 0.05, 1.0), cancel=cancel)


__all__ = ["export_bundle"]
