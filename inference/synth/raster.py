"""Painting a sampled `Layout` into tissue, label and lesion volumes on an LPS-aligned working grid.

The working grid has the identity direction: array [k, j, i] = [z, y, x], voxel (i, j, k) at
``origin + spacing * (i, j, k)`` LPS mm. Everything is torch so it runs on a GPU as well; random
fields come from the ``torch.Generator`` passed in, scalars from the numpy ``Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .layout import Layout, Level, nominal

# tissue classes of the working volume
(AIR, FAT, MUSCLE, ORGAN, LUNG, GAS, CSF, CORD, DISC, CANCELLOUS, CORTICAL, TABLE, METAL, LYTIC, BLASTIC, SCLEROTIC,
 WALL, POSTERIOR, VESSEL) = range(19)
N_TISSUES = 19
TISSUE_NAMES = ("air", "fat", "muscle", "organ", "lung", "gas", "csf", "cord", "disc", "cancellous", "cortical",
                "table", "metal", "lytic", "blastic", "sclerotic", "wall", "posterior", "vessel")
"""CANCELLOUS: vertebral-body (and rib, pelvis) marrow; CORTICAL: the shell of the arch, ribs and pelvis
and the body's endplates; WALL: the thin side walls of a body; POSTERIOR: the inside of the arch and
its processes (thin plates: mostly compact bone at 1 mm); VESSEL: contrast-filled blood (aorta, vena
cava, heart chambers), painted only in contrast-enhanced cases."""


@dataclass
class Grid:
    """LPS-aligned working grid (identity direction)."""

    origin: np.ndarray  # (3,) x, y, z mm of voxel [0, 0, 0]
    spacing: float
    shape: tuple[int, int, int]  # (K, J, I)
    device: torch.device

    def box(self, pts: np.ndarray, margin: float) -> tuple[slice, slice, slice] | None:
        """Voxel slices (k, j, i) of the LPS bounding box of ``pts`` (N, 3) plus ``margin`` mm; None if outside."""
        lo = np.floor((pts.min(axis=0) - margin - self.origin) / self.spacing).astype(int)
        hi = np.ceil((pts.max(axis=0) + margin - self.origin) / self.spacing).astype(int) + 1
        size = np.array(self.shape[::-1])
        lo, hi = np.clip(lo, 0, size), np.clip(hi, 0, size)
        if np.any(hi <= lo):
            return None
        return slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0])

    def coords(self, box: tuple[slice, slice, slice]) -> torch.Tensor:
        """LPS mm of the voxels of ``box``, shape (k, j, i, 3) in (x, y, z) order, float32."""
        ax = [
            torch.arange(s.start, s.stop, device=self.device, dtype=torch.float32) * self.spacing + float(o)
            for s, o in zip(box[::-1], self.origin, strict=True)
        ]
        z, y, x = torch.meshgrid(ax[2], ax[1], ax[0], indexing="ij")
        return torch.stack([x, y, z], dim=-1)

    def axis(self, n: int) -> torch.Tensor:
        """LPS mm along world axis n (0 = x, 1 = y, 2 = z) of every voxel plane."""
        size = self.shape[::-1][n]
        return torch.arange(size, device=self.device, dtype=torch.float32) * self.spacing + float(self.origin[n])


_MASK_CACHE: dict[tuple[str, str], torch.Tensor] = {}


def _mask_tensor(lv_shape, device: torch.device) -> torch.Tensor:
    key = (lv_shape.name, str(device))
    if key not in _MASK_CACHE:
        _MASK_CACHE[key] = torch.from_numpy(lv_shape.mask.astype(np.float32))[None, None].to(device)
    return _MASK_CACHE[key]


def _norm(q: torch.Tensor, origin: np.ndarray, size_ijk: tuple[int, ...]) -> torch.Tensor:
    """Canonical mm (…, 3) → grid_sample coordinates (align_corners=True) of a 1 mm shape grid."""
    o = torch.tensor(origin, dtype=q.dtype, device=q.device)
    s = torch.tensor([max(n - 1, 1) for n in size_ijk], dtype=q.dtype, device=q.device)
    return 2.0 * (q - o) / s - 1.0


def _sample(vol: torch.Tensor, g: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample a (1, C, K, J, I) tensor at grid coords (k, j, i, 3) → (C, k, j, i)."""
    return F.grid_sample(vol, g[None], mode=mode, padding_mode="zeros", align_corners=True)[0]


def paint_vertebra(
    lv: Level,
    grid: Grid,
    vols: dict[str, torch.Tensor],
    rng: np.random.Generator,
    tg: torch.Generator,
    elastic_mm: float,
) -> dict[str, Any]:
    """Rasterise one vertebra (label, bone, lesions, dense endplates) into ``vols`` in place."""
    sh = lv.shape
    size_ijk = sh.mask.shape[::-1]
    ext = np.array(size_ijk, dtype=float) - 1
    corners = np.array([[a, b, c] for a in (0, ext[0]) for b in (0, ext[1]) for c in (0, ext[2])]) + sh.origin
    box = grid.box(lv.to_world(corners), margin=elastic_mm + 2 * grid.spacing)
    info: dict[str, Any] = {"level": lv.name, "voxels": 0}
    if box is None:
        return info
    dev = grid.device
    p = grid.coords(box)
    rot = torch.tensor(lv.rotation, dtype=torch.float32, device=dev)
    c = torch.tensor(lv.center, dtype=torch.float32, device=dev)
    scale = torch.tensor(lv.scale, dtype=torch.float32, device=dev)
    q = ((p - c) @ rot) / scale  # R^T (p - c), then undo the scaling: canonical mm
    if elastic_mm > 0:
        field = torch.randn((1, 3, 4, 4, 4), generator=tg, device=dev) * (elastic_mm / 2.0)
        q = q + _sample(field, _norm(q, sh.origin, size_ijk).clamp(-1, 1)).permute(1, 2, 3, 0)
    bc, hs = sh.get("body_center"), sh.get("body_half_size")
    front = float(sh.meta["canal_center"][1]) - float(sh.meta["canal_radius"])
    in_body_zone = q[..., 1] < front
    dense = None
    if lv.fracture:
        # wedge: the loss grows from the posterior wall (t = 0) to the anterior wall (t = 1)
        t = ((front - q[..., 1]) / (2 * float(hs[1]))).clamp(0, 1)
        loss = lv.fracture["posterior"] + (lv.fracture["anterior"] - lv.fracture["posterior"]) * t
        zc = float(bc[2])
        qz = torch.where(in_body_zone, zc + (q[..., 2] - zc) / (1 - loss), q[..., 2])
        q = torch.stack([q[..., 0], q[..., 1], qz], dim=-1)
        # compacted trabeculae next to the broken endplates look denser (sclerotic band, ~3 mm)
        dense = in_body_zone & ((qz - zc).abs() > float(hs[2]) - 3.0 / (1 - loss))
    m = _sample(_mask_tensor(sh, dev), _norm(q, sh.origin, size_ijk))[0] > 0.5
    lab = vols["labels"][box]
    free = lab == 0
    mine = m & free
    lab[mine] = lv.vid
    vols["bone"][box] |= m
    if "posterior" in vols:  # the arch and its processes: mostly compact bone (denser than the body)
        vols["posterior"][box] |= mine & ~in_body_zone
    body = mine & in_body_zone
    les = vols["lesions"][box]
    if lv.fracture:
        les[body] = 3
        vols["dense"][box] |= body & dense
    for spec in lv.lesions:
        cen = torch.tensor(spec["center"], dtype=torch.float32, device=dev)
        rad = torch.tensor(spec["radii"], dtype=torch.float32, device=dev)
        r2 = (((q - cen) / rad) ** 2).sum(-1)
        inside = body & (r2 < 1.0)
        if spec["type"] == "lytic":
            les[inside] = 1
        elif spec["type"] == "blastic":
            les[inside] = 2
        else:  # mixed: sclerotic core in a lytic rim
            les[inside & (r2 >= 0.35)] = 1
            les[inside & (r2 < 0.35)] = 2
    info["voxels"] = int(mine.sum())
    return info


def paint_pelvis(sacrum: Level, pelvis_shape, grid: Grid, vols: dict[str, torch.Tensor]) -> None:
    """The hip bones and femora, rigidly attached to the sacrum's pose (bone tissue, label 0)."""
    size_ijk = pelvis_shape.mask.shape[::-1]
    ext = np.array(size_ijk, dtype=float) - 1
    corners = np.array([[a, b, c] for a in (0, ext[0]) for b in (0, ext[1]) for c in (0, ext[2])])
    box = grid.box(sacrum.to_world(corners + pelvis_shape.origin), margin=2 * grid.spacing)
    if box is None:
        return
    dev = grid.device
    p = grid.coords(box)
    rot = torch.tensor(sacrum.rotation, dtype=torch.float32, device=dev)
    c = torch.tensor(sacrum.center, dtype=torch.float32, device=dev)
    scale = torch.tensor(sacrum.scale, dtype=torch.float32, device=dev)
    q = ((p - c) @ rot) / scale
    m = _sample(_mask_tensor(pelvis_shape, dev), _norm(q, pelvis_shape.origin, size_ijk))[0] > 0.5
    vols["bone"][box] |= m & (vols["labels"][box] == 0)


def paint_disc(up: Level, down: Level, fused: bool, grid: Grid, vols: dict[str, torch.Tensor]) -> None:
    """An elliptic cylinder between two bodies' endplates: disc tissue, or a bone bridge when fused.

    Its cross-section is the smaller of the two endplate footprints (bulging 5 % beyond it); its top and
    bottom are the planes of the two endplates (a wedge in a lordotic or kyphotic segment), moved 2 mm
    into both bodies to fill concave endplates (bone is painted over it).
    """
    pa, pb = up.to_world(up.endplate(-1)[None])[0], down.to_world(down.endplate(+1)[None])[0]
    (ua, ub), (da, db) = up.footprint(-1), down.footprint(+1)
    u_ax, _, vt = np.linalg.svd(up.rotation + down.rotation)
    r_mid = u_ax @ vt
    mid = 0.5 * (pa + pb)
    ra, rb = 1.05 * min(ua, da), 1.05 * min(ub, db)
    half_len = abs(float(np.dot(pa - pb, r_mid[:, 2]))) / 2 + 2.0 + 0.35 * max(ra, rb)  # box only
    ends = np.array([[sx * ra, sy * rb, sz * half_len] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    box = grid.box(ends @ r_mid.T + mid, margin=grid.spacing)
    if box is None:
        return
    dev = grid.device

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.tensor(a, dtype=torch.float32, device=dev)

    p = grid.coords(box)
    u = (p - t(mid)) @ t(r_mid)
    below_up = (p - t(pa)) @ t(up.rotation[:, 2]) <= 2.0
    above_down = (p - t(pb)) @ t(down.rotation[:, 2]) >= -2.0
    inside = ((u[..., 0] / ra) ** 2 + (u[..., 1] / rb) ** 2 <= 1.0) & below_up & above_down
    if fused:
        lab = vols["labels"][box]
        free = inside & (lab == 0)
        lab[free & (u[..., 2] >= 0)] = up.vid
        lab[free & (u[..., 2] < 0)] = down.vid
        vols["bone"][box] |= free
    else:
        vols["disc"][box] |= inside


def rib_centerlines(layout: Layout, body: dict[str, np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Dense points (N, 3) LPS mm along each rib: head at the body, tubercle at the transverse process,
    then an arc around the rib-cage ellipse, descending anteriorly."""
    lines = []
    ribbed = [lv for lv in layout.levels if lv.ribs]
    for lv in ribbed:
        u = nominal(lv.name) if lv.name != "L1" else 19.0
        rib_no = min(max(u - 6.0, 1.0), 13.0)  # T1 → rib 1
        ra, rb = _ribcage(rib_no, body["habitus"])
        ra, rb = ra * float(rng.uniform(0.94, 1.06)), rb * float(rng.uniform(0.94, 1.06))
        drop = float(np.interp(rib_no, [1, 3, 7, 10, 12], [20, 50, 75, 65, 35])) * float(rng.uniform(0.7, 1.3))
        end = float(np.interp(rib_no, [1, 7, 9, 10, 11, 12, 13], [2.3, 2.6, 2.35, 2.2, 1.4, 1.0, 0.6]))
        bc, hs = lv.shape.get("body_center"), lv.shape.get("body_half_size")
        for side, key in ((1.0, "tp_left"), (-1.0, "tp_right")):
            tp = lv.to_world(lv.shape.get(key) + np.array([0.0, -2.0, 0.0]))
            head = lv.to_world(bc + np.array([side * 0.8 * hs[0], 0.6 * hs[1], 0.3 * hs[2]]))
            # rib-cage ellipse in the axial plane of the tubercle: its back passes ~8 mm behind the tubercle
            cx, cy = lv.center[0], tp[1] + 8.0 - rb
            th0 = float(np.arcsin(min(abs(tp[0] - cx) * 1.15 / ra, 0.95)))
            th = np.linspace(th0, end, 80)
            arc = np.c_[
                cx + side * ra * np.sin(th),
                cy + rb * np.cos(th),
                tp[2] - drop * ((th - th0) / max(end - th0, 1e-3)) ** 1.3,
            ]
            poly = np.vstack([head, tp, arc])
            seg = np.linalg.norm(np.diff(poly, axis=0), axis=1)
            s = np.concatenate([[0], np.cumsum(seg)])
            t = np.arange(0, s[-1], 0.5)
            lines.append(np.c_[[np.interp(t, s, poly[:, d]) for d in range(3)]].T)
    return lines


def _ribcage(rib_no: float, habitus: float) -> tuple[float, float]:
    """Half width and half depth (mm) of the rib-cage ellipse at a rib (adult means × habitus)."""
    ra = float(np.interp(rib_no, [1, 2, 4, 7, 9, 11, 13], [55, 80, 105, 125, 130, 125, 115]))
    rb = float(np.interp(rib_no, [1, 2, 4, 7, 9, 11, 13], [40, 60, 80, 95, 100, 100, 95]))
    return ra * habitus, rb * habitus


def gaussian_blur(x: torch.Tensor, sigma_vox: tuple[float, float, float]) -> torch.Tensor:
    """Separable Gaussian blur of a (K, J, I) tensor; ``sigma_vox`` per axis (k, j, i) in voxels.

    Edges are replicated. Each pass sums shifted views with the kernel's weights, which on a CPU is
    several times faster than a 3D (or row-wise 1D) convolution and runs unchanged on a GPU.
    """
    out = x
    for axis, s in enumerate(sigma_vox):
        if s < 0.3:
            continue
        r = max(int(np.ceil(3 * s)), 1)
        t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
        k = torch.exp(-0.5 * (t / s) ** 2)
        k = (k / k.sum()).tolist()
        n = out.shape[axis]
        # replicate-pad, then a weighted sum of shifted views: no copies of the whole volume per tap
        padded = torch.cat(
            [
                out.narrow(axis, 0, 1).expand(*_rep(out.shape, axis, r)),
                out,
                out.narrow(axis, n - 1, 1).expand(*_rep(out.shape, axis, r)),
            ],
            dim=axis,
        )
        acc = padded.narrow(axis, 0, n) * k[0]
        for tap in range(1, 2 * r + 1):
            acc.add_(padded.narrow(axis, tap, n), alpha=k[tap])
        out = acc
    return out.contiguous()


def _rep(shape: torch.Size, axis: int, r: int) -> list[int]:
    out = list(shape)
    out[axis] = r
    return out


def erode(mask: torch.Tensor, voxels: int = 1) -> torch.Tensor:
    """Binary erosion of a (K, J, I) bool tensor by a (2v+1)³ cube."""
    x = (~mask).float()[None, None]
    return ~(F.max_pool3d(x, 2 * voxels + 1, stride=1, padding=voxels)[0, 0] > 0)


def segment_tube(
    grid: Grid, a: np.ndarray, b: np.ndarray, radius: float
) -> tuple[tuple[slice, ...], torch.Tensor] | None:
    """Voxels within ``radius`` mm of segment a–b (LPS mm): (box, mask of the box)."""
    box = grid.box(np.vstack([a, b]), margin=radius + grid.spacing)
    if box is None:
        return None
    p = grid.coords(box)
    at = torch.tensor(a, dtype=torch.float32, device=grid.device)
    d = torch.tensor(b - a, dtype=torch.float32, device=grid.device)
    t = (((p - at) @ d) / float(d @ d)).clamp(0, 1)
    dist = (p - at - t[..., None] * d).norm(dim=-1)
    return box, dist <= radius
