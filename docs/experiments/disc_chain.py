"""Experiment, not shipped (2026-12-07): discs from bone cues along the straightened spine.

Question: can the discs (and so the vertebral bodies between them) be found on the straightened spine
from bone alone, without the localizer? Two cues per plane, a broken anterior cortex and bright endplate
bands in the body core, and a dynamic-programming chain over their peaks, first with a gap-ratio prior
only, then with the gap expected from the body's antero-posterior depth.

Result (bodies whose reference span holds a found body center within 10 mm; "extra": bodies outside any
reference span), on the sample CT (7 reference bodies T12-S1), bone-windowed, display-windowed, the TPTBox
cutout (3) and the small crop (3):
- first version (gap-ratio prior only, not kept): cortex-or-endplate 4/7, 7/7 (+11 extra in the pelvis),
  7/7 (+1), 1/3 (+1), 3/3 (+1); endplate only 6/7, 5/7 (+5), 4/7, 1/3 (+1), 3/3;
- this file (gap expected from the body's depth; `python docs/experiments/disc_chain.py`):
  cortex-or-endplate 6/7, 4/7 (+6), 6/7 (+2), 1/3, 2/3; endplate only 4/7, 6/7 (+4), 1/7 (+2), 1/3, 2/3.
No variant was right on every case, and each change moved the cases in opposite directions (two
experiments in a row without a gain): the bone cues on 3 mm slices are too weak to place discs alone.
What shipped instead reads the localizer's heatmap along the column (`inference.column.bodies`).
Run from the repository root: ``.venv/bin/python docs/experiments/disc_chain.py`` (needs ../shared).
"""


from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from inference.column.straighten import STEP_MM, StraightSpine, sample_planes, straighten

RING_HALF_ANGLE_DEG = 60.0
"""Rays of the cortex cue span the front of the body ± this angle (the sides, where rib heads meet the
discs, are left out)."""
RING_REACH = (0.55, 1.15)
"""Ray samples run from this fraction of the body's front radius to this one (past the edge, short of the
neighbouring organs)."""
CORE_HALF_MM = 9.0
"""Half-size (ap and lr) of the body core whose bone fraction gives the endplate cue."""
ENDPLATE_PAIR_MM = (0.0, 6.0)
"""A disc lies midway between two endplate peaks at most twice this far apart."""
BACKGROUND_MM = (8.0, 16.0)
"""The endplate cue is measured against the core's bone fraction this far above and below."""
MIN_GAP_MM, MAX_GAP_MM = 13.0, 52.0
"""Distance between neighbouring discs: C3 (≈14 mm disc to disc) to a tall lumbar body (≈45 mm)."""
GAP_PER_DEPTH = 1.0
"""Expected disc-to-disc distance per mm of the body's antero-posterior depth."""
GAP_PRIOR_PENALTY = 3.0
"""Cost per unit of squared log ratio between a gap and the expected one."""
GAP_RATIO_PENALTY = 2.0
"""Cost per unit of squared log ratio between neighbouring gaps (heights change slowly along the column)."""
SKIP_PENALTY = 0.6
"""Cost of one disc missed inside the chain (a gap twice the expected one)."""
PEAK_COST = 0.2
"""Each disc of the chain adds its evidence less this: a faint peak is not worth a disc."""
MIN_PEAK = 0.15
"""Disc evidence below this is not a disc candidate."""
COLUMN_REACH_MM = 8.0
"""A plane is on the column when the body core holds bone within this distance along it."""
DEFAULT_RADIUS_MM = 16.0
"""Body radius assumed where the body's front edge was not measured."""


RECENTRE_SPAN_MM = 15.0
"""Bone is taken over ±this many mm along the column when re-centring (bridges the discs)."""


def body_depth_profile(spine: StraightSpine, bone_hu: float) -> tuple[np.ndarray, np.ndarray]:
    """Per plane, the anterior edge of the vertebral body and the front wall of the canal on the midline
    (ap mm; NaN where not seen): bone over ±`RECENTRE_SPAN_MM` along the column and ±4 mm left-right,
    followed from the plane's centre forwards and backwards to the first gap."""
    li = np.flatnonzero(np.abs(spine.lr_mm) <= 4.0)
    mid = spine.hu[:, :, li].max(axis=2) > bone_hu
    reach = int(round(RECENTRE_SPAN_MM / STEP_MM))
    mid = ndi.maximum_filter1d(mid.astype(np.uint8), 2 * reach + 1, axis=0) > 0
    a0 = int(np.argmin(np.abs(spine.ap_mm)))
    front = np.full(len(mid), np.nan)
    back = np.full(len(mid), np.nan)
    for n, row in enumerate(mid):
        if not row[a0]:
            continue
        gaps_front = np.flatnonzero(~row[:a0])
        gaps_back = np.flatnonzero(~row[a0:])
        if len(gaps_front):
            front[n] = spine.ap_mm[gaps_front[-1] + 1]
        if len(gaps_back):
            back[n] = spine.ap_mm[a0 + gaps_back[0] - 1]
    return front, back


def recentre(ct, spine: StraightSpine, bone_hu: float) -> StraightSpine:
    """The spine straightened again through the middle of the bodies (midway between the body's front edge
    and the canal's front wall, smoothed σ 12 mm along the column)."""
    from inference.column.straighten import along_curve

    front, back = body_depth_profile(spine, bone_hu)
    depth = back - front
    ok = np.isfinite(depth) & (depth >= 15.0) & (depth <= 60.0)
    if ok.sum() < 10:
        return spine
    offset = np.interp(spine.s_mm, spine.s_mm[ok], ((front + back) / 2.0)[ok])
    offset = ndi.gaussian_filter1d(offset, 12.0 / STEP_MM, mode="nearest")
    curve = spine.centre_lps + offset[:, None] * spine.ap_axis
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(curve, axis=0), axis=1))])
    s = np.arange(0.0, arc[-1] + 1e-9, STEP_MM)
    return along_curve(ct, s, np.column_stack([np.interp(s, arc, curve[:, a]) for a in range(3)]))


@dataclass
class Body:
    """One vertebral body between two discs of the straightened spine (arc lengths in mm).

    ``upper_s``/``lower_s`` are the bounding discs (None at an end of the chain, where the body was
    extended past the last disc found); ``centre_s`` is midway between them."""

    centre_s: float
    lower_s: float | None
    upper_s: float | None

    @property
    def height_mm(self) -> float | None:
        if self.lower_s is None or self.upper_s is None:
            return None
        return self.upper_s - self.lower_s


def disc_evidence(spine: StraightSpine, bone_hu: float, mode: str = "max") -> np.ndarray:
    """Disc evidence (0–1) of every plane of ``spine``: the larger of the broken-cortex cue and the
    endplate cue (see the module docstring), zero outside the column (no bone in the body core within
    `COLUMN_REACH_MM`, or outside the scan)."""
    ep = endplate_cue(spine, bone_hu)
    cb = cortex_break(spine, bone_hu)
    ev = {"max": np.maximum(cb, ep), "endplate": ep, "sum": np.clip(ep + 0.5 * cb, 0, 1)}[mode]
    reach = int(round(COLUMN_REACH_MM / STEP_MM))
    column = ndi.maximum_filter1d(_core_bone(spine, bone_hu), 2 * reach + 1) > 0
    return np.where(column & spine.inside, ev, 0.0)


def cortex_break(spine: StraightSpine, bone_hu: float) -> np.ndarray:
    """1 − the fraction of front rays that meet bone, per plane (1 at a disc, 0 inside a body)."""
    front, back = body_depth_profile(spine, bone_hu)
    radius = np.where(np.isfinite(front), -front, DEFAULT_RADIUS_MM)
    radius = ndi.median_filter(np.clip(radius, 8.0, 35.0), size=int(round(30 / STEP_MM)) | 1, mode="nearest")
    bone = spine.hu > bone_hu
    n_planes = len(spine.s_mm)
    angles = np.deg2rad(np.linspace(-RING_HALF_ANGLE_DEG, RING_HALF_ANGLE_DEG, 9))
    frac = np.linspace(RING_REACH[0], RING_REACH[1], 12)
    hits = np.zeros((n_planes, len(angles)), bool)
    rows = np.arange(n_planes)[:, None]
    for m, a in enumerate(angles):
        r = radius[:, None] * frac[None]  # (N, F) mm
        ap = -r * np.cos(a)  # the front is -ap
        lr = r * np.sin(a)
        ai = np.clip(np.round((ap - spine.ap_mm[0]) / STEP_MM).astype(int), 0, len(spine.ap_mm) - 1)
        li = np.clip(np.round((lr - spine.lr_mm[0]) / STEP_MM).astype(int), 0, len(spine.lr_mm) - 1)
        hits[:, m] = bone[rows, ai, li].any(axis=1)
    return 1.0 - hits.mean(axis=1)


def endplate_cue(spine: StraightSpine, bone_hu: float) -> np.ndarray:
    """Per plane: how much brighter (in bone fraction) the body core is at this plane's two flanks
    `ENDPLATE_PAIR_MM` apart than `BACKGROUND_MM` above and below (0–1)."""
    a = np.abs(spine.ap_mm) <= CORE_HALF_MM
    lr = np.abs(spine.lr_mm) <= CORE_HALF_MM
    core = (spine.hu[:, a][:, :, lr] > bone_hu).mean(axis=(1, 2))
    n = len(core)
    pad = int(round(BACKGROUND_MM[1] / STEP_MM)) + 1
    padded = np.pad(core, pad, mode="edge")
    pair = np.zeros(n)
    for d in range(int(round(ENDPLATE_PAIR_MM[0] / STEP_MM)), int(round(ENDPLATE_PAIR_MM[1] / STEP_MM)) + 1):
        pair = np.maximum(pair, np.minimum(padded[pad - d : pad - d + n], padded[pad + d : pad + d + n]))
    lo, hi = (int(round(x / STEP_MM)) for x in BACKGROUND_MM)
    ring = [padded[pad - d : pad - d + n] for d in range(lo, hi + 1)] + [padded[pad + d : pad + d + n]
                                                                          for d in range(lo, hi + 1)]
    background = np.median(np.stack(ring), axis=0)
    return np.clip((pair - background) * 2.0, 0.0, 1.0)


def expected_gaps(spine: StraightSpine, bone_hu: float) -> np.ndarray:
    """Per plane, the disc-to-disc distance expected from the body's antero-posterior depth (about equal
    along the whole column: cervical ≈16/16 mm, thoracic ≈24/27, lumbar ≈38/35), smoothed along it."""
    front, back = body_depth_profile(spine, bone_hu)
    depth = back - front
    ok = np.isfinite(depth) & (depth >= 12.0) & (depth <= 60.0)
    if ok.sum() < 5:
        return np.full(len(spine.s_mm), 25.0)
    depth = np.interp(spine.s_mm, spine.s_mm[ok], depth[ok])
    depth = ndi.median_filter(depth, size=int(round(40 / STEP_MM)) | 1, mode="nearest")
    return np.clip(depth * GAP_PER_DEPTH, MIN_GAP_MM, MAX_GAP_MM)


def disc_chain(evidence: np.ndarray, expected: np.ndarray) -> list[int]:
    """Plane indices of the discs: the chain of evidence peaks with the best score, see the module
    docstring. Each disc adds its evidence less `PEAK_COST`; each gap costs `GAP_PRIOR_PENALTY` times
    the squared log ratio to ``expected`` (per plane, `expected_gaps`) and `GAP_RATIO_PENALTY` times
    that to the gap before it; a gap of two expected ones (a missed disc) costs `SKIP_PENALTY`."""
    ev = ndi.gaussian_filter1d(np.asarray(evidence, float), 1.0 / STEP_MM)
    peaks = np.flatnonzero((ev >= ndi.maximum_filter1d(ev, int(round(9 / STEP_MM)) | 1)) & (ev >= MIN_PEAK))
    if len(peaks) == 0:
        return []
    lo, hi = MIN_GAP_MM / STEP_MM, MAX_GAP_MM / STEP_MM
    n = len(peaks)
    gain = ev[peaks] - PEAK_COST

    def gap_cost(i: int, j: int) -> tuple[float, float]:
        """(cost, effective gap) of discs at peaks i < j; a gap near twice the expected one counts as
        two gaps with a disc missed between them."""
        gap = float(peaks[j] - peaks[i])
        want = float(expected[(peaks[i] + peaks[j]) // 2]) / STEP_MM
        one = np.log(gap / want) ** 2
        two = np.log(gap / (2 * want)) ** 2
        if two < one:
            return GAP_PRIOR_PENALTY * two + SKIP_PENALTY, gap / 2
        return GAP_PRIOR_PENALTY * one, gap

    best: dict[tuple[int, int], float] = {}
    back: dict[tuple[int, int], tuple[int, int] | None] = {}
    for j in range(n):
        for i in range(j - 1, -1, -1):
            gap = peaks[j] - peaks[i]
            if gap > 2 * hi:
                break
            if gap < lo:
                continue
            cost, eff = gap_cost(i, j)
            score, arg = gain[i] + gain[j] - cost, None
            for (jj, h), prev in best.items():
                if jj != i:
                    continue
                _, prev_eff = gap_cost(h, i)
                cand = prev + gain[j] - cost - GAP_RATIO_PENALTY * np.log(eff / prev_eff) ** 2
                if cand > score:
                    score, arg = cand, (i, h)
            best[(j, i)] = score
            back[(j, i)] = arg
    if not best:
        return [int(peaks[int(np.argmax(ev[peaks]))])]
    state: tuple[int, int] | None = max(best, key=best.get)
    chain = []
    while state is not None:
        chain.append(int(peaks[state[0]]))
        prev = back[state]
        if prev is None:
            chain.append(int(peaks[state[1]]))
        state = prev
    return sorted(chain)


def bodies(spine: StraightSpine, discs: list[int], bone_hu: float) -> list[Body]:
    """One body between each pair of consecutive discs (a gap of two bodies' height, a missed disc, is
    split in two), plus one past each end disc where the core holds bone over most of a typical height."""
    s = spine.s_mm
    out: list[Body] = []
    ds = [float(s[d]) for d in discs]
    gaps = np.diff(ds)
    typical = float(np.median(gaps)) if len(gaps) else 25.0
    for a, b in zip(ds, ds[1:], strict=False):
        parts = max(1, int(round((b - a) / typical))) if b - a > MAX_GAP_MM else 1
        edges = np.linspace(a, b, parts + 1)
        for lo, hi in zip(edges, edges[1:], strict=False):
            out.append(Body((lo + hi) / 2, lo, hi))
    core = _core_bone(spine, bone_hu)
    for end, sign in ((ds[0], -1), (ds[-1], 1)) if ds else ():
        centre = end + sign * typical / 2
        span = (np.abs(s - centre) <= typical / 2 - 2) & spine.inside
        if span.sum() * STEP_MM >= 0.6 * typical and core[span].mean() > 0.5:
            out.append(Body(centre, end if sign > 0 else None, None if sign > 0 else end))
    return sorted(out, key=lambda b: b.centre_s)


def _core_bone(spine: StraightSpine, bone_hu: float) -> np.ndarray:
    """Per plane, whether bone lies in the body core (any voxel of the core above the threshold)."""
    a = np.abs(spine.ap_mm) <= CORE_HALF_MM
    lr = np.abs(spine.lr_mm) <= CORE_HALF_MM
    return (spine.hu[:, a][:, :, lr] > bone_hu).any(axis=(1, 2)).astype(float)


def main() -> None:
    from inference.column import track_column
    from inference.io import read_ct, read_label_map
    from inference.synth.exports import bone_window, display_window

    root = Path(__file__).resolve().parents[2]
    shared = root.parent / "shared" / "data" / "real"
    sample = read_ct(root / "assets/sample/abdomen_ct_3mm.nii.gz")
    truth = read_label_map(root / "assets/sample/abdomen_vertebrae_totalseg.nii.gz")
    cases = [("sample", sample, truth), ("bone-windowed", bone_window(sample), truth),
             ("display-windowed", display_window(sample), truth),
             ("tptbox", read_ct(shared / "tptbox_ct_lumbar_cutout/sub-ct_label-22_ct.nii.gz"),
              read_label_map(shared / "tptbox_ct_lumbar_cutout/sub-ct_seg-vert_label-22_msk.nii.gz")),
             ("small crop", read_ct(root / "tests/data/ts_abdomen_3mm/sm_crop/example_ct_sm.nii.gz"),
              read_label_map(root / "tests/data/ts_abdomen_3mm/sm_crop/example_seg.nii.gz"))]
    for mode in ("max", "endplate"):
        for name, ct, labels in cases:
            track = track_column(ct)
            spine = recentre(ct, straighten(ct, track), track.bone_hu)
            lab = sample_planes(labels, spine, order=0)
            core = lab[:, np.abs(spine.ap_mm) <= 8][:, :, np.abs(spine.lr_mm) <= 8]
            mode_id = np.array([np.bincount(b.ravel()).argmax() if b.any() else 0 for b in core])
            spans = {v: (spine.s_mm[mode_id == v].min(), spine.s_mm[mode_id == v].max())
                     for v in set(mode_id.tolist()) - {0}}
            found = bodies(spine, disc_chain(disc_evidence(spine, track.bone_hu, mode),
                                             expected_gaps(spine, track.bone_hu)), track.bone_hu)
            hit = [v for v, (a, b) in spans.items()
                   if any(a <= x.centre_s <= b and abs(x.centre_s - (a + b) / 2) < 10 for x in found)]
            extra = [x for x in found if not any(a - 3 <= x.centre_s <= b + 3 for a, b in spans.values())]
            print(f"{mode:9s} {name:17s} {len(hit)}/{len(spans)} found, {len(extra)} extra")


if __name__ == "__main__":
    main()
