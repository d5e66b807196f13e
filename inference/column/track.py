"""Track the vertebral-body centreline from bone geometry alone (DESIGN §1, the spine-first stage).

No network and nothing learned: bone is found by a threshold adapted to the scan (a bone-window export
gets a lower one), so windowing, contrast and kernels that change soft tissue do not change the track.
Steps, on an axis-aligned 2 mm LPS grid (`inference.preprocess.resample_ct`):

1. **Bone** above the threshold, taken over ±4 mm head to feet and closed by 2 mm in each axial slice.
2. **Body evidence** per pixel: how deep it lies inside hole-filled bone (in-plane distance transform,
   rising to 1 at `BODY_DEPTH_MM`, falling to 0 at `MAX_DEPTH_MM`, so a liver or a contrast-filled heart
   that passes the threshold scores low), times a **canal cue**: an enclosed non-bone hole of canal size
   8–40 mm behind the pixel (the spinal canal the arch closes).
3. **The path**: dynamic programming over the axial slices picks one pixel per slice, moving at most
   `MAX_STEP_VOX` voxels between slices with a quadratic penalty, that maximises the summed evidence.
4. **The track** is the longest run of slices along that path with body evidence and a canal seen
   within `CANAL_GAP_MM`; its points are returned in LPS mm.

This is the measured prototype of ``shared/research/column_tracker.md`` (steps 1-3 there) made a tested
stage; the straightened spine, disc chain and naming build on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ..preprocess import resample_ct, working_grid
from ..volume import Volume

GRID_MM = 2.0
"""Working grid of the tracker."""
BONE_HU, BONE_HU_WINDOWED = 200.0, 100.0
"""Bone threshold on a CT in HU, and on a bone-window export (smoothing on resampling dilutes its 0/bone edges)."""
Z_SPAN_MM = 4.0
"""Bone is taken over ±this many mm head to feet (bridges thin cortex and slice gaps)."""
BODY_DEPTH_MM, MAX_DEPTH_MM = 18.0, 35.0
"""Depth inside filled bone at which the body evidence is full, and beyond which nothing is a vertebra."""
CANAL_AREA_MM2 = (40.0, 700.0)
"""Area of an enclosed hole that can be the spinal canal in one axial slice."""
CANAL_BEHIND_MM = (8.0, 40.0)
"""How far behind a body pixel its canal lies."""
MAX_STEP_VOX = 2
"""Largest in-plane move of the path between neighbouring slices (2 voxels of 2 mm per 2 mm slice)."""
STEP_PENALTY = 0.08
"""Cost of a one-voxel move per slice (quadratic in the move)."""
MIN_EVIDENCE = 0.05
"""A path slice counts as on the column when its evidence reaches this."""
CANAL_GAP_MM = 20.0
"""Slices without a canal (discs, foramina) bridged inside a run."""
MAX_LATERAL_SLOPE, SLOPE_WINDOW_MM = 1.0, 30.0
"""Where the path moves sideways by more than this many mm per mm along the body axis, measured over this
window, it is not on the column (real column tracks: at most 0.67, at the sacrum; a track sweeping
into the hip on a bone-window export: 1.4)."""
RAY_REACH_MM, RAY_COUNT, RAY_HITS = 30.0, 16, 12
"""A pixel counts as inside a body when this many of `RAY_COUNT` in-plane rays meet bone within the reach:
fills hollow, osteoporotic or broken-cortex bodies whose ring of bone is not closed."""


@dataclass
class ColumnTrack:
    """The body centreline found in one CT.

    Attributes
    ----------
    points_lps : (N, 3) float
        One point per 2 mm slice of the tracking grid, feet first (LPS +z is the head), LPS mm.
    evidence : (N,) float
        Body evidence at each point (0–1).
    canal : (N,) bool
        Whether a canal hole lies behind the point in its slice.
    bone_hu : float
        The bone threshold used.
    windowed : bool
        True when the scan looked like a bone-window export.
    """

    points_lps: np.ndarray
    evidence: np.ndarray
    canal: np.ndarray
    bone_hu: float
    windowed: bool
    notes: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return len(self.points_lps) > 0

    def length_mm(self) -> float:
        if len(self.points_lps) < 2:
            return 0.0
        return float(np.linalg.norm(np.diff(self.points_lps, axis=0), axis=1).sum())

    def at_z(self, z_mm: float) -> np.ndarray | None:
        """The track's point (LPS mm) at the height ``z_mm``, interpolated; None outside the track."""
        if not self.found:
            return None
        z = self.points_lps[:, 2]
        if not z.min() - GRID_MM / 2 <= z_mm <= z.max() + GRID_MM / 2:
            return None
        order = np.argsort(z)
        return np.array([np.interp(z_mm, z[order], self.points_lps[order, a]) for a in range(3)])


def looks_bone_windowed(ct: Volume, sample: int = 2_000_000) -> bool:
    """True for an export with everything below a bone threshold set to one value: almost no voxel between
    -100 and 180 HU other than that value."""
    flat = ct.array.ravel()
    if flat.size > sample:
        flat = flat[:: flat.size // sample]
    mid = flat[(flat > -100) & (flat < 180)]
    if mid.size == 0:
        return True
    values, counts = np.unique(mid, return_counts=True)
    return bool(counts.max() > 0.98 * mid.size)


def track_column(ct: Volume) -> ColumnTrack:
    """The vertebral-body centreline of ``ct`` (see the module docstring); empty when no column is seen."""
    windowed = looks_bone_windowed(ct)
    thr = BONE_HU_WINDOWED if windowed else BONE_HU
    grid = working_grid(ct, GRID_MM)
    hu = resample_ct(ct, grid)  # [k, j, i] = [z, y, x] LPS, 2 mm
    bone = _bone(hu, thr)
    evidence, canal = _evidence(bone)
    path = _best_path(evidence)
    kk = np.arange(len(path))
    ev = evidence[kk, path[:, 0], path[:, 1]]
    cn = canal[kk, path[:, 0], path[:, 1]]
    run = _longest_run(ev >= MIN_EVIDENCE, cn)
    if run is not None:
        run = _without_sideways(path, run, cn)
    notes = [] if not windowed else ["bone-window export: bone threshold lowered to 100 HU"]
    if run is None:
        return ColumnTrack(np.zeros((0, 3)), np.zeros(0), np.zeros(0, bool), thr, windowed, notes)
    a, b = run
    ijk = np.column_stack([path[a:b, 1], path[a:b, 0], kk[a:b]]).astype(float)  # (i=x, j=y, k=z)
    return ColumnTrack(grid.index_to_lps(ijk), ev[a:b], cn[a:b], thr, windowed, notes)


def _bone(hu: np.ndarray, thr: float) -> np.ndarray:
    """Bone over ±`Z_SPAN_MM`, closed in-plane (2 mm)."""
    reach = max(1, int(round(Z_SPAN_MM / GRID_MM)))
    bone = ndi.maximum_filter1d(hu, size=2 * reach + 1, axis=0) > thr
    structure = np.zeros((1, 3, 3), bool)
    structure[0] = ndi.generate_binary_structure(2, 1)
    return ndi.binary_closing(bone, structure=structure, iterations=1)


def _evidence(bone: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: body evidence (0–1) and whether a canal hole lies `CANAL_BEHIND_MM` behind it."""
    k = bone.shape[0]
    evidence = np.zeros(bone.shape, np.float32)
    canal_behind = np.zeros(bone.shape, bool)
    lo_area, hi_area = (a / GRID_MM**2 for a in CANAL_AREA_MM2)
    near, far = (int(round(d / GRID_MM)) for d in CANAL_BEHIND_MM)
    for z in range(k):
        sl = bone[z]
        if not sl.any():
            continue
        filled = ndi.binary_fill_holes(sl)
        holes = filled & ~sl
        filled = filled | _enclosed(sl)
        lab, n = ndi.label(holes)
        canal = np.zeros_like(sl)
        if n:
            sizes = ndi.sum(holes, lab, index=np.arange(1, n + 1))
            keep = np.flatnonzero((sizes >= lo_area) & (sizes <= hi_area)) + 1
            canal = np.isin(lab, keep)
        depth = ndi.distance_transform_edt(filled & ~canal) * GRID_MM  # the canal cut out: the body, not the ring
        body = np.clip(depth / BODY_DEPTH_MM, 0.0, 1.0) * (depth < MAX_DEPTH_MM)
        # a canal pixel at row y marks the rows y - far … y - near in front of it (LPS: +y is posterior)
        behind = np.zeros_like(sl)
        for d in range(near, far + 1):
            behind[:-d] |= canal[d:]
        evidence[z] = body * (0.1 + 0.9 * behind)
        canal_behind[z] = behind
    return evidence, canal_behind


def _enclosed(sl: np.ndarray) -> np.ndarray:
    """Pixels of one slice that `RAY_HITS` of `RAY_COUNT` rays leave through bone within `RAY_REACH_MM`."""
    steps = int(round(RAY_REACH_MM / GRID_MM))
    hits = np.zeros(sl.shape, np.int16)
    nj, ni = sl.shape
    for n in range(RAY_COUNT):
        a = 2 * np.pi * n / RAY_COUNT
        seen = np.zeros_like(sl)
        for step in range(1, steps + 1):
            dj, di = int(round(step * np.sin(a))), int(round(step * np.cos(a)))
            src_j = slice(max(0, dj), nj + min(0, dj))
            dst_j = slice(max(0, -dj), nj + min(0, -dj))
            src_i = slice(max(0, di), ni + min(0, di))
            dst_i = slice(max(0, -di), ni + min(0, -di))
            seen[dst_j, dst_i] |= sl[src_j, src_i]
        hits += seen
    return hits >= RAY_HITS


def _best_path(evidence: np.ndarray) -> np.ndarray:
    """(K, 2) rows (j, i) of the pixel chosen in each slice: the max-evidence path with bounded moves."""
    k, nj, ni = evidence.shape
    score = evidence[0].astype(np.float32).copy()
    moves = [(dj, di) for dj in range(-MAX_STEP_VOX, MAX_STEP_VOX + 1) for di in range(-MAX_STEP_VOX, MAX_STEP_VOX + 1)]
    back = np.zeros((k, nj, ni), np.int8)
    for z in range(1, k):
        best = np.full((nj, ni), -np.inf, np.float32)
        arg = np.zeros((nj, ni), np.int8)
        for m, (dj, di) in enumerate(moves):
            shifted = np.full((nj, ni), -np.inf, np.float32)
            src_j = slice(max(0, -dj), nj - max(0, dj))
            dst_j = slice(max(0, dj), nj - max(0, -dj))
            src_i = slice(max(0, -di), ni - max(0, di))
            dst_i = slice(max(0, di), ni - max(0, -di))
            shifted[dst_j, dst_i] = score[src_j, src_i] - STEP_PENALTY * (dj * dj + di * di)
            better = shifted > best
            best[better] = shifted[better]
            arg[better] = m
        score = best + evidence[z]
        back[z] = arg
    path = np.zeros((k, 2), int)
    path[-1] = np.unravel_index(int(np.argmax(score)), score.shape)
    for z in range(k - 1, 0, -1):
        dj, di = moves[int(back[z, path[z, 0], path[z, 1]])]
        path[z - 1] = (path[z, 0] - dj, path[z, 1] - di)
    return path


def _without_sideways(path: np.ndarray, run: tuple[int, int], canal: np.ndarray) -> tuple[int, int]:
    """``run`` [a, b) of ``path``, cut where the path moves left or right faster than `MAX_LATERAL_SLOPE` over
    `SLOPE_WINDOW_MM` (leaving the column, below the sacrum into a hip on a bone-window export, rather than
    following a scoliosis): the longest piece that sees a canal."""
    a, b = run
    w = max(1, int(round(SLOPE_WINDOW_MM / GRID_MM)))
    x = path[a:b, 1].astype(float)
    if len(x) <= w:
        return run
    steep = np.flatnonzero(np.abs(x[w:] - x[:-w]) > MAX_LATERAL_SLOPE * w) + w // 2  # window centres
    if steep.size == 0:
        return run
    cuts = [0, *steep.tolist(), len(x)]
    pieces = [(a + lo, a + hi) for lo, hi in zip(cuts, cuts[1:], strict=False) if hi - lo > 1]
    seen = [p for p in pieces if canal[p[0]:p[1]].sum() >= 3] or pieces
    return max(seen, key=lambda p: p[1] - p[0])


def _longest_run(on: np.ndarray, canal: np.ndarray) -> tuple[int, int] | None:
    """[a, b) of the longest run of ``on`` slices (gaps of `CANAL_GAP_MM` bridged) that sees a canal."""
    gap = int(round(CANAL_GAP_MM / GRID_MM))
    best, start, last_on = None, None, -10**9
    runs = []
    for z, flag in enumerate(on):
        if flag:
            if start is None or z - last_on > gap:
                if start is not None:
                    runs.append((start, last_on + 1))
                start = z
            last_on = z
    if start is not None:
        runs.append((start, last_on + 1))
    for a, b in runs:
        if canal[a:b].sum() >= 3 and (best is None or b - a > best[1] - best[0]):
            best = (a, b)
    return best
