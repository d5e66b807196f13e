"""Level-sequence experiment (docs/experiments/README.md): detection × naming on the real cases.

Apply ``level_sequence.patch`` first. Runs the localizer once per case and perturbation of
`inference.train.validate_real`, then for each configuration (detection column | sequence, naming localizer |
sequence | both) takes `Pipeline.candidates` and the joint decoding (no segmentation, so no rib cue), and counts
per configuration: reference vertebrae identified (the candidate with the reference's name within 20 mm of its
centroid and no other reference closer) and wrong names shown above p 0.5 (a candidate within 20 mm of a
reference vertebra under another name, after the unanchored cap).

    python docs/experiments/level_sequence_pipeeval.py CHECKPOINT [CONDITION,CONDITION...]
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
from inference.models.sequence import LevelSequenceNet

from inference import registry
from inference.config import SHIPPED
from inference.io.ct import read_ct
from inference.label import decode, shown_confidence
from inference.measure import vertebra_centers
from inference.pipeline import Pipeline
from inference.train.validate_real import CASE_PERTURBATIONS, PERTURBATIONS, real_cases, reference_on

CONFIGS = [("column", "localizer"), ("column", "both"), ("column", "sequence"), ("sequence", "sequence"),
           ("sequence", "both")]


def _perturbed(cname, case, rng):
    ct0 = read_ct(case.ct)
    if cname == "none":
        return ct0, ct0
    f = PERTURBATIONS.get(cname)
    return (f(ct0, rng) if f else CASE_PERTURBATIONS[cname](ct0, rng, case)), ct0


def _score(ref, pred):
    ident = wrong = 0
    for vid, rc in ref.items():
        same = [q for v, q, _ in pred if v == vid]
        if same and np.linalg.norm(same[0] - rc) <= 20 and \
                min(ref, key=lambda r: np.linalg.norm(np.asarray(ref[r]) - same[0])) == vid:
            ident += 1
            continue
        near = [(np.linalg.norm(np.asarray(q) - rc), v, p) for v, q, p in pred]
        if near:
            d, v, p = min(near, key=lambda t: t[0])
            wrong += int(d <= 20 and v != vid and p > 0.5)
    return ident, wrong


def main() -> None:
    torch.set_num_threads(1)
    ck = torch.load(sys.argv[1], map_location="cpu")
    net = LevelSequenceNet.from_architecture(ck["architecture"])
    net.load_state_dict(ck["model"])
    net.eval()
    pipes = {c: Pipeline(device="cpu", segment=False, sequence=net,
                         config=SHIPPED.replace(detection=c[0], naming=c[1])) for c in CONFIGS}
    base = pipes[CONFIGS[0]]
    cal = base.decoding_settings()
    conds = sys.argv[2].split(",") if len(sys.argv) > 2 else list(PERTURBATIONS) + list(CASE_PERTURBATIONS)
    tot: dict = {}
    for cname in conds:
        rng = np.random.default_rng(0)
        for case in real_cases():
            ct, ct0 = _perturbed(cname, case, rng)
            if ct is None:
                continue
            try:
                ref = vertebra_centers(reference_on(case, ct))
            except Exception:  # a resampled CT: the same LPS space as the original
                ref = vertebra_centers(reference_on(case, ct0))
            out = base._run_localizer(ct, None)
            line = []
            for c in CONFIGS:
                cands = pipes[c].candidates(out, ct)
                pred = []
                if cands:
                    d = decode(np.array([x.level_probs for x in cands]),
                               scores=np.array([min(1.0, x.score) for x in cands]),
                               temperature=cal["emission_temperature"],
                               posterior_temperature=cal["posterior_temperature"])
                    shown, _ = shown_confidence(d.ids, d.confidence)
                    pred = [(int(v), x.center_lps, p) for v, x, p in zip(d.ids, cands, shown, strict=True) if v]
                ident, wrong = _score(ref, pred)
                t = tot.setdefault(cname, {}).setdefault(f"{c[0]}+{c[1]}", [0, 0, 0])
                t[0] += ident
                t[1] += len(ref)
                t[2] += wrong
                line.append(f"{c[0][:3]}+{c[1][:3]} {ident}/{len(ref)} w{wrong} "
                            f"{[registry.name_of(v) for v, _, _ in pred]}")
            print(f"{cname[:22]:22s} {case.name[:14]:14s} " + " | ".join(line), flush=True)
    print(json.dumps(tot))
    for cname, d in tot.items():
        print(cname[:30].ljust(30), "  ".join(f"{k}: {v[0]}/{v[1]} w{v[2]}" for k, v in d.items()))


if __name__ == "__main__":
    main()
