"""Ribs seen from bone beside each vertebra (`inference.column.rib_pairs`) and how the naming reads them."""

from __future__ import annotations

import numpy as np

from inference import registry
from inference.column import RibSides, rib_sides
from inference.label import LEVELS, bone_rib_likelihoods, decode, is_anchored, shown_confidence
from inference.volume import Volume

SPACING = 2.0
ORIGIN = (-130.0, -80.0, -60.0)  # LPS mm of voxel (0, 0, 0): x -130..128, y -80..78, z -60..58
UPPER = np.array([0.0, 0.0, 30.0])
LOWER = np.array([0.0, 0.0, -10.0])


def _box(a: np.ndarray, x: tuple[float, float], y: tuple[float, float], z: tuple[float, float], value: int) -> None:
    """Set the voxels whose centres lie in the LPS box to ``value``."""
    lo = [int(np.ceil((v[0] - o) / SPACING)) for v, o in zip((x, y, z), ORIGIN, strict=True)]
    hi = [int(np.floor((v[1] - o) / SPACING)) + 1 for v, o in zip((x, y, z), ORIGIN, strict=True)]
    a[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]] = value


def _column(*, thoracic_upper: bool = True, plate: bool = False) -> tuple[Volume, Volume]:
    """Two vertebrae (bone 400 HU, their masks tags 1 and 2) in soft tissue. The upper one carries a rib on
    each side (a 8 mm rod from its side out to 90 mm); the lower one has transverse processes that its mask
    misses, out to 48 mm. ``plate``: a 20 ml plate of bone beside the lower one, from its side out to 90 mm."""
    ct = np.full((60, 80, 130), 40, np.int16)
    lab = np.zeros(ct.shape, np.uint8)
    for tag, c in ((1, UPPER), (2, LOWER)):
        z = (c[2] - 12.0, c[2] + 12.0)
        _box(ct, (-20, 20), (-15, 15), z, 400)
        _box(lab, (-20, 20), (-15, 15), z, tag)
        _box(ct, (-30, 30), (15, 45), (c[2] - 8, c[2] + 8), 400)
        _box(lab, (-30, 30), (15, 45), (c[2] - 8, c[2] + 8), tag)
    if thoracic_upper:
        _box(ct, (24, 90), (6, 14), (UPPER[2] - 4, UPPER[2] + 4), 700)
        _box(ct, (-90, -24), (6, 14), (UPPER[2] - 4, UPPER[2] + 4), 700)
    _box(ct, (34, 48), (20, 26), (LOWER[2] - 2, LOWER[2] + 2), 500)
    _box(ct, (-48, -34), (20, 26), (LOWER[2] - 2, LOWER[2] + 2), 500)
    if plate:
        _box(ct, (-90, -24), (-10, 40), (LOWER[2] - 3, LOWER[2] + 3), 700)
    grid = {"spacing": (SPACING,) * 3, "origin": ORIGIN}
    return Volume(ct, **grid), Volume(lab, **grid)


def _centres() -> dict[int, np.ndarray]:
    return {1: UPPER, 2: LOWER}


def test_ribs_are_seen_beside_the_rib_bearing_vertebra_and_not_beside_transverse_processes():
    ct, lab = _column()
    sides = rib_sides(ct, lab, _centres())
    assert sides[1] == RibSides(True, True) and sides[1].seen
    assert sides[2] == RibSides(False, False) and sides[2].absent and not sides[2].seen


def test_a_bone_window_export_shows_the_same_ribs():
    ct, lab = _column()
    windowed = ct.with_array(np.where(ct.array < 200, 0, ct.array).astype(np.int16))
    sides = rib_sides(windowed, lab, _centres())
    assert sides[1].seen and sides[2].absent


def test_a_plate_of_bone_too_big_for_a_rib_is_not_a_rib():
    """An ilium beside the sacrum, or vessels full of contrast merged with bone."""
    ct, lab = _column(plate=True)
    assert rib_sides(ct, lab, _centres())[2] == RibSides(False, False)


def test_a_side_the_scan_does_not_reach_is_unknown_not_no_rib():
    ct, lab = _column()
    keep = (slice(0, 60), slice(0, 80), slice(0, 90))  # x from -130 to 48 mm: the left side is cut at 48 mm
    sides = rib_sides(ct.crop(keep), lab.crop(keep), _centres())
    assert sides[1] == RibSides(None, True)  # the left rib does not reach the edge of what is seen
    assert sides[2] == RibSides(None, False)


def test_no_rib_needs_the_span_a_rib_descends_through_in_view():
    """A thin slab: the lower vertebra's rib, if it had one, could leave the scan before reaching out."""
    ct, lab = _column()
    keep = (slice(13, 60), slice(0, 80), slice(0, 130))  # z from -34 mm: 16 mm below the lower centre
    sides = rib_sides(ct.crop(keep), lab.crop(keep), _centres())
    assert sides[1] == RibSides(True, True)
    assert sides[2] == RibSides(None, None)


def test_two_centres_closer_than_a_vertebra_tell_nothing_about_ribs():
    """Two detections of one vertebra: one would take its rib and the other, named a level lower, none."""
    ct, lab = _column()
    sides = rib_sides(ct, lab, {1: UPPER, 3: UPPER - [0.0, 0.0, 8.0], 2: LOWER})
    assert sides[1] == sides[3] == RibSides(None, None)
    assert sides[2] == RibSides(False, False)


def test_no_vertebra_no_ribs():
    ct, lab = _column()
    assert rib_sides(ct, lab, {}) == {}


def _votes(p: dict[str, float]) -> np.ndarray:
    e = np.full(len(LEVELS), 1e-3)
    for name, v in p.items():
        e[LEVELS.index(registry.id_of(name))] = v
    return e


def test_a_rib_seen_beside_the_top_vertebra_renames_a_column_voted_one_level_low():
    """The small crop of the sample CT: the localizer votes L1, L2, L3 where the vertebrae are T12, L1, L2;
    ribs are seen beside the top one only."""
    e = np.array([_votes({"L1": 0.6, "T12": 0.3}), _votes({"L2": 0.6, "L1": 0.3}), _votes({"L3": 0.6, "L2": 0.3})])
    names = [registry.name_of(int(i)) for i in decode(e).ids]
    assert names == ["L1", "L2", "L3"]
    seen = [RibSides(True, True), RibSides(False, False), RibSides(False, False)]
    cued = decode(e, cues=bone_rib_likelihoods(seen))
    assert [registry.name_of(int(i)) for i in cued.ids] == ["T12", "L1", "L2"]
    _, anchored = shown_confidence(cued.ids, cued.confidence, bone_ribs=seen)
    assert anchored


def test_no_rib_seen_weighs_nothing():
    e = np.array([_votes({"T11": 0.6, "T12": 0.3}), _votes({"T12": 0.6, "L1": 0.3})])
    unseen = [RibSides(False, False), None]
    assert (bone_rib_likelihoods(unseen) == 1).all()
    assert (decode(e, cues=bone_rib_likelihoods(unseen)).ids == decode(e).ids).all()


def test_the_last_rib_anchor_from_bone_needs_a_rib_above_and_none_below_in_view():
    names = ["T12", "L1", "L2"]
    rib, none, unknown = RibSides(True, None), RibSides(False, False), RibSides(None, False)
    assert is_anchored(names, bone_ribs={"T12": rib, "L1": none, "L2": none})
    assert not is_anchored(names, bone_ribs={"T12": none, "L1": none, "L2": none})
    assert not is_anchored(names, bone_ribs={"T12": rib, "L1": rib, "L2": none})
    assert not is_anchored(names, bone_ribs={"T12": rib, "L1": unknown, "L2": none})
    assert is_anchored(["T13", "L1"], bone_ribs={"T13": rib, "L1": none})
    # either cue may show the last rib: the segmenter's rib channel still counts where bone does not
    assert is_anchored(names, {"T12": 2.0, "L1": 0.0, "L2": 0.0}, {"T12": none, "L1": none, "L2": none})


def test_the_ribs_seen_travel_in_vertebrae_json_and_back():
    from inference.case import Vertebra
    from inference.export.bundle import _vertebra_of

    v = Vertebra(registry.id_of("T12"), np.zeros(3), localizer_center_lps=np.zeros(3),
                 ribs_seen={"left": True, "right": None})
    record = v.to_json()
    assert record["ribs_seen"] == {"left": True, "right": None}
    assert _vertebra_of(record).ribs_seen == {"left": True, "right": None}
