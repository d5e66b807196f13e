"""Make docs/planning_slices.png: planned screws on CT slices through the pedicles, a lumbar and a thoracic level.

    .venv/bin/python docs/make_planning_slices.py

The sample CT (L3, screws planned on its TotalSegmentator reference mask) and the chest DICOM from
../shared (T7, screws planned on SpineNav's own segmentation; skipped when absent) are analysed and
planned (`inference.planning`), then resampled on two planes of the vertebra's own frame: the axial
plane through both screw axes (left-right × antero-posterior) and the sagittal plane through the left
screw's axis (antero-posterior × cranio-caudal). Bone window; the mask's outline in yellow, each screw
as its shaft (diameter to scale) in the colour of its Gertzbein–Robbins grade, its entry marked.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference import registry  # noqa: E402
from inference.io import onto_grid, read_ct, read_label_map  # noqa: E402
from inference.planning.bundle import plan_labels_with_models  # noqa: E402

CHEST = ROOT.parent / "shared" / "data" / "real" / "chest_ct_dicom_1mm" / "dicom"
GRADE_COLOURS = {"A": "#2ca02c", "B": "#bcbd22", "C": "#ff7f0e", "D": "#d62728", "E": "#8c0000"}
HALF_MM, STEP_MM = 45.0, 0.25


def plane(volume, origin: np.ndarray, u: np.ndarray, v: np.ndarray, order: int) -> np.ndarray:
    """``volume`` sampled on the square plane origin + a·u + b·v, |a|, |b| ≤ `HALF_MM` ([b, a] array)."""
    a = np.arange(-HALF_MM, HALF_MM + 1e-9, STEP_MM)
    aa, bb = np.meshgrid(a, a)
    pts = origin + aa[..., None] * u + bb[..., None] * v
    ijk = volume.lps_to_index(pts.reshape(-1, 3))
    return ndimage.map_coordinates(volume.array.astype(np.float32), ijk[:, ::-1].T, order=order, cval=-1000.0
                                   ).reshape(aa.shape)


def draw(ax, ct, labels, vid: int, origin: np.ndarray, u: np.ndarray, v: np.ndarray, screws, title: str) -> None:
    img = plane(ct, origin, u, v, 1)
    mask = plane(labels, origin, u, v, 0) == vid
    ext = (-HALF_MM, HALF_MM, -HALF_MM, HALF_MM)
    ax.imshow(img, cmap="gray", vmin=-300, vmax=1500, extent=ext, origin="lower")
    ax.contour(mask.astype(float), levels=[0.5], colors="yellow", linewidths=0.6, extent=ext, origin="lower")
    for s in screws:
        e, t = (np.array([(p - origin) @ u, (p - origin) @ v]) for p in (s.entry_lps, s.target_lps))
        d = (t - e) / max(np.linalg.norm(t - e), 1e-9)
        n = np.array([-d[1], d[0]]) * s.diameter_mm / 2
        shaft = np.array([e + n, t + n, t - n, e - n, e + n])
        colour = GRADE_COLOURS.get(s.grade, "white")
        ax.fill(shaft[:, 0], shaft[:, 1], color=colour, alpha=0.55, lw=0)
        ax.plot(*e, "o", color=colour, ms=4)
        ax.text(t[0], t[1], f" {s.side[0].upper()} {s.diameter_mm:g}×{s.length_mm:g} {s.grade}", color=colour,
                fontsize=7)
    ax.set_title(title, fontsize=8, loc="left")
    ax.tick_params(labelsize=6)


def level_panels(axes, ct, labels, name: str, source: str) -> None:
    vid = registry.id_of(name)
    res = plan_labels_with_models(labels, [vid], ct=ct)
    model = res.models[name]
    screws = [s for s in res.screws if s.level == name]
    f = model.frame
    centre = np.mean([s.entry_lps + 15 * s.direction for s in screws], axis=0) if screws else f.centroid
    draw(axes[0], ct, labels, vid, centre, f.e_x, -f.e_y, screws,
         f"{name}, {source}: axial through both screws\n(left of the patient on the right, front up)")
    left = next((s for s in screws if s.side == "left"), screws[0] if screws else None)
    if left is not None:
        u = left.direction - (left.direction @ f.e_z) * f.e_z
        u /= np.linalg.norm(u)
        draw(axes[1], ct, labels, vid, left.entry_lps + 15 * left.direction, -u, f.e_z, [left],
             f"{name}: sagittal through the {left.side} screw\n(front to the right, head up)")
    else:
        axes[1].set_axis_off()


def main() -> int:
    sample = read_ct(ROOT / "assets/sample/abdomen_ct_3mm.nii.gz")
    reference = onto_grid(read_label_map(ROOT / "assets/sample/abdomen_vertebrae_totalseg.nii.gz"), sample)
    rows = [(sample, reference, "L3", "sample CT 3 mm, reference mask")]
    if CHEST.is_dir():
        from inference.pipeline import Pipeline

        chest = read_ct(CHEST)
        rows.append((chest, Pipeline(device="cpu").analyze(chest).labels, "T7",
                     "chest DICOM 1 mm, SpineNav's own mask"))
    fig, axes = plt.subplots(len(rows), 2, figsize=(9, 4.6 * len(rows)), squeeze=False)
    for row, (ct, labels, name, source) in zip(axes, rows, strict=True):
        level_panels(row, ct, labels, name, source)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "planning_slices.png", dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
