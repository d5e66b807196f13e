"""Benchmark: writing the robot bundle with `inference.export.export_labels` (time and memory).

Cases: the largest real VerSe label map in ``tests/data/verse_labels_only`` by voxel count (chosen
from the NIfTI headers; sub-gl017, 512×512×229 at 0.32 mm in-plane, cervico-thoracic) and the
TotalSegmentator sample ``assets/sample`` (3 mm abdomen, with its CT). Every export runs in a fresh
process that only imports the exporter and exports once into a temporary folder: its wall time
(whole ``export_labels`` call: reading, meshing, writing), peak resident set size
(``resource.getrusage`` ru_maxrss, next to the same process's peak after the imports alone), the
vertebrae, triangles and bundle size. The median time is over N such processes (one when the first
takes over a minute); one more process measures the Python-heap peak (tracemalloc; numpy buffers
included, VTK's own buffers not), untimed.

Usage: python benchmarks/bench_export.py [-n N] [--no-heap]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
VERSE = ROOT / "tests" / "data" / "verse_labels_only"
SAMPLE = (ROOT / "assets/sample/abdomen_vertebrae_totalseg.nii.gz", ROOT / "assets/sample/abdomen_ct_3mm.nii.gz")
SLOW_S = 60.0  # a first run slower than this is not repeated

_CHILD = """
import json, os, resource, sys, tempfile, time, tracemalloc
from pathlib import Path
sys.path.insert(0, sys.argv[1])
labels, ct, heap = sys.argv[2], sys.argv[3] or None, sys.argv[4] == "heap"
from inference.export import export_labels
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with tempfile.TemporaryDirectory(prefix="bench_export_") as tmp:
    out = Path(tmp) / "bundle"
    if heap:
        tracemalloc.start()
    t0 = time.perf_counter()
    r = export_labels(labels, out, ct_path=ct)
    seconds = time.perf_counter() - t0
    heap_peak = tracemalloc.get_traced_memory()[1] if heap else 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    files = [p for p in out.rglob("*") if p.is_file()]
    print(json.dumps({
        "seconds": seconds, "bundle_s": r.seconds, "base_kb": base, "peak_kb": peak, "heap_peak": heap_peak,
        "vertebrae": [v.name for v in r.vertebrae], "triangles": sum(v.mesh_triangles for v in r.vertebrae),
        "files": len(files), "bytes": sum(p.stat().st_size for p in files),
        "stl_bytes": sum(p.stat().st_size for p in files if p.suffix == ".stl"),
    }))
"""


def nifti_shape(path: Path) -> tuple[int, ...]:
    """Grid size from a (gzipped) NIfTI-1 header, without importing an image library.

    Keeps this parent process small: a child's ru_maxrss starts from the parent's RSS at fork.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        header = f.read(348)
    endian = "<" if struct.unpack("<i", header[:4])[0] == 348 else ">"
    dim = struct.unpack(endian + "8h", header[40:56])
    return tuple(dim[1 : 1 + dim[0]])


def largest_verse() -> tuple[Path, list[tuple[str, int]]] | None:
    found = []
    for path in sorted(VERSE.glob("*/*_seg-vert_msk.nii.gz")):
        shape = nifti_shape(path)
        n = 1
        for s in shape:
            n *= s
        found.append((path, n, shape))
    if not found:
        return None
    best = max(found, key=lambda f: f[1])
    return best[0], [(f"{p.parent.name} {'×'.join(map(str, s))}", n) for p, n, s in found]


def run_child(labels: Path, ct: Path | None, heap: bool = False) -> dict:
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(ROOT), str(labels), str(ct or ""), "heap" if heap else "time"],
        capture_output=True, text=True,
    )
    if child.returncode != 0:
        raise RuntimeError(f"export of {labels} failed:\n{child.stderr[-2000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def bench(name: str, labels: Path, ct: Path | None, repeats: int, heap: bool) -> None:
    runs = [run_child(labels, ct)]
    while len(runs) < repeats and runs[0]["seconds"] < SLOW_S:
        runs.append(run_child(labels, ct))
    times = [r["seconds"] for r in runs]
    r = runs[0]
    shape = "×".join(map(str, nifti_shape(labels)))
    heap_text = ""
    if heap:
        heap_text = f"Python heap peak {run_child(labels, ct, heap=True)['heap_peak'] / 2**20:.0f} MB (tracemalloc); "
    print(
        f"{name}: {labels.name} {shape}{' + CT ' + ct.name if ct else ''}\n"
        f"  time      median {statistics.median(times):.2f} s over {len(times)} fresh processes "
        f"(min {min(times):.2f}, max {max(times):.2f}); "
        f"write_bundle part (after reading) median {statistics.median(x['bundle_s'] for x in runs):.2f} s\n"
        f"  memory    {heap_text}process peak RSS {max(x['peak_kb'] for x in runs) / 1024:.0f} MB "
        f"({r['base_kb'] / 1024:.0f} MB after imports alone)\n"
        f"  bundle    {len(r['vertebrae'])} vertebrae ({r['vertebrae'][0]}–{r['vertebrae'][-1]}), "
        f"{r['triangles']} triangles in all, {r['files']} files, {r['bytes'] / 2**20:.1f} MB "
        f"(STL {r['stl_bytes'] / 2**20:.1f} MB)",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--repeats", type=int, default=2, help="exports per case for the median time")
    parser.add_argument("--no-heap", action="store_true", help="skip the extra tracemalloc run")
    args = parser.parse_args()
    verse = largest_verse()
    if verse is None:
        print(f"{VERSE}: no VerSe label maps, skipped")
    else:
        path, sizes = verse
        print("VerSe label maps by voxels: " + ", ".join(f"{s} = {n / 1e6:.1f} M" for s, n in sizes), flush=True)
        bench(f"largest VerSe ({path.parent.name})", path, None, args.repeats, not args.no_heap)
    if SAMPLE[0].is_file():
        bench("ts_abdomen_3mm", SAMPLE[0], SAMPLE[1] if SAMPLE[1].is_file() else None, args.repeats,
              not args.no_heap)
    else:
        print(f"{SAMPLE[0]}: not here, skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
