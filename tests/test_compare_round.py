"""`inference.train.compare_round`: a localizer round against the shipped model, on the cases both hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.train.calibrate_labeling import decoding_key
from inference.train.compare_round import compare, main

DOCS = Path(__file__).parents[1] / "docs"


def _round(tmp_path: Path, named: int, drop_case: str | None = None) -> Path:
    out = tmp_path / "round"
    (out / "real").mkdir(parents=True)
    cal = json.loads((DOCS / "labeling_calibration.json").read_text())
    key = decoding_key(cal["temperature"], cal["use_rib_cue"])
    cal["out_of_sample"][key] = [named, cal["out_of_sample"][key][1]]
    (out / "labeling_calibration.json").write_text(json.dumps(cal))
    real = json.loads((DOCS / "localization.json").read_text())
    if drop_case:
        del real["cases"][drop_case]  # a case that did not travel to the device
    (out / "real" / "localization.json").write_text(json.dumps(real))
    return out


def test_compare_reads_both_reports_on_the_cases_both_hold(tmp_path):
    shipped = json.loads((DOCS / "labeling_calibration.json").read_text())
    key = decoding_key(shipped["temperature"], shipped["use_rib_cue"])
    old, n = shipped["out_of_sample"][key]
    text = compare(_round(tmp_path, old + 20, drop_case="ts_aorta_stent_crop"))
    assert f"| {old} / {n} " in text and f"| {old + 20} / {n} " in text
    assert "real (4 cases)" in text and "ts_aorta_stent_crop" not in text
    assert "not comparable" not in text


def test_a_round_without_its_reports_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    import sys

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(sys, "argv", ["compare_round", str(empty)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert "labeling_calibration.json: missing" in capsys.readouterr().err
