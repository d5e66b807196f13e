"""Where bundled files live: the source tree, or PyInstaller's unpack folder in a frozen build."""

from __future__ import annotations

import sys
from pathlib import Path


def assets_dir() -> Path:
    """The ``assets/`` folder (sample CT, weights, icons)."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "assets"
    return Path(__file__).resolve().parents[1] / "assets"


def icon_path() -> Path | None:
    """The application icon (PNG), or None when it is not installed."""
    path = assets_dir() / "icons" / "spinenav.png"
    return path if path.is_file() else None
