"""Benchmark: `spinenav analyze` stages on real CT (time, peak memory, ratio to the bare read).

For each CT (the 141-slice chest DICOM beside the repository when present, the sample abdomen CT)
a fresh process reads it (bare read time), builds the `Pipeline` (model load), analyzes (per-stage
times from the result) and writes the bundle; it reports peak RSS (``ru_maxrss``) and, on CUDA,
peak GPU memory. The headline figure is whole pipeline / bare read, measured in the same process.

Usage: python benchmarks/bench_analyze.py [--device auto|cpu|cuda] [PATH ...]
"""

from __future__ import annotations

import argparse
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
from inference.export.analysis import write_analysis_bundle
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter(); ct = read_ct(sys.argv[1]); t_read = time.perf_counter() - t0
t1 = time.perf_counter(); pipe = Pipeline(device=sys.argv[2]); t_load = time.perf_counter() - t1
if pipe.device.type == "cuda":
    torch.cuda.reset_peak_memory_stats()
pipe.analyze(ct)  # warm-up (CUDA kernels, allocator); not timed
t2 = time.perf_counter(); result = pipe.analyze(ct); t_analyze = time.perf_counter() - t2
with tempfile.TemporaryDirectory() as tmp:
    t3 = time.perf_counter(); write_analysis_bundle(Path(tmp) / "b", result, ct); t_write = time.perf_counter() - t3
gpu = torch.cuda.max_memory_allocated() / 2**20 if pipe.device.type == "cuda" else None
print(json.dumps({"grid": "x".join(map(str, ct.size)), "read_s": t_read, "load_s": t_load, "analyze_s": t_analyze,
                  "stages": result.timings, "write_s": t_write, "base_kb": base,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "gpu_peak_mb": gpu,
                  "device": str(pipe.device), "threads": torch.get_num_threads(),
                  "vertebrae": [v.name for v in result.vertebrae]}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    paths = args.paths or [p for p in DEFAULT_CTS if p.exists()]
    for path in paths:
        child = subprocess.run([sys.executable, "-c", _CHILD, str(path), args.device, str(ROOT)],
                               capture_output=True, text=True)
        if child.returncode != 0:
            print(f"{path}: failed\n{child.stderr[-2000:]}")
            return 1
        r = json.loads(child.stdout.strip().splitlines()[-1])
        whole = r["read_s"] + r["analyze_s"] + r["write_s"]
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in r["stages"].items())
        gpu = f", GPU peak {r['gpu_peak_mb']:.0f} MB" if r["gpu_peak_mb"] is not None else ""
        print(f"{path.parent.name if path.name == 'dicom' else path.name} ({r['grid']}) on {r['device']} "
              f"({r['threads']} threads)")
        print(f"  bare read {r['read_s']:.2f} s | model load {r['load_s']:.2f} s | analyze {r['analyze_s']:.2f} s "
              f"({stages}) | bundle write {r['write_s']:.3f} s")
        print(f"  read + analyze + write {whole:.2f} s = {whole / r['read_s']:.1f}× the bare read")
        print(f"  peak RSS {r['peak_kb'] / 1024:.0f} MB (after imports {r['base_kb'] / 1024:.0f} MB){gpu}")
        print(f"  found: {', '.join(r['vertebrae']) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
