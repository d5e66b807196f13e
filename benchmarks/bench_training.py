"""Benchmark: training speed of the three models (localizer, segmenter, lesion classifier) here.

Makes two tiny synthetic pools in a temporary folder (3 cases at 4 mm for the localizer, 3 at 2 mm
with lesions for the segmenter and the classifier), then runs each training command for a few steps
and reads the step rate off its log, between the first and the last logged step (start-up, pool
loading and the first steps are not counted; the lesion classifier's interval includes its small
validation pass). On CUDA each runs at batch 2 (the CPU recipe) and 16; ``--workers`` tries batch-
making processes (`inference.train.common.batch_stream`). Figures plan training runs; the trained
weights are thrown away.

Usage: python benchmarks/bench_training.py [--steps N] [--batch B ...] [--workers W ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

TRAINERS = {
    "localizer": ("inference.train.train_localizer", "loc", ["--val-from", "100"]),
    "segmenter": ("inference.train.train_segmenter", "seg", ["--val-from", "100"]),
    "lesion": ("inference.train.train_lesion", "seg", ["--val-from", "2", "--val-every", "10"]),
}
STEP_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*step (\d+)\b")


def step_rate(log: str) -> tuple[float, int] | None:
    """Steps per second between the first and the last logged step of a training log."""
    points = []
    for line in log.splitlines():
        m = STEP_LINE.match(line)
        if m and "checkpoint" not in line:
            points.append((dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f"), int(m.group(2))))
    if len(points) < 2 or points[-1][1] <= points[0][1]:
        return None
    (t0, s0), (t1, s1) = points[0], points[-1]
    return (s1 - s0) / max((t1 - t0).total_seconds(), 1e-6), s1 - s0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=0,
                        help="steps per run, at least 20 (default: 30 on CPU, 40 on CUDA)")
    parser.add_argument("--batch", type=int, nargs="+", help="batch sizes (default: 2 on CPU, 2 and 16 on CUDA)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0],
                        help="batch-making processes to try (default 0: batches made in the training process)")
    args = parser.parse_args()
    if args.steps and args.steps < 20:
        parser.error("--steps: at least 20 (the rate is read between logged steps, every 10th)")
    import torch

    from inference.train.pool import make_pool

    cuda = torch.cuda.is_available()
    steps = args.steps or (40 if cuda else 30)
    batches = args.batch or ([2, 16] if cuda else [2])
    where = f"CUDA ({torch.cuda.get_device_name(0)})" if cuda else f"CPU, {torch.get_num_threads()} threads"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        make_pool(tmp / "loc", 3, seed=9001, spacing=4.0)
        make_pool(tmp / "seg", 3, seed=9002, spacing=2.0)
        print(f"training on {where}; pools made in {time.perf_counter() - t0:.0f} s (6 synthetic cases)")
        for name, (module, pool, extra) in TRAINERS.items():
            for batch in batches:
                for workers in args.workers:
                    out = tmp / f"{name}_{batch}_{workers}"
                    cmd = [sys.executable, "-m", module, "--pool", str(tmp / pool), "--out", str(out), "--steps",
                           str(steps), "--batch", str(batch), "--minutes", "30", "--workers", str(workers), *extra]
                    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                    rate = step_rate(proc.stderr + proc.stdout)
                    if proc.returncode != 0 or rate is None:
                        print(f"  {name} batch {batch}: failed\n{(proc.stderr or proc.stdout)[-1500:]}")
                        return 1
                    per_s, counted = rate
                    print(f"  {name:<9} batch {batch:>2}, {workers:>2} workers: {per_s:6.2f} steps/s = "
                          f"{per_s * batch:7.1f} samples/s ({counted} steps timed)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
