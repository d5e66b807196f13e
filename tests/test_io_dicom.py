"""DICOM CT reader: exact LPS geometry, content position, series choice, and refusal of bad input.

Synthetic series come from `dicom_factory` (a bright sphere at a known LPS position); the real
20-slice series is checked against the TotalSegmentator NIfTI written on the same grid.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import (
    BACKGROUND_HU,
    CTSpec,
    write_ct_series,
    write_dicomdir,
    write_enhanced_ct,
    write_mr_series,
    write_non_image,
)
from pydicom.uid import (
    BasicTextSRStorage,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    RTStructureSetStorage,
    SegmentationStorage,
)

from inference.errors import CancelledError, InputError
from inference.io import read_ct, read_image_file
from inference.io.dicom import read_dicom
from inference.progress import CancelToken
from inference.volume import Volume

T20 = np.radians(20.0)
OBLIQUE = dict(  # rotated 17° about z, then tipped 29° about the row axis
    row_cosine=(np.cos(0.3), np.sin(0.3), 0.0),
    col_cosine=(-np.sin(0.3) * np.cos(0.5), np.cos(0.3) * np.cos(0.5), np.sin(0.5)),
)


def sphere_lps(vol: Volume) -> np.ndarray:
    """LPS mm of the intensity centroid of everything above the background."""
    w = np.clip(vol.array.astype(float) - BACKGROUND_HU, 0.0, None)
    k, j, i = np.indices(vol.array.shape)
    ijk = np.array([(w * i).sum(), (w * j).sum(), (w * k).sum()]) / w.sum()
    return vol.index_to_lps(ijk[None])[0]


def assert_sphere_in_place(vol: Volume, center: np.ndarray) -> None:
    err = np.abs(vol.lps_to_index(sphere_lps(vol)[None])[0] - vol.lps_to_index(center[None])[0])
    assert err.max() < 0.5, f"sphere off by {err} voxels"


def one_line_error(excinfo: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    assert str(path) in msg, msg
    return msg


# ---- geometry round trip -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [
        CTSpec(),
        CTSpec(order="descending"),
        CTSpec(order="shuffled", suffix=""),
        CTSpec(**OBLIQUE, order="descending"),
        CTSpec(**OBLIQUE, origin=(12.5, -40.25, -300.0), order="shuffled", pixel_spacing=(0.55, 0.7)),
        # feet first supine: DICOM writes the row cosine as −x and the slices run towards the feet
        CTSpec(row_cosine=(-1.0, 0.0, 0.0), patient_position="FFS", origin=(100.0, -50.0, 500.0)),
        # a sagittal stack (row along posterior, column along inferior)
        CTSpec(row_cosine=(0.0, 1.0, 0.0), col_cosine=(0.0, 0.0, -1.0), step=1.25),
        CTSpec(signed=True, intercept=0.0),
    ],
    ids=[
        "axial",
        "descending",
        "shuffled-no-suffix",
        "oblique",
        "oblique-shuffled",
        "feet-first",
        "sagittal",
        "signed",
    ],
)
def test_geometry_round_trip(tmp_path, spec):
    written = write_ct_series(tmp_path / "ct", spec)
    vol = read_ct(tmp_path / "ct")
    assert vol.size == (spec.columns, spec.rows, spec.n_slices)
    np.testing.assert_allclose(vol.spacing, spec.spacing, atol=1e-6)
    np.testing.assert_allclose(vol.direction, spec.direction, atol=1e-9)
    np.testing.assert_allclose(vol.origin, written.positions[0], atol=1e-6)
    # every slice's first pixel lands on its own ImagePositionPatient
    ijk0 = np.c_[np.zeros((spec.n_slices, 2)), np.arange(spec.n_slices)]
    np.testing.assert_allclose(vol.index_to_lps(ijk0), written.positions, atol=1e-6)
    np.testing.assert_array_equal(vol.array, written.hu)
    assert vol.array.dtype == np.int16
    assert_sphere_in_place(vol, written.sphere_center)
    md = vol.metadata
    assert md["dicom_files"] == [str(p.resolve()) for p in written.paths]
    assert md["series_uid"] == spec.series_uid and md["frame_of_reference_uid"] == spec.frame_of_reference_uid
    assert md["modality"] == "CT" and md["source_format"] == "dicom" and md["n_files"] == spec.n_slices
    assert md["patient_position"] == spec.patient_position and md["warnings"] == []
    assert "patient_id" not in md and "patient_name" not in md


def test_metadata_is_plain_json(tmp_path):
    import json

    write_ct_series(tmp_path, CTSpec())
    md = read_dicom(tmp_path).metadata
    assert json.loads(json.dumps(md)) == md
    assert md["kernel"] == "B30f, 3" and md["kvp"] == 120.0 and md["slice_thickness"] == 2.0
    assert md["manufacturer"] == "SpineNav tests" and md["model"] == "dicom_factory"
    assert md["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.2" and md["series_description"] == "synthetic CT"


@pytest.mark.parametrize(
    ("slope", "intercept", "dtype"),
    [
        (1.0, -1024.0, np.int16),
        (2.0, -2048.0, np.int16),
        (0.5, -1000.0, np.float32),
        (1.0, -1000.5, np.float32),
    ],
)
def test_rescale_applied(tmp_path, slope, intercept, dtype):
    written = write_ct_series(tmp_path, CTSpec(slope=slope, intercept=intercept, signed=True))
    vol = read_ct(tmp_path)
    assert vol.array.dtype == dtype
    np.testing.assert_array_equal(vol.array, written.hu.astype(dtype))
    assert vol.array.min() == pytest.approx(BACKGROUND_HU, abs=1) and vol.array.max() > 900


def test_values_beyond_int16_become_float32(tmp_path):
    written = write_ct_series(tmp_path, CTSpec(intercept=-1024.0))
    for p in written.paths[6:]:  # later slices only: the int16 array is promoted midway
        _edit(p, RescaleIntercept=33000)
    vol = read_ct(tmp_path)
    assert vol.array.dtype == np.float32
    expected = written.hu.copy()
    expected[6:] += 33000 + 1024
    assert expected.max() > 32767
    np.testing.assert_array_equal(vol.array, expected)


@pytest.mark.parametrize(
    "ts", [RLELossless, JPEGLSLossless, JPEG2000Lossless], ids=["rle", "jpeg-ls", "jpeg2000"]
)
def test_compressed_transfer_syntax(tmp_path, ts):
    spec = CTSpec(
        transfer_syntax=ts, rows=40, columns=36, n_slices=6
    )  # openjpeg needs ≥ 32 px for its defaults
    written = write_ct_series(tmp_path, spec)
    assert pydicom.dcmread(written.paths[0]).file_meta.TransferSyntaxUID == ts
    vol = read_ct(tmp_path)
    np.testing.assert_array_equal(vol.array, written.hu)


# ---- enhanced multi-frame CT -------------------------------------------------------------------------------
def test_enhanced_ct_equals_single_frame(tmp_path):
    spec = CTSpec(**OBLIQUE, slope=1.0, intercept=-1024.0)
    single = read_ct(write_ct_series(tmp_path / "single", spec).paths[0].parent)
    written = write_enhanced_ct(tmp_path / "enhanced" / "ct.dcm", spec)
    multi = read_ct(written.paths[0])
    np.testing.assert_array_equal(multi.array, single.array)
    assert multi.same_grid(single, tol_mm=1e-6)
    np.testing.assert_allclose(multi.direction, single.direction, atol=1e-12)
    assert multi.metadata["dicom_files"] == [str(written.paths[0].resolve())]
    assert multi.metadata["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.2.1"
    assert multi.metadata["kernel"] == "B30f" and multi.metadata["kvp"] == 120.0
    assert multi.metadata["slice_thickness"] == 2.0
    # the folder path finds it too
    assert read_ct(tmp_path / "enhanced").same_grid(single, tol_mm=1e-6)


def test_enhanced_ct_tilted_frames_resampled(tmp_path):
    written = write_enhanced_ct(tmp_path / "ct.dcm", CTSpec(tilt_deg=12.0, n_slices=14))
    vol = read_ct(written.paths[0])
    assert_sphere_in_place(vol, written.sphere_center)
    assert any("gantry tilt of 12.00°" in w for w in vol.metadata["warnings"])


# ---- resampling --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [
        CTSpec(tilt_deg=15.0, n_slices=16),
        # a real gantry tilt: image planes tilted 20° about x, table (slice positions) moving along z
        CTSpec(col_cosine=(0.0, np.cos(T20), np.sin(T20)), tilt_deg=20.0, n_slices=16, order="shuffled"),
        CTSpec(col_cosine=(0.0, np.cos(T20), -np.sin(T20)), tilt_deg=-20.0, n_slices=16),
        CTSpec(**OBLIQUE, tilt_deg=8.0, n_slices=16),
    ],
    ids=["shear", "tilt+20", "tilt-20", "oblique-tilt"],
)
def test_gantry_tilt_resampled_onto_orthogonal_grid(tmp_path, spec):
    written = write_ct_series(tmp_path, spec)
    vol = read_ct(tmp_path)
    assert_sphere_in_place(vol, written.sphere_center)
    assert np.allclose(vol.direction.T @ vol.direction, np.eye(3))
    np.testing.assert_allclose(vol.direction, spec.direction, atol=1e-9)
    np.testing.assert_allclose(vol.spacing, spec.spacing, atol=1e-6)
    # no data lost: the grid grew so that every slice's corners are inside it
    rs, cs = spec.pixel_spacing
    for pos in written.positions:
        for corner in ([0, 0], [spec.columns - 1, spec.rows - 1]):
            p = pos + corner[0] * cs * spec.row + corner[1] * rs * spec.col
            ijk = vol.lps_to_index(p[None])[0]
            assert np.all(ijk > -1e-6) and np.all(ijk < np.array(vol.size) - 1 + 1e-6)
    warning = " ".join(vol.metadata["warnings"])
    assert f"gantry tilt of {abs(spec.tilt_deg):.2f}°" in warning
    assert vol.metadata["dicom_files"] == [] and "DICOM-SEG" in warning
    assert vol.array.dtype == np.float32


def test_uneven_spacing_resampled_to_median_step(tmp_path):
    along = (0.0, 2.0, 4.0, 6.3, 8.1, 10.0, 12.0, 14.2, 16.0, 17.9, 20.0, 22.0)
    written = write_ct_series(tmp_path, CTSpec(along=along, order="shuffled", **OBLIQUE))
    vol = read_ct(tmp_path)
    assert vol.spacing[2] == pytest.approx(2.0)
    assert vol.size[2] == 12
    np.testing.assert_allclose(vol.origin, written.positions[0], atol=1e-6)
    assert_sphere_in_place(vol, written.sphere_center)
    # slices that sat exactly on the new grid keep their values
    np.testing.assert_allclose(vol.array[1], written.hu[1], atol=1e-3)
    assert any("uneven slice spacing" in w for w in vol.metadata["warnings"])
    assert vol.metadata["dicom_files"] == []


def test_tiny_jitter_is_not_resampled(tmp_path):
    along = 2.0 * np.arange(12) + np.array([0, 0.004, -0.003, 0.002, 0, 0, 0.005, 0, 0, -0.004, 0, 0.001])
    written = write_ct_series(tmp_path, CTSpec(along=tuple(along)))
    vol = read_ct(tmp_path)
    assert vol.array.dtype == np.int16 and vol.metadata["warnings"] == []
    assert len(vol.metadata["dicom_files"]) == 12
    assert_sphere_in_place(vol, written.sphere_center)


# ---- which series, which files -----------------------------------------------------------------------------
def test_best_ct_series_chosen_and_others_reported(tmp_path):
    axial = write_ct_series(tmp_path / "a", CTSpec(n_slices=10, prefix="ax"))
    write_ct_series(
        tmp_path / "b",
        CTSpec(
            n_slices=30,
            rows=12,
            row_cosine=(0, 1, 0),
            col_cosine=(0, 0, -1),
            description="sagittal MPR",
            prefix="sag",
        ),
    )
    write_ct_series(
        tmp_path / "c",
        CTSpec(
            n_slices=2,
            image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
            description="Topogram",
            prefix="scout",
        ),
    )
    write_mr_series(tmp_path / "d", n_slices=5)
    write_non_image(tmp_path / "seg.dcm", "SEG", SegmentationStorage)
    vol = read_ct(tmp_path)
    assert vol.metadata["series_uid"] == axial.spec.series_uid
    others = vol.metadata["other_series"]
    assert len(others) == 4 and all("\n" not in s for s in others)
    assert any(s.startswith("CT, 30 images, 'sagittal MPR'") for s in others)
    assert any(s.startswith("CT localizer, 2 images, 'Topogram'") for s in others)
    assert any(s.startswith("MR, 5 images") for s in others)
    assert any(s.startswith("SEG, 1 file") for s in others)


def test_most_slices_wins_among_axial_series(tmp_path):
    write_ct_series(tmp_path / "thin", CTSpec(n_slices=8, prefix="a"))
    big = write_ct_series(tmp_path / "thick", CTSpec(n_slices=14, prefix="b"))
    assert read_ct(tmp_path).metadata["series_uid"] == big.spec.series_uid


def test_one_slice_path_reads_its_own_series(tmp_path):
    small = write_ct_series(tmp_path, CTSpec(n_slices=6, prefix="a"))
    big = write_ct_series(tmp_path, CTSpec(n_slices=14, prefix="b"))
    vol = read_ct(small.paths[3])
    assert vol.metadata["series_uid"] == small.spec.series_uid and vol.size[2] == 6
    assert vol.metadata["other_series"] == [f"CT, 14 images, 'synthetic CT', {big.spec.series_uid}"]
    assert vol.metadata["source_path"] == str(small.paths[3].resolve())


def test_duplicate_copy_dropped_with_warning(tmp_path):
    written = write_ct_series(tmp_path / "ct", CTSpec())
    (tmp_path / "ct" / "copy").mkdir()
    shutil.copy(written.paths[4], tmp_path / "ct" / "copy" / "again.dcm")
    vol = read_ct(tmp_path / "ct")
    assert vol.size[2] == 12
    np.testing.assert_array_equal(vol.array, written.hu)
    assert len(vol.metadata["dicom_files"]) == 12
    assert any("duplicate" in w and "again.dcm" in w for w in vol.metadata["warnings"])


def test_constant_sop_uid_from_an_anonymiser_is_not_a_duplicate(tmp_path):
    written = write_ct_series(tmp_path, CTSpec())
    for p in written.paths:
        _edit(p, SOPInstanceUID="1.2.3.4")
    vol = read_ct(tmp_path)
    np.testing.assert_array_equal(vol.array, written.hu)
    assert vol.metadata["warnings"] == []


def test_blank_uids_read_with_a_warning(tmp_path):
    written = write_ct_series(tmp_path, CTSpec())
    for p in written.paths:
        _edit(p, SeriesInstanceUID="", StudyInstanceUID="", SOPInstanceUID="")
    vol = read_ct(tmp_path)
    np.testing.assert_array_equal(vol.array, written.hu)
    assert vol.metadata["series_uid"] is None and vol.metadata["study_uid"] is None
    assert len(vol.metadata["dicom_files"]) == 12
    assert any("no SeriesInstanceUID, StudyInstanceUID" in w for w in vol.metadata["warnings"])


def test_junk_files_and_dicomdir_skipped(tmp_path):
    written = write_ct_series(tmp_path / "DICOM" / "S1", CTSpec())
    write_dicomdir(tmp_path)
    (tmp_path / "README.txt").write_text("burned by the PACS")
    (tmp_path / "DICOM" / "empty.dcm").write_bytes(b"")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x01junk")
    vol = read_ct(tmp_path)
    np.testing.assert_array_equal(vol.array, written.hu)
    notes = vol.metadata["warnings"]
    assert len(notes) == 1 and "skipped 2 files" in notes[0] and "1 not DICOM" in notes[0]
    assert "1 empty (0 bytes)" in notes[0]


def test_dicomdir_path_reads_its_folder(tmp_path):
    written = write_ct_series(tmp_path / "DICOM" / "S1", CTSpec())
    vol = read_ct(write_dicomdir(tmp_path))
    np.testing.assert_array_equal(vol.array, written.hu)
    assert vol.metadata["warnings"] == []


def test_raw_dicom_without_preamble(tmp_path):
    written = write_ct_series(tmp_path, CTSpec(n_slices=4))
    for p in written.paths:  # strip the 128-byte preamble + 'DICM' + file meta: an old ACR-NEMA style file
        ds = pydicom.dcmread(p)
        p.unlink()
        ds.preamble = None
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        pydicom.dcmwrite(p.with_suffix(""), ds, implicit_vr=True, little_endian=True)
    raw = next(tmp_path.iterdir()).read_bytes()
    assert raw[128:132] != b"DICM"
    np.testing.assert_array_equal(read_ct(tmp_path).array, written.hu)


def test_progress_reported_and_cancel_honoured(tmp_path):
    write_ct_series(tmp_path, CTSpec())
    seen: list[float] = []
    read_ct(tmp_path, progress=lambda f, m: seen.append(f))
    assert seen and all(0.0 <= f <= 1.0 for f in seen) and seen == sorted(seen) and seen[-1] == 1.0
    token = CancelToken()

    def cancel_midway(fraction: float, message: str) -> None:
        if fraction > 0.3:
            token.cancel()

    with pytest.raises(CancelledError):
        read_dicom(tmp_path, progress=cancel_midway, cancel=token)


# ---- refusals: one line, naming the path -------------------------------------------------------------------
def test_empty_folder(tmp_path):
    with pytest.raises(InputError) as exc:
        read_ct(tmp_path)
    assert "empty" in one_line_error(exc, tmp_path)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "zero.dcm").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    with pytest.raises(InputError) as exc:
        read_ct(tmp_path)
    msg = one_line_error(exc, tmp_path)
    assert "no DICOM" in msg and "2 not DICOM" in msg and "1 empty" in msg


def test_zero_byte_file(tmp_path):
    path = tmp_path / "slice.dcm"
    path.write_bytes(b"")
    with pytest.raises(InputError) as exc:
        read_ct(path)
    assert "empty" in one_line_error(exc, path)


@pytest.mark.parametrize("cut", [0.3, 0.7, 0.999])
def test_truncated_pixel_data(tmp_path, cut):
    written = write_ct_series(tmp_path, CTSpec())
    victim = written.paths[5]
    data = victim.read_bytes()
    pixel_start = len(data) - 2 * 20 * 24
    victim.write_bytes(data[: pixel_start + int(cut * 2 * 20 * 24)])
    for target in (tmp_path, victim):
        with pytest.raises(InputError) as exc:
            read_ct(target)
        msg = one_line_error(exc, victim)
        assert "truncated" in msg or "damaged" in msg


def test_truncated_enhanced_ct(tmp_path):
    written = write_enhanced_ct(tmp_path / "ct.dcm", CTSpec())
    path = written.paths[0]
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(InputError) as exc:
        read_ct(path)
    assert "truncated" in one_line_error(exc, path)


def test_truncated_files_never_raise_anything_else(tmp_path):
    written = write_ct_series(tmp_path / "ct", CTSpec(n_slices=4, rows=8, columns=8))
    original = written.paths[1].read_bytes()
    for cut in range(0, len(original), 37):
        written.paths[1].write_bytes(original[:cut])
        try:
            read_ct(tmp_path / "ct")
        except InputError as exc:
            assert "\n" not in str(exc)


def test_single_slice(tmp_path):
    written = write_ct_series(tmp_path, CTSpec(n_slices=1))
    for target in (tmp_path, written.paths[0]):
        with pytest.raises(InputError) as exc:
            read_ct(target)
        assert "3D CT volume is needed" in one_line_error(exc, target)


def _edit(path: Path, **changes) -> None:
    ds = pydicom.dcmread(path)
    for key, value in changes.items():
        setattr(ds, key, value)
    ds.save_as(path)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"ImageOrientationPatient": [1, 0, 0, 0, 0.9848, 0.1736]}, "ImageOrientationPatient differs"),
        ({"PixelSpacing": [0.5, 0.5]}, "PixelSpacing differs"),
        ({"Rows": 10, "PixelData": bytes(2 * 10 * 24)}, "image size differs"),
    ],
    ids=["orientation", "spacing", "rows"],
)
def test_inconsistent_slices(tmp_path, changes, words):
    written = write_ct_series(tmp_path, CTSpec())
    _edit(written.paths[3], **changes)
    with pytest.raises(InputError) as exc:
        read_ct(tmp_path)
    msg = one_line_error(exc, tmp_path)
    assert words in msg and written.paths[3].name in msg


def test_mixed_phases_at_same_positions(tmp_path):
    spec = CTSpec()
    write_ct_series(tmp_path, spec)
    write_ct_series(tmp_path, replace(spec, prefix="phase2_", sphere_radius=4.0))  # same series UID
    with pytest.raises(InputError) as exc:
        read_ct(tmp_path)
    msg = one_line_error(exc, tmp_path)
    assert "share a position" in msg and "phases" in msg


def test_missing_slice(tmp_path):
    written = write_ct_series(tmp_path, CTSpec(origin=(0.0, 0.0, 100.0)))
    written.paths[6].unlink()
    with pytest.raises(InputError) as exc:
        read_ct(tmp_path)
    msg = one_line_error(exc, tmp_path)
    assert "missing between positions 110.00 and 114.00 mm" in msg


def test_missing_geometry(tmp_path):
    written = write_ct_series(tmp_path, CTSpec())
    ds = pydicom.dcmread(written.paths[2])
    del ds.ImagePositionPatient
    ds.save_as(written.paths[2])
    with pytest.raises(InputError) as exc:
        read_ct(tmp_path)
    assert "ImagePositionPatient" in one_line_error(exc, written.paths[2])


@pytest.mark.parametrize(("rows", "columns"), [(65535, 65535), (0, 24)])
def test_absurd_header_size_refused_before_allocating(tmp_path, rows, columns):
    written = write_ct_series(tmp_path, CTSpec(n_slices=3))
    for p in written.paths:
        _edit(p, Rows=rows, Columns=columns)
    with pytest.raises(InputError) as exc:
        read_ct(tmp_path)
    msg = str(exc.value)
    assert "\n" not in msg and str(tmp_path) in msg


@pytest.mark.parametrize(
    "ts",
    ["1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.50", "1.2.3.4.5"],
    ids=["mpeg2", "jpeg-garbage", "unknown"],
)
def test_undecodable_pixel_data(tmp_path, ts):
    from pydicom.encaps import encapsulate

    written = write_ct_series(tmp_path, CTSpec(n_slices=3))
    for p in written.paths:
        ds = pydicom.dcmread(p)
        ds.PixelData = encapsulate([b"\xff\xd8 not really a JPEG stream " * 4])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = ts
        ds.save_as(p, enforce_file_format=True)
    with pytest.raises(InputError) as exc:
        read_ct(tmp_path)
    msg = one_line_error(exc, written.paths[0])
    assert "decode" in msg or "damaged" in msg


@pytest.mark.parametrize(
    ("writer", "found"),
    [
        (lambda d: write_mr_series(d, n_slices=12), "found MR (1 series, 12 images)"),
        (lambda d: write_non_image(d / "seg.dcm", "SEG", SegmentationStorage), "found SEG (1 file)"),
        (
            lambda d: write_non_image(d / "rt.dcm", "RTSTRUCT", RTStructureSetStorage),
            "found RTSTRUCT (1 file)",
        ),
        (lambda d: write_non_image(d / "sr.dcm", "SR", BasicTextSRStorage), "found SR (1 file)"),
        (
            lambda d: (
                write_mr_series(d, n_slices=12),
                write_non_image(d / "s.dcm", "SEG", SegmentationStorage),
            ),
            "found MR (1 series, 12 images), SEG (1 file): give a CT series",
        ),
        (
            lambda d: write_ct_series(d, CTSpec(n_slices=2, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))),
            "found CT localizer (1 series, 2 images)",
        ),
    ],
    ids=["mr", "seg", "rtstruct", "sr", "mr+seg", "localizer"],
)
def test_no_ct_series(tmp_path, writer, found):
    writer(tmp_path)
    with pytest.raises(InputError) as exc:
        read_ct(tmp_path)
    msg = one_line_error(exc, tmp_path)
    assert "no CT series here" in msg and found in msg


def test_non_ct_file_path(tmp_path):
    path = write_mr_series(tmp_path, n_slices=3)[0]
    with pytest.raises(InputError) as exc:
        read_ct(path)
    assert "MR, not a CT image" in one_line_error(exc, path)


# ---- real data ---------------------------------------------------------------------------------------------
def _corners(vol: Volume) -> np.ndarray:
    """LPS mm of the 8 grid corners, sorted (independent of axis order and flips)."""
    n = np.array(vol.size) - 1
    ijk = np.array([[i, j, k] for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])], dtype=float)
    pts = vol.index_to_lps(ijk)
    return pts[np.lexsort(pts.T[::-1])]


def test_real_dicom_matches_totalsegmentator_nifti(real_dicom_dir, data_dir):
    ct = read_ct(real_dicom_dir)
    seg = read_image_file(data_dir / "ts_dicom_thoracolumbar" / "example_seg_dicom.nii.gz")
    assert ct.size == (512, 512, 20) and seg.size == ct.size
    np.testing.assert_allclose(sorted(ct.spacing), sorted(seg.spacing), atol=1e-4)
    np.testing.assert_allclose(ct.spacing, (0.9765625, 0.9765625, 2.0), atol=1e-6)
    np.testing.assert_allclose(_corners(ct), _corners(seg), atol=0.01)
    # the NIfTI is LAS: same axes up to the flip of j, so directions agree column by column up to sign
    np.testing.assert_allclose(np.abs(ct.direction), np.abs(seg.direction), atol=1e-6)
    np.testing.assert_allclose(ct.origin, (-249.51171875, -437.51171875, -804.5), atol=1e-6)
    # the spine labels sit on bone in the CT: mean HU inside vertebra labels is bone-like
    labels = np.flip(seg.array, axis=1) if seg.direction[1, 1] < 0 else seg.array
    spine = np.isin(labels, (32, 33))
    assert spine.sum() > 1000 and 150 < ct.array[spine].mean() < 700
    assert ct.array.dtype == np.int16 and ct.array.min() == -1024 and 1200 < ct.array.max() < 4000
    md = ct.metadata
    assert md["frame_of_reference_uid"] == "1.3.12.2.1107.5.1.4.60064.30000022120807274275100000041"
    assert md["manufacturer"] == "SIEMENS" and md["kernel"] == "Br38f, 3" and md["kvp"] == 120.0
    files = md["dicom_files"]
    assert len(files) == 20 and len(set(files)) == 20
    z = [float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files]
    assert z == sorted(z)


def test_real_dicom_single_file_reads_the_series(real_dicom_dir):
    one = sorted(real_dicom_dir.iterdir())[7]
    vol = read_ct(one)
    assert vol.size == (512, 512, 20)


@pytest.mark.slow
def test_real_chest_dicom_141_slices(chest_dicom_dir):
    vol = read_ct(chest_dicom_dir)
    assert vol.size == (512, 512, 141)
    np.testing.assert_allclose(vol.spacing, (0.9765625, 0.9765625, 2.0), atol=1e-6)
    np.testing.assert_allclose(vol.direction, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(vol.origin, (-250.0, -164.0, 115.5 - 140 * 2.0), atol=1e-3)
    assert vol.array.dtype == np.int16 and vol.array.min() == -1024 and vol.array.max() > 1500
    assert vol.metadata["manufacturer"] == "Philips" and len(vol.metadata["dicom_files"]) == 141
    assert vol.metadata["warnings"] == []


def test_a_chosen_series_of_a_folder_is_read(tmp_path):
    thin = write_ct_series(tmp_path / "thin", CTSpec(n_slices=8, prefix="a"))
    big = write_ct_series(tmp_path / "thick", CTSpec(n_slices=14, prefix="b"))
    best = read_ct(tmp_path)
    assert best.metadata["other_ct_series"] == [{"uid": thin.spec.series_uid,
                                                 "summary": f"CT, 8 images, 'synthetic CT', {thin.spec.series_uid}"}]
    chosen = read_ct(tmp_path, series_uid=thin.spec.series_uid)
    assert chosen.metadata["series_uid"] == thin.spec.series_uid and chosen.size[2] == 8
    assert [s["uid"] for s in chosen.metadata["other_ct_series"]] == [big.spec.series_uid]
    with pytest.raises(InputError, match="no CT series with SeriesInstanceUID 1.2.3"):
        read_ct(tmp_path, series_uid="1.2.3")
