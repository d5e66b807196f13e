"""Name the real cases with one cue of `hu_rib_cue_smoothed_collect.py`, its table counted on all the
records (docs/experiments/README.md, "HU rib cue, smoothed").

    python docs/experiments/hu_rib_cue_smoothed_whatif.py CUE E1,E2 TEMPERATURE OUT.jsonl [OUT2.jsonl ...]

CUE is rib_ml (the shipped segmenter rib channel, with other edges or temperature), bone_raw,
bone_s150 or bone_s250.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from inference import label
from inference import pipeline as pl
from inference.io import read_ct
from inference.train import calibrate_labeling as cl
from inference.train.validate_real import evaluate_case, real_cases

sys.path.insert(0, str(Path(__file__).parent))
from hu_rib_cue_smoothed_collect import bone_cues  # noqa: E402


def main() -> None:
    torch.set_num_threads(2)
    cue, edges, temperature = sys.argv[1], tuple(float(x) for x in sys.argv[2].split(",")), float(sys.argv[3])
    rows = [json.loads(x) for p in sys.argv[4:] for x in Path(p).read_text().splitlines() if x.strip()]
    label.RIB_BINS_ML = edges
    cl.RIB_BINS_ML = edges
    label.RIB_LIKELIHOOD = cl.rib_table([{**r, "rib_ml": r[cue]} for r in rows])
    label.EMISSION_TEMPERATURE = temperature
    original = pl.Pipeline.segment_candidates

    def with_cue(self, ct, cands, progress=None, cancel=None):
        seg, ribs = original(self, ct, cands, progress, cancel)
        if cue != "rib_ml":
            ribs = [bone_cues(ct, seg.labels, c.center_lps)[cue] for c in cands]
        print("   cue per candidate (head to foot):", [None if x is None else round(x, 2) for x in ribs])
        return seg, ribs

    pl.Pipeline.segment_candidates = with_cue
    p = pl.Pipeline(device="cpu")
    total = [0, 0]
    tag = f"{cue} {edges} T{temperature:g}"
    for case in real_cases():
        r = evaluate_case(p, case, read_ct(case.ct))
        total[0] += r["n_identified"]
        total[1] += r["n_reference"]
        print(tag, case.name, r["n_identified"], "/", r["n_reference"], r["predicted"], flush=True)
    print(tag, "TOTAL", total, flush=True)


if __name__ == "__main__":
    main()
