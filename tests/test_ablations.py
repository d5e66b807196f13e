"""The architecture variants and training switches behind the ablations (docs/ablations.md)."""

from __future__ import annotations

import json

import numpy as np
import torch

from inference.models.localizer import DESCRIPTOR_MEAN, LocalizerNet, freeze_descriptor
from inference.models.nets import UNet3D
from inference.models.segmenter import SegmenterNet


def test_attention_gates_sit_on_every_skip_and_change_the_output():
    torch.manual_seed(0)
    plain = UNet3D(1, 2, widths=(4, 8, 8))
    torch.manual_seed(0)
    gated = UNet3D(1, 2, widths=(4, 8, 8), attention=True)
    assert plain.gates is None and len(gated.gates) == 2
    x = torch.randn(1, 1, 8, 8, 8)
    assert gated(x).shape == plain(x).shape == (1, 2, 8, 8, 8)
    # same seed, same convolutions: only the gates differ, and they do act
    assert not torch.allclose(gated(x), plain(x))


def test_segmenter_without_center_channels_ignores_them():
    torch.manual_seed(0)
    model = SegmenterNet(widths=(4, 8), use_centers=False).eval()
    x = torch.randn(1, 3, 8, 8, 8)
    y = x.clone()
    y[:, 1:] = torch.randn(1, 2, 8, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), model(y))
    with_centers = SegmenterNet(widths=(4, 8)).eval()
    with torch.no_grad():
        assert not torch.equal(with_centers(x), with_centers(y))


def test_a_frozen_descriptor_gives_the_mean_descriptors_output_for_any_scan():
    torch.manual_seed(0)
    model = LocalizerNet(widths=(4, 8, 8, 8))
    torch.nn.init.normal_(model.unet.film[-1].weight)  # a trained FiLM (it starts at zero)
    frozen = LocalizerNet(widths=(4, 8, 8, 8))
    frozen.load_state_dict(freeze_descriptor(model.state_dict(), DESCRIPTOR_MEAN))
    model.eval(), frozen.eval()
    x = torch.randn(1, 1, 32, 32, 32)
    mean = torch.from_numpy(DESCRIPTOR_MEAN)[None]
    other = torch.tensor([[0.6, 1.7, 3.0, 0.2]])
    with torch.no_grad():
        assert torch.allclose(frozen(x, other), model(x, mean), atol=1e-5)
        assert not torch.allclose(model(x, other), model(x, mean), atol=1e-5)


def test_segmenter_training_stops_at_its_step_budget_and_ships_its_variant(tmp_path, monkeypatch):
    import shutil

    from inference.models.weights import WEIGHTS_ROOT
    from inference.pipeline import Pipeline
    from inference.train import export_weights, train_segmenter
    from tests.test_training import _seg_case

    pool = tmp_path / "pool"
    pool.mkdir()
    np.savez_compressed(pool / "case_00000.npz", **_seg_case(True))
    monkeypatch.setattr(train_segmenter, "P_SACRUM_BATCH", 0.0)
    out = tmp_path / "run"
    arch = {"attention": True, "use_centers": False}
    train_segmenter.train([pool], out, minutes=5, batch=1, lr=1e-3, val_from=10, seed=0, threads=1,
                          max_steps=2, arch=arch)
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["step"] == 2 and state["arch"] == arch
    weights = tmp_path / "weights"
    export_weights.export_segmenter(out / "last.pt", weights / "segmenter", None, "test", None,
                                    schedule="2 steps")
    manifest = json.loads((weights / "segmenter" / "manifest.json").read_text())
    assert manifest["architecture"]["attention"] is True and manifest["architecture"]["use_centers"] is False
    assert manifest["training"]["schedule"] == "2 steps"
    shutil.copytree(WEIGHTS_ROOT / "lesion", weights / "lesion")  # the segmentation stage loads it too
    pipe = Pipeline("cpu", weights_root=weights, localizer=LocalizerNet(widths=(4, 8, 8, 8)))
    assert pipe.segmenter.unet.gates is not None and pipe.segmenter.use_centers is False


def test_the_ablation_report_tabulates_every_arm(tmp_path):
    from inference.train import ablation_report

    def real(dice, n_id):
        none = {"n_identified": n_id, "n_reference": 18, "mean_center_error_mm": 4.0, "mean_dice": dice,
                "mean_hd95_mm": 6.0}
        return {"oracle_summary": {"mean_dice": dice, "mean_hd95_mm": 5.5, "mean_dice_without_slivers": dice,
                                   "n_without_slivers": 1},
                "summary": {"none": none, "noise σ40 HU": dict(none, n_identified=n_id - 1)},
                "cases": {"sample": {"oracle_segmentation": {"per_vertebra": [{"name": "L1", "dice": dice}]}}}}

    for arm, dice in (("a", 0.8), ("b", 0.9)):
        folder = tmp_path / arm
        (folder / "real").mkdir(parents=True)
        torch.save({"step": 1000, "log": [{"step": 1000, "dice": dice}], "arch": {"attention": arm == "b"}},
                   folder / "last.pt")
        (folder / "synthetic.json").write_text(json.dumps(
            {"mean_dice": dice, "vertebrae": 40, "lesion_ap": {"lytic": {"ap": 0.2}, "blastic": {"ap": None}}}))
        (folder / "real" / "localization.json").write_text(json.dumps(real(dice, 9 if arm == "a" else 10)))
        (folder / "calibration.json").write_text(json.dumps(
            {"out_of_sample": {"1.5/ribs": [80, 100], "2.0/ribs": [85, 100] if arm == "b" else [70, 100]}}))
    arms = [("a", tmp_path / "a"), ("b", tmp_path / "b")]
    seg = "\n".join(ablation_report.segmenter_table(arms))
    assert "| a | 1000 | 0.800 (40) | 0.800 / 5.50 | 0.800 (1) | 0.800 / 6.00 | 0.20 / – |" in seg
    assert "| sample L1 | 0.800 | 0.900 |" in seg
    loc = "\n".join(ablation_report.localizer_table(arms))
    assert "| noise σ40 HU | 8 / 18 (4.0) | 9 / 18 (4.0) |" in loc
    assert "| b | 1000 | 80 / 100 (0.800) | 85 / 100 (2.0/ribs) |" in loc



def test_the_finetune_table_pairs_each_vertebra_with_the_first_arm(tmp_path):
    from inference.train import ablation_report

    for arm, dice in (("shipped", [0.8, 0.9]), ("tuned", [0.82, 0.9])):
        folder = tmp_path / arm
        (folder / "real").mkdir(parents=True)
        if arm == "tuned":
            torch.save({"step": 1500}, folder / "last.pt")
        for key, shift in (("synthetic", 0.0), ("synthetic_contrast", -0.1)):
            rows = [{"dice": d + shift} for d in dice]
            (folder / f"{key}.json").write_text(json.dumps(
                {"mean_dice": sum(r["dice"] for r in rows) / 2, "vertebrae": 2, "rows": rows,
                 "lesion_ap": {"lytic": {"ap": 0.1}, "blastic": {"ap": 0.2}, "fracture": {"ap": None}}}))
        (folder / "real" / "localization.json").write_text(json.dumps(
            {"oracle_summary": {"mean_dice": 0.85, "mean_hd95_mm": 5.57}}))
    lines = ablation_report.finetune_table([("shipped", tmp_path / "shipped"), ("tuned", tmp_path / "tuned")])
    assert lines[2] == ("| shipped | shipped | 0.8500 (2) | – | 0.7500 (2) | – | 0.100 / 0.200 / – | "
                        "0.850 / 5.57 |")
    assert lines[3].startswith("| tuned | 1500 | 0.8600 (2) | +0.0100 ± 0.0071 | 0.7600 (2) | +0.0100 ± 0.0071 |")
