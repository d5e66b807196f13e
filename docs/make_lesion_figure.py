"""Figure of the lesion suspicion on held-out synthetic CT: what the flags and the heatmap show.

    .venv/bin/python docs/make_lesion_figure.py

Regenerates held-out cases of the pool of seed 12 (never trained on; `inference.train.pool`) in
order until it has found, per lesion type, the first two vertebrae carrying >= 1 ml of it and one
lesion-free vertebra. Each is segmented with the shipped models from its true center (as
`inference.train.validate_synthetic` does) and drawn as a sagittal slice through the lesion: the
CT, the true lesion outline (red), the vertebra's mask (yellow) and the lesion map the bundle's
lesions.nii.gz would hold (heat), titled with the scores per type (flag at 0.5).
Writes docs/lesions_synthetic.png.

Then analyzes the sample CT (real, no known lesion) and draws, for every vertebra it flags, an axial
and a sagittal slice through the peak of its lesion map on a 1 mm LPS grid: what a flag on real CT
points at. Writes docs/lesions_sample_flags.png (a note in it when nothing is flagged).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference import registry  # noqa: E402
from inference.io import read_ct  # noqa: E402
from inference.models.segmenter import LESION_TYPES  # noqa: E402
from inference.pipeline import Pipeline  # noqa: E402
from inference.preprocess import resample_ct, resample_labels, working_grid  # noqa: E402
from inference.segment import LESION_FLAG, segment_vertebrae  # noqa: E402
from inference.synth.writer import case_seed  # noqa: E402
from inference.train.pool import pool_case  # noqa: E402
from inference.volume import Volume  # noqa: E402

SAMPLE = ROOT / "assets/sample/abdomen_ct_3mm.nii.gz"
SEED = 12
MIN_ML = 1.0
PER_TYPE = 2
SPACING = 2.0


def sample_flags(pipe: Pipeline) -> None:
    """docs/lesions_sample_flags.png: what each lesion flag on the sample CT points at."""
    ct = read_ct(SAMPLE)
    res = pipe.analyze(ct)
    flagged = [v for v in res.vertebrae if v.lesion_type is not None]
    grid = working_grid(ct, 1.0)
    hu = resample_ct(ct, grid)
    labels = resample_labels(res.segmentation.labels, grid)
    heat = resample_ct(res.segmentation.lesions.with_array(res.segmentation.lesions.array.astype(np.float32)), grid)
    fig, axes = plt.subplots(1, max(2, 2 * len(flagged)), figsize=(4 * max(2, 2 * len(flagged)), 4.4), squeeze=False)
    if not flagged:
        for ax in axes[0]:
            ax.axis("off")
        axes[0][0].text(0.0, 0.5, "no vertebra of the sample CT is flagged", fontsize=12)
    for n, v in enumerate(flagged):
        own = labels == v.id
        k, j, i = np.unravel_index(np.argmax(np.where(own, heat, -1.0)), heat.shape)
        kk, jj, ii = np.argwhere(own).T
        box = (slice(jj.min() - 15, jj.max() + 15), slice(ii.min() - 15, ii.max() + 15))
        side = (slice(kk.min() - 15, kk.max() + 15), slice(jj.min() - 15, jj.max() + 15))
        for ax, img, h, m, org in ((axes[0][2 * n], hu[k][box], heat[k][box], own[k][box], "upper"),
                                   (axes[0][2 * n + 1], hu[side[0], side[1], i], heat[side[0], side[1], i],
                                    own[side[0], side[1], i], "lower")):
            ax.imshow(img, cmap="gray", vmin=-200, vmax=1300, origin=org)
            ax.imshow(np.ma.masked_less(h, 0.05), cmap="hot", vmin=0, vmax=1, alpha=0.5, origin=org)
            ax.contour(m, levels=[0.5], colors="yellow", linewidths=0.6)  # array coordinates, as the image
            ax.set_xticks([])
            ax.set_yticks([])
        scores = ", ".join(f"{t} {s:.2f}" for t, s in v.lesion_scores.items())
        axes[0][2 * n].set_title(f"{v.name}: flagged {v.lesion_type}\n{scores}\naxial through the map's peak "
                                 f"({hu[k, j, i]:.0f} HU)", fontsize=8)
        axes[0][2 * n + 1].set_title(f"{v.name}: sagittal (anterior left)", fontsize=8)
    fig.suptitle("Sample CT (real, no known lesion): what each lesion flag points at; yellow = mask, heat = "
                 "lesions.nii.gz", fontsize=9)
    fig.tight_layout()
    out = ROOT / "docs" / "lesions_sample_flags.png"
    fig.savefig(out, dpi=90)
    print(out)


def main() -> None:
    pipe = Pipeline(device="cpu")
    sample_flags(pipe)
    want = {t: PER_TYPE for t in LESION_TYPES} | {"none": 1}
    panels = []
    for i in range(240):
        if not any(want.values()):
            break
        case = pool_case(case_seed(SEED, i), SPACING)
        spacing = float(case["spacing"][0])
        voxel_ml = spacing**3 / 1000.0
        ct = Volume(case["hu"], (spacing,) * 3, tuple(float(o) for o in case["origin"]))
        items = [(int(v), np.asarray(case["origin"]) + spacing * c) for v, c in zip(case["ids"], case["centers"],
                                                                                       strict=True)]
        picks = []
        for vid, _ in items:
            mask = case["labels"] == vid
            ml = {t: np.count_nonzero(mask & (case["lesions"] == n + 1)) * voxel_ml for n, t in enumerate(LESION_TYPES)}
            kind = max(ml, key=ml.get) if max(ml.values()) >= MIN_ML else ("none" if max(ml.values()) == 0 else None)
            if kind is not None and want[kind] > 0 and mask.sum() > 1000:
                want[kind] -= 1
                picks.append((vid, kind))
        if not picks:
            continue
        seg = segment_vertebrae(pipe.segmenter, ct, items, torch.device("cpu"),
                                lesion_thresholds=pipe.lesion_thresholds, lesion_model=pipe.lesion)
        for vid, kind in picks:
            panels.append((i, vid, kind, case, seg))
    panels.sort(key=lambda p: (list(LESION_TYPES) + ["none"]).index(p[2]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 4.2), squeeze=False)
    for ax, (i, vid, kind, case, seg) in zip(axes[0], panels, strict=True):
        mask = case["labels"] == vid
        code = LESION_TYPES.index(kind) + 1 if kind != "none" else None
        target = mask & (case["lesions"] == code) if code else mask
        k, j, x = np.argwhere(target).mean(axis=0).round().astype(int)
        kk = np.argwhere(mask)[:, 0]
        jj = np.argwhere(mask)[:, 1]
        win = (slice(max(kk.min() - 12, 0), kk.max() + 12), slice(max(jj.min() - 8, 0), jj.max() + 8))
        hu = case["hu"][win[0], win[1], x]
        heat = seg.lesions.array[win[0], win[1], x].astype(float)
        ax.imshow(hu, cmap="gray", vmin=-200, vmax=1300, origin="lower")
        ax.imshow(np.ma.masked_less(heat, 0.05), cmap="hot", vmin=0, vmax=1, alpha=0.6, origin="lower")
        ax.contour(mask[win[0], win[1], x], levels=[0.5], colors="yellow", linewidths=0.6)
        if code:
            ax.contour(target[win[0], win[1], x], levels=[0.5], colors="red", linewidths=1.0)
        m = seg.masks.get(vid)
        scores = ", ".join(f"{t[:4]} {m.lesion_scores[t]:.2f}" for t in LESION_TYPES) if m else "no mask"
        flagged = f"flagged {m.lesion_type}" if m and m.lesion_score >= LESION_FLAG else "not flagged"
        ax.set_title(f"case {i} {registry.name_of(vid)}: true {kind}\n{scores}\n{flagged}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Held-out synthetic CT (seed 12): sagittal slice through the lesion; red = true lesion, "
                 "yellow = mask, heat = lesions.nii.gz (suspicion, not diagnosis)", fontsize=9)
    fig.tight_layout()
    out = ROOT / "docs" / "lesions_synthetic.png"
    fig.savefig(out, dpi=90)
    print(out)


if __name__ == "__main__":
    main()
