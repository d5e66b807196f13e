"""Make ``docs/column_track.png``: the column tracker's centreline (`inference.column`) on real CT.

Sagittal and coronal MIPs (bone window, superior up) with the track in red: the sample CT as it is,
bone-windowed (< 200 HU set to 0) and display-windowed (W 400 / L 40 in 0-255), the chest DICOM and the
aorta CT angiogram crop from ``../shared/data/real`` when it is there.
Run from the repository root: ``.venv/bin/python docs/make_column_figure.py``.
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

from inference.column import track_column  # noqa: E402
from inference.io import read_ct  # noqa: E402
from inference.preprocess import resample_ct, working_grid  # noqa: E402
from inference.synth.exports import bone_window, display_window  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "real"


def main() -> int:
    sample = read_ct(ROOT / "assets" / "sample" / "abdomen_ct_3mm.nii.gz")
    cases = [("sample abdomen 3 mm", sample), ("sample, bone-windowed", bone_window(sample)),
             ("sample, display-windowed", display_window(sample))]
    for title, rel in (("chest DICOM 1 mm", "chest_ct_dicom_1mm/dicom"),
                       ("aorta CT angiogram crop", "ts_aorta_stent_crop/ct_cropped.nii.gz")):
        if (SHARED / rel).exists():
            cases.append((title, read_ct(SHARED / rel)))
    fig, axes = plt.subplots(1, 2 * len(cases), figsize=(3.2 * len(cases), 5.0))
    for n, (title, ct) in enumerate(cases):
        track = track_column(ct)
        grid = working_grid(ct, 2.0)
        hu = np.clip(resample_ct(ct, grid), -200, 1300)
        k = hu.shape[0]
        ijk = grid.lps_to_index(track.points_lps) if track.found else np.zeros((0, 3))
        for m, (img, col) in enumerate(((hu.max(axis=2)[::-1], 1), (hu.max(axis=1)[::-1], 0))):
            ax = axes[2 * n + m]
            ax.imshow(img, cmap="gray", vmin=-200, vmax=1300)
            ax.plot(ijk[:, col], k - 1 - ijk[:, 2], "r.", ms=1.5)
            ax.axis("off")
        axes[2 * n].set_title(f"{title}\ntrack {track.length_mm():.0f} mm", fontsize=7, loc="left")
    fig.suptitle("Column tracker (bone geometry only): body centreline in red on sagittal and coronal MIPs", fontsize=9)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "column_track.png", dpi=70)
    return 0


if __name__ == "__main__":
    sys.exit(main())
