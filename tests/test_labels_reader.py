"""Reading vertebra label maps in the VerSe and TotalSegmentator conventions."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from inference import registry
from inference.errors import InputError
from inference.io import read_label_map
from inference.volume import Volume

DATA = Path(__file__).parent / "data"
SAMPLE = Path(__file__).parents[1] / "assets" / "sample"


def _write(path: Path, arr: np.ndarray, spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0)) -> Path:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))
    return path


def _spine(ids=(20, 21, 22)) -> np.ndarray:
    """Levels stacked head (high k: +z is superior in LPS) to feet, 6 mm apart."""
    arr = np.zeros((3 * len(ids) + 1, 6, 6), np.uint8)
    for n, vid in enumerate(ids):
        top = 3 * (len(ids) - n)
        arr[top - 2 : top, 1:5, 1:5] = vid
    return arr


def test_verse_map(tmp_path):
    vol = read_label_map(_write(tmp_path / "l.nii.gz", _spine()))
    assert vol.array.dtype == np.uint8 and set(np.unique(vol.array)) == {0, 20, 21, 22}
    assert vol.metadata["label_convention"] == "verse"


def test_float_labels_with_integer_values_accepted(tmp_path):
    vol = read_label_map(_write(tmp_path / "l.nii.gz", _spine().astype(np.float64)))
    assert set(np.unique(vol.array)) == {0, 20, 21, 22}


def test_totalseg_multilabel_drops_organs(tmp_path):
    arr = _spine(ids=(31, 30, 29))  # TotalSegmentator L1, L2, L3
    arr[0, 0, 0] = 5  # liver
    vol = read_label_map(_write(tmp_path / "ts.nii.gz", arr))
    assert vol.metadata["label_convention"] == "totalseg"
    assert set(np.unique(vol.array)) == {0, 20, 21, 22}


def test_totalseg_folder_and_single_file(tmp_path):
    base = _spine()
    for vid in (20, 21):
        _write(tmp_path / f"vertebrae_{registry.name_of(vid)}.nii.gz", (base == vid).astype(np.uint8))
    _write(tmp_path / "liver.nii.gz", np.zeros_like(base))
    vol = read_label_map(tmp_path)
    assert set(np.unique(vol.array)) == {0, 20, 21}
    one = read_label_map(tmp_path / "vertebrae_L2.nii.gz")
    assert set(np.unique(one.array)) == {0, 21}


@pytest.mark.parametrize(
    ("arr", "message"),
    [
        (np.full((4, 4, 4), 0.5, np.float32), "non-integer"),
        (np.zeros((4, 4, 4), np.uint8), "no vertebra"),
        (np.full((4, 4, 4), 41, np.uint8), "too many"),  # VerSe subregion ids are not vertebrae
        (np.full((4, 4, 4), -1, np.int16), "negative"),
    ],
)
def test_bad_label_maps(tmp_path, arr, message):
    path = _write(tmp_path / "bad.nii.gz", arr)
    with pytest.raises(InputError) as info:
        read_label_map(path, convention="verse" if message == "too many" else "auto")
    text = str(info.value)
    assert str(path) in text and "\n" not in text
    if message != "too many":
        assert message in text
    else:
        assert "unknown label ids [41]" in text


def test_folder_errors(tmp_path):
    with pytest.raises(InputError, match="no vertebra mask files"):
        read_label_map(tmp_path)
    _write(tmp_path / "vertebrae_L1.nii.gz", np.ones((4, 4, 4), np.uint8))
    _write(tmp_path / "vertebrae_L2.nii.gz", np.ones((4, 4, 5), np.uint8))
    with pytest.raises(InputError, match="different grid"):
        read_label_map(tmp_path)


def test_folder_masks_sharing_voxels_are_resolved_by_depth(tmp_path):
    """TotalSegmentator's dataset masks overlap at neighbouring vertebrae: a shared voxel goes to the
    mask in which it lies deeper, the count per pair is reported, and any non-zero value is foreground."""
    l1 = np.zeros((20, 8, 8), np.uint8)
    l2 = np.zeros_like(l1)
    l1[9:19, 1:7, 1:7] = 255  # L1 above (high k), stored as 0/255
    l2[1:11, 1:7, 1:7] = 1  # L2 below; slices 9 and 10 are in both masks
    _write(tmp_path / "vertebrae_L1.nii.gz", l1)
    _write(tmp_path / "vertebrae_L2.nii.gz", l2)
    vol = read_label_map(tmp_path)
    assert vol.metadata["overlaps"] == {(20, 21): 72}
    assert "L1/L2: 72 voxels in both masks" in vol.metadata["warnings"][0]
    # in the middle of the slab, slice 9 lies 2 mm inside L1 and 3 mm inside L2 (→ L2), slice 10 the other way
    # round; on the rim both depths are the 1 mm to the side and the tie goes to the cranial L1
    assert (vol.array[9, 3:5, 3:5] == 21).all() and (vol.array[10, 3:5, 3:5] == 20).all()
    assert (vol.array[9:11, 1, 1:7] == 20).all()
    assert ((vol.array > 0) == ((l1 > 0) | (l2 > 0))).all()


@pytest.mark.parametrize(
    ("path", "names"),
    [
        (SAMPLE / "abdomen_vertebrae_totalseg.nii.gz", ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]),
        (DATA / "ts_abdomen_3mm/spine_report/totalseg_vertebrae_pp_refined.nii.gz",
         ["T12", "L1", "L2", "L3", "L4", "L5"]),
        (DATA / "ts_abdomen_3mm/sm_crop/example_seg_fast", ["T11", "T12", "L1", "L2"]),
        (DATA / "tptbox_ct_lumbar_cutout/sub-ct_seg-vert_label-22_msk.nii.gz", ["L2", "L3", "L4"]),
        (DATA / "verse_labels_only/sub-verse004/sub-verse004_seg-vert_msk.nii.gz",
         ["T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"]),
        (DATA / "ts_dicom_thoracolumbar/example_seg_dicom.nii.gz", ["T11", "T12"]),
    ],
)
def test_real_label_maps(path, names):
    vol = read_label_map(path)
    ids = [int(i) for i in np.unique(vol.array) if i]
    assert [registry.name_of(i) for i in registry.sort_ids(ids)] == names
    assert isinstance(vol, Volume)


def test_align_flipped_label_grid_onto_ct_exactly():
    """The TotalSegmentator NIfTI (LAS) of the 20-slice DICOM series (LPS): same points, flipped j."""
    from inference.io import onto_grid, read_ct

    ct = read_ct(DATA / "ts_dicom_thoracolumbar/dicom")
    labels = read_label_map(DATA / "ts_dicom_thoracolumbar/example_seg_dicom.nii.gz")
    assert not labels.same_grid(ct)
    aligned = onto_grid(labels, ct)
    assert aligned.same_grid(ct)
    np.testing.assert_array_equal(aligned.array, np.flip(labels.array, axis=1))
    assert 150 < ct.array[aligned.array > 0].mean() < 700  # labels sit on bone


def test_align_refuses_other_grids():
    from inference.io import onto_grid

    arr = _spine()
    ct = Volume(np.zeros(arr.shape, np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    for spacing, origin in [((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)), ((1.0, 1.0, 2.0), (0.5, 0.0, 0.0))]:
        with pytest.raises(InputError, match="not on the CT's grid"):
            onto_grid(Volume(arr, spacing, origin), ct)
    flipped = Volume(arr[::-1].copy(), (1.0, 1.0, 2.0), (0.0, 0.0, 2.0 * (arr.shape[0] - 1)), np.diag([1.0, 1.0, -1.0]))
    np.testing.assert_array_equal(onto_grid(flipped, ct).array, arr)
