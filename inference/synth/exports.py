"""What a hospital export can do to a CT's values, as functions on a `Volume` (numpy).

Used to perturb real CT the way PACS exports do (`inference.train.validate_real`, the figures in docs/,
the tests); the generator paints the same domains on synthetic CT (`SynthConfig.p_bone_window`,
``p_display_window``).
"""

from __future__ import annotations

import numpy as np

from ..volume import Volume


def bone_window(ct: Volume, threshold: float = 200.0, fill: float = 0.0) -> Volume:
    """A bone-window export: every value below ``threshold`` HU set to ``fill``; bone unchanged."""
    a = ct.array.astype(np.float32).copy()
    a[a < threshold] = fill
    return ct.with_array(a)


def display_window(ct: Volume, width: float = 400.0, level: float = 40.0, steps: int = 255) -> Volume:
    """A display window baked into ``steps + 1`` values (8 bit: 255) and rescaled back to HU by the reader:
    the soft-tissue window (W 400 / L 40) leaves bone saturated at 240 HU."""
    lo = level - width / 2.0
    a = np.clip(ct.array.astype(np.float32), lo, level + width / 2.0)
    return ct.with_array((lo + np.round((a - lo) / width * steps) * (width / steps)).astype(np.float32))
