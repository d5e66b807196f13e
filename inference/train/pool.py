"""A pool of synthetic training cases on the localizer's working grid.

Generating a synthetic CT takes about a second on a CPU; training reads each case many times with
random crops and flips. So the cases are generated once (`make_pool`), resampled onto the working
grid exactly as a real CT is at inference (`inference.preprocess`), and stored as one ``.npz`` per
case: ``hu`` (int16 [k, j, i]), ``labels`` (uint8, VerSe ids), ``lesions`` (uint8), ``ribs`` (uint8,
1 on rib voxels outside the vertebrae), ``ids`` and
``centers`` (LPS-mm mask centroids measured on the full-resolution synthetic labels, converted to
working-grid indices (i, j, k)), ``origin`` and ``spacing``.

Run ``python -m inference.train.pool --out DIR -n N --seed S`` (deterministic per seed).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from ..measure import vertebra_centers
from ..preprocess import resample_ct, resample_labels, working_grid
from ..synth.config import SynthConfig
from ..synth.generator import generate
from ..synth.writer import case_seed

LOG = logging.getLogger("spinenav.train.pool")

POOL_CONFIG = SynthConfig(working_spacing_mm=2.0, inplane_spacing_mm=(0.7, 2.0), slice_spacing_mm=(0.8, 5.0))
"""Synthesis for the 4 mm localizer: painted at 2 mm (finer detail is averaged away at 4 mm anyway)."""


def pool_case(seed: int, spacing: float, config: SynthConfig = POOL_CONFIG,
              device: str = "cpu") -> dict[str, np.ndarray]:
    """One synthetic case on the ``spacing``-mm working grid (arrays ready for `np.savez`), painted on
    ``device`` (a case painted on a GPU is not bit-identical to the same seed painted on the CPU)."""
    case = generate(seed, config, device=device)
    grid = working_grid(case.ct, spacing)
    hu = resample_ct(case.ct, grid)
    labels = resample_labels(case.labels, grid)
    lesions = resample_labels(case.lesions, grid)
    ribs = resample_labels(case.ribs, grid) if case.ribs is not None else np.zeros_like(labels)
    centers = vertebra_centers(case.labels)
    ids = np.array(sorted(centers), dtype=np.int16)
    ijk = np.array([grid.lps_to_index(centers[i]) for i in ids], dtype=np.float32).reshape(-1, 3)
    return {
        "hu": np.clip(np.rint(hu), -1024, 3071).astype(np.int16),
        "labels": labels,
        "lesions": lesions,
        "ribs": ((ribs > 0) & (labels == 0)).astype(np.uint8),
        "ids": ids,
        "centers": ijk,
        "origin": np.array(grid.origin, dtype=np.float64),
        "spacing": np.array([grid.spacing], dtype=np.float64),
        "scan_spacing": np.array(case.ct.spacing, dtype=np.float32),
    }


def make_pool(out: Path, n: int, seed: int, spacing: float, start: int = 0,
              config: SynthConfig = POOL_CONFIG, device: str = "cpu") -> None:
    """Write cases ``start`` … ``n - 1`` of the pool (skips those already there, so it can resume)."""
    out.mkdir(parents=True, exist_ok=True)
    meta = {"n": n, "seed": seed, "spacing_mm": spacing, "device": device, "config": asdict(config)}
    (out / "pool.json").write_text(json.dumps(meta, indent=1, default=list) + "\n")
    for i in range(start, n):
        path = out / f"case_{i:05d}.npz"
        if path.exists():
            continue
        arrays = pool_case(case_seed(seed, i), spacing, config, device)
        tmp = out / f"partial_{i:05d}.npz"  # not matched by "case_*.npz" until complete
        np.savez_compressed(tmp, **arrays)
        tmp.rename(path)
        if i % 20 == 0:
            LOG.info("case %d/%d: %s voxels, %d vertebrae", i, n, arrays["hu"].shape, len(arrays["ids"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--spacing", type=float, default=4.0)
    parser.add_argument("--fov-mode", action="append", choices=POOL_CONFIG.fov_modes,
                        help="only these fields of view (repeatable; default: all, weighted as in SynthConfig)")
    parser.add_argument("--contrast-p", type=float, help=f"share of contrast-enhanced cases (default "
                        f"{POOL_CONFIG.p_contrast})")
    parser.add_argument("--lesion-p", type=float, help=f"share of spines with lesions (default "
                        f"{POOL_CONFIG.p_lesions}; the lesion classifier's extra pool uses 1)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="where the cases are painted (cuda: ~10x faster on an H200, docs/benchmarks_gpu.md; "
                             "not bit-identical to the CPU's cases of the same seed)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU here; leave it out to paint on the CPU")
    config = POOL_CONFIG
    if args.contrast_p is not None:
        config = replace(config, p_contrast=args.contrast_p)
    if args.lesion_p is not None:
        config = replace(config, p_lesions=args.lesion_p)
    if args.fov_mode:
        modes = tuple(dict.fromkeys(args.fov_mode))
        config = replace(config, fov_modes=modes, fov_weights=(1.0,) * len(modes))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    make_pool(args.out, args.n, args.seed, args.spacing, args.start, config, args.device)


if __name__ == "__main__":
    main()
