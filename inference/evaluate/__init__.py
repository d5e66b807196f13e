"""Accuracy of vertebra labels and centers against a reference (DESIGN §7).

`evaluate_bundle` reads a bundle folder and a reference label map; `evaluate_labels` is the pure
comparison of two label maps; `format_report` renders the report as text.
"""

from .bundle import evaluate_bundle, read_bundle_centers
from .metrics import compare_masks, label_centroids
from .protocol import ID_DISTANCE_MM, evaluate_labels
from .report import format_report

__all__ = [
    "ID_DISTANCE_MM",
    "compare_masks",
    "evaluate_bundle",
    "evaluate_labels",
    "format_report",
    "label_centroids",
    "read_bundle_centers",
]
