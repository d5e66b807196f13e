"""Make ``docs/straightened_spine.png``: the straightened spine (`inference.column.straighten`) of real CT with
the vertebrae SpineNav names on it.

For each scan: a sagittal slab (±4 mm about the midline) and a coronal slab through the rib heads and
transverse processes (5–35 mm behind the tracked centreline, maximum intensity), both straightened, head
up, with each named vertebra's center marked and labelled with its name, its label probability and the
segmenter's rib volume beside it (``rib_ml``; a rib pair shows as a bar on both sides in the coronal slab); a cyan
dot at 50 mm to a side in the coronal slab marks a rib the analysis read from bone there (``ribs_seen``,
`inference.column.rib_pairs`).
Scans: the chest DICOM (no reference labels: count the ribs), the sample CT, the sample bone-windowed and the
sample's small crop (90 mm, T11 part-L2: the last rib pair is its only landmark).
Run from the repository root: ``.venv/bin/python docs/make_straightened_figure.py``.
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

from inference.column import straighten, track_column  # noqa: E402
from inference.io import read_ct  # noqa: E402
from inference.pipeline import Pipeline  # noqa: E402
from inference.synth.exports import bone_window  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "real"
SMALL_CROP = ROOT / "tests" / "data" / "ts_abdomen_3mm" / "sm_crop" / "example_ct_sm.nii.gz"
CORONAL_AP_MM = (5.0, 35.0)


def main() -> int:
    sample = read_ct(ROOT / "assets" / "sample" / "abdomen_ct_3mm.nii.gz")
    cases = []
    chest = SHARED / "chest_ct_dicom_1mm" / "dicom"
    if chest.exists():
        cases.append(("chest DICOM 1 mm (C7-T11, no labels)", read_ct(chest)))
    cases += [("sample abdomen 3 mm", sample), ("sample, bone-windowed (< 200 HU -> 0)", bone_window(sample)),
              ("small crop of the sample (T11 part-L2)", read_ct(SMALL_CROP))]
    pipeline = Pipeline(device="cpu")
    fig, axes = plt.subplots(1, 2 * len(cases), figsize=(6.0 * len(cases), 11.0))
    for n, (title, ct) in enumerate(cases):
        case = pipeline.analyze(ct)
        spine = straighten(ct, track_column(ct))
        extent_s = (spine.s_mm[0] - 0.5, spine.s_mm[-1] + 0.5)
        mid = np.abs(spine.lr_mm) <= 4.0
        sag = spine.hu[:, :, mid].mean(axis=2)
        band = (spine.ap_mm >= CORONAL_AP_MM[0]) & (spine.ap_mm <= CORONAL_AP_MM[1])
        cor = spine.hu[:, band, :].max(axis=1)
        for m, (img, cols) in enumerate(((sag, spine.ap_mm), (cor, spine.lr_mm))):
            ax = axes[2 * n + m]
            ax.imshow(img[::-1], cmap="gray", vmin=-250, vmax=1250, aspect="equal",
                      extent=(cols[0], cols[-1], *extent_s))
            ax.set_xlabel("antero-posterior (mm, posterior +)" if m == 0 else "left-right (mm, left +)", fontsize=7)
            ax.tick_params(labelsize=6)
        for v in case.vertebrae:
            s, ap, lr = spine.from_lps(v.center_lps[None])[0]
            rib = "" if v.rib_ml is None else f" rib {v.rib_ml:.1f} ml"
            text = f"{v.name} {v.confidence:.2f}{rib}"
            colour = "yellow" if "label_unanchored" in v.qa_flags or v.confidence < 0.7 else "lime"
            axes[2 * n].plot(ap, s, "+", color=colour, ms=7)
            axes[2 * n].text(ap + 4, s, text, color=colour, fontsize=7, va="center")
            axes[2 * n + 1].plot(lr, s, "+", color=colour, ms=7)
            axes[2 * n + 1].text(lr + 4, s, v.name, color=colour, fontsize=7, va="center")
            for side, sign in (("left", 1.0), ("right", -1.0)):
                if (v.ribs_seen or {}).get(side):
                    axes[2 * n + 1].plot(sign * 50.0, s, "o", color="cyan", ms=4)
        axes[2 * n].set_ylabel("arc length along the column (mm, head up)", fontsize=7)
        axes[2 * n].set_title(f"{title}\nsagittal, straightened", fontsize=7, loc="left")
        axes[2 * n + 1].set_title("coronal MIP 5-35 mm behind the centreline\n(rib heads, transverse processes)",
                                  fontsize=7, loc="left")
    fig.suptitle("Straightened spine with SpineNav's names (green: anchored, p >= 0.7; yellow: uncertain or "
                 "unanchored; cyan dots: ribs read from bone)", fontsize=9)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "straightened_spine.png", dpi=90)
    return 0


if __name__ == "__main__":
    sys.exit(main())
