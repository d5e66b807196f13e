"""Benchmark: the spine-first detection (`RunConfig.detection`): whole-scan peaks against the column, time and memory.

For each CT, two fresh processes run the whole analysis (`Pipeline.analyze`, segmentation included, no
bundle write), one with ``detection="scan"`` (the candidates before 2026-12-07) and one with
``detection="column"`` (shipped: the column tracked from bone, the heatmap read along it). Reports the
analysis wall time, the column stage's own time (``timings["column"]``: the whole-scan peaks, the track,
the straightened frames and the heatmap profile), peak RSS (``ru_maxrss``) and the vertebrae found.
CTs: the chest DICOM from ../shared (skipped when absent) and the sample CT resampled onto 512 × 512 × 400.

Usage: python benchmarks/bench_column.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
CHEST = ROOT.parent / "shared" / "data" / "real" / "chest_ct_dicom_1mm" / "dicom"

_CHILD = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import torch
from inference.config import SHIPPED
from inference.io import read_ct
from inference.pipeline import Pipeline
from benchmarks.sample_grid import resampled
source, detection = sys.argv[2], sys.argv[3]
if source == "big":
    ct = resampled(read_ct(Path(sys.argv[1]) / "assets/sample/abdomen_ct_3mm.nii.gz"), [512, 512, 400])
else:
    ct = read_ct(source)
pipe = Pipeline(device="cpu", config=SHIPPED.replace(detection=detection))
t0 = time.perf_counter(); result = pipe.analyze(ct); t = time.perf_counter() - t0
print(json.dumps({"grid": "x".join(map(str, ct.size)), "analyze_s": t, "stages": result.timings,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "threads": torch.get_num_threads(),
                  "vertebrae": [v.name for v in result.vertebrae]}))
"""


def main() -> int:
    sources = ([("chest DICOM 1 mm", str(CHEST))] if CHEST.is_dir() else []) + [("sample CT resampled", "big")]
    if not CHEST.is_dir():
        print(f"chest DICOM not found ({CHEST}): skipped")
    for title, source in sources:
        for detection in ("scan", "column"):
            proc = subprocess.run([sys.executable, "-c", _CHILD, str(ROOT), source, detection],
                                  capture_output=True, text=True, cwd=ROOT)
            if proc.returncode:
                print(proc.stdout + proc.stderr)
                return 1
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            stages = ", ".join(f"{k} {v:.2f} s" for k, v in r["stages"].items())
            print(f"{title} {r['grid']}, detection={detection} (cpu, {r['threads']} threads)\n"
                  f"  analyze {r['analyze_s']:.2f} s ({stages}) | peak RSS {r['peak_kb'] / 1024:.0f} MB\n"
                  f"  found: {', '.join(r['vertebrae']) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
