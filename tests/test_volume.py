"""Volume geometry: index ↔ LPS transforms, SimpleITK round trip, grid comparison."""

import numpy as np
import pytest

from inference.volume import Volume


def _oblique_direction() -> np.ndarray:
    a, b = np.deg2rad(20), np.deg2rad(-35)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx @ np.diag([1, -1, -1])  # includes a flip: determinant +1, axes reversed


@pytest.fixture
def vol() -> Volume:
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # [k, j, i]
    return Volume(arr, spacing=(0.7, 0.8, 2.5), origin=(10.0, -20.0, 30.0), direction=_oblique_direction())


def test_size_is_ijk(vol):
    assert vol.size == (6, 5, 4)


def test_index_lps_round_trip(vol):
    ijk = np.array([[0, 0, 0], [5, 4, 3], [1.5, 2.25, 0.5]])
    back = vol.lps_to_index(vol.index_to_lps(ijk))
    np.testing.assert_allclose(back, ijk, atol=1e-9)
    np.testing.assert_allclose(vol.index_to_lps(np.zeros((1, 3)))[0], vol.origin)


def test_matches_simpleitk(vol):
    img = vol.to_sitk()
    for ijk in [(0, 0, 0), (5, 4, 3), (2, 1, 3)]:
        np.testing.assert_allclose(vol.index_to_lps(np.array([ijk]))[0], img.TransformIndexToPhysicalPoint(ijk))
    assert img[2, 1, 3] == vol.array[3, 1, 2]  # sitk indexes (i, j, k), numpy [k, j, i]
    again = Volume.from_sitk(img)
    assert again.same_grid(vol)
    np.testing.assert_array_equal(again.array, vol.array)


def test_same_grid_tolerance(vol):
    moved = Volume(vol.array, vol.spacing, tuple(np.add(vol.origin, (0, 0, 0.01))), vol.direction)
    assert not moved.same_grid(vol)
    assert moved.same_grid(vol, tol_mm=0.02)
    other_size = Volume(vol.array[:-1], vol.spacing, vol.origin, vol.direction)
    assert not other_size.same_grid(vol)


def test_with_array_keeps_geometry(vol):
    labels = vol.with_array(np.zeros(vol.array.shape, np.uint8), kind="labels")
    assert labels.same_grid(vol) and labels.metadata["kind"] == "labels"
    with pytest.raises(ValueError):
        vol.with_array(np.zeros((2, 2, 2)))


def test_rejects_bad_construction():
    with pytest.raises(ValueError):
        Volume(np.zeros((3, 3)), (1, 1, 1), (0, 0, 0))
    with pytest.raises(ValueError):
        Volume(np.zeros((3, 3, 3)), (1, 0, 1), (0, 0, 0))


def test_physical_bounds_of_flipped_grid():
    v = Volume(np.zeros((3, 4, 5)), (1.0, 2.0, 3.0), (0.0, 0.0, 0.0), np.diag([-1.0, -1.0, 1.0]))
    lo, hi = v.physical_bounds()
    np.testing.assert_allclose(lo, [-4.0, -6.0, 0.0])
    np.testing.assert_allclose(hi, [0.0, 0.0, 6.0])
    lo, hi = v.extent()  # the voxels' outer halves too
    np.testing.assert_allclose(lo, [-4.5, -7.0, -1.5])
    np.testing.assert_allclose(hi, [0.5, 1.0, 7.5])


def test_geometry_dict_is_json_ready(vol):
    import json

    d = json.loads(json.dumps(vol.geometry_dict()))
    assert d["coordinate_system"] == "LPS" and d["size"] == [6, 5, 4] and len(d["direction"]) == 9
