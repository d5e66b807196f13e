"""A lower localizer peak threshold (docs/experiments/README.md, "Peak threshold").

    python docs/experiments/peak_threshold.py collect 100 RECORDS.jsonl   # candidates at 0.25
    python docs/experiments/peak_threshold.py fit RECORDS.jsonl

``collect`` runs `inference.train.calibrate_labeling.collect` with candidates down to a heat of 0.25.
``fit`` keeps the candidates above each threshold (a peak's detection does not depend on weaker ones),
counts the rib table on one half of the cases and decodes the other, both ways round, and prints what
becomes of the true and false candidates.
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

import numpy as np

import inference.pipeline as pl
from inference.label import decode, rib_likelihoods
from inference.localize import find_candidates
from inference.train.calibrate_labeling import _columns, collect, rib_table

LOWEST = 0.25


def score(columns: list[list[dict]], temperature: float, table: dict) -> dict[str, int]:
    out = dict.fromkeys(("right", "wrong", "true_dropped", "false_kept", "false_dropped"), 0)
    for col in columns:
        dec = decode(np.array([r["probs"] for r in col]), scores=np.array([min(1.0, r["score"]) for r in col]),
                     cues=rib_likelihoods([r["rib_ml"] for r in col], table), temperature=temperature)
        for n, r in enumerate(col):
            if r["true_id"]:
                key = "true_dropped" if dec.ids[n] == 0 else "right" if dec.ids[n] == r["true_id"] else "wrong"
            else:
                key = "false_kept" if dec.ids[n] else "false_dropped"
            out[key] += 1
    return out


def fit(records: Path) -> None:
    rows = [json.loads(line) for line in records.read_text().splitlines() if line.strip()]
    cases = sorted({r["case"] for r in rows})
    half = set(cases[: len(cases) // 2])
    for threshold in (0.35, 0.30, LOWEST):
        kept = [r for r in rows if r["score"] > threshold]
        a, b = [r for r in kept if r["case"] in half], [r for r in kept if r["case"] not in half]
        for temperature in (1.5, 2.0):
            total: dict[str, int] = {}
            for fit_rows, test_rows in ((a, b), (b, a)):
                for k, v in score(_columns(test_rows), temperature, rib_table(fit_rows)).items():
                    total[k] = total.get(k, 0) + v
            print(threshold, temperature, total, "candidates", len(kept))


def main() -> None:
    if sys.argv[1] == "collect":
        pl.find_candidates = partial(find_candidates, threshold=LOWEST)
        collect(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        fit(Path(sys.argv[2]))


if __name__ == "__main__":
    main()
