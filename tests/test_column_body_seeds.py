"""Candidates whose mask missed their own body (`inference.column.body_seeds`, `Pipeline.seed_on_bodies`)."""

from __future__ import annotations

import numpy as np
import pytest

from inference.column import ColumnTrack, off_body_candidates, straighten
from inference.localize import Candidate
from inference.models.localizer import LEVEL_IDS
from inference.models.segmenter import SACRUM_IDS
from inference.pipeline import Pipeline
from inference.segment import SegmentationOutput
from inference.volume import Volume


def _spine_and_labels() -> tuple[object, Volume]:
    """A straight column along S-I through (x, y) = (40, 40) mm of a 1 mm grid 80 × 80 × 160 mm, and an empty
    label map on that grid."""
    z = np.arange(10.0, 150.0, 2.0)
    track = ColumnTrack(np.column_stack([np.full_like(z, 40.0), np.full_like(z, 40.0), z]),
                        np.ones(len(z)), np.ones(len(z), bool), 200.0, False)
    labels = Volume(np.zeros((160, 80, 80), np.uint8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    return straighten(labels, track, resample=False), labels


def _block(labels: Volume, tag: int, z: float, y: float, half: float = 8.0) -> None:
    """A 16 mm cube of ``tag`` centred on (40, y, z) mm."""
    lo, hi = int(z - half), int(z + half)
    labels.array[lo:hi, int(y - half):int(y + half), 32:48] = tag


def test_a_mask_that_took_only_the_arch_is_seeded_again_on_the_centreline_in_its_plane():
    spine, labels = _spine_and_labels()
    _block(labels, 1, 110.0, 40.0)  # holds its body
    _block(labels, 2, 70.0, 68.0)  # its arch only, 28 mm behind the column
    found = off_body_candidates(spine, labels, np.array([[40.0, 40.0, 110.0], [40.0, 68.0, 70.0]]))
    assert [n for n, _ in found] == [1]
    assert np.allclose(found[0][1], [40.0, 40.0, 70.0], atol=0.5)


def test_a_spinous_process_alone_is_left_alone():
    """A mask 37-40 mm behind the column is a spinous process, which hangs down to the next body's plane."""
    spine, labels = _spine_and_labels()
    labels.array[62:78, 77:80, 32:48] = 1  # 37-40 mm behind the column, beyond an arch's reach
    assert off_body_candidates(spine, labels, np.array([[40.0, 78.0, 70.0]])) == []
    labels.array[62:78, 60:64, 32:48] = 1  # and with its lamina, 20 mm behind: seeded on its body
    assert [n for n, _ in off_body_candidates(spine, labels, np.array([[40.0, 78.0, 70.0]]))] == [0]


def test_a_point_another_mask_holds_is_left_alone_and_so_are_candidates_beyond_the_scan_or_column():
    spine, labels = _spine_and_labels()
    _block(labels, 2, 70.0, 40.0)  # the neighbour's body holds the centreline in the candidate's plane
    _block(labels, 1, 70.0, 68.0)  # (C1 beside C2's dens)
    centers = np.array([[40.0, 68.0, 70.0], [40.0, 40.0, 70.0],
                        [40.0, 40.0, 170.0], [40.0, 40.0, 190.0]])  # beyond the scan; beyond the column
    assert off_body_candidates(spine, labels, centers) == []
    assert off_body_candidates(spine, labels, np.zeros((0, 3))) == []


def test_the_pipeline_segments_again_only_with_a_candidate_moved(monkeypatch):
    spine, labels = _spine_and_labels()
    _block(labels, 1, 110.0, 40.0)
    _block(labels, 2, 70.0, 68.0)
    seg = SegmentationOutput(labels=labels, masks={}, lesions=None)
    cands = [Candidate(np.array([40.0, 40.0, 110.0]), 0.9, np.full(3, 1 / 3), 0.5),
             Candidate(np.array([40.0, 68.0, 70.0]), 0.4, np.full(3, 1 / 3), 0.5)]
    seeded = []

    def segment_again(self, ct, new, progress=None, cancel=None):
        seeded.append([c.center_lps for c in new])
        return seg, [None, None]

    monkeypatch.setattr(Pipeline, "segment_candidates", segment_again)
    pipe = Pipeline.__new__(Pipeline)
    out, _, _ = pipe.seed_on_bodies(labels, spine, cands, seg, [None, None])
    assert len(seeded) == 1
    assert np.allclose(out[0].center_lps, cands[0].center_lps)
    assert np.allclose(out[1].center_lps, [40.0, 40.0, 70.0], atol=0.5)
    assert out[1].score == 0.4 and out[1].level_probs is cands[1].level_probs
    _block(labels, 2, 70.0, 40.0)  # now every mask holds its body: nothing moves, nothing runs
    again, _, _ = pipe.seed_on_bodies(labels, spine, out, seg, [None, None])
    assert again is out and len(seeded) == 1


def test_a_candidate_voting_for_the_sacrum_is_not_moved(monkeypatch):
    """The sacrum curves away from the column's line; its point comes from its bone."""
    spine, labels = _spine_and_labels()
    _block(labels, 1, 70.0, 68.0)
    votes = np.zeros(len(LEVEL_IDS))
    votes[[n for n, vid in enumerate(LEVEL_IDS) if vid in SACRUM_IDS][0]] = 1.0
    cands = [Candidate(np.array([40.0, 68.0, 70.0]), 0.9, votes, 0.5)]
    monkeypatch.setattr(Pipeline, "segment_candidates", lambda *a, **k: pytest.fail("segmented again"))
    seg = SegmentationOutput(labels=labels, masks={}, lesions=None)
    out, _, _ = Pipeline.__new__(Pipeline).seed_on_bodies(labels, spine, cands, seg, [None])
    assert out is cands
