"""Experiment (not shipped): the localizer run on the CT presented at twice its scale, for cervical peaks.

    .venv/bin/python docs/experiments/cervical_zoom.py 37:whole 33:whole 12:whole 25:whole

For each calibration case (seed stream 77, `inference.train.calibrate_labeling`), whole or as its slab, the
whole-scan heatmap peaks above 0.2 at scale 1 and at scale 2 (the voxel size doubled in the header, so that a
cervical vertebra looks as big as a lumbar one), mapped back onto the CT, against the true cervical centroids:
the distance from each to the nearest peak, and the peaks lying more than 10 mm from any true centroid.
Result in docs/experiments/README.md ("Cervical peaks read at twice the scale").
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from inference import registry  # noqa: E402
from inference.localize import find_candidates, run_localizer  # noqa: E402
from inference.measure import vertebra_centers  # noqa: E402
from inference.pipeline import Pipeline  # noqa: E402
from inference.train.calibrate_labeling import _slab, calibration_case  # noqa: E402
from inference.volume import Volume  # noqa: E402

MATCH_MM, OFF_MM = 8.0, 10.0


def main(views: list[str]) -> None:
    pipe = Pipeline(device="cpu")
    found = {1.0: [0, 0], 2.0: [0, 0]}
    for arg in views:
        i, view = int(arg.split(":")[0]), arg.split(":")[1]
        ct, labels, _, slab = calibration_case(i)
        if view == "slab":
            ct, labels = _slab(ct, *slab), _slab(labels, *slab)
        truth = {registry.name_of(k): v for k, v in vertebra_centers(labels).items()}
        o = np.asarray(ct.origin)
        for zoom in (1.0, 2.0):
            shown = Volume(ct.array, tuple(s * zoom for s in ct.spacing), ct.origin, ct.direction)
            out = run_localizer(pipe.localizer, shown, pipe.device, mirror=True)
            peaks = [o + (np.asarray(c.center_lps) - o) / zoom for c in find_candidates(out, threshold=0.2)]
            dist = []
            for name, c in truth.items():
                if name.startswith("C"):
                    d = min((float(np.linalg.norm(p - c)) for p in peaks), default=np.inf)
                    dist.append((name, round(d, 1)))
                    found[zoom][0] += 1
                    found[zoom][1] += d <= MATCH_MM
            off = sum(min(np.linalg.norm(p - c) for c in truth.values()) > OFF_MM for p in peaks)
            print(i, view, "scale", zoom, dist, "peaks", len(peaks), f"off every truth > {OFF_MM} mm:", off, flush=True)
    for zoom, (n, k) in found.items():
        print(f"scale {zoom}: {k} of {n} true cervical vertebrae within {MATCH_MM} mm of a peak")


if __name__ == "__main__":
    main(sys.argv[1:])
