"""Fake models and a tiny synthetic spine, shared by the pipeline and GUI tests.

MONAI's habit: test the plumbing with fake models whose output is known; accuracy is judged on
real CT elsewhere (tests/test_localizer_real.py, tests/test_segmenter_real.py).
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from inference import registry
from inference.models.localizer import CLASSES
from inference.pipeline import Pipeline
from inference.preprocess import working_grid
from inference.volume import Volume

SPINE_LEVELS = ["L1", "L2", "L3"]
SPHERE_RADIUS_MM = 12.0


def spine_ct(direction=None) -> tuple[Volume, dict[str, np.ndarray]]:
    """Three bright 'vertebrae' (spheres) along S at 36 mm pitch on a 2 mm grid; their LPS centers."""
    shape = (64, 64, 64)  # k, j, i at 2 mm: 128 mm along every axis, whichever is S
    direction = np.eye(3) if direction is None else np.asarray(direction, float)
    vol = Volume(np.full(shape, -50, np.int16), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), direction)
    lps = vol.index_to_lps(np.argwhere(np.ones(shape, bool))[:, ::-1].astype(float))
    centre = lps.mean(axis=0)
    centers = {}
    flat = vol.array.reshape(-1)
    for n, name in enumerate(SPINE_LEVELS):
        c = centre + np.array([0.0, 0.0, 36.0 * (1 - n)])  # L1 superior
        flat[np.linalg.norm(lps - c, axis=1) < SPHERE_RADIUS_MM] = 700
        centers[name] = c
    return vol, centers


class FakeLocalizer(nn.Module):
    """Heatmap = local brightness; level logits from the position along S (L1 top … L3 bottom),
    counted from the first slice of the scan inside the input field (`inference.localize.input_field`
    centres a small scan in air).

    ``seconds`` makes the forward pass take that long (sleeping, in one call like a real network).
    """

    divisor = 16
    use_descriptor = True

    def __init__(self, centers_z: list[float], grid_origin_z: float, seconds: float = 0.0):
        super().__init__()
        self.centers_z = centers_z
        self.origin_z = grid_origin_z
        self.seconds = seconds
        self.started = threading.Event()
        self.calls = 0

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.started.set()
        time.sleep(self.seconds)
        bright = (x > 0.3).float()
        pooled = nn.functional.avg_pool3d(bright, 2)
        heat = nn.functional.avg_pool3d(pooled, 3, stride=1, padding=1)
        heat = heat / heat.max().clamp(min=1e-6)
        k0 = int(torch.nonzero((x[0, 0] > -0.99).any(dim=2).any(dim=1))[0])  # first scan slice (4 mm)
        k = torch.arange(pooled.shape[2], dtype=torch.float32) - k0 / 2
        z = self.origin_z + 8.0 * k + 2.0  # 8 mm output voxels (4 mm working grid origin + half voxel)
        logits = torch.full((1, len(CLASSES), *pooled.shape[2:]), -5.0)
        for name, cz in zip(SPINE_LEVELS, self.centers_z, strict=True):
            logits[0, CLASSES.index(registry.id_of(name))] = (-(((z - cz) / 12.0) ** 2))[:, None, None]
        logits[0, 0] = 2.0 * (1 - pooled[0, 0]) - 1.0
        return torch.cat([heat, logits], dim=1)


class FakeSegmenter(nn.Module):
    """Mask = bright voxels near this vertebra's center channel; lesion channels fixed per type; no ribs.

    ``lesion`` (0–1 per type, e.g. ``{"lytic": 0.9}``) is the probability every voxel gets.
    """

    def __init__(self, lesion: dict[str, float] | None = None):
        super().__init__()
        self.lesion = lesion or {}
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from inference.models.segmenter import LESION_TYPES

        self.calls += 1
        bright = x[:, 0] > 0.3
        near = x[:, 1] > 0.02  # within ~2.8 sigma (22 mm) of the center
        mask = torch.where(bright & near, 10.0, -10.0)
        les = []
        for name in LESION_TYPES:
            p = min(max(self.lesion.get(name, 0.0), 1e-4), 1 - 1e-4)
            les.append(torch.full_like(mask, float(np.log(p / (1 - p)))))
        no_rib = torch.full_like(mask, -10.0)
        return torch.stack([mask, *les, no_rib], dim=1)


def fake_pipeline(ct: Volume, centers: dict[str, np.ndarray], *, seconds: float = 0.0,
                  segmenter: nn.Module | None = None) -> Pipeline:
    """The real pipeline around `FakeLocalizer` (and ``segmenter`` when given; else no segmentation)."""
    grid = working_grid(ct, 4.0)
    fake = FakeLocalizer([centers[n][2] for n in SPINE_LEVELS], grid.origin[2], seconds)
    return Pipeline(device="cpu", localizer=fake, segmenter=segmenter, segment=segmenter is not None)


def sphere_mesh(radius: float, triangles: int) -> SimpleNamespace:
    """A closed, outward-wound triangle sphere at (10, -20, 30) LPS mm with about ``triangles``
    faces, as a mesh the way `inference.mesh` gives one (``vertices``, ``faces``)."""
    import pyvista as pv

    n = max(8, int(np.sqrt(triangles / 2)))
    sphere = pv.Sphere(radius=radius, center=(10.0, -20.0, 30.0), theta_resolution=n, phi_resolution=n + 2)
    return SimpleNamespace(vertices=np.asarray(sphere.points), faces=sphere.faces.reshape(-1, 4)[:, 1:])
