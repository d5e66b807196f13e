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
from inference.io import read_ct, read_image_file, read_label_map
from inference.progress import CancelToken
from inference.synth import generate, small_config, write_cases
from inference.synth import raster as T
from inference.synth.layout import _mid_rotation, sample_layout
from inference.synth.shapes import SHAPES_DIR, load_library

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def cases():
    """A dozen small cases shared by the read-only checks (about 1 s each): enough for the HU spread to
    bracket the real scans' (with six, the v2 shape library's draws left no low-density spine in the set)."""
    cfg = small_config(p_lesions=0.6)
    return [generate(s, cfg) for s in range(12)]


def test_shape_library_covers_the_column():
    lib = load_library()
    levels = {name for name in lib}
    wanted = {f"C{i}" for i in range(1, 8)} | {f"T{i}" for i in range(1, 13)} | {f"L{i}" for i in range(1, 6)}
    assert wanted | {"S1", "pelvis"} <= levels
    # v2: every level from real masks (T6-T8 were interpolated in v1), several patients per level
    assert not any(s.meta["derived"] for name in wanted for s in lib[name])
    for name in wanted:
        assert len({s.meta["patient"] for s in lib[name]}) >= (2 if name[0] == "C" else 4), name
    assert sum(len(lib[name]) for name in wanted) >= 190  # usable shapes (221 in all, 14 cut, 4 compressed)
    everything = load_library(include_unusable=True)
    flagged = [s for shapes in everything.values() for s in shapes if s.meta["cut"] or s.meta["compressed"]]
    assert flagged and not any(s in lib.get(s.level, []) for s in flagged)
    assert any(s.name == "T12@ctfu00106-20130916" and s.meta["compressed"] for s in flagged)  # the real fracture
    for shapes in lib.values():
        for s in shapes:
            assert s.mask.any() and s.meta["spacing"] == [1.0, 1.0, 1.0]
    # every level C1–L5 and the sacrum: several sources where the data has them, none cut by the field of view
    assert all(len(lib[f"C{i}"]) >= 2 for i in range(1, 8)) and all(len(lib[f"L{i}"]) >= 3 for i in range(1, 6))
    # body endplates measured on the masks: body heights and widths grow from the neck to the low back
    for name in [f"C{i}" for i in range(3, 8)] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)]:
        for shape in lib[name]:
            ep = shape.endplates
            height = ep[1].z - ep[-1].z
            assert 12.0 <= height <= 40.0, (shape.name, height)
            assert ep[-1].half_x <= (16.0 if name[0] == "C" else 32.0), shape.name  # not the transverse processes
    neck = np.median([s.endplates[-1].half_x for n in ("C3", "C4", "C5") for s in lib[n]])
    low_back = np.median([s.endplates[-1].half_x for n in ("L3", "L4") for s in lib[n]])
    assert 7 <= neck <= 13 and 19 <= low_back <= 26 and low_back > 1.7 * neck
    size = sum(p.stat().st_size for p in SHAPES_DIR.iterdir())
    assert size < 3_000_000
    assert (SHAPES_DIR / "NOTICE.md").read_text().count("ctfu") >= 1  # every source is named
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


def test_cli_synth_twice_gives_identical_files(tmp_path, capsys):
    """`spinenav synth -n 2 --seed 0` twice → byte-identical files (hidden --small: short coarse volumes)."""
    from inference.cli import main

    for name in ("a", "b"):
        assert main(["synth", "-n", "2", "--seed", "0", "-o", str(tmp_path / name), "--small"]) == 0
    out = capsys.readouterr().out
    assert "synth_0001:" in out and "2 synthetic cases written" in out and "volumes/minute" in out
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(f"synth_{i:04d}_{k}" for i in range(2) for k in
                           ("ct.nii.gz", "labels.nii.gz", "lesions.nii.gz", "params.json"))
    for n in names:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes(), n
    # bad input: one error line, exit 2, nothing overwritten
    assert main(["synth", "-n", "1", "-o", str(tmp_path / "a"), "--small"]) == 2
    assert main(["synth", "-n", "0", "-o", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
    assert "--force" in err[0]


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


def test_discs_separate_consecutive_bodies():
    """Endplate-to-endplate stacking: each disc's sampled height is the gap between the two bodies'
    endplate centres along the segment's axis, whatever library shapes (people) the levels come from."""
    cfg = small_config()
    lib = load_library()
    for seed in range(8):
        rng = np.random.default_rng([seed, 7919])
        layout = sample_layout(rng, cfg, lib)
        by = {lv.name: lv for lv in layout.levels}
        assert layout.discs
        for d in layout.discs:
            up, down = by[d["upper"]], by[d["lower"]]
            e_up = up.to_world(up.endplate(-1)[None])[0]
            e_dn = down.to_world(down.endplate(+1)[None])[0]
            axis = _mid_rotation(up.rotation, down.rotation)[:, 2]
            assert abs(float(np.dot(e_up - e_dn, axis)) - d["height_mm"]) < 0.5, (seed, d)
            assert d["height_mm"] > 0.0
            # the lower body is below the upper one (superior = +z)
            assert down.center[2] < up.center[2]


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


# TotalSegmentator v2 "total" classes of the real example (tests/data/ts_abdomen_3mm, README of
# ../shared/data/real): vertebrae 26-50; soft tissue = spleen 1, liver 5, gluteus 80-85,
# autochthon 86-87, iliopsoas 88-89.
_TS_VERTEBRAE = range(26, 51)
_TS_SOFT = (1, 5, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89)


@pytest.fixture(scope="module")
def real_tissue_hu() -> dict[str, float]:
    """Median HU per tissue of the real TotalSegmentator abdomen CT (3 mm), measured with its masks."""
    ct = read_ct(ROOT / "assets/sample/abdomen_ct_3mm.nii.gz")
    seg = read_image_file(ROOT / "tests/data/ts_abdomen_3mm/example_seg_fast_force_split.nii.gz", what="label map")
    assert seg.same_grid(ct)
    body = read_image_file(ROOT / "tests/data/ts_abdomen_3mm/spine_report/totalseg_vertebrae_body.nii.gz",
                           what="label map")
    a, s = ct.array.astype(float), np.asarray(seg.array)
    outside = s == 0
    return {
        "bone": float(np.median(a[np.isin(s, _TS_VERTEBRAE)])),
        "body": float(np.median(a[np.asarray(body.array) == 1])),  # vertebral bodies only (marrow)
        "soft": float(np.median(a[np.isin(s, _TS_SOFT)])),
        "fat": float(np.median(a[outside & (a > -200) & (a < -50)])),  # subcutaneous / visceral fat
        "air": float(np.median(a[outside & (a < -900)])),
    }


def _synthetic_tissue_hu(case) -> dict[str, float]:
    """The same medians on a synthetic case, from its labels and the generator's tissue classes."""
    ct, t = case.ct.array.astype(float), case.tissue.array
    masks = {
        "bone": case.labels.array > 0,
        "soft": np.isin(t, [T.MUSCLE, T.ORGAN]),
        "fat": t == T.FAT,
        "air": (t == T.AIR) & (ct < -900) & (ct > -1500),  # not the padding outside the reconstruction circle
    }
    return {k: float(np.median(ct[m])) if m.sum() > 50 else float("nan") for k, m in masks.items()}


def test_real_ct_tissue_order_and_config_ranges(real_tissue_hu):
    r = real_tissue_hu
    # bone ≫ soft tissue ≫ fat ≫ air on the real scan (174, 33, −100, −994 HU)
    assert r["bone"] > r["soft"] + 100 and r["soft"] > r["fat"] + 80 and r["fat"] > r["air"] + 600, r
    cfg = small_config()
    assert cfg.hu_cancellous[0] <= r["body"] <= cfg.hu_cancellous[1]
    assert min(cfg.hu_muscle[0], cfg.hu_organ[0]) <= r["soft"] <= max(cfg.hu_muscle[1], cfg.hu_organ[1])
    assert cfg.hu_fat[0] <= r["fat"] <= cfg.hu_fat[1]
    assert cfg.hu_air[0] <= r["air"] <= cfg.hu_air[1]


def test_synthetic_tissue_hu_brackets_the_real_ct(cases, real_tissue_hu):
    # exports that baked a bone or display window into the values do not keep the tissue order (soft tissue
    # and fat share one value there): they are intensity domains of their own (tested below)
    plain = [c for c in cases if not (c.params["scanner"]["bone_window_hu"] or c.params["scanner"]["display_window"])]
    assert len(plain) >= 9
    cases = plain
    per_case = [_synthetic_tissue_hu(c) for c in cases]
    for case, m in zip(cases, per_case, strict=True):
        assert case.tissue.same_grid(case.ct)
        # every case keeps the real order (a severely osteoporotic spine still outshines its muscles)
        assert m["bone"] > m["soft"] + 60 and m["soft"] > m["fat"] + 60, m
        assert np.isnan(m["air"]) or m["fat"] > m["air"] + 600, m
        hu = case.params["hu"]
        assert hu["cortical"] > hu["wall"] > hu["cancellous"] and hu["cortical"] > hu["posterior"] > hu["cancellous"]
    # the spread of the synthetic medians brackets the real one (domain randomization: wider than real);
    # 10 HU of slack for the 3 mm real scan's partial volume. With the ends of the HU ranges set, two cases
    # give the spread's ends whatever the random draws of the shared cases were
    lows, highs = {}, {}
    for name in ("hu_cortical", "hu_cancellous", "hu_muscle", "hu_organ", "hu_fat", "hu_air", "wall_fraction",
                 "posterior_fraction"):
        lo, hi = getattr(small_config(), name)
        lows[name], highs[name] = (lo, lo), (hi, hi)
    quiet = dict(p_bone_window=0.0, p_display_window=0.0, p_sclerotic=0.0, p_contrast=0.0, p_clip_low=0.0)
    ends = [_synthetic_tissue_hu(generate(3, small_config(**quiet, **cfg))) for cfg in (lows, highs)]
    for tissue, real in real_tissue_hu.items():
        if tissue == "body":
            continue
        vals = [m[tissue] for m in per_case + ends if not np.isnan(m[tissue])]
        assert len(vals) >= 3, tissue
        assert min(vals) - 10 <= real <= max(vals) + 10, (tissue, real, vals)
    # and it is a spread, not one value
    assert np.ptp([m["bone"] for m in per_case]) > 80


def test_baked_windows_are_what_a_hospital_export_gives():
    """Bone-window exports: nothing between the fill value and the threshold; display windows: values
    clipped to the window on 256 or 4096 levels, bone saturated at the window's top."""
    cfg = small_config(p_bone_window=0.5, p_display_window=0.5, p_clip_low=0.0, p_fov_circle=0.0)
    seen = set()
    for seed in range(6):
        case = generate(seed, cfg)
        hu = case.ct.array.astype(float)
        post = case.params["scanner"]
        if post["bone_window_hu"]:
            thr, fill = post["bone_window_hu"]
            assert not ((hu < thr - 1) & (hu != fill)).any()
            seen.add("bone")
        elif post["display_window"]:
            width, level, steps = post["display_window"]
            assert hu.min() >= round(level - width / 2) - 1 and hu.max() <= round(level + width / 2) + 1
            assert len(np.unique(hu)) <= steps
            seen.add("display")
    assert seen == {"bone", "display"}


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
        # resampling alone costs Dice on small vertebrae: seed 21 is a cervical scan whose rotated grid
        # has 2.6 mm voxels (0.83 with the v2 shape library); a wrong orientation would give near 0
        assert 2 * (fa & fb).sum() / (fa.sum() + fb.sum()) > 0.8
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


def test_contrast_adds_bright_blood_beside_the_column_and_changes_nothing_else():
    plain = small_config(p_contrast=0.0, fov_modes=("thoracolumbar",), fov_weights=(1.0,))
    enhanced = replace(plain, p_contrast=1.0, hu_contrast=(400.0, 400.0))
    a, b = generate(5, plain), generate(5, enhanced)
    for x, y in ((a.labels, b.labels), (a.lesions, b.lesions), (a.ribs, b.ribs)):
        assert np.array_equal(x.array, y.array)  # the anatomy is the same case, seed for seed
    assert not (a.tissue.array == T.VESSEL).any()
    vessel = b.tissue.array == T.VESSEL
    assert vessel.sum() > 1000 and not (vessel & (b.labels.array > 0)).any()
    core = vessel & np.roll(vessel, 2, 0) & np.roll(vessel, -2, 0) & np.roll(vessel, 2, 2) & np.roll(vessel, -2, 2)
    assert 300 < np.median(b.ct.array[core]) < 500  # 400 HU blood, after blur and noise
    assert a.params["tissue"]["vessels"] is None and b.params["tissue"]["vessels"]["aorta_radius_mm"] > 0
