"""Named regressions of input safety: the wrong scan is never read, no user file is lost, overlaps resolve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from inference.cli import main
from inference.errors import InputError, OutputExistsError
from inference.export import export_labels
from inference.export.atomic import atomic_output_dir, check_output_dir, is_bundle
from inference.io import read_ct, read_label_map

ROOT = Path(__file__).parents[1]
DATA = ROOT / "tests" / "data"


def _ct(shape=(12, 20, 24), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(rng.uniform(-1000, 1200, shape)).astype(np.int16)


def _write(path: Path, arr: np.ndarray, spacing=(0.8, 0.9, 2.5)) -> Path:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))
    return path


def _bundle(folder: Path) -> Path:
    return export_labels(DATA / "verse_labels_only" / "sub-verse004" / "sub-verse004_seg-vert_msk.nii.gz",
                         folder).out_dir


# ---- the wrong scan is never analysed ----------------------------------------------------------------------
def test_sibling_nii_never_stands_in_for_the_nii_gz(tmp_path):
    """ITK's NIfTI reader, given X.nii.gz, reads X.nii when both are there: SpineNav reads the file it was given."""
    gz = _ct((12, 20, 24), seed=1)
    other = _ct((5, 20, 24), seed=2)
    _write(tmp_path / "X.nii.gz", gz)
    _write(tmp_path / "X.nii", other, spacing=(1.0, 1.0, 1.0))
    vol = read_ct(tmp_path / "X.nii.gz")
    np.testing.assert_array_equal(vol.array, gz)
    assert vol.spacing == pytest.approx((0.8, 0.9, 2.5))
    np.testing.assert_array_equal(read_ct(tmp_path / "X.nii").array, other)


def test_a_file_name_that_is_not_utf8_is_read_and_printed(tmp_path, capsys):
    name = os.path.join(os.fsencode(tmp_path), b"ct_\xff.nii.gz")
    arr = _ct()
    _write(tmp_path / "plain.nii.gz", arr)
    os.rename(tmp_path / "plain.nii.gz", name)
    assert main(["info", os.fsdecode(name)]) == 0
    assert "ct_\\xff.nii.gz" in capsys.readouterr().out


def test_a_newline_in_a_name_stays_on_one_error_line(tmp_path, capsys):
    assert main(["info", str(tmp_path / "no\nsuch.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no\\nsuch.nii.gz" in err


# ---- --force replaces only a bundle, never the input ----------------------------------------------------------
def test_force_refuses_a_folder_that_is_not_a_bundle(tmp_path):
    docs = tmp_path / "documents"
    docs.mkdir()
    (docs / "letter.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a SpineNav bundle"):
        check_output_dir(docs, force=True)
    assert (docs / "letter.txt").read_text() == "keep me"


def test_force_refuses_the_folder_holding_the_input(tmp_path):
    case = tmp_path / "case"
    case.mkdir()
    ct = _write(case / "ct.nii.gz", _ct())
    assert main(["analyze", str(ct), "-o", str(case), "--force"]) == 2
    assert ct.is_file()


@pytest.mark.parametrize("where", ["/", "home"])
def test_force_refuses_root_and_home(tmp_path, monkeypatch, where):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    target = Path("/") if where == "/" else home
    with pytest.raises(InputError, match="root or a home folder"):
        check_output_dir(target, force=True)


def test_force_replaces_a_bundle(tmp_path):
    out = _bundle(tmp_path / "b")
    assert is_bundle(out)
    with atomic_output_dir(out, force=True) as tmp:
        (tmp / "manifest.json").write_text(json.dumps({"software": {"name": "spinenav"}, "new": True}))
    assert json.loads((out / "manifest.json").read_text())["new"] is True
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".b.")]


def test_without_force_an_existing_bundle_is_kept(tmp_path):
    out = _bundle(tmp_path / "b")
    with pytest.raises(OutputExistsError):
        check_output_dir(out, force=False)


def test_an_interrupted_replacement_puts_the_old_bundle_back(tmp_path):
    """A run killed between its two renames (systems without an atomic exchange) left only `.OUT.old-*`."""
    out = _bundle(tmp_path / "b")
    dead = _dead_pid()
    os.rename(out, tmp_path / f".b.old-{dead}-0badc0de")
    (tmp_path / f".b.tmp-{dead}-12345678").mkdir()  # and its unfinished new bundle
    with pytest.raises(OutputExistsError, match="put back after an interrupted replacement"):
        check_output_dir(out, force=False)
    assert is_bundle(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_a_live_run_s_temporary_folder_is_left_alone(tmp_path):
    busy = tmp_path / f".b.tmp-{os.getpid()}-aaaaaaaa"
    busy.mkdir()
    check_output_dir(tmp_path / "b", force=False)
    assert busy.is_dir()


def test_replacing_a_bundle_under_sigkill_always_leaves_a_whole_bundle(tmp_path):
    """Kill a replacing process at many moments: OUT always holds a whole bundle (the old or the new one)."""
    out = _bundle(tmp_path / "b")
    script = textwrap.dedent(f"""
        import json, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from inference.export.atomic import atomic_output_dir
        while True:
            with atomic_output_dir({str(out)!r}, force=True) as tmp:
                for n in range(30):
                    (tmp / f"f{{n}}.bin").write_bytes(b"x" * 20000)
                (tmp / "manifest.json").write_text(json.dumps({{"software": {{"name": "spinenav"}}}}))
    """)
    for delay in np.linspace(0.3, 1.5, 8):
        proc = subprocess.Popen([sys.executable, "-c", script])
        try:
            proc.wait(timeout=float(delay))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert is_bundle(out), f"no whole bundle at {out} after a kill at {delay:.2f} s"
    check_output_dir(out, force=True)  # cleans what the killed runs left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---- label maps from other tools ------------------------------------------------------------------------------
def test_totalsegmentator_masks_that_overlap_export_with_the_overlap_reported(tmp_path):
    masks = tmp_path / "ts"
    masks.mkdir()
    k = np.indices((40, 24, 24))[0]
    _write(masks / "vertebrae_L1.nii.gz", ((k >= 19) & (k < 36)).astype(np.uint8) * 255, spacing=(1, 1, 2))
    _write(masks / "vertebrae_L2.nii.gz", ((k >= 3) & (k < 21)).astype(np.uint8), spacing=(1, 1, 2))
    result = export_labels(masks, tmp_path / "out")
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    assert any("L1/L2: 1152 voxels in both masks" in w for w in manifest["warnings"])
    flags = {v["name"]: v["qa_flags"] for v in json.loads((result.out_dir / "vertebrae.json").read_text())["vertebrae"]}
    assert "mask_overlap_resolved" in flags["L1"] and "mask_overlap_resolved" in flags["L2"]


def test_a_body_disc_map_is_not_a_vertebra_label_map():
    path = DATA / "ts_abdomen_3mm" / "spine_report" / "totalseg_vertebrae_body.nii.gz"
    with pytest.raises(InputError, match="not a vertebra label map"):
        read_label_map(path)


def test_a_verse_subregion_map_is_not_a_vertebra_label_map():
    with pytest.raises(InputError, match="not a vertebra label map"):
        read_label_map(DATA / "tptbox_ct_lumbar_cutout" / "sub-ct_seg-subreg_label-22_msk.nii.gz")


def test_evaluate_against_another_scan_is_refused(tmp_path, capsys):
    out = _bundle(tmp_path / "b")
    truth = read_label_map(DATA / "verse_labels_only" / "sub-verse004" / "sub-verse004_seg-vert_msk.nii.gz")
    img = truth.to_sitk()
    img.SetOrigin(tuple(np.array(truth.origin) + 800.0))
    sitk.WriteImage(img, str(tmp_path / "elsewhere.nii.gz"))
    assert main(["evaluate", str(out), "--truth", str(tmp_path / "elsewhere.nii.gz")]) == 2
    assert "another scan" in capsys.readouterr().err


def test_plan_on_levels_the_bundle_lacks_keeps_the_existing_plan(tmp_path, capsys):
    out = _bundle(tmp_path / "b")  # T9-L5
    assert main(["plan", str(out), "--levels", "T1-T3"]) == 2
    assert "none of the T1, T2, T3" in capsys.readouterr().err
    assert not (out / "trajectories.json").exists()
