"""Out-of-sample naming with each rib cue of `hu_rib_cue_smoothed_collect.py` (docs/experiments/README.md).

    python docs/experiments/hu_rib_cue_smoothed_fit.py OUT.jsonl [OUT2.jsonl ...]

Cross-fitted as `inference.train.calibrate_labeling.fit` (table counted on one half of the cases, the
other half named, both ways round), for each cue, bin edges and emission temperature; prints vertebrae
named right of those matched, whole scans and slabs, and the L1 and T11-T13 rows of each table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from inference import label
from inference.train import calibrate_labeling as cl

CUES = ("rib_ml", "bone_raw", "bone_s150", "bone_s250")
EDGES = ((0.25, 1.0), (0.5, 1.5), (1.0, 2.0), (1.0, 2.5), (1.5, 3.0), (2.0, 4.0))


def main() -> None:
    rows = [json.loads(x) for p in sys.argv[1:] for x in Path(p).read_text().splitlines() if x.strip()]
    cases = sorted({r["case"] for r in rows})
    half = set(cases[: len(cases) // 2])
    print(f"{len(cases)} cases, {len(rows)} candidates")
    for cue in CUES:
        for edges in EDGES:
            label.RIB_BINS_ML = edges
            cl.RIB_BINS_ML = edges
            rr = [{**r, "rib_ml": r[cue]} for r in rows]
            folds = [([r for r in rr if r["case"] in half], [r for r in rr if r["case"] not in half]),
                     ([r for r in rr if r["case"] not in half], [r for r in rr if r["case"] in half])]
            line = []
            for t in (1.0, 1.5, 2.0, 3.0):
                tot = {}
                for fit_rows, test_rows in folds:
                    for view, (a, b) in cl.score_columns(cl._columns(test_rows), t, cl.rib_table(fit_rows)).items():
                        acc = tot.setdefault(view, [0, 0])
                        acc[0] += a
                        acc[1] += b
                right, n = sum(v[0] for v in tot.values()), sum(v[1] for v in tot.values())
                line.append(f"T{t:g} {right}/{n} (w {tot['whole'][0]} s {tot['slab'][0]})")
            table = cl.rib_table(rr)
            print(f"{cue:9s} {edges}: " + "  ".join(line)
                  + f"  | L1 {table['L1']} T11-13 {table['T11-T13']} L2-4 {table['L2-L4']}", flush=True)


if __name__ == "__main__":
    main()
