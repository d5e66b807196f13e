"""The sacrum's centre from the bone below L5 (`inference.column.sacrum`)."""

from __future__ import annotations

import numpy as np

from inference.column import sacrum_point, with_sacrum_from_bone
from inference.localize import Candidate
from inference.models.localizer import LEVEL_IDS
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
