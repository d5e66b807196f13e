"""Qt-free display helpers: how voxels become pixels. No analysis happens here."""

from .imaging import WINDOW_PRESETS, compose_overlay, label_colour_table, window_to_uint8
from .orientation import PLANES, DisplayFrame, PlaneSpec

__all__ = [
    "PLANES",
    "WINDOW_PRESETS",
    "DisplayFrame",
    "PlaneSpec",
    "compose_overlay",
    "label_colour_table",
    "window_to_uint8",
]
