"""Make ``docs/synth_gallery.png``: synthetic CTs next to real CTs, bone window, superior up.

Per volume three panels: sagittal MIP, coronal MIP and the mid-sagittal slice through the spine (a MIP
hides discs and the canal behind the arches and the ribs; the slice shows them).

Run from the repository root: ``.venv/bin/python docs/make_synth_gallery.py [--n 12] [--seed 0]``.
Every volume is resampled onto an LPS-aligned 1 mm grid first (through its direction matrix), so
superior is up, the patient's anterior is left in sagittal views and the patient's right is left in
coronal views (radiological convention). The real scans are read from ``../shared/data/real`` when it
is there, else from the copies in the repository.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference.io import read_ct  # noqa: E402
from inference.synth import generate  # noqa: E402
from inference.volume import Volume  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "real"
# (title, path under ../shared/data/real, copy in the repository or None)
REAL = [
    ("abdomen 3 mm (TotalSegmentator)", "ts_abdomen_3mm/example_ct.nii.gz", "assets/sample/abdomen_ct_3mm.nii.gz"),
    ("chest DICOM 1 mm / 2 mm", "chest_ct_dicom_1mm/dicom", None),
    ("aorta crop (TotalSegmentator)", "ts_aorta_stent_crop/ct_cropped.nii.gz", None),
    ("lumbar cutout 1.5 mm (TPTBox)", "tptbox_ct_lumbar_cutout/sub-ct_label-22_ct.nii.gz",
     "tests/data/tptbox_ct_lumbar_cutout/sub-ct_label-22_ct.nii.gz"),
    ("T11-T12 DICOM 1/2 mm", "ts_dicom_thoracolumbar/dicom", "tests/data/ts_dicom_thoracolumbar/dicom"),
]
WINDOW = (-200.0, 1300.0)  # bone window
SPACING = 1.0  # display grid (mm)
PER_ROW = 3  # volumes per figure row (3 panels each)


def to_lps_grid(vol: Volume, spacing: float = SPACING, default: float = -1024.0,
                interpolator=sitk.sitkLinear) -> np.ndarray:
    """Resample onto an identity-direction grid covering the volume: array [z, y, x], LPS."""
    img = sitk.Cast(vol.to_sitk(), sitk.sitkFloat32)
    lo, hi = vol.physical_bounds()
    size = [int(np.ceil((h - lo_) / spacing)) + 1 for lo_, h in zip(lo, hi, strict=True)]
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetSpacing((spacing,) * 3)
    ref.SetOrigin(tuple(float(v) for v in lo))
    out = sitk.Resample(img, ref, sitk.Transform(), interpolator, default, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def mips(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sagittal (max over x) and coronal (max over y) MIPs with superior up; arr is [z, y, x] LPS."""
    a = np.clip(arr, *WINDOW)
    sag = a.max(axis=2)[::-1, :]  # rows: z descending (S up); columns: y ascending (anterior left)
    cor = a.max(axis=1)[::-1, ::-1]  # columns: x descending → patient right on the left (radiological)
    return sag, cor


def spine_x(arr: np.ndarray, labels: np.ndarray | None = None) -> int:
    """Column index (x) of the mid-sagittal plane: the labels' median, else the most bony x near the middle."""
    if labels is not None and (labels > 0).any():
        return int(np.median(np.nonzero(labels > 0)[2]))
    n = arr.shape[2]
    lo, hi = n // 4, max(3 * n // 4, n // 4 + 1)
    profile = (arr[:, :, lo:hi] > 250).sum(axis=(0, 1)).astype(float)
    profile = np.convolve(profile, np.ones(9) / 9, mode="same")  # a body, not one bright pedicle
    return lo + int(np.argmax(profile))


def panels_of(title: str, arr: np.ndarray, labels: np.ndarray | None = None) -> list[tuple[str, np.ndarray]]:
    sag, cor = mips(arr)
    mid = np.clip(arr[:, :, spine_x(arr, labels)], *WINDOW)[::-1, :]
    return [(title + "\nsagittal MIP", sag), ("coronal MIP", cor), ("mid-sagittal slice", mid)]


def real_path(rel: str, copy: str | None) -> Path | None:
    if (SHARED / rel).exists():
        return SHARED / rel
    if copy and (ROOT / copy).exists():
        return ROOT / copy
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12, help="number of synthetic volumes")
    ap.add_argument("--seed", type=int, default=0, help="seed of the first synthetic volume")
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "docs" / "synth_gallery.png")
    args = ap.parse_args()
    groups: list[list[tuple[str, np.ndarray]]] = []
    for title, rel, copy in REAL:
        path = real_path(rel, copy)
        if path is not None:
            groups.append(panels_of("REAL " + title, to_lps_grid(read_ct(path))))
    for n in range(args.n):
        case = generate(args.seed + n)
        p = case.params
        present = [lv for lv in p["generated_levels"] if lv in _present_names(p)] or p["generated_levels"]
        sp = p["grid"]["spacing"]
        flags = "".join(f" {k}" for k, on in (("lesion", p["lesions"]), ("metal", p["tissue"]["metal"]),
                                                ("clip", p["scanner"]["clip_low_hu"] is not None)) if on)
        title = (f"synth {args.seed + n}: {p['fov_mode']} {present[0]}-{present[-1]}\n"
                 f"{min(sp):.2f}/{max(sp):.1f} mm noise {p['scanner']['noise_sd']:.0f}{flags}")
        arr = to_lps_grid(case.ct)
        lab = to_lps_grid(case.labels, default=0.0, interpolator=sitk.sitkNearestNeighbor)
        groups.append(panels_of(title, arr, lab))
    rows = int(np.ceil(len(groups) / PER_ROW))
    cols = 3 * PER_ROW
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.3, rows * 3.0))
    for ax in axes.flat:
        ax.axis("off")
    for g, group in enumerate(groups):
        for k, (title, img) in enumerate(group):
            ax = axes.flat[(g // PER_ROW) * cols + (g % PER_ROW) * 3 + k]
            ax.imshow(img, cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], aspect="equal", interpolation="antialiased")
            ax.set_title(title, fontsize=7, loc="left" if k == 0 else "center")
    fig.suptitle(f"Synthetic CT (domain-randomized, seeds {args.seed}-{args.seed + args.n - 1}) vs REAL CT: sagittal "
                 f"MIP, coronal MIP, mid-sagittal slice; bone window {WINDOW[0]:.0f}..{WINDOW[1]:.0f} HU, "
                 "superior up, anterior / patient right on the left", fontsize=10)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.97))  # the suptitle keeps its own band above the panels
    fig.savefig(args.out, dpi=72)
    return 0


def _present_names(params: dict) -> set[str]:
    from inference import registry

    return {registry.BY_ID[i].name for i in params["labels_present"]}


if __name__ == "__main__":
    sys.exit(main())
