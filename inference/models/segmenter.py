"""The per-vertebra segmenter with its lesion head.

One forward pass per vertebra: a crop of the 2 mm working grid (`inference.preprocess`) centred on
the vertebra's detected center, with three input channels

- normalized HU,
- a Gaussian (σ = ``CENTER_SIGMA_MM``) at this vertebra's center ("segment this one"),
- the maximum of Gaussians at the other detected centers ("not those"),

and five output channels: the vertebra's mask logit, voxel logits for the lesion types of
`LESION_TYPES` (suspicion maps for lytic, blastic and compression-fracture regions), and a rib logit
(`RIB_CHANNEL`: any rib, outside the vertebrae; `inference.ribs` reads the labeling's rib cue from
it). Crops of all vertebrae are batched; `inference.segment` pastes the probabilities back onto the
CT grid.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .nets import UNet3D

INPUT_SPACING_MM = 2.0
PATCH = (48, 64, 64)
"""Crop (k, j, i) in 2 mm voxels: 96 mm cranio-caudal, 128 mm left-right and antero-posterior."""
SACRUM_PATCH = (72, 64, 72)
"""Crop for the sacrum: 144 mm cranio-caudal and left-right (the sacrum reaches ~80 mm below its
centroid and its alae ~60 mm to each side; `PATCH` cut it at mid-height). The network is fully
convolutional; training shows it sacrum crops of this shape."""
SACRUM_IDS = frozenset({26})
CENTER_SIGMA_MM = 8.0
LESION_TYPES = ("lytic", "blastic", "fracture")
"""Lesion channels 1…3 ↔ the synthetic engine's lesion codes 1, 2, 3."""
WIDTHS = (16, 24, 40, 64)
LESION_CHANNELS = slice(1, 1 + len(LESION_TYPES))
RIB_CHANNEL = 1 + len(LESION_TYPES)
N_OUTPUTS = RIB_CHANNEL + 1


def patch_of(vid: int) -> tuple[int, int, int]:
    """The crop shape for VerSe id ``vid``: `SACRUM_PATCH` for the sacrum, else `PATCH`."""
    return SACRUM_PATCH if int(vid) in SACRUM_IDS else PATCH


def crop_start(center_kji: np.ndarray, shape=PATCH) -> np.ndarray:
    """First voxel of the crop of ``shape`` centred (to the nearest voxel) on ``center_kji``."""
    return np.rint(np.asarray(center_kji) - (np.array(shape) - 1) / 2.0).astype(int)


def crop(array: np.ndarray, start: np.ndarray, fill, shape=PATCH) -> np.ndarray:
    """``array[start : start + shape]`` with out-of-range voxels set to ``fill`` (same dtype).

    Training and inference cut their crops with this one function.
    """
    out = np.full(shape, fill, dtype=array.dtype)
    src = tuple(slice(max(0, s), min(n, s + p)) for s, n, p in zip(start, array.shape, shape, strict=True))
    if any(sl.stop <= sl.start for sl in src):
        return out
    dst = tuple(slice(sl.start - s, sl.stop - s) for sl, s in zip(src, start, strict=True))
    out[dst] = array[src]
    return out


def center_channels(centers_kji: np.ndarray, target: int, shape=PATCH) -> np.ndarray:
    """The two center channels (float32 [2, k, j, i]) for crop-voxel centers ``centers_kji``.

    Row ``target`` of ``centers_kji`` is the vertebra to segment; the other rows are its neighbours
    (rows of NaN are ignored).
    """
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    sigma = CENTER_SIGMA_MM / INPUT_SPACING_MM
    out = np.zeros((2, *shape), np.float32)
    for n, c in enumerate(np.asarray(centers_kji, dtype=np.float32)):
        if not np.all(np.isfinite(c)):
            continue
        if np.any(c < -3 * sigma) or np.any(c > np.array(shape) + 3 * sigma):
            continue
        d2 = sum((g - v) ** 2 for g, v in zip(grids, c, strict=True))
        np.maximum(out[0 if n == target else 1], np.exp(-d2 / (2 * sigma**2)), out=out[0 if n == target else 1])
    return out


class SegmenterNet(nn.Module):
    """`UNet3D` with 3 input channels (HU, this center, other centers) and `N_OUTPUTS` outputs.

    ``attention`` gates the skip connections (`inference.models.nets.AttentionGate`);
    ``use_centers=False`` reads the HU channel alone (the center-channel ablation: the vertebra to
    segment is then the one at the crop's center). Inputs always carry 3 channels, so training and
    inference code is the same for every variant. The shipped model's variant is in its manifest.
    """

    def __init__(self, widths=WIDTHS, attention: bool = False, use_centers: bool = True) -> None:
        super().__init__()
        self.use_centers = use_centers
        self.unet = UNet3D(3 if use_centers else 1, N_OUTPUTS, widths=widths, attention=attention)

    @classmethod
    def from_architecture(cls, arch: dict) -> SegmenterNet:
        """The network a manifest's ``architecture`` declares (manifests older than the variants
        carry neither key: a plain U-Net with center channels)."""
        return cls(widths=tuple(arch["widths"]), attention=bool(arch.get("attention", False)),
                   use_centers=bool(arch.get("use_centers", True)))

    @property
    def divisor(self) -> int:
        return self.unet.divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(x if self.use_centers else x[:, :1])


def widen_head(state: dict[str, torch.Tensor], model: SegmenterNet) -> dict[str, torch.Tensor]:
    """A state dict of an older segmenter with fewer output channels, its head padded with new
    channels that start at zero weight and a low bias (probability ~2 %), to fine-tune from."""
    out = dict(state)
    target = model.state_dict()
    for key in ("unet.head.weight", "unet.head.bias"):
        old, new = state[key], target[key]
        if old.shape == new.shape:
            continue
        pad = torch.zeros((new.shape[0] - old.shape[0], *old.shape[1:]), dtype=old.dtype)
        if key.endswith("bias"):
            pad -= 4.0
        out[key] = torch.cat([old, pad])
    return out
