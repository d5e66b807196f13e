"""Spacing-aware decoding, judged on the labeling calibration records (docs/experiments/README.md).

    python -m inference.train.calibrate_labeling --n 100 --records /tmp/calib.jsonl   # records with "center"
    git apply docs/experiments/spacing_decoding.patch
    python docs/experiments/spacing_decoding_fit.py /tmp/calib.jsonl

Fits the center-spacing table (per level, to the next level; each whole synthetic column's size factor
taken out by a median, three rounds) on one half of the cases and names the other half's columns with
and without the candidates' positions (two-fold, rib table as shipped).
"""

import collections
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import inference.label as L  # noqa: E402
from inference import registry  # noqa: E402
from inference.label import _L6, _T13, LEVELS, decode, rib_likelihoods  # noqa: E402

NORMAL = [v for v in LEVELS if v not in (_T13, _L6)]
SUCC = dict(zip(NORMAL, NORMAL[1:], strict=False))


def columns(path):
    by = collections.defaultdict(list)
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        by[(r["case"], r["view"])].append(r)
    return [sorted(v, key=lambda r: r["order"]) for v in by.values()]


def pairs(col):
    return [(a["true_id"], float(np.linalg.norm(np.subtract(a["center"], b["center"]))))
            for a, b in zip(col, col[1:], strict=False)
            if a["true_id"] and b["true_id"] and SUCC.get(a["true_id"]) == b["true_id"]]


def fit_table(cols):
    ps = [pairs(c) for c in cols if c[0]["view"] == "whole"]
    table = {v: np.median([d for p in ps for (a, d) in p if a == v] or [np.nan]) for v in NORMAL}
    for _ in range(3):
        sizes = [np.exp(np.median([np.log(d / table[a]) for a, d in p])) if p else np.nan for p in ps]
        table = {v: np.median([d / g for p, g in zip(ps, sizes, strict=True) for (a, d) in p if a == v] or [np.nan])
                 for v in NORMAL}
    return {registry.name_of(v): round(float(x), 1) for v, x in table.items() if np.isfinite(x)}


def score(cols, table, use_positions):
    acc = collections.Counter()
    for col in cols:
        dec = decode(np.array([r["probs"] for r in col]), scores=np.array([min(1, r["score"]) for r in col]),
                     cues=rib_likelihoods([r["rib_ml"] for r in col]),
                     positions=np.array([r["center"] for r in col]) if use_positions else None, spacing=table)
        for r, i in zip(col, dec.ids, strict=True):
            if r["true_id"]:
                acc[col[0]["view"], "right"] += int(i) == r["true_id"]
                acc[col[0]["view"], "matched"] += 1
    return acc


def main():
    cols = columns(sys.argv[1])
    cases = sorted({c[0]["case"] for c in cols})
    half = set(cases[: len(cases) // 2])
    a = [c for c in cols if c[0]["case"] in half]
    b = [c for c in cols if c[0]["case"] not in half]
    for sigma in (0.08, 0.12, 0.16):
        for outlier in (0.05, 0.2):
            L.SPACING_SIGMA, L.SPACING_OUTLIER = sigma, outlier
            tot = score(b, fit_table(a), True) + score(a, fit_table(b), True)
            print(f"positions, sigma {sigma}, outlier {outlier}: {dict(tot)}")
    print(f"no positions: {dict(score(b, None, False) + score(a, None, False))}")
    print("table on all cases:", json.dumps(fit_table(cols)))


if __name__ == "__main__":
    main()
