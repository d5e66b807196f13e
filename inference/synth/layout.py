"""Sampling a spine: which levels, which library shapes, their poses along a random smooth curve.

All positions are LPS mm in the synthetic patient frame (+x left, +y posterior, +z superior).
Only numpy and the numpy ``Generator`` passed in: the layout is small and fully determined by it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .. import registry
from ..assets import assets_dir
from ..models.lesion import NOT_SCORED
from .config import SynthConfig
from .shapes import Shape

# Nominal cranio-caudal coordinate of each level (C1 = 0 … S1 = 24); transitional levels sit between.
_NOMINAL = {f"C{i}": i - 1.0 for i in range(1, 8)} | {f"T{i}": 6.0 + i for i in range(1, 13)}
_NOMINAL |= {f"L{i}": 18.0 + i for i in range(1, 6)} | {"T13": 18.5, "L6": 23.5, "S1": 24.0}
# Base gap (mm) between the masks of two bodies at the endplate centres, below each level (by its
# nominal position): adult mid-disc heights (cervical 5-6, T1-T2 ~4 growing to ~7 at T12-L1, L4-L5
# ~11, L5-S1 ~10 mm) less ~1 mm, because label masks drawn on 1-2 mm slices include part of each
# endplate's partial-volume voxel. Multiplied by the spine's `disc_scale` and a ±15 % jitter.
_DISC_KNOTS = ([1.0, 5.0, 6.0, 7.0, 17.0, 18.0, 19.0, 20.0, 21.0, 22.0, 23.0, 24.0],
               [4.0, 4.5, 4.0, 3.5, 6.0, 7.0, 8.0, 9.0, 9.5, 10.0, 9.0, 9.0])


MIN_DISC_MM = 1.0
"""Thinnest gap left between two bodies when a real column's spacing is followed."""


def real_columns(path: Path | None = None) -> list[dict[str, np.ndarray]]:
    """Each real column of the shape library's sources as level name → centroid (LPS mm)."""
    doc = json.loads((path or assets_dir() / "shapes" / "layouts.json").read_text())
    return [{lv["level"]: np.asarray(lv["centroid_lps"], float) for lv in col["levels"]} for col in doc["columns"]]


def column_spacings(column: dict[str, np.ndarray]) -> dict[tuple[str, str], float]:
    """Centroid distance (mm) from each level of ``column`` to the next level present (registry neighbours)."""
    out = {}
    for vid in registry.LEVEL_ORDER:
        name = registry.name_of(vid)
        nxt = next((registry.name_of(b) for b in registry.neighbours(vid)[1] if registry.name_of(b) in column), None)
        if name in column and nxt is not None:
            out[(name, nxt)] = float(np.linalg.norm(column[name] - column[nxt]))
    return out


@lru_cache(maxsize=1)
def _real_columns() -> tuple[dict[tuple[str, str], float], ...]:
    """`column_spacings` of each real column."""
    return tuple(pairs for col in real_columns() if (pairs := column_spacings(col)))


def real_spacing_targets(rng: np.random.Generator, names: list[str]) -> dict[tuple[str, str], float]:
    """Centroid spacing per neighbouring pair of ``names``, taken from one real column drawn at random.

    Pairs that column lacks take the median over all real columns, scaled by how that column compares
    with the medians where it has pairs (a tall or short person stays so along the whole column).
    T13 and L6 step like T12 and L5. Pairs no real column holds are left out (the nominal disc table
    places them). C1–C2 are placed by their common scan and are left out too.
    """
    columns = _real_columns()
    if not columns:
        return {}
    medians: dict[tuple[str, str], float] = {}
    for key in {k for col in columns for k in col}:
        medians[key] = float(np.median([col[key] for col in columns if key in col]))
    ref = columns[int(rng.integers(len(columns)))]
    ratio = float(np.median([ref[k] / medians[k] for k in ref]))
    alias = {"T13": "T12", "L6": "L5"}
    out = {}
    for up, down in zip(names, names[1:], strict=False):
        if up == "C1":
            continue
        key = (alias.get(up, up), alias.get(down, down) if down != "L6" else "L6")
        if key[0] == key[1]:  # T12 → T13 or L5 → L6: the step below the level it repeats
            key = (key[0], down)
        if key in ref:
            out[(up, down)] = ref[key]
        elif key in medians:
            out[(up, down)] = medians[key] * ratio
    return out


def disc_base_mm(upper: str) -> float:
    """Base disc height (mm, mask gap at the centre) below ``upper``."""
    return float(np.interp(nominal(upper), *_DISC_KNOTS))


def nominal(level: str) -> float:
    """Nominal position of a level (C1 = 0, T1 = 7, L1 = 19, S1 = 24)."""
    return _NOMINAL[level]


@dataclass
class Level:
    """One placed vertebra: world point = ``center + rotation @ (scale * q)`` for canonical q (mm)."""

    name: str
    vid: int
    shape: Shape
    center: np.ndarray  # (3,) LPS mm of the shape's canonical origin
    rotation: np.ndarray  # (3, 3)
    scale: np.ndarray  # (3,) per canonical axis
    ribs: bool = False
    fracture: dict[str, float] | None = None  # {"anterior": loss, "posterior": loss}
    lesions: list[dict[str, Any]] = field(default_factory=list)  # canonical-frame ellipsoids

    def to_world(self, q: np.ndarray) -> np.ndarray:
        """Canonical mm (N, 3) → LPS mm (N, 3)."""
        return (np.asarray(q, dtype=float) * self.scale) @ self.rotation.T + self.center

    def endplate(self, sign: int) -> np.ndarray:
        """Canonical point at the centre of the superior (+1) or inferior (−1) body endplate.

        A compression fracture squeezes the body towards its centre height (see `raster.paint_vertebra`).
        """
        ep = self.shape.endplates[sign]
        zc = float(self.shape.get("body_center")[2])
        return np.array([ep.x, ep.y, zc + (ep.z - zc) * self.height_factor()])

    def footprint(self, sign: int) -> tuple[float, float]:
        """World-mm half extents (LR, AP) of the superior (+1) or inferior (−1) endplate."""
        ep = self.shape.endplates[sign]
        return ep.half_x * float(self.scale[0]), ep.half_y * float(self.scale[1])

    def height_factor(self) -> float:
        if not self.fracture:
            return 1.0
        return 1.0 - 0.5 * (self.fracture["anterior"] + self.fracture["posterior"])


@dataclass
class Layout:
    levels: list[Level]  # cranio-caudal, including the partial ones just outside the field of view
    fov_levels: list[str]  # the levels the field of view is aimed at
    discs: list[dict[str, Any]]  # {"upper", "lower", "height", "fused"}
    params: dict[str, Any]


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _u(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(rng.uniform(r[0], r[1]))


def level_sequence(rng: np.random.Generator, cfg: SynthConfig) -> tuple[list[str], dict[str, Any]]:
    """The whole column C1 … S1 with its (rare) numerical variants."""
    seq = [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)]
    t13 = bool(rng.random() < cfg.p_t13)
    if t13:
        seq.append("T13")
    lumbar = [f"L{i}" for i in range(1, 6)]
    variant = "normal"
    r = rng.random()
    if r < cfg.p_l6:
        lumbar.append("L6")
        variant = "L6"
    elif r < cfg.p_l6 + cfg.p_four_lumbar:
        lumbar = lumbar[:4]
        variant = "four_lumbar"
    seq += lumbar + ["S1"]
    return seq, {"t13": t13, "lumbar_variant": variant}


def choose_fov(rng: np.random.Generator, cfg: SynthConfig, seq: list[str]) -> tuple[int, int, str]:
    """Indices (first, last) into ``seq`` of the levels the scan is aimed at, and the mode."""
    mode = str(rng.choice(cfg.fov_modes, p=np.asarray(cfg.fov_weights) / sum(cfg.fov_weights)))
    idx = {n: i for i, n in enumerate(seq)}
    last_t = max(i for i, n in enumerate(seq) if n.startswith("T"))
    last_l = max(i for i, n in enumerate(seq) if n.startswith("L"))
    n = len(seq)
    if mode == "cervical":
        a, b = int(rng.integers(0, 2)), int(rng.integers(idx["C6"], idx["T2"] + 1))
    elif mode == "thoracic":
        a, b = int(rng.integers(idx["C7"], idx["T3"] + 1)), int(rng.integers(idx["T10"], last_t + 2))
    elif mode == "lumbar":
        a, b = int(rng.integers(idx["T11"], last_t + 3)), int(rng.integers(last_l, n))
    elif mode == "thoracolumbar":
        a, b = int(rng.integers(idx["T5"], idx["T10"] + 1)), int(rng.integers(last_l - 1, n))
    elif mode == "long":
        a, b = int(rng.integers(0, idx["T2"] + 1)), int(rng.integers(last_l, n))
    else:
        length = int(rng.integers(2, 11))
        a = int(rng.integers(0, n - length + 1))
        b = a + length - 1
    return a, min(b, n - 1), mode


def _curve_angles(rng: np.random.Generator, cfg: SynthConfig, seq: list[str]) -> tuple:
    """Per-level sagittal angles (degrees, before levelling) of a smooth random spine curve."""
    u = np.array([nominal(n) for n in seq])
    cerv, kyph, lord = (_u(rng, cfg.cervical_lordosis_deg), _u(rng, cfg.thoracic_kyphosis_deg),
                        _u(rng, cfg.lumbar_lordosis_deg))
    # sagittal bend per unit of nominal position. A positive angle tilts a level's top forward (−y),
    # so a caudal step moves back (+y); lordosis (convex forward) = angle growing caudally.
    bend = np.where(u < 6.5, cerv / 6.0, np.where(u < 18.5, -kyph / 12.0, lord / 5.5))
    sag = np.concatenate([[0.0], np.cumsum(0.5 * (bend[1:] + bend[:-1]) * np.diff(u))])
    return sag, u, cerv, kyph, lord


def _finish_angles(rng: np.random.Generator, cfg: SynthConfig, sag: np.ndarray, u: np.ndarray,
                   fov: tuple[int, int], cerv: float, kyph: float, lord: float) -> tuple:
    # the patient lies on the table: the scanned part of the column has no net tilt (± a few degrees)
    a, b = fov
    sag = sag - sag[a:b + 1].mean() + rng.normal(0, 4.0)
    cobb = 0.0
    if rng.random() < cfg.p_scoliosis:
        cobb = _u(rng, cfg.scoliosis_cobb_deg)
    else:
        cobb = float(rng.uniform(0, 6))  # everybody is a little asymmetric
    wave = float(rng.uniform(10, 20))  # levels per full S-curve period
    phase = float(rng.uniform(0, 2 * np.pi))
    cor = 0.5 * cobb * np.sin(2 * np.pi * u / wave + phase)
    # vertebral rotation accompanies scoliosis (the bodies turn to the convex side)
    axial = 0.4 * cor + rng.normal(0, 2.0, size=len(u))
    return np.radians(sag), np.radians(cor), np.radians(axial), {"cervical_lordosis_deg": round(cerv, 2),
                                                                   "thoracic_kyphosis_deg": round(kyph, 2),
                                                                   "lumbar_lordosis_deg": round(lord, 2),
                                                                   "scoliosis_cobb_deg": round(cobb, 2)}


def _pick_shape(rng: np.random.Generator, lib: dict[str, list[Shape]], name: str, prefer: str | None,
                force: bool) -> Shape:
    """A library shape for level ``name``: the ``prefer``-red source's when ``force`` (C1–C2) or, 60 % of the
    time, when that source has this level (neighbours from one patient match best); else weighted random."""
    key = {"T13": "T12", "L6": "L5"}.get(name, name)
    options = lib[key]
    keep = force or rng.random() < 0.6
    if prefer and keep:
        same = [s for s in options if s.meta["source_key"] == prefer]
        if same:
            return same[0]
    # coarse 3 mm pseudo-label shapes are kept but drawn less often than expert masks
    w = np.array([0.3 if s.coarse else 1.0 for s in options])
    return options[int(rng.choice(len(options), p=w / w.sum()))]


def size_normalisation(lib: dict[str, list[Shape]], shape: Shape) -> float:
    """Isotropic factor bringing ``shape`` to the median volume of its level's library shapes.

    The sources are different people (C3 of gl017 has 1.4× the volume of gl003's) and 3 mm
    pseudo-labels are inflated by smoothing: without this, a spine mixing sources jumps in size from one
    level to the next. Body-size variation comes from `SynthConfig.global_scale` instead.
    """
    vols = [float(s.meta["volume_ml"]) for s in lib[shape.level]]
    return float((np.median(vols) / float(shape.meta["volume_ml"])) ** (1.0 / 3.0))


def sample_layout(rng: np.random.Generator, cfg: SynthConfig, lib: dict[str, list[Shape]]) -> Layout:
    """Sample the column, the field of view, shapes, curve, variants, fractures and lesions."""
    seq, variants = level_sequence(rng, cfg)
    a, b, mode = choose_fov(rng, cfg, seq)
    lo, hi = max(a - 1, 0), min(b + 1, len(seq) - 1)  # one more level each side: partial vertebrae at the borders
    sag0, u, cerv, kyph, lord = _curve_angles(rng, cfg, seq)
    sag, cor, axial, curve = _finish_angles(rng, cfg, sag0, u, (a, b), cerv, kyph, lord)
    g = _u(rng, cfg.global_scale)
    disc_f = _u(rng, cfg.disc_scale)
    names = seq[lo:hi + 1]
    levels: list[Level] = []
    prev_src = None
    for n, name in enumerate(names):
        i = lo + n
        # C1–C2 articulate through the dens: always the same scan
        shape = _pick_shape(rng, lib, name, prev_src, force=name == "C2")
        prev_src = shape.meta["source_key"]
        s = g * _u(rng, cfg.level_scale) * np.array([_u(rng, cfg.axis_scale) for _ in range(3)])
        s = s * size_normalisation(lib, shape)
        if name == "T13":
            s = s * np.array([1.0, 1.0, 0.95])
        rot = _rot_z(axial[i]) @ _rot_y(cor[i]) @ _rot_x(sag[i])
        levels.append(Level(name, registry.BY_NAME[name].id, shape, np.zeros(3), rot, s))
    # numerical variants of the ribs
    rib_pairs = sum(1 for lv in levels if lv.name.startswith("T"))
    rib_rule = "T1-T12" if not variants["t13"] else "T1-T13"
    r = rng.random()
    for lv in levels:
        lv.ribs = lv.name.startswith("T")
    if r < cfg.p_11_ribs and not variants["t13"]:
        rib_rule = "T1-T11"
        for lv in levels:
            lv.ribs = lv.ribs and lv.name != "T12"
    elif r < cfg.p_11_ribs + cfg.p_lumbar_rib and not variants["t13"]:
        rib_rule = "T1-T12+L1"
        for lv in levels:
            lv.ribs = lv.ribs or lv.name == "L1"
    # fractures and lesions (before stacking: a fracture shortens the column)
    lesion_list: list[dict[str, Any]] = []
    candidates = [lv for lv in levels if lv.name not in NOT_SCORED]
    if candidates and rng.random() < cfg.p_lesions:
        k = int(rng.integers(cfg.lesions_per_spine[0], cfg.lesions_per_spine[1] + 1))
        kinds = ("lytic", "blastic", "mixed", "fracture")
        w = np.asarray(cfg.lesion_type_weights, dtype=float)
        for _ in range(k):
            lv = candidates[int(rng.integers(len(candidates)))]
            kind = kinds[int(rng.choice(4, p=w / w.sum()))]
            if kind == "fracture":
                if lv.fracture:
                    continue
                loss = _u(rng, cfg.fracture_height_loss)
                wedge = float(rng.uniform(0.0, 1.0))  # 0 = crush (flat), 1 = pure anterior wedge
                lv.fracture = {"anterior": loss, "posterior": loss * (1 - wedge) * 0.8}
                lesion_list.append({"level": lv.name, "type": "fracture", "height_loss": round(loss, 3),
                                    "wedge": round(wedge, 3)})
            else:
                bc, hs = lv.shape.get("body_center"), lv.shape.get("body_half_size")
                rad = min(_u(rng, cfg.lesion_radius_mm), 0.8 * float(hs.min()))
                off = rng.uniform(-0.5, 0.5, size=3) * np.maximum(hs - rad, 0)
                radii = rad * rng.uniform(0.7, 1.3, size=3)
                les = {"level": lv.name, "type": kind, "center": (bc + off).round(2).tolist(),
                       "radii": radii.round(2).tolist()}
                lv.lesions.append(les)
                lesion_list.append(les)
    # discs and stacking
    discs: list[dict[str, Any]] = []
    collapse_at = int(rng.integers(len(levels))) if rng.random() < cfg.p_disc_collapse else -1
    fused_at = int(rng.integers(2, max(len(levels) - 1, 3))) if rng.random() < cfg.p_fused else -1
    listhesis_at, listhesis = -1, 0.0
    if rng.random() < cfg.p_listhesis:
        lumbar_idx = [n for n, lv in enumerate(levels[:-1]) if lv.name.startswith("L")]
        if lumbar_idx:
            listhesis_at = int(rng.choice(lumbar_idx))
            listhesis = _u(rng, cfg.listhesis_mm) * (1 if rng.random() < 0.8 else -1)  # anterolisthesis mostly
    targets = real_spacing_targets(rng, [lv.name for lv in levels])
    for n in range(len(levels) - 1):
        up, lo_lv = levels[n], levels[n + 1]
        target = targets.get((up.name, lo_lv.name))
        if target is not None:
            # the gap that puts the two centroids as far apart as a real column's (scaled with the
            # body size), given how far each centroid lies from its endplate
            reach = (float(up.scale[2]) * -float(up.endplate(-1)[2])
                     + float(lo_lv.scale[2]) * float(lo_lv.endplate(+1)[2]))
            h = max(target * g * float(rng.uniform(0.95, 1.05)) - reach, MIN_DISC_MM)
        else:
            h = disc_base_mm(up.name) * disc_f * float(rng.uniform(0.85, 1.15))
        if n == collapse_at:
            h *= float(rng.uniform(0.2, 0.4))
        fused = n == fused_at and up.name != "C1"
        if fused:
            h = max(h, 3.0)
        shift = listhesis if n == listhesis_at else float(rng.normal(0, 0.7))
        r_mid = _mid_rotation(up.rotation, lo_lv.rotation)
        if up.name == "C1":
            # atlas and axis have no disc between them (the dens sits in the atlas ring): the step
            # observed in their common scan places them
            mean_scale = 0.5 * (up.scale + lo_lv.scale)
            lo_lv.center = up.center + r_mid @ (mean_scale * _pair_offset(up, lo_lv, lib))
            continue
        # endplate to endplate: the lower body's superior endplate centre sits ``h`` below the upper
        # body's inferior one, along the mean axis of the two, with the posterior walls in line
        # (plus listhesis); a fractured body has already lost its height in `Level.endplate`
        wall = up.footprint(-1)[1] - lo_lv.footprint(+1)[1]
        e_lo = up.to_world(up.endplate(-1)[None])[0] + r_mid @ np.array([0.0, wall + shift, -h])
        lo_lv.center = e_lo - lo_lv.rotation @ (lo_lv.scale * lo_lv.endplate(+1))
        discs.append({"upper": up.name, "lower": lo_lv.name, "height_mm": round(h, 2), "fused": fused,
                      "listhesis_mm": round(shift, 2) if n == listhesis_at else 0.0})
    params = {
        "fov_mode": mode,
        "sequence": seq,
        "fov_levels": seq[a:b + 1],
        "generated_levels": [lv.name for lv in levels],
        "variants": {**variants, "rib_rule": rib_rule, "rib_pairs": sum(lv.ribs for lv in levels),
                     "thoracic_in_view": rib_pairs},
        "curve": curve,
        "global_scale": round(g, 4),
        "disc_scale": round(disc_f, 4),
        "shapes": {lv.name: lv.shape.name for lv in levels},
        "scales": {lv.name: lv.scale.round(4).tolist() for lv in levels},
        "lesions": lesion_list,
        "discs": discs,
    }
    return Layout(levels, seq[a:b + 1], discs, params)


def _pair_offset(up: Level, down: Level, lib: dict[str, list[Shape]]) -> np.ndarray:
    """Canonical vector from ``up``'s centroid to ``down``'s, as observed in the real scans.

    The upper shape's own scan gives it when that scan holds the next level too; otherwise the mean
    over the library's shapes of that level (T13 steps like T12, L5 → L6 like L4 → L5).
    """
    if "next_offset" in up.shape.meta and down.name != "L6":
        return up.shape.get("next_offset")
    key = {"T13": "T12", "L6": "L5"}.get(up.name, up.name)
    if down.name == "L6":
        key = "L4"
    steps = [s.get("next_offset") for s in lib[key] if "next_offset" in s.meta]
    if not steps:  # no scan holds this pair: a generic step of one body plus a disc
        hs = up.shape.get("body_half_size")
        return np.array([0.0, 0.0, -2.0 * float(hs[2]) - 5.0])
    return np.mean(steps, axis=0)


def _mid_rotation(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Rotation half-way between two (close) rotations, re-orthonormalised."""
    u, _, vt = np.linalg.svd(r1 + r2)
    return u @ vt
