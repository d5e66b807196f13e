"""Benchmark: reading DICOM CT series with `inference.io.read_ct` (time and memory).

Series: the 141-slice chest CT beside the repository (``../shared/data/real/chest_ct_dicom_1mm``,
uncompressed, 512×512, ≈78 MB; skipped when absent) and the 20-slice JPEG 2000 series in
``tests/data`` (decoder-bound). For each: the median wall time of N reads in this process, the
Python-heap peak of one read (tracemalloc; numpy buffers included), and the peak resident set size of
a fresh process that only imports and reads once (``resource.getrusage`` ru_maxrss), next to the
same process's peak after the imports alone.

Usage: python benchmarks/bench_read_dicom.py [-n N] [PATH ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).parents[1]

DEFAULT_SERIES = [
    ROOT.parent / "shared" / "data" / "real" / "chest_ct_dicom_1mm" / "dicom",
    ROOT / "tests" / "data" / "ts_dicom_thoracolumbar" / "dicom",
]

_CHILD = """
import json, resource, sys
sys.path.insert(0, sys.argv[2])
from inference.io import read_ct
import pydicom, scipy.ndimage  # imported by the reader anyway; counted in the baseline
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
vol = read_ct(sys.argv[1])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"base_kb": base, "peak_kb": peak, "array_mb": vol.array.nbytes / 2**20}))
"""


def peak_rss(path: Path) -> dict:
    """Peak RSS of a fresh process reading ``path`` once.

    Run before this process imports anything heavy: on Linux a child's ru_maxrss starts from the
    parent's RSS at fork time, so a big parent would hide the child's own peak.
    """
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(ROOT)], capture_output=True, text=True, check=True
    )
    return json.loads(child.stdout)


def bench(path: Path, repeats: int, rss: dict) -> dict:
    sys.path.insert(0, str(ROOT))
    from inference.io import read_ct

    times = []
    vol = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        vol = read_ct(path)
        times.append(time.perf_counter() - t0)
    assert vol is not None
    del vol
    tracemalloc.start()
    vol = read_ct(path)
    _, heap_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "series": path.parent.name if path.name == "dicom" else path.name,
        "grid": "×".join(str(s) for s in vol.size),
        "dtype": str(vol.array.dtype),
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "repeats": repeats,
        "array_mb": vol.array.nbytes / 2**20,
        "heap_peak_mb": heap_peak / 2**20,
        "rss_peak_mb": rss["peak_kb"] / 1024,
        "rss_after_imports_mb": rss["base_kb"] / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--repeats", type=int, default=5, help="reads per series for the median time")
    parser.add_argument(
        "paths", nargs="*", type=Path, help="DICOM folders (default: chest 141 + tests 20-slice)"
    )
    args = parser.parse_args()
    paths = []
    for path in args.paths or DEFAULT_SERIES:
        if path.is_dir():
            paths.append(path)
        else:
            print(f"{path}: not here, skipped")
    rss = {path: peak_rss(path) for path in paths}  # first, while this process is still small
    for path in paths:
        r = bench(path, args.repeats, rss[path])
        print(
            f"{r['series']}: {r['grid']} {r['dtype']} ({r['array_mb']:.0f} MB array)\n"
            f"  time      median {r['median_s']:.3f} s over {r['repeats']} reads "
            f"(min {r['min_s']:.3f}, max {r['max_s']:.3f})\n"
            f"  memory    Python heap peak {r['heap_peak_mb']:.0f} MB (tracemalloc, one read); "
            f"process peak RSS {r['rss_peak_mb']:.0f} MB in a fresh process "
            f"({r['rss_after_imports_mb']:.0f} MB after imports alone)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
