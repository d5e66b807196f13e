"""Figures of SpineNav's own segmentation on real CT.

    xvfb-run -a .venv/bin/python docs/make_segmentation_figures.py

Runs the shipped pipeline (localize, label, segment; CPU) and writes

- docs/segmentation_chest_dicom.png: mask contours over a sagittal and three axial slices of the
  unlabeled 141-slice chest DICOM from ../shared/data/real (skipped when absent);
- docs/segmentation_abdomen.png: the same for the sample CT, with the TotalSegmentator reference
  contours dashed white;
- docs/segmentation_abdomen_3d.png, docs/segmentation_chest_dicom_3d.png: the exported STL meshes of
  the sample CT and of the chest DICOM, read back from the bundle and rendered off-screen (pyvista),
  coloured and named per level, from the left-anterior side and from behind.

Slices are taken on a 1 mm LPS-aligned grid (CT linear, labels nearest), so what is drawn is in the
bundle's frame.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference import registry  # noqa: E402
from inference.export import write_bundle  # noqa: E402
from inference.io import read_ct, read_label_map  # noqa: E402
from inference.pipeline import Pipeline  # noqa: E402
from inference.preprocess import resample_ct, resample_labels, working_grid  # noqa: E402

CHEST = ROOT.parent / "shared/data/real/chest_ct_dicom_1mm/dicom"
SAMPLE = ROOT / "assets/sample/abdomen_ct_3mm.nii.gz"
SAMPLE_TRUTH = ROOT / "assets/sample/abdomen_vertebrae_totalseg.nii.gz"


def _colour(vid: int) -> tuple[float, float, float]:
    return tuple(c / 255 for c in registry.by_id(vid).color)


def contour_figure(out: Path, ct, labels, truth, title: str, centers: dict[int, np.ndarray]) -> None:
    grid = working_grid(ct, 1.0)
    hu = resample_ct(ct, grid)  # [k=S, j=P, i=L]
    lab = resample_labels(labels, grid)
    ref = resample_labels(truth, grid) if truth is not None else None
    ids = [vid for vid in registry.sort_ids(centers) if (lab == vid).any()]
    idx = {vid: grid.lps_to_index(centers[vid][None])[0] for vid in ids}
    ci = int(np.median([p[0] for p in idx.values()])) if idx else hu.shape[2] // 2
    picks = [ids[len(ids) // 4], ids[len(ids) // 2], ids[(3 * len(ids)) // 4]] if len(ids) >= 3 else ids
    fig, axes = plt.subplots(1, 1 + len(picks), figsize=(5 + 4 * len(picks), 8),
                             gridspec_kw={"width_ratios": [1.3] + [1] * len(picks)})
    axes = np.atleast_1d(axes)
    panels = [("sagittal", axes[0], hu[:, :, ci], lab[:, :, ci], None if ref is None else ref[:, :, ci], None)]
    for ax, vid in zip(axes[1:], picks, strict=True):
        k = int(round(idx[vid][2]))
        panels.append((f"axial through {registry.name_of(vid)}", ax, hu[k], lab[k], None if ref is None else ref[k],
                       vid))
    for name, ax, img, lb, rf, _ in panels:
        if name == "sagittal":
            ax.imshow(img, cmap="gray", vmin=-300, vmax=1300, origin="lower")  # A left, S up
        else:
            ax.imshow(img, cmap="gray", vmin=-300, vmax=1300, origin="upper")  # A up, patient's right left
        for vid in np.unique(lb):
            if vid == 0:
                continue
            # contour coordinates are array indices (no origin flip), the same as imshow's in both origins
            ax.contour((lb == vid).astype(float), levels=[0.5], colors=[_colour(int(vid))], linewidths=1.2)
        if rf is not None:
            for vid in np.unique(rf):
                if vid:
                    ax.contour((rf == vid).astype(float), levels=[0.5], colors="white", linewidths=0.7,
                               linestyles="dashed")
        if name == "sagittal":
            for vid, p in idx.items():
                ax.annotate(registry.name_of(vid), (p[1], p[2]), xytext=(30, 0), textcoords="offset points",
                            color=_colour(vid), fontsize=9, va="center")
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=75)
    plt.close(fig)


def render_meshes(result, out: Path, title: str) -> None:
    """The STL meshes of ``result``'s bundle (written to a temporary folder and read back), coloured and
    named per level, from the patient's left-anterior side and from behind (where missing posterior
    elements and bridges between neighbours would show)."""
    import json

    import pyvista as pv

    pv.OFF_SCREEN = True
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "b"
        write_bundle(bundle, result)
        doc = json.loads((bundle / "vertebrae.json").read_text())["vertebrae"]
        meshes = [pv.read(str(bundle / v["stl"])) for v in doc]
    plotter = pv.Plotter(off_screen=True, window_size=(1200, 900), shape=(1, 2), border=False)
    plotter.set_background("white")
    # LPS: the left-anterior camera sits at +x (left), -y (anterior); the posterior one at +y
    for col, view in enumerate(("left-anterior", "posterior")):
        plotter.subplot(0, col)
        for v, mesh in zip(doc, meshes, strict=True):
            plotter.add_mesh(mesh, color=_colour(v["id"]), smooth_shading=True)
            plotter.add_point_labels([np.array(v["center_lps"]) + np.array([-45.0, 0.0, 0.0])], [v["name"]],
                                     font_size=12, text_color="black", always_visible=True, shape=None,
                                     show_points=False)
        plotter.camera_position = "yz" if view == "left-anterior" else "xz"
        plotter.camera.azimuth = -35.0 if view == "left-anterior" else 180.0
        plotter.camera.up = (0, 0, 1)
        plotter.reset_camera()
        plotter.add_text(title if view == "left-anterior" else "from behind", font_size=9, color="black")
    plotter.screenshot(str(out))
    plotter.close()


def main() -> None:
    pipeline = Pipeline(device="cpu")
    ct = read_ct(SAMPLE)
    result = pipeline.analyze(ct)
    centers = {v.id: v.center_lps for v in result.vertebrae}
    contour_figure(ROOT / "docs/segmentation_abdomen.png", ct, result.segmentation.labels,
                   read_label_map(SAMPLE_TRUTH),
                   "sample abdomen CT 3 mm: SpineNav masks (colour) vs TotalSegmentator pseudo-labels (dashed white)",
                   centers)
    render_meshes(result, ROOT / "docs/segmentation_abdomen_3d.png",
                  "SpineNav segmentation of the sample CT (STL files read back from the bundle)")
    if CHEST.is_dir():
        ct = read_ct(CHEST)
        result = pipeline.analyze(ct)
        centers = {v.id: v.center_lps for v in result.vertebrae}
        contour_figure(ROOT / "docs/segmentation_chest_dicom.png", ct, result.segmentation.labels, None,
                       "chest CT DICOM, 141 slices (unlabeled): SpineNav masks and names", centers)
        render_meshes(result, ROOT / "docs/segmentation_chest_dicom_3d.png",
                      "SpineNav segmentation of the chest CT DICOM (STL files read back from the bundle)")


if __name__ == "__main__":
    main()
