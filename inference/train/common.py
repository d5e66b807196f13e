"""What the trainers share: the command line, the training pool's file list, batch making and checkpoints."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

LOG = logging.getLogger("spinenav.train")


def training_arguments(description: str, val_from: int) -> argparse.ArgumentParser:
    """--pool, --out, --minutes, --steps, --batch, --lr, --val-from, --seed, --threads, --workers."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--pool", type=Path, required=True, nargs="+",
                        help="one or more pool folders (their training cases are used together)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--steps", type=int, default=0,
                        help="stop once the run reaches this step (0: --minutes alone); equal budgets for ablations")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--val-from", type=int, default=val_from, help="pool cases from this index on are held out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0,
                        help="processes that make batches ahead (0: in the training process; on a GPU machine "
                             "use most of its CPU cores)")
    return parser


def parse_training_arguments(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args(argv)``; a ``--pool`` folder that does not exist is a one-line usage error
    (an existing empty one is waited on: a pool may still be being generated into it)."""
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.pool if not p.is_dir()]
    if missing:
        parser.error(f"no such pool folder: {', '.join(missing)}; make one with python -m inference.train.pool")
    return args


def split_files(pools: Path | list[Path], val_from: int) -> tuple[list[Path], list[Path]]:
    """The complete cases of ``pools`` (one folder or several): those with an index below ``val_from``
    (training) and the rest of each pool (held out)."""
    pools = [pools] if isinstance(pools, Path) else pools
    files = sorted(p for pool in pools for p in pool.glob("case_*.npz") if p.stem[5:].isdigit())
    return [p for p in files if int(p.stem[5:]) < val_from], [p for p in files if int(p.stem[5:]) >= val_from]


def training_files(pools: Path | list[Path], val_from: int) -> list[Path]:
    """The training cases of ``pools`` (see `split_files`)."""
    return split_files(pools, val_from)[0]


def training_device(threads: int) -> torch.device:
    """CUDA when present, else the CPU with ``threads`` torch threads."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(threads)
    return device


def keep_training(t_end: float, step: int, max_steps: int) -> bool:
    """Before the wall-clock end ``t_end`` (``time.time()``) and, when ``max_steps`` is set, below that step."""
    return time.time() < t_end and not (max_steps and step >= max_steps)


def save_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int, log: list,
                    **extra: Any) -> None:
    """Model, optimizer, step and loss log, written atomically (a run can be killed at any time)."""
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "log": log, **extra}, tmp)
    tmp.replace(path)
    LOG.info("checkpoint at step %d", step)


def resume(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, device: torch.device) -> tuple[int, list]:
    """Load ``path`` into model and optimizer when it exists; (step, log) to continue from."""
    if not path.exists():
        return 0, []
    state = torch.load(path, map_location=device)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    LOG.info("resumed at step %d", state["step"])
    return state["step"], state["log"]


def optimizer_step(model: torch.nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """Backward pass, gradient norm clipped at 5, one optimizer step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    opt.step()


def update_running(running: dict[str, float], parts: dict[str, float]) -> None:
    """Exponential moving average (0.95) of the loss parts, for the log."""
    for k, v in parts.items():
        running[k] = 0.95 * running.get(k, v) + 0.05 * v


class _Batches(torch.utils.data.IterableDataset):
    """Endless batches from ``make_batch(rng)``; each loader worker draws from its own random stream."""

    def __init__(self, make_batch: Callable[[np.random.Generator], dict[str, np.ndarray]], seed: int):
        self.make_batch, self.seed = make_batch, seed

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, 1 + (info.id if info is not None else 0)])
        while True:
            yield self.make_batch(rng)


def batch_stream(make_batch: Callable[[np.random.Generator], dict[str, np.ndarray]], rng: np.random.Generator,
                 seed: int, workers: int) -> Iterator[dict[str, torch.Tensor]]:
    """Training batches (dicts of tensors) made by ``make_batch(rng)``.

    ``workers`` 0: made here, between the steps, from ``rng`` (the training's own stream, as the recipes
    in the manifests ran). More: made ahead by that many worker processes (`torch.utils.data.DataLoader`),
    each with a stream of its own drawn from ``seed``, so the numpy work of sampling and augmenting
    overlaps the network's step: what keeps a GPU busy (docs/benchmarks_gpu.md measured the single
    process at 41 localizer samples/s on an H200). Runs are then reproducible for a given number of
    workers only.
    """
    if workers <= 0:
        while True:
            yield {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in make_batch(rng).items()}
    loader = torch.utils.data.DataLoader(_Batches(make_batch, seed), batch_size=None, num_workers=workers,
                                         prefetch_factor=2, persistent_workers=True,
                                         pin_memory=torch.cuda.is_available())
    yield from loader


class PoolFiles:
    """The training cases of growing pools, listed again at most every ``refresh_s`` seconds (a pool can
    still be being generated while training reads it); waits while there are none."""

    def __init__(self, pools: list[Path], val_from: int, refresh_s: float = 30.0):
        self.pools, self.val_from, self.refresh_s = pools, val_from, refresh_s
        self._files: list[Path] = []
        self._listed = -np.inf

    def __call__(self) -> list[Path]:
        while True:
            if time.time() - self._listed > self.refresh_s or not self._files:
                self._files, self._listed = training_files(self.pools, self.val_from), time.time()
            if self._files:
                return self._files
            LOG.info("waiting for pool cases")
            time.sleep(20)
