"""Network architectures (plain torch; weights and manifests live in assets/weights/<model>/)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ConvBlock(nn.Sequential):
    """Two 3×3×3 convolutions, each with instance norm and leaky ReLU (the nnU-Net block)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.InstanceNorm3d(c_out, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
            nn.Conv3d(c_out, c_out, 3, padding=1, bias=False),
            nn.InstanceNorm3d(c_out, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
        )


class AttentionGate(nn.Module):
    """Additive attention gate on a skip connection (Oktay et al. 2018, "Attention U-Net"; seed 004).

    The decoder feature ``g`` (already upsampled to the skip's grid) and the skip ``x`` are projected
    to ``c_mid`` channels, added, and turned into a one-channel weight in (0, 1) that scales the skip:
    the decoder says which skip voxels matter (here: the vertebra being segmented, not its neighbours).
    """

    def __init__(self, c_skip: int, c_gate: int, c_mid: int) -> None:
        super().__init__()
        self.theta = nn.Conv3d(c_skip, c_mid, 1, bias=False)
        self.phi = nn.Conv3d(c_gate, c_mid, 1, bias=True)
        self.psi = nn.Conv3d(c_mid, 1, 1, bias=True)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        a = torch.sigmoid(self.psi(F.relu(self.theta(x) + self.phi(g))))
        return x * a


class UNet3D(nn.Module):
    """A compact 3D U-Net with strided-convolution downsampling and a FiLM-conditioned bottleneck.

    Parameters
    ----------
    in_channels : int
    out_channels : int
    widths : sequence of int
        Feature channels per resolution level (len(widths) - 1 downsamplings by 2).
    n_descriptor : int
        Length of the scan descriptor vector that scales and shifts the bottleneck features
        (feature-wise linear modulation, as VertebraFormer's dynamic modulation); 0 disables it.
    attention : bool
        Gate every skip connection with an `AttentionGate` driven by the decoder feature.
    """

    def __init__(self, in_channels: int, out_channels: int, widths=(16, 24, 32, 48, 64), n_descriptor: int = 0,
                 attention: bool = False):
        super().__init__()
        self.widths = tuple(widths)
        self.down = nn.ModuleList()
        c = in_channels
        for n, w in enumerate(self.widths):
            self.down.append(ConvBlock(c, w, stride=1 if n == 0 else 2))
            c = w
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w_skip in reversed(self.widths[:-1]):
            self.up.append(nn.ConvTranspose3d(c, w_skip, 2, stride=2))
            self.merge.append(ConvBlock(2 * w_skip, w_skip))
            c = w_skip
        self.gates = (nn.ModuleList(AttentionGate(w, w, max(4, w // 2)) for w in reversed(self.widths[:-1]))
                      if attention else None)
        self.head = nn.Conv3d(c, out_channels, 1)
        self.n_descriptor = n_descriptor
        if n_descriptor:
            self.film = nn.Sequential(nn.Linear(n_descriptor, 32), nn.ReLU(), nn.Linear(32, 2 * self.widths[-1]))
            nn.init.zeros_(self.film[-1].weight)
            nn.init.zeros_(self.film[-1].bias)

    @property
    def divisor(self) -> int:
        """Input sizes must be multiples of this."""
        return 2 ** (len(self.widths) - 1)

    def forward(self, x: torch.Tensor, descriptor: torch.Tensor | None = None) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        if self.n_descriptor:
            if descriptor is None:
                raise ValueError("this network needs a scan descriptor")
            gamma, beta = self.film(descriptor).chunk(2, dim=1)
            x = x * (1 + gamma[:, :, None, None, None]) + beta[:, :, None, None, None]
        for n, (up, merge, skip) in enumerate(zip(self.up, self.merge, reversed(skips[:-1]), strict=True)):
            x = up(x)
            if x.shape[2:] != skip.shape[2:]:
                x = F.interpolate(x, size=skip.shape[2:], mode="trilinear", align_corners=False)
            if self.gates is not None:
                skip = self.gates[n](skip, x)
            x = merge(torch.cat([x, skip], dim=1))
        return self.head(x)
