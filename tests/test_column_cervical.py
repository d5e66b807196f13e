"""Cervical vertebrae the chain skipped, put back from their neighbours' spacing (`inference.column.cervical`)."""

from __future__ import annotations

import numpy as np

from inference.column import ColumnTrack, straighten, with_skipped_cervical
from inference.localize import Candidate, LocalizerOutput
from inference.models.localizer import LEVEL_IDS
from inference.preprocess import WorkingGrid
from inference.volume import Volume


def _spine_and_output():
    """A straight column along S-I through (x, y) = (40, 40) mm of a 1 mm grid 80 × 80 × 200 mm, and a localizer
    output of flat heat and votes on an 8 mm grid over it."""
    z = np.arange(10.0, 190.0, 2.0)
    track = ColumnTrack(np.column_stack([np.full_like(z, 40.0), np.full_like(z, 40.0), z]),
                        np.ones(len(z)), np.ones(len(z), bool), 200.0, False)
    ct = Volume(np.zeros((200, 80, 80), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    grid = WorkingGrid((0.0, 0.0, 0.0), 8.0, (10, 10, 25))
    probs = np.full((len(LEVEL_IDS) + 1, 25, 10, 10), 1.0 / (len(LEVEL_IDS) + 1), np.float32)
    return straighten(ct, track, resample=False), LocalizerOutput(grid, np.full((25, 10, 10), 0.3, np.float32),
                                                                  probs, np.zeros(4))


def _cand(z: float, level: str, score: float = 0.8) -> Candidate:
    votes = np.full(len(LEVEL_IDS), 0.01)
    votes[LEVEL_IDS.index({"C4": 4, "C6": 6, "T4": 11, "T6": 13}[level])] = 1.0
    return Candidate(np.array([40.0, 40.0, z]), score, votes / votes.sum(), 0.5)


def test_a_vertebra_is_put_back_between_cervical_neighbours_two_spacings_apart():
    spine, out = _spine_and_output()
    cands = [_cand(150.0, "C4", 0.9), _cand(116.0, "C6", 0.6)]  # 34 mm: one skipped
    new = with_skipped_cervical(spine, cands, out)
    assert len(new) == 3 and new[0] is cands[0] and new[2] is cands[1]
    assert np.allclose(new[1].center_lps, [40.0, 40.0, 133.0], atol=0.5)
    assert new[1].score >= 0.6  # the lower of its neighbours' scores, or the heatmap's where higher


def test_three_spacings_get_two_and_single_spacings_none():
    spine, out = _spine_and_output()
    new = with_skipped_cervical(spine, [_cand(170.0, "C4"), _cand(118.0, "C6")], out)  # 52 mm: two skipped
    assert [round(float(c.center_lps[2])) for c in new] == [170, 153, 135, 118]
    cands = [_cand(150.0, "C4"), _cand(128.0, "C6")]  # 22 mm: C2-C3 is that far
    assert with_skipped_cervical(spine, cands, out) == cands


def test_thoracic_neighbours_are_left_alone():
    spine, out = _spine_and_output()
    cands = [_cand(150.0, "T4"), _cand(110.0, "T6")]  # 40 mm, but thoracic votes
    assert with_skipped_cervical(spine, cands, out) == cands
    cands = [_cand(150.0, "C6"), _cand(110.0, "T4")]  # one of the two not cervical
    assert with_skipped_cervical(spine, cands, out) == cands
    assert with_skipped_cervical(spine, cands[:1], out) == cands[:1]
