"""`generate`: one synthetic CT with vertebra labels and lesion masks, fully determined by a seed.

Pipeline (DESIGN §6, the SynthSeg idea): sample a spine from real vertebra shapes (`layout`), paint
tissue classes on an LPS-aligned working grid (`raster`), give each class a random CT-plausible HU,
add texture, metal streaks and partial-volume blur, resample onto a random scanner grid (spacing,
slice thickness, orientation in the direction matrix), then add noise, a bias field and the odd
export quirk. Labels and lesions are resampled with nearest neighbour on the same grid, so CT and
labels always agree in LPS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..volume import Volume
from . import raster as R
from .config import SynthConfig
from .layout import Layout, nominal, sample_layout
from .shapes import load_library

LESION_NAMES = {0: "none", 1: "lytic", 2: "blastic", 3: "compression fracture"}


@dataclass
class SynthCase:
    """One synthetic scan.

    Attributes
    ----------
    ct : Volume
        int16 HU, array [k, j, i], LPS geometry with a random direction matrix.
    labels : Volume
        uint8 VerSe ids (DESIGN §3) on the CT grid.
    lesions : Volume
        uint8 on the CT grid: 0 none, 1 lytic, 2 blastic, 3 compression fracture (whole body).
    params : dict
        JSON-ready sampled parameters (levels, shapes, curve, variants, lesions, HU table, grid).
    tissue : Volume or None
        uint8 tissue class (`raster.TISSUE_NAMES`) on the CT grid, nearest neighbour: which HU
        class each voxel was painted with (checks, body masks, per-tissue statistics). Not written to disk.
    """

    ct: Volume
    labels: Volume
    lesions: Volume
    params: dict[str, Any]
    tissue: Volume | None = None
    ribs: Volume | None = None
    """uint8 on the CT grid: 1 where a rib was painted (the target of the segmenter's rib channel)."""


def _u(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(rng.uniform(r[0], r[1]))


def generate(seed: int, config: SynthConfig | None = None, device: str | torch.device = "cpu") -> SynthCase:
    """Generate one synthetic CT case from ``seed`` (same seed, config and device → same arrays).

    Parameters
    ----------
    seed : int
        Seeds a numpy ``Generator`` (all scalar choices) and a ``torch.Generator`` (random fields);
        no global random state is read or changed.
    config : SynthConfig, optional
        Parameter ranges; `SynthConfig()` by default.
    device : str or torch.device
        Where the volumes are painted ("cpu" or "cuda").
    """
    cfg = config or SynthConfig()
    dev = torch.device(device)
    rng = np.random.default_rng([int(seed), 7919])
    tg = torch.Generator(device=dev)
    tg.manual_seed(int(seed) * 2654435761 % (2**63))
    lib = load_library()
    layout = sample_layout(rng, cfg, lib)
    out_geom = _sample_output_grid(rng, cfg, layout)
    grid = _working_grid(cfg, out_geom, dev)
    # contrast has its own random stream, so that cases without it stay as they were before it existed
    crng = np.random.default_rng([int(seed), 104729])
    contrast = _u(crng, cfg.hu_contrast) if crng.random() < cfg.p_contrast else None
    with torch.inference_mode():
        vols, tissue_params = _paint(rng, tg, cfg, layout, grid, lib, None if contrast is None else crng)
        hu, hu_table = _appearance(rng, tg, cfg, vols, grid, out_geom, contrast, crng)
        ct, (labels, lesions, tissue, ribs) = _resample(
            hu, [vols["labels"], vols["lesions"], vols["tissue"], vols["ribs"].to(torch.uint8)], grid, out_geom)
        ct, post = _scanner(rng, tg, cfg, ct, labels, lesions, tissue, out_geom)
    geom = dict(spacing=out_geom["spacing"], origin=out_geom["origin"], direction=out_geom["direction"])
    ct_np = ct.cpu().numpy().astype(np.int16)
    lab_np = labels.cpu().numpy().astype(np.uint8)
    les_np = lesions.cpu().numpy().astype(np.uint8)
    tis_np = tissue.cpu().numpy().astype(np.uint8)
    rib_np = ribs.cpu().numpy().astype(np.uint8)
    present = sorted(int(v) for v in np.unique(lab_np) if v)
    params = {
        "seed": int(seed),
        "generator": "inference.synth v1",
        "coordinate_system": "LPS",
        **layout.params,
        "labels_present": present,
        "grid": {"size": list(ct_np.shape[::-1]), "spacing": [round(s, 4) for s in out_geom["spacing"]],
                 "origin": [round(o, 3) for o in out_geom["origin"]],
                 "direction": [round(float(d), 6) for d in np.asarray(out_geom["direction"]).flatten()],
                 "oblique": out_geom["oblique"], "inplane_fov_mm": round(out_geom["fov_mm"], 1)},
        "working_spacing_mm": grid.spacing,
        "tissue": tissue_params,
        "hu": hu_table,
        "scanner": post,
    }
    md = {"source_format": "synthetic", "modality": "CT", "synth_seed": int(seed)}
    ct_vol = Volume(ct_np, **geom, metadata=dict(md))
    return SynthCase(ct_vol, ct_vol.with_array(lab_np), ct_vol.with_array(les_np), params, ct_vol.with_array(tis_np),
                     ct_vol.with_array(rib_np))


# ---------------------------------------------------------------------------------------------------
# grids


def _random_direction(rng: np.random.Generator, cfg: SynthConfig) -> tuple[np.ndarray, bool]:
    d = np.eye(3)
    if rng.random() >= cfg.p_standard_orientation:
        perm = rng.permutation(3)
        signs = rng.choice([-1.0, 1.0], size=3)
        d = np.zeros((3, 3))
        d[perm, np.arange(3)] = signs
        if np.linalg.det(d) < 0 and rng.random() < 0.5:
            d[:, 2] *= -1  # both handednesses occur (NIfTI radiological / neurological)
    oblique = bool(rng.random() < cfg.p_oblique)
    if oblique:
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        ang = np.radians(rng.uniform(2.0, cfg.max_oblique_deg))
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        rot = np.eye(3) + np.sin(ang) * k + (1 - np.cos(ang)) * k @ k
        d = rot @ d
    return d, oblique


def _sample_output_grid(rng: np.random.Generator, cfg: SynthConfig, layout: Layout) -> dict[str, Any]:
    """Scanner grid: spacing, size, origin and direction (LPS) aimed at the layout's field of view."""
    by = {lv.name: lv for lv in layout.levels}
    fov = [by[n] for n in layout.fov_levels if n in by]
    zs = [lv.center[2] for lv in fov]
    # the scan's ends fall anywhere within the end vertebrae: partial vertebrae at the borders
    top = max(zs) + rng.uniform(-12, 18)
    bottom = min(zs) - rng.uniform(-12, 18)
    if fov and fov[-1].name == "S1":
        # the sacrum reaches ~80 mm below its centroid and pelvic scans hold all of it: a border
        # within 18 mm of the centroid had taught the segmenter a sacrum cut off at mid-height
        bottom = min(zs) - rng.uniform(0, 110)
    if top - bottom > cfg.max_length_mm:
        cut = top - bottom - cfg.max_length_mm
        f = rng.random()
        top, bottom = top - f * cut, bottom + (1 - f) * cut
    if top - bottom < 30:
        top, bottom = top + 15, bottom - 15
    s_xy = _u(rng, cfg.inplane_spacing_mm)
    s_z = _u(rng, cfg.slice_spacing_mm)
    fov_mm = _u(rng, cfg.inplane_fov_mm)
    if layout.params["fov_mode"] == "cervical":
        fov_mm = min(fov_mm, float(rng.uniform(130, 260)))  # necks are small and often targeted
    n_xy = int(min(round(fov_mm / s_xy), cfg.max_inplane_voxels))
    fov_mm = n_xy * s_xy
    n_z = max(int(round((top - bottom) / s_z)) + 1, 4)
    spine_xy = np.mean([lv.center[:2] for lv in fov], axis=0)
    # body scans are centred in front of the spine; spine-targeted small FOVs on the canal
    cx = spine_xy[0] + rng.normal(0, 8)
    cy = spine_xy[1] - rng.uniform(0, 0.25 * fov_mm) + rng.normal(0, 5)
    if rng.random() < cfg.p_posterior_cut:
        # a small field of view aimed in front of the column (a CT angiogram) or beside it: the column's
        # back or one side falls outside it
        fov_mm = float(rng.uniform(90, 200))
        n_xy = int(min(round(fov_mm / s_xy), cfg.max_inplane_voxels))
        fov_mm = n_xy * s_xy
        if rng.random() < 0.6:
            cy = spine_xy[1] - 0.5 * fov_mm + float(rng.uniform(10, 45))
        else:
            cx = spine_xy[0] + float(rng.choice([-1, 1])) * (0.5 * fov_mm - float(rng.uniform(15, 40)))
    center = np.array([cx, cy, 0.5 * (top + bottom)])
    d, oblique = _random_direction(rng, cfg)
    # physical spacing follows the acquisition: the output axis closest to S–I carries the slices
    world_axis = np.argmax(np.abs(d), axis=0)
    spacing = np.array([s_z if w == 2 else s_xy for w in world_axis])
    size = np.array([n_z if w == 2 else n_xy for w in world_axis])
    origin = center - d @ (spacing * (size - 1) / 2.0)
    return {"spacing": tuple(float(s) for s in spacing), "size": tuple(int(n) for n in size),
            "origin": tuple(float(o) for o in origin), "direction": d, "oblique": oblique, "fov_mm": fov_mm,
            "center": center, "s_xy": s_xy, "s_z": s_z, "world_axis": world_axis.tolist()}


def _working_grid(cfg: SynthConfig, g: dict[str, Any], dev: torch.device) -> R.Grid:
    d, sp, size = g["direction"], np.array(g["spacing"]), np.array(g["size"])
    corners = np.array([[a, b, c] for a in (0, size[0] - 1) for b in (0, size[1] - 1) for c in (0, size[2] - 1)])
    pts = (corners * sp) @ d.T + np.array(g["origin"])
    ws = cfg.working_spacing_mm
    margin = 2 * max(g["s_xy"], g["s_z"]) + 2 * ws  # room for the partial-volume blur at the borders
    lo, hi = pts.min(axis=0) - margin, pts.max(axis=0) + margin
    n = np.ceil((hi - lo) / ws).astype(int) + 1
    return R.Grid(origin=lo, spacing=ws, shape=(int(n[2]), int(n[1]), int(n[0])), device=dev)


# ---------------------------------------------------------------------------------------------------
# anatomy


def _paint(rng, tg, cfg: SynthConfig, layout: Layout, grid: R.Grid, lib,
           crng: np.random.Generator | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Tissue, label, lesion and rib volumes; ``crng`` (contrast cases only) paints the vessels."""
    dev = grid.device
    shp = grid.shape
    vols = {
        "labels": torch.zeros(shp, dtype=torch.uint8, device=dev),
        "lesions": torch.zeros(shp, dtype=torch.uint8, device=dev),
        "bone": torch.zeros(shp, dtype=torch.bool, device=dev),
        "disc": torch.zeros(shp, dtype=torch.bool, device=dev),
        "dense": torch.zeros(shp, dtype=torch.bool, device=dev),
        "posterior": torch.zeros(shp, dtype=torch.bool, device=dev),
        "ribs": torch.zeros(shp, dtype=torch.bool, device=dev),
    }
    levels = layout.levels
    fused = {(d["upper"], d["lower"]) for d in layout.discs if d["fused"]}
    for up, down in zip(levels[:-1], levels[1:], strict=True):
        if up.name != "C1":
            R.paint_disc(up, down, (up.name, down.name) in fused, grid, vols)
    for lv in levels:
        R.paint_vertebra(lv, grid, vols, rng, tg, _u(rng, cfg.elastic_mm))
    if levels[-1].name == "S1" and "pelvis" in lib:
        R.paint_pelvis(levels[-1], lib["pelvis"][0], grid, vols)

    # per-slice reference: spine body centre, canal centre and nominal level along z
    zc = np.array([lv.to_world(lv.shape.get("body_center"))[2] for lv in levels])
    order = np.argsort(zc)
    zc = zc[order]
    body_c = np.array([lv.to_world(lv.shape.get("body_center")) for lv in levels])[order]
    canal_c = np.array([lv.to_world(lv.shape.get("canal_center")) for lv in levels])[order]
    canal_r = np.array([lv.shape.meta["canal_radius"] * lv.scale[0] for lv in levels])[order]
    nom = np.array([nominal(lv.name) for lv in levels])[order]
    z = grid.axis(2).cpu().numpy()
    step = np.mean(np.diff(zc)) if len(zc) > 1 else 25.0
    slope = (nom[-1] - nom[0]) / (zc[-1] - zc[0]) if len(zc) > 1 else -1.0 / 25.0
    u_z = np.interp(z, zc, nom)
    u_z = np.where(z > zc[-1], nom[-1] + (z - zc[-1]) * slope, np.where(z < zc[0], nom[0] + (z - zc[0]) * slope, u_z))
    del step
    sx, sy = np.interp(z, zc, body_c[:, 0]), np.interp(z, zc, body_c[:, 1])
    kx, ky = np.interp(z, zc, canal_c[:, 0]), np.interp(z, zc, canal_c[:, 1])
    kr = np.clip(np.interp(z, zc, canal_r), 5.0, 12.0)

    habitus = float(rng.uniform(0.85, 1.15))
    fat = _u(rng, cfg.fat_mm)
    knots = [0, 6, 8, 12, 18, 21, 24, 27]
    half_w = np.interp(u_z, knots, [55, 60, 165, 150, 140, 140, 165, 170]) * habitus
    half_ap = np.interp(u_z, knots, [55, 55, 95, 105, 105, 100, 105, 105]) * habitus
    back = np.interp(u_z, knots, [45, 50, 60, 60, 65, 65, 70, 70]) * habitus  # body centre → back muscle surface
    # lean (muscle) ellipse: its posterior point lies `back` mm behind the vertebral body
    ecx = sx + rng.normal(0, 5)
    ecy = sy + back - half_ap
    # float64 for the region tests: float32 rounding can differ between vectorised and scalar code
    # paths (thread chunking), which would flip voxels sitting exactly on a boundary between runs
    X = grid.axis(0).double().view(1, 1, -1)
    Y = grid.axis(1).double().view(1, -1, 1)

    def col(a: np.ndarray) -> torch.Tensor:
        return torch.tensor(a, dtype=torch.float64, device=dev).view(-1, 1, 1)

    r_lean = ((X - col(ecx)) / col(half_w)) ** 2 + ((Y - col(ecy)) / col(half_ap)) ** 2
    r_skin = ((X - col(ecx)) / col(half_w + fat)) ** 2 + ((Y - col(ecy)) / col(half_ap + fat)) ** 2
    tissue = torch.full(shp, R.AIR, dtype=torch.uint8, device=dev)
    table = None
    if rng.random() < cfg.p_table:
        gap = float(rng.uniform(0, 15))
        thick = float(rng.uniform(8, 45))
        y_top = float(np.max(ecy + half_ap + fat)) + gap
        curve = float(rng.uniform(0, 0.0015))  # tables are flat or slightly concave
        y_surf = y_top - curve * (X - float(np.mean(ecx))) ** 2
        tab = (Y >= y_surf) & (Y <= y_surf + thick) & ((X - float(np.mean(ecx))).abs() < 240)
        tissue[tab.expand(shp)] = R.TABLE
        table = {"gap_mm": round(gap, 1), "thickness_mm": round(thick, 1)}
    tissue[r_skin <= 1] = R.FAT
    tissue[r_lean <= 1] = R.MUSCLE
    # viscera: inside a 15-25 mm muscle wall, in front of the spine and away from the psoas/paraspinals
    wall = float(rng.uniform(12, 25))
    r_visc = ((X - col(ecx)) / col(half_w - wall)) ** 2 + ((Y - col(ecy)) / col(half_ap - wall)) ** 2
    dist_spine = torch.sqrt((X - col(sx)) ** 2 + (Y - col(sy)) ** 2)
    psoas = col(np.interp(u_z, [18, 19, 23, 25], [18, 30, 50, 40]))
    visc = (r_visc <= 1) & (Y < col(sy - 8)) & (dist_spine > psoas)
    tex = _smooth_noise(tg, shp, 6, dev, channels=2)
    visc_fat = float(rng.uniform(0.1, 0.5))
    tissue[visc] = R.ORGAN
    tissue[visc & (tex[0] > _normal_quantile(1 - visc_fat))] = R.FAT
    # lungs: inside the rib cage, outside the mediastinum, above a posteriorly deeper diaphragm
    rib_no = torch.tensor(np.clip(u_z - 6.0, 1.0, 13.0), dtype=torch.float64, device=dev).view(-1, 1, 1)
    ra = torch.tensor(np.interp(np.clip(u_z - 6, 1, 13), [1, 2, 4, 7, 9, 11, 13], [55, 80, 105, 125, 130, 125, 115]),
                      dtype=torch.float64, device=dev).view(-1, 1, 1) * habitus - 10
    rb = torch.tensor(np.interp(np.clip(u_z - 6, 1, 13), [1, 2, 4, 7, 9, 11, 13], [40, 60, 80, 95, 100, 100, 95]),
                      dtype=torch.float64, device=dev).view(-1, 1, 1) * habitus - 10
    # same rib-cage ellipse as the ribs: back ~ 33 mm behind the body centre (tubercle level + 8 mm)
    rcy = col(sy) + 33.0 - rb - 10
    in_cage = ((X - col(sx)) / ra) ** 2 + ((Y - rcy) / rb) ** 2 <= 1
    apex = float(rng.uniform(5.8, 6.8))
    base_post, base_ant = float(rng.uniform(16.5, 18.0)), float(rng.uniform(13.5, 15.5))
    frac_ant = ((col(sy) - Y) / 120.0).clamp(0, 1)
    below_apex = torch.tensor(u_z > apex, device=dev).view(-1, 1, 1)
    above_dia = rib_no + 6.0 < base_post - (base_post - base_ant) * frac_ant
    mediast = ((X - col(sx)).abs() < float(rng.uniform(30, 50)) * (1 + frac_ant)) & (Y < col(sy + 15))
    lung = in_cage & below_apex & above_dia & ~mediast & (dist_spine > 25)
    tissue[lung] = R.LUNG
    # bowel gas below the diaphragm
    gas_frac = float(rng.uniform(0.0, 0.08))
    abdomen = torch.tensor((u_z > 17.5) & (u_z < 26), device=dev).view(-1, 1, 1)
    tissue[visc & abdomen & ~lung & (tex[1] > _normal_quantile(1 - gas_frac))] = R.GAS
    vessels = None
    if crng is not None:
        vessels = _paint_vessels(crng, X, Y, col, u_z, sx, sy, habitus, tissue)
    # spinal canal, painted before bone so bone wins: epidural fat filling the bony canal (and the
    # foramina), the dural sac (CSF) in it, shifted forward (the dorsal fat pad is the thickest), and
    # the cord down to the conus. The sac fills less of the canal caudally (more fat in the lumbar canal).
    sac_f = np.interp(u_z, [0, 6, 12, 18, 24], [0.88, 0.85, 0.8, 0.72, 0.62]) * float(rng.uniform(0.9, 1.05))
    sac_y = ky - (1 - sac_f) * kr * 0.5
    conus = float(rng.uniform(19.0, 20.5))  # the cord ends at L1–L2
    js, is_ = _xy_box(grid, kx - 1.05 * kr, kx + 1.05 * kr, ky - 1.05 * kr, ky + 1.05 * kr)
    cx, cy = X[..., is_], Y[:, js, :]
    r2 = (cx - col(kx)) ** 2 + (cy - col(ky)) ** 2
    r2_sac = (cx - col(kx)) ** 2 + (cy - col(sac_y)) ** 2
    canal = tissue[:, js, is_]  # a view: painting it paints the volume
    canal[r2 <= col((kr * 1.05) ** 2)] = R.FAT
    canal[r2_sac <= col((kr * sac_f) ** 2)] = R.CSF
    canal[(r2_sac <= col((kr * 0.42) ** 2)) & torch.tensor(u_z < conus, device=dev).view(-1, 1, 1)] = R.CORD
    tissue[vols["disc"]] = R.DISC
    # airway (pharynx, larynx, trachea) in front of the cervical and upper thoracic spine, to the carina
    carina = float(rng.uniform(10.0, 11.5))
    neck = (u_z > -0.5) & (u_z < carina)
    airway = None
    if neck.any():
        ay = sy - np.interp(u_z, [0, 3, 6, 8, 11], [20, 19, 27, 34, 40]) * habitus
        ar = np.interp(u_z, [0, 2, 4, 5.5, 6.5, 11], [9, 7, 6, 8, 8.5, 8.5]) * float(rng.uniform(0.8, 1.2))
        ar = np.where(neck, ar, 0.0)
        air_tube = ((X - col(sx)) ** 2 + (Y - col(ay)) ** 2 <= col(ar) ** 2) & (r_lean <= 1)
        tissue[air_tube] = R.AIR
        airway = {"carina": round(carina, 2)}
    # ribs: splatted centre lines, blurred, thresholded to tubes of radius ~4.5 mm
    lines = R.rib_centerlines(layout, {"habitus": habitus}, rng)
    if lines:
        pts = np.vstack(lines)
        box = grid.box(pts, margin=8.0)
        if box is not None:
            _splat_tubes(pts, box, grid, vols, radius=float(rng.uniform(3.5, 5.0)))
    bb = _bounding_box(vols["bone"], margin=1)  # bone fills a small part of the grid: work on its box
    if bb is not None:
        bone, posterior, t_box = vols["bone"][bb], vols["posterior"][bb], tissue[bb]
        # the shell: bone voxels with a non-bone face neighbour; endplates: shell voxels open upwards or
        # downwards but closed sideways (a flat, roughly axial surface: the spine runs roughly along z on
        # this grid); the rest of a body's shell is side wall
        closed = [_neighbour(bone, dim, 1) & _neighbour(bone, dim, -1) for dim in range(3)]
        shell = bone & ~(closed[0] & closed[1] & closed[2])
        endplate = shell & ~closed[0] & closed[1] & closed[2]
        body = (vols["labels"][bb] > 0) & ~posterior
        t_box[bone] = R.CANCELLOUS
        t_box[bone & posterior] = R.POSTERIOR
        t_box[shell] = R.CORTICAL
        t_box[shell & body & ~endplate] = R.WALL
    les = vols["lesions"]
    tissue[les == 1] = R.LYTIC
    tissue[les == 2] = R.BLASTIC
    tissue[vols["dense"]] = R.SCLEROTIC
    metal = _paint_metal(rng, cfg, layout, grid, tissue)
    vols["tissue"] = tissue
    vols["metal"] = metal
    params = {"habitus": round(habitus, 3), "fat_mm": round(fat, 1), "visceral_fat": round(visc_fat, 3),
              "bowel_gas": round(gas_frac, 3), "table": table, "airway": airway,
              "metal": metal["screws"] if metal else None, "vessels": vessels}
    return vols, params


def _paint_vessels(crng, X, Y, col, u_z: np.ndarray, sx: np.ndarray, sy: np.ndarray, habitus: float,
                   tissue: torch.Tensor) -> dict:
    """Contrast-filled blood (`R.VESSEL`) in front of the column, per slice: the descending aorta
    left-anterior of the bodies from the arch (~T4) to the bifurcation (~L4), the inferior vena cava
    right-anterior from the heart down, and the heart's chambers (a muscle ellipsoid holding two
    bright ones) in front of T6-T10, over the lungs. Geometry is rough; what matters to the models is
    bright, bone-like blood next to the spine."""
    z_ok = lambda lo, hi: torch.tensor((u_z >= lo) & (u_z <= hi), device=tissue.device).view(-1, 1, 1)  # noqa: E731
    r_ao = float(crng.uniform(9.0, 15.0))
    ao_x = sx + float(crng.uniform(12.0, 28.0))  # LPS +x = patient's left
    ao_y = sy - float(crng.uniform(22.0, 32.0)) - r_ao
    aorta = ((X - col(ao_x)) ** 2 + (Y - col(ao_y)) ** 2 <= r_ao**2) & z_ok(10.0, 22.5)
    r_cava = float(crng.uniform(9.0, 13.0))
    cava = ((X - col(sx - float(crng.uniform(18.0, 30.0)))) ** 2
            + (Y - col(sy - float(crng.uniform(25.0, 35.0)) - r_cava)) ** 2 <= r_cava**2) & z_ok(17.0, 23.0)
    # heart: centred ~T8, left of the midline, its back ~20 mm in front of the bodies
    u_h = float(crng.uniform(13.5, 15.5))
    a, b, c = (v * habitus for v in (float(crng.uniform(50, 65)), float(crng.uniform(40, 50)),
                                     float(crng.uniform(45, 60))))
    k_h = int(np.argmin(np.abs(u_z - u_h)))
    hx, hy = float(sx[k_h]) + float(crng.uniform(10.0, 30.0)), float(sy[k_h]) - 20.0 - b
    z_mm = torch.tensor((u_z - u_h), device=tissue.device).view(-1, 1, 1).double()
    mm_per_level = float(crng.uniform(22.0, 26.0))
    r2 = ((X - hx) / a) ** 2 + ((Y - hy) / b) ** 2 + (z_mm * mm_per_level / c) ** 2
    heart = r2 <= 1
    chambers = (((X - (hx - 0.35 * a)) / (0.45 * a)) ** 2 + ((Y - hy) / (0.6 * b)) ** 2
                + (z_mm * mm_per_level / (0.7 * c)) ** 2 <= 1)
    chambers |= (((X - (hx + 0.3 * a)) / (0.4 * a)) ** 2 + ((Y - (hy + 0.1 * b)) / (0.55 * b)) ** 2
                 + (z_mm * mm_per_level / (0.65 * c)) ** 2 <= 1)
    shp = tissue.shape
    tissue[heart.expand(shp)] = R.MUSCLE
    tissue[(heart & chambers).expand(shp)] = R.VESSEL
    tissue[aorta.expand(shp)] = R.VESSEL
    tissue[cava.expand(shp)] = R.VESSEL
    return {"aorta_radius_mm": round(r_ao, 1), "heart_level": round(u_h, 2)}


def _xy_box(grid: R.Grid, x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray) -> tuple[slice, slice]:
    """Voxel slices (j, i) of the working grid covering x in [min x0, max x1], y in [min y0, max y1] (mm)."""
    n_j, n_i = grid.shape[1], grid.shape[2]

    def sl(lo: float, hi: float, n: int, axis: int) -> slice:
        a = int(np.floor((lo - grid.origin[axis]) / grid.spacing)) - 1
        b = int(np.ceil((hi - grid.origin[axis]) / grid.spacing)) + 2
        a, b = min(max(a, 0), n), min(max(b, 0), n)
        return slice(a, max(a, b))

    return sl(float(np.min(y0)), float(np.max(y1)), n_j, 1), sl(float(np.min(x0)), float(np.max(x1)), n_i, 0)


def _bounding_box(mask: torch.Tensor, margin: int) -> tuple[slice, slice, slice] | None:
    """Slices of the smallest box holding ``mask`` (3D), grown by ``margin`` voxels; None if empty."""
    out = []
    for dim in range(3):
        other = tuple(d for d in range(3) if d != dim)
        nz = torch.nonzero(mask.any(dim=other[1]).any(dim=other[0])).flatten()
        if len(nz) == 0:
            return None
        out.append(slice(max(int(nz[0]) - margin, 0), min(int(nz[-1]) + 1 + margin, mask.shape[dim])))
    return tuple(out)


def _neighbour(mask: torch.Tensor, dim: int, step: int) -> torch.Tensor:
    """``mask`` at the neighbouring voxel ``step`` (±1) along ``dim``; True beyond the edge."""
    out = torch.ones_like(mask)
    n = mask.shape[dim]
    if step > 0:
        out.narrow(dim, 0, n - 1).copy_(mask.narrow(dim, 1, n - 1))
    else:
        out.narrow(dim, 1, n - 1).copy_(mask.narrow(dim, 0, n - 1))
    return out


def _normal_quantile(p: float) -> float:
    from statistics import NormalDist

    return float(NormalDist().inv_cdf(min(max(p, 1e-6), 1 - 1e-6)))


def _smooth_noise(tg, shape, factor: int | tuple[int, int, int], dev, channels: int = 1) -> torch.Tensor:
    """Unit-variance smooth noise (C, K, J, I): Gaussian noise on a grid ``factor`` times coarser (per axis
    k, j, i when a tuple), upsampled."""
    fac = (factor,) * 3 if isinstance(factor, int) else factor
    small = [max(int(np.ceil(n / f)) + 1, 2) for n, f in zip(shape, fac, strict=True)]
    n = torch.randn([1, channels, *small], generator=tg, device=dev)
    up = F.interpolate(n, size=shape, mode="trilinear", align_corners=True)[0]
    sd = [_rounded_std(c) for c in up]
    return up / torch.tensor(sd, dtype=up.dtype, device=up.device).view(-1, 1, 1, 1)


def _rounded_std(x: torch.Tensor) -> float:
    """SD of a large smooth field from every 3rd voxel per axis (1/27 of the work), rounded to 5 digits:
    a parallel reduction's last bits can vary between runs, the rounded value cannot (in practice)."""
    sub = x[::3, ::3, ::3] if x.dim() == 3 else x
    return max(float(f"{float(sub.double().std()):.5g}"), 1e-6)


def _splat_tubes(pts: np.ndarray, box, grid: R.Grid, vols, radius: float) -> None:
    """Centre-line points → tubes: splat, Gaussian-blur, threshold at the level of ``radius``."""
    dev = grid.device
    sub_shape = tuple(s.stop - s.start for s in box)
    acc = torch.zeros(sub_shape, dtype=torch.float32, device=dev)
    idx = np.round((pts - grid.origin) / grid.spacing).astype(int)[:, ::-1] - np.array([s.start for s in box])
    ok = np.all((idx >= 0) & (idx < np.array(sub_shape)), axis=1)
    idx = torch.tensor(idx[ok], device=dev)
    sigma = 2.5  # mm; a 0.5 mm-spaced line of weight 2πσ²·δ blurs to a peak of 1 on its axis
    w = 2 * np.pi * (sigma / grid.spacing) ** 2 * (0.5 / grid.spacing)
    # bincount, not index_put_(accumulate=True): its summation order (hence the result) is fixed
    flat = (idx[:, 0] * sub_shape[1] + idx[:, 1]) * sub_shape[2] + idx[:, 2]
    acc += torch.bincount(flat, minlength=acc.numel()).view(sub_shape).float() * float(w)
    g = R.gaussian_blur(acc, (sigma / grid.spacing,) * 3)
    thr = float(np.exp(-(radius**2) / (2 * sigma**2)))
    vols["bone"][box] |= g > thr
    vols["ribs"][box] |= g > thr


def _paint_metal(rng, cfg: SynthConfig, layout: Layout, grid: R.Grid, tissue: torch.Tensor) -> dict | None:
    """Pedicle screws (and rods) at 1-4 consecutive levels; returns their description or None."""
    cands = [n for n, lv in enumerate(layout.levels) if lv.name[0] in "TL" and lv.name != "S1"]
    if not cands or rng.random() >= cfg.p_metal:
        return None
    k = int(rng.integers(1, 5))
    start = int(rng.choice(cands))
    chosen = [lv for lv in layout.levels[start:start + k] if lv.name != "S1"]
    heads: dict[float, list[np.ndarray]] = {1.0: [], -1.0: []}
    screws = []
    mask = torch.zeros(grid.shape, dtype=torch.bool, device=grid.device)
    for lv in chosen:
        cc, cr = lv.shape.get("canal_center"), float(lv.shape.meta["canal_radius"])
        bc, hs = lv.shape.get("body_center"), lv.shape.get("body_half_size")
        for side in (1.0, -1.0):
            entry = lv.to_world(np.array([side * (cr + 7.0), cc[1] + 4.0, cc[2]]))
            target = lv.to_world(np.array([side * 4.0, bc[1] - 0.4 * hs[1], bc[2]]))
            d = (target - entry) / np.linalg.norm(target - entry)
            head = entry - 12.0 * d
            for a, b, r in ((head, target, 3.0), (head - 4 * d, head + 2 * d, 5.5)):
                hit = R.segment_tube(grid, a, b, r)
                if hit:
                    mask[hit[0]] |= hit[1]
            heads[side].append(head - 3 * d)
            screws.append({"level": lv.name, "side": "left" if side > 0 else "right"})
    rods = len(chosen) > 1 and rng.random() < 0.85
    if rods:
        for side in (1.0, -1.0):
            for a, b in zip(heads[side][:-1], heads[side][1:], strict=True):
                hit = R.segment_tube(grid, a, b, 2.75)
                if hit:
                    mask[hit[0]] |= hit[1]
    tissue[mask] = R.METAL
    return {"screws": screws, "rods": rods}


# ---------------------------------------------------------------------------------------------------
# appearance


def _appearance(rng, tg, cfg: SynthConfig, vols, grid: R.Grid, out: dict, contrast: float | None = None,
                crng: np.random.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """HU per tissue class + texture + metal streaks + partial-volume blur on the working grid;
    ``contrast`` (HU of contrast-filled blood, with its random stream ``crng``) enhances the organs."""
    dev = grid.device
    canc = _u(rng, cfg.hu_cancellous)
    if rng.random() < cfg.p_sclerotic:
        canc = _u(rng, cfg.hu_sclerotic)
    # the shell is one working voxel thick: on a coarser working grid it holds more trabecular bone
    shell = canc + max(_u(rng, cfg.hu_cortical) - canc, 150.0) * min(1.0, 1.0 / grid.spacing)
    # a body's side walls are thinner than one voxel (partial volume); the arch is mostly compact bone
    wall = canc + _u(rng, cfg.wall_fraction) * (shell - canc)
    arch = canc + _u(rng, cfg.posterior_fraction) * (shell - canc)
    table = {
        R.AIR: _u(rng, cfg.hu_air), R.FAT: _u(rng, cfg.hu_fat), R.MUSCLE: _u(rng, cfg.hu_muscle),
        R.ORGAN: _u(rng, cfg.hu_organ), R.LUNG: _u(rng, cfg.hu_lung), R.GAS: float(rng.uniform(-1000, -600)),
        R.CSF: _u(rng, cfg.hu_csf), R.CORD: _u(rng, cfg.hu_cord), R.DISC: _u(rng, cfg.hu_disc),
        R.CANCELLOUS: canc, R.CORTICAL: shell,
        R.TABLE: _u(rng, cfg.hu_table), R.METAL: _u(rng, cfg.hu_metal), R.LYTIC: _u(rng, cfg.hu_lytic),
        R.BLASTIC: _u(rng, cfg.hu_blastic), R.SCLEROTIC: canc + float(rng.uniform(150, 450)),
        R.WALL: wall, R.POSTERIOR: arch,
    }
    table[R.VESSEL] = table[R.ORGAN]
    if contrast is not None:
        table[R.VESSEL] = contrast
        table[R.ORGAN] += float(crng.uniform(0.0, 80.0))
    # texture SD per class: trabecular pattern (coarse to fine-grained marrow), lung vessels, fat strands
    trab = _u(rng, cfg.trabecular_texture)
    tex_sd = {R.LUNG: 60.0, R.CANCELLOUS: 8.0 + trab * canc, R.CORTICAL: 0.08 * shell, R.WALL: 0.08 * wall,
              R.POSTERIOR: 8.0 + trab * arch, R.ORGAN: 8.0, R.FAT: 8.0, R.MUSCLE: 6.0, R.BLASTIC: 120.0,
              R.LYTIC: 10.0, R.SCLEROTIC: 60.0, R.DISC: 6.0, R.TABLE: 40.0, R.VESSEL: 10.0}
    lut = torch.tensor([table[i] for i in range(R.N_TISSUES)], dtype=torch.float32, device=dev)
    sd = torch.tensor([tex_sd.get(i, 0.0) for i in range(R.N_TISSUES)], dtype=torch.float32, device=dev)
    t = vols["tissue"].long()
    # trabeculae run mostly cranio-caudally: texture correlated ~2 mm in plane and ~4 mm along z
    tex = _smooth_noise(tg, grid.shape, (4, 2, 2), dev)[0]
    hu = lut[t] + sd[t] * tex
    # compact bone thickness varies along a surface (thick pedicles, facets and endplates, thin laminae
    # and walls): its excess over marrow is scaled by a smooth (~5 mm) field, 0.55 ± 0.35 within 0.15-1
    compact = (t == R.CORTICAL) | (t == R.WALL) | (t == R.POSTERIOR)
    thick = (0.55 + 0.35 * _smooth_noise(tg, grid.shape, 5, dev)[0]).clamp(0.15, 1.0)
    hu = torch.where(compact, canc + (hu - canc) * thick, hu)
    streaks = None
    if vols["metal"] is not None:
        streaks = _metal_streaks(rng, tg, vols["tissue"] == R.METAL, grid)
        hu = hu + streaks
    # partial volume: the slice profile and in-plane kernel of the output grid, in working voxels
    ws = grid.spacing
    sig = []
    for axis in (2, 1, 0):  # z, y, x → working axes k, j, i
        s_mm = out["s_z"] if axis == 2 else out["s_xy"]
        fwhm = max(s_mm, 0.6)
        sig.append(float(np.sqrt(max((fwhm / 2.355) ** 2 - (0.5 * ws / 2.355) ** 2, 0.0)) / ws))
    hu = R.gaussian_blur(hu, tuple(sig))
    hu_table = {str(k): round(table[i], 1) for i, k in enumerate(R.TISSUE_NAMES)}
    hu_table["trabecular_texture"] = round(trab, 3)
    return hu, hu_table


def _metal_streaks(rng, tg, metal: torch.Tensor, grid: R.Grid) -> torch.Tensor:
    """Bright/dark streaks radiating in the axial plane from metal (beam hardening, photon starvation)."""
    dev = grid.device
    out = torch.zeros(grid.shape, dtype=torch.float32, device=dev)
    ks = torch.nonzero(metal.flatten(1).any(dim=1)).flatten()
    if len(ks) == 0:
        return out
    X = grid.axis(0).view(1, -1)
    Y = grid.axis(1).view(-1, 1)
    n_rays = int(rng.integers(6, 16))
    amp = float(rng.uniform(80, 400))
    width = float(rng.uniform(1.0, 3.0))
    k0, k1 = int(ks.min()), int(ks.max()) + 1
    for a in range(k0, k1, 8):  # one pattern per 8-slice slab (metal moves slowly along z)
        b = min(a + 8, k1)
        slab = metal[a:b].any(dim=0)
        if not slab.any():
            continue
        jj, ii = torch.nonzero(slab, as_tuple=True)
        x0 = float(grid.origin[0] + ii.float().mean() * grid.spacing)
        y0 = float(grid.origin[1] + jj.float().mean() * grid.spacing)
        dx, dy = X - x0, Y - y0
        r = torch.sqrt(dx**2 + dy**2)
        th = torch.atan2(dy, dx)
        pat = torch.zeros_like(r)
        angles = rng.uniform(0, np.pi, size=n_rays)
        signs = rng.choice([-1.0, 1.0], size=n_rays, p=[0.6, 0.4])
        for ang, sgn in zip(angles, signs, strict=True):
            perp = r * torch.sin(th - float(ang))  # a line through the metal: both directions
            pat += float(sgn) * amp * torch.exp(-0.5 * (perp / width) ** 2) * torch.exp(-r / 120.0)
        out[a:b] += pat
    return out


# ---------------------------------------------------------------------------------------------------
# output grid


def _resample(hu: torch.Tensor, classes: list[torch.Tensor], grid: R.Grid, out: dict
              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Working grid → scanner grid: linear for HU, nearest for the class volumes (labels, lesions,
    tissue, ribs). Arrays [k, j, i]."""
    d = np.asarray(out["direction"])
    sp, size, origin = np.array(out["spacing"]), np.array(out["size"]), np.array(out["origin"])
    dev = grid.device
    perm = np.argmax(np.abs(d), axis=0)
    if not out["oblique"] and np.allclose(np.abs(d), np.eye(3)[perm].T):
        # axis-aligned: resample each world axis separately (cheap), then permute into array order;
        # the axis that shrinks the volume most goes first (thick slices: z), so later passes move less
        a, cls = hu, torch.stack(classes)
        shrink = [size[o] / hu.shape[2 - int(perm[o])] for o in range(3)]
        for out_axis in sorted(range(3), key=lambda o: shrink[o]):
            w = int(perm[out_axis])
            pos = origin[w] + d[w, out_axis] * sp[out_axis] * np.arange(size[out_axis])
            idx = (pos - grid.origin[w]) / grid.spacing
            dim = 2 - w  # working tensor dims are (z, y, x)
            near = torch.tensor(np.clip(np.round(idx), 0, a.shape[dim] - 1).astype(np.int64), device=dev)
            a = _lerp_axis(a, torch.tensor(idx, dtype=torch.float32, device=dev), dim)
            cls = _take(cls, dim + 1, near)
        order = [2 - int(perm[2]), 2 - int(perm[1]), 2 - int(perm[0])]  # array [k, j, i] ← output axes 2, 1, 0
        cls = cls.permute([0] + [o + 1 for o in order]).contiguous()
        return a.permute(order).contiguous(), list(cls)
    # oblique: full grid_sample
    ii = torch.arange(size[0], device=dev, dtype=torch.float32)
    jj = torch.arange(size[1], device=dev, dtype=torch.float32)
    kk = torch.arange(size[2], device=dev, dtype=torch.float32)
    m = torch.tensor(d * sp, dtype=torch.float32, device=dev)
    o = torch.tensor(origin, dtype=torch.float32, device=dev)
    k3, j3, i3 = torch.meshgrid(kk, jj, ii, indexing="ij")
    pts = o + i3[..., None] * m[:, 0] + j3[..., None] * m[:, 1] + k3[..., None] * m[:, 2]
    n = torch.tensor(grid.shape[::-1], dtype=torch.float32, device=dev) - 1
    g = 2 * (pts - torch.tensor(grid.origin, dtype=torch.float32, device=dev)) / (grid.spacing * n) - 1
    del pts
    ct = F.grid_sample(hu[None, None], g[None], mode="bilinear", padding_mode="border", align_corners=True)[0, 0]
    ll = torch.stack(classes).float()[None]
    nl = F.grid_sample(ll, g[None], mode="nearest", padding_mode="zeros", align_corners=True)[0]
    return ct, [c.to(torch.uint8) for c in nl]


def _lerp_axis(a: torch.Tensor, idx: torch.Tensor, dim: int) -> torch.Tensor:
    """Linear interpolation of ``a`` along ``dim`` at fractional indices ``idx`` (clamped to the edges)."""
    n = a.shape[dim]
    idx = idx.clamp(0, n - 1)
    lo = idx.floor().long().clamp(max=n - 1)
    hi = (lo + 1).clamp(max=n - 1)
    f = (idx - lo.float()).view([-1 if d == dim else 1 for d in range(a.dim())])
    return _take(a, dim, lo) * (1 - f) + _take(a, dim, hi) * f


def _take(a: torch.Tensor, dim: int, idx: torch.Tensor) -> torch.Tensor:
    """``a.index_select(dim, idx)`` by advanced indexing: the same values, an order of magnitude faster
    on a CPU for the outer and last dimensions of a large volume (torch 2.x)."""
    return a[(slice(None),) * dim + (idx,)]


def _scanner(rng, tg, cfg: SynthConfig, ct: torch.Tensor, labels: torch.Tensor, lesions: torch.Tensor,
             tissue: torch.Tensor, out: dict) -> tuple[torch.Tensor, dict]:
    """Noise, bias field, reconstruction circle, low-HU clipping and int16 range, on the scanner grid."""
    dev = ct.device
    noise = _u(rng, cfg.noise_sd)
    corr = _u(rng, cfg.corr_noise_sd)
    bias = _u(rng, cfg.bias_hu)
    ct = ct + noise * torch.randn(ct.shape, generator=tg, device=dev)
    if corr > 0:
        c = R.gaussian_blur(torch.randn(ct.shape, generator=tg, device=dev), (0.0, 1.2, 1.2))
        ct = ct + corr * c / _rounded_std(c)
    if bias > 0:
        b = _smooth_noise(tg, tuple(ct.shape), max(max(ct.shape) // 3, 2), dev)[0]
        ct = ct + bias * b
    post: dict[str, Any] = {"noise_sd": round(noise, 2), "corr_noise_sd": round(corr, 2), "bias_hu": round(bias, 2),
                            "fov_circle": None, "clip_low_hu": None}
    if rng.random() < cfg.p_fov_circle:
        pad = float(rng.choice([-1024.0, -2048.0, -3024.0]))
        d, sp, origin = np.asarray(out["direction"]), np.array(out["spacing"]), np.array(out["origin"])
        idx = [torch.arange(n, device=dev, dtype=torch.float32) for n in out["size"]]
        shapes = [(1, 1, -1), (1, -1, 1), (-1, 1, 1)]
        xy = []
        for w in (0, 1):
            v = torch.full((1, 1, 1), float(origin[w] - out["center"][w]), device=dev)
            for a in range(3):
                v = v + float(d[w, a] * sp[a]) * idx[a].view(shapes[a])
            xy.append(v)
        outside = (xy[0] ** 2 + xy[1] ** 2) > (out["fov_mm"] / 2) ** 2
        outside = outside.expand(ct.shape)
        ct = torch.where(outside, torch.full_like(ct, pad), ct)
        labels[outside] = 0
        lesions[outside] = 0
        tissue[outside] = R.AIR
        post["fov_circle"] = pad
    if rng.random() < cfg.p_clip_low:
        thr = _u(rng, cfg.clip_low_hu)
        ct = torch.where(ct < thr, torch.zeros_like(ct), ct)
        post["clip_low_hu"] = round(thr, 1)
    post["bone_window_hu"], post["display_window"] = None, None
    r = rng.random()
    if r < cfg.p_bone_window:
        thr = _u(rng, cfg.bone_window_hu)
        fill = float(rng.choice([0.0, -1024.0, round(thr)]))
        ct = torch.where(ct < thr, torch.full_like(ct, fill), ct)
        post["bone_window_hu"] = [round(thr, 1), fill]
    elif r < cfg.p_bone_window + cfg.p_display_window:
        width, level = _u(rng, cfg.display_width_hu), _u(rng, cfg.display_level_hu)
        steps = float(rng.choice([255.0, 4095.0]))  # 8- or 12-bit values, rescaled back to HU by the reader
        lo = level - width / 2
        ct = lo + torch.round((ct.clamp(lo, level + width / 2) - lo) / width * steps) * (width / steps)
        post["display_window"] = [round(width, 1), round(level, 1), int(steps) + 1]
    ct = ct.round().clamp(-3024, 3071)
    return ct, post
