"""Benchmark: the whole analysis on big CT grids (512 × 512 × 400 and × 800), time and peak memory.

The sample abdomen CT (3 mm) is resampled in a fresh process onto a fine grid of at least
512 × 512 × 800 voxels (linear interpolation: a real spine at the size of a thin-slice
thoraco-abdominal scan), then `Pipeline.analyze` runs on it and the bundle is written. Reports the
grid, wall time per stage and peak RSS (``ru_maxrss``; the CT itself takes 400 MB as int16).

On a GPU the models first analyze the sample CT once (CUDA start-up and kernel selection are not
timed).

``--no-bundle`` leaves out the bundle write (CPU work whatever the device); so does a machine without
VTK (the meshes need it), and says so.

Usage: python benchmarks/bench_big_volume.py [--device auto|cpu|cuda] [--precision auto|fp32|fp16|bf16]
       [--no-bundle] [--size I J K ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]

_CHILD = """
import json, resource, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
import torch
from inference.io import read_ct
from inference.pipeline import Pipeline
from benchmarks.sample_grid import resampled
size = [int(v) for v in sys.argv[3].split(",")]
precision = sys.argv[4]
small = read_ct(Path(sys.argv[2]) / "assets/sample/abdomen_ct_3mm.nii.gz")
ct = resampled(small, size)
pipe = Pipeline(device=sys.argv[1], precision=precision)
if pipe.device.type == "cuda":
    pipe.analyze(small)  # warm-up: CUDA start-up and kernel selection, not timed
    torch.cuda.reset_peak_memory_stats()
del small
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter(); result = pipe.analyze(ct); t_analyze = time.perf_counter() - t0
t_write = None
if sys.argv[5] == "1":
    from inference.export import write_bundle
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter(); write_bundle(Path(tmp) / "b", result); t_write = time.perf_counter() - t1
gpu = torch.cuda.max_memory_allocated() / 2**20 if pipe.device.type == "cuda" else None
print(json.dumps({"grid": "x".join(map(str, ct.size)), "spacing": [round(s, 3) for s in ct.spacing],
                  "analyze_s": t_analyze, "stages": result.timings, "write_s": t_write, "base_kb": base,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "gpu_peak_mb": gpu,
                  "device": str(pipe.device), "precision": result.precision, "threads": torch.get_num_threads(),
                  "vertebrae": [v.name for v in result.vertebrae]}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    parser.add_argument("--no-bundle", action="store_true", help="leave out the bundle write")
    parser.add_argument("--size", nargs="+", type=int, default=[512, 512, 400, 512, 512, 800],
                        help="grid sizes, three numbers (I J K) each")
    args = parser.parse_args()
    if not args.no_bundle and importlib.util.find_spec("vtkmodules") is None:
        print("bundle write left out: VTK is not installed here")
        args.no_bundle = True
    sizes = [args.size[n : n + 3] for n in range(0, len(args.size) - 2, 3)]
    for size in sizes:
        if _one(args.device, args.precision, not args.no_bundle, size):
            return 1
    return 0


def _one(device: str, precision: str, bundle: bool, size: list[int]) -> int:
    child = subprocess.run([sys.executable, "-c", _CHILD, device, str(ROOT), ",".join(map(str, size)), precision,
                            "1" if bundle else "0"],
                           capture_output=True, text=True)
    if child.returncode != 0:
        print(f"failed\n{child.stderr[-2000:]}")
        return 1
    r = json.loads(child.stdout.strip().splitlines()[-1])
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in r["stages"].items())
    gpu = f", GPU peak {r['gpu_peak_mb']:.0f} MB" if r["gpu_peak_mb"] is not None else ""
    print(f"resampled sample CT {r['grid']} voxels ({r['spacing']} mm) on {r['device']}, "
          f"{r['precision']} ({r['threads']} threads)")
    print(f"  analyze {r['analyze_s']:.1f} s ({stages})"
          + ("" if r["write_s"] is None else f" | bundle write {r['write_s']:.1f} s"))
    print(f"  peak RSS {r['peak_kb'] / 1024:.0f} MB (with the CT in memory: {r['base_kb'] / 1024:.0f} MB){gpu}")
    print(f"  found: {', '.join(r['vertebrae']) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
