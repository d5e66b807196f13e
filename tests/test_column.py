"""The column tracker: the vertebral-body centreline from bone geometry, on real CT in three exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference import registry
from inference.column import track_column
from inference.column.track import looks_bone_windowed
from inference.io import onto_grid, read_ct, read_label_map
from inference.measure import vertebra_centers
from inference.synth.exports import bone_window, display_window
from inference.volume import Volume

ROOT = Path(__file__).parents[1]
SAMPLE = ROOT / "assets" / "sample" / "abdomen_ct_3mm.nii.gz"
TRUTH = ROOT / "assets" / "sample" / "abdomen_vertebrae_totalseg.nii.gz"


@pytest.fixture(scope="module")
def sample():
    ct = read_ct(SAMPLE)
    return ct, onto_grid(read_label_map(TRUTH), ct)


def _inside(track, truth) -> list[str]:
    """Levels whose mask holds the track's point at the height of the level's centroid."""
    hits = []
    for vid, c in vertebra_centers(truth).items():
        p = track.at_z(c[2])
        if p is None:
            continue
        i, j, k = np.round(truth.lps_to_index(p[None])[0]).astype(int)
        if 0 <= k < truth.array.shape[0] and 0 <= j < truth.array.shape[1] and 0 <= i < truth.array.shape[2] \
                and truth.array[k, j, i] == vid:
            hits.append(registry.name_of(vid))
    return hits


@pytest.mark.parametrize(("export", "wanted"), [(None, 6), (bone_window, 6), (display_window, 6)])
def test_the_track_runs_through_the_vertebral_bodies_whatever_the_window(sample, export, wanted):
    """T11 (cut at the top of the scan) to S1: the track passes inside the reference mask of at least six
    of the eight levels, on the scan as it is, bone-windowed (< 200 HU set to 0) and display-windowed
    (W 400 / L 40 baked into 0-255). Measured 2026-12-07: T12-L5, L1-S1, T12-L5."""
    ct, truth = sample
    ct = ct if export is None else export(ct)
    track = track_column(ct)
    assert track.windowed == (export is bone_window)
    hits = _inside(track, truth)
    assert len(hits) >= wanted, hits
    assert {"L1", "L2", "L3", "L4", "L5"} <= set(hits)


def test_bone_window_exports_are_recognised(sample):
    ct, _ = sample
    assert not looks_bone_windowed(ct)
    assert looks_bone_windowed(bone_window(ct))
    assert not looks_bone_windowed(display_window(ct))


def test_no_bone_no_track():
    vol = Volume(np.full((30, 40, 40), -50, np.int16), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    vol.array[:, 10:30, 10:30] = 40  # soft tissue only
    track = track_column(vol)
    assert not track.found and track.length_mm() == 0.0 and track.at_z(10.0) is None
