"""The planning job: pedicle screws proposed on the shown vertebrae's masks (`inference.planning`)."""

from __future__ import annotations

from collections.abc import Mapping

from inference.corrections import relabel
from inference.progress import CancelToken, ProgressCallback, report, sub_progress
from inference.volume import Volume

from ..state.session import ScrewPlan


def plan_screws(
    labels: Volume,
    id_map: Mapping[int, int],
    *,
    ct: Volume | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ScrewPlan:
    """Two screws per thoracic and lumbar level of ``labels`` under the names shown (corrections applied),
    with their breach against bone by HU when ``ct`` is given."""
    from inference.planning.bundle import plan_labels_with_models

    tell = report(progress)
    tell(0.0, "applying corrections")
    result = plan_labels_with_models(relabel(labels, id_map), ct=ct,
                                     progress=sub_progress(tell, 0.05, 1.0), cancel=cancel)
    return ScrewPlan(result.screws, result.models, result.not_planned)
