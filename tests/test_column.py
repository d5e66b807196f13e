"""The column tracker: the vertebral-body centreline from bone geometry, on real CT in three exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference import registry
from inference.column import ColumnTrack, straighten, track_column
from inference.column.bodies import body_chain, column_candidates, with_end_vertebrae
from inference.column.track import looks_bone_windowed
from inference.config import SHIPPED, RunConfig
from inference.io import onto_grid, read_ct, read_label_map
from inference.localize import CLASSES, Candidate, LocalizerOutput, find_candidates
from inference.measure import vertebra_centers
from inference.preprocess import WorkingGrid
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


@pytest.mark.parametrize(("export", "wanted"), [(None, 6), (bone_window, 5), (display_window, 6)])
def test_the_track_runs_through_the_vertebral_bodies_whatever_the_window(sample, export, wanted):
    """T11 (cut at the top of the scan) to S1: the track passes inside the reference mask of L1-L5 at least,
    on the scan as it is, bone-windowed (< 200 HU set to 0) and display-windowed (W 400 / L 40 baked into
    0-255). Measured 2026-12-07: T12-L5, L1-L5 (the bone-windowed track, which went on through S1 into the
    right hip, now stops where it turns sideways), T12-L5."""
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


def test_a_track_that_turns_sideways_is_cut_there():
    """A path that follows the column, then sweeps 60 mm sideways within 40 mm (into a hip), keeps the column
    part; a gentle scoliotic drift of the same 60 mm over 200 mm is kept whole."""
    from inference.column.track import _without_sideways

    n = 150
    x = np.full(n, 50.0)
    x[:20] = 50 + np.linspace(30, 0, 20)  # the sweep, at the caudal end (slices 0-19, 2 mm each)
    path = np.column_stack([np.full(n, 40), np.round(x).astype(int)])
    canal = np.ones(n, bool)
    a, b = _without_sideways(path, (0, n), canal)
    assert 8 <= a <= 20 and b == n
    drift = np.column_stack([np.full(n, 40), np.round(50 + np.linspace(0, 30, n)).astype(int)])
    assert _without_sideways(drift, (0, n), canal) == (0, n)


def test_no_bone_no_track():
    vol = Volume(np.full((30, 40, 40), -50, np.int16), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    vol.array[:, 10:30, 10:30] = 40  # soft tissue only
    track = track_column(vol)
    assert not track.found and track.length_mm() == 0.0 and track.at_z(10.0) is None


# ---- the straightened spine -----------------------------------------------------------------------------
def _curved_track(n: int = 120, amplitude: float = 25.0) -> ColumnTrack:
    """A centreline with a lordosis-like sagittal bend and a scoliosis-like lateral one, one point per 2 mm."""
    z = np.arange(n) * 2.0
    y = amplitude * np.sin(z / 240.0 * np.pi)
    x = 0.4 * amplitude * np.sin(z / 120.0 * np.pi)
    pts = np.column_stack([x, y, z])
    return ColumnTrack(pts, np.ones(n), np.ones(n, bool), 200.0, False)


def _volume(shape=(130, 60, 60), spacing=(2.0, 2.0, 2.0), origin=(-60.0, -60.0, -10.0)) -> Volume:
    return Volume(np.zeros(shape, np.int16), spacing, origin, np.eye(3))


def test_straightened_coordinates_round_trip_within_half_a_millimetre():
    """LPS → (s, ap, lr) → LPS and back, for points within 40 mm of a bent centreline."""
    spine = straighten(_volume(), _curved_track(), resample=False)
    rng = np.random.default_rng(0)
    sal = np.column_stack([rng.uniform(spine.s_mm[0] + 50, spine.s_mm[-1] - 50, 500),
                           rng.uniform(-40, 40, 500), rng.uniform(-40, 40, 500)])
    lps = spine.to_lps(sal)
    back = spine.from_lps(lps)
    assert np.abs(back - sal).max() < 0.5
    assert np.linalg.norm(spine.to_lps(back) - lps, axis=1).max() < 0.5


def test_frames_are_orthonormal_with_left_and_posterior_axes():
    spine = straighten(_volume(), _curved_track(), resample=False)
    for a, b in ((spine.tangent, spine.ap_axis), (spine.tangent, spine.lr_axis), (spine.ap_axis, spine.lr_axis)):
        assert np.abs(np.einsum("ij,ij->i", a, b)).max() < 1e-6
    assert (spine.lr_axis[:, 0] > 0.9).all()  # the patient's left (LPS +x)
    assert (spine.ap_axis[:, 1] > 0.8).all()  # posterior (LPS +y)
    assert (spine.tangent[:, 2] > 0.8).all()  # towards the head
    assert np.allclose(np.diff(spine.s_mm), 1.0)


def _tube(track: ColumnTrack, shape: tuple[int, int, int]) -> tuple[Volume, np.ndarray, np.ndarray]:
    """A 1 mm CT of ``shape`` around ``track``: (the empty CT, each voxel's LPS point, its distance from the
    track in the axial plane)."""
    ct = _volume(spacing=(1.0, 1.0, 1.0), shape=shape, origin=(-60.0, -60.0, -5.0))
    kk, jj, ii = np.indices(ct.array.shape)
    lps = ct.index_to_lps(np.column_stack([ii.ravel(), jj.ravel(), kk.ravel()])).reshape(*ct.array.shape, 3)
    z = track.points_lps[:, 2]
    cx = np.interp(lps[..., 2], z, track.points_lps[:, 0])
    cy = np.interp(lps[..., 2], z, track.points_lps[:, 1])
    return ct, lps, np.hypot(lps[..., 0] - cx, lps[..., 1] - cy)


def test_a_bent_tube_comes_out_straight():
    """A bright tube of radius 6 mm along the bent centreline lies on the straightened volume's axis in
    every plane inside the scan."""
    track = _curved_track()
    ct, _, radius = _tube(track, (250, 120, 120))
    ct.array[radius <= 6.0] = 1000
    spine = straighten(ct, track)
    planes = np.flatnonzero(spine.inside)[20:-20]
    a0, l0 = np.argmin(np.abs(spine.ap_mm)), np.argmin(np.abs(spine.lr_mm))
    assert (spine.hu[planes, a0, l0] > 900).all()
    assert (spine.hu[planes, a0 + 12, l0] < 100).all() and (spine.hu[planes, a0, l0 - 12] < 100).all()


# ---- candidates along the column --------------------------------------------------------------------------
def test_the_chain_keeps_regular_peaks_and_bridges_a_missed_one():
    s = np.arange(0.0, 300.0, 2.0)
    centres = [30, 60, 90, 150, 180, 210, 240]  # 120 missing: a vertebra the heatmap did not see
    h = sum(0.3 * np.exp(-0.5 * ((s - c) / 5.0) ** 2) for c in centres)
    h = h + 0.12 * np.exp(-0.5 * ((s - 75) / 2.0) ** 2)  # a faint peak between two vertebrae
    chain = body_chain(s, h)
    assert [round(s[i]) for i in chain] == centres


def test_column_candidates_follow_the_column_and_ignore_peaks_beside_it():
    """Faint heatmap blobs (below the whole-scan threshold) every 30 mm along a bent column become one
    candidate each, head to foot; a strong blob 60 mm beside the column does not."""
    track = _curved_track()
    grid = WorkingGrid(origin=(-80.0, -80.0, -10.0), spacing=4.0, size=(40, 40, 70))
    kk, jj, ii = np.indices(grid.size[::-1])
    lps = grid.index_to_lps(np.column_stack([ii.ravel(), jj.ravel(), kk.ravel()])).reshape(*kk.shape, 3)
    heat = np.zeros(kk.shape, np.float32)
    spine = straighten(_volume(), track, resample=False)
    centres = spine.to_lps(np.column_stack([np.arange(45.0, 235.0, 30.0), np.full(7, 5.0), np.zeros(7)]))
    for c in centres:
        heat += 0.25 * np.exp(-0.5 * (np.linalg.norm(lps - c, axis=-1) / 6.0) ** 2)
    heat += 0.9 * np.exp(-0.5 * (np.linalg.norm(lps - (centres[3] + [60.0, 0, 0]), axis=-1) / 6.0) ** 2)
    probs = np.zeros((len(CLASSES), *kk.shape), np.float32)
    probs[0] = 1.0
    out = LocalizerOutput(grid, heat, probs, np.zeros(3))
    assert find_candidates(out) and all(np.linalg.norm(c.center_lps - centres[3]) > 40 for c in find_candidates(out))
    cands = column_candidates(spine, out)
    found = np.array([c.center_lps for c in cands])
    assert len(found) == len(centres)
    assert np.linalg.norm(found - centres[::-1], axis=1).max() < 4.0


def test_whole_scan_peaks_are_added_only_beyond_the_chains_ends():
    """A vertebra cut by the scan's edge is found by the whole-scan peaks only; a second peak between two
    vertebrae of the chain (a spinous process) is not added, nor is a peak on a chain vertebra."""
    spine = straighten(_volume(), _curved_track(), resample=False)
    probs = np.full(len(CLASSES) - 1, 1.0 / (len(CLASSES) - 1))

    def cand(s, ap=0.0, lr=0.0):
        return Candidate(spine.to_lps(np.array([[s, ap, lr]]))[0], 0.5, probs, 0.9)

    along = [cand(s) for s in (180.0, 150.0, 120.0, 90.0, 60.0)]
    beyond, between, duplicate = cand(212.0), cand(135.0, ap=30.0), cand(57.0, ap=3.0)
    beside = cand(40.0, lr=60.0)  # beyond the chain's end but far to one side: an arm, not a vertebra
    merged = with_end_vertebrae(spine, along, [between, beyond, duplicate, beside], 14.0)
    assert merged == [beyond, *along]
    assert with_end_vertebrae(spine, [], [between], 14.0) == [between]


def test_peaks_of_one_end_vertebra_count_once():
    """Beyond the chain's foot, the body, the arch and the spinous process of one vertebra cut by the scan's edge
    each peak, 25 and 50 mm apart across the column: the strongest stays. A vertebra further down stays too."""
    spine = straighten(_volume(), _curved_track(), resample=False)
    probs = np.full(len(CLASSES) - 1, 1.0 / (len(CLASSES) - 1))
    along = [Candidate(spine.to_lps(np.array([[s, 0.0, 0.0]]))[0], 0.5, probs, 0.9) for s in (150.0, 120.0, 90.0)]
    body = spine.to_lps(np.array([[60.0, 0.0, 0.0]]))[0]
    posterior = spine.ap_axis[int(np.argmin(np.abs(spine.s_mm - 60.0)))]
    body_peak = Candidate(body, 0.3, probs, 0.9)
    arch_peak = Candidate(body + 25.0 * posterior, 0.45, probs, 0.9)
    spine_peak = Candidate(body + 50.0 * posterior, 0.2, probs, 0.9)
    below = Candidate(spine.to_lps(np.array([[30.0, 0.0, 0.0]]))[0], 0.25, probs, 0.9)
    merged = with_end_vertebrae(spine, along, [body_peak, arch_peak, spine_peak, below], 14.0)
    assert merged == [*along, arch_peak, below]
    # the head vertebra's candidate lies on its arch; its body peaks again 20 mm in front, 2 mm along the column
    head_body = Candidate(spine.to_lps(np.array([[152.0, -20.0, 0.0]]))[0], 0.9, probs, 0.9)
    assert with_end_vertebrae(spine, along, [head_body], 14.0) == along


def test_the_run_configuration_names_a_known_detection():
    assert SHIPPED.detection == "column"
    with pytest.raises(ValueError, match="detection"):
        RunConfig(detection="everywhere")
