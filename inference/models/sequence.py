"""The level-sequence network: names the planes of the straightened spine as one sequence.

Input: the bone map of the straightened spine (`bone_channel` of `inference.column.sequence.straight_hu`), one channel
[s, ap, lr] at 2 mm. A small 3D encoder, strided in the plane only, turns each plane (with its neighbours
±3 planes) into a feature vector; a stack of dilated 1D convolutions along the column (receptive field
about ±`context_mm`) lets each plane see the landmarks up and down the column: the sacrum and the pelvis,
the last rib pair, the first rib pair, C2 and the skull base. Output: logits over
`inference.column.sequence.N_CLASSES` per plane (no vertebra, or one of the levels C1 … S1 incl. T13, L6), and
one more channel, `HEAT_CHANNEL`: the logit of a vertebra's centre being in that plane (a Gaussian of
`inference.column.sequence.HEAT_SIGMA_MM` around each centre in training), whose peaks are the vertebrae.

Sized for CPU training on two cores (about 0.1 M parameters).
"""

from __future__ import annotations

import torch
from torch import nn

from ..column.sequence import GRID_MM, N_CLASSES

HEAT_CHANNEL = N_CLASSES
"""Output channel of the centre heat (after the class logits)."""


class LevelSequenceNet(nn.Module):
    def __init__(self, width: int = 24, feat: int = 64, dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 1)) -> None:
        super().__init__()
        self.width, self.feat, self.dilations = width, feat, tuple(dilations)
        w = width
        self.encoder = nn.Sequential(
            nn.Conv3d(1, w, (3, 3, 3), stride=(1, 2, 2), padding=1), nn.GroupNorm(4, w), nn.ReLU(inplace=True),
            nn.Conv3d(w, w, (3, 3, 3), stride=(1, 2, 2), padding=1), nn.GroupNorm(4, w), nn.ReLU(inplace=True),
            nn.Conv3d(w, 2 * w, (3, 3, 3), stride=(1, 2, 2), padding=1), nn.GroupNorm(4, 2 * w),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool3d((None, 3, 4)),  # keeps where in the plane: body / arch, left / centre / right
        )
        self.project = nn.Conv1d(2 * w * 12, feat, 1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv1d(feat, feat, 3, padding=d, dilation=d), nn.GroupNorm(4, feat), nn.ReLU(inplace=True))
            for d in self.dilations
        )
        self.head = nn.Conv1d(feat, N_CLASSES + 1, 1)

    @property
    def context_mm(self) -> float:
        return float(sum(self.dilations)) * GRID_MM

    def architecture(self) -> dict:
        return {"class": "inference.models.sequence.LevelSequenceNet", "width": self.width, "feat": self.feat,
                "dilations": list(self.dilations)}

    @classmethod
    def from_architecture(cls, arch: dict) -> LevelSequenceNet:
        return cls(int(arch["width"]), int(arch["feat"]), tuple(int(d) for d in arch["dilations"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[b, 1, s, ap, lr] → logits [b, N_CLASSES + 1, s] (classes, then the centre heat)."""
        f = self.encoder(x)  # [b, 2w, s, 3, 4]
        b, c, s = f.shape[:3]
        h = self.project(f.permute(0, 1, 3, 4, 2).reshape(b, c * 12, s))
        for block in self.blocks:
            h = h + block(h)
        return self.head(h)
