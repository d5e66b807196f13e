"""Benchmark: the whole analysis on big CT grids (512 × 512 × 400 and × 800), time and peak memory.

The sample abdomen CT (3 mm) is resampled in a fresh process onto a fine grid of at least
512 × 512 × 800 voxels (linear interpolation: a real spine at the size of a thin-slice
thoraco-abdominal scan), then `Pipeline.analyze` runs on it and the bundle is written. Reports the
grid, wall time per stage and peak RSS (``ru_maxrss``; the CT itself takes 400 MB as int16).

Usage: python benchmarks/bench_big_volume.py [--device auto|cpu|cuda] [--size I J K ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]

_CHILD = """
import json, resource, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
import numpy as np, SimpleITK as sitk, torch
from inference.io import read_ct
from inference.volume import Volume
from inference.pipeline import Pipeline
from inference.export.analysis import write_analysis_bundle
size = [int(v) for v in sys.argv[3].split(",")]
small = read_ct(Path(sys.argv[2]) / "assets/sample/abdomen_ct_3mm.nii.gz")
img = small.to_sitk()
extent = [sp * n for sp, n in zip(img.GetSpacing(), img.GetSize())]
spacing = [e / n for e, n in zip(extent, size)]
origin = img.TransformContinuousIndexToPhysicalPoint([-0.5 + 0.5 * s / o for s, o in zip(spacing, img.GetSpacing())])
big = sitk.Resample(img, size, sitk.Transform(), sitk.sitkLinear, origin, spacing, img.GetDirection(), -1024,
                    sitk.sitkInt16)
ct = Volume.from_sitk(big, {"source_path": "resampled sample"})
del img, big, small
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
pipe = Pipeline(device=sys.argv[1])
t0 = time.perf_counter(); result = pipe.analyze(ct); t_analyze = time.perf_counter() - t0
with tempfile.TemporaryDirectory() as tmp:
    t1 = time.perf_counter(); write_analysis_bundle(Path(tmp) / "b", result, ct); t_write = time.perf_counter() - t1
gpu = torch.cuda.max_memory_allocated() / 2**20 if pipe.device.type == "cuda" else None
print(json.dumps({"grid": "x".join(map(str, ct.size)), "spacing": [round(s, 3) for s in ct.spacing],
                  "analyze_s": t_analyze, "stages": result.timings, "write_s": t_write, "base_kb": base,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "gpu_peak_mb": gpu,
                  "device": str(pipe.device), "threads": torch.get_num_threads(),
                  "vertebrae": [v.name for v in result.vertebrae]}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", nargs="+", type=int, default=[512, 512, 400, 512, 512, 800],
                        help="grid sizes, three numbers (I J K) each")
    args = parser.parse_args()
    sizes = [args.size[n : n + 3] for n in range(0, len(args.size) - 2, 3)]
    for size in sizes:
        if _one(args.device, size):
            return 1
    return 0


def _one(device: str, size: list[int]) -> int:
    child = subprocess.run([sys.executable, "-c", _CHILD, device, str(ROOT), ",".join(map(str, size))],
                           capture_output=True, text=True)
    if child.returncode != 0:
        print(f"failed\n{child.stderr[-2000:]}")
        return 1
    r = json.loads(child.stdout.strip().splitlines()[-1])
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in r["stages"].items())
    gpu = f", GPU peak {r['gpu_peak_mb']:.0f} MB" if r["gpu_peak_mb"] is not None else ""
    print(f"resampled sample CT {r['grid']} voxels ({r['spacing']} mm) on {r['device']} ({r['threads']} threads)")
    print(f"  analyze {r['analyze_s']:.1f} s ({stages}) | bundle write {r['write_s']:.1f} s")
    print(f"  peak RSS {r['peak_kb'] / 1024:.0f} MB (with the CT in memory: {r['base_kb'] / 1024:.0f} MB){gpu}")
    print(f"  found: {', '.join(r['vertebrae']) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
