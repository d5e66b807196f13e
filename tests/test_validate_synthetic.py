"""Judging the shipped segmenter on held-out synthetic CT: the lesion flag rule and the manifest update."""

from __future__ import annotations

import json

import numpy as np


def test_validate_synthetic_switches_off_lesion_types_below_the_ap_rule_in_the_manifest(tmp_path, monkeypatch):
    import shutil
    import sys

    from inference.models.weights import WEIGHTS_ROOT, sha256_of
    from inference.train import validate_synthetic
    from tests.test_training import _seg_case

    pool = tmp_path / "pool"
    pool.mkdir()
    case = _seg_case(True)
    np.savez_compressed(pool / "case_00000.npz", **case, origin=np.zeros(3), spacing=np.array([2.0]))
    (pool / "pool.json").write_text(json.dumps({"n": 1, "seed": 99}))
    weights = tmp_path / "weights"
    shutil.copytree(WEIGHTS_ROOT / "segmenter", weights / "segmenter")
    before = sha256_of(weights / "segmenter" / "segmenter.pt")
    out = tmp_path / "synthetic.json"
    monkeypatch.setattr(sys, "argv", ["validate_synthetic", "--pool", str(pool), "--from", "0", "--weights",
                                      str(weights), "--out", str(out), "--update-manifest"])
    validate_synthetic.main()
    meta = json.loads((weights / "segmenter" / "manifest.json").read_text())
    # no lesion in the case: no type has a measurable AP, so none is flagged any more
    assert meta["lesion_thresholds"] == {"lytic": None, "blastic": None, "fracture": None}
    assert meta["metrics_synthetic_heldout"]["pool_seed"] == 99
    assert meta["metrics_synthetic_heldout"]["rows"] == f"per-vertebra rows in {out}"
    assert len(json.loads(out.read_text())["rows"]) == 1
    assert sha256_of(weights / "segmenter" / "segmenter.pt") == before == meta["sha256"]


def test_a_pool_without_held_out_cases_is_a_one_line_error_and_leaves_the_manifest_alone(tmp_path, monkeypatch,
                                                                                         capsys):
    import shutil
    import sys

    import pytest

    from inference.models.weights import WEIGHTS_ROOT
    from inference.train import validate_synthetic

    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "case_00003.npz").touch()  # below --from: a training case
    weights = tmp_path / "weights"
    shutil.copytree(WEIGHTS_ROOT / "segmenter", weights / "segmenter")
    before = (weights / "segmenter" / "manifest.json").read_bytes()
    monkeypatch.setattr(sys, "argv", ["validate_synthetic", "--pool", str(pool), "--from", "216", "--weights",
                                      str(weights), "--update-manifest"])
    with pytest.raises(SystemExit):
        validate_synthetic.main()
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{pool}: no pool case from index 216 on" in err
    assert (weights / "segmenter" / "manifest.json").read_bytes() == before


def test_lesion_ap_is_also_reported_for_large_lesions_alone():
    from inference.train.validate_synthetic import LARGE_LESION_VOXELS, lesion_ap

    def row(voxels, score):
        return {"lesion_voxels": {"lytic": voxels, "blastic": 0, "fracture": 0}, "scores": {"lytic": score}}

    # large lesions ranked first, a small one ranked below a lesion-free vertebra
    rows = [row(LARGE_LESION_VOXELS, 0.9), row(300, 0.8), row(0, 0.5), row(6, 0.3), row(0, 0.1)]
    ap, large = lesion_ap(rows)
    assert ap["lytic"]["positives"] == 3 and ap["lytic"]["ap"] < 1.0
    assert large["lytic"] == {"ap": 1.0, "positives": 2}
    assert ap["blastic"]["ap"] is None and large["blastic"]["ap"] is None


def test_update_manifest_writes_the_thresholds_into_the_lesion_classifier_when_one_ships(tmp_path, monkeypatch):
    """With the classifier beside the segmenter, its manifest takes the thresholds; the segmenter's
    keep theirs and their lesion figures (it no longer scores lesions), and neither weights file changes."""
    import shutil
    import sys

    from inference.models.weights import WEIGHTS_ROOT, sha256_of
    from inference.train import validate_synthetic
    from tests.test_training import _seg_case

    pool = tmp_path / "pool"
    pool.mkdir()
    np.savez_compressed(pool / "case_00000.npz", **_seg_case(True), origin=np.zeros(3), spacing=np.array([2.0]))
    weights = tmp_path / "weights"
    for name in ("segmenter", "lesion"):
        shutil.copytree(WEIGHTS_ROOT / name, weights / name)
    seg_manifest = json.loads((weights / "segmenter" / "manifest.json").read_text())
    seg_before = seg_manifest["lesion_thresholds"]
    seg_ap_before = seg_manifest["metrics_synthetic_heldout"]["lesion_ap"]
    out = tmp_path / "synthetic.json"
    monkeypatch.setattr(sys, "argv", ["validate_synthetic", "--pool", str(pool), "--from", "0", "--weights",
                                      str(weights), "--out", str(out), "--update-manifest"])
    validate_synthetic.main()
    lesion = json.loads((weights / "lesion" / "manifest.json").read_text())
    segmenter = json.loads((weights / "segmenter" / "manifest.json").read_text())
    assert json.loads(out.read_text())["lesion_scores_from"] == "lesion"
    assert lesion["lesion_thresholds"] == {"lytic": None, "blastic": None, "fracture": None}  # no lesion: no AP
    assert segmenter["lesion_thresholds"] == seg_before
    # the segmenter's own lesion figures stay; its Dice is this run's
    assert segmenter["metrics_synthetic_heldout"]["lesion_ap"] == seg_ap_before
    assert segmenter["metrics_synthetic_heldout"]["cases"] == 1
    assert lesion["metrics_synthetic_heldout"]["rows"] == f"per-vertebra rows in {out}"
    assert sha256_of(weights / "lesion" / "lesion.pt") == lesion["sha256"]


def test_a_missing_checkpoint_or_calibration_pool_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    import sys

    import pytest

    from inference.train import validate_synthetic

    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "case_00000.npz").touch()
    for extra, named in ((["--lesion-ckpt", str(tmp_path / "none.pt")], "none.pt: no such checkpoint"),
                         (["--ckpt", str(tmp_path / "seg.pt")], "seg.pt: no such checkpoint"),
                         (["--calibrate", "0", "1", "--calibrate-pool", str(tmp_path / "nopool")],
                          "nopool: no such pool folder")):
        monkeypatch.setattr(sys, "argv", ["validate_synthetic", "--pool", str(pool), "--from", "0", *extra])
        with pytest.raises(SystemExit):
            validate_synthetic.main()
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert named in err and "Traceback" not in err


def test_lesion_thresholds_and_figures_leave_out_the_levels_the_pipeline_does_not_score(monkeypatch):
    """C1, C2 and the sacrum get no lesion score in the pipeline; a high score there on synthetic CT must not
    raise the flag threshold fitted for the other levels."""
    from inference import registry
    from inference.train import validate_synthetic

    def row(name, score):
        return {"id": registry.id_of(name), "lesion_voxels": {"lytic": 0, "blastic": 0, "fracture": 0},
                "scores": {"lytic": score, "blastic": 0.0, "fracture": 0.0}}

    lumbar = [row("L3", s) for s in np.linspace(0.0, 0.6, 20)]
    rows = lumbar + [row("S1", 0.99)] * 10 + [row("C2", 0.99)] * 10
    monkeypatch.setattr(validate_synthetic, "run", lambda *a, **k: {"rows": rows})
    thresholds = validate_synthetic.calibrate(None, 0, 1, None, None)
    expected = max(0.5, float(np.quantile([r["scores"]["lytic"] for r in lumbar], 0.95)))
    assert thresholds["lytic"] == round(expected, 4) < 0.99
    assert validate_synthetic.scored(rows) == lumbar
    rates = validate_synthetic.flag_rates(validate_synthetic.scored(rows), ["lytic"])
    assert rates["false_alarm_rate"] == 0.2  # 4 of 20, not 24 of 40


def test_a_calibration_pool_is_named_by_its_seed_and_changed_settings(tmp_path):
    from dataclasses import asdict, replace

    from inference.train.pool import POOL_CONFIG
    from inference.train.validate_synthetic import describe_pool

    config = asdict(replace(POOL_CONFIG, p_lesions=1.0))
    (tmp_path / "pool.json").write_text(json.dumps({"n": 480, "seed": 31, "config": config}, default=list))
    assert describe_pool(tmp_path) == "seed 31 (p_lesions 1.0)"
    assert describe_pool(tmp_path / "nowhere") == str(tmp_path / "nowhere")
