"""Train the lesion classifier (`inference.models.lesion.LesionNet`) on synthetic pool cases.

    python -m inference.train.train_lesion --pool POOL [POOL ...] --out DIR [--minutes 60] [--val-from 180]

1. Every vertebra of every pool case is cut once into a crop a little larger than `PATCH` (HU and
   its true mask) and held in memory with its labels: a type is present when at least
   `MIN_LESION_VOXELS` of the vertebra's voxels carry it (the held-out evaluation's rule). Cases with
   an index of ``--val-from`` or more in each pool are the validation set (model selection); the
   held-out pools judged in docs/ are never read here.
2. Batches: half from vertebrae with a lesion (a type drawn at random, then a vertebra with it), half
   from all vertebrae. Augmentation: the crop shifted by ~3 mm (center jitter), the mask grown or
   shrunk by a voxel (the segmenter's masks are not the truth), low-density marrow (so that
   osteoporotic bone is not read as lytic), HU gain, offset and noise, left-right mirror.
3. Loss: binary cross-entropy per type. Every ``--val-every`` steps: AP per type on the validation
   vertebrae; ``last.pt`` and ``best.pt`` (highest mean AP) are written.

Runs on CUDA when present, else on the CPU (``--threads``, default 2).
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from ..models.lesion import LesionNet, lesion_input
from ..models.segmenter import LESION_TYPES, PATCH, crop, crop_start
from ..preprocess import normalize_hu
from .common import (
    batch_stream,
    keep_training,
    optimizer_step,
    parse_training_arguments,
    resume,
    save_checkpoint,
    split_files,
    training_arguments,
    training_device,
)
from .train_segmenter import P_LOW_DENSITY
from .validate_synthetic import MIN_LESION_VOXELS, average_precision

LOG = logging.getLogger("spinenav.train.lesion")
MARGIN = 3
"""Voxels (2 mm) kept around `PATCH` in memory for the center jitter."""
JITTER_VOXELS = 1.5
P_MASK_JITTER = 0.5


class Crops:
    """All vertebrae of some pool cases as fixed crops: ``hu`` int16 [n, *big], ``mask`` bool, ``y``
    float32 [n, 3] (lesion present per type), ``where`` (case file, VerSe id)."""

    def __init__(self, files: list[Path]) -> None:
        big = tuple(p + 2 * MARGIN for p in PATCH)
        hu, mask, y, where = [], [], [], []
        for path in files:
            with np.load(path) as z:
                case = {k: z[k] for k in ("hu", "labels", "lesions", "ids", "centers")}
            for vid, c in zip(case["ids"], case["centers"], strict=True):
                start = crop_start(np.asarray(c, float)[::-1], big)
                m = crop(case["labels"], start, 0, big) == vid
                if not m.any():
                    continue
                les = crop(case["lesions"], start, 0, big)
                hu.append(crop(case["hu"], start, -1024, big))
                mask.append(m)
                y.append([np.count_nonzero(m & (les == code + 1)) >= MIN_LESION_VOXELS
                          for code in range(len(LESION_TYPES))])
                where.append((path.name, int(vid)))
        self.hu = np.stack(hu) if hu else np.zeros((0, *big), np.int16)
        self.mask = np.stack(mask) if mask else np.zeros((0, *big), bool)
        self.y = np.asarray(y, np.float32).reshape(-1, len(LESION_TYPES))
        self.where = where

    def __len__(self) -> int:
        return len(self.y)

    def item(self, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Input [2, *PATCH] of vertebra ``n``: centred without ``rng``, augmented with it."""
        off = np.full(3, MARGIN)
        if rng is not None:
            off = np.clip(np.rint(MARGIN + rng.normal(0, JITTER_VOXELS, 3)), 0, 2 * MARGIN).astype(int)
        sl = tuple(slice(o, o + p) for o, p in zip(off, PATCH, strict=True))
        hu = self.hu[n][sl].astype(np.float32)
        mask = self.mask[n][sl]
        if rng is not None:
            if rng.random() < P_MASK_JITTER:
                mask = ndimage.binary_dilation(mask) if rng.random() < 0.5 else ndimage.binary_erosion(mask)
            if rng.random() < P_LOW_DENSITY:
                marrow = mask & (hu < 500)
                hu[marrow] = 30.0 + rng.uniform(0.2, 0.8) * (hu[marrow] - 30.0)
            hu = hu * rng.uniform(0.92, 1.08) + rng.uniform(-30, 30) + rng.normal(0, rng.uniform(0, 25), hu.shape)
            if rng.random() < 0.5:
                hu, mask = hu[..., ::-1], mask[..., ::-1]
        return lesion_input(normalize_hu(np.ascontiguousarray(hu)), np.ascontiguousarray(mask))


def predict(model: LesionNet, crops: Crops, batch: int = 16) -> np.ndarray:
    """Sigmoid outputs [n, 3] on centred, unaugmented crops (on the model's device)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for b in range(0, len(crops), batch):
            x = torch.from_numpy(np.stack([crops.item(n) for n in range(b, min(b + batch, len(crops)))]))
            out.append(torch.sigmoid(model(x.to(device))).cpu().numpy())
    model.train()
    return np.concatenate(out) if out else np.zeros((0, len(LESION_TYPES)), np.float32)


def validation_ap(model: LesionNet, crops: Crops) -> dict[str, float | None]:
    p = predict(model, crops)
    return {t: average_precision(p[:, c], crops.y[:, c] > 0) for c, t in enumerate(LESION_TYPES)}


def make_batch(rng: np.random.Generator, data: Crops, by_type: list[np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """Half from vertebrae with a lesion (a type drawn at random, then a vertebra with it), half from all."""
    idx = []
    for _ in range(batch):
        kinds = [c for c in range(len(LESION_TYPES)) if len(by_type[c])]
        if kinds and rng.random() < 0.5:
            idx.append(int(rng.choice(by_type[int(rng.choice(kinds))])))
        else:
            idx.append(int(rng.integers(len(data))))
    return {"x": np.stack([data.item(n, rng) for n in idx]), "y": data.y[idx]}


def train(pools: list[Path], out: Path, minutes: float, batch: int, lr: float, val_from: int, seed: int,
          threads: int, max_steps: int = 0, val_every: int = 200, workers: int = 0) -> None:
    """``workers``: processes that make batches ahead (`common.batch_stream`; 0: this process)."""
    device = training_device(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    train_files, val_files = split_files(pools, val_from)
    t0 = time.time()
    data, val = Crops(train_files), Crops(val_files)
    LOG.info("%d training vertebrae (%s positive) from %d cases, %d validation vertebrae (%s) from %d cases, "
             "%.0f s", len(data), data.y.sum(0).astype(int).tolist(), len(train_files), len(val),
             val.y.sum(0).astype(int).tolist(), len(val_files), time.time() - t0)
    by_type = [np.flatnonzero(data.y[:, c] > 0) for c in range(len(LESION_TYPES))]
    model = LesionNet().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    step, log = resume(out / "last.pt", model, opt, device)
    best = max((e.get("mean_ap", -1.0) for e in log if "mean_ap" in e), default=-1.0)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    t_end = time.time() + 60 * minutes
    running = []
    model.train()
    stream = batch_stream(partial(make_batch, data=data, by_type=by_type, batch=batch), rng, seed, workers)
    while keep_training(t_end, step, max_steps):
        b = next(stream)
        x, y = b["x"].to(device, non_blocking=True), b["y"].to(device, non_blocking=True)
        loss = loss_fn(model(x), y)
        optimizer_step(model, opt, loss)
        running.append(loss.item())
        step += 1
        if step % val_every == 0 or not keep_training(t_end, step, max_steps):
            ap = validation_ap(model, val)
            mean_ap = float(np.mean([a for a in ap.values() if a is not None])) if any(
                a is not None for a in ap.values()) else 0.0
            log.append({"step": step, "loss": round(float(np.mean(running)), 5), "mean_ap": round(mean_ap, 4),
                        **{f"ap_{t}": None if a is None else round(a, 4) for t, a in ap.items()}})
            running = []
            LOG.info("step %d: %s", step, log[-1])
            save_checkpoint(out / "last.pt", model, opt, step, log)
            if mean_ap > best:
                best = mean_ap
                save_checkpoint(out / "best.pt", model, opt, step, log)


def main() -> None:
    parser = training_arguments(__doc__.splitlines()[0], val_from=180)
    parser.add_argument("--val-every", type=int, default=200)
    parser.set_defaults(batch=16, lr=1e-3)
    args = parse_training_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train(args.pool, args.out, args.minutes, args.batch, args.lr, args.val_from, args.seed, args.threads,
          args.steps, args.val_every, args.workers)


if __name__ == "__main__":
    main()
