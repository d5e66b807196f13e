"""Sacrum crop re-centred on its own mask (docs/experiments/README.md, "Sacrum re-centring").

    python docs/experiments/sacrum_recenter.py N OUT.jsonl

Before the main segmentation pass, the sacrum candidate is segmented alone and its crop moved to that
mask's centroid, ``R`` = 0, 1 or 2 times; each of the first ``N`` calibration cases (seed stream 77)
holding >= 100 ml of sacrum is analysed three times and the Dice of L5 and the sacrum against the
synthetic truth written per case.
"""

from __future__ import annotations

import json
import sys

import numpy as np

import inference.pipeline as P
from inference.measure import vertebra_centers
from inference.models.localizer import LEVEL_IDS
from inference.models.segmenter import SACRUM_PATCH, patch_of
from inference.synth.generator import generate
from inference.synth.writer import case_seed
from inference.train.calibrate_labeling import CALIBRATION_SEED
from inference.train.pool import POOL_CONFIG

ROUNDS = [0]


def segment_candidates(self, ct, cands, progress=None, cancel=None):
    patches = [patch_of(LEVEL_IDS[int(np.argmax(c.level_probs))]) for c in cands]
    centers = [c.center_lps.copy() for c in cands]
    for n, p in enumerate(patches):
        for _ in range(ROUNDS[0] if p == SACRUM_PATCH else 0):
            alone = self._run_segmenter(ct, [(1, centers[n])], None, None, [p])
            c = vertebra_centers(alone.labels_in_box()).get(1)
            if c is None:
                break
            centers[n] = c
    seg = self._run_segmenter(ct, [(n + 1, centers[n]) for n in range(len(cands))], progress, cancel, patches)
    return seg, [seg.masks[n + 1].rib_ml if n + 1 in seg.masks else None for n in range(len(cands))]


def main() -> None:
    P.Pipeline.segment_candidates = segment_candidates
    pipe = P.Pipeline(device="cpu")
    done, i = 0, 0
    with open(sys.argv[2], "a") as out:
        while done < int(sys.argv[1]):
            case = generate(case_seed(CALIBRATION_SEED, i), POOL_CONFIG)
            i += 1
            truth = case.labels.array
            if (truth == 26).sum() * np.prod(case.labels.spacing) / 1000 < 100:
                continue
            done += 1
            row = {"case": i - 1}
            for rounds in (0, 1, 2):
                ROUNDS[0] = rounds
                lab = pipe.analyze(case.ct).segmentation.labels.array
                for vid in (24, 26):
                    a, b = lab == vid, truth == vid
                    dice = 2 * (a & b).sum() / max(1, a.sum() + b.sum())
                    row[f"{vid}_{rounds}"] = round(float(dice), 4) if b.any() else None
            out.write(json.dumps(row) + "\n")
            print(row, flush=True)


if __name__ == "__main__":
    main()
