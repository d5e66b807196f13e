"""Re-centred segmentation on held-out synthetic CT (docs/experiments/README.md, "Re-centred segmentation").

Needs recentred_segmentation.patch applied (`RunConfig.segmenter_recenter`). The calibration cases of
`inference.train.calibrate_labeling` (stream 77), whole and as their random slab, through the whole
pipeline with re-centring off and on; per true vertebra, identified and Dice, as JSON lines.

    python docs/experiments/recentred_segmentation_synthetic.py 0 30 /tmp/recentred.jsonl
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
torch.set_num_threads(2)
from inference.config import SHIPPED  # noqa: E402
from inference.evaluate import evaluate_labels  # noqa: E402
from inference.pipeline import Pipeline  # noqa: E402
from inference.train.calibrate_labeling import _slab, calibration_case  # noqa: E402

first, last, out_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
pipes = {arm: Pipeline(device="cpu", config=SHIPPED.replace(segmenter_recenter=arm == "on")) for arm in ("off", "on")}
with open(out_path, "a") as out:
    for i in range(first, last):
        ct, labels, _, slab = calibration_case(i)
        views = [("whole", ct, labels)] + ([("slab", _slab(ct, *slab), _slab(labels, *slab))] if slab else [])
        for view, x, truth in views:
            for arm, pipe in pipes.items():
                case = pipe.analyze(x)
                rep = evaluate_labels(case.labels, truth, pred_centers={v.id: v.center_lps for v in case.vertebrae})
                ml = float(np.prod(truth.spacing)) / 1000
                rows = [{"name": r["name"], "ml": round(int(np.count_nonzero(truth.array == r["id"])) * ml, 1),
                         "id": r["identified"], "dice": r["dice"] or 0.0}
                        for r in rep["per_vertebra"] if r["in_reference"]]
                out.write(json.dumps({"case": i, "view": view, "arm": arm, "rows": rows}) + "\n")
                out.flush()
