"""Vertebrae the candidate chain skipped, found from the masks of their neighbours (`inference.column.gaps`)."""

from __future__ import annotations

import numpy as np
import pytest

from inference.column import missed_vertebrae
from inference.volume import Volume

PITCH = 28  # mm (1 mm voxels): a 20 mm body and an 8 mm disc, as in the lower thoracic column
BODY = 20


def _column(n: int = 7, body_hu: float = 250.0, disc_hu: float = 80.0) -> tuple[Volume, list[np.ndarray]]:
    """A straight column of ``n`` cylindrical bodies (radius 15 mm) along S-I in soft tissue, 1 mm voxels;
    the bodies' centres (LPS), head to foot."""
    size = n * PITCH + 20
    k, j, i = np.mgrid[0:size, 0:48, 0:48]
    inside = (j - 24) ** 2 + (i - 24) ** 2 <= 15 ** 2
    z = (k - 10) % PITCH
    body = inside & (k >= 10) & (k < 10 + n * PITCH) & (z < BODY)
    hu = np.where(body, body_hu, np.where(inside & (k >= 10) & (k < 10 + n * PITCH), disc_hu, 0.0)).astype(np.int16)
    ct = Volume(hu, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    centres = [np.array([24.0, 24.0, 10 + m * PITCH + BODY / 2]) for m in range(n)][::-1]
    return ct, centres


def _masks(ct: Volume, centres: list[np.ndarray], which: list[int], grow: int = 0) -> Volume:
    """Masks (ids 1, 2, …) of the bodies at ``centres[which]``, each ``grow`` mm taller at both ends."""
    lab = np.zeros(ct.array.shape, np.uint8)
    k, j, i = np.mgrid[0:lab.shape[0], 0:lab.shape[1], 0:lab.shape[2]]
    for tag, m in enumerate(which, start=1):
        zc = centres[m][2]
        lab[(np.abs(k - zc) <= BODY / 2 + grow) & ((j - 24) ** 2 + (i - 24) ** 2 <= 15 ** 2)] = tag
    return Volume(lab, ct.spacing, ct.origin)


def test_every_other_vertebra_skipped_is_found_between_its_neighbours():
    ct, centres = _column()
    kept = [0, 2, 4, 6]
    missed = missed_vertebrae(ct, _masks(ct, centres, kept), np.array([centres[m] for m in kept]))
    assert [n for n, _ in missed] == [0, 1, 2]
    for (n, point), m in zip(missed, (1, 3, 5), strict=True):
        assert np.linalg.norm(point - centres[m]) < 4.0, (n, point, centres[m])


def test_a_whole_column_and_its_discs_are_left_alone():
    ct, centres = _column()
    every = list(range(7))
    assert missed_vertebrae(ct, _masks(ct, centres, every), np.array(centres)) == []
    # masks a little short of their endplates leave a 14 mm stretch: still a disc
    assert missed_vertebrae(ct, _masks(ct, centres, every, grow=-3), np.array(centres)) == []


@pytest.mark.parametrize("body_hu", [60.0, 0.0])
def test_a_long_stretch_without_bone_is_not_a_vertebra(body_hu):
    """A gap in the column without bone (soft tissue, or air beyond a cut) adds nothing."""
    ct, centres = _column(body_hu=body_hu)
    kept = [0, 2]
    assert missed_vertebrae(ct, _masks(ct, centres, kept), np.array([centres[m] for m in kept])) == []


def test_two_vertebrae_skipped_in_a_row_give_one_point_per_round():
    """Two missing between neighbours: one point, in the unclaimed stretch; the pipeline's second round finds
    the other once the first has its mask."""
    ct, centres = _column()
    missed = missed_vertebrae(ct, _masks(ct, centres, [0, 3]), np.array([centres[0], centres[3]]))
    assert len(missed) == 1
    z = missed[0][1][2]
    assert centres[2][2] - BODY / 2 - 8 <= z <= centres[1][2] + BODY / 2 + 8
    second = missed_vertebrae(ct, _masks(ct, centres, [0, 1, 3]), np.array([centres[m] for m in (0, 1, 3)]))
    assert len(second) == 1 and np.linalg.norm(second[0][1] - centres[2]) < 4.0
