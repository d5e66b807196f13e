"""Calibration records for the undimmed HU rib cue (docs/experiments/README.md).

    git apply docs/experiments/hu_rib_cue_undimmed.patch
    python docs/experiments/hu_rib_cue_undimmed_collect.py 100 CALIB.jsonl

The candidates of `inference.train.calibrate_labeling.collect` (same cases, same dimmed ribs for the
models), each with three cues: the segmenter's rib channel (``rib_ml``, the shipped cue), bone of
HU >= 150 outside every mask in the same zone of the dimmed CT (``bone_ml``) and of the CT before
the ribs were dimmed (``bone_raw``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from inference.measure import vertebra_centers
from inference.pipeline import Pipeline
from inference.ribs import bone_zone_ml
from inference.synth.generator import generate
from inference.synth.writer import case_seed
from inference.train.calibrate_labeling import CALIBRATION_SEED, MATCH_MM, _slab
from inference.train.pool import POOL_CONFIG
from inference.train.train_segmenter import RIB_GAIN, dim_ribs


def _ml(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def records(pipeline, ct, labels, raw, case: int, view: str) -> list[dict]:
    cands = pipeline.candidates(pipeline._run_localizer(ct, None))
    if not cands:
        return []
    seg, ribs = pipeline.segment_candidates(ct, cands)
    truth = vertebra_centers(labels)
    rows = []
    for n, c in enumerate(cands):
        d = {vid: float(np.linalg.norm(c.center_lps - t)) for vid, t in truth.items()}
        vid = min(d, key=d.get) if d else 0
        rows.append({"case": case, "view": view, "order": n, "true_id": int(vid) if d and d[vid] <= MATCH_MM else 0,
                     "score": round(float(c.score), 4), "rib_ml": _ml(ribs[n]),
                     "bone_ml": _ml(bone_zone_ml(ct, seg.labels, c.center_lps)),
                     "bone_raw": _ml(bone_zone_ml(raw, seg.labels, c.center_lps)),
                     "center": [round(float(x), 1) for x in c.center_lps],
                     "probs": [round(float(p), 5) for p in c.level_probs]})
    return rows


def main() -> None:
    n, path = int(sys.argv[1]), Path(sys.argv[2])
    lines = path.read_text().splitlines() if path.exists() else []
    done = {json.loads(line)["case"] for line in lines if line.strip()}
    pipeline = Pipeline(device="cpu")
    for i in range(n):
        if i in done:
            continue
        case = generate(case_seed(CALIBRATION_SEED, i), POOL_CONFIG)
        rng = np.random.default_rng([CALIBRATION_SEED, i])
        raw = case.ct
        if case.ribs is not None:
            hu = case.ct.array.astype(np.float32)
            dim_ribs(hu, case.ribs.array, case.labels.array, rng.uniform(*RIB_GAIN))
            case.ct = case.ct.with_array(np.rint(hu).astype(case.ct.array.dtype))
        rows = records(pipeline, case.ct, case.labels, raw, i, "whole")
        nk, dz = case.ct.array.shape[0], case.ct.spacing[2]
        length = int(rng.uniform(60.0, 160.0) / dz)
        if nk > length + 2:
            k0 = int(rng.integers(0, nk - length))
            rows += records(pipeline, _slab(case.ct, k0, k0 + length), _slab(case.labels, k0, k0 + length),
                            _slab(raw, k0, k0 + length), i, "slab")
        with path.open("a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        print("case", i, len(rows), flush=True)


if __name__ == "__main__":
    main()
