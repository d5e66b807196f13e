"""The shipped models on real CT, on CPU (integration; figures in docs/localization.md, docs/segmentation.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.cli import main
from inference.evaluate import evaluate_bundle
from inference.models.weights import read_manifest, sha256_of

ROOT = Path(__file__).parents[1]
SAMPLE_CT = ROOT / "assets/sample/abdomen_ct_3mm.nii.gz"
SAMPLE_LABELS = ROOT / "assets/sample/abdomen_vertebrae_totalseg.nii.gz"


@pytest.mark.parametrize("model", ["localizer", "segmenter", "lesion"])
def test_shipped_weights_match_their_manifest(model):
    manifest, folder = read_manifest(model)
    assert sha256_of(folder / manifest["file"]) == manifest["sha256"]
    assert (folder / manifest["file"]).stat().st_size < 16 * 2**20
    assert manifest["metrics_real_ct"] is not None, "the manifest must carry the real-CT metrics"
    assert "synthetic" in manifest["training"]["data"]


def test_analyze_sample_ct_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "bundle"
    assert main(["analyze", str(SAMPLE_CT), "-o", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "vertebrae found" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["coordinate_system"] == "LPS" and manifest["models"][0]["sha256"] == read_manifest(
        "localizer")[0]["sha256"]
    assert [m["name"] for m in manifest["models"]] == ["localizer", "segmenter", "lesion"]
    assert {"labels.nii.gz", "lesions.nii.gz", "meshes/L3.stl"} <= {f["path"] for f in manifest["files"]}
    report = evaluate_bundle(out, SAMPLE_LABELS)
    overall = report["overall"]
    # regression bars at the level measured when the weights were committed (docs/localization.md,
    # docs/segmentation.md); the sample's T11 is a 76-voxel sliver at the top border
    assert overall["id_rate"] >= MIN_ID_RATE_SAMPLE, report["per_vertebra"]
    assert overall["mean_center_error_mm"] <= MAX_CENTER_ERROR_SAMPLE_MM
    assert not report["shifts"], report["shifts"]
    whole = [r["dice"] for r in report["per_vertebra"] if r["name"] in WHOLE_SAMPLE_LEVELS]
    assert min(whole) >= MIN_DICE_WHOLE_SAMPLE, report["per_vertebra"]
    doc = json.loads((out / "vertebrae.json").read_text())["vertebrae"]
    # the sample holds no known lesion, but its L1 has a ~6 mm, ~930 HU focus in the body (a bone island,
    # docs/lesions_sample_flags.png) that reads as blastic; nothing else may be flagged, and the sacrum
    # is not scored (inference.models.lesion.NOT_SCORED)
    scored = {v["name"]: v for v in doc if v["lesion_score"] is not None}
    assert set(scored) == {v["name"] for v in doc} - {"S1"}
    flagged = {name: v["lesion_type"] for name, v in scored.items() if v["lesion_score"] >= 0.5}
    assert flagged == {"L1": "blastic"}, [(v["name"], v["lesion_scores"]) for v in doc]


def test_analyze_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    assert main(["analyze", str(SAMPLE_CT), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not empty" in err[0]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


# measured with the committed weights (docs/localization.md): 8/8 identified, 3.3 mm (centers are the
# segmentation's mask centroids: T11-L5 0.6-3.5 mm, the sacrum 14 mm, its mask still missing the lower sacrum);
# the bars leave room for one miss and BLAS rounding, so a real regression fails the test
MIN_ID_RATE_SAMPLE = 0.875
MAX_CENTER_ERROR_SAMPLE_MM = 4.0
# segmentation of the sample's whole vertebrae (T11 is a sliver, the sacrum only partly outlined),
# measured with the committed segmenter (docs/segmentation.md): 0.92-0.95; the bar leaves room for rounding only
WHOLE_SAMPLE_LEVELS = ("T12", "L1", "L2", "L3", "L4")
MIN_DICE_WHOLE_SAMPLE = 0.88
