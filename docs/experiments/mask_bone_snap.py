"""Experiment (issue 30, not shipped): snap the segmenter's masks to bone at the CT's own resolution.

    .venv/bin/python docs/experiments/mask_bone_snap.py GROW,SHRINK,ADD_HU,DROP_HU ...

The segmenter works on a 2 mm grid; its masks are pasted onto the CT's grid (0.7-3 mm on the real cases).
Each setting grows every mask into unclaimed voxels within GROW mm that are at least ADD_HU (nearest mask
wins) and then drops voxels within SHRINK mm of the masks' outer surface below DROP_HU (on a bone-window
export: at least 100 HU added, only the zeroed voxels dropped). Masks from the reference centres (the oracle
of `inference.train.validate_real`), every real case as acquired, bone-window export and display window;
mean Dice against the references. Result in docs/experiments/README.md.
"""
import sys

import numpy as np
from scipy import ndimage as ndi

from inference.column.track import looks_bone_windowed
from inference.config import SHIPPED
from inference.evaluate import evaluate_labels
from inference.io import read_ct
from inference.measure import vertebra_centers
from inference.pipeline import Pipeline
from inference.segment import segment_vertebrae
from inference.train import validate_real as vr

CONDITIONS = {"none": None,
              "bone-window export": vr.PERTURBATIONS["bone-window export (<200 HU → 0)"],
              "display window": vr.PERTURBATIONS["display window W400/L40 in 0–255"]}


def snap(ct, labels, grow_mm, shrink_mm, add_hu, drop_hu):
    """``labels`` grown into bone and trimmed of soft tissue at their outer surface (see the docstring)."""
    lab = labels.array.copy()
    nz = np.argwhere(lab)
    lo, hi = np.maximum(nz.min(0) - 4, 0), nz.max(0) + 5
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    part, hu = lab[box], ct.array[box].astype(np.float32)
    sampling = ct.spacing[::-1]
    if grow_mm > 0:
        d, idx = ndi.distance_transform_edt(part == 0, sampling=sampling, return_indices=True)
        part = np.where((part == 0) & (d <= grow_mm) & (hu >= add_hu), part[tuple(idx)], part)
    if shrink_mm > 0:
        depth = ndi.distance_transform_edt(part != 0, sampling=sampling)
        part = np.where((part != 0) & (depth <= shrink_mm) & (hu < drop_hu), 0, part)
    lab[box] = part
    return labels.with_array(lab)


def main(settings):
    pipe = Pipeline(device="cpu")
    settings = [(0.0, 0.0, 0.0, 0.0), *settings]
    rows = {s: [] for s in settings}
    for case in vr.real_cases():
        ct0 = read_ct(case.ct)
        for name, fn in CONDITIONS.items():
            ct = ct0 if fn is None else fn(ct0, None)
            truth = vr.reference_on(case, ct)
            items = sorted(vertebra_centers(truth).items())
            seg = segment_vertebrae(pipe.segmenter, ct, items, pipe.device, mirror=SHIPPED.segmenter_mirror)
            windowed = looks_bone_windowed(ct)
            for s in settings:
                grow, shrink, add, drop = s
                if windowed:
                    add, drop = max(add, 100.0), min(drop, 1.0)
                lab = seg.labels if s == settings[0] else snap(ct, seg.labels, grow, shrink, add, drop)
                o = evaluate_labels(lab, truth, pred_centers=dict(items))["overall"]
                rows[s].append((case.name, name, o.get("mean_dice"), o.get("mean_hd95_mm")))
    for s in settings:
        dice = np.mean([r[2] for r in rows[s] if r[2] is not None])
        hd = np.mean([r[3] for r in rows[s] if r[3] is not None])
        print(s, f"mean Dice {dice:.4f} HD95 {hd:.2f}", " | ".join(f"{r[0]}/{r[1]} {r[2]:.3f}" for r in rows[s]))


if __name__ == "__main__":
    main([tuple(float(x) for x in a.split(",")) for a in sys.argv[1:]])
