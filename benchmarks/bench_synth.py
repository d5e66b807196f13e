"""Benchmark: synthetic CT generation (`inference.synth.generate`, default `SynthConfig`) in volumes/minute.

Generates N volumes (seeds 0 … N−1, after one untimed warm-up that loads the shape library) on the
CPU and, when one is available, on a CUDA GPU, and prints volumes/minute, seconds per volume
(median, slowest) and the mean voxel count of the output grids (the field of view and spacing are
random, so the figure depends on the seeds: compare runs with the same N). Writing NIfTI files is not
included (`spinenav synth` adds gzip time on top).

Usage: python benchmarks/bench_synth.py [-n N] [--device cpu|cuda|all]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))


def bench(device: str, n: int) -> dict:
    import torch

    from inference.synth import generate

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    generate(10_000, device=device)  # warm-up: shape library, kernels, allocator
    sync()
    times, voxels = [], []
    for seed in range(n):
        t0 = time.perf_counter()
        case = generate(seed, device=device)
        sync()
        times.append(time.perf_counter() - t0)
        voxels.append(case.ct.array.size)
    total = sum(times)
    return {
        "device": device,
        "volumes": n,
        "volumes_per_minute": 60.0 * n / total,
        "median_s": statistics.median(times),
        "max_s": max(times),
        "mean_voxels": statistics.fmean(voxels),
    }


def main() -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=6, help="timed volumes per device (default 6)")
    ap.add_argument("--device", default="all", help="cpu, cuda or all (cpu, plus cuda when available)")
    args = ap.parse_args()
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    cpu_name = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads ({cpu_name})")
    for device in devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            print("cuda: not available, skipped")
            continue
        r = bench(device, args.n)
        name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
        print(f"{device} ({name}): {r['volumes_per_minute']:.1f} volumes/minute over {r['volumes']} volumes "
              f"(median {r['median_s']:.2f} s, slowest {r['max_s']:.2f} s per volume), "
              f"mean {r['mean_voxels'] / 1e6:.1f} M voxels per volume")
    return 0


if __name__ == "__main__":
    sys.exit(main())
