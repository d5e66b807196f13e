"""Where bundled files live: the source tree, or PyInstaller's unpack folder in a frozen build."""

from __future__ import annotations

from pathlib import Path

from inference.assets import assets_dir

__all__ = ["assets_dir", "icon_path"]




def icon_path() -> Path | None:
    """The application icon (PNG), or None when it is not installed."""
    path = assets_dir() / "icons" / "spinenav.png"
    return path if path.is_file() else None
