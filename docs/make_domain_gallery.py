"""Make ``docs/synth_domains.png``: one synthetic CT per intensity domain beside a real scan of that domain.

Per row: the synthetic case (mid-sagittal slice, coronal MIP) and a real scan of the same domain from
``../shared/data/real`` (or a copy in the repository), bone window, superior up, anterior / patient right on
the left. The bone- and display-windowed real scans are the sample CT exported through those windows, as
a PACS export would do it. A domain without a real example at hand says so.

Run from the repository root: ``.venv/bin/python docs/make_domain_gallery.py`` (about 3 minutes on 2 cores);
it also prints the synthesis time per case.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs"))

from make_synth_gallery import WINDOW, mips, real_path, spine_x, to_lps_grid  # noqa: E402

from inference.io import read_ct  # noqa: E402
from inference.synth import SynthConfig, generate  # noqa: E402
from inference.synth.exports import bone_window, display_window  # noqa: E402

SAMPLE = ("ts_abdomen_3mm/example_ct.nii.gz", "assets/sample/abdomen_ct_3mm.nii.gz")
AORTA = ("ts_aorta_stent_crop/ct_cropped.nii.gz", None)
CHEST = ("chest_ct_dicom_1mm/dicom", None)
CUTOUT = ("tptbox_ct_lumbar_cutout/sub-ct_label-22_ct.nii.gz",
          "tests/data/tptbox_ct_lumbar_cutout/sub-ct_label-22_ct.nii.gz")
DICOM20 = ("ts_dicom_thoracolumbar/dicom", "tests/data/ts_dicom_thoracolumbar/dicom")
PLAIN = dict(p_contrast=0.0, p_metal=0.0, p_bone_window=0.0, p_display_window=0.0, p_sclerotic=0.0,
             p_clip_low=0.0, p_posterior_cut=0.0, p_lesions=0.0, max_length_mm=260.0)


# (domain, synthetic config overrides, seed, real scan (path, copy) or None, transform of the real scan, note)
DOMAINS = [
    ("unenhanced, routine", {}, 1, SAMPLE, None, "abdomen 3 mm"),
    ("IV contrast", {"p_contrast": 1.0}, 2, AORTA, None, "CT angiogram crop"),
    ("bone window baked in", {"p_bone_window": 1.0}, 3, SAMPLE, bone_window, "sample, < 200 HU set to 0"),
    ("display window, 8 bit", {"p_display_window": 1.0, "display_width_hu": (400.0, 400.0),
                               "display_level_hu": (40.0, 40.0)}, 4, SAMPLE, display_window,
     "sample, W 400 / L 40 in 0-255"),
    ("osteoporotic bone", {"hu_cancellous": (40.0, 80.0)}, 5, CUTOUT, None, "L3 cutout, body 51 HU"),
    ("sclerotic bone", {"p_sclerotic": 1.0}, 6, None, None, "no real scan of this domain at hand"),
    ("metal hardware", {"p_metal": 1.0}, 7, AORTA, None, "aortic stent graft"),
    ("thick slices (5 mm)", {"slice_spacing_mm": (5.0, 5.0)}, 8, SAMPLE, None, "3 mm slices"),
    ("thin slices (0.5-0.7 mm)", {"slice_spacing_mm": (0.5, 0.7), "inplane_spacing_mm": (0.5, 0.8)}, 9, CHEST, None,
     "chest DICOM 1 mm"),
    ("small FOV cutting the column", {"p_posterior_cut": 1.0}, 10, AORTA, None, "column at the posterior edge"),
    ("noisy, sharp kernel", {"noise_sd": (35.0, 40.0), "corr_noise_sd": (15.0, 25.0)}, 11, DICOM20, None,
     "20-slice DICOM, 1 / 2 mm"),
    ("cervical field of view", {"fov_modes": ("cervical",), "fov_weights": (1.0,)}, 12, CHEST, None,
     "chest DICOM (no cervical CT at hand)"),
]


def panels(arr: np.ndarray, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    _, cor = mips(arr)
    mid = np.clip(arr[:, :, spine_x(arr, labels) if labels is not None else _central_x(arr)], *WINDOW)[::-1, :]
    return mid, cor


def _central_x(arr: np.ndarray) -> int:
    """Mid-sagittal column of a real scan without labels: the boniest column of the middle 40 % (hips and
    ribs lie outside it)."""
    n = arr.shape[2]
    lo, hi = int(0.3 * n), max(int(0.7 * n), int(0.3 * n) + 1)
    profile = np.convolve((arr[:, :, lo:hi] > 150).sum(axis=(0, 1)).astype(float), np.ones(5) / 5, mode="same")
    return lo + int(np.argmax(profile))


def main() -> int:
    rows = []
    real_cache: dict[str, np.ndarray] = {}
    for name, overrides, seed, real, transform, note in DOMAINS:
        cfg = SynthConfig(**{**PLAIN, **overrides})
        t0 = time.perf_counter()
        case = generate(seed, cfg)
        seconds = time.perf_counter() - t0
        sp = case.params["grid"]["spacing"]
        print(f"{name}: seed {seed}, {'x'.join(map(str, case.params['grid']['size']))} voxels, {seconds:.1f} s")
        synth = panels(to_lps_grid(case.ct), to_lps_grid(case.labels, default=0.0,
                                                            interpolator=sitk.sitkNearestNeighbor))
        real_panels = None
        if real is not None and (path := real_path(*real)) is not None:
            key = str(path)
            if key not in real_cache:
                real_cache[key] = read_ct(path)
            ct = real_cache[key]
            real_panels = panels(to_lps_grid(transform(ct) if transform else ct))
        rows.append((f"{name}\nsynthetic seed {seed}, {min(sp):.1f}/{max(sp):.1f} mm", synth,
                     f"real: {note}", real_panels))
    fig, axes = plt.subplots(len(rows), 4, figsize=(4 * 2.6, len(rows) * 2.7))
    for r, (title, synth, real_title, real_panels) in enumerate(rows):
        for c in range(4):
            axes[r, c].axis("off")
        for c, img in enumerate(synth):
            axes[r, c].imshow(img, cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], aspect="equal")
        axes[r, 0].set_title(title, fontsize=7, loc="left")
        if real_panels is not None:
            for c, img in enumerate(real_panels):
                axes[r, 2 + c].imshow(img, cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], aspect="equal")
        axes[r, 2].set_title(real_title, fontsize=7, loc="left")
    fig.suptitle("Intensity domains: synthetic (left: mid-sagittal slice, coronal MIP) beside real (right); "
                 f"bone window {WINDOW[0]:.0f}..{WINDOW[1]:.0f} HU, superior up", fontsize=9)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "synth_domains.png", dpi=66)
    return 0


if __name__ == "__main__":
    sys.exit(main())
