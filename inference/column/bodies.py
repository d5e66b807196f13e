"""Vertebra candidates along the tracked column (DESIGN §1: detection follows the column).

The localizer's center heatmap is read along the straightened spine instead of over the whole scan:
in each plane perpendicular to the column, the strongest heatmap voxel within the vertebra's reach of
the centreline (`BOX_AP_MM` × `BOX_LR_MM`) gives a profile along the arc length ``s``. Each vertebra is a
bump of that profile. On a scan whose soft tissue the localizer misreads (a bone-window export, for one)
the bumps are lower than the whole-scan peak threshold but still regular and still on the column, so:

- peaks of the profile at least `MIN_PROMINENCE` above the troughs either side are body candidates;
- `body_chain` keeps the chain of peaks with the best score: each peak adds its height less
  `PEAK_COST`, each gap between `MIN_GAP_MM` and `MAX_GAP_MM` costs `GAP_RATIO_PENALTY` times the squared
  log ratio to the gap before it (vertebral heights change slowly along the column), and a gap of twice
  the neighbouring ones (a vertebra missed) costs `SKIP_PENALTY`;
- every chain peak becomes a `Candidate` at its 3D heatmap maximum, with the localizer's level votes
  around it (`inference.localize.candidate_at`), for the joint naming of `inference.label`.

Nothing off the column can become a candidate, so the peak threshold can be low.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..localize import OFF_COLUMN_MM, Candidate, LocalizerOutput, candidate_at
from .straighten import StraightSpine

PROFILE_STEP_MM = 2.0
"""Spacing of the heatmap profile along the column."""
BOX_AP_MM = (-25.0, 35.0)
"""A vertebra's center lies this far in front of (negative) and behind the tracked centreline, which runs
through the back half of the bodies."""
BOX_LR_MM = 16.0
"""… and at most this far to either side."""
MIN_PEAK = 0.08
"""Profile heights below this are not a vertebra (a scan without a column gives ~0)."""
MIN_PROMINENCE = 0.04
"""A peak must rise this much above the lowest profile point between it and each higher neighbour peak."""
MIN_GAP_MM, MAX_GAP_MM = 12.0, 48.0
"""Distance between neighbouring vertebra centers along the column: C3 (≈15 mm) to a tall lumbar body with
its disc (≈42 mm)."""
PEAK_COST = 0.05
"""Each peak of the chain adds its height less this."""
GAP_RATIO_PENALTY = 1.0
"""Cost per unit of squared log ratio between neighbouring gaps."""
SKIP_PENALTY = 0.3
"""Cost of a gap of two vertebrae (one missed between two peaks)."""


def heat_profile(spine: StraightSpine, out: LocalizerOutput) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The localizer heatmap along ``spine``: (s mm, the strongest value per plane, its working-grid voxel
    (k, j, i) per plane)."""
    s = np.arange(spine.s_mm[0], spine.s_mm[-1] + 1e-9, PROFILE_STEP_MM)
    step = out.grid.spacing
    ap = np.arange(BOX_AP_MM[0], BOX_AP_MM[1] + 1e-9, step)
    lr = np.arange(-BOX_LR_MM, BOX_LR_MM + 1e-9, step)
    ss, aa, ll = np.meshgrid(s, ap, lr, indexing="ij")
    lps = spine.to_lps(np.column_stack([ss.ravel(), aa.ravel(), ll.ravel()]))
    kji = np.round(out.grid.lps_to_index(lps)[:, ::-1]).astype(int)
    shape = np.array(out.heatmap.shape)
    inside = np.all((kji >= 0) & (kji < shape), axis=1)
    kji = np.clip(kji, 0, shape - 1)
    h = np.where(inside, out.heatmap[tuple(kji.T)], 0.0).reshape(len(s), -1)
    best = np.argmax(h, axis=1)
    return s, h[np.arange(len(s)), best], kji.reshape(len(s), -1, 3)[np.arange(len(s)), best]


def profile_peaks(h: np.ndarray) -> np.ndarray:
    """Indices of the local maxima of ``h`` at least `MIN_PEAK` high and `MIN_PROMINENCE` above the troughs
    that separate them from higher peaks on both sides (or the profile's ends)."""
    n = len(h)
    cand = [i for i in range(n)
            if h[i] >= MIN_PEAK and (i == 0 or h[i] > h[i - 1]) and (i == n - 1 or h[i] >= h[i + 1])]
    keep = []
    for i in cand:
        left = h[: i + 1][::-1]
        higher = np.flatnonzero(left > h[i])
        lo_left = left[: higher[0]].min() if len(higher) else left.min()
        right = h[i:]
        higher = np.flatnonzero(right > h[i])
        lo_right = right[: higher[0]].min() if len(higher) else right.min()
        if h[i] - max(lo_left, lo_right) >= MIN_PROMINENCE:
            keep.append(i)
    return np.array(keep, int)


def body_chain(s: np.ndarray, h: np.ndarray) -> list[int]:
    """Indices (into ``s``) of the peaks of the best chain (see the module docstring)."""
    peaks = profile_peaks(h)
    if len(peaks) == 0:
        return []
    pos = s[peaks]
    gain = h[peaks] - PEAK_COST

    def gap_of(i: int, j: int) -> tuple[float, float] | None:
        """(effective gap, cost) between peaks i < j; None where they cannot be neighbours."""
        gap = pos[j] - pos[i]
        if gap < MIN_GAP_MM:
            return None
        if gap <= MAX_GAP_MM:
            return gap, 0.0
        if gap <= 2 * MAX_GAP_MM:
            return gap / 2.0, SKIP_PENALTY
        return None

    best: dict[tuple[int, int], float] = {}
    back: dict[tuple[int, int], tuple[int, int] | None] = {}
    ending: dict[int, list[int]] = {}
    for j in range(len(peaks)):
        for i in range(j):
            g = gap_of(i, j)
            if g is None:
                continue
            eff, cost = g
            score, arg = gain[i] + gain[j] - cost, None
            for h_ in ending.get(i, []):
                prev_eff = gap_of(h_, i)[0]
                cand = best[(i, h_)] + gain[j] - cost - GAP_RATIO_PENALTY * np.log(eff / prev_eff) ** 2
                if cand > score:
                    score, arg = cand, (i, h_)
            best[(j, i)] = score
            back[(j, i)] = arg
            ending.setdefault(j, []).append(i)
    if not best:
        return [int(peaks[int(np.argmax(gain))])]
    state: tuple[int, int] | None = max(best, key=best.get)
    chain = []
    while state is not None:
        chain.append(int(peaks[state[0]]))
        if back[state] is None:
            chain.append(int(peaks[state[1]]))
        state = back[state]
    return sorted(chain)


def column_candidates(spine: StraightSpine, out: LocalizerOutput) -> list[Candidate]:
    """One candidate per vertebra of the chain along ``spine``, head to foot."""
    s, h, kji = heat_profile(spine, out)
    h = ndi.gaussian_filter1d(h, 1.0)
    cands = [candidate_at(out, kji[i]) for i in body_chain(s, h)]
    return cands[::-1]  # the profile runs feet to head


def with_end_vertebrae(spine: StraightSpine, along: list[Candidate], scan: list[Candidate],
                       min_distance_mm: float) -> list[Candidate]:
    """``along`` (head to foot) plus the whole-scan candidates ``scan`` that lie beyond either end of the
    chain along the column and at least ``min_distance_mm`` from any of its candidates: the end vertebrae
    a scan's edge cuts, whose heatmap bump the profile cannot show whole (or whose center lies outside
    the profile's reach, `BOX_AP_MM`).
    Whole-scan peaks between the chain's ends are not added (between two vertebrae of the column they
    are a second peak of one vertebra, a spinous process or a rib), nor those farther than `OFF_COLUMN_MM`
    to either side of the column (an arm beside a thoracolumbar slab, 200 mm out, bone-windowed).
    Peaks beyond one end less than `MIN_GAP_MM` apart along the chain's axis there (from its second to its last
    candidate) are one vertebra, of which the strongest is kept: its body, arch and spinous process can each
    peak (the TPTBox cutout's L4 under a display window gave three, 24 and 37 mm apart across the column,
    which the extended centreline's tilted planes put 13 mm apart along it). A peak less than `MIN_GAP_MM`
    along that axis from the chain's end candidate is that vertebra's own (the cutout's L2, whose candidate
    was on its arch, peaked again on its body 2-10 mm along the axis in four conditions, and was named twice)."""
    if not along:
        return list(scan)
    pts = np.array([c.center_lps for c in along])
    s_along = spine.from_lps(pts)[:, 0]
    lo, hi = s_along.min(), s_along.max()
    frame = spine.from_lps(np.array([c.center_lps for c in scan])) if scan else np.zeros((0, 3))
    extra = [(float(s), c) for (s, _, lr), c in zip(frame, scan, strict=True)
             if (s < lo or s > hi) and abs(lr) <= OFF_COLUMN_MM
             and np.linalg.norm(pts - c.center_lps, axis=1).min() >= min_distance_mm]
    kept = []
    for end, beyond in ((0, [e for e in extra if e[0] > hi]), (-1, [e for e in extra if e[0] < lo])):
        axis = _end_axis(spine, pts, s_along, end)
        group = [(None, along[int(np.argmax(s_along) if end == 0 else np.argmin(s_along))])]  # always kept
        for s, c in sorted(beyond, key=lambda e: -e[1].score):
            if all(abs(float(np.dot(c.center_lps - k.center_lps, axis))) >= MIN_GAP_MM for _, k in group):
                group.append((s, c))
        kept += group[1:]
    merged = [(float(s), c) for s, c in zip(s_along, along, strict=True)] + kept
    return [c for _, c in sorted(merged, key=lambda t: -t[0])]


def _end_axis(spine: StraightSpine, pts: np.ndarray, s_along: np.ndarray, end: int) -> np.ndarray:
    """Unit direction of the chain at its head (``end`` 0) or foot (-1) end: from the next candidate to the end
    one, or the centreline's tangent there when the chain has one candidate."""
    order = np.argsort(-s_along)  # head to foot
    if len(order) < 2:
        tangent = spine.tangent[int(np.argmin(np.abs(spine.s_mm - s_along[0])))]
        return tangent / np.linalg.norm(tangent)
    a, b = (order[1], order[0]) if end == 0 else (order[-2], order[-1])
    d = pts[b] - pts[a]
    return d / max(float(np.linalg.norm(d)), 1e-9)
