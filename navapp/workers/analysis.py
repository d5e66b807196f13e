"""The analysis job: `inference.pipeline.Pipeline.analyze` on a worker thread.

`AnalysisRunner` owns the pipeline object. It is created on first use, on the worker thread that
needs it (loading torch and the weights takes seconds and must not freeze the window), and kept
for every later run, as nnU-Net's predictor is built once and then predicts many inputs. A failed
creation (missing or corrupt weights) leaves nothing behind, so the next run tries again.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inference.progress import CancelToken, ProgressCallback, check_cancel, report, sub_progress
from inference.volume import Volume

if TYPE_CHECKING:
    from inference.case import Case
    from inference.pipeline import Pipeline

    from ..state.session import LabelSet

PipelineFactory = Callable[[], "Pipeline"]
"""Builds the pipeline (loads weights); may raise `WeightsError`. Runs on a worker thread."""

_LOAD_SHARE = 0.1  # progress bar share of the first run that goes to loading the models


def default_pipeline() -> Pipeline:
    """The installed models on the best device (CUDA, then MPS, then CPU), computing on
    `gui_threads` CPU threads."""
    import torch

    from inference.pipeline import Pipeline

    torch.set_num_threads(gui_threads())
    return Pipeline(device="auto")


def gui_threads(cores: int | None = None) -> int:
    """CPU threads for the models in the desktop app: one fewer than the machine's cores (at least
    one), so that the window's own thread always finds a free core. With every core busy the
    scheduler can keep it waiting ~0.1 s (measured on 2 cores); the command line uses them all."""
    return max(1, (cores or os.cpu_count() or 1) - 1)


def weights_installed() -> bool:
    """True when the localizer's weights manifest is installed (their hash is checked on loading)."""
    from inference.errors import WeightsError
    from inference.models.weights import read_manifest
    from inference.pipeline import LOCALIZER

    try:
        read_manifest(LOCALIZER)
    except WeightsError:
        return False
    return True


class AnalysisRunner:
    """Runs analyses with one pipeline, created lazily by ``factory`` and then reused.

    Thread-safe: one analysis at a time; `analyze` is called on a worker thread.
    """

    def __init__(self, factory: PipelineFactory | None = None) -> None:
        self._factory = factory or default_pipeline
        self._pipeline: Pipeline | None = None
        self._lock = threading.Lock()

    @property
    def pipeline(self) -> Pipeline | None:
        """The pipeline once created, else None."""
        return self._pipeline

    def analyze(
        self, ct: Volume, *, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
    ) -> Case:
        """Find and name the vertebrae of ``ct`` (see `Pipeline.analyze`).

        Raises `WeightsError` when the models cannot be loaded, `CancelledError` when cancelled.
        """
        tell = report(progress)
        with self._lock:
            start = 0.0
            if self._pipeline is None:
                tell(0.0, "loading the models")
                self._pipeline = self._factory()
                start = _LOAD_SHARE
            check_cancel(cancel)
            result = self._pipeline.analyze(ct, progress=sub_progress(tell, start, 1.0), cancel=cancel)
        _check_result(result)
        return result


@dataclass(frozen=True)
class AnalysisOutcome:
    """An analysis with what the views need of its segmentation (None without one)."""

    result: Case
    label_set: LabelSet | None


def analyze_for_display(
    runner: AnalysisRunner, ct: Volume, *, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
) -> AnalysisOutcome:
    """`AnalysisRunner.analyze`, then one surface per segmented vertebra, ready to draw in the 3D view."""
    tell = report(progress)
    result = runner.analyze(ct, progress=sub_progress(tell, 0.0, 0.85), cancel=cancel)
    seg = result.segmentation
    if seg is None or not seg.labels.array.any():
        return AnalysisOutcome(result, None)
    from inference.measure import vertebra_centers, vertebra_volumes_ml
    from inference.mesh import mesh_label_map

    from ..display.surfaces import surface_polydata, surface_polydata_all
    from ..state.session import LabelSet, vertebra_infos

    check_cancel(cancel)
    tell(0.85, "building surfaces")
    meshes = dict(mesh_label_map(seg.labels, progress=sub_progress(tell, 0.85, 0.98), cancel=cancel))
    infos = vertebra_infos(vertebra_centers(seg.labels), vertebra_volumes_ml(seg.labels))
    lesions = lesion_surface(seg.lesions)
    label_set = LabelSet(seg.labels, infos, meshes, lesions, surfaces=surface_polydata_all(meshes),
                         lesion_surface=surface_polydata(lesions) if lesions is not None else None)
    return AnalysisOutcome(result, label_set)


def lesion_surface(lesions: Volume):
    """Surface around the lesion-map voxels at or above the flag threshold (None when there are none)."""
    import numpy as np

    from inference.mesh import mesh_mask
    from inference.segment import LESION_FLAG

    mask = np.asarray(lesions.array) >= LESION_FLAG
    if not mask.any():
        return None
    return mesh_mask(lesions.with_array(mask.astype(np.uint8)))


def _check_result(result: Case) -> None:
    """The contract the views and corrections rely on: one vertebra per name, real probabilities.

    A broken one is an internal error (shown as such, traceback logged), never a half-usable table.
    """
    counts = Counter(v.name for v in result.vertebrae)
    repeated = sorted(n for n, c in counts.items() if c > 1)
    if repeated:
        raise RuntimeError(
            f"the analysis gave {len(result.vertebrae)} vertebrae with repeated names ({', '.join(repeated[:5])}); "
            "the result cannot be shown"
        )
    if any(not 0.0 <= float(v.confidence) <= 1.0 for v in result.vertebrae):  # NaN fails too
        raise RuntimeError("the analysis gave label probabilities outside [0, 1] (NaN?); the result cannot be shown")
