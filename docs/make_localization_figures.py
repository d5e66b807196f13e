"""Figures of the localizer on real CT: sagittal and coronal MIPs with predicted centers and names.

    .venv/bin/python docs/make_localization_figures.py

Writes docs/localization_chest_dicom.png (the unlabeled 141-slice chest DICOM from
../shared/data/real), docs/localization_aorta_cta.png (the aorta-stent CT angiogram crop from
../shared/data/real; both skipped when absent) and docs/localization_abdomen.png (the sample CT, with
the reference centroids as white circles). Centers are LPS mm, mapped into the MIP images through
an axis-aligned 1 mm grid, so what is drawn is what the bundle holds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference import registry  # noqa: E402
from inference.io import read_ct, read_label_map  # noqa: E402
from inference.measure import vertebra_centers  # noqa: E402
from inference.pipeline import Pipeline  # noqa: E402
from inference.preprocess import resample_ct, working_grid  # noqa: E402

CASES = [
    ("localization_chest_dicom.png", ROOT.parent / "shared/data/real/chest_ct_dicom_1mm/dicom", None,
     "chest CT DICOM, 141 slices (unlabeled): check names against the ribs"),
    ("localization_aorta_cta.png", ROOT.parent / "shared/data/real/ts_aorta_stent_crop/ct_cropped.nii.gz",
     ROOT.parent / "shared/data/real/ts_aorta_stent_crop/vertebrae_T12.nii.gz",
     "CT angiogram crop (aortic stent graft): the field of view cuts the column from behind; only T12 has a "
     "reference (white circle)"),
    ("localization_abdomen.png", ROOT / "assets/sample/abdomen_ct_3mm.nii.gz",
     ROOT / "assets/sample/abdomen_vertebrae_totalseg.nii.gz",
     "sample abdomen CT 3 mm: white circles = reference centroids (TotalSegmentator pseudo-labels)"),
]


def figure(pipeline: Pipeline, out: Path, ct_path: Path, truth: Path | None, title: str) -> None:
    ct = read_ct(ct_path)
    result = pipeline.analyze(ct)
    grid = working_grid(ct, 1.0)
    hu = resample_ct(ct, grid)  # [k=S, j=P, i=L], 1 mm
    pts = np.array([v.center_lps for v in result.vertebrae]).reshape(-1, 3)
    idx = grid.lps_to_index(pts) if len(pts) else np.zeros((0, 3))
    ref = {}
    if truth is not None:
        ref = vertebra_centers(read_label_map(truth))
    # sagittal: MIP over a ±25 mm slab (L-R) around the spine; coronal: MIP over ±30 mm (A-P) around it
    ci = int(np.median(idx[:, 0])) if len(idx) else hu.shape[2] // 2
    cj = int(np.median(idx[:, 1])) if len(idx) else hu.shape[1] // 2
    sag = hu[:, :, max(0, ci - 25): ci + 25].max(axis=2)
    cor = hu[:, max(0, cj - 30): cj + 30, :].max(axis=1)
    # the figure takes the images' shape: a short slab makes a short figure, not one half blank
    height = float(np.clip(11.0 * sag.shape[0] / (sag.shape[1] + cor.shape[1]), 3.0, 12.0)) + 1.2
    fig, axes = plt.subplots(1, 2, figsize=(12, height), width_ratios=[sag.shape[1], cor.shape[1]])
    for ax, img, col, label in ((axes[0], sag, 1, "sagittal MIP (A left, S up)"),
                                (axes[1], cor, 0, "coronal MIP (R left, S up)")):
        ax.imshow(img, cmap="gray", vmin=-300, vmax=1300, origin="lower", aspect="equal")
        if col == 0:
            ax.invert_xaxis()  # radiological: patient's right on the left (L grows with i)
        for v, p in zip(result.vertebrae, idx, strict=True):
            color = "yellow" if v.confidence >= 0.7 else "orange"
            ax.plot(p[col], p[2], "+", color=color, ms=12, mew=2)
            ax.annotate(f"{v.name} {v.confidence:.2f}", (p[col], p[2]), xytext=(8, 0), textcoords="offset points",
                        color=color, fontsize=9, va="center")
        for vid, c in ref.items():
            q = grid.lps_to_index(c[None])[0]
            ax.plot(q[col], q[2], "o", mfc="none", mec="white", ms=9)
            ax.annotate(registry.name_of(vid), (q[col], q[2]), xytext=(-24, 0), textcoords="offset points",
                        color="white", fontsize=8, va="center")
        ax.set_title(label)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title}\n+ = SpineNav centers (yellow p ≥ 0.7, orange less), LPS mm; "
                 f"{len(result.vertebrae)} found", fontsize=10)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.6 / height))  # a band of 0.6 inch for the two-line suptitle
    fig.savefig(out, dpi=80, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    pipeline = Pipeline(device="cpu")
    for name, ct_path, truth, title in CASES:
        if not ct_path.exists():
            continue
        figure(pipeline, ROOT / "docs" / name, ct_path, truth, title)


if __name__ == "__main__":
    main()
