"""Vertebra centers, volumes and body centers (inference.measure), in LPS mm."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference.io import read_label_map
from inference.io.image_file import read_image_file
from inference.measure import body_centers, label_boxes, vertebra_centers, vertebra_volumes_ml, vertebra_voxel_counts
from inference.volume import Volume

DATA = Path(__file__).parent / "data"
OBLIQUE = np.linalg.qr(np.array([[0.9, 0.3, 0.1], [-0.2, 0.8, 0.4], [0.1, -0.5, 0.9]]))[0]


def _centroid_lps(vol: Volume, mask: np.ndarray) -> np.ndarray:
    kji = np.argwhere(mask)
    return vol.index_to_lps(kji[:, ::-1].astype(float)).mean(axis=0)


def _random_labels(seed: int = 0) -> Volume:
    rng = np.random.default_rng(seed)
    arr = np.zeros((20, 18, 16), np.uint8)
    for vid in (20, 8, 26):
        lo = rng.integers(0, 8, 3)
        arr[lo[0] : lo[0] + rng.integers(3, 10), lo[1] : lo[1] + 7, lo[2] : lo[2] + 6] = vid
    return Volume(arr, (0.8, 1.1, 2.5), (-12.0, 40.0, -300.0), OBLIQUE)


def test_centers_equal_mask_centroid_on_oblique_grid():
    labels = _random_labels()
    centers = vertebra_centers(labels)
    assert list(centers) == [8, 20, 26]  # cranio-caudal: T1, L1, sacrum
    for vid, c in centers.items():
        assert c.shape == (3,)
        assert np.allclose(c, _centroid_lps(labels, labels.array == vid), atol=1e-9)


def test_volumes_and_counts():
    labels = _random_labels(1)
    counts = vertebra_voxel_counts(labels)
    volumes = vertebra_volumes_ml(labels)
    for vid in counts:
        assert counts[vid] == int((labels.array == vid).sum())
        assert volumes[vid] == pytest.approx(counts[vid] * 0.8 * 1.1 * 2.5 / 1000)
    assert list(label_boxes(labels)) == list(counts)


def test_empty_map_and_bad_types():
    empty = Volume(np.zeros((3, 3, 3), np.uint8), (1, 1, 1), (0, 0, 0))
    assert vertebra_centers(empty) == {} and vertebra_volumes_ml(empty) == {}
    with pytest.raises(ValueError):
        vertebra_centers(empty.with_array(np.ones((3, 3, 3), np.float32)))


def test_body_centers_synthetic():
    arr = np.zeros((10, 10, 10), np.uint8)
    arr[2:8, 2:8, 2:8] = 20
    sub = np.zeros_like(arr)
    sub[2:8, 2:8, 2:4] = 50  # the body: low i
    sub[2:8, 2:8, 4] = 49
    labels = Volume(arr, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    body = body_centers(labels, labels.with_array(sub))
    assert np.allclose(body[20], [3.0, 4.5, 4.5])
    with pytest.raises(ValueError, match="grid"):
        body_centers(labels, Volume(sub, (2.0, 1.0, 1.0), (0.0, 0.0, 0.0)))


def test_body_centers_tptbox_real():
    base = DATA / "tptbox_ct_lumbar_cutout"
    labels = read_label_map(base / "sub-ct_seg-vert_label-22_msk.nii.gz")
    sub = read_image_file(base / "sub-ct_seg-subreg_label-22_msk.nii.gz")
    centers = vertebra_centers(labels)
    bodies = body_centers(labels, sub)
    assert set(bodies) <= set(centers) and 22 in bodies
    for vid, b in bodies.items():
        inside = labels.array == vid
        assert np.allclose(b, _centroid_lps(labels, inside & np.isin(sub.array, (49, 50))), atol=1e-9)
    # the body lies anterior (−y in LPS) of the whole vertebra's centroid, which includes the arch
    assert bodies[22][1] < centers[22][1] - 5


@pytest.mark.parametrize("subject", ["sub-verse004", "sub-verse010"])
def test_centers_near_verse_body_centroids(subject):
    """VerSe's centroid files hold body centroids (voxel indices): loosely near our whole-mask centers."""
    folder = DATA / "verse_labels_only" / subject
    labels = read_label_map(next(folder.glob("*_seg-vert_msk.nii.gz")))
    points = json.loads(next(folder.glob("*_ctd.json")).read_text())[1:]
    centers = vertebra_centers(labels)
    for p in points:
        ref = labels.index_to_lps(np.array([[p["X"], p["Y"], p["Z"]]]))[0]
        assert np.linalg.norm(centers[p["label"]] - ref) < 25.0  # body vs whole-vertebra centroid


def test_slab_by_slab_passes_match_whole_map_passes(monkeypatch):
    """Boxes and counts are computed slab by slab (so a worker thread never holds the interpreter
    lock for a whole CT): any slab size gives the whole-map answer."""
    from scipy import ndimage

    import inference.measure as measure

    labels = _random_labels(3)
    whole = {n + 1: sl for n, sl in enumerate(ndimage.find_objects(labels.array)) if sl is not None}
    counts = np.bincount(labels.array.ravel())
    for slab_voxels in (1, 7 * 18 * 16, 10**9):  # one slice (smaller than a slice), 7 slices, all
        monkeypatch.setattr(measure, "SLAB_VOXELS", slab_voxels)
        assert label_boxes(labels) == whole
        assert vertebra_voxel_counts(labels) == {vid: int(counts[vid]) for vid in (8, 20, 26)}


def test_field_of_view_cut_gives_the_bone_on_the_grid_faces_in_mm2():
    from inference.measure import field_of_view_cut, field_of_view_cut_areas

    arr = np.zeros((10, 12, 14), np.uint8)
    arr[0:4, 3:7, 2:5] = 20  # touches the k = 0 face: 4 x 3 voxels of 1.1 x 0.8 mm
    arr[4:8, 4:8, 4:8] = 21  # wholly inside
    vol = Volume(arr, (0.8, 1.1, 2.5), (-12.0, 40.0, -300.0), OBLIQUE)
    points, area = field_of_view_cut(vol, 20)
    assert area == pytest.approx(12 * 0.8 * 1.1) and points.shape == (12, 3)
    assert np.allclose(points, vol.index_to_lps(np.argwhere(arr[:1] == 20)[:, ::-1].astype(float)))
    assert field_of_view_cut(vol, 21) == (None, 0.0)
    assert field_of_view_cut_areas(vol) == {20: pytest.approx(area)}  # every label in one pass, 21 absent
