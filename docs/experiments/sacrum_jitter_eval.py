"""Segmenter alone (reference centres) on the real cases and on held-out synthetic cases, for a weights root
(docs/experiments/README.md, "Sacrum-jitter fine-tune").

    python docs/experiments/sacrum_jitter_eval.py shipped|WEIGHTS_ROOT [N_SYNTHETIC]

Prints the Dice and HD95 per real case and level (as docs/segmentation.md's first table) and, with
N_SYNTHETIC, the mean Dice over the vertebrae (>= 1 ml) of the first N calibration cases (seed stream 77)
and each sacrum's Dice. WEIGHTS_ROOT holds segmenter/ (and the shipped localizer/ and lesion/ beside it).
"""
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
torch.set_num_threads(2)
from inference.io.ct import read_ct  # noqa: E402
from inference.measure import vertebra_centers  # noqa: E402
from inference.pipeline import Pipeline  # noqa: E402
from inference.segment import segment_vertebrae  # noqa: E402
from inference.train.calibrate_labeling import calibration_case  # noqa: E402
from inference.train.validate_real import oracle_segmentation, real_cases  # noqa: E402

pipe = Pipeline(device="cpu", weights_root=None if sys.argv[1] == "shipped" else Path(sys.argv[1]))
real = []
for c in real_cases():
    rows = [r for r in oracle_segmentation(pipe, c, read_ct(c.ct))["per_vertebra"] if r["dice"] is not None]
    real += [r["dice"] for r in rows]
    print(c.name, {r["name"]: (round(r["dice"], 3), r["hd95_mm"]) for r in rows}, flush=True)
print(f"real mean {np.mean(real):.4f} over {len(real)}")
if len(sys.argv) > 2:
    dice, sacra = [], []
    for i in range(int(sys.argv[2])):
        ct, truth, _, _ = calibration_case(i)
        items = sorted(vertebra_centers(truth).items())
        labels = segment_vertebrae(pipe.segmenter, ct, items, pipe.device, mirror=True).labels.array
        ml = float(np.prod(truth.spacing)) / 1000
        for vid, _ in items:
            t, p = truth.array == vid, labels == vid
            if t.sum() * ml >= 1.0:
                dice.append(2 * (t & p).sum() / (t.sum() + p.sum()))
                if vid == 26:
                    sacra.append(round(float(dice[-1]), 3))
    print(f"synthetic mean {np.mean(dice):.4f} over {len(dice)}; sacra {sacra}")
