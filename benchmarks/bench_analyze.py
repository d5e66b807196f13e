"""Benchmark: `spinenav analyze` stages on real CT (time, peak memory, ratio to the bare read).

For each CT (the 141-slice chest DICOM beside the repository when present, the sample abdomen CT)
a fresh process reads it (bare read time), builds the `Pipeline` (model load), analyzes (per-stage
times from the result) and writes the bundle; it reports peak RSS (``ru_maxrss``) and, on CUDA,
peak GPU memory. The headline figure is whole pipeline / bare read, measured in the same process.

``--no-bundle`` leaves out the bundle write (CPU work whatever the device); so does a machine without
VTK (the meshes need it), and says so.

Usage: python benchmarks/bench_analyze.py [--device auto|cpu|cuda] [--precision auto|fp32|fp16|bf16] [--no-bundle]
       [PATH ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]

DEFAULT_CTS = [
    ROOT.parent / "shared" / "data" / "real" / "chest_ct_dicom_1mm" / "dicom",
    ROOT / "assets" / "sample" / "abdomen_ct_3mm.nii.gz",
]

_CHILD = """
import json, resource, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
import torch
from inference.io import read_ct
from inference.pipeline import Pipeline
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter(); ct = read_ct(sys.argv[1]); t_read = time.perf_counter() - t0
t1 = time.perf_counter(); pipe = Pipeline(device=sys.argv[2], precision=sys.argv[4]); t_load = time.perf_counter() - t1
if pipe.device.type == "cuda":
    torch.cuda.reset_peak_memory_stats()
pipe.analyze(ct)  # warm-up (CUDA kernels, allocator); not timed
t2 = time.perf_counter(); result = pipe.analyze(ct); t_analyze = time.perf_counter() - t2
t_write = None
if sys.argv[5] == "1":
    from inference.export import write_bundle
    with tempfile.TemporaryDirectory() as tmp:
        t3 = time.perf_counter(); write_bundle(Path(tmp) / "b", result); t_write = time.perf_counter() - t3
gpu = torch.cuda.max_memory_allocated() / 2**20 if pipe.device.type == "cuda" else None
print(json.dumps({"grid": "x".join(map(str, ct.size)), "read_s": t_read, "load_s": t_load, "analyze_s": t_analyze,
                  "stages": result.timings, "write_s": t_write, "base_kb": base,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "gpu_peak_mb": gpu,
                  "device": str(pipe.device), "precision": result.precision, "threads": torch.get_num_threads(),
                  "vertebrae": [v.name for v in result.vertebrae]}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    parser.add_argument("--no-bundle", action="store_true", help="leave out the bundle write")
    args = parser.parse_args()
    if not args.no_bundle and importlib.util.find_spec("vtkmodules") is None:
        print("bundle write left out: VTK is not installed here")
        args.no_bundle = True
    paths = args.paths or [p for p in DEFAULT_CTS if p.exists()]
    for path in paths:
        child = subprocess.run([sys.executable, "-c", _CHILD, str(path), args.device, str(ROOT), args.precision,
                                "0" if args.no_bundle else "1"],
                               capture_output=True, text=True)
        if child.returncode != 0:
            print(f"{path}: failed\n{child.stderr[-2000:]}")
            return 1
        r = json.loads(child.stdout.strip().splitlines()[-1])
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in r["stages"].items())
        gpu = f", GPU peak {r['gpu_peak_mb']:.0f} MB" if r["gpu_peak_mb"] is not None else ""
        print(f"{path.parent.name if path.name == 'dicom' else path.name} ({r['grid']}) on {r['device']}, "
              f"{r['precision']} ({r['threads']} threads)")
        print(f"  bare read {r['read_s']:.2f} s | model load {r['load_s']:.2f} s | analyze {r['analyze_s']:.2f} s "
              f"({stages})" + ("" if r["write_s"] is None else f" | bundle write {r['write_s']:.3f} s"))
        if r["write_s"] is not None:
            whole = r["read_s"] + r["analyze_s"] + r["write_s"]
            print(f"  read + analyze + write {whole:.2f} s = {whole / r['read_s']:.1f}× the bare read")
        print(f"  peak RSS {r['peak_kb'] / 1024:.0f} MB (after imports {r['base_kb'] / 1024:.0f} MB){gpu}")
        print(f"  found: {', '.join(r['vertebrae']) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
