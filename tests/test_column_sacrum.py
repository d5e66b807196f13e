"""The sacrum's centre from the bone below L5 (`inference.column.sacrum`)."""

from __future__ import annotations

import numpy as np

from inference.column import sacrum_point, with_sacrum_from_bone
from inference.localize import Candidate, LocalizerOutput
from inference.models.localizer import CLASSES, LEVEL_IDS
from inference.preprocess import WorkingGrid
from inference.volume import Volume

L4 = np.array([60.0, 60.0, 170.0])
L5 = np.array([60.0, 60.0, 135.0])  # LPS mm on a 1 mm grid whose origin is 0: index = LPS


def _pelvis(sacrum_hu: float = 400.0, soft_hu: float = 40.0) -> tuple[Volume, np.ndarray]:
    """Soft tissue with a sacrum-like block below L5 (centred 10 mm behind it, 45 mm below its centre) and two
    iliac blocks 55-75 mm to either side; the block's centroid (LPS)."""
    hu = np.full((200, 140, 120), soft_hu, np.int16)  # [k=S, j=P, i=L]
    sacrum = (slice(70, 110), slice(55, 85), slice(45, 75))  # 40 mm tall, 30 deep, 30 wide
    hu[sacrum] = sacrum_hu
    hu[80:120, 50:90, 0:5] = 700  # the ilia, beyond the sacro-iliac joints
    hu[80:120, 50:90, 115:120] = 700
    centre = np.array([(s.start + s.stop - 1) / 2 for s in sacrum])[::-1]
    return Volume(hu, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)), centre


def test_the_sacrum_point_is_the_bone_below_l5_between_the_joints():
    ct, centre = _pelvis()
    assert np.linalg.norm(sacrum_point(ct, L4, L5) - centre) < 1.0


def test_a_bone_window_export_gives_the_same_point():
    """Everything below 200 HU set to 0 (the tracker's windowed threshold applies)."""
    ct, centre = _pelvis(sacrum_hu=260.0, soft_hu=0.0)
    assert np.linalg.norm(sacrum_point(ct, L4, L5) - centre) < 1.0


def test_no_bone_below_l5_keeps_the_localizer_point():
    ct, _ = _pelvis(sacrum_hu=40.0)
    assert sacrum_point(ct, L4, L5) is None
    votes = np.zeros(len(LEVEL_IDS))
    votes[LEVEL_IDS.index(26)] = 1.0
    cands = [Candidate(L4, 0.9, np.roll(votes, -3), 0.9), Candidate(L5, 0.9, np.roll(votes, -2), 0.9),
             Candidate(L5 + [0.0, -20.0, -25.0], 0.9, votes, 0.9)]
    assert with_sacrum_from_bone(ct, cands) == cands


def test_only_the_candidate_voted_sacrum_moves():
    ct, centre = _pelvis()
    votes = np.zeros(len(LEVEL_IDS))
    votes[LEVEL_IDS.index(26)] = 1.0
    lumbar = np.zeros(len(LEVEL_IDS))
    lumbar[LEVEL_IDS.index(24)] = 1.0
    s1 = Candidate(L5 + [0.0, -20.0, -25.0], 0.9, votes, 0.9)
    cands = [Candidate(L4, 0.9, lumbar, 0.9), Candidate(L5, 0.9, lumbar, 0.9), s1]
    moved = with_sacrum_from_bone(ct, cands)
    assert moved[:2] == cands[:2]
    assert np.linalg.norm(moved[2].center_lps - centre) < 1.0
    assert moved[2].score == s1.score and moved[2].level_probs is s1.level_probs
    # a sacrum candidate without two vertebrae above it stays where the localizer put it
    assert with_sacrum_from_bone(ct, [cands[1], s1]) == [cands[1], s1]


def _localizer_voting_sacrum_below(z_mm: float) -> LocalizerOutput:
    """A localizer output on the pelvis volume's 4 mm grid: a weak flat heatmap, votes for the sacrum below
    ``z_mm`` and for L5 above."""
    grid = WorkingGrid(origin=(0.0, 0.0, 0.0), spacing=4.0, size=(30, 35, 50))
    heat = np.full(grid.size[::-1], 0.05, np.float32)
    probs = np.zeros((len(CLASSES), *heat.shape), np.float32)
    z = np.arange(heat.shape[0]) * 4.0
    probs[CLASSES.index(26), z < z_mm] = 1.0
    probs[CLASSES.index(24), z >= z_mm] = 1.0
    return LocalizerOutput(grid, heat, probs, np.zeros(3))


def test_a_sacrum_the_chain_missed_below_l5_is_added_from_bone():
    """The lowest candidate votes L5, none votes sacrum (a bone-window export lost its peak): one is added at
    the bone's point with the localizer's votes there and its neighbours' lower score; nothing without the
    localizer's output, nor when the lowest candidate is not the last lumbar vertebra."""
    ct, centre = _pelvis()
    lumbar = np.zeros(len(LEVEL_IDS))
    lumbar[LEVEL_IDS.index(24)] = 1.0
    cands = [Candidate(L4, 0.6, np.roll(lumbar, -1), 0.9), Candidate(L5, 0.4, lumbar, 0.9)]
    out = _localizer_voting_sacrum_below(115.0)
    added = with_sacrum_from_bone(ct, cands, out)
    assert added[:2] == cands and len(added) == 3
    assert np.linalg.norm(added[2].center_lps - centre) < 1.0
    assert LEVEL_IDS[int(np.argmax(added[2].level_probs))] == 26
    assert added[2].score == 0.4
    assert with_sacrum_from_bone(ct, cands) == cands
    l3 = np.roll(lumbar, -1)
    l4_last = [Candidate(L4 + [0.0, 0.0, 35.0], 0.6, np.roll(l3, -1), 0.9), Candidate(L4, 0.6, l3, 0.9)]
    assert with_sacrum_from_bone(ct, l4_last, out) == l4_last
