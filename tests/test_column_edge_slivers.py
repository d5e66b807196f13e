"""The arch of the vertebra above the top one, cut off by the scan's upper edge (`inference.column.edge_slivers`,
`Pipeline.add_top_sliver`)."""

from __future__ import annotations

import numpy as np

from inference.column import ColumnTrack, straighten, top_sliver
from inference.localize import Candidate, LocalizerOutput
from inference.pipeline import Pipeline
from inference.preprocess import WorkingGrid
from inference.segment import SegmentationOutput, VertebraMask
from inference.volume import Volume


def _scan() -> tuple[Volume, Volume, object]:
    """A 1 mm grid 80 × 100 × 160 mm (x, y, z; the head at the top slice) with a straight column along S-I
    through (x, y) = (40, 40) mm, and the top vertebra (tag 1, bone of 600 HU): a body from y 28 to 52 mm and an
    arch behind it to y 70 mm, z 110-150 mm, 10 mm below the scan's upper edge."""
    ct = Volume(np.zeros((160, 100, 80), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    labels = Volume(np.zeros((160, 100, 80), np.uint8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    for box in [(slice(110, 150), slice(28, 52), slice(28, 52)), (slice(115, 145), slice(52, 70), slice(34, 46))]:
        ct.array[box] = 600
        labels.array[box] = 1
    z = np.arange(10.0, 150.0, 2.0)
    track = ColumnTrack(np.column_stack([np.full_like(z, 40.0), np.full_like(z, 40.0), z]),
                        np.ones(len(z)), np.ones(len(z), bool), 200.0, False)
    return ct, labels, straighten(ct, track, resample=False)


def test_the_arch_of_the_vertebra_above_cut_by_the_upper_edge_is_a_sliver():
    ct, labels, spine = _scan()
    ct.array[148:160, 62:76, 34:46] = 600  # its spinous and articular processes, 22-36 mm behind, cut at the edge
    found = top_sliver(ct, labels, spine, 1)
    assert found is not None
    assert found.ml == 2.016  # 12 × 14 × 12 mm: the voxel beside the mask given back once the piece is kept
    assert np.allclose(found.center_lps, [39.5, 68.5, 153.5])
    assert not np.any(labels.array[tuple(found.mask.T)])  # unclaimed bone only


def test_bone_in_front_beside_or_away_from_the_edge_is_no_sliver():
    ct, labels, spine = _scan()
    ct.array[152:160, 30:50, 30:50] = 600  # the next body, in front (on the centreline)
    assert top_sliver(ct, labels, spine, 1) is None
    ct, labels, spine = _scan()
    ct.array[150:160, 55:65, 40:80] = 600  # a rib leaving sideways
    assert top_sliver(ct, labels, spine, 1) is None
    ct, labels, spine = _scan()
    ct.array[146:156, 62:76, 34:46] = 600  # does not reach the scan's edge
    assert top_sliver(ct, labels, spine, 1) is None
    ct, labels, spine = _scan()
    ct.array[148:160, 58:100, 20:60] = 600  # bigger than any sliver (20 ml)
    assert top_sliver(ct, labels, spine, 1) is None


def test_nothing_is_looked_for_above_a_top_vertebra_far_from_the_edge():
    ct, labels, spine = _scan()
    for v in (ct, labels):
        v.array[:] = np.roll(v.array, -40, axis=0)  # the top vertebra now ends 50 mm below the edge
    ct.array[148:160, 62:76, 34:46] = 600
    assert top_sliver(ct, labels, spine, 1) is None


def test_the_pipeline_puts_the_sliver_at_the_head_of_the_column_and_moves_the_other_tags_down():
    ct, labels, spine = _scan()
    labels.array[60:100, 28:52, 28:52] = 2  # a second vertebra below
    ct.array[148:160, 62:76, 34:46] = 600
    seg = SegmentationOutput(labels, Volume(np.zeros(labels.array.shape, np.float16), labels.spacing, labels.origin),
                             {1: VertebraMask(1, 3000, {"lytic": 0.1}, 2.0), 2: VertebraMask(2, 3000)},
                             box=(slice(60, 150), slice(28, 70), slice(28, 52)))
    grid = WorkingGrid((0.0, 0.0, 0.0), 8.0, (10, 13, 20))
    out = LocalizerOutput(grid, np.full((20, 13, 10), 0.2, np.float32), np.full((4, 20, 13, 10), 0.25, np.float32),
                          np.zeros(4))
    cands = [Candidate(np.array([40.0, 45.0, 130.0]), 0.9, np.full(3, 1 / 3), 0.5),
             Candidate(np.array([40.0, 40.0, 80.0]), 0.8, np.full(3, 1 / 3), 0.5)]
    new, seg2, ribs, added = Pipeline.add_top_sliver(ct, out, spine, cands, seg, [2.0, None])
    assert added and len(new) == 3 and ribs == [None, 2.0, None]
    assert new[0].score == 0.9 and np.allclose(new[0].center_lps, [39.5, 68.5, 153.5])
    assert sorted(np.unique(seg2.labels.array)) == [0, 1, 2, 3]
    assert np.all(seg2.labels.array[120, 40, 40] == 2) and np.all(seg2.labels.array[80, 40, 40] == 3)
    assert seg2.masks[2].lesion_scores == {"lytic": 0.1} and seg2.masks[1].lesion_scores == {}
    assert seg2.box[0].stop == 160  # the box holds the sliver
    # without a sliver nothing changes
    ct2, labels2, spine2 = _scan()
    seg3 = SegmentationOutput(labels2, seg.lesions, {1: VertebraMask(1, 3000)})
    assert Pipeline.add_top_sliver(ct2, out, spine2, cands[:1], seg3, [None])[3] is False


def test_a_piece_is_placed_in_the_column_frame_from_a_sample_of_its_voxels(monkeypatch):
    """Big pieces of fine scans are placed from at most `SAMPLE` voxels: the same sliver either way."""
    import inference.column.edge_slivers as edge_slivers

    ct, labels, spine = _scan()
    ct.array[148:160, 62:76, 34:46] = 600
    whole = top_sliver(ct, labels, spine, 1)
    monkeypatch.setattr(edge_slivers, "SAMPLE", 50)
    sampled = top_sliver(ct, labels, spine, 1)
    assert whole is not None and sampled is not None
    assert sampled.ml == whole.ml and np.array_equal(sampled.mask, whole.mask)
