"""The straightened spine as a sequence of planes, for the level-sequence network (DESIGN §1, §6).

The straightened spine (`inference.column.straighten`) is reduced to what survives any windowing,
contrast or kernel: **bone geometry**. Every plane perpendicular to the column becomes a soft bone map
(`bone_channel`: a sigmoid of HU around `BONE_HU`, so a bone-window export, a display window baked into
8 bits or a contrast-filled vessel far from the column change it little), sampled every `GRID_MM` along the
column and in the plane. `inference.models.sequence.LevelSequenceNet` reads the stack and gives, for each
plane, the probability of each level (or of no vertebra): the ribs, the sacrum and C2 in view name the
planes between them as a sequence.

The same functions make the training data from synthetic cases (`inference.train.train_sequence`) and the
input of an analysis.
"""

from __future__ import annotations

import numpy as np
import torch

from ..label import LEVELS
from ..volume import Volume
from .straighten import AIR, STEP_MM, StraightSpine, sample_planes

GRID_MM = 2.0
"""Spacing of the sequence along the column and in each plane."""
BONE_HU, BONE_WIDTH_HU = 150.0, 25.0
"""Centre and width of the bone sigmoid."""
CORE_AP_MM, CORE_LR_MM = (-30.0, 10.0), 12.0
"""Where a plane's level is read from a label map: the vertebral body around the centreline."""
CORE_SHARE = 0.2
"""A plane belongs to the level covering at least this share of its core (else: no vertebra, a disc)."""
N_CLASSES = 1 + len(LEVELS)
"""Class 0: no vertebra in the plane's core (a disc, or beyond the column); class n: LEVELS[n - 1]."""
HEAT_SIGMA_MM = 6.0
"""Width (σ) of the centre heat the network learns around each vertebra's middle plane."""


def _pool(stack: np.ndarray) -> np.ndarray:
    """[s, ap, lr] at `STEP_MM` → every `GRID_MM` (mean over each block)."""
    f = int(round(GRID_MM / STEP_MM))
    s, a, b = (d // f * f for d in stack.shape)
    x = stack[:s, :a, :b].reshape(s // f, f, a // f, f, b // f, f)
    return x.mean(axis=(1, 3, 5))


def bone_channel(hu: np.ndarray, centre: float = BONE_HU, width: float = BONE_WIDTH_HU) -> np.ndarray:
    """Soft bone map of HU values (0 soft tissue and air, 1 bone): the network's input. Training draws
    ``centre`` and ``width`` at random, so that cancellous bone darker or brighter than synthetic CT's, and
    thin cortex, do not surprise it."""
    z = np.clip((np.asarray(hu, np.float32) - centre) / width, -30, 30)
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def straight_hu(spine: StraightSpine) -> np.ndarray:
    """``spine.hu`` at `GRID_MM`, [s, ap, lr] (s from the feet); `bone_channel` of it is the network's input."""
    if spine.hu.size == 0:
        raise ValueError("the straightened spine was built without resampling")
    return _pool(spine.hu).astype(np.float32)


def plane_s(spine: StraightSpine) -> np.ndarray:
    """Arc length (mm) of each plane of `straight_hu`."""
    f = int(round(GRID_MM / STEP_MM))
    n = len(spine.s_mm) // f
    return spine.s_mm[: n * f].reshape(n, f).mean(axis=1)


def plane_classes(labels: Volume, spine: StraightSpine) -> np.ndarray:
    """Training target of each plane of `straight_hu`: the class (`N_CLASSES`) of the level whose label
    covers at least `CORE_SHARE` of the plane's core, 0 where none does."""
    lab = sample_planes(labels, spine, order=0, fill=0)
    a = (spine.ap_mm >= CORE_AP_MM[0]) & (spine.ap_mm <= CORE_AP_MM[1])
    b = np.abs(spine.lr_mm) <= CORE_LR_MM
    core = lab[:, a][:, :, b].reshape(len(lab), -1)
    cls_of = np.zeros(256, np.int64)
    for n, vid in enumerate(LEVELS):
        cls_of[vid] = n + 1
    classes = cls_of[core]
    f = int(round(GRID_MM / STEP_MM))
    n = len(classes) // f
    classes = classes[: n * f].reshape(n, -1)
    out = np.zeros(n, np.int64)
    for p in range(n):
        counts = np.bincount(classes[p], minlength=N_CLASSES)
        counts[0] = 0
        if counts.max() >= CORE_SHARE * classes.shape[1]:
            out[p] = int(np.argmax(counts))
    return out


VOTE_HALF_MM = 4.0
"""A candidate's votes are the mean of the plane probabilities within this distance along the column."""


def centre_heat(classes: np.ndarray) -> np.ndarray:
    """Training target of the centre heat from the per-plane classes (`plane_classes`): a Gaussian of σ
    `HEAT_SIGMA_MM` around the middle plane of each run of one level (the max where two overlap)."""
    heat = np.zeros(len(classes), np.float32)
    idx = np.arange(len(classes))
    start = None
    for n in range(len(classes) + 1):
        if start is not None and (n == len(classes) or classes[n] != classes[start]):
            mid = 0.5 * (start + n - 1)
            heat = np.maximum(heat, np.exp(-0.5 * ((idx - mid) * GRID_MM / HEAT_SIGMA_MM) ** 2))
            start = None
        if n < len(classes) and classes[n] > 0 and start is None:
            start = n
    return heat


def votes_at(probs: np.ndarray, s_planes: np.ndarray, s_points: np.ndarray, half_mm: float = VOTE_HALF_MM
             ) -> np.ndarray:
    """(n, len(LEVELS)) level votes at arc lengths ``s_points``: the mean over planes within ``half_mm`` of
    the per-plane probabilities ``probs`` ([planes, N_CLASSES]), without the no-vertebra class, normalized.
    A point with no plane that near (beyond the straightened spine's ends) gets uniform votes: no opinion."""
    out = np.full((len(s_points), len(LEVELS)), 1.0 / len(LEVELS))
    for n, s in enumerate(s_points):
        near = np.abs(s_planes - s) <= half_mm
        if not near.any():
            continue
        v = probs[near, 1:].mean(axis=0)
        if v.sum() > 0:
            out[n] = v / v.sum()
    return out


def plane_probabilities(net: torch.nn.Module, ct: Volume, spine: StraightSpine, device: torch.device
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The network's class probabilities of every plane of ``spine`` ([planes, N_CLASSES]) and its centre
    heat ([planes], in [0, 1]); the CT is resampled along the spine here when ``spine`` was built without it.
    The pass on the left-right mirror (a training augmentation) is averaged in."""
    if spine.hu.size == 0:
        spine.hu = sample_planes(ct, spine, order=1, fill=AIR)
    x = torch.from_numpy(bone_channel(straight_hu(spine)))[None, None].to(device)
    with torch.inference_mode():
        outs = [net(x).float(), net(x.flip(-1)).float()]
    probs = sum(torch.softmax(o[:, :N_CLASSES], 1) for o in outs) / 2
    heat = sum(torch.sigmoid(o[:, N_CLASSES]) for o in outs) / 2
    return probs[0].T.cpu().numpy(), heat[0].cpu().numpy()


def level_votes(net: torch.nn.Module, ct: Volume, spine: StraightSpine, centers_lps: np.ndarray,
                device: torch.device) -> np.ndarray:
    """(n, len(LEVELS)) the network's level votes at the points ``centers_lps`` of ``ct``."""
    probs, _ = plane_probabilities(net, ct, spine, device)
    s = spine.from_lps(np.asarray(centers_lps, float).reshape(-1, 3))[:, 0]
    return votes_at(probs, plane_s(spine), s)
