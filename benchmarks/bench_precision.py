"""Benchmark: what the GPU paths change against the CPU's arithmetic, and what they save.

On the real CTs in the repository (the sample, its small crop, the 20-slice DICOM series, the
TPTBox cutout; the chest DICOM beside the repository when present) and on the sample resampled to
512 × 512 × 400, the same models analyze each CT on CUDA in four ways: the reference ("itk fp32":
float32 networks and ITK's resampling on the CPU, the arithmetic of training and of CPU runs), then
with the resampling on the GPU (`inference.preprocess.resample_ct_torch`) in fp32, fp16 and bf16
autocast (`inference.precision`). Per way: analysis time (after one untimed warm-up), and against
the reference the names found, the largest center shift, the smallest per-vertebra Dice between the
two label maps, the largest lesion-score difference and any change in the QA flags. This chose
"auto" on CUDA (`inference.precision.AUTO_CUDA`). Without CUDA it says so and measures nothing.

Usage: python benchmarks/bench_precision.py [--no-big] [PATH ...]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_CTS = [
    ROOT / "assets" / "sample" / "abdomen_ct_3mm.nii.gz",
    ROOT / "tests" / "data" / "ts_abdomen_3mm" / "sm_crop" / "example_ct_sm.nii.gz",
    ROOT / "tests" / "data" / "ts_dicom_thoracolumbar" / "dicom",
    ROOT / "tests" / "data" / "tptbox_ct_lumbar_cutout" / "sub-ct_label-22_ct.nii.gz",
    ROOT.parent / "shared" / "data" / "real" / "chest_ct_dicom_1mm" / "dicom",
]
PRECISIONS = ("fp32", "fp16", "bf16")


def big_sample(size=(512, 512, 400)):
    """The sample CT resampled (linear) onto a ``size`` grid over the same extent."""
    from benchmarks.sample_grid import resampled
    from inference.io import read_ct

    return resampled(read_ct(DEFAULT_CTS[0]), size)


@contextlib.contextmanager
def itk_resampling(on: bool):
    """While ``on``, the analysis resamples with ITK on the CPU whatever its device (the reference)."""
    import inference.localize
    import inference.segment
    from inference.preprocess import resample_ct

    if not on:
        yield
        return
    cpu = functools.partial(_resample_on_cpu, resample_ct)
    saved = inference.localize.resample_ct, inference.segment.resample_ct
    inference.localize.resample_ct = inference.segment.resample_ct = cpu
    try:
        yield
    finally:
        inference.localize.resample_ct, inference.segment.resample_ct = saved


def _resample_on_cpu(resample_ct, ct, grid, cancel=None, device=None):
    return resample_ct(ct, grid, cancel=cancel)


def compare(ref, res) -> dict:
    """``res`` against the reference result ``ref``: names, center shift, mask Dice, lesion scores, flags."""
    a = {v.name: v for v in ref.vertebrae}
    b = {v.name: v for v in res.vertebrae}
    common = sorted(set(a) & set(b))
    shift = max((float(np.linalg.norm(a[n].center_lps - b[n].center_lps)) for n in common), default=0.0)
    lesion = max((abs((a[n].lesion_score or 0.0) - (b[n].lesion_score or 0.0)) for n in common), default=0.0)
    flags = sorted(n for n in common if a[n].qa_flags != b[n].qa_flags)
    dice = None
    if ref.segmentation is not None and res.segmentation is not None:
        la, lb = ref.segmentation.labels.array, res.segmentation.labels.array
        ds = []
        for n in common:
            ma, mb = la == a[n].id, lb == b[n].id
            total = int(ma.sum()) + int(mb.sum())
            if total:
                ds.append(2.0 * int((ma & mb).sum()) / total)
        dice = min(ds) if ds else None
    return {"same_names": [v.name for v in ref.vertebrae] == [v.name for v in res.vertebrae],
            "shift_mm": shift, "min_dice": dice, "lesion_diff": lesion, "flags_changed": flags}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--no-big", action="store_true", help="leave out the 512 x 512 x 400 grid")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to compare (half precision runs on CUDA only)")
        return 0
    from inference.io import read_ct
    from inference.pipeline import Pipeline

    cases = [(p.parent.name if p.name == "dicom" else p.name, read_ct(p))
             for p in (args.paths or [p for p in DEFAULT_CTS if p.exists()])]
    if not args.no_big:
        cases.append(("sample resampled to 512x512x400", big_sample()))
    pipes = {p: Pipeline(device="cuda", precision=p) for p in PRECISIONS}
    pipes["fp32"].analyze(cases[0][1])  # CUDA start-up
    print(f"GPU {torch.cuda.get_device_name(0)}, torch {torch.__version__}; each time after one warm-up run")
    ways = [("itk fp32", "fp32", True)] + [(f"gpu {p}", p, False) for p in PRECISIONS]
    for name, ct in cases:
        print(f"{name} ({'x'.join(map(str, ct.size))})")
        results = {}
        for way, p, itk in ways:
            with itk_resampling(itk):
                pipes[p].analyze(ct)  # warm-up: kernel selection for this grid
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                results[way] = pipes[p].analyze(ct)
                torch.cuda.synchronize()
                seconds = time.perf_counter() - t0
            peak = torch.cuda.max_memory_allocated() / 2**20
            stages = ", ".join(f"{k} {v:.2f}" for k, v in results[way].timings.items())
            line = f"  {way}: {seconds:.2f} s ({stages}), GPU peak {peak:.0f} MB"
            if itk:
                line += f"; found {', '.join(v.name for v in results[way].vertebrae) or 'none'}"
            else:
                c = compare(results["itk fp32"], results[way])
                dice = "n/a" if c["min_dice"] is None else f"{c['min_dice']:.4f}"
                line += (f"; vs itk fp32: names {'same' if c['same_names'] else 'DIFFERENT'}, center shift "
                         f"≤ {c['shift_mm']:.2f} mm, min Dice {dice}, lesion score Δ ≤ {c['lesion_diff']:.3f}, "
                         f"flags changed on {', '.join(c['flags_changed']) or 'none'}")
                if not c["same_names"]:
                    line += f" (found {', '.join(v.name for v in results[way].vertebrae) or 'none'})"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
