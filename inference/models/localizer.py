"""The spine localizer/labeler network: vertebra-center heatmap + per-voxel level logits.

Input: one channel of normalized HU on the 4 mm working grid (`inference.preprocess`), sizes a
multiple of `LocalizerNet.divisor`. A strided stem brings it to 8 mm, where a compact 3D U-Net
with a FiLM-conditioned bottleneck (scan descriptor) predicts:

- channel 0: center heatmap (a Gaussian of ``HEATMAP_SIGMA_MM`` around each vertebra's mask
  centroid, peak 1);
- channels 1…: logits over `CLASSES` (background + every level C1…S1 incl. T13, L6).

The label decision is not taken per voxel: `inference.label` decodes the whole column jointly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import registry
from .nets import UNet3D

INPUT_SPACING_MM = 4.0
OUTPUT_SPACING_MM = 8.0
HEATMAP_SIGMA_MM = 6.0
TRAINING_FIELD = (112, 64, 64)
"""The training crop (k, j, i) on the 4 mm grid: 448 mm cranio-caudal, 256 mm in-plane, centred
on the spine in-plane; a synthetic scan smaller than it lies in air. At inference a scan smaller
than it along an axis is centred in an air-filled field of this size (`inference.localize`)."""

LEVEL_IDS: tuple[int, ...] = tuple(registry.sort_ids(list(registry.VALID_IDS)))
"""VerSe ids in cranio-caudal order (C1 … T12, T13, L1 … L5, L6, S1)."""
CLASSES: tuple[int, ...] = (0, *LEVEL_IDS)
"""Output class k ↔ VerSe id CLASSES[k] (0 = background)."""

DESCRIPTOR_NAMES = ("inplane_spacing_mm", "slice_spacing_mm", "hu_p99_k", "hu_body_median_k")
"""The scan descriptor: reconstruction grid and image statistics (see `scan_descriptor`)."""
DESCRIPTOR_MEAN = np.array([1.0, 1.0, 1.2, 0.03], np.float32)
"""A typical descriptor (roughly the synthetic pools' mean): the descriptor ablation feeds it to
every scan instead of the scan's own."""


def id_to_class_lut() -> np.ndarray:
    """uint8 lookup table VerSe id → class index (unknown ids → 0)."""
    lut = np.zeros(256, np.uint8)
    for k, vid in enumerate(CLASSES):
        lut[vid] = k
    return lut


def scan_descriptor(scan_spacing: tuple[float, float, float], hu_4mm: np.ndarray) -> np.ndarray:
    """Descriptor vector: in-plane and slice spacing of the scan, 99th-percentile HU and body median.

    ``scan_spacing`` is (x, y, z) of the original grid; the smallest two values are taken as in-plane
    (the scan's own axes may be permuted in LPS). HU statistics come from the 4 mm working grid.
    """
    s = sorted(float(v) for v in scan_spacing)
    flat = hu_4mm.ravel()
    body = flat[flat > -500]
    p99 = float(np.percentile(flat, 99)) if flat.size else 0.0
    med = float(np.median(body)) if body.size else 0.0
    return np.array([(s[0] + s[1]) / 2.0, s[2] / 3.0, p99 / 1000.0, med / 1000.0], dtype=np.float32)


def freeze_descriptor(state: dict[str, torch.Tensor], descriptor: np.ndarray = DESCRIPTOR_MEAN
                      ) -> dict[str, torch.Tensor]:
    """A localizer state dict whose FiLM gives, for any descriptor, what it gave for ``descriptor``:
    the last FiLM layer's weights are zeroed and its bias set to that output. The descriptor ablation's
    control arm, trained on `DESCRIPTOR_MEAN` alone, is shipped this way so it needs no special input."""
    d = torch.from_numpy(np.asarray(descriptor, np.float32))
    hidden = torch.relu(state["unet.film.0.weight"] @ d + state["unet.film.0.bias"])
    out = state["unet.film.2.weight"] @ hidden + state["unet.film.2.bias"]
    frozen = dict(state)
    frozen["unet.film.2.weight"] = torch.zeros_like(state["unet.film.2.weight"])
    frozen["unet.film.2.bias"] = out.detach().clone()
    return frozen


class LocalizerNet(nn.Module):
    """Strided stem (4 → 8 mm) + `UNet3D`; output: 1 heatmap channel + len(CLASSES) logits at 8 mm."""

    def __init__(self, widths=(16, 32, 48, 64), use_descriptor: bool = True) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(1, widths[0], 3, stride=2, padding=1, bias=False),
            nn.InstanceNorm3d(widths[0], affine=True),
            nn.LeakyReLU(0.01, inplace=True),
        )
        self.unet = UNet3D(
            widths[0], 1 + len(CLASSES), widths, n_descriptor=len(DESCRIPTOR_NAMES) if use_descriptor else 0
        )
        self.use_descriptor = use_descriptor

    @property
    def divisor(self) -> int:
        return 2 * self.unet.divisor

    def forward(self, x: torch.Tensor, descriptor: torch.Tensor | None = None) -> torch.Tensor:
        return self.unet(self.stem(x), descriptor if self.use_descriptor else None)
