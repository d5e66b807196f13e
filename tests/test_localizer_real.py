"""The shipped localizer weights on real CT, on CPU (integration; the figures are in docs/localization.md)."""

from __future__ import annotations

import json
from pathlib import Path

from inference.cli import main
from inference.evaluate import evaluate_bundle
from inference.models.weights import read_manifest, sha256_of

ROOT = Path(__file__).parents[1]
SAMPLE_CT = ROOT / "assets/sample/abdomen_ct_3mm.nii.gz"
SAMPLE_LABELS = ROOT / "assets/sample/abdomen_vertebrae_totalseg.nii.gz"


def test_shipped_weights_match_their_manifest():
    manifest, folder = read_manifest("localizer")
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
    report = evaluate_bundle(out, SAMPLE_LABELS)
    overall = report["overall"]
    # regression bars at the level measured when the weights were committed (docs/localization.md);
    # the sample's T11 is a 76-voxel sliver at the top border, the rest are whole vertebrae
    assert overall["id_rate"] >= MIN_ID_RATE_SAMPLE, report["per_vertebra"]
    assert overall["mean_center_error_mm"] <= MAX_CENTER_ERROR_SAMPLE_MM
    assert not report["shifts"], report["shifts"]


def test_analyze_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    assert main(["analyze", str(SAMPLE_CT), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not empty" in err[0]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


# measured with the committed weights (docs/localization.md): 7/8 identified (the T11 sliver missed), 4.6 mm;
# the bars leave room for one miss and BLAS rounding, so a real regression fails the test
MIN_ID_RATE_SAMPLE = 0.875
MAX_CENTER_ERROR_SAMPLE_MM = 6.0
