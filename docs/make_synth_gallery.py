"""Make ``docs/synth_gallery.png``: sagittal and coronal MIPs (bone window) of synthetic CTs next to real CTs.

Run from the repository root: ``.venv/bin/python docs/make_synth_gallery.py [--n 10] [--seed 0]``.
Every volume is resampled onto an LPS-aligned 1.5 mm grid first (through its direction matrix), so
superior is up, the patient's anterior is left in sagittal views and the patient's right is left in
coronal views (radiological convention).
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

REAL = [
    ("real: abdomen 3 mm (TotalSegmentator)", ROOT / "assets/sample/abdomen_ct_3mm.nii.gz"),
    ("real: lumbar cutout 1.5 mm (TPTBox)", ROOT / "tests/data/tptbox_ct_lumbar_cutout/sub-ct_label-22_ct.nii.gz"),
    ("real: chest DICOM 1 mm", ROOT.parent / "shared/data/real/chest_ct_dicom_1mm/dicom"),
]
WINDOW = (-200.0, 1300.0)  # bone window for the MIPs


def to_lps_grid(vol: Volume, spacing: float = 1.5) -> np.ndarray:
    """Resample onto an identity-direction grid covering the volume: array [z, y, x], LPS."""
    img = vol.to_sitk()
    img = sitk.Cast(img, sitk.sitkFloat32)
    lo, hi = vol.physical_bounds()
    size = [int(np.ceil((h - lo_) / spacing)) + 1 for lo_, h in zip(lo, hi, strict=True)]
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetSpacing((spacing,) * 3)
    ref.SetOrigin(tuple(float(v) for v in lo))
    out = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def mips(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sagittal (max over x) and coronal (max over y) MIPs with superior up; arr is [z, y, x] LPS."""
    a = np.clip(arr, *WINDOW)
    sag = a.max(axis=2)[::-1, :]  # rows: z descending (S up); columns: y ascending (anterior left)
    cor = a.max(axis=1)[::-1, ::-1]  # columns: x descending → patient right on the left (radiological)
    return sag, cor


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "docs" / "synth_gallery.png")
    args = ap.parse_args()
    panels: list[tuple[str, np.ndarray]] = []
    for title, path in REAL:
        if not path.exists():
            continue
        sag, cor = mips(to_lps_grid(read_ct(path)))
        panels.append((title, sag))
        panels.append(("", cor))
    for n in range(args.n):
        case = generate(args.seed + n)
        p = case.params
        names = p["generated_levels"]
        title = (f"synth {args.seed + n}: {p['fov_mode']} {names[0]}-{names[-1]}\n"
                 f"{p['grid']['spacing'][0]:.2f}/{max(p['grid']['spacing']):.1f} mm"
                 f"{' les' if p['lesions'] else ''}{' metal' if p['tissue']['metal'] else ''}")
        sag, cor = mips(to_lps_grid(case.ct))
        panels.append((title, sag))
        panels.append(("", cor))
    cols = 6
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.6, rows * 3.4))
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, img) in zip(axes.flat, panels, strict=False):
        ax.imshow(img, cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], aspect="equal")
        ax.set_title(title, fontsize=7)
    fig.suptitle("Synthetic CT (domain-randomized) vs real CT: sagittal + coronal MIPs, bone window, S up",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    return 0


if __name__ == "__main__":
    sys.exit(main())
