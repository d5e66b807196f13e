"""Synthetic CT generator: shape library, determinism, anatomy order, lesions, HU realism, geometry."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from inference import registry
from inference.errors import CancelledError, InputError, OutputExistsError
from inference.io import read_ct, read_label_map
from inference.progress import CancelToken
from inference.synth import generate, small_config, write_cases
from inference.synth.shapes import SHAPES_DIR, load_library

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def cases():
    """A handful of small cases shared by the read-only checks (about 1 s each)."""
    cfg = small_config(p_lesions=0.6)
    return [generate(s, cfg) for s in range(6)]


def test_shape_library_covers_the_column():
    lib = load_library()
    levels = {name for name in lib}
    wanted = {f"C{i}" for i in range(1, 8)} | {f"T{i}" for i in range(1, 13)} | {f"L{i}" for i in range(1, 6)}
    assert wanted | {"S1", "pelvis"} <= levels
    for name in ("T6", "T7", "T8"):
        assert all(s.meta["derived"] for s in lib[name])  # not in the data: interpolated, and said so
    for shapes in lib.values():
        for s in shapes:
            assert s.mask.any() and s.meta["spacing"] == [1.0, 1.0, 1.0]
    size = sum(p.stat().st_size for p in SHAPES_DIR.iterdir())
    assert size < 3_000_000
    assert (SHAPES_DIR / "NOTICE.md").read_text().count("CC BY-SA 4.0") >= 1


def test_same_seed_same_case_and_different_seeds_differ():
    cfg = small_config()
    a, b, c = generate(11, cfg), generate(11, cfg), generate(12, cfg)
    for x, y in ((a.ct, b.ct), (a.labels, b.labels), (a.lesions, b.lesions)):
        assert np.array_equal(x.array, y.array) and x.same_grid(y)
    assert a.params == b.params
    assert a.ct.array.shape != c.ct.array.shape or not np.array_equal(a.ct.array, c.ct.array)


def test_write_cases_is_byte_identical_and_refuses_a_full_folder(tmp_path):
    cfg = small_config()
    write_cases(2, 3, tmp_path / "a", config=cfg)
    write_cases(2, 3, tmp_path / "b", config=cfg)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(f"synth_{i:04d}_{k}" for i in range(2) for k in
                           ("ct.nii.gz", "labels.nii.gz", "lesions.nii.gz", "params.json"))
    for n in names:
        assert hashlib.sha256((tmp_path / "a" / n).read_bytes()).digest() == \
            hashlib.sha256((tmp_path / "b" / n).read_bytes()).digest(), n
    with pytest.raises(OutputExistsError):
        write_cases(1, 3, tmp_path / "a", config=cfg)
    write_cases(1, 4, tmp_path / "a", config=cfg, force=True)
    with pytest.raises(InputError):
        write_cases(0, 3, tmp_path / "c", config=cfg)
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        write_cases(1, 3, tmp_path / "d", config=cfg, cancel=token)
    # the files read back with the project's readers onto the same grid
    ct = read_ct(tmp_path / "a" / "synth_0000_ct.nii.gz")
    lab = read_label_map(tmp_path / "a" / "synth_0000_labels.nii.gz")
    assert ct.array.dtype == np.int16 and lab.same_grid(ct)


def _centroids_lps(labels) -> dict[int, np.ndarray]:
    arr = labels.array
    out = {}
    for vid in np.unique(arr):
        if vid:
            kji = np.argwhere(arr == vid).mean(axis=0)
            out[int(vid)] = labels.index_to_lps(kji[::-1][None])[0]
    return out


def test_levels_are_consecutive_and_ordered_head_to_foot(cases):
    for case in cases:
        p = case.params
        present = [registry.BY_ID[i].name for i in registry.sort_ids(p["labels_present"])]
        assert present, "every case shows at least part of a vertebra"
        gen = p["generated_levels"]
        assert set(present) <= set(gen)
        i0 = gen.index(present[0])
        assert present == gen[i0:i0 + len(present)], "no level skipped"
        cents = _centroids_lps(case.labels)
        # superior = +z in LPS: C1 … sacrum have decreasing z (a 50° scoliosis still keeps the order)
        big = [registry.id_of(n) for n in present if (case.labels.array == registry.id_of(n)).sum() > 200]
        zs = [cents[i][2] for i in big]
        assert all(a > b for a, b in zip(zs[:-1], zs[1:], strict=False)), (present, zs)


def test_lesions_lie_inside_vertebrae():
    cfg = small_config(p_lesions=1.0, lesions_per_spine=(2, 4))
    seen = set()
    for s in range(4):
        case = generate(100 + s, cfg)
        les, lab = case.lesions.array, case.labels.array
        assert not np.any((les > 0) & (lab == 0))
        seen |= set(np.unique(les).tolist())
        kinds = {d["type"] for d in case.params["lesions"]}
        assert kinds <= {"lytic", "blastic", "mixed", "fracture"}
    assert seen - {0}, "lesions appear in the masks"


def test_hu_ordering_and_real_ct_ranges(cases):
    real_ct = read_ct(ROOT / "assets/sample/abdomen_ct_3mm.nii.gz").array.astype(float)
    real_lab = read_label_map(ROOT / "assets/sample/abdomen_vertebrae_totalseg.nii.gz").array
    real_vert = float(np.median(real_ct[real_lab > 0]))

    def window_median(a, lo, hi):
        return float(np.median(a[(a > lo) & (a < hi)]))

    real_fat, real_muscle, real_air = (window_median(real_ct, -150, -50), window_median(real_ct, 20, 80),
                                       window_median(real_ct, -1100, -900))
    cfg = small_config()
    assert cfg.hu_fat[0] - 30 <= real_fat <= cfg.hu_fat[1] + 30
    assert cfg.hu_muscle[0] - 20 <= real_muscle <= cfg.hu_muscle[1] + 20
    assert cfg.hu_air[0] - 30 <= real_air <= cfg.hu_air[1] + 30
    medians = []
    for case in cases:
        hu = case.params["hu"]
        assert hu["cortical"] > hu["cancellous"] > hu["muscle"] > hu["fat"] > hu["lung"] > hu["air"] - 1
        ct, lab = case.ct.array.astype(float), case.labels.array
        bone = float(np.median(ct[lab > 0]))
        medians.append(bone)
        soft = window_median(ct, -30, 100)
        assert bone > soft + 50 > -100 - 50
    med = float(np.median(medians))
    # real L1–L5 at 3 mm: ~170 HU; the synthetic spread must sit around it, not at CT-bone extremes
    assert 0.6 * real_vert <= med <= 2.2 * real_vert, (medians, real_vert)


def _on_grid(vol, ref: sitk.Image, interp, default: float) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.Resample(vol.to_sitk(), ref, sitk.Transform(), interp, default))


def test_random_orientation_keeps_labels_on_the_bone():
    """Same seed, axial LPS grid vs. permuted + oblique grid: the same anatomy sits at the same LPS places."""
    base = small_config(p_fov_circle=0.0, p_clip_low=0.0)
    std = replace(base, p_standard_orientation=1.0, p_oblique=0.0)
    rot = replace(base, p_standard_orientation=0.0, p_oblique=1.0)
    for seed in (21, 22, 23):
        a, b = generate(seed, std), generate(seed, rot)
        assert not np.allclose(b.ct.direction, np.eye(3))
        ref = a.labels.to_sitk()
        lab_b = _on_grid(b.labels, ref, sitk.sitkNearestNeighbor, 255)  # 255 = outside b's field of view
        lab_a = a.labels.array
        seen = lab_b != 255
        both = seen & (lab_a > 0) & (lab_b > 0)
        assert both.sum() > 500
        assert np.mean(lab_a[both] == lab_b[both]) > 0.97  # same level ids at the same LPS places
        fa, fb = (lab_a > 0) & seen, (lab_b > 0) & seen
        assert 2 * (fa & fb).sum() / (fa.sum() + fb.sum()) > 0.85
        # and in the rotated grid itself, the labels sit on the bright bone of its own CT
        ct_b, lb = b.ct.array.astype(float), b.labels.array
        assert np.median(ct_b[lb > 0]) > np.median(ct_b[(lb == 0) & (ct_b > -500)]) + 80


def test_config_is_validated():
    with pytest.raises(ValueError):
        small_config(slice_spacing_mm=(2.0, 1.0))


@pytest.mark.slow
def test_default_config_case_runs_and_is_plausible():
    case = generate(0)
    assert case.ct.array.dtype == np.int16 and case.labels.array.dtype == np.uint8
    assert case.labels.same_grid(case.ct) and case.lesions.same_grid(case.ct)
    assert case.params["labels_present"]
