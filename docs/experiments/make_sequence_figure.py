"""Make ``docs/experiments/level_sequence.png`` (apply level_sequence.patch first): what the level-sequence
network (`inference.models.sequence`) reads along
the straightened spine of real CT, and the names SpineNav gives.

For each scan, the straightened sagittal slab (±4 mm about the midline, head up) and beside it, plane by
plane: the network's most likely class (a colour per level, black where it sees no vertebra, the level's
name and mean probability at the middle of each stretch) and its centre heat (the curve; its peaks are the
vertebrae `RunConfig.detection` "sequence" finds). The names of the analysis (shipped settings, without
segmentation) are marked on the slab. Scans: the chest DICOM (no reference labels: count the ribs), the
sample CT as shipped and bone-windowed, the aorta CT angiogram crop (reference T12 only) and the sample's
small crop. Run from the repository root:
``.venv/bin/python docs/experiments/make_sequence_figure.py [--weights ROOT]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from inference.column.sequence import plane_probabilities, plane_s  # noqa: E402

from inference import registry  # noqa: E402
from inference.column import straighten, track_column  # noqa: E402
from inference.config import SHIPPED  # noqa: E402
from inference.io import read_ct  # noqa: E402
from inference.label import LEVELS  # noqa: E402
from inference.pipeline import Pipeline  # noqa: E402
from inference.synth.exports import bone_window  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "real"


def _scans() -> list[tuple[str, object]]:
    sample = read_ct(ROOT / "assets" / "sample" / "abdomen_ct_3mm.nii.gz")
    scans = []
    chest = SHARED / "chest_ct_dicom_1mm" / "dicom"
    if chest.exists():
        scans.append(("chest DICOM 1 mm\n(C7-T11 by rib count, no labels)", read_ct(chest)))
    scans += [("sample abdomen 3 mm\n(reference T11-S1)", sample),
              ("sample bone-windowed\n(< 200 HU -> 0)", bone_window(sample))]
    aorta = SHARED / "ts_aorta_stent_crop" / "ct_cropped.nii.gz"
    if aorta.exists():
        scans.append(("aorta CT angiogram crop\n(reference: T12 only)", read_ct(aorta)))
    scans.append(("sample, small crop\n(reference T11-L2)",
                  read_ct(ROOT / "tests" / "data" / "ts_abdomen_3mm" / "sm_crop" / "example_ct_sm.nii.gz")))
    return scans


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="weights root (default: assets/weights)")
    args = parser.parse_args()
    config = SHIPPED if SHIPPED.naming != "localizer" else SHIPPED.replace(naming="both")
    pipeline = Pipeline(device="cpu", weights_root=args.weights, segment=False, config=config)
    scans = _scans()
    fig, axes = plt.subplots(1, len(scans), figsize=(3.6 * len(scans), 11.0))
    for ax, (title, ct) in zip(np.atleast_1d(axes), scans, strict=True):
        spine = straighten(ct, track_column(ct))
        probs, heat = plane_probabilities(pipeline.sequence, ct, spine, pipeline.device)
        s = plane_s(spine)
        mid = np.abs(spine.lr_mm) <= 4.0
        right = spine.ap_mm[-1]
        ax.imshow(spine.hu[:, :, mid].mean(axis=2)[::-1], cmap="gray", vmin=-250, vmax=1250,
                  extent=(spine.ap_mm[0], right, spine.s_mm[0], spine.s_mm[-1]))
        cls = probs.argmax(axis=1)
        for k, c in enumerate(cls):  # the class strip
            colour = plt.cm.tab20((c - 1) % 20) if c else "black"
            ax.add_patch(plt.Rectangle((right + 2, s[k] - 1), 10, 2, color=colour, lw=0))
        start = 0
        for k in range(1, len(cls) + 1):
            if k == len(cls) or cls[k] != cls[start]:
                if cls[start] and k - start >= 3:
                    run = slice(start, k)
                    ax.text(right + 14, float(s[run].mean()),
                            f"{registry.name_of(LEVELS[cls[start] - 1])} {probs[run, cls[start]].mean():.2f}",
                            fontsize=6, va="center")
                start = k
        ax.plot(right + 40 + 25 * heat, s, color="tab:red", lw=0.8)  # centre heat, 0 to 1
        case = pipeline.analyze(ct)
        for v in case.vertebrae:
            sv, ap, _ = spine.from_lps(v.center_lps[None])[0]
            colour = "yellow" if "label_unanchored" in v.qa_flags or v.confidence < 0.7 else "lime"
            ax.plot(ap, sv, "+", color=colour, ms=6)
            ax.text(ap - 4, sv, f"{v.name} {v.confidence:.2f}", color=colour, fontsize=6, va="center", ha="right")
        ax.set_xlim(spine.ap_mm[0], right + 68)
        ax.set_title(title, fontsize=7, loc="left")
        ax.set_xlabel("antero-posterior (mm); class strip; centre heat (red)", fontsize=6)
        ax.tick_params(labelsize=6)
    np.atleast_1d(axes)[0].set_ylabel("arc length along the column (mm, head up)", fontsize=7)
    fig.suptitle(f"Level-sequence network on the straightened spine; names: detection '{config.detection}', "
                 f"naming '{config.naming}' (green: anchored, p >= 0.7; yellow: uncertain or unanchored)", fontsize=8)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "experiments" / "level_sequence.png", dpi=90)
    return 0


if __name__ == "__main__":
    sys.exit(main())
