"""The robot bundle (inference.export): files, consistency, determinism, atomic writing, errors."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import trimesh
from dicom_factory import CTSpec, write_ct_series

import inference.export.bundle as bundle_module
from inference import __version__, registry
from inference.case import case_from_labels
from inference.cli import main
from inference.errors import CancelledError, InputError, OutputExistsError
from inference.export import SCHEMA_VERSION, export_labels, write_bundle
from inference.io import onto_grid, read_ct, read_label_map
from inference.progress import CancelToken
from inference.volume import Volume

ROOT = Path(__file__).parents[1]
OBLIQUE = np.linalg.qr(np.array([[0.95, 0.2, 0.1], [-0.15, 0.9, 0.3], [0.05, -0.35, 0.95]]))[0]
MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/main/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)


def spine_labels(direction=OBLIQUE) -> Volume:
    """Three ellipsoidal 'vertebrae' L1–L3 along k (k runs feet to head: L3 first), on an anisotropic oblique grid."""
    shape = (36, 20, 22)
    kk, jj, ii = np.indices(shape)
    arr = np.zeros(shape, np.uint8)
    for n, vid in enumerate((22, 21, 20)):
        inside = ((ii - 11) / 7.5) ** 2 + ((jj - 10) / 6.5) ** 2 + ((kk - 6 - 11 * n) / 4.5) ** 2 <= 1
        arr[inside] = vid
    return Volume(arr, (2.2, 2.0, 2.4), (30.0, -120.0, 400.0), direction, {"source_path": "/in/memory/labels"})


def write_labels(out, labels: Volume, *, ct: Volume | None = None, lesions: Volume | None = None,
                 subregions: Volume | None = None, models=None, **kwargs):
    """`write_bundle` of the case a label map makes (as `export-labels` does, from memory)."""
    case = case_from_labels(labels, ct=ct, subregions=subregions)
    case.lesions, case.models = lesions, list(models or [])
    return write_bundle(out, case, **kwargs)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bundle_hashes(out: Path) -> dict[str, str]:
    return {
        p.relative_to(out).as_posix(): sha(p)
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def manifest_without_created(out: Path) -> dict:
    doc = json.loads((out / "manifest.json").read_text())
    doc.pop("created")
    return doc


def no_temp_left(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


# ---- content ------------------------------------------------------------------------------------------
def test_bundle_files_and_consistency(tmp_path):
    labels = spine_labels()
    out = tmp_path / "out"
    result = write_labels(out, labels)
    names = ["L1", "L2", "L3"]
    assert result.out_dir == out and [v.name for v in result.vertebrae] == names
    expected = {"manifest.json", "vertebrae.json", "vertebrae.csv", "centers.mrk.json", "labels.nii.gz"}
    expected |= {f"meshes/{n}.stl" for n in names}
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == expected

    # manifest: identity, frame, and a correct sha256 + size of every other file
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["software"] == {"name": "spinenav", "version": __version__}
    assert manifest["coordinate_system"] == "LPS" and manifest["units"] == "mm"
    assert manifest["created"].endswith("Z") and manifest["models"] == []
    assert manifest["input"]["grid"]["size"] == list(labels.size)
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == expected - {"manifest.json"}
    for rel, rec in listed.items():
        assert rec["sha256"] == sha(out / rel) and rec["bytes"] == (out / rel).stat().st_size

    # vertebrae.json: centers are the mask centroids (LPS mm), volumes the voxel volumes
    doc = json.loads((out / "vertebrae.json").read_text())
    assert doc["coordinate_system"] == "LPS" and doc["units"] == "mm"
    records = doc["vertebrae"]
    assert [r["name"] for r in records] == names and [r["id"] for r in records] == [20, 21, 22]
    for r in records:
        kji = np.argwhere(labels.array == r["id"])
        centroid = labels.index_to_lps(kji[:, ::-1].astype(float)).mean(axis=0)
        assert np.allclose(r["center_lps"], centroid, atol=1e-3)
        assert r["volume_ml"] == pytest.approx(len(kji) * 2.2 * 2.0 * 2.4 / 1000, abs=1e-3)
        assert r["confidence"] == 1.0 and r["confidence_source"] == "label map"
        assert r["alternatives"] == [] and r["lesion_score"] is None and r["qa_flags"] == []
        assert r["stl"] == f"meshes/{r['name']}.stl" and r["body_center_lps"] is None
        mesh = trimesh.load(out / r["stl"])
        assert mesh.is_watertight and mesh.is_winding_consistent
        assert mesh.volume / 1000 == pytest.approx(r["volume_ml"], rel=0.03)
        assert r["mesh_volume_ml"] == pytest.approx(mesh.volume / 1000, rel=1e-4)

    # vertebrae.csv says the same as vertebrae.json
    rows = list(csv.DictReader(io.StringIO((out / "vertebrae.csv").read_text())))
    assert [row["name"] for row in rows] == names
    for row, r in zip(rows, records, strict=True):
        assert int(row["id"]) == r["id"] and row["stl"] == r["stl"]
        center = [float(row[f"center_lps_{a}_mm"]) for a in "xyz"]
        assert center == r["center_lps"]
        assert float(row["volume_ml"]) == r["volume_ml"] and row["qa_flags"] == ""

    # 3D Slicer markups
    mrk = json.loads((out / "centers.mrk.json").read_text())
    assert mrk["@schema"] == MARKUPS_SCHEMA
    node = mrk["markups"][0]
    assert node["type"] == "Fiducial" and node["coordinateSystem"] == "LPS" and node["coordinateUnits"] == "mm"
    assert [p["label"] for p in node["controlPoints"]] == names
    for n, (p, r) in enumerate(zip(node["controlPoints"], records, strict=True)):
        assert p["id"] == str(n + 1) and p["position"] == r["center_lps"]
        assert len(p["orientation"]) == 9 and p["positionStatus"] == "defined"
        assert p["selected"] is True and p["locked"] is True and p["visibility"] is True

    # labels.nii.gz: the same ids on the same grid
    back = read_label_map(out / "labels.nii.gz", convention="verse")
    assert back.same_grid(labels) and np.array_equal(back.array, labels.array)
    assert "L1, L2, L3" in result.summary() and str(out) in result.summary()


def test_bundle_is_deterministic(tmp_path, monkeypatch):
    labels = spine_labels()
    write_labels(tmp_path / "a", labels)
    write_labels(tmp_path / "b", labels)
    assert bundle_hashes(tmp_path / "a") == bundle_hashes(tmp_path / "b")
    assert manifest_without_created(tmp_path / "a") == manifest_without_created(tmp_path / "b")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    write_labels(tmp_path / "c", labels)
    write_labels(tmp_path / "d", labels)
    assert sha(tmp_path / "c" / "manifest.json") == sha(tmp_path / "d" / "manifest.json")
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["created"] == "2023-11-14T22:13:20Z"


def test_nifti_writer_is_deterministic(tmp_path):
    img = sitk.GetImageFromArray(spine_labels().array)
    sitk.WriteImage(img, str(tmp_path / "a.nii.gz"), True)
    sitk.WriteImage(img, str(tmp_path / "b.nii.gz"), True)
    assert sha(tmp_path / "a.nii.gz") == sha(tmp_path / "b.nii.gz")
    assert (tmp_path / "a.nii.gz").read_bytes()[4:8] == b"\0\0\0\0"  # gzip mtime field is zero


def test_flipped_label_grid_is_reoriented_exactly(tmp_path):
    ct_grid = spine_labels(direction=np.eye(3))
    ct = ct_grid.with_array(np.zeros(ct_grid.array.shape, np.int16))
    # the same voxels stored LAS-style: j axis reversed, origin at the other end
    flipped_origin = ct_grid.index_to_lps(np.array([[0.0, ct_grid.size[1] - 1, 0.0]]))[0]
    flipped = Volume(
        ct_grid.array[:, ::-1, :].copy(), ct_grid.spacing, tuple(flipped_origin), np.diag([1.0, -1.0, 1.0])
    )
    assert np.array_equal(onto_grid(flipped, ct).array, ct_grid.array)
    write_labels(tmp_path / "a", ct_grid, ct=ct)
    write_labels(tmp_path / "b", flipped, ct=ct)
    assert bundle_hashes(tmp_path / "a") == bundle_hashes(tmp_path / "b")


def test_case_fields_lesions_subregions(tmp_path):
    labels = spine_labels()
    lesions = labels.with_array((labels.array == 21).astype(np.float32) * 0.7)
    sub = labels.with_array(np.where(labels.array > 0, 50, 0).astype(np.uint8))
    case = case_from_labels(labels, subregions=sub)
    case.lesions, case.models = lesions, [{"name": "net", "version": "1", "sha256": "00"}]
    l2 = case.by_id(21)
    l2.confidence, l2.alternatives, l2.lesion_score = 0.8, [{"name": "L3", "p": 0.2}], 0.7
    l2.qa_flags.append("label_doubt")
    write_bundle(tmp_path / "o", case)
    recs = {r["name"]: r for r in json.loads((tmp_path / "o" / "vertebrae.json").read_text())["vertebrae"]}
    assert recs["L2"]["confidence"] == 0.8 and recs["L2"]["lesion_score"] == 0.7
    assert recs["L2"]["qa_flags"] == ["label_doubt"]
    assert recs["L2"]["alternatives"][0]["name"] == "L3" and recs["L1"]["confidence"] == 1.0
    assert np.allclose(recs["L2"]["body_center_lps"], recs["L2"]["center_lps"], atol=1e-3)
    les = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "o" / "lesions.nii.gz")))
    assert les.dtype == np.float32 and np.allclose(les, lesions.array)
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["models"] == [{"name": "net", "version": "1", "sha256": "00"}]


def test_qa_flags(tmp_path):
    arr = np.zeros((40, 16, 16), np.uint8)
    arr[0:4, 4:12, 4:12] = 19  # T12 cut by the top of the grid: small and at the border
    arr[8:18, 2:14, 2:14] = 20
    arr[22:32, 2:14, 2:14] = 21
    arr[35:37, 2:4, 2:4] = 21  # a stray piece of L2
    write_labels(tmp_path / "o", Volume(arr, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0)))
    flags = {r["name"]: r["qa_flags"] for r in json.loads((tmp_path / "o" / "vertebrae.json").read_text())["vertebrae"]}
    assert flags == {"T12": ["touches_image_border", "small_volume"], "L1": [], "L2": ["multiple_components"]}
    mesh = trimesh.load(tmp_path / "o" / "meshes" / "L2.stl")
    assert mesh.is_watertight and len(mesh.split(only_watertight=True)) == 2  # the stray piece is kept, closed


# ---- atomic writing -----------------------------------------------------------------------------------
def test_refuses_non_empty_output_and_force_replaces(tmp_path):
    labels = spine_labels()
    out = tmp_path / "out"
    out.mkdir()
    write_labels(out, labels)  # an existing empty folder is fine
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="exists and is not empty; choose another folder or pass --force"):
        write_labels(out, labels)
    assert (out / "mine.txt").read_text() == "keep me"
    write_labels(out, labels, force=True)
    assert not (out / "mine.txt").exists() and (out / "manifest.json").is_file()
    assert no_temp_left(tmp_path)


def test_exception_midway_leaves_output_untouched(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text('{"software": {"name": "spinenav"}}')  # a previous bundle
    (out / "old.txt").write_text("previous bundle")

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(bundle_module, "write_nifti", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_labels(out, spine_labels(), force=True)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "old.txt"]
    assert no_temp_left(tmp_path)
    with pytest.raises(RuntimeError):
        write_labels(tmp_path / "new", spine_labels())
    assert not (tmp_path / "new").exists() and no_temp_left(tmp_path)


def test_cancel_leaves_nothing(tmp_path):
    token = CancelToken()
    seen = []

    def progress(fraction, message):
        seen.append(message)
        if "L2" in message:
            token.cancel()

    out = tmp_path / "out"
    with pytest.raises(CancelledError):
        write_labels(out, spine_labels(), progress=progress, cancel=token)
    assert not out.exists() and no_temp_left(tmp_path)
    assert any("meshing" in m for m in seen)


def test_output_folder_errors(tmp_path):
    labels = spine_labels()
    with pytest.raises(InputError, match="does not exist"):
        write_labels(tmp_path / "missing" / "out", labels)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        write_labels(tmp_path / "file", labels)


# ---- input errors ---------------------------------------------------------------------------------------
def test_label_errors(tmp_path):
    labels = spine_labels()
    with pytest.raises(InputError, match="no vertebra"):
        write_labels(tmp_path / "a", labels.with_array(np.zeros_like(labels.array)))
    with pytest.raises(InputError, match="non-integer"):
        write_labels(tmp_path / "b", labels.with_array(labels.array * 0.5))
    with pytest.raises(InputError, match=r"unknown vertebra ids \[27\]"):
        write_labels(tmp_path / "c", labels.with_array(np.where(labels.array == 20, 27, labels.array).astype(np.uint8)))
    assert not any((tmp_path / n).exists() for n in "abc")


def test_grid_mismatch_names_both_grids(tmp_path):
    labels = spine_labels()
    ct = Volume(np.zeros((36, 20, 22), np.int16), (0.9, 0.9, 1.6), labels.origin, labels.direction)
    with pytest.raises(InputError, match=r"22×20×36 voxels of 2\.2×2×2\.4 mm.*22×20×36 voxels of 0\.9×0\.9×1\.6 mm"):
        write_labels(tmp_path / "o", labels, ct=ct)
    shifted = Volume(ct.array, labels.spacing, (31.0, -120.0, 400.0), labels.direction)
    with pytest.raises(InputError, match="not on the CT's grid"):
        write_labels(tmp_path / "o", labels, ct=shifted)


def test_export_labels_from_files_and_folder(tmp_path):
    labels = spine_labels()
    path = tmp_path / "labels.nii.gz"
    sitk.WriteImage(labels.to_sitk(), str(path), True)
    result = export_labels(path, tmp_path / "o1")
    manifest = json.loads((tmp_path / "o1" / "manifest.json").read_text())
    assert manifest["input"]["labels"]["sha256"] == sha(path)
    assert manifest["input"]["labels"]["convention"] == "verse"
    assert len(result.vertebrae) == 3
    folder = tmp_path / "masks"
    folder.mkdir()
    for vid in (20, 21):
        sitk.WriteImage(
            labels.with_array((labels.array == vid).astype(np.uint8)).to_sitk(),
            str(folder / f"vertebrae_{registry.name_of(vid)}.nii.gz"),
            True,
        )
    result = export_labels(folder, tmp_path / "o2")
    assert [v.name for v in result.vertebrae] == ["L1", "L2"]
    assert [
        f["name"] for f in json.loads((tmp_path / "o2" / "manifest.json").read_text())["input"]["labels"]["files"]
    ] == ["vertebrae_L1.nii.gz", "vertebrae_L2.nii.gz"]
    one = export_labels(folder / "vertebrae_L2.nii.gz", tmp_path / "o3")  # the file name gives the level
    assert [v.name for v in one.vertebrae] == ["L2"]
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "liver.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match="no vertebra mask files"):
        export_labels(empty, tmp_path / "o4")
    with pytest.raises(InputError, match="no such file"):
        export_labels(tmp_path / "absent.nii.gz", tmp_path / "o5")


def test_cli_export_labels(tmp_path, capsys):
    path = tmp_path / "labels.nii.gz"
    sitk.WriteImage(spine_labels().to_sitk(), str(path), True)
    assert main(["export-labels", str(path), "-o", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "3 vertebrae: L1, L2, L3" in out and "LPS" in out
    assert main(["export-labels", str(path), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--force" in err[0]


def test_export_imports_no_gui():
    code = (
        "import sys, inference.export, inference.mesh, inference.measure; "
        "print([m for m in ('pyvista', 'PySide6', 'vtk') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---- DICOM-SEG --------------------------------------------------------------------------------------
def test_dicom_seg_on_oblique_synthetic_series(tmp_path):
    hd = pytest.importorskip("highdicom")
    spec = CTSpec(
        n_slices=14,
        rows=24,
        columns=26,
        row_cosine=(0.9659258, 0.258819, 0.0),
        col_cosine=(-0.258819, 0.9659258, 0.0),
        sphere_radius=4.0,
    )
    series = write_ct_series(tmp_path / "dicom", spec)
    ct = read_ct(tmp_path / "dicom")
    arr = np.zeros(ct.array.shape, np.uint8)
    arr[ct.array > 0] = 22
    arr[:3][ct.array[:3] > -1000] = 0
    labels = ct.with_array(arr)
    write_labels(tmp_path / "a", labels, ct=ct)
    write_labels(tmp_path / "b", labels, ct=ct)
    assert bundle_hashes(tmp_path / "a") == bundle_hashes(tmp_path / "b")  # segmentation.dcm included
    seg = hd.seg.segread(tmp_path / "a" / "segmentation.dcm")
    assert seg.FrameOfReferenceUID == spec.frame_of_reference_uid
    assert seg.StudyInstanceUID == spec.study_uid
    assert seg.SegmentSequence[0].SegmentLabel == "L3"
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "36470004"  # SCT L3 vertebra
    assert seg.SegmentationType == "BINARY"
    # the viewer's colour is the level's colour in the app and the figures (CIE Lab, 0-65535 scaled)
    from skimage.color import lab2rgb

    lab16 = np.array(seg.SegmentSequence[0].RecommendedDisplayCIELabValue, float)
    lab = [lab16[0] / 65535 * 100, lab16[1] / 65535 * 255 - 128, lab16[2] / 65535 * 255 - 128]
    rgb = lab2rgb(np.array(lab).reshape(1, 1, 3))[0, 0] * 255
    assert np.abs(rgb - registry.by_id(22).color).max() < 3
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == spec.series_uid
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=series.sop_uids, combine_segments=True)
    assert np.array_equal(pixels > 0, arr > 0)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["input"]["ct"]["series_instance_uid"] == spec.series_uid
    assert manifest["input"]["ct"]["frame_of_reference_uid"] == spec.frame_of_reference_uid
    assert manifest["warnings"] == []
