"""The lesion classifier: its input, its training loop, its weights, and how its scores reach a vertebra."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from inference import registry
from inference.models.lesion import N_TYPES, LesionNet, lesion_input
from inference.models.segmenter import LESION_TYPES, PATCH, SACRUM_PATCH
from tests.fakes import FakeSegmenter, spine_ct


class FixedLesion(nn.Module):
    """Same raw probabilities for every vertebra; records the inputs it saw."""

    def __init__(self, probs: dict[str, float]):
        super().__init__()
        self.logits = torch.tensor([float(np.log(p / (1 - p))) for p in (probs.get(t, 1e-4) for t in LESION_TYPES)])
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x)
        return self.logits.expand(len(x), N_TYPES)


def test_the_classifier_reads_a_patch_of_hu_and_mask_and_gives_one_logit_per_type():
    hu = np.random.default_rng(0).normal(0, 0.3, PATCH).astype(np.float32)
    mask = np.zeros(PATCH, bool)
    mask[20:28, 28:36, 28:36] = True
    x = lesion_input(hu, mask)
    assert x.shape == (2, *PATCH) and x.dtype == np.float32 and x[1].sum() == mask.sum()
    net = LesionNet()
    out = net(torch.from_numpy(np.stack([x, x])))
    assert out.shape == (2, N_TYPES) and torch.isfinite(out).all()
    # an empty mask (a vertebra the segmenter lost) still gives finite logits
    assert torch.isfinite(net(torch.from_numpy(lesion_input(hu, np.zeros(PATCH, bool))[None]))).all()


def test_a_sacrum_crop_is_cut_to_the_patch_about_its_center():
    big = np.zeros(SACRUM_PATCH, np.float32)
    center = tuple(n // 2 for n in SACRUM_PATCH)
    big[center] = 1.0
    x = lesion_input(big, big > 0)
    assert x.shape == (2, *PATCH)
    assert tuple(np.argwhere(x[0] > 0)[0]) == tuple(c - (n - p) // 2 for c, n, p in zip(center, SACRUM_PATCH, PATCH,
                                                                                          strict=True))
    with pytest.raises(ValueError):
        lesion_input(np.zeros((10, 10, 10)), np.zeros((10, 10, 10), bool))


def test_the_classifier_scores_each_vertebra_and_scales_the_segmenters_heatmap_to_it():
    from inference.segment import LESION_FLAG, segment_vertebrae

    ct, centers = spine_ct()
    items = [(registry.id_of(n), c) for n, c in centers.items()]
    seg = FakeSegmenter({"lytic": 0.2, "blastic": 0.9})  # the segmenter's own channels disagree
    cls = FixedLesion({"lytic": 0.6, "fracture": 0.3})
    out = segment_vertebrae(seg, ct, items, torch.device("cpu"), lesion_model=cls,
                            lesion_thresholds={"lytic": 0.3, "blastic": 0.5, "fracture": None})
    for m in out.masks.values():
        assert m.lesion_scores["lytic"] == pytest.approx(1.0)  # 0.6 scaled by 0.5 / 0.3, capped at 1
        assert m.lesion_scores["blastic"] == pytest.approx(1e-4 * LESION_FLAG / 0.5, abs=1e-6)
        assert m.lesion_scores["fracture"] == 0.0  # a type the weights disable scores 0
        assert m.lesion_type == "lytic"
    # the map inside each vertebra peaks at its classifier score; the blastic channel vanished with its score
    assert float(out.lesions.array.max()) == pytest.approx(1.0, abs=1e-3)
    # the classifier saw the HU and each vertebra's own mask
    x = torch.cat(cls.inputs)
    assert x.shape[1:] == (2, *PATCH) and len(x) == 3
    assert all(0 < float(m.sum()) < m.numel() for m in x[:, 1])


def test_training_writes_checkpoints_and_the_export_is_loaded_with_the_segmenter(tmp_path):
    import shutil

    from inference.models.localizer import LocalizerNet
    from inference.models.weights import WEIGHTS_ROOT, sha256_of
    from inference.pipeline import Pipeline
    from inference.train import export_weights, train_lesion
    from tests.test_training import _seg_case

    pool = tmp_path / "pool"
    pool.mkdir()
    for n, with_lesion in enumerate((True, False, True)):
        case = _seg_case(True)
        if with_lesion:
            case["lesions"][27:31, 37:41, 37:41] = 1  # 64 lytic voxels inside the vertebra
        np.savez_compressed(pool / f"case_{n:05d}.npz", **case)
    crops = train_lesion.Crops(sorted(pool.glob("case_*.npz")))
    assert crops.y.tolist() == [[1, 0, 0], [0, 0, 0], [1, 0, 0]]
    assert crops.item(0).shape == (2, *PATCH)
    aug = crops.item(0, np.random.default_rng(1))
    assert aug.shape == (2, *PATCH) and set(np.unique(aug[1])) <= {0.0, 1.0}

    out = tmp_path / "run"
    train_lesion.train([pool], out, minutes=5, batch=2, lr=1e-3, val_from=2, seed=0, threads=1, max_steps=2,
                       val_every=1)
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["step"] == 2 and (out / "best.pt").is_file()
    assert {"ap_lytic", "mean_ap"} <= set(state["log"][-1])

    weights = tmp_path / "weights"
    shutil.copytree(WEIGHTS_ROOT / "segmenter", weights / "segmenter")
    synthetic = tmp_path / "synthetic.json"
    synthetic.write_text(json.dumps({"lesion_thresholds": {"lytic": 0.4, "blastic": None, "fracture": 0.7}}))
    export_weights.export_lesion(out / "last.pt", weights / "lesion", None, "test", None,
                                 json.loads(synthetic.read_text()))
    manifest = json.loads((weights / "lesion" / "manifest.json").read_text())
    assert manifest["sha256"] == sha256_of(weights / "lesion" / "lesion.pt")
    assert manifest["lesion_thresholds"]["lytic"] == 0.4 and "batch 16" in manifest["training"]["optimizer"]
    pipe = Pipeline("cpu", weights_root=weights, localizer=LocalizerNet(widths=(4, 8, 8, 8)))
    assert isinstance(pipe.lesion, LesionNet) and pipe.lesion_thresholds == manifest["lesion_thresholds"]
    assert {"name": "lesion", "version": manifest["version"], "sha256": manifest["sha256"]} in pipe.models
    # without the classifier's weights the segmentation stage does not start
    shutil.rmtree(weights / "lesion")
    from inference.errors import WeightsError

    with pytest.raises(WeightsError):
        Pipeline("cpu", weights_root=weights, localizer=LocalizerNet(widths=(4, 8, 8, 8)))
