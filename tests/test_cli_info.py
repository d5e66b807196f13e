"""`spinenav info`: geometry and identity of real and synthetic CTs; one clean error line for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from dicom_factory import CTSpec, write_ct_series, write_mr_series

from inference.cli import main

ROOT = Path(__file__).parents[1]
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
REAL_NIFTI = [
    ROOT / "tests/data/tptbox_ct_lumbar_cutout/sub-ct_label-22_ct.nii.gz",
    ROOT / "assets/sample/abdomen_ct_3mm.nii.gz",
]
KEYS = {
    "coordinate_system",
    "size",
    "spacing",
    "origin",
    "direction",
    "modality",
    "series_uid",
    "frame_of_reference_uid",
    "hu_min",
    "hu_max",
    "source_path",
    "warnings",
    "other_series",
}


def _info_json(capsys, path: Path) -> dict:
    assert main(["info", str(path), "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    info = json.loads(out)
    assert KEYS <= info.keys()
    return info


def test_info_json_real_dicom(capsys, real_dicom_dir):
    info = _info_json(capsys, real_dicom_dir)
    assert info["size"] == [512, 512, 20] and info["coordinate_system"] == "LPS"
    np.testing.assert_allclose(info["spacing"], [0.9765625, 0.9765625, 2.0], atol=1e-6)
    np.testing.assert_allclose(info["origin"], [-249.51171875, -437.51171875, -804.5], atol=1e-6)
    np.testing.assert_allclose(info["direction"], np.eye(3).flatten(), atol=1e-9)
    assert info["modality"] == "CT" and info["source_format"] == "dicom"
    assert info["series_uid"] is None  # blanked by the anonymiser of this public series
    assert info["frame_of_reference_uid"] == "1.3.12.2.1107.5.1.4.60064.30000022120807274275100000041"
    assert info["hu_min"] == -1024 and 1200 < info["hu_max"] < 4000
    assert info["kernel"] == "Br38f, 3" and info["manufacturer"] == "SIEMENS"


def test_info_text_real_dicom(capsys, real_dicom_dir):
    assert main(["info", str(real_dicom_dir)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "512 x 512 x 20 voxels" in out and "0.976562 x 0.976562 x 2 mm" in out
    assert "-249.512, -437.512, -804.500 mm" in out and "SIEMENS" in out


@pytest.mark.parametrize("path", REAL_NIFTI, ids=lambda p: p.name)
def test_info_json_real_nifti(capsys, path):
    info = _info_json(capsys, path)
    nii = nib.load(path)
    spacing = np.sqrt((nii.affine[:3, :3] ** 2).sum(axis=0))
    assert info["size"] == list(nii.shape)
    np.testing.assert_allclose(info["spacing"], spacing, atol=1e-4)
    np.testing.assert_allclose(info["origin"], RAS_TO_LPS @ nii.affine[:3, 3], atol=1e-3)
    direction = np.array(info["direction"]).reshape(3, 3)
    np.testing.assert_allclose(direction, RAS_TO_LPS @ nii.affine[:3, :3] / spacing, atol=1e-5)
    data = np.asanyarray(nii.dataobj)
    assert info["hu_min"] == data.min() and info["hu_max"] == data.max()
    assert info["modality"] is None and info["series_uid"] is None and info["source_format"] == "nifti"


def test_info_json_synthetic_dicom_identity(capsys, tmp_path):
    written = write_ct_series(tmp_path / "ct", CTSpec(order="shuffled"))
    write_mr_series(tmp_path / "mr", n_slices=4)
    info = _info_json(capsys, tmp_path)
    assert info["series_uid"] == written.spec.series_uid
    assert info["frame_of_reference_uid"] == written.spec.frame_of_reference_uid
    assert info["size"] == [24, 20, 12] and info["spacing"] == [0.8, 0.9, 2.0]
    assert info["other_series"] and info["other_series"][0].startswith("MR, 4 images")


def _broken_inputs(tmp_path: Path) -> dict[str, Path]:
    cases = {"missing": tmp_path / "does-not-exist"}
    (tmp_path / "empty").mkdir()
    cases["empty folder"] = tmp_path / "empty"
    cases["text .nii.gz"] = tmp_path / "ct.nii.gz"
    cases["text .nii.gz"].write_text("not an image\n")
    cases["zero-byte .dcm"] = tmp_path / "zero.dcm"
    cases["zero-byte .dcm"].write_bytes(b"")
    cases["MR only"] = tmp_path / "mr"
    write_mr_series(cases["MR only"], n_slices=3)
    one = write_ct_series(tmp_path / "one", CTSpec(n_slices=1))
    cases["single slice"] = one.paths[0].parent
    trunc = write_ct_series(tmp_path / "trunc", CTSpec(n_slices=3))
    trunc.paths[1].write_bytes(trunc.paths[1].read_bytes()[:-200])
    cases["truncated slice"] = trunc.paths[1]
    cases["png"] = tmp_path / "slice.png"
    cases["png"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    gap = write_ct_series(tmp_path / "gap", CTSpec())
    gap.paths[5].unlink()
    cases["missing slice"] = gap.paths[0].parent
    return cases


def test_info_broken_inputs_one_error_line(capsys, tmp_path):
    for name, path in _broken_inputs(tmp_path).items():
        assert main(["info", str(path)]) == 2, name
        out, err = capsys.readouterr()
        lines = err.splitlines()
        assert len(lines) == 1, (name, err)
        assert lines[0].startswith("error: ") and str(path) in lines[0], (name, err)
        assert "Traceback" not in err and out == "", name


def test_console_script_in_subprocess(tmp_path, real_dicom_dir):
    cmd = [sys.executable, "-m", "inference.cli", "info", "--json", str(real_dicom_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["size"] == [512, 512, 20]
    assert done.stderr == ""  # not a terminal: no progress bar, no library warnings
    bad = tmp_path / "ct.nii.gz"
    bad.write_text("not an image\n")
    done = subprocess.run([*cmd[:-1], str(bad)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2
    assert (
        done.stderr.count("\n") == 1
        and done.stderr.startswith(f"error: {bad}")
        and "Traceback" not in done.stderr
    )


def test_native_library_noise_stays_off_the_terminal(tmp_path):
    """ITK prints its own warning for a truncated MetaImage; the user sees only our one line."""
    import SimpleITK as sitk

    path = tmp_path / "cut.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 30, 40), np.int16)), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    env = {k: v for k, v in os.environ.items() if k != "SPINENAV_DEBUG"}
    out = subprocess.run([sys.executable, "-m", "inference.cli", "info", str(path)], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert out.stderr.startswith(f"error: {path}")
