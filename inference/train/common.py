"""What the trainers share: the command line, the training pool's file list and checkpoints."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import torch

LOG = logging.getLogger("spinenav.train")


def training_arguments(description: str, val_from: int) -> argparse.ArgumentParser:
    """--pool, --out, --minutes, --steps, --batch, --lr, --val-from, --seed, --threads."""
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
