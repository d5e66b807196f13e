"""docs/rib_cue.png: the rib cue of the labeling, per detected vertebra, on real CT.

    python docs/make_rib_figure.py

For each vertebra the pipeline finds in the sample CT and in its small crop: an axial maximum
intensity projection of the ±8 mm slab around the center (patient left on the right, posterior
down), the two boxes where the segmenter's rib channel is counted (`inference.ribs`), the name
given, the reference name at that place and the rib volume measured there. A reader can check
the boxes against the ribs in the image.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from scipy import ndimage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference import registry  # noqa: E402
from inference.io import read_ct, read_label_map  # noqa: E402
from inference.io.grid import onto_grid  # noqa: E402
from inference.measure import vertebra_centers  # noqa: E402
from inference.pipeline import Pipeline  # noqa: E402
from inference.ribs import ZONE_AXIAL_MM, ZONE_LATERAL_MM, ZONE_POSTERIOR_MM  # noqa: E402

CASES = (
    ("sample", ROOT / "assets/sample/abdomen_ct_3mm.nii.gz", ROOT / "assets/sample/abdomen_vertebrae_totalseg.nii.gz"),
    ("small crop", ROOT / "tests/data/ts_abdomen_3mm/sm_crop/example_ct_sm.nii.gz",
     ROOT / "tests/data/ts_abdomen_3mm/sm_crop/example_seg.nii.gz"),
)
HALF_X, Y0, Y1, SP = 90.0, -50.0, 70.0, 1.0


def slab_mip(ct, center: np.ndarray) -> np.ndarray:
    """Axial MIP [y, x] of the ±ZONE_AXIAL_MM slab around ``center`` on a 1 mm LPS grid (NaN outside the scan)."""
    xs = np.arange(-HALF_X, HALF_X + 1e-6, SP)
    ys = np.arange(Y0, Y1 + 1e-6, SP)
    zs = np.arange(-ZONE_AXIAL_MM, ZONE_AXIAL_MM + 1e-6, 2 * SP)
    z, y, x = np.meshgrid(zs, ys, xs, indexing="ij")
    lps = np.stack([x + center[0], y + center[1], z + center[2]], -1).reshape(-1, 3)
    ijk = ct.lps_to_index(lps)
    v = ndimage.map_coordinates(ct.array.astype(np.float32), ijk[:, ::-1].T, order=1, cval=np.nan).reshape(z.shape)
    return np.nanmax(np.where(np.isnan(v), -2000, v), axis=0)


def main() -> None:
    pipeline = Pipeline(device="cpu")
    panels = []
    for title, ct_path, ref_path in CASES:
        ct = read_ct(ct_path)
        ref = read_label_map(ref_path)
        ref = ref if ref.same_grid(ct) else onto_grid(ref, ct, path=str(ref_path))
        refc = vertebra_centers(ref)
        result = pipeline.analyze(ct)
        for v in result.vertebrae:
            near = min(refc, key=lambda i: np.linalg.norm(refc[i] - v.center_lps)) if refc else None
            ok = near is not None and np.linalg.norm(refc[near] - v.center_lps) < 20
            ref_name = registry.name_of(near) if ok else "none"
            rib = "unknown" if v.rib_ml is None else f"{v.rib_ml:.1f} ml"
            panels.append((f"{title}: {v.name} (reference {ref_name}), rib {rib}", slab_mip(ct, v.center_lps)))
    cols = 4
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows))
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, img) in zip(axes.flat, panels, strict=False):
        ax.imshow(np.clip(img, -200, 1000), cmap="gray", extent=(-HALF_X, HALF_X, Y1, Y0))
        w = ZONE_LATERAL_MM[1] - ZONE_LATERAL_MM[0]
        h = ZONE_POSTERIOR_MM[1] - ZONE_POSTERIOR_MM[0]
        for x0 in (ZONE_LATERAL_MM[0], -ZONE_LATERAL_MM[1]):
            ax.add_patch(Rectangle((x0, ZONE_POSTERIOR_MM[0]), w, h, fill=False, ec="orange", lw=1))
        ax.set_title(name, fontsize=8)
    fig.suptitle("Rib cue: rib volume the segmenter finds in the orange boxes (±8 mm slab; posterior down, "
                 "patient left on the right)", fontsize=9)
    fig.tight_layout()
    out = ROOT / "docs" / "rib_cue.png"
    fig.savefig(out, dpi=80)
    print(out)


if __name__ == "__main__":
    main()
