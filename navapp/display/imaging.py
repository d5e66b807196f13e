"""Voxel values → screen colours: CT window/level and the vertebra label overlay (display only)."""

from __future__ import annotations

import numpy as np

from inference import registry

WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "Bone": (1800.0, 400.0),
    "Soft tissue": (400.0, 40.0),
}
"""Named CT windows: name → (width, level) in HU."""

LABEL_OPACITY = 0.45
SELECTED_OPACITY = 0.8


def window_to_uint8(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    """Map HU to grey levels 0–255: ``level - width/2`` → 0, ``level + width/2`` → 255, linear between.

    Parameters
    ----------
    hu : np.ndarray, any shape, HU
    width, level : float, HU (``width`` > 0)

    Returns
    -------
    np.ndarray, same shape, uint8
    """
    width = max(float(width), 1e-3)
    low = float(level) - width / 2.0
    grey = (np.asarray(hu, dtype=np.float32) - low) * np.float32(255.0 / width)
    return (np.clip(grey, 0.0, 255.0) + 0.5).astype(np.uint8)


def label_colour_table() -> np.ndarray:
    """RGB colour per VerSe id, shape (256, 3) uint8; unknown ids and background are black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    for v in registry.VERTEBRAE:
        table[v.id] = v.color
    return table


def compose_overlay(
    grey: np.ndarray, labels: np.ndarray | None, colours: np.ndarray, *, selected_id: int = 0
) -> np.ndarray:
    """Blend vertebra colours over a grey slice.

    Parameters
    ----------
    grey : np.ndarray, shape (rows, cols), uint8
    labels : np.ndarray, shape (rows, cols), integer VerSe ids, or None for no overlay
    colours : np.ndarray, shape (256, 3), uint8 (`label_colour_table`)
    selected_id : int
        This vertebra is drawn more opaque than the others (0: none).

    Returns
    -------
    np.ndarray, shape (rows, cols, 3), uint8, C-contiguous RGB
    """
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    if labels is None:
        return np.ascontiguousarray(rgb)
    mask = labels > 0
    if not mask.any():
        return np.ascontiguousarray(rgb)
    ids = labels[mask].astype(np.intp)
    alpha = np.where(ids == selected_id, SELECTED_OPACITY, LABEL_OPACITY).astype(np.float32)[:, None]
    blended = rgb[mask].astype(np.float32) * (1.0 - alpha) + colours[ids].astype(np.float32) * alpha
    rgb[mask] = (blended + 0.5).astype(np.uint8)
    return np.ascontiguousarray(rgb)


LESION_RGB = np.array([235, 30, 30], np.float32)
LESION_OPACITY = 0.65
"""Opacity of the lesion heat where the score reaches the flag threshold (and above)."""


def add_lesion_heat(rgb: np.ndarray, heat: np.ndarray, flag: float) -> np.ndarray:
    """Blend lesion suspicion in red over an RGB slice (in place; returned).

    ``heat`` (rows, cols) is the lesion map, scaled so that ``flag`` is the flag threshold: nothing
    is drawn below half of it, and the red grows to `LESION_OPACITY` at the threshold.
    """
    alpha = np.clip((np.asarray(heat, np.float32) - 0.5 * flag) / (0.5 * flag), 0.0, 1.0) * LESION_OPACITY
    shown = alpha > 0
    if shown.any():
        a = alpha[shown][:, None]
        rgb[shown] = (rgb[shown].astype(np.float32) * (1.0 - a) + LESION_RGB * a + 0.5).astype(np.uint8)
    return rgb

