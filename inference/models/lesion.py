"""The lesion classifier: per vertebra, suspicion of a lytic, blastic or fracture lesion.

The segmenter's lesion channels are voxel outputs trained beside its mask; on held-out synthetic CT
their per-vertebra scores ranked lesions barely above chance (AP 0.03-0.16). This small network
answers the per-vertebra question directly: it reads the same 2 mm crop as the segmenter (HU and the
vertebra's mask) and gives one logit per lesion type. The segmenter's lesion channels still draw the
heatmap that shows where in the vertebra; the per-vertebra score comes from here.

It flags suspicion for a human to look at; it does not diagnose.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .nets import ConvBlock
from .segmenter import PATCH

N_TYPES = 3
"""Outputs: lytic, blastic, fracture (`inference.models.segmenter.LESION_TYPES` order)."""
WIDTHS = (8, 16, 32, 64)
NOT_SCORED = ("C1", "C2", "S1")
"""Levels the synthetic engine never puts a lesion in (`inference.synth.layout`): the classifier has
only seen them lesion-free, so its score there means nothing and the pipeline reports them as not
assessed (on the sample CT the sacrum, with its odd shape and an implausible mask, read as a fracture)."""


class LesionNet(nn.Module):
    """Strided 3D CNN on [2, 48, 64, 64] crops (HU / 1000 clipped as the segmenter's, vertebra mask).

    The features of every level after the first are pooled over the vertebra's mask (mean and max),
    so that a lesion in a neighbour, also in the crop, is told apart from one in this vertebra; the
    last level is also averaged over the whole crop (context: the neighbours' heights, for
    fractures). The pooled vector is mapped to `N_TYPES` logits.
    """

    def __init__(self, widths=WIDTHS) -> None:
        super().__init__()
        chans = (2, *widths)
        # each level: a stride-2 convolution then a 3×3×3 one (the nnU-Net block of `inference.models.nets`)
        self.levels = nn.ModuleList([ConvBlock(a, b, stride=2) for a, b in zip(chans[:-1], chans[1:], strict=True)])
        n = 2 * sum(widths[1:]) + widths[-1]
        self.head = nn.Sequential(nn.Linear(n, 64), nn.LeakyReLU(0.01, inplace=True), nn.Linear(64, N_TYPES))

    @classmethod
    def from_architecture(cls, arch: dict) -> LesionNet:
        return cls(widths=tuple(arch["widths"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = []
        f = x
        for n, level in enumerate(self.levels):
            f = level(f)
            if n == 0:
                continue
            m = nn.functional.adaptive_max_pool3d(x[:, 1:2], f.shape[2:])  # cells touching the mask
            area = m.sum(dim=(2, 3, 4)).clamp_min(1.0)
            pooled += [(f * m).sum(dim=(2, 3, 4)) / area, (f - 1e4 * (1 - m)).amax(dim=(2, 3, 4)) * (area > 0.5)]
        pooled.append(f.mean(dim=(2, 3, 4)))
        return self.head(torch.cat(pooled, dim=1))


def lesion_input(hu_normalized: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The classifier's input [2, *PATCH] from a `PATCH` crop of normalized HU and the vertebra's mask
    (a taller sacrum crop is cut to `PATCH` about its center)."""
    hu_normalized, mask = _center(hu_normalized), _center(mask)
    return np.stack([hu_normalized.astype(np.float32), mask.astype(np.float32)])


def _center(a: np.ndarray) -> np.ndarray:
    if a.shape == PATCH:
        return a
    lo = [(n - p) // 2 for n, p in zip(a.shape, PATCH, strict=True)]
    if min(lo) < 0:
        raise ValueError(f"crop {a.shape} is smaller than {PATCH}")
    return a[lo[0] : lo[0] + PATCH[0], lo[1] : lo[1] + PATCH[1], lo[2] : lo[2] + PATCH[2]]
