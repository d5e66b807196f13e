"""Re-centred segmentation on the real cases (docs/experiments/README.md, "Re-centred segmentation").

Whole pipeline, shipped models, every perturbation of `inference.train.validate_real` (CONDS="a|b" for
some). RECENTER: 0 shipped; 1 a second segmentation pass with each crop (the sacrum's apart) centred on
the first pass's mask centroid; 2 as 1, but masks cut by the scan's edge keep their crop; 3 as 2, with
the rib cue (which the naming reads) from the first pass, so that only the masks change.

    RECENTER=1 python docs/experiments/recentred_segmentation_real.py
"""
import dataclasses
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
torch.set_num_threads(2)
from inference.io.ct import read_ct  # noqa: E402
from inference.measure import label_boxes, vertebra_centers  # noqa: E402
from inference.pipeline import Pipeline  # noqa: E402
from inference.train import validate_real as vr  # noqa: E402

MODE = os.environ.get("RECENTER", "0")
shipped = Pipeline.segment_candidates


def recentred(self, ct, cands, progress=None, cancel=None):
    seg, ribs = shipped(self, ct, cands, progress, cancel)
    if MODE == "0":
        return seg, ribs
    centroids = vertebra_centers(seg.labels)
    shape = seg.labels.array.shape
    cut = {t for t, b in label_boxes(seg.labels).items()
           if any(x.start == 0 or x.stop == n for x, n in zip(b, shape, strict=True))}
    moved = []
    for n, c in enumerate(cands):
        m = centroids.get(n + 1)
        sacrum = np.argmax(c.level_probs) == len(c.level_probs) - 1
        if m is None or sacrum or (MODE in ("2", "3") and n + 1 in cut):
            moved.append(c)
        else:
            moved.append(dataclasses.replace(c, center_lps=np.asarray(m, float)))
    seg2, ribs2 = shipped(self, ct, moved, progress, cancel)
    return seg2, (ribs if MODE == "3" else ribs2)


Pipeline.segment_candidates = recentred
pipe = Pipeline(device="cpu")
rng = np.random.default_rng(0)
conds = os.environ.get("CONDS", "|".join(["none", *list(vr.PERTURBATIONS)[1:], *vr.CASE_PERTURBATIONS])).split("|")
totals = {}
for case in vr.real_cases():
    ct = read_ct(case.ct)
    for name in conds:
        if name in vr.PERTURBATIONS:
            fn = vr.PERTURBATIONS[name]
            x = ct if fn is None else fn(ct, rng)
        else:
            x = vr.CASE_PERTURBATIONS[name](ct, rng, case)
            if x is None:
                continue
        r = vr.evaluate_case(pipe, case, x)
        dice = [v["dice"] or 0.0 for v in r["per_vertebra"] if v["in_reference"]]
        t = totals.setdefault(name, [0, 0, []])
        t[0] += r["n_identified"]
        t[1] += r["n_reference"]
        t[2] += dice
        print(case.name, name, r["n_identified"], "/", r["n_reference"], r["predicted"],
              [(v["name"], v["dice"]) for v in r["per_vertebra"] if v["in_reference"]], flush=True)
for name, t in totals.items():
    print("TOTAL", name, f"{t[0]}/{t[1]}", "mean Dice", round(float(np.mean(t[2])), 4))
