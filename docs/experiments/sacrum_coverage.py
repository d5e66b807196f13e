"""How much of the bright bone below L5 the sample's sacrum mask leaves out (a candidate QA flag for a short sacrum).

    .venv/bin/python docs/experiments/sacrum_coverage.py

The shipped pipeline on the sample CT, as acquired, with noise, 5 mm slices, bone-windowed and display-windowed.
In the region `inference.column.sacrum` places the sacrum from (L4's and L5's mask centroids; from the L5/S1 disc
110 mm down, 35 mm to either side), the bone above the tracker's threshold is split into: in the sacrum's mask,
in another mask, in none. Result (2026-12-07, session 8): 29-38 ml of bone, 2-15 % in no mask, while S1's
Dice is 0.71-0.78 in those conditions: the mask is short elsewhere (tip, alae beyond the region), so this
cannot flag it. Not built.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from inference import registry  # noqa: E402
from inference.column.sacrum import AP_MM, DEPTH_MM, HALF_WIDTH_MM  # noqa: E402
from inference.column.track import BONE_HU, BONE_HU_WINDOWED, looks_bone_windowed  # noqa: E402
from inference.io import read_ct  # noqa: E402
from inference.pipeline import Pipeline  # noqa: E402
from inference.synth.exports import bone_window, display_window  # noqa: E402
from inference.train.validate_real import _noise, _thick  # noqa: E402


def region_bone(ct, l4: np.ndarray, l5: np.ndarray) -> np.ndarray:
    """Voxel indices (k, j, i) of the bone in the sacrum's region below ``l5``."""
    pitch = np.linalg.norm(l5 - l4)
    u = (l5 - l4) / pitch
    lr = np.array([1.0, 0.0, 0.0]) - u[0] * u
    lr /= np.linalg.norm(lr)
    ap = np.cross(u, lr)
    thr = BONE_HU_WINDOWED if looks_bone_windowed(ct) else BONE_HU
    kji = np.argwhere(ct.array > thr)
    p = ct.index_to_lps(kji[:, ::-1].astype(float)) - l5
    s, x, y = p @ u, p @ lr, p @ ap
    inside = ((s > pitch / 2) & (s < pitch / 2 + DEPTH_MM) & (np.abs(x) < HALF_WIDTH_MM)
              & (y > AP_MM[0]) & (y < AP_MM[1]))
    return kji[inside]


def main() -> None:
    sample = read_ct(ROOT / "assets" / "sample" / "abdomen_ct_3mm.nii.gz")
    rng = np.random.default_rng(0)
    pipe = Pipeline(device="cpu")
    sacrum = registry.id_of("S1")
    for name, ct in (("as acquired", sample), ("noise", _noise(sample, rng)), ("5 mm", _thick(5.0)(sample, rng)),
                     ("bone window", bone_window(sample)), ("display window", display_window(sample))):
        case = pipe.analyze(ct)
        c = {v.name: v.center_lps for v in case.vertebrae}
        if "L4" not in c or "L5" not in c or case.labels is None:
            print(name, "no L4/L5")
            continue
        k = region_bone(ct, np.asarray(c["L4"]), np.asarray(c["L5"]))
        lab = case.labels.array[k[:, 0], k[:, 1], k[:, 2]]
        ml = float(np.prod(ct.spacing)) / 1000.0
        print(f"{name}: region bone {len(k) * ml:.0f} ml, in the sacrum's mask {(lab == sacrum).sum() * ml:.0f}, "
              f"in another {((lab > 0) & (lab != sacrum)).sum() * ml:.0f}, in none {(lab == 0).sum() * ml:.0f} "
              f"({(lab == 0).mean():.0%})")


if __name__ == "__main__":
    main()
