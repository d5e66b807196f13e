"""What-if: convolve the localizer's level votes with an offset kernel learned on held-out synthetic CT
(the votes lean one level caudal), cross-fitted like calibrate_labeling.fit."""
import json
import sys

import numpy as np

from inference.label import LEVELS
from inference.train.calibrate_labeling import _columns, rib_table, score_columns

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
D = 2


def kernel(rows):
    k = np.ones(2 * D + 1)
    for r in rows:
        if r["true_id"]:
            d = int(np.argmax(r["probs"])) - LEVELS.index(r["true_id"])
            if abs(d) <= D:
                k[d + D] += 1
    return k / k.sum()


def apply(rows, k, strength):
    out = []
    for r in rows:
        p = np.asarray(r["probs"], float)
        p = p / p.sum()
        q = np.zeros_like(p)
        for d in range(-D, D + 1):  # true level t gets the votes at t + d, weighted by K(d)
            w = k[d + D]
            if d > 0:
                q[:-d] += w * p[d:]
            elif d < 0:
                q[-d:] += w * p[:d]
            else:
                q += w * p
        q = (1 - strength) * p + strength * q
        out.append({**r, "probs": q.tolist()})
    return out


cases = sorted({r["case"] for r in rows})
half = set(cases[: len(cases) // 2])
folds = [([r for r in rows if r["case"] in half], [r for r in rows if r["case"] not in half]),
         ([r for r in rows if r["case"] not in half], [r for r in rows if r["case"] in half])]
for fit_rows, _ in folds:
    print("kernel", np.round(kernel(fit_rows), 3))
for strength in (0.0, 0.5, 1.0):
    for t in (1.0, 1.5, 2.0, 3.0):
        tot = {}
        for fit_rows, test_rows in folds:
            k = kernel(fit_rows)
            table = rib_table(apply(fit_rows, k, strength))
            for view, (a, b) in score_columns(_columns(apply(test_rows, k, strength)), t, table).items():
                acc = tot.setdefault(view, [0, 0])
                acc[0] += a
                acc[1] += b
        right = sum(v[0] for v in tot.values())
        n = sum(v[1] for v in tot.values())
        print(f"strength {strength} T {t}: {right}/{n}  " + "  ".join(f"{v}: {a}/{b}" for v, (a, b) in tot.items()))
