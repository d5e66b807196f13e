"""A step of the column stage switched off and on, on held-out synthetic CT.

    .venv/bin/python docs/column_steps_synthetic.py fill_gaps N
    .venv/bin/python docs/column_steps_synthetic.py sacrum_from_bone N
    .venv/bin/python docs/column_steps_synthetic.py skipped_cervical 40 40 --cervical   # cases 40-79, cervical views

The first N calibration cases of `inference.train.calibrate_labeling` (seed stream 77, never trained on),
each whole and as its random 60-160 mm slab, analysed by the shipped pipeline with the `RunConfig` flag
given off and on. Per arm: true vertebrae (centroid holding >= 1 ml of mask) found (an analysis centre
within 20 mm), named right, analysis vertebrae with no true vertebra within 20 mm (false), and for every
view holding >= 100 ml of sacrum the sacrum's mask Dice and centre error (mask centroid against the true
one; a sacrum not found counts Dice 0). Prints one line per view where the arms differ (names, counts or
sacrum) and the totals.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference import registry  # noqa: E402
from inference.config import SHIPPED  # noqa: E402
from inference.measure import vertebra_centers, vertebra_voxel_counts  # noqa: E402
from inference.pipeline import Pipeline  # noqa: E402
from inference.train.calibrate_labeling import _slab, calibration_case  # noqa: E402

MATCH_MM = 20.0
SACRUM = 26
SACRUM_ML = 100.0


def score(result, labels) -> tuple[np.ndarray, tuple[float, float | None] | None]:
    """(true vertebrae, found, named right, false) of one analysis, and (Dice, centre error) of its sacrum
    where the view holds `SACRUM_ML` of it (else None)."""
    counts = vertebra_voxel_counts(labels)
    ml = float(np.prod(labels.spacing)) / 1000.0
    centres = vertebra_centers(labels)
    truth = {vid: c for vid, c in centres.items() if counts.get(vid, 0) * ml >= 1.0}
    found = right = false = 0
    for vid, c in truth.items():
        d = [np.linalg.norm(v.center_lps - c) for v in result.vertebrae]
        if d and min(d) <= MATCH_MM:
            found += 1
            right += int(result.vertebrae[int(np.argmin(d))].id == vid)
    for v in result.vertebrae:
        if not truth or min(np.linalg.norm(v.center_lps - c) for c in truth.values()) > MATCH_MM:
            false += 1
    sacrum = None
    if counts.get(SACRUM, 0) * ml >= SACRUM_ML:
        ref = labels.array == SACRUM
        pred = result.labels.array == SACRUM if result.labels is not None else np.zeros_like(ref)
        dice = 2.0 * np.count_nonzero(ref & pred) / (np.count_nonzero(ref) + np.count_nonzero(pred))
        mine = [v.center_lps for v in result.vertebrae if v.id == SACRUM]
        sacrum = (dice, float(np.linalg.norm(mine[0] - centres[SACRUM])) if mine else None)
    return np.array([len(truth), found, right, false]), sacrum


def holds_cervical(labels) -> bool:
    """Whether a view holds at least 1 ml of a cervical vertebra (C1-C7)."""
    counts = vertebra_voxel_counts(labels)
    ml = float(np.prod(labels.spacing)) / 1000.0
    return any(counts.get(v.id, 0) * ml >= 1.0 for v in registry.VERTEBRAE if v.region == "cervical")


def compare(arm, n: int, label: str, pipe: Pipeline | None = None, start: int = 0, keep=None) -> None:
    """Calibration cases ``start`` to ``start + n``, whole and as a slab (only the views ``keep(labels)`` accepts,
    when given), analysed with ``arm(pipe, False)`` and then ``arm(pipe, True)`` applied before each analysis;
    prints the views whose arms differ and the totals."""
    pipe = pipe or Pipeline(device="cpu")
    totals = {False: np.zeros(4, int), True: np.zeros(4, int)}
    sacra: dict[bool, list] = {False: [], True: []}
    for i in range(start, start + n):
        ct, labels, _, slab = calibration_case(i)
        views = [("whole", ct, labels)]
        if slab is not None:
            views.append(("slab", _slab(ct, *slab), _slab(labels, *slab)))
        for view, c, lab in views:
            if keep is not None and not keep(lab):
                continue
            got = {}
            for on in (False, True):
                arm(pipe, on)
                r = pipe.analyze(c)
                counts, sacrum = score(r, lab)
                got[on] = (counts, [v.name for v in r.vertebrae], sacrum)
                totals[on] += counts
                if sacrum is not None:
                    sacra[on].append(sacrum)
            if (got[False][1] != got[True][1] or got[False][2] != got[True][2]
                    or not np.array_equal(got[False][0], got[True][0])):
                for on in (False, True):
                    sac = ""
                    if got[on][2] is not None:
                        dice, err = got[on][2]
                        sac = f" sacrum Dice {dice:.3f}, centre error {'-' if err is None else f'{err:.1f}'} mm"
                    print(f"case {i} {view} {label}={on}: {got[on][0].tolist()} {got[on][1]}{sac}", flush=True)
    for on in (False, True):
        t, f, r, x = totals[on]
        line = f"{label}={on}: true {t}, found {f}, named right {r}, false {x}"
        if sacra[on]:
            dice = np.array([d for d, _ in sacra[on]])
            err = [e for _, e in sacra[on] if e is not None]
            line += (f"; {len(dice)} sacra: mean Dice {dice.mean():.3f} (median {np.median(dice):.3f}), "
                     f"mean centre error {np.mean(err):.1f} mm over the {len(err)} found")
        print(line)


def main(flag: str, n: int, start: int = 0, cervical: bool = False) -> None:
    def arm(pipe: Pipeline, on: bool) -> None:
        pipe.config = SHIPPED.replace(**{flag: on})

    compare(arm, n, flag, start=start, keep=holds_cervical if cervical else None)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--cervical"]
    main(args[0], int(args[1]) if len(args) > 1 else 20, int(args[2]) if len(args) > 2 else 0,
         "--cervical" in sys.argv)
