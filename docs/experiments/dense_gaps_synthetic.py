"""Experiment (not shipped): short unclaimed stretches full of bone count as skipped vertebrae (step 4).

    git apply docs/experiments/dense_gaps.patch   # on a2f187e
    .venv/bin/python docs/experiments/dense_gaps_synthetic.py 24

`docs/column_steps_synthetic.py`'s cases and scoring (24 held-out calibration cases, whole and as a slab), each
analysed with the patch's rule off (`inference.column.gaps.DENSE_BONE` infinite: the shipped rule) and on (0.4).
Prints the views whose names or counts differ and the totals. Result in docs/experiments/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "docs")]

import column_steps_synthetic as harness  # noqa: E402

import inference.column.gaps as gaps  # noqa: E402


def arm(pipe, on: bool) -> None:
    gaps.DENSE_BONE = 0.4 if on else float("inf")


if __name__ == "__main__":
    harness.compare(arm, int(sys.argv[1]) if len(sys.argv) > 1 else 24, "dense_gaps")
