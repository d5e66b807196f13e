"""NIfTI / NRRD / MetaImage CT files: LPS geometry from a known affine, the real test files, and bad files."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from inference.errors import InputError
from inference.io import read_ct, read_image_file

ROOT = Path(__file__).parents[1]
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def _oblique_ras_affine() -> np.ndarray:
    """A RAS affine with a rotation, anisotropic spacing and an offset (nibabel's convention)."""
    a, b = 0.3, -0.2
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag([0.7, 0.8, 2.5])
    affine[:3, 3] = (-120.0, 35.5, -410.25)
    return affine


def _data(shape=(9, 7, 5), dtype=np.int16) -> np.ndarray:
    """Distinct values per voxel, indexed [i, j, k] as nibabel stores them, spanning air to bone as a CT does."""
    return (np.arange(np.prod(shape)).reshape(shape) * 50 - 1000).astype(dtype)


def test_nifti_ras_affine_becomes_lps(tmp_path):
    affine = _oblique_ras_affine()
    data = _data()
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    vol = read_ct(path)
    assert vol.size == data.shape
    np.testing.assert_array_equal(vol.array, data.transpose(2, 1, 0))
    np.testing.assert_allclose(vol.spacing, (0.7, 0.8, 2.5), atol=1e-5)
    np.testing.assert_allclose(vol.origin, RAS_TO_LPS @ affine[:3, 3], atol=1e-4)
    np.testing.assert_allclose(vol.direction, RAS_TO_LPS @ affine[:3, :3] / [0.7, 0.8, 2.5], atol=1e-5)
    # any voxel: LPS = flip(RAS affine · ijk)
    ijk = np.array([[0, 0, 0], [8, 6, 4], [3, 2, 1]], dtype=float)
    ras = (affine @ np.c_[ijk, np.ones(3)].T).T[:, :3]
    np.testing.assert_allclose(vol.index_to_lps(ijk), ras @ RAS_TO_LPS, atol=1e-4)
    assert vol.metadata["source_format"] == "nifti" and vol.metadata["modality"] is None
    assert vol.metadata["warnings"] == []


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd", ".nii"])
def test_sitk_formats_round_trip_lps(tmp_path, suffix):
    direction = RAS_TO_LPS @ _oblique_ras_affine()[:3, :3] / [0.7, 0.8, 2.5]
    img = sitk.GetImageFromArray(_data().transpose(2, 1, 0))
    img.SetSpacing((0.7, 0.8, 2.5))
    img.SetOrigin((12.0, -7.5, 300.0))
    img.SetDirection(tuple(direction.flatten()))
    sitk.WriteImage(img, str(tmp_path / f"ct{suffix}"))
    vol = read_ct(tmp_path / f"ct{suffix}")
    np.testing.assert_array_equal(vol.array, _data().transpose(2, 1, 0))
    np.testing.assert_allclose(vol.origin, (12.0, -7.5, 300.0), atol=1e-4)
    np.testing.assert_allclose(vol.direction, direction, atol=1e-5)


def test_nrrd_in_ras_space_is_converted_to_lps(tmp_path):
    data = _data((4, 3, 2))
    header = (
        "NRRD0004\ntype: short\ndimension: 3\nspace: right-anterior-superior\nsizes: 4 3 2\n"
        "space directions: (0.5,0,0) (0,0.75,0) (0,0,2)\nkinds: domain domain domain\nendian: little\n"
        "encoding: raw\nspace origin: (10,20,30)\n\n"
    )
    path = tmp_path / "ras.nrrd"
    path.write_bytes(header.encode() + data.transpose(2, 1, 0).astype("<i2").tobytes())
    vol = read_ct(path)
    np.testing.assert_allclose(vol.origin, (-10.0, -20.0, 30.0))
    np.testing.assert_allclose(vol.direction, np.diag([-1.0, -1.0, 1.0]))
    np.testing.assert_allclose(vol.spacing, (0.5, 0.75, 2.0))
    np.testing.assert_array_equal(vol.array, data.transpose(2, 1, 0))


@pytest.mark.parametrize(
    ("rel", "size", "spacing"),
    [
        ("tests/data/tptbox_ct_lumbar_cutout/sub-ct_label-22_ct.nii.gz", (73, 47, 73), (1.5, 1.5, 1.5)),
        ("assets/sample/abdomen_ct_3mm.nii.gz", (122, 101, 112), (3.0, 3.0, 3.0)),
        ("tests/data/ts_abdomen_3mm/sm_crop/example_ct_sm.nii.gz", (122, 101, 30), (3.0, 3.0, 3.0)),
    ],
    ids=["tptbox-PIR", "abdomen-RAS", "abdomen-crop"],
)
def test_real_nifti_ct(rel, size, spacing):
    path = ROOT / rel
    vol = read_ct(path)
    nii = nib.load(path)
    assert vol.size == size
    np.testing.assert_allclose(vol.spacing, spacing, atol=1e-4)
    np.testing.assert_allclose(vol.origin, RAS_TO_LPS @ nii.affine[:3, 3], atol=1e-3)
    np.testing.assert_allclose(vol.direction, RAS_TO_LPS @ nii.affine[:3, :3] / spacing, atol=1e-5)
    assert -1300 < vol.array.min() < -900 and 1000 < vol.array.max() < 4000


# ---- bad files -------------------------------------------------------------------------------------------
def _nifti(tmp_path: Path, data: np.ndarray, name: str = "x.nii.gz") -> Path:
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


def _refused(path: Path, *words: str) -> str:
    with pytest.raises(InputError) as exc:
        read_ct(path)
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def test_2d_image_refused(tmp_path):
    _refused(_nifti(tmp_path, np.zeros((8, 9), np.int16)), "2D image")


def test_single_slice_refused(tmp_path):
    _refused(_nifti(tmp_path, np.zeros((8, 9, 1), np.int16)), "single slice")


def test_4d_image_refused(tmp_path):
    _refused(_nifti(tmp_path, np.zeros((8, 9, 5, 3), np.int16)), "4D image", "3 volumes")


def test_4d_image_with_one_volume_accepted(tmp_path):
    data = _data((8, 9, 5))
    assert read_ct(_nifti(tmp_path, data[..., None])).size == (8, 9, 5)
    img = sitk.JoinSeries([sitk.GetImageFromArray(data.transpose(2, 1, 0))])  # a true 4D file, t = 1
    assert img.GetDimension() == 4
    sitk.WriteImage(img, str(tmp_path / "t1.mha"))
    vol = read_ct(tmp_path / "t1.mha")
    assert vol.size == (8, 9, 5)
    np.testing.assert_array_equal(vol.array, data.transpose(2, 1, 0))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels_refused(tmp_path, bad):
    data = _data().astype(np.float32)
    data[2, 3, 1] = bad
    _refused(_nifti(tmp_path, data), "NaN or infinite")


def test_gigantic_header_refused_before_allocating(tmp_path):
    header = nib.Nifti1Header()
    header.set_data_shape((32767, 32767, 3))  # 3.2e9 voxels declared, a few bytes present
    header.set_data_dtype(np.int16)
    header["vox_offset"] = 352
    path = tmp_path / "huge.nii"
    with open(path, "wb") as fh:
        fh.write(header.binaryblock + b"\x00" * 4 + b"\x00" * 64)
    _refused(path, "implausible grid")


def test_zero_byte_file_refused(tmp_path):
    path = tmp_path / "ct.nii.gz"
    path.write_bytes(b"")
    _refused(path, "empty")


@pytest.mark.parametrize("gz", [False, True])
def test_text_file_named_nifti_refused(tmp_path, gz):
    path = tmp_path / "ct.nii.gz"
    text = b"this is not an image\n" * 20
    path.write_bytes(gzip.compress(text) if gz else text)
    _refused(path, "cannot read")


@pytest.mark.parametrize(
    ("name", "dtype"), [("ct.nii", np.int16), ("ct.nii.gz", np.int16), ("ct.nii.gz", np.float32)]
)
def test_truncated_nifti_refused(tmp_path, name, dtype):
    # ITK would pad the missing voxels with zeros silently
    path = _nifti(tmp_path, _data((40, 40, 40)).astype(dtype), name)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _refused(path, "truncated")


def test_vector_image_refused(tmp_path):
    img = sitk.Image([6, 5, 4], sitk.sitkVectorFloat32, 3)
    sitk.WriteImage(img, str(tmp_path / "rgb.nrrd"))
    _refused(tmp_path / "rgb.nrrd", "3 values per voxel")


def test_sheared_direction_refused(tmp_path):
    img = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16))
    img.SetDirection((1, 0.5, 0, 0, 1, 0, 0, 0, 1))
    sitk.WriteImage(img, str(tmp_path / "shear.mha"))
    _refused(tmp_path / "shear.mha", "not orthonormal")


def test_unknown_file_type_refused(tmp_path):
    path = tmp_path / "ct.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    _refused(path, "not a CT file")


def test_label_image_reader_keeps_single_slice_for_non_ct(tmp_path):
    # read_image_file refuses single slices only for CTs (a 2D mask stack of one slice is a valid file)
    vol = read_image_file(_nifti(tmp_path, np.ones((8, 9, 1), np.uint8)), what="mask")
    assert vol.size == (8, 9, 1)


def test_a_label_map_opened_as_ct_is_refused(tmp_path):
    mask = np.zeros((8, 9, 5), np.uint8)
    mask[2:5, 3:6, 1:4] = 1
    _refused(_nifti(tmp_path, mask, "vertebrae_T12.nii.gz"), "2 distinct values", "not a CT", "--truth")
    labels = np.zeros((8, 9, 5), np.int16)
    labels[:, :4] = 20
    labels[:, 4:6] = 21
    _refused(_nifti(tmp_path, labels), "3 distinct values from 0 to 21", "label map")


def test_eight_bit_picture_values_are_refused_but_a_ct_in_hu_is_read(tmp_path):
    picture = (np.arange(8 * 9 * 5).reshape(8, 9, 5) % 256).astype(np.uint8)
    _refused(_nifti(tmp_path, picture), "picture values 0-255", "not Hounsfield units")
    ct = np.full((8, 9, 5), -1000, np.int16)
    ct[2:6, 2:6, 1:4] = 700
    assert read_ct(_nifti(tmp_path, ct, "ct.nii.gz")).array.max() == 700
