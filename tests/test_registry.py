"""The vertebra registry: ids of DESIGN §3 and converters from TotalSegmentator."""

import pytest

from inference import registry


def test_verse_ids_and_order():
    names = [v.name for v in registry.VERTEBRAE]
    assert names[:7] == [f"C{i}" for i in range(1, 8)]
    assert names[names.index("T12") + 1] == "T13" and names[names.index("L5") + 1] == "L6"
    assert names[-1] == "S1"
    assert registry.id_of("C1") == 1 and registry.id_of("T1") == 8 and registry.id_of("T12") == 19
    assert registry.id_of("L1") == 20 and registry.id_of("L5") == 24 and registry.id_of("L6") == 25
    assert registry.id_of("sacrum") == 26 and registry.id_of("t13") == 28
    assert registry.VALID_IDS == frozenset([*range(1, 27), 28])
    assert len({v.color for v in registry.VERTEBRAE}) == len(registry.VERTEBRAE)


def test_regions():
    assert registry.by_id(7).region == "cervical"
    assert registry.by_id(28).region == "thoracic"
    assert registry.by_id(25).region == "lumbar"
    assert registry.by_id(26).region == "sacral"


def test_totalsegmentator_total_ids():
    # TotalSegmentator v2 'total': 25 sacrum, 26 S1, 27 L5 ... 31 L1, 32 T12 ... 43 T1, 44 C7 ... 50 C1
    assert registry.from_totalseg_total(25) == 26 and registry.from_totalseg_total(26) == 26
    assert registry.from_totalseg_total(27) == registry.id_of("L5")
    assert registry.from_totalseg_total(31) == registry.id_of("L1")
    assert registry.from_totalseg_total(32) == registry.id_of("T12")
    assert registry.from_totalseg_total(43) == registry.id_of("T1")
    assert registry.from_totalseg_total(44) == registry.id_of("C7")
    assert registry.from_totalseg_total(50) == registry.id_of("C1")
    assert registry.from_totalseg_total(5) is None  # an organ (liver)


@pytest.mark.parametrize(
    ("filename", "expected"),
    [("vertebrae_C1.nii.gz", 1), ("vertebrae_T12.nii.gz", 19), ("vertebrae_L5.nii", 24), ("sacrum.nii.gz", 26),
     ("vertebrae_S1.nii.gz", 26), ("liver.nii.gz", None), ("vertebrae_X3.nii.gz", None), ("rib_left_1.nii.gz", None)],
)
def test_totalsegmentator_filenames(filename, expected):
    assert registry.from_totalseg_filename(filename) == expected


def test_level_range_and_sorting():
    assert [registry.name_of(i) for i in registry.parse_level_range("T11-L2")] == ["T11", "T12", "T13", "L1", "L2"]
    assert registry.parse_level_range("L2-T11") == registry.parse_level_range("T11-L2")
    assert [registry.name_of(i) for i in registry.sort_ids([26, 20, 28, 19, 1])] == ["C1", "T12", "T13", "L1", "S1"]
    with pytest.raises(KeyError):
        registry.id_of("Q7")


def test_neighbouring_levels_differ_in_hue():
    """Neighbours on the slices and in 3D must be told apart at a glance: their hues are far apart."""
    import colorsys

    hues = [colorsys.rgb_to_hsv(*(c / 255 for c in v.color))[0] for v in registry.VERTEBRAE]
    for a, b in zip(hues, hues[1:], strict=False):
        d = abs(a - b)
        assert min(d, 1 - d) >= 0.15
