"""Accuracy protocol (DESIGN §7): metrics on synthetic spines with known answers, bundles, real data."""

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from inference import registry
from inference.cli import main
from inference.errors import InputError
from inference.evaluate import (
    compare_masks,
    evaluate_bundle,
    evaluate_labels,
    format_report,
    label_centroids,
    read_bundle_centers,
)
from inference.io import read_label_map
from inference.volume import Volume

DATA = Path(__file__).parent / "data"
TPTBOX_VERT = DATA / "tptbox_ct_lumbar_cutout" / "sub-ct_seg-vert_label-22_msk.nii.gz"
TS_REPORT = DATA / "ts_abdomen_3mm" / "spine_report"

SPACING = (0.7, 0.9, 2.5)  # (sx, sy, sz) mm: anisotropic on purpose
SPACING_KJI = SPACING[::-1]
LUMBAR = [registry.id_of(f"L{n}") for n in range(1, 6)]
THICK, GAP, TOP = 6, 3, 4  # slices per vertebra, slices between vertebrae, first slice of L1


def _oblique_direction() -> np.ndarray:
    """Orthonormal, non-identity direction (30° about the i axis, then i and k flipped: k runs head to feet)."""
    a = np.deg2rad(30.0)
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    return rot @ np.diag([-1.0, 1.0, -1.0])


def _spine(ids=LUMBAR, shape=(52, 22, 26)) -> Volume:
    """Fake spine: one box per vertebra, stacked along k (cranial first), on an oblique grid."""
    arr = np.zeros(shape, np.uint8)
    for n, vid in enumerate(ids):
        k0 = TOP + n * (THICK + GAP)
        arr[k0 : k0 + THICK, 3:19, 4:22] = vid
    return Volume(arr, SPACING, (-12.0, 40.0, 300.0), _oblique_direction(), {"source_path": "fake.nii.gz"})


def _write_bundle(folder: Path, labels: Volume, centers: dict[int, np.ndarray] | None = None) -> Path:
    """A minimal bundle (labels.nii.gz + vertebrae.json) as the exporter writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(labels.to_sitk(), str(folder / "labels.nii.gz"))
    centers = label_centroids(labels) if centers is None else centers
    doc = {
        "coordinate_system": "LPS",
        "vertebrae": [
            {"name": registry.name_of(vid), "id": int(vid), "center_lps": [float(c) for c in centers[vid]]}
            for vid in registry.sort_ids(centers)
        ],
    }
    (folder / "vertebrae.json").write_text(json.dumps(doc))
    return folder


def _row(report: dict, name: str) -> dict:
    return next(r for r in report["per_vertebra"] if r["name"] == name)


# ---- metrics with analytic answers -------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_compare_masks_shift_gives_analytic_hd95(axis):
    # A slab thin along `axis`, shifted 2 voxels along it: every surface point moves by exactly
    # 2 * spacing, and the two big faces (a large share of the surface) are that far from the other mask.
    shape = [30, 30, 30]
    box = [slice(5, 25)] * 3
    box[axis] = slice(8, 14)  # 6 voxels thick
    ref = np.zeros(shape, bool)
    ref[tuple(box)] = True
    pred = np.roll(ref, 2, axis=axis)
    m = compare_masks(pred, ref, SPACING_KJI)
    assert m.hd95_mm == pytest.approx(2 * SPACING_KJI[axis])
    assert 0 < m.msd_mm < m.hd95_mm
    assert m.dice == pytest.approx(4 / 6)


def test_compare_masks_identical_and_empty():
    ref = np.zeros((8, 8, 8), bool)
    ref[2:6, 2:6, 2:6] = True
    m = compare_masks(ref, ref, SPACING_KJI)
    assert (m.dice, m.hd95_mm, m.msd_mm) == (1.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        compare_masks(np.zeros_like(ref), ref, SPACING_KJI)


def test_centroids_are_lps_mm():
    vol = _spine()
    c = label_centroids(vol)
    k0 = TOP
    expected = vol.index_to_lps(np.array([[(4 + 21) / 2, (3 + 18) / 2, k0 + (THICK - 1) / 2]]))[0]
    np.testing.assert_allclose(c[LUMBAR[0]], expected, atol=1e-9)


# ---- the protocol on synthetic spines ----------------------------------------------------------
def test_identical_spine():
    vol = _spine()
    rep = evaluate_labels(vol, vol)
    o = rep["overall"]
    assert (o["mean_dice"], o["mean_hd95_mm"], o["mean_msd_mm"], o["mean_center_error_mm"]) == (1, 0, 0, 0)
    assert o["id_rate"] == 1.0 and o["n_reference"] == o["n_predicted"] == o["n_identified"] == 5
    assert [r["name"] for r in rep["per_vertebra"]] == ["L1", "L2", "L3", "L4", "L5"]
    assert rep["shifts"] == rep["mislabels"] == rep["missed"] == rep["false_positives"] == []
    assert rep["coordinate_system"] == "LPS" and "unknown" in rep["note"]
    assert rep["per_region"]["lumbar"]["mean_dice"] == 1.0
    assert rep["per_region"]["thoracic"]["n_reference"] == 0
    assert rep["grid"]["prediction_resampled"] is False
    json.dumps(rep, allow_nan=False)  # JSON-ready: plain Python types, no NaN


def test_one_vertebra_shifted_two_slices():
    truth = _spine()
    arr = truth.array.copy()
    l3 = registry.id_of("L3")
    arr[arr == l3] = 0
    arr[np.roll(truth.array == l3, 2, axis=0)] = l3  # 2 slices caudal along k, into the gap
    rep = evaluate_labels(truth.with_array(arr), truth)
    row = _row(rep, "L3")
    assert row["hd95_mm"] == pytest.approx(2 * SPACING[2])
    assert row["center_error_mm"] == pytest.approx(2 * SPACING[2])
    assert row["dice"] == pytest.approx(4 / 6, abs=1e-3)
    assert row["identified"] is True and rep["overall"]["id_rate"] == 1.0
    assert _row(rep, "L2")["dice"] == 1.0


def test_all_labels_shifted_by_one_level():
    truth = _spine()
    # the prediction calls L1 "T12", L2 "L1", ... L5 "L4"
    pred = _spine(ids=[registry.id_of("T12")] + LUMBAR[:4])
    rep = evaluate_labels(pred, truth)
    texts = [s["text"] for s in rep["shifts"]]
    assert texts == [
        "predicted T12 at reference L1 (shift -1)",
        "predicted L1 at reference L2 (shift -1)",
        "predicted L2 at reference L3 (shift -1)",
        "predicted L3 at reference L4 (shift -1)",
        "predicted L4 at reference L5 (shift -1)",
    ]
    assert all(s["distance_mm"] == 0.0 for s in rep["shifts"])
    assert rep["overall"]["id_rate"] == 0.0 and rep["overall"]["n_identified"] == 0
    assert rep["missed"] == ["L5"] and rep["false_positives"] == ["T12"]
    assert rep["overall"]["mean_dice"] == 0.0
    assert "predicted L4 at reference L5 (shift -1)" in format_report(rep)


def test_shift_counts_t13_only_when_present():
    t11, t12, t13, l1, l2, l3 = (registry.id_of(n) for n in ("T11", "T12", "T13", "L1", "L2", "L3"))
    truth = _spine(ids=[t11, t12, l1, l2])
    # T12 → L1 is one level in a spine without T13
    rep = evaluate_labels(_spine(ids=[t11, l1, l2, l3]), truth)
    assert [(s["predicted"], s["reference"], s["shift"]) for s in rep["shifts"]] == [
        ("L1", "T12", 1), ("L2", "L1", 1), ("L3", "L2", 1)]
    # a prediction that calls the first lumbar vertebra T13 is one level off as well
    rep = evaluate_labels(_spine(ids=[t11, t12, t13, l1]), truth)
    assert [(s["predicted"], s["reference"], s["shift"]) for s in rep["shifts"]] == [
        ("T13", "L1", -1), ("L1", "L2", -1)]
    assert rep["overall"]["id_rate"] == 0.5


def test_mislabel_two_levels():
    truth = _spine()
    l1, l3 = registry.id_of("L1"), registry.id_of("L3")
    arr = truth.array.copy()
    arr[arr == l1] = 0
    arr[arr == l3] = 0
    arr[truth.array == l1] = l3  # L3's name on the L1 body, the true L3 left unlabelled
    rep = evaluate_labels(truth.with_array(arr), truth)
    assert rep["shifts"] == []
    assert [(m["predicted"], m["reference"], m["shift"]) for m in rep["mislabels"]] == [("L3", "L1", 2)]
    assert rep["missed"] == ["L1"]
    assert rep["overall"]["id_rate"] == pytest.approx(0.6)


def test_missing_vertebra():
    truth = _spine()
    arr = truth.array.copy()
    arr[arr == registry.id_of("L3")] = 0
    rep = evaluate_labels(truth.with_array(arr), truth)
    row = _row(rep, "L3")
    assert row["in_reference"] and not row["in_prediction"]
    assert (row["dice"], row["hd95_mm"], row["msd_mm"], row["center_error_mm"]) == (0.0, None, None, None)
    assert row["identified"] is False
    assert rep["missed"] == ["L3"] and rep["false_positives"] == []
    o = rep["overall"]
    assert o["id_rate"] == 0.8 and o["n_identified"] == 4 and o["mean_dice"] == 0.8
    assert o["mean_dice_matched"] == 1.0 and o["mean_hd95_mm"] == 0.0


def test_false_positive():
    truth = _spine(ids=LUMBAR[:4], shape=(52, 22, 26))
    pred = _spine(shape=(52, 22, 26))  # adds L5 below L4
    rep = evaluate_labels(pred, truth)
    row = _row(rep, "L5")
    assert row["in_prediction"] and not row["in_reference"] and row["identified"] is None
    assert row["dice"] == 0.0 and row["hd95_mm"] is None
    assert rep["false_positives"] == ["L5"] and rep["missed"] == []
    assert rep["overall"]["id_rate"] == 1.0 and rep["overall"]["mean_dice"] == 0.8
    assert rep["shifts"] == []  # L5's center is 22.5 mm from L4's: no reference vertebra there


def test_bundle_centers_override_mask_centroids():
    truth = _spine()
    centers = label_centroids(truth)
    l2 = registry.id_of("L2")
    centers[l2] = centers[l2] + [3.0, 4.0, 0.0]
    rep = evaluate_labels(truth, truth, centers)
    assert _row(rep, "L2")["center_error_mm"] == 5.0 and _row(rep, "L2")["dice"] == 1.0
    # 25 mm off: no longer identified
    centers[l2] = label_centroids(truth)[l2] + [0.0, 25.0, 0.0]
    assert _row(evaluate_labels(truth, truth, centers), "L2")["identified"] is False


def _resample(vol: Volume, spacing, origin_shift=(0.0, 0.0, 0.0)) -> Volume:
    """Nearest-neighbour copy of ``vol`` on a grid with other spacing covering the same extent."""
    img = vol.to_sitk()
    size = [int(np.ceil(n * s / t)) for n, s, t in zip(img.GetSize(), img.GetSpacing(), spacing, strict=True)]
    origin = np.array(vol.origin) + np.asarray(origin_shift)
    out = sitk.Resample(img, size, sitk.Transform(), sitk.sitkNearestNeighbor, tuple(origin), tuple(spacing),
                        img.GetDirection(), 0, img.GetPixelID())
    return Volume.from_sitk(out)


def test_prediction_on_coarser_grid_is_resampled():
    truth = _spine()
    pred = _resample(truth, (1.4, 1.8, 2.5), origin_shift=(0.3, -0.2, 0.1))
    assert not pred.same_grid(truth)
    rep = evaluate_labels(pred, truth)
    assert rep["grid"]["prediction_resampled"] is True
    assert rep["grid"]["reference_size"] == list(truth.size)
    assert rep["overall"]["mean_dice"] > 0.8 and rep["overall"]["id_rate"] == 1.0
    assert rep["overall"]["mean_hd95_mm"] < 3.0 and rep["overall"]["mean_center_error_mm"] < 1.5


def test_non_overlapping_grids_refused():
    truth = _spine()
    far = Volume(truth.array.copy(), truth.spacing, (900.0, 900.0, 900.0), truth.direction,
                 {"source_path": "pred.nii.gz"})
    with pytest.raises(InputError, match="overlap in LPS space"):
        evaluate_labels(far, truth)


def test_non_overlapping_bundle_refused(tmp_path, truth_file):
    vol = _spine()
    far = Volume(vol.array, vol.spacing, (900.0, 900.0, 900.0), vol.direction)
    bundle = _write_bundle(tmp_path / "out", far)
    with pytest.raises(InputError, match="overlap in LPS space") as info:
        evaluate_bundle(bundle, truth_file)
    assert str(truth_file) in str(info.value) and "another scan" in str(info.value)


def test_unknown_ids_refused():
    truth = _spine()
    arr = truth.array.copy()
    arr[0, 0, 0] = 27
    with pytest.raises(InputError, match="unknown vertebra ids"):
        evaluate_labels(truth.with_array(arr), truth)


# ---- bundles -------------------------------------------------------------------------------------
@pytest.fixture
def truth_file(tmp_path) -> Path:
    path = tmp_path / "truth.nii.gz"
    sitk.WriteImage(_spine().to_sitk(), str(path))
    return path


def test_bundle_identical(tmp_path, truth_file):
    bundle = _write_bundle(tmp_path / "out", _spine())
    rep = evaluate_bundle(bundle, truth_file)
    assert rep["overall"]["mean_dice"] == 1.0 and rep["overall"]["id_rate"] == 1.0
    assert rep["overall"]["mean_center_error_mm"] == 0.0
    assert rep["inputs"]["bundle"] == str(bundle.resolve())
    assert rep["inputs"]["reference"] == str(truth_file.resolve())
    assert rep["inputs"]["reference_convention"] == "verse"
    text = format_report(rep)
    assert text.index("L1") < text.index("L5") and "100.0 %" in text


def test_cli_evaluate_json(tmp_path, truth_file, capsys):
    bundle = _write_bundle(tmp_path / "out", _spine())
    assert main(["evaluate", str(bundle), "--truth", str(truth_file), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["overall"]["id_rate"] == 1.0
    assert main(["evaluate", str(tmp_path / "nope"), "--truth", str(truth_file)]) == 2
    assert "nope" in capsys.readouterr().err


def _vertebrae_doc(**record) -> dict:
    rec = {"name": "L1", "id": 20, "center_lps": [0, 0, 0], **record}
    return {"coordinate_system": "LPS", "vertebrae": [rec]}


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "bundle folder not found"),
        ("file", "not a folder"),
        ("empty", "not a SpineNav bundle"),
        ("no_json", "vertebrae.json missing"),
        ("bad_json", "malformed vertebrae.json"),
        ("not_object", "expected an object with a 'vertebrae' list"),
        ("ras", "coordinate_system is 'RAS'"),
        ("bad_center", "center_lps must be 3 finite numbers"),
        ("bad_id", "not a VerSe vertebra id"),
        ("bad_name", "unknown vertebra name"),
        ("disagree", "disagree"),
        ("duplicate", "listed twice"),
        ("bad_labels", "cannot read this label map"),
    ],
)
def test_bad_bundles(tmp_path, truth_file, setup, message):
    out = tmp_path / "out"
    if setup == "file":
        out.write_text("x")
    elif setup != "missing":
        out.mkdir()
    if setup not in ("missing", "file", "empty"):
        _write_bundle(out, _spine())
    json_path = out / "vertebrae.json"
    docs = {
        "not_object": [1, 2],
        "ras": {**_vertebrae_doc(), "coordinate_system": "RAS"},
        "bad_center": _vertebrae_doc(center_lps=[1.0, 2.0]),
        "bad_id": _vertebrae_doc(id=27, name=None),
        "bad_name": _vertebrae_doc(name="L9"),
        "disagree": _vertebrae_doc(name="L2"),
    }
    if setup == "no_json":
        json_path.unlink()
    elif setup == "bad_json":
        json_path.write_text('{"vertebrae": [')
    elif setup in docs:
        json_path.write_text(json.dumps(docs[setup]))
    elif setup == "duplicate":
        doc = _vertebrae_doc()
        doc["vertebrae"] *= 2
        json_path.write_text(json.dumps(doc))
    elif setup == "bad_labels":
        (out / "labels.nii.gz").write_bytes(b"not a nifti file at all")
    with pytest.raises(InputError, match=message) as info:
        evaluate_bundle(out, truth_file)
    assert "\n" not in str(info.value)
    path = out / "vertebrae.json" if setup in docs or setup in ("bad_json", "duplicate") else out
    assert str(path) in str(info.value)


def test_unreadable_truth(tmp_path):
    bundle = _write_bundle(tmp_path / "out", _spine())
    with pytest.raises(InputError, match="no such file"):
        evaluate_bundle(bundle, tmp_path / "missing.nii.gz")


def test_read_bundle_centers_accepts_name_only(tmp_path):
    path = tmp_path / "vertebrae.json"
    path.write_text(json.dumps({"vertebrae": [{"name": "sacrum", "center_lps": [1, 2, 3.5]}]}))
    centers = read_bundle_centers(path)
    assert list(centers) == [26]
    np.testing.assert_array_equal(centers[26], [1, 2, 3.5])


# ---- real data -----------------------------------------------------------------------------------
def test_real_tptbox_against_itself(tmp_path):
    labels = read_label_map(TPTBOX_VERT, convention="verse")
    bundle = _write_bundle(tmp_path / "out", labels)
    rep = evaluate_bundle(bundle, TPTBOX_VERT)
    o = rep["overall"]
    assert o["n_reference"] == 3 and o["id_rate"] == 1.0
    assert o["mean_dice"] == 1.0 and o["mean_hd95_mm"] == 0.0 and o["mean_center_error_mm"] == 0.0


def test_real_totalsegmentator_against_refined_map(tmp_path):
    # TotalSegmentator's own prediction vs its refined VerSe-numbered map of the same CT: both are
    # model outputs, so this checks that real grids run and give sensible numbers, not accuracy.
    pred = read_label_map(TS_REPORT / "totalseg.nii.gz")  # TS ids, converted to VerSe
    bundle = _write_bundle(tmp_path / "out", pred)
    rep = evaluate_bundle(bundle, TS_REPORT / "totalseg_vertebrae_pp_refined.nii.gz")
    matched = [r for r in rep["per_vertebra"] if r["in_reference"] and r["in_prediction"]]
    assert len(matched) >= 4
    assert all(0.3 < r["dice"] <= 1.0 for r in matched)
    assert all(0 < r["hd95_mm"] < 60 and 0 <= r["msd_mm"] < 20 for r in matched)
    assert all(r["center_error_mm"] < 20 for r in matched)
    assert 0.5 <= rep["overall"]["id_rate"] <= 1.0
    assert rep["shifts"] == [] and rep["missed"] == []
    assert set(rep["false_positives"]) <= {"T11", "S1"}
    assert format_report(rep).count("\n") > 10


def test_centers_only_bundle(tmp_path, truth_file):
    """A bundle from localization alone (no labels.nii.gz) is judged on centers and labels."""
    out = tmp_path / "out"
    out.mkdir()
    truth = read_label_map(truth_file)
    ref = label_centroids(truth)
    vid = sorted(ref)[0]
    doc = {"coordinate_system": "LPS",
           "vertebrae": [{"id": vid, "center_lps": (ref[vid] + [1.0, 0.0, 0.0]).tolist()}]}
    (out / "vertebrae.json").write_text(json.dumps(doc))
    report = evaluate_bundle(out, truth_file)
    row = next(r for r in report["per_vertebra"] if r["id"] == vid)
    assert row["dice"] is None and row["identified"] and row["center_error_mm"] == pytest.approx(1.0, abs=1e-3)
    assert report["overall"]["mean_dice"] is None and report["overall"]["n_missed"] == len(ref) - 1
