"""What-if for the HU rib cue experiment (docs/experiments/README.md): name the real cases with the
shipped rib cue, then with the HU bone cue and its table fitted on the synthetic calibration records.

    git apply docs/experiments/hu_rib_cue.patch
    python -m inference.train.calibrate_labeling --n 100 --records CALIB.jsonl --docs /tmp/cal.md
    python docs/experiments/hu_rib_cue_real_whatif.py CALIB.jsonl
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from inference import label
from inference import pipeline as pl
from inference.io import read_ct
from inference.train.calibrate_labeling import fit
from inference.train.validate_real import evaluate_case, real_cases


def run(p: pl.Pipeline, tag: str) -> None:
    total = [0, 0]
    for case in real_cases():
        r = evaluate_case(p, case, read_ct(case.ct))
        total[0] += r["n_identified"]
        total[1] += r["n_reference"]
        print(tag, case.name, r["n_identified"], "/", r["n_reference"], r["predicted"], r["confidence"])
    print(tag, "TOTAL", total)


def main() -> None:
    torch.set_num_threads(1)
    report = fit(Path(sys.argv[1]))
    p = pl.Pipeline(device="cpu")
    run(p, "shipped")
    label.RIB_LIKELIHOOD = {k: tuple(v) for k, v in report["tables"]["bone_ml"].items()}
    original = pl.Pipeline.segment_candidates

    def bone_cue(self, ct, cands, progress=None, cancel=None):
        seg, _ = original(self, ct, cands, progress, cancel)
        return seg, [seg.masks[n + 1].bone_ml if n + 1 in seg.masks else None for n in range(len(cands))]

    pl.Pipeline.segment_candidates = bone_cue
    run(p, "bone")


if __name__ == "__main__":
    main()
