"""Pedicle screw planning on synthetic vertebrae with known pedicle axes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from inference import registry
from inference.planning import evaluate, plan_vertebra, screws_collide
from inference.volume import Volume

MEDIAL_DEG = 15.0
PEDICLE_RADIUS = 3.7
L3 = registry.id_of("L3")


def _vertebra(medial_deg: float = MEDIAL_DEG, caudal_deg: float = 0.0, spacing: float = 0.5) -> Volume:
    """A lumbar-like vertebra (body, two pedicles, lamina, spinous process) around the LPS origin.

    Canal centre at the origin; pedicle axes through (±12.5, 0, 0) converging ``medial_deg`` toward
    the midline and tilted ``caudal_deg`` (tip below entry), radius ``PEDICLE_RADIUS`` mm.
    """
    n = int(110 / spacing)
    origin = np.array([-40.0, -55.0, -25.0])
    shape = (int(50 / spacing), n, int(80 / spacing))  # k (S), j (P), i (L)
    k, j, i = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    x, y, z = origin[0] + spacing * i, origin[1] + spacing * j, origin[2] + spacing * k
    # a kidney-like body: round in front, its back wall flat and as wide as the pedicles' feet
    body = ((x**2 + (y + 25) ** 2 < 18**2) | ((np.abs(x) <= 18) & (y >= -25) & (y <= -7))) & (np.abs(z) <= 12)
    r = np.hypot(x, y)
    lamina = (r >= 8) & (r <= 13) & (y > 2) & (np.abs(z) <= 8)
    spinous = (np.abs(x) <= 3) & (y >= 10) & (y <= 40) & (np.abs(z) <= 8)
    mask = body | lamina | spinous
    a, c = np.radians(medial_deg), np.radians(caudal_deg)
    for s in (+1, -1):
        d = np.array([-s * np.sin(a) * np.cos(c), -np.cos(a) * np.cos(c), -np.sin(c)])
        p0 = np.array([s * 12.5, 0.0, 0.0])
        rel = np.stack([x - p0[0], y - p0[1], z - p0[2]], axis=-1)
        t = rel @ d
        dist = np.linalg.norm(rel - t[..., None] * d, axis=-1)
        mask |= (dist <= PEDICLE_RADIUS) & (t >= -14) & (t <= 14)  # into the facets behind
    mask &= ~(r < 8) | (y < -7)  # the canal stays open
    return Volume(np.where(mask, L3, 0).astype(np.uint8), (spacing,) * 3, tuple(origin))


@pytest.fixture(scope="module")
def planned():
    return plan_vertebra(_vertebra(), L3)


def test_proposal_follows_the_pedicle_axis_with_fitting_sizes(planned):
    model, screws = planned
    assert sorted(s.side for s in screws) == ["left", "right"]
    for s in screws:
        assert abs(s.medial_deg - MEDIAL_DEG) <= 3.0, s.to_json()
        assert abs(s.caudal_deg) <= 3.0, s.to_json()
        # the widest cylinder along the axis is the 7.4 mm pedicle (a little less on the 0.5 mm grid), less
        # 0.5 mm of cortex each side, snapped down to the catalogue
        assert s.diameter_mm == 6.0 and s.diameter_mm <= s.pedicle_width_mm - 1.0, s.to_json()
        # 80 % of the bone along the trajectory (55-60 mm, entry to the front cortex), snapped down to 5 mm steps
        assert 54.0 <= s.bone_mm <= 60.0 and s.length_mm == 5 * (0.8 * s.bone_mm // 5), s.to_json()
        assert s.grade == "A" and not s.enters_canal, s.to_json()
        side = 1 if s.side == "left" else -1
        assert side * s.entry_lps[0] > 12 and s.entry_lps[1] > 5  # posterior-lateral entry
        assert s.target_lps[1] < -25  # the tip lies in the body
    assert not screws_collide(*screws) and not any(s.collides for s in screws)


def test_straight_forward_screws_are_parallel_to_the_endplate_and_anatomical_ones_follow_the_pedicles():
    """Pedicles tilted 12° caudally: by default both screws run parallel to the superior endplate (caudal 0),
    with the same medial angle; `anatomical` tilts both alike, along the pedicles (5° search steps)."""
    v = _vertebra(medial_deg=10.0, caudal_deg=12.0)
    _, straight = plan_vertebra(v, L3)
    _, anatomical = plan_vertebra(v, L3, trajectory="anatomical")
    assert len(straight) == len(anatomical) == 2
    for s in straight:
        assert abs(s.caudal_deg) < 0.5, s.to_json()
    for s in anatomical:
        assert abs(s.medial_deg - 10.0) <= 3.0 and abs(s.caudal_deg - 12.0) <= 3.0, s.to_json()
        assert s.grade == "A", s.to_json()
    for pair in (straight, anatomical):
        assert abs(pair[0].medial_deg - pair[1].medial_deg) < 0.5 and abs(pair[0].caudal_deg - pair[1].caudal_deg) < 0.5


def test_the_endplate_sets_the_frame_and_one_sided_anatomy_keeps_its_own_angle():
    """The whole vertebra tilted 15° (its endplates with it): straight-forward screws follow the endplate,
    not the scan's axes. A left pedicle 25° medial against a right one at 10°: each keeps its own angle."""
    from scipy.spatial.transform import Rotation

    v = _vertebra()
    rot = Rotation.from_euler("x", 15.0, degrees=True).as_matrix()
    tilted = Volume(v.array, v.spacing, tuple(rot @ np.array(v.origin)), rot)
    _, screws = plan_vertebra(tilted, L3)
    for s in screws:
        assert abs(s.caudal_deg) < 1.0 and abs(s.medial_deg - MEDIAL_DEG) <= 3.0, s.to_json()
        d = s.direction
        assert abs(d @ (rot @ np.array([0.0, 0.0, 1.0]))) < 0.03  # perpendicular to the tilted body axis
    left, right = _vertebra(medial_deg=25.0), _vertebra(medial_deg=10.0)
    x = left.origin[0] + left.spacing[0] * np.arange(left.array.shape[2])
    mixed = left.with_array(np.where(x[None, None, :] > 0, left.array, right.array))
    _, screws = plan_vertebra(mixed, L3)
    angles = {s.side: s.medial_deg for s in screws}
    assert abs(angles["left"] - 25.0) <= 3.0 and abs(angles["right"] - 10.0) <= 3.0, angles


@pytest.mark.parametrize("shift_mm, grade", [(0.0, "A"), (3.0, "C"), (7.5, "E")])
def test_a_screw_moved_medially_breaches(planned, shift_mm, grade):
    model, screws = planned
    s = screws[0]
    side = 1 if s.side == "left" else -1
    move = -side * shift_mm * model.frame.e_x
    moved = evaluate(model, dataclasses.replace(s, entry_lps=s.entry_lps + move, target_lps=s.target_lps + move,
                                                notes=[]))
    assert moved.grade == grade, moved.to_json()
    assert moved.enters_canal == (shift_mm >= 3.0)


def test_breach_by_hu_sees_the_bone_a_leaky_mask_hides():
    """The CT shows the true vertebra (400 HU in 40 HU soft tissue); the mask leaked 2 mm all round.
    On the mask a screw 3 mm medial looks fine; against bone by HU it breaches, as on the true mask."""
    from scipy import ndimage

    from inference.planning.screws import VertebraModel

    true = _vertebra(spacing=1.0)
    ct = true.with_array(np.where(true.array > 0, 400, 40).astype(np.int16))
    leaky = true.with_array(np.where(ndimage.binary_dilation(true.array > 0, iterations=2), L3, 0).astype(np.uint8))
    exact = VertebraModel.build(true, L3, ct=ct)
    model = VertebraModel.build(leaky, L3, ct=ct)
    _, screws = plan_vertebra(true, L3, ct=ct)
    s = screws[0]
    assert s.cortex_grade == s.grade == "A"  # a good screw is good either way
    side = 1 if s.side == "left" else -1
    move = -side * 3.0 * model.frame.e_x
    moved = dataclasses.replace(s, entry_lps=s.entry_lps + move, target_lps=s.target_lps + move, notes=[])
    on_leaky = evaluate(model, dataclasses.replace(moved))
    on_true = evaluate(exact, dataclasses.replace(moved))
    assert on_leaky.grade in "AB" and on_leaky.cortex_grade not in "AB"
    assert abs(on_leaky.cortex_breach_mm - on_true.breach_mm) < 1.0


def test_without_a_ct_there_is_no_breach_by_hu(planned):
    _, screws = planned
    assert all(s.cortex_breach_mm is None and s.cortex_grade is None and s.to_json()["ct_breach_grade"] is None
               for s in screws)


def test_crossing_screws_collide(planned):
    model, screws = planned
    left, right = sorted(screws, key=lambda s: s.side)
    crossing = dataclasses.replace(right, target_lps=left.target_lps.copy())
    assert screws_collide(left, crossing)


def test_plan_command_adds_trajectories_to_a_bundle(tmp_path, capsys):
    import json

    from inference.case import case_from_labels
    from inference.cli import main
    from inference.export import write_bundle
    from inference.export.formats import sha256_file

    bundle = tmp_path / "bundle"
    write_bundle(bundle, case_from_labels(_vertebra(spacing=1.0)))
    assert main(["plan", str(bundle), "--levels", "L1-L4"]) == 0
    out = capsys.readouterr().out
    assert "2 screws planned" in out and "names no CT" in out and "graded on the mask only" in out
    doc = json.loads((bundle / "trajectories.json").read_text())
    assert doc["coordinate_system"] == "LPS" and [s["level"] for s in doc["screws"]] == ["L3", "L3"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    files = {f["path"]: f["sha256"] for f in manifest["files"]}
    for name in ("trajectories.json", "trajectories.mrk.json", "labels.nii.gz"):
        assert files[name] == sha256_file(bundle / name)
    assert manifest["plan"]["screws"] == 2
    markups = json.loads((bundle / "trajectories.mrk.json").read_text())["markups"]
    assert [m["type"] for m in markups] == ["Line", "Line"] and markups[0]["coordinateSystem"] == "LPS"
    # a second plan needs --force; nothing changes without it
    before = (bundle / "trajectories.json").read_bytes()
    assert main(["plan", str(bundle)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--force" in err[0]
    assert (bundle / "trajectories.json").read_bytes() == before
    assert main(["plan", str(bundle), "--levels", "L9"]) == 2
    assert main(["plan", str(tmp_path / "nothing")]) == 2
    assert "not a SpineNav bundle" in capsys.readouterr().err


def _crop(vol: Volume, k_from: int = 0, j_to: int | None = None) -> Volume:
    """The slab k ≥ k_from, j < j_to of an axis-aligned volume (identity direction)."""
    origin = np.array(vol.origin) + np.array(vol.spacing) * np.array([0, 0, k_from])
    return Volume(vol.array[k_from:, :j_to].copy(), vol.spacing, tuple(origin))


def test_a_vertebra_cut_by_the_scan_is_not_planned_but_a_process_tip_at_the_edge_is_fine():
    from inference.planning.bundle import CUT_AREA_MM2, plan_labels_with_models

    whole = _vertebra(spacing=1.0)
    assert plan_labels_with_models(whole).not_planned == {}
    # the scan ends 5 mm below the pedicles: through the body (~1000 mm² of bone on the edge)
    cut = plan_labels_with_models(_crop(whole, k_from=20))
    assert cut.screws == [] and list(cut.not_planned) == ["L3"]
    assert "cuts L3 across" in cut.not_planned["L3"] and "whole vertebra" in cut.not_planned["L3"]
    # only the spinous process (6 x 16 mm) reaches the posterior edge of a tight field of view
    tip = _crop(whole, j_to=int(55 + 35))
    touching = tip.array[:, -1] == L3
    assert 0 < touching.sum() < CUT_AREA_MM2
    result = plan_labels_with_models(tip)
    assert [s.side for s in result.screws] == ["left", "right"] and result.not_planned == {}


def test_a_side_without_bone_depth_is_not_planned_and_says_why():
    """The body cut away on the left (a broken mask): the left pedicle leads nowhere, so no left
    screw is proposed, the reason is kept, and `plan_bundle`-style callers can report it."""
    from inference.planning.screws import MIN_BONE_DEPTH_MM

    v = _vertebra()
    arr = v.array.copy()
    k, j, i = np.meshgrid(*[np.arange(s) for s in arr.shape], indexing="ij")
    x, y = v.origin[0] + v.spacing[0] * i, v.origin[1] + v.spacing[1] * j
    arr[(x > 2) & (y < -8)] = 0  # the left half of the body gone: nothing in front of the left pedicle
    model, screws = plan_vertebra(v.with_array(arr), L3)
    assert [s.side for s in screws] == ["right"]
    assert "left" in model.skipped and "check the mask" in model.skipped["left"], model.skipped
    assert MIN_BONE_DEPTH_MM > 0


def test_the_march_crosses_a_gap_of_one_source_voxel_but_not_more():
    from inference.planning.geometry import LocalMask
    from inference.planning.screws import _march

    inside = np.zeros((4, 4, 200), bool)
    inside[:, :, :40] = True  # 0-20 mm
    inside[:, :, 45:100] = True  # a 2.5 mm gap, then bone to 50 mm
    fine = LocalMask(inside, np.zeros(3), 0.5)  # the mask is its own source: the gap is real
    coarse = LocalMask(inside, np.zeros(3), 0.5, source_spacing_mm=3.0)  # resampled from a 3 mm label map
    start, d = np.array([1.0, 1.0, 1.0]), np.array([1.0, 0.0, 0.0])
    assert _march(fine, start, d)[0] < 21.0
    assert _march(coarse, start, d)[0] > 49.0
    inside[:, :, 40:52] = False  # a 6 mm gap is missing bone even on a 3 mm map
    assert _march(LocalMask(inside, np.zeros(3), 0.5, source_spacing_mm=3.0), start, d)[0] < 21.0


def test_sizes_come_from_the_catalogue_and_the_manifest_records_it(tmp_path, capsys):
    import json

    from inference.case import case_from_labels
    from inference.cli import main
    from inference.export import write_bundle

    bundle = tmp_path / "bundle"
    write_bundle(bundle, case_from_labels(_vertebra(spacing=1.0)))
    catalogue = tmp_path / "stock.json"
    catalogue.write_text(json.dumps({"diameters_mm": [4.5, 5.5], "lengths_mm": [30, 35]}))
    assert main(["plan", str(bundle), "--catalogue", str(catalogue), "--trajectory", "anatomical"]) == 0
    screws = json.loads((bundle / "trajectories.json").read_text())["screws"]
    assert {s["diameter_mm"] for s in screws} == {5.5} and {s["length_mm"] for s in screws} == {35.0}
    plan = json.loads((bundle / "manifest.json").read_text())["plan"]
    assert plan["trajectory"] == "anatomical"
    assert plan["catalogue"] == {"diameters_mm": [4.5, 5.5], "lengths_mm": [30.0, 35.0]}
    capsys.readouterr()
    for text in ("{", '{"diameters_mm": [5, 4]}', '{"diameters_mm": [5], "colour": "red"}', '{"lengths_mm": [-5]}'):
        catalogue.write_text(text)
        assert main(["plan", str(bundle), "--force", "--catalogue", str(catalogue)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "stock.json" in err[0], err


def test_a_pedicle_narrower_than_the_thinnest_screw_is_not_planned_and_says_why():
    from inference.planning.screws import Catalogue, level_range

    model, screws = plan_vertebra(_vertebra(), L3, catalogue=Catalogue(diameters_mm=(8.5,)))
    assert screws == []
    assert all("narrower than the thinnest screw" in model.skipped[side] for side in ("left", "right"))
    assert level_range("L3") == ((5.5, 7.5), (40.0, 55.0)) and level_range("C5") is None
    with pytest.raises(ValueError, match="ascending"):
        Catalogue(diameters_mm=(5.0, 4.0))


def _grid(v: Volume) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LPS x, y, z of every voxel of an axis-aligned phantom."""
    k, j, i = np.meshgrid(*[np.arange(s) for s in v.array.shape], indexing="ij")
    return (v.origin[0] + v.spacing[0] * i, v.origin[1] + v.spacing[1] * j, v.origin[2] + v.spacing[2] * k)


def test_the_frame_follows_the_plane_of_symmetry_not_a_lopsided_body():
    """An osteophyte on the body's left front pulls the body's centre 3-4 mm to the left, which turns the
    body-to-canal axis about 8° (screws at 20° and 8° before the symmetry search). The mirror plane of the
    whole vertebra still lies on the midline: both screws converge alike along their pedicles."""
    v = _vertebra()
    x, y, z = _grid(v)
    spur = (x - 24) ** 2 + (y + 30) ** 2 + z**2 < 10**2
    model, screws = plan_vertebra(v.with_array(np.where(spur | (v.array > 0), L3, 0).astype(np.uint8)), L3)
    assert abs(np.degrees(np.arcsin(model.frame.e_y[0]))) < 2.0, model.frame.e_y
    assert len(screws) == 2
    for s in screws:
        assert abs(s.medial_deg - MEDIAL_DEG) <= 3.0 and s.grade == "A", s.to_json()
    assert abs(screws[0].medial_deg - screws[1].medial_deg) < 0.5


def test_holes_in_a_mask_are_bone_but_the_canal_stays_open(planned):
    """Unlabelled marrow (a closed cavity), a defect open through the superior endplate and a vein's
    channel from the canal into the body are filled before planning and grading; the canal is not."""
    v = _vertebra()
    x, y, z = _grid(v)
    cavity = (x - 9) ** 2 + (y + 25) ** 2 + z**2 < 5**2
    endplate_defect = ((x + 8) ** 2 + (y + 25) ** 2 < 4**2) & (z > 4)
    vein = (x**2 + (y + 22) ** 2 + (z - 3) ** 2 < 6**2) | ((np.abs(x) < 2) & (y > -22) & (y < -6) & (np.abs(z - 3) < 2))
    holed = v.with_array(np.where(cavity | endplate_defect | vein, 0, v.array).astype(np.uint8))
    model, screws = plan_vertebra(holed, L3)
    assert model.mask.contains(np.array([[9.0, -25.0, 0.0], [-8.0, -25.0, 8.0], [0.0, -22.0, 3.0]])).all()
    assert not model.mask.contains(np.array([[0.0, 0.0, 0.0], [0.0, -4.0, 0.0], [5.0, 2.0, 0.0]])).any()
    _, plain = planned
    for s, p in zip(sorted(screws, key=lambda s: s.side), sorted(plain, key=lambda s: s.side), strict=True):
        assert s.grade == "A" and abs(s.medial_deg - p.medial_deg) <= 2.0, s.to_json()
        assert abs(s.pedicle_width_mm - p.pedicle_width_mm) < 0.3, (s.to_json(), p.to_json())
    s = screws[0]
    move = -(1 if s.side == "left" else -1) * 7.5 * model.frame.e_x  # into the canal, as in the test above
    moved = evaluate(model, dataclasses.replace(s, entry_lps=s.entry_lps + move, target_lps=s.target_lps + move))
    assert moved.enters_canal and moved.grade == "E", moved.to_json()


def test_the_medial_angle_keeps_to_the_levels_usual_range_where_the_pedicle_allows():
    """L3 expects 5-25° (Zindrick et al.): a pedicle at 3° gets screws at the range's edge, still grade A;
    a pedicle straight forward (0°), too narrow to turn, keeps its axis and says so."""
    _, near = plan_vertebra(_vertebra(medial_deg=3.0), L3)
    assert len(near) == 2
    for s in near:
        assert 5.0 <= s.medial_deg <= 8.0 and s.grade == "A" and not s.notes, s.to_json()
    _, straight = plan_vertebra(_vertebra(medial_deg=0.0), L3)
    assert len(straight) == 2
    for s in straight:
        assert abs(s.medial_deg) < 1.0 and any("outside the usual 5–25° at L3" in n for n in s.notes), s.to_json()


def test_body_centres_come_from_the_shape_when_no_subregion_map_is_given():
    """The phantom's body is a disc of radius 18 mm at y = -25 with a 18 mm wide block behind it up to the
    canal: the centroid of the mask in front of the canal lies on the midline, 20-25 mm in front of the
    canal's centre; a vertebra without a canal (a block) gets none."""
    from inference.planning.geometry import body_centers_from_shape

    v = _vertebra(spacing=1.0)
    block = np.zeros_like(v.array)
    block[40:45, 10:20, 10:20] = registry.id_of("L4")
    both = v.with_array(np.maximum(v.array, block))
    centres = body_centers_from_shape(both)
    assert set(centres) == {L3}
    x, y, z = centres[L3]
    assert abs(x) < 1.0 and -25.0 < y < -19.0 and abs(z) < 1.0, centres[L3]


def test_a_straight_screw_reads_zero_degrees_not_minus_zero(planned):
    """Angles within rounding of 0 are written 0.0 (the report and the bundle), never -0.0."""
    _, screws = planned
    s = dataclasses.replace(screws[0], caudal_deg=-1e-9, medial_deg=-0.001)
    record = s.to_json()
    assert str(record["caudal_angle_deg"]) == "0.0" and str(record["medial_angle_deg"]) == "0.0"
