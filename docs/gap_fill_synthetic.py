"""Skipped-vertebra filling (`RunConfig.fill_gaps`, `inference.column.gaps`) on held-out synthetic CT.

    .venv/bin/python docs/gap_fill_synthetic.py N

The first N calibration cases of `inference.train.calibrate_labeling` (seed stream 77, never trained on),
each whole and as its random 60-160 mm slab, analysed by the shipped pipeline with and without the
filling. Per arm: true vertebrae (centroid holding >= 1 ml of mask) found (an analysis centre within
20 mm), named right, and analysis vertebrae with no true vertebra within 20 mm (false). Prints one line
per case where the arms differ and the totals.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.config import SHIPPED  # noqa: E402
from inference.measure import vertebra_centers, vertebra_voxel_counts  # noqa: E402
from inference.pipeline import Pipeline  # noqa: E402
from inference.train.calibrate_labeling import _slab, calibration_case  # noqa: E402

MATCH_MM = 20.0


def score(result, labels) -> tuple[int, int, int, int]:
    """(true vertebrae, found, named right, false) of one analysis."""
    counts = vertebra_voxel_counts(labels)
    ml = float(np.prod(labels.spacing)) / 1000.0
    truth = {vid: c for vid, c in vertebra_centers(labels).items() if counts.get(vid, 0) * ml >= 1.0}
    found = right = false = 0
    for vid, c in truth.items():
        d = [np.linalg.norm(v.center_lps - c) for v in result.vertebrae]
        if d and min(d) <= MATCH_MM:
            found += 1
            right += int(result.vertebrae[int(np.argmin(d))].id == vid)
    for v in result.vertebrae:
        if not truth or min(np.linalg.norm(v.center_lps - c) for c in truth.values()) > MATCH_MM:
            false += 1
    return len(truth), found, right, false


def main(n: int) -> None:
    pipe = Pipeline(device="cpu")
    totals = {False: np.zeros(4, int), True: np.zeros(4, int)}
    for i in range(n):
        ct, labels, _, slab = calibration_case(i)
        views = [("whole", ct, labels)]
        if slab is not None:
            views.append(("slab", _slab(ct, *slab), _slab(labels, *slab)))
        for view, c, lab in views:
            got = {}
            for fill in (False, True):
                pipe.config = SHIPPED.replace(fill_gaps=fill)
                r = pipe.analyze(c)
                got[fill] = (np.array(score(r, lab)), [v.name for v in r.vertebrae])
                totals[fill] += got[fill][0]
            if got[False][1] != got[True][1]:
                print(f"case {i} {view}: without {got[False][0].tolist()} {got[False][1]}\n"
                      f"{'':>{len(str(i)) + len(view) + 7}}with    {got[True][0].tolist()} {got[True][1]}", flush=True)
    for fill in (False, True):
        t, f, r, x = totals[fill]
        print(f"fill_gaps={fill}: true {t}, found {f}, named right {r}, false {x}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
