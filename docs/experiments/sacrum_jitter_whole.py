"""The whole pipeline on the sample CT under some of validate_real's perturbations, for a weights root
(docs/experiments/README.md, "Sacrum-jitter fine-tune"): per vertebra, Dice / distance of the exported
centre to the reference centroid (mm).

    python docs/experiments/sacrum_jitter_whole.py shipped|WEIGHTS_ROOT [CONDITION ...]
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
from inference.train.validate_real import PERTURBATIONS, real_cases, reference_on  # noqa: E402

pipe = Pipeline(device="cpu", weights_root=None if sys.argv[1] == "shipped" else Path(sys.argv[1]))
case = next(c for c in real_cases() if c.name == "ts_abdomen_3mm")
ct0 = read_ct(case.ct)
truth = reference_on(case, ct0)
ref = vertebra_centers(truth)
rng = np.random.default_rng(0)
for cond in sys.argv[2:] or ["none"]:
    f = PERTURBATIONS[cond]
    ct = ct0 if f is None else f(ct0, rng)
    result = pipe.analyze(ct)
    labels = result.segmentation.labels.array
    row = []
    for v in result.vertebrae:
        if v.id in ref and labels.shape == truth.array.shape:  # the 5 mm row is on another grid
            m, t = labels == v.id, truth.array == v.id
            row.append(f"{v.name} {2 * (m & t).sum() / (m.sum() + t.sum()):.3f}/"
                       f"{np.linalg.norm(np.asarray(v.center_lps) - ref[v.id]):.1f}")
    print(cond, " ".join(row), flush=True)
