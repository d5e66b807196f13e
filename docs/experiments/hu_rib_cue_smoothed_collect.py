"""Calibration records for a denoised HU rib cue (docs/experiments/README.md, "HU rib cue, smoothed").

    python docs/experiments/hu_rib_cue_smoothed_collect.py RECORDS.jsonl FIRST STOP OUT.jsonl

Re-makes calibration cases FIRST..STOP-1 exactly as `inference.train.calibrate_labeling.collect` does
(`calibration_case`: same seed stream, same rib dimming for the models, same slab), takes their
candidates (center, score, votes) from RECORDS (that script's output, so the localizer is not run
again), segments them with the shipped segmenter on the dimmed CT, and adds to each row the bone in
the rib zone of the CT *before* dimming (ribs as bright as real ones), outside every vertebra mask
grown by one voxel:
``bone_raw`` (HU >= 150, as `hu_rib_cue_undimmed.patch`), ``bone_s150`` and ``bone_s250`` (HU >= 150 /
250 after a Gaussian blur of sigma 1.5 mm, which removes isolated noisy voxels but keeps a rib,
a tube ~8 mm across). ``rib_ml`` is re-measured (it must equal the record's: a check of the re-make).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from inference.localize import Candidate
from inference.pipeline import Pipeline
from inference.ribs import MIN_IN_VIEW, ZONE_AXIAL_MM, ZONE_LATERAL_MM, ZONE_POSTERIOR_MM, _zone_voxels
from inference.train.calibrate_labeling import _slab, calibration_case

SIGMA_MM = 1.5
MARGIN_MM = 6.0


def bone_cues(ct, labels, center_lps: np.ndarray) -> dict[str, float | None]:
    """The three HU cues of one candidate (ml); None where less than MIN_IN_VIEW of the zone is in view."""
    c = np.asarray(center_lps, float)
    corners = np.array([[x, y, z] for x in (-ZONE_LATERAL_MM[1] - MARGIN_MM, ZONE_LATERAL_MM[1] + MARGIN_MM)
                        for y in (ZONE_POSTERIOR_MM[0] - MARGIN_MM, ZONE_POSTERIOR_MM[1] + MARGIN_MM)
                        for z in (-ZONE_AXIAL_MM - MARGIN_MM, ZONE_AXIAL_MM + MARGIN_MM)]) + c
    ijk = ct.lps_to_index(corners)
    shape_ijk = np.array(ct.array.shape[::-1])
    lo = np.clip(np.floor(ijk.min(axis=0)).astype(int), 0, shape_ijk)
    hi = np.clip(np.ceil(ijk.max(axis=0)).astype(int) + 1, 0, shape_ijk)
    none = {"bone_raw": None, "bone_s150": None, "bone_s250": None}
    if np.any(hi <= lo):
        return none
    box = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    hu = ct.array[box].astype(np.float32)
    sp = np.asarray(ct.spacing, float)  # (i, j, k) mm
    smooth = ndimage.gaussian_filter(hu, sigma=SIGMA_MM / sp[::-1], mode="nearest")
    own = ndimage.binary_dilation(labels.array[box] > 0)
    kk, jj, ii = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo[::-1], hi[::-1], strict=True)), indexing="ij")
    d = ct.index_to_lps(np.c_[ii.ravel(), jj.ravel(), kk.ravel()].astype(float)) - c
    dx, dy, dz = np.abs(d[:, 0]), d[:, 1], np.abs(d[:, 2])
    zone = ((dz < ZONE_AXIAL_MM) & (dy >= ZONE_POSTERIOR_MM[0]) & (dy < ZONE_POSTERIOR_MM[1])
            & (dx >= ZONE_LATERAL_MM[0]) & (dx < ZONE_LATERAL_MM[1])).reshape(hu.shape)
    voxel_ml = float(np.prod(sp)) / 1000.0
    if zone.sum() * voxel_ml < MIN_IN_VIEW * _zone_voxels(1.0) / 1000.0:
        return none
    free = zone & ~own
    return {"bone_raw": round(float(np.count_nonzero(free & (hu >= 150))) * voxel_ml, 3),
            "bone_s150": round(float(np.count_nonzero(free & (smooth >= 150))) * voxel_ml, 3),
            "bone_s250": round(float(np.count_nonzero(free & (smooth >= 250))) * voxel_ml, 3)}


def rows_for(pipeline, ct, raw, old: list[dict]) -> list[dict]:
    if not old:
        return []
    cands = [Candidate(np.asarray(r["center"], float), r["score"], np.asarray(r["probs"], float), 1.0) for r in old]
    seg, ribs = pipeline.segment_candidates(ct, cands)
    out = []
    for r, c, rib in zip(old, cands, ribs, strict=True):
        out.append({**r, "rib_ml_again": None if rib is None else round(rib, 3),
                    **bone_cues(raw, seg.labels, c.center_lps)})
    return out


def main() -> None:
    records, first, stop, out = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    by_case: dict[tuple[int, str], list[dict]] = {}
    for line in records.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            by_case.setdefault((r["case"], r["view"]), []).append(r)
    done = {json.loads(x)["case"] for x in out.read_text().splitlines() if x.strip()} if out.exists() else set()
    pipeline = Pipeline(device="cpu")
    for i in range(first, stop):
        if i in done:
            continue
        ct, _, raw, slab = calibration_case(i)
        rows = rows_for(pipeline, ct, raw, by_case.get((i, "whole"), []))
        if slab is not None:
            rows += rows_for(pipeline, _slab(ct, *slab), _slab(raw, *slab), by_case.get((i, "slab"), []))
        with out.open("a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        print("case", i, len(rows), [(r["true_id"], r["rib_ml"], r["rib_ml_again"], r["bone_raw"], r["bone_s150"])
                                     for r in rows][:12], flush=True)


if __name__ == "__main__":
    main()
