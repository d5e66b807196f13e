"""Where SpineNav's bundled files live: ``assets/`` of the source tree, or of a frozen (PyInstaller) build.

The one place that knows it: weights, the shape library, the QA volume table and the app's icons all
ask here.
"""

from __future__ import annotations

import sys
from pathlib import Path


def assets_dir() -> Path:
    """The ``assets/`` folder (sample CT, model weights, shape library, icons)."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "assets"
    return Path(__file__).resolve().parents[1] / "assets"
