"""Pedicle screws: automatic proposal, implant sizes, angles and Gertzbein–Robbins breach grading.

A level's two screws are planned together in the vertebra's own frame (`geometry.vertebra_frame`: the
superior endplate's normal, the plane of left-right symmetry, left-right), on its mask with the holes a
label map leaves inside bone filled (`filled_outside_canal`). Each trajectory runs through the middle
of its pedicle's isthmus: for each medial angle the line with the largest clearance to the mask over the
pedicle and the front of the body (`_best_lines`); of the angles that fit about equally well, those in
the level's expected range (`MEDIAL_EXPECTED_DEG`) first, and of these the one running most centred
along the pedicle, shared by both sides where both allow it (`_symmetric`). Its
caudal angle is 0, parallel to the superior endplate ("straight-forward", the default), or the searched
tilt that fits both pedicles best ("anatomical"), the same for both sides. The entry is where that
line leaves the posterior cortex; the length is `LENGTH_FRACTION` of the bone along it (entry to the
anterior cortex) and the diameter the isthmus width less `CORTEX_MARGIN_MM` on each side, both snapped
down to the hospital's catalogue (`Catalogue`) and bounded by level-typical ranges (`LEVEL_RANGES`).
The breach of any screw (proposed or moved by the user) is the largest distance of its surface outside
the vertebra mask in the pedicle and the body (`evaluate`), graded A–E; screws entering the canal and
screws of one level that touch each other are reported.

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
    LocalMask,
    VertebraFrame,
    local_ct,
    local_mask,
    vertebra_frame,
)

DIAMETERS_MM = (4.0, 4.5, 5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.5)
"""Default catalogue diameters: those of a common polyaxial pedicle screw system (`Catalogue` changes them)."""
LENGTHS_MM = tuple(float(v) for v in range(25, 56, 5))
"""Default catalogue lengths (5 mm steps)."""
CORTEX_MARGIN_MM = 0.5
"""Left between the screw and the outer surface of the pedicle on each side at its isthmus (the cortex)."""
LENGTH_FRACTION = 0.8
"""The screw spans this fraction of the bone along its trajectory (entry to the anterior cortex)."""
TIP_MARGIN_MM = 5.0
CLEARANCE_TOLERANCE_MM = 0.25
"""Medial angles whose line keeps within this much of the best clearance to the cortex are acceptable; the
two sides share one where they can (`_symmetric`)."""
MAX_MEDIAL_DEG = 40.0
"""Largest medial angle searched."""
ANGLE_STEP_DEG = 2.0
"""Medial angles searched (0 to `MAX_MEDIAL_DEG`)."""
SEARCH_STEP_MM = 0.5
"""Spacing of the lines searched through the pedicle (left-right and cranio-caudal): a grid of twice this,
then this around its best line."""
PEDICLE_REACH_MM = 16.0
"""Lines are searched from within the canal's wall to this far beyond it, laterally."""
PEDICLE_Z_MM = 14.0
"""… and this far above and below the canal's centre."""
BODY_SPAN_MM = 15.0
"""A line's clearance is also measured this far into the body in front of the pedicle."""
PEDICLE_SPAN_FRACTION, PEDICLE_MIN_HALF_MM = 0.8, 4.0
"""The pedicle, where a line's clearance is measured, spans this fraction of the canal's radius in front of
and behind its centre (at least `PEDICLE_MIN_HALF_MM`)."""
MAX_ANATOMICAL_CAUDAL_DEG = 25.0
"""The anatomical trajectory's caudal angle is bounded to 0..this."""
TRAJECTORIES = ("straight-forward", "anatomical")
TYPICAL_MEDIAL_DEG = {"T1": 27.0, "T2": 20.0, "T3": 15.0, "T4": 12.0, "T5": 10.0, "T6": 9.0, "T7": 8.0, "T8": 7.0,
                      "T9": 6.0, "T10": 5.0, "T11": 3.0, "T12": 0.0, "T13": 0.0, "L1": 11.0, "L2": 12.0, "L3": 14.0,
                      "L4": 18.0, "L5": 30.0, "L6": 30.0}
"""Typical transverse pedicle angles per level (approximate means of Zindrick et al., Spine 1987): a weak
prior (`MEDIAL_PRIOR_MM_PER_DEG`) among the lines that fit a pedicle about equally well."""
MEDIAL_EXPECTED_DEG = {"T1-T3": (10.0, 35.0), "T4-T10": (0.0, 20.0), "T11-T12": (-5.0, 15.0), "L1-L3": (5.0, 25.0),
                       "L4-L5": (10.0, 35.0)}
"""Medial (transverse) angles a spine surgeon expects, from the pedicles' transverse angles measured by
Zindrick et al. (Spine 1987; 2905 pedicles): about 27° at T1 falling to 5–10° in the mid-thoracic spine
and near 0° at T12, then rising from about 11° at L1 to about 30° at L5; the ranges widen those means by
the scatter between people. The planner keeps a level's screws within its range where the pedicle allows
(`RANGE_TOLERANCE_MM`): converging screws are the usual construct (they hold better against pull-out)."""
RANGE_TOLERANCE_MM = 0.5
"""A line within the level's expected medial range is taken over a better-centred one outside it when its
clearance is at most this much smaller than the side's best (the screw at most 1 mm thinner)."""
MEDIAL_PRIOR_MM_PER_DEG = 0.03
"""How much of a line's centring (mean depth in the pedicle, mm) one degree away from the typical angle costs."""
LEVEL_RANGES = (
    # (first level, last level, (smallest, largest diameter), (shortest, longest length)), mm
    ("T1", "T3", (4.0, 5.5), (25.0, 35.0)),
    ("T4", "T9", (4.0, 6.0), (25.0, 40.0)),
    ("T10", "T13", (4.5, 6.5), (30.0, 45.0)),
    ("L1", "L2", (5.0, 7.0), (35.0, 50.0)),
    ("L3", "L6", (5.5, 7.5), (40.0, 55.0)),
)
"""Sizes typical of each region in adult pedicle screw fixation; a proposal stays within its level's range
(and is thinner still where the isthmus is narrower, shorter where the bone is shorter)."""
MAX_ENTRY_DEPTH_MM = 16.0
"""The entry lies at most this far behind the pedicle's posterior end (further out the line runs along a
process)."""
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
    bone_mm: float | None = None
    """Bone along the trajectory when proposed (entry to the anterior cortex, mm)."""
    shaft_breach_mm: float | None = None
    """Breach over the whole shaft from `ENTRY_SKIP_MM`, the entry region behind the pedicle included (the
    grade before 2026-12-07); ``breach_mm`` and the grade leave that region out (`evaluate`)."""

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
            "medial_angle_deg": round(self.medial_deg, 2) + 0.0,  # + 0.0: 0.0, never -0.0
            "caudal_angle_deg": round(self.caudal_deg, 2) + 0.0,
            "pedicle_width_mm": None if self.pedicle_width_mm is None else round(self.pedicle_width_mm, 2),
            "bone_along_trajectory_mm": None if self.bone_mm is None else round(self.bone_mm, 1),
            "breach_mm": round(self.breach_mm, 2),
            "breach_grade": self.grade,
            "shaft_breach_mm": None if self.shaft_breach_mm is None else round(self.shaft_breach_mm, 2),
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
    inside_mm: np.ndarray
    """Distance (mm) of every local voxel inside the mask to the nearest voxel outside (0 outside)."""
    canal: np.ndarray
    """Local voxels of the spinal canal (the hole in the mid-slab extruded along the spine)."""
    outside_bone_mm: np.ndarray | None = None
    """Distance (mm) of every local voxel to bone by HU (`cortex_bone`); None without a CT."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Sides (``"left"``/``"right"``) `plan_pair` found no trajectory for, with the reason."""

    @classmethod
    def build(cls, labels: Volume, vertebra_id: int, up_hint: np.ndarray | None = None,
              ct: Volume | sitk.Image | None = None) -> VertebraModel:
        mask = local_mask(labels, vertebra_id)
        frame = vertebra_frame(mask, up_hint)
        canal = np.zeros_like(mask.inside)
        if frame.canal_center is not None:
            # frame coordinates of every local voxel, by broadcasting (the grid is axis-aligned LPS)
            k, j, i = np.ogrid[tuple(slice(0, n) for n in mask.inside.shape)]
            off = mask.origin - frame.canal_center
            x = off @ frame.e_x + mask.spacing * (i * frame.e_x[0] + j * frame.e_x[1] + k * frame.e_x[2])
            y = off @ frame.e_y + mask.spacing * (i * frame.e_y[0] + j * frame.e_y[1] + k * frame.e_y[2])
            canal = (np.hypot(x, y) < 0.85 * frame.canal_radius_mm) & ~mask.inside
            body = y < -(frame.canal_radius_mm + BODY_FILL_GAP_MM)
            mask = replace(mask, inside=filled_outside_canal(mask.inside, canal, body))
        outside = ndimage.distance_transform_edt(~mask.inside) * mask.spacing
        inside = ndimage.distance_transform_edt(mask.inside) * mask.spacing
        outside_bone = None
        if ct is not None:
            bone = cortex_bone(local_ct(ct, mask), mask.inside, outside, mask.spacing)
            outside_bone = ndimage.distance_transform_edt(~bone) * mask.spacing
        return cls(registry.name_of(vertebra_id), mask, frame, outside, inside, canal, outside_bone)


def _plane(axis: int) -> np.ndarray:
    """Connectivity within one slice across ``axis`` of a local grid ([k, j, i]: S, P, L)."""
    structure = np.zeros((3, 3, 3), bool)
    structure[tuple(1 if a == axis else slice(None) for a in range(3))] = ndimage.generate_binary_structure(2, 1)
    return structure


def _holes(inside: np.ndarray, axis: int) -> np.ndarray:
    """Voxels outside ``inside`` that it encloses within their slice across ``axis`` (one labelling pass)."""
    parts, _ = ndimage.label(~inside, structure=_plane(axis))
    edges = [np.take(parts, i, axis=a) for a in range(3) if a != axis for i in (0, -1)]
    return (parts > 0) & ~np.isin(parts, np.unique(np.concatenate([e.ravel() for e in edges])))


BODY_FILL_GAP_MM = 2.0
"""Holes this far in front of the canal's radius lie in the body, whatever they connect to."""


def filled_outside_canal(inside: np.ndarray, canal: np.ndarray, body: np.ndarray) -> np.ndarray:
    """``inside`` with the holes it encloses filled: on axial slices each hole that does not reach ``canal``
    (the spinal canal stays open) and every hole's part in ``body`` (in front of the canal: a vein's
    channel that joins the canal through the body's back wall); on coronal and sagittal slices every hole
    (the canal is open above and below there). A label map's holes inside a vertebra (unlabelled marrow,
    vein channels, a defect open through one wall) are bone: the cortex a screw must stay within is the
    outer surface."""
    holes = _holes(inside, 0)
    parts, n = ndimage.label(holes, structure=_plane(0))
    keep = np.ones(n + 1, bool)
    keep[0] = False
    keep[np.unique(parts[canal & holes])] = False
    out = inside | keep[parts] | (holes & body)
    for axis in (1, 2):
        out |= _holes(out, axis)
    return out


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


@dataclass(frozen=True)
class Catalogue:
    """The screw sizes a hospital stocks (mm, ascending); proposals are snapped down to them."""

    diameters_mm: tuple[float, ...] = DIAMETERS_MM
    lengths_mm: tuple[float, ...] = LENGTHS_MM

    def __post_init__(self) -> None:
        for name in ("diameters_mm", "lengths_mm"):
            values = getattr(self, name)
            if not values or any(not np.isfinite(v) or v <= 0 for v in values) or list(values) != sorted(set(values)):
                raise ValueError(f"{name} must be positive sizes in ascending order without repeats, got {values!r}")

    def to_json(self) -> dict[str, list[float]]:
        return {"diameters_mm": [float(v) for v in self.diameters_mm],
                "lengths_mm": [float(v) for v in self.lengths_mm]}


CATALOGUE = Catalogue()


def level_range(level: str) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """(diameter range, length range) in mm typical of ``level`` (`LEVEL_RANGES`); None outside T1–L6."""
    try:
        vid = registry.id_of(level)
    except KeyError:
        return None
    for first, last, diameters, lengths in LEVEL_RANGES:
        if vid in registry.parse_level_range(f"{first}-{last}"):
            return diameters, lengths
    return None


def medial_group(level: str) -> str | None:
    """The `MEDIAL_EXPECTED_DEG` group ``level`` falls in, None outside T1–L5 (no range: C, T13, L6)."""
    vid = registry.id_of(level)
    return next((group for group in MEDIAL_EXPECTED_DEG if vid in registry.parse_level_range(group)), None)


def medial_range(level: str) -> tuple[float, float] | None:
    """(smallest, largest) medial angle expected at ``level`` (`MEDIAL_EXPECTED_DEG`), None where none is."""
    group = medial_group(level)
    return None if group is None else MEDIAL_EXPECTED_DEG[group]


def within_medial_range(level: str, medial_deg: float) -> bool:
    """Whether ``medial_deg`` lies in ``level``'s expected range (`medial_range`); True where there is none."""
    expected = medial_range(level)
    return expected is None or expected[0] <= medial_deg <= expected[1]


def plan_pair(model: VertebraModel, trajectory: str = "straight-forward",
              catalogue: Catalogue = CATALOGUE) -> list[Screw]:
    """The level's screws, planned together (see the module docstring), graded; a side without a usable
    pedicle gets its reason in ``model.skipped``."""
    if trajectory not in TRAJECTORIES:
        raise ValueError(f"trajectory must be one of {', '.join(TRAJECTORIES)}, not {trajectory!r}")
    if model.frame.canal_center is None:
        for side in (LEFT, RIGHT):
            model.skipped[SIDE_NAMES[side]] = "no spinal canal found in the mask, so no pedicle either"
        return []
    caudals = (0.0,) if trajectory == "straight-forward" else tuple(np.arange(0.0, MAX_ANATOMICAL_CAUDAL_DEG + 1, 5.0))
    # per caudal angle and side: the best line at each medial angle; the caudal angle whose lines fit best
    options = {c: {side: _best_lines(model, side, c) for side in (LEFT, RIGHT)} for c in caudals}
    caudal = max(caudals, key=lambda c: sum(max((ln.clearance_mm for ln in lines), default=-np.inf)
                                            for lines in options[c].values()))
    lines = options[caudal]
    for side in (LEFT, RIGHT):
        if not lines[side]:
            model.skipped[SIDE_NAMES[side]] = "no line through the pedicle stays inside the mask (check the mask)"
    expected = medial_range(model.level)
    chosen = _symmetric(lines, model.level)
    screws = []
    for side, line in chosen.items():
        screw = _sized(model, side, line, catalogue)
        if screw is not None:
            if not within_medial_range(model.level, line.medial_deg):
                screw.notes.append(f"medial angle {line.medial_deg:.0f}° outside the usual {expected[0]:g}–"
                                   f"{expected[1]:g}° at {model.level}: this pedicle's axis (check it on the CT)")
            screws.append(screw)
    if len(screws) == 2 and screws_collide(*screws):
        for s in screws:
            s.collides = True
    return screws


@dataclass
class _Line:
    """A candidate trajectory along ``direction`` (through a point at the canal centre's antero-posterior
    level); ``clearance_mm`` its smallest depth inside the mask over the pedicle and the front of the
    body, ``bone_mm`` the bone along it (entry to the anterior cortex), ``entry`` where it enters the
    posterior cortex."""

    medial_deg: float
    direction: np.ndarray
    clearance_mm: float
    centred_mm: float
    """Mean depth inside the mask along the pedicle: largest for the line along the pedicle's own axis."""
    entry: np.ndarray
    bone_mm: float

    @property
    def isthmus_mm(self) -> float:
        """Twice the clearance: the widest cylinder around the line that stays inside the pedicle (the
        pedicle's width at its isthmus, across this line), narrower where the body is."""
        return 2.0 * self.clearance_mm


def _best_lines(model: VertebraModel, side: int, caudal_deg: float) -> list[_Line]:
    """For each medial angle (0–`MAX_MEDIAL_DEG`, `ANGLE_STEP_DEG` steps), the line through the pedicle of
    ``side`` with the largest clearance to the mask's surface over the pedicle (the canal's
    antero-posterior extent, lateral of its wall) and `BODY_SPAN_MM` into the body: the line through the
    middle of the isthmus. Lines that leave the mask there, or whose tip would cross the midline, are
    dropped."""
    f = model.frame
    r = max(f.canal_radius_mm, 4.0)
    half = pedicle_back_mm(f)
    ys = np.arange(-half - BODY_SPAN_MM, half + 1e-9, 1.0)  # frame y of the samples along each line
    in_pedicle = ys >= -half
    out = []
    for m in np.arange(0.0, MAX_MEDIAL_DEG + 1e-9, ANGLE_STEP_DEG):
        d = _direction(f, side, float(m), caudal_deg)
        t = ys / float(d @ f.e_y)  # line parameter at each sample's y (d runs forward: d·e_y < 0)
        # coarse grid of crossing points at the canal centre's level, then a finer one around the best
        x0, z0 = side * np.arange(0.6 * r, r + PEDICLE_REACH_MM + 1e-9, 2 * SEARCH_STEP_MM), \
            np.arange(-PEDICLE_Z_MM, PEDICLE_Z_MM + 1e-9, 2 * SEARCH_STEP_MM)
        clearance, depth, base = _line_depths(model, d, t, in_pedicle, *np.meshgrid(x0, z0, indexing="ij"))
        k = int(np.argmax(clearance))
        near = np.arange(-2, 3) * SEARCH_STEP_MM / 2
        xk, zk = (base[k] - f.canal_center) @ f.e_x, (base[k] - f.canal_center) @ f.e_z
        clearance, depth, base = _line_depths(model, d, t, in_pedicle,
                                              *np.meshgrid(xk + near, zk + near, indexing="ij"))
        k = int(np.argmax(clearance))
        if clearance[k] <= 0.0 or depth[k].min() <= 0.0:
            continue  # the line leaves the mask in the pedicle or in the body
        entry = _march(model.mask, base[k], -d, max_mm=MAX_ENTRY_DEPTH_MM + half)
        bone = float(np.linalg.norm(_march(model.mask, base[k], d) - entry))
        tip = entry + LENGTH_FRACTION * bone * d
        if side * float((tip - f.canal_center) @ f.e_x) < 0.0:
            continue  # the screw would cross the midline: its partner's side
        # how centred the line runs along the pedicle
        out.append(_Line(float(m), d, float(clearance[k]), float(depth[k, in_pedicle].mean()), entry, bone))
    return out


def _line_depths(model: VertebraModel, d: np.ndarray, t: np.ndarray, in_pedicle: np.ndarray, x0: np.ndarray,
                 z0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the lines along ``d`` through the canal-level points (``x0``, ``z0``) of the frame, sampled at the
    parameters ``t`` (``in_pedicle`` marks the samples in the pedicle, the rest lie in the body): their
    clearance, the smallest depth inside the mask in the pedicle, or in the body plus `CORTEX_MARGIN_MM` where
    that is smaller (a screw as wide as the pedicle allows must still fit the body); all the depths; the
    points (LPS)."""
    f = model.frame
    base = (f.canal_center + x0.reshape(-1, 1) * f.e_x + z0.reshape(-1, 1) * f.e_z)
    pts = base[:, None, :] + t[None, :, None] * d  # (lines, samples, 3)
    depth = ndimage.map_coordinates(model.inside_mm, model.mask.to_index(pts.reshape(-1, 3)).T, order=1,
                                    mode="constant", cval=0.0).reshape(len(base), len(t))
    clearance = np.minimum(depth[:, in_pedicle].min(axis=1), depth[:, ~in_pedicle].min(axis=1) + CORTEX_MARGIN_MM)
    return clearance, depth, base


def _symmetric(lines: dict[int, list[_Line]], level: str) -> dict[int, _Line]:
    """One line per side. A side's acceptable medial angles are those whose clearance is within
    `CLEARANCE_TOLERANCE_MM` of its best, and of these the ones within ``level``'s expected range
    (`within_medial_range`) where there are any; with none there, the angles in the range within
    `RANGE_TOLERANCE_MM` of the best; with none of those either, the acceptable angles outside it. Of
    them the one running most centred along the pedicle (its own axis, `_Line.centred_mm`, less
    `MEDIAL_PRIOR_MM_PER_DEG` per degree from the level's typical angle, `TYPICAL_MEDIAL_DEG`) is taken,
    the same angle for both sides where their acceptable angles meet (symmetric unless the anatomy is
    not)."""

    typical_deg = TYPICAL_MEDIAL_DEG.get(level)

    def merit(ln: _Line) -> float:
        return ln.centred_mm - (0.0 if typical_deg is None else MEDIAL_PRIOR_MM_PER_DEG * abs(ln.medial_deg
                                                                                              - typical_deg))

    def acceptable(ls: list[_Line]) -> dict[float, _Line]:
        best = max(x.clearance_mm for x in ls)
        ok = [ln for ln in ls if ln.clearance_mm >= best - CLEARANCE_TOLERANCE_MM]
        if medial_range(level) is not None:
            ok = ([ln for ln in ok if within_medial_range(level, ln.medial_deg)]
                  or [ln for ln in ls if within_medial_range(level, ln.medial_deg)
                      and ln.clearance_mm >= best - RANGE_TOLERANCE_MM]
                  or ok)
        return {ln.medial_deg: ln for ln in ok}

    ok = {side: acceptable(ls) for side, ls in lines.items() if ls}
    both = set(ok.get(LEFT, {})) & set(ok.get(RIGHT, {}))
    if both:
        m = max(both, key=lambda a: merit(ok[LEFT][a]) + merit(ok[RIGHT][a]))
        return {side: ok[side][m] for side in (LEFT, RIGHT)}
    return {side: max(c.values(), key=merit) for side, c in ok.items()}


def _direction(frame: VertebraFrame, side: int, medial_deg: float, caudal_deg: float) -> np.ndarray:
    """Unit direction (LPS, into the body) with these angles in the vertebra's frame (as `evaluate` reads them)."""
    d = (-side * np.tan(np.radians(medial_deg)) * frame.e_x - frame.e_y - np.tan(np.radians(caudal_deg)) * frame.e_z)
    return d / np.linalg.norm(d)


def _sized(model: VertebraModel, side: int, line: _Line, catalogue: Catalogue) -> Screw | None:
    """The screw along ``line``: entry on the posterior cortex, sizes from the bone along it and its
    clearance in the pedicle (module docstring), graded; thinner, then shorter, while the mask is breached
    by 2 mm or more. None (and the reason in ``model.skipped``) where no catalogue screw fits."""
    side_name = SIDE_NAMES[side]
    bone, d = line.bone_mm, line.direction
    if bone - TIP_MARGIN_MM < MIN_BONE_DEPTH_MM:
        # said as the bone measured (never negative), with what a screw needs: the tip margin included
        model.skipped[side_name] = (
            f"bone depth along the pedicle axis {bone:.0f} mm, {MIN_BONE_DEPTH_MM + TIP_MARGIN_MM:.0f} mm needed: "
            "no trajectory through this mask (check the mask)")
        return None
    width = line.isthmus_mm
    ranges = level_range(model.level)
    (d_lo, d_hi), (l_lo, l_hi) = ranges if ranges is not None else ((0.0, np.inf), (0.0, np.inf))
    notes = []
    thinnest = catalogue.diameters_mm[0]
    if width < thinnest:
        model.skipped[side_name] = (
            f"pedicle isthmus {np.floor(width * 100) / 100:.2f} mm wide, narrower than the thinnest screw of the "
            f"catalogue ({thinnest:g} mm): plan an extrapedicular (in-out-in) screw or another level by hand")
        return None
    diameter = snap_down(min(width - 2 * CORTEX_MARGIN_MM, d_hi), catalogue.diameters_mm)
    if width - 2 * CORTEX_MARGIN_MM < thinnest:
        notes.append(f"pedicle isthmus {width:.1f} mm wide: the thinnest screw leaves less than "
                     f"{CORTEX_MARGIN_MM:g} mm of cortex on each side")
    elif diameter < d_lo:
        notes.append(f"pedicle isthmus {width:.1f} mm wide: thinner than usual at {model.level}")
    shortest = catalogue.lengths_mm[0]
    length = snap_down(min(LENGTH_FRACTION * bone, l_hi), catalogue.lengths_mm)
    if LENGTH_FRACTION * bone < shortest:
        notes.append(f"bone along the trajectory {bone:.0f} mm: the shortest screw ({shortest:g} mm) reaches beyond "
                     f"{LENGTH_FRACTION:.0%} of it")
    elif length < l_lo:
        notes.append(f"bone along the trajectory {bone:.0f} mm: shorter than usual at {model.level}")
    entry = line.entry
    screw = evaluate(model, Screw(model.level, side_name, entry, entry + length * d, diameter, float(length),
                                  pedicle_width_mm=width, bone_mm=bone, notes=notes))
    # a breach on a coarse or narrow mask: a thinner, then a shorter screw of the same trajectory
    sizes = [v for v in catalogue.diameters_mm if v < diameter]
    while screw.grade not in "AB" and sizes:
        screw = evaluate(model, replace(screw, diameter_mm=sizes.pop()))
    lengths = [v for v in catalogue.lengths_mm if v < length]
    while screw.grade not in "AB" and lengths:
        shorter_length = lengths.pop()
        shorter = evaluate(model, replace(screw, length_mm=shorter_length,
                                          target_lps=screw.entry_lps + shorter_length * d))
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
    graded = _in_pedicle_or_body(model, pts)
    screw.shaft_breach_mm = float(max(dist.max(), 0.0))
    screw.breach_mm = float(max(dist[graded].max(), 0.0)) if graded.any() else 0.0
    screw.grade = grade_of(screw.breach_mm)
    if model.outside_bone_mm is not None:
        by_hu = ndimage.map_coordinates(model.outside_bone_mm, idx.T, order=1, mode="constant", cval=99.0)
        screw.cortex_breach_mm = float(max(by_hu[graded].max(), 0.0)) if graded.any() else 0.0
    inside_grid = np.all((idx >= 0) & (idx <= np.array(model.canal.shape) - 1), axis=1)
    near = np.rint(idx[inside_grid]).astype(int)
    screw.enters_canal = bool(model.canal[tuple(near.T)].any()) if len(near) else False
    return screw


def pedicle_back_mm(frame: VertebraFrame) -> float:
    """How far behind the canal's centre the pedicle ends (frame y, mm): `PEDICLE_SPAN_FRACTION` of the
    canal's radius, at least `PEDICLE_MIN_HALF_MM`."""
    return max(PEDICLE_MIN_HALF_MM, PEDICLE_SPAN_FRACTION * max(frame.canal_radius_mm, 4.0))


def _in_pedicle_or_body(model: VertebraModel, pts: np.ndarray) -> np.ndarray:
    """Shaft points that the Gertzbein–Robbins grade judges: in front of the pedicle's posterior end
    (`pedicle_back_mm`). Behind it the screw crosses the posterior elements at its entry (the facet and
    transverse-process junction, opened by the surgeon's awl), whose breach is not a pedicle breach; a
    medial one there still shows as entering the canal. Without a canal, every point."""
    f = model.frame
    if f.canal_center is None:
        return np.ones(len(pts), bool)
    return f.local(pts)[:, 1] <= pedicle_back_mm(f)


def screws_collide(a: Screw, b: Screw) -> bool:
    """Whether two screws (cylinders) overlap: their axes come closer than the sum of the radii."""
    return _segment_distance(a.entry_lps, a.target_lps, b.entry_lps, b.target_lps) < (a.diameter_mm
                                                                                       + b.diameter_mm) / 2


def plan_vertebra(labels: Volume, vertebra_id: int, up_hint: np.ndarray | None = None,
                  ct: Volume | sitk.Image | None = None, *, trajectory: str = "straight-forward",
                  catalogue: Catalogue = CATALOGUE) -> tuple[VertebraModel, list[Screw]]:
    """Both screws of one level (`plan_pair`), graded (and by CT HU when ``ct`` is given)."""
    model = VertebraModel.build(labels, vertebra_id, up_hint, ct)
    return model, plan_pair(model, trajectory, catalogue)


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
