"""Training-data plumbing that decides what the models learn (no training runs here)."""

from __future__ import annotations

import numpy as np
import torch

from inference.preprocess import AIR_HU
from inference.train.train_localizer import CUT_BEHIND_MM, MIN_VISIBLE, cut_behind, restrict_fov


def _column(n_levels: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A (k, j, i) = (112, 64, 64) crop at 4 mm with ``n_levels`` box vertebrae stacked along k."""
    x = np.full((112, 64, 64), 40.0, np.float32)
    y = np.zeros(x.shape, np.uint8)
    ids = np.arange(20, 20 + n_levels)
    centers = []
    for n, vid in enumerate(ids):
        k0 = 10 + 8 * n
        y[k0 : k0 + 7, 28:38, 26:38] = vid
        x[y == vid] = 400.0
        centers.append(np.argwhere(y == vid).mean(axis=0))
    return x, y, np.array(centers), ids


def test_narrowed_field_of_view_is_air_and_keeps_targets_of_visible_vertebrae():
    x0, y0, centers, ids = _column()
    full = {vid: int((y0 == vid).sum()) for vid in ids}
    narrowed = 0
    for seed in range(40):
        x, y, kept = restrict_fov(x0.copy(), y0.copy(), centers, ids, np.random.default_rng(seed))
        outside = x == AIR_HU
        assert outside.any() and not y[outside].any()  # cut away: air, background
        assert np.array_equal(x[~outside], x0[~outside]) and np.array_equal(y[~outside], y0[~outside])
        expected = []
        for n, vid in enumerate(ids):
            visible = int((y == vid).sum())
            if visible >= 0.95 * full[vid]:
                expected.append(centers[n])  # (nearly) whole: its own center
            elif visible and visible >= MIN_VISIBLE * full[vid]:
                expected.append(np.argwhere(y == vid).mean(axis=0))  # cut: the visible part's centroid
                narrowed += 1
        assert np.allclose(kept, np.array(expected).reshape(-1, 3))
    assert narrowed > 0  # some draws cut a vertebra, so both rules were exercised


def test_cut_from_behind_keeps_the_whole_length_and_cuts_every_vertebra_at_one_depth():
    x0, y0, centers, ids = _column()
    for seed in range(20):
        x, y, kept = cut_behind(x0.copy(), y0.copy(), centers, ids, np.random.default_rng(seed))
        outside = x == AIR_HU
        assert not y[outside].any()
        back = np.nonzero(~outside.all(axis=(0, 2)))[0].max() + 1  # first cut-away row (posterior)
        edge = (back - np.median(centers[:, 1])) * 4.0
        assert CUT_BEHIND_MM[0] - 4 <= edge <= CUT_BEHIND_MM[1] + 4
        assert not (~outside)[:, back:].any()  # everything behind the edge is gone, at every level
        assert (~outside)[:, :back].any(axis=(1, 2)).all()  # the whole cranio-caudal length is kept
        assert len(kept) <= len(ids)


def test_bone_window_export_keeps_bone_and_flattens_the_rest():
    from inference.train.train_localizer import bone_window_export

    hu = np.linspace(-1024, 1500, 5000, dtype=np.float32).reshape(50, 100)
    out = bone_window_export(hu, np.random.default_rng(0))
    changed = out != hu
    assert changed.any() and len(np.unique(out[changed])) == 1  # one fill value
    assert hu[changed].max() < 300 and np.array_equal(out[hu >= 300], hu[hu >= 300])  # bone untouched


def _seg_case(with_ribs: bool) -> dict[str, np.ndarray]:
    """A 2 mm pool case: one box vertebra (L1) and, beside it, a bright rib bar."""
    hu = np.full((60, 80, 80), 40, np.int16)
    labels = np.zeros(hu.shape, np.uint8)
    labels[25:35, 35:45, 35:45] = 20
    hu[labels > 0] = 300
    ribs = np.zeros(hu.shape, np.uint8)
    ribs[29:32, 46:49, 47:70] = 1
    hu[ribs > 0] = 1500
    case = {"hu": hu, "labels": labels, "lesions": np.zeros_like(labels), "ids": np.array([20]),
            "centers": np.array([[40.0, 40.0, 30.0]], np.float32)}
    if with_ribs:
        case["ribs"] = ribs
    return case


def test_segmenter_samples_carry_the_rib_target_and_dim_ribs_sometimes():
    import torch

    from inference.train import train_segmenter as ts

    rng = np.random.default_rng(0)
    samples = [ts.sample(_seg_case(True), rng) for _ in range(12)]
    assert all(s["ribs"].sum() == 3 * 3 * 23 for s in samples)  # the whole bar is inside every crop
    rib_hu = [float(s["x"][0][s["ribs"] > 0].mean()) * 1000 for s in samples]
    assert min(rib_hu) < 1000 < max(rib_hu)  # dimmed in some samples, not in others
    no_map = ts.sample(_seg_case(False), rng)
    assert np.isnan(no_map["ribs"]).all()
    # the loss skips the rib term for samples without a rib map
    out = torch.zeros((2, 5, *no_map["y"].shape))
    y = torch.from_numpy(np.stack([samples[0]["y"], no_map["y"]]))
    les = torch.zeros((2, 3, *no_map["y"].shape))
    ribs = torch.from_numpy(np.stack([samples[0]["ribs"], no_map["ribs"]]))
    _, parts = ts.loss_fn(out, y, torch.ones_like(y), les, ribs=ribs)
    assert np.isfinite(parts["rib"])
    _, parts = ts.loss_fn(out, y, torch.ones_like(y), les, ribs=ribs[1:2].expand(2, -1, -1, -1))
    assert "rib" not in parts


def test_sacrum_samples_use_the_taller_crop_centred_on_the_sacrum():
    from inference.models.segmenter import PATCH, SACRUM_PATCH, patch_of
    from inference.train import train_segmenter as ts

    case = _seg_case(False)
    case["labels"][case["labels"] == 20] = 26
    case["ids"] = np.array([26])
    rng = np.random.default_rng(1)
    s = ts.sample(case, rng, target=26, shape=SACRUM_PATCH)
    assert s["x"].shape == (3, *SACRUM_PATCH) and s["y"].shape == SACRUM_PATCH
    assert s["y"].sum() == 10 * 10 * 10  # the whole box, near the crop's middle
    k = np.nonzero(s["y"].any(axis=(1, 2)))[0]
    assert abs((k.min() + k.max()) / 2 - (SACRUM_PATCH[0] - 1) / 2) < 6
    assert patch_of(26) == SACRUM_PATCH and patch_of(24) == PATCH


def test_training_files_come_from_several_pools_below_the_held_out_index(tmp_path):
    from inference.train.common import training_files

    for pool, idx in (("a", (0, 5, 9)), ("b", (1, 12))):
        (tmp_path / pool).mkdir()
        for i in idx:
            (tmp_path / pool / f"case_{i:05d}.npz").touch()
        (tmp_path / pool / "partial_00002.npz").touch()
    names = [(p.parent.name, p.name) for p in training_files([tmp_path / "a", tmp_path / "b"], val_from=9)]
    assert names == [("a", "case_00000.npz"), ("a", "case_00005.npz"), ("b", "case_00001.npz")]
    assert len(training_files(tmp_path / "a", val_from=100)) == 3


def test_a_missing_pool_folder_is_a_one_line_usage_error(tmp_path, capsys):
    import pytest

    from inference.train.common import parse_training_arguments, training_arguments

    (tmp_path / "empty").mkdir()
    pools = [str(tmp_path / "empty"), str(tmp_path / "absent")]
    parser = training_arguments("t", val_from=10)
    with pytest.raises(SystemExit):
        parse_training_arguments(parser, ["--pool", *pools, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no such pool folder: " + pools[1] + ";" in err  # the empty folder is fine: it is waited on
    args = parse_training_arguments(parser, ["--pool", pools[0], "--out", str(tmp_path / "o")])
    assert args.pool == [tmp_path / "empty"]


def _random_batch(rng):
    return {"a": rng.random((2, 3)), "n": np.arange(4)}


def test_batches_come_from_the_training_stream_or_from_worker_processes():
    from inference.train.common import batch_stream

    here = batch_stream(_random_batch, np.random.default_rng(5), seed=5, workers=0)
    first = [next(here)["a"] for _ in range(3)]
    expected = np.random.default_rng(5)
    for got in first:  # in process: exactly the training generator's draws, in order
        np.testing.assert_array_equal(got.numpy(), expected.random((2, 3)))
    ahead = batch_stream(_random_batch, np.random.default_rng(5), seed=5, workers=2)
    batches = [next(ahead) for _ in range(6)]
    assert all(isinstance(b["a"], torch.Tensor) and b["a"].shape == (2, 3) for b in batches)
    assert torch.equal(batches[0]["n"], torch.arange(4))
    values = {tuple(b["a"].flatten().tolist()) for b in batches}
    assert len(values) == 6  # the workers draw from streams of their own, not copies of one


def test_the_trainers_make_batches_of_the_network_input_shapes(tmp_path):
    from inference.train.common import PoolFiles
    from inference.train.pool import make_pool
    from inference.train.train_localizer import PATCH, make_batch
    from inference.train.train_segmenter import SegmenterBatches

    make_pool(tmp_path / "loc", 1, seed=3, spacing=4.0)
    make_pool(tmp_path / "seg", 1, seed=3, spacing=2.0)
    rng = np.random.default_rng(0)
    b = make_batch(rng, PoolFiles([tmp_path / "loc"], 10), batch=2, fov_p=0.5, clip_p=0.0, cut_p=0.0,
                   constant_descriptor=False)
    assert b["x"].shape == (2, 1, *PATCH) and b["cls"].shape == (2, *PATCH)
    assert b["heat"].shape == (2, *(p // 2 for p in PATCH)) and b["desc"].shape[0] == 2
    s = SegmenterBatches(PoolFiles([tmp_path / "seg"], 10), batch=2, p_lesion=0.0, cache_cases=4)(rng)
    assert s["x"].shape[0] == s["y"].shape[0] == s["w"].shape[0] == s["les"].shape[0] == s["ribs"].shape[0] == 2
    assert s["w"].shape == s["y"].shape and s["w"].min() >= 1.0
