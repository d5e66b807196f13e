"""Pedicle screws: automatic proposal, implant sizes, angles and Gertzbein–Robbins breach grading.

A proposal follows the pedicle's own axis (the line through the centres of its cross-sections)
through the isthmus: the entry is where that line leaves the posterior cortex, the tip stops
``TIP_MARGIN_MM`` short of the anterior cortex. Diameter ≈ 80 % of the isthmus width and length
are snapped down to common implant sizes. The breach of any screw (proposed or moved by the user)
is the largest distance of its surface outside the vertebra mask, graded A–E; screws entering the
canal and screws of one level that touch each other are reported.

The grade is judged on the mask, so it is as good as the segmentation it comes from. When the CT
is given, a second breach is measured against bone by HU (`cortex_bone`): the mask's core, plus
whatever is brighter than `BONE_HU` within `CT_REACH_MM` of the mask's surface. It catches a
screw in a mask that leaked into soft tissue, and forgives one in bone the mask missed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import registry
from ..volume import Volume
from .geometry import (
    LEFT,
    RIGHT,
    Isthmus,
    LocalMask,
    VertebraFrame,
    find_isthmus,
    local_ct,
    local_mask,
    vertebra_frame,
)

DIAMETERS_MM = tuple(np.round(np.arange(4.0, 8.51, 0.5), 1))
LENGTHS_MM = tuple(range(25, 56, 5))
DIAMETER_FRACTION = 0.8
TIP_MARGIN_MM = 5.0
AIM_LATERAL_FRACTION = 0.3
AIM_ANTERIOR_FRACTION = 0.6
MAX_MEDIAL_DEG = 35.0
MAX_CAUDAL_DEG = 20.0
MAX_ENTRY_DEPTH_MM = 16.0
"""The entry lies at most this far behind the isthmus (further out the line runs along a process)."""
ENTRY_SKIP_MM = 2.0
"""The first millimetres of the shaft sit in the entry hole through the cortex; not graded."""
MIN_BONE_DEPTH_MM = 15.0
"""Below this bone depth along the pedicle axis (entry to the front cortex, less the tip margin) the
mask holds no usable trajectory on that side (a broken or mis-shaped mask): no screw is proposed."""
TOLERANCE_MM = 0.5
"""Distances up to this count as inside (the local mask grid is 0.5 mm)."""
BONE_HU = 200.0
"""Bone by HU: above soft tissue (< 100 HU), at or below cancellous bone (150-400 HU); cortex is brighter."""
CT_REACH_MM = 3.0
"""How far beyond the mask the CT may show bone the segmentation missed."""
CORE_MM = 2.0
"""Mask voxels deeper than this inside are bone whatever their HU (osteoporotic cancellous bone)."""
GRADES = (("A", 0.0), ("B", 2.0), ("C", 4.0), ("D", 6.0), ("E", float("inf")))
"""Gertzbein–Robbins: A no breach, B < 2 mm, C 2–4 mm, D 4–6 mm, E ≥ 6 mm."""
SIDE_NAMES = {LEFT: "left", RIGHT: "right"}


@dataclass
class Screw:
    """One pedicle screw, LPS mm. ``target_lps`` is the tip."""

    level: str
    side: str
    entry_lps: np.ndarray
    target_lps: np.ndarray
    diameter_mm: float
    length_mm: float
    medial_deg: float = 0.0
    caudal_deg: float = 0.0
    pedicle_width_mm: float | None = None
    breach_mm: float = 0.0
    grade: str = "A"
    enters_canal: bool = False
    collides: bool = False
    notes: list[str] = field(default_factory=list)
    cortex_breach_mm: float | None = None
    """Breach against bone by CT HU (None without a CT); `grade` is from ``breach_mm`` (the mask)."""

    @property
    def cortex_grade(self) -> str | None:
        return None if self.cortex_breach_mm is None else grade_of(self.cortex_breach_mm)

    @property
    def direction(self) -> np.ndarray:
        d = self.target_lps - self.entry_lps
        return d / np.linalg.norm(d)

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "side": self.side,
            "entry_lps": [round(float(v), 3) for v in self.entry_lps],
            "target_lps": [round(float(v), 3) for v in self.target_lps],
            "diameter_mm": self.diameter_mm,
            "length_mm": self.length_mm,
            "medial_angle_deg": round(self.medial_deg, 2),
            "caudal_angle_deg": round(self.caudal_deg, 2),
            "pedicle_width_mm": None if self.pedicle_width_mm is None else round(self.pedicle_width_mm, 2),
            "breach_mm": round(self.breach_mm, 2),
            "breach_grade": self.grade,
            "ct_breach_mm": None if self.cortex_breach_mm is None else round(self.cortex_breach_mm, 2),
            "ct_breach_grade": self.cortex_grade,
            "enters_canal": self.enters_canal,
            "collides_with_other_screw": self.collides,
            "notes": list(self.notes),
        }


@dataclass
class VertebraModel:
    """What grading needs of one vertebra: its fine mask, distance field, frame and canal."""

    level: str
    mask: LocalMask
    frame: VertebraFrame
    outside_mm: np.ndarray
    """Distance (mm) of every local voxel to the nearest mask voxel (0 inside)."""
    canal: np.ndarray
    """Local voxels of the spinal canal (the hole in the mid-slab extruded along the spine)."""
    outside_bone_mm: np.ndarray | None = None
    """Distance (mm) of every local voxel to bone by HU (`cortex_bone`); None without a CT."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Sides (``"left"``/``"right"``) `propose` found no trajectory for, with the reason."""

    @classmethod
    def build(cls, labels: Volume, vertebra_id: int, up_hint: np.ndarray | None = None,
              ct: Volume | sitk.Image | None = None) -> VertebraModel:
        mask = local_mask(labels, vertebra_id)
        frame = vertebra_frame(mask, up_hint)
        outside = ndimage.distance_transform_edt(~mask.inside) * mask.spacing
        outside_bone = None
        if ct is not None:
            bone = cortex_bone(local_ct(ct, mask), mask.inside, outside, mask.spacing)
            outside_bone = ndimage.distance_transform_edt(~bone) * mask.spacing
        canal = np.zeros_like(mask.inside)
        if frame.canal_center is not None:
            # frame coordinates of every local voxel, by broadcasting (the grid is axis-aligned LPS)
            k, j, i = np.ogrid[tuple(slice(0, n) for n in mask.inside.shape)]
            off = mask.origin - frame.canal_center
            x = off @ frame.e_x + mask.spacing * (i * frame.e_x[0] + j * frame.e_x[1] + k * frame.e_x[2])
            y = off @ frame.e_y + mask.spacing * (i * frame.e_y[0] + j * frame.e_y[1] + k * frame.e_y[2])
            canal = (np.hypot(x, y) < 0.85 * frame.canal_radius_mm) & ~mask.inside
        return cls(registry.name_of(vertebra_id), mask, frame, outside, canal, outside_bone)


def cortex_bone(hu: np.ndarray, inside: np.ndarray, outside_mm: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Bone of one vertebra by HU on its local grid: voxels of at least `BONE_HU` within `CT_REACH_MM`
    of the mask (holes filled), plus the mask's core deeper than `CORE_MM`."""
    bright = (hu >= BONE_HU) & (outside_mm <= CT_REACH_MM)
    core = ndimage.distance_transform_edt(inside) * spacing_mm > CORE_MM
    return ndimage.binary_fill_holes(bright | core)


def snap_down(value: float, sizes) -> float:
    below = [s for s in sizes if s <= value + 1e-9]
    return float(below[-1] if below else sizes[0])


def grade_of(breach_mm: float) -> str:
    b = 0.0 if breach_mm <= TOLERANCE_MM else breach_mm
    if b == 0.0:
        return "A"
    return next(name for name, limit in GRADES[1:] if b < limit)


def propose(model: VertebraModel, side: int) -> Screw | None:
    """The proposed screw for one side, graded; None when the pedicle cannot be found in the mask."""
    isthmus = find_isthmus(model.mask, model.frame, side)
    if isthmus is None:
        model.skipped[SIDE_NAMES[side]] = "no pedicle found in the mask"
        return None
    d = _direction(model.frame, isthmus)
    entry = _march(model.mask, isthmus.point, -d, max_mm=MAX_ENTRY_DEPTH_MM)
    exit_front = _march(model.mask, isthmus.point, d)
    bone = float(np.linalg.norm(exit_front - entry))
    depth = bone - TIP_MARGIN_MM
    if depth < MIN_BONE_DEPTH_MM:
        # said as the bone measured (never negative), with what a screw needs: the tip margin included
        model.skipped[SIDE_NAMES[side]] = (
            f"bone depth along the pedicle axis {bone:.0f} mm, {MIN_BONE_DEPTH_MM + TIP_MARGIN_MM:.0f} mm needed: "
            "no trajectory through this mask (check the mask)")
        return None
    notes = []
    length = snap_down(depth, LENGTHS_MM)
    if depth < LENGTHS_MM[0]:
        notes.append(f"bone depth along the axis {depth:.0f} mm is below the shortest screw ({LENGTHS_MM[0]} mm)")
    wanted = DIAMETER_FRACTION * isthmus.width_mm
    diameter = snap_down(wanted, DIAMETERS_MM)
    if wanted < DIAMETERS_MM[0]:
        notes.append(f"pedicle {isthmus.width_mm:.1f} mm wide: narrower than the thinnest screw allows")
    screw = evaluate(model, Screw(model.level, SIDE_NAMES[side], entry, entry + length * d, diameter, float(length),
                                  pedicle_width_mm=isthmus.width_mm, notes=notes))
    # a breach on a coarse or narrow mask: a thinner, then a shorter screw of the same trajectory
    while screw.grade not in "AB" and screw.diameter_mm > DIAMETERS_MM[0]:
        screw = evaluate(model, replace(screw, diameter_mm=screw.diameter_mm - 0.5))
    while screw.grade not in "AB" and screw.length_mm > LENGTHS_MM[0]:
        shorter = evaluate(model, replace(screw, length_mm=screw.length_mm - 5,
                                          target_lps=screw.entry_lps + (screw.length_mm - 5) * d))
        if shorter.breach_mm >= screw.breach_mm:
            break
        screw = shorter
    if screw.diameter_mm < diameter or screw.length_mm < length:
        screw.notes.append(f"reduced from {diameter:g} x {length:g} mm to fit the mask")
    return screw


def evaluate(model: VertebraModel, screw: Screw) -> Screw:
    """Angles, breach (mm and grade) and canal entry of ``screw`` against ``model`` (in place; returned)."""
    f = model.frame
    d = screw.direction
    side = LEFT if screw.side == "left" else RIGHT
    dx, dy, dz = d @ f.e_x, d @ f.e_y, d @ f.e_z
    screw.medial_deg = float(np.degrees(np.arctan2(-side * dx, -dy)))
    screw.caudal_deg = float(np.degrees(np.arctan2(-dz, -dy)))
    pts = _shaft_points(screw)
    idx = model.mask.to_index(pts)
    dist = ndimage.map_coordinates(model.outside_mm, idx.T, order=1, mode="constant", cval=99.0)
    screw.breach_mm = float(max(dist.max(), 0.0))
    screw.grade = grade_of(screw.breach_mm)
    if model.outside_bone_mm is not None:
        by_hu = ndimage.map_coordinates(model.outside_bone_mm, idx.T, order=1, mode="constant", cval=99.0)
        screw.cortex_breach_mm = float(max(by_hu.max(), 0.0))
    inside_grid = np.all((idx >= 0) & (idx <= np.array(model.canal.shape) - 1), axis=1)
    near = np.rint(idx[inside_grid]).astype(int)
    screw.enters_canal = bool(model.canal[tuple(near.T)].any()) if len(near) else False
    return screw


def screws_collide(a: Screw, b: Screw) -> bool:
    """Whether two screws (cylinders) overlap: their axes come closer than the sum of the radii."""
    return _segment_distance(a.entry_lps, a.target_lps, b.entry_lps, b.target_lps) < (a.diameter_mm
                                                                                       + b.diameter_mm) / 2


def plan_vertebra(labels: Volume, vertebra_id: int, up_hint: np.ndarray | None = None,
                  ct: Volume | sitk.Image | None = None) -> tuple[VertebraModel, list[Screw]]:
    """Both screws of one level, graded (and by CT HU when ``ct`` is given), their collision checked."""
    model = VertebraModel.build(labels, vertebra_id, up_hint, ct)
    screws = [s for s in (propose(model, LEFT), propose(model, RIGHT)) if s is not None]
    if len(screws) == 2 and screws_collide(*screws):
        for s in screws:
            s.collides = True
    return model, screws


def _direction(frame: VertebraFrame, isthmus: Isthmus) -> np.ndarray:
    """Through the isthmus towards the body's front-centre on the same side of the midline.

    The aim point lies ``AIM_LATERAL_FRACTION`` of the body's half-width lateral of its centre and
    ``AIM_ANTERIOR_FRACTION`` of its half-depth in front of it, so the two screws converge without
    crossing. The pedicle's own axis (the line through its
    cross-sections) is taken instead when the fit is long enough and its angles are anatomically
    plausible (medial 0–``MAX_MEDIAL_DEG``°, caudal within ±``MAX_CAUDAL_DEG``°); on coarse masks,
    where pedicle, body and processes merge, it rarely is.
    """
    side = 1.0 if isthmus.side > 0 else -1.0
    aim_point = (frame.body_center + side * AIM_LATERAL_FRACTION * frame.body_half_width_mm * frame.e_x
                 - AIM_ANTERIOR_FRACTION * frame.body_half_depth_mm * frame.e_y)
    aim = aim_point - isthmus.point
    aim = aim / np.linalg.norm(aim)
    a = isthmus.axis
    medial = np.degrees(np.arctan2(-side * (a @ frame.e_x), -(a @ frame.e_y)))
    caudal = np.degrees(np.arctan2(-(a @ frame.e_z), -(a @ frame.e_y)))
    if isthmus.n_sections >= 5 and 0.0 <= medial <= MAX_MEDIAL_DEG and abs(caudal) <= MAX_CAUDAL_DEG:
        return a
    return aim


def _march(mask: LocalMask, start: np.ndarray, d: np.ndarray, step: float = 0.25, gap_mm: float = 1.5,
           max_mm: float = 120.0) -> np.ndarray:
    """Last point inside the mask along ``d`` from ``start``. Gaps up to ``gap_mm``, or up to one voxel of
    the label map the mask came from when that is coarser (a 3 mm map loses thin bone to sampling), are
    crossed."""
    gap_mm = max(gap_mm, mask.source_spacing_mm)
    t = np.arange(0.0, max_mm, step)
    pts = start + t[:, None] * d
    inside = mask.contains(pts)
    last, run = 0, 0
    for n, flag in enumerate(inside):
        if flag:
            last, run = n, 0
        else:
            run += 1
            if run * step > gap_mm:
                break
    return pts[last]


def _shaft_points(screw: Screw, n_around: int = 16, step: float = 0.5) -> np.ndarray:
    d = screw.direction
    u = np.cross(d, [0.0, 0.0, 1.0] if abs(d[2]) < 0.9 else [1.0, 0.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(d, u)
    r = screw.diameter_mm / 2
    t = np.arange(ENTRY_SKIP_MM, screw.length_mm + 1e-6, step)
    ang = np.linspace(0, 2 * np.pi, n_around, endpoint=False)
    ring = r * (np.cos(ang)[:, None] * u + np.sin(ang)[:, None] * v)
    axis_pts = screw.entry_lps + t[:, None] * d
    return (axis_pts[:, None, :] + ring[None, :, :]).reshape(-1, 3)


def _segment_distance(p0, p1, q0, q1) -> float:
    """Shortest distance between segments p0–p1 and q0–q1 (sampled finely: robust and simple)."""
    t = np.linspace(0, 1, 101)
    a = p0 + t[:, None] * (p1 - p0)
    b = q0 + t[:, None] * (q1 - q0)
    return float(np.min(np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)))
