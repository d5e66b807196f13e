"""Numeric precision of the network passes: full float32, or float16 / bfloat16 autocast on a GPU.

On CUDA, "auto" runs the networks under float16 autocast (`torch.autocast`): convolutions in half
precision, normalisations and reductions kept in float32 by autocast. `benchmarks/bench_precision.py`
measures what that changes on real CT (centers, names, masks, lesion scores) and what it saves; the
figures are in docs/benchmarks_gpu.md. On an H200 (2026-12-04) float16 and bfloat16 were no faster
than float32 (these networks are small: resampling and pasting dominate), float16 halved the
networks' GPU memory on small scans (454 → 256 MB) and agreed with float32 more closely than
bfloat16 (per-vertebra Dice 0.9996 against 0.997 before GPU resampling). On the CPU and on MPS,
"auto" is float32: this project's CPUs have no fast half-precision units.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .errors import InputError

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
AUTO_CUDA = "fp16"
"""What "auto" means on CUDA (chosen with `benchmarks/bench_precision.py`, docs/benchmarks_gpu.md)."""

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """``precision`` for ``device``: "auto" → `AUTO_CUDA` on CUDA, "fp32" elsewhere. Half precision
    is for CUDA only; asking for it on another device is a one-line error."""
    if precision not in PRECISIONS:
        raise InputError(None, f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return AUTO_CUDA if device.type == "cuda" else "fp32"
    if precision != "fp32" and device.type != "cuda":
        raise InputError(None, f"--precision {precision} needs a CUDA GPU (this run is on {device.type}); "
                         "use --precision fp32 or auto")
    return precision


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Network passes inside run in ``precision`` (an already resolved one: fp32, fp16 or bf16)."""
    if precision == "fp32" or device.type != "cuda":
        yield
        return
    with torch.autocast(device_type="cuda", dtype=_DTYPES[precision]):
        yield
