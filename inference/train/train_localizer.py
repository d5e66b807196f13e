"""Train the localizer/labeler (`inference.models.localizer`) on a synthetic pool.

    python -m inference.train.pool --out POOL -n 2000 --seed 1          # synthetic cases, 4 mm
    python -m inference.train.train_localizer --pool POOL --out CKPT --minutes 60

Runs on CUDA when present, else CPU (2 threads unless told). Cases whose index is ≥ the pool's
`--val-from` are held out for validation (synthetic, never trained on); real CT is judged after
training with `inference.train.validate_real`, never used here. Checkpoints every few minutes, so
a run can be stopped at any time and the last checkpoint kept. ``--init WEIGHTS`` starts from another
localizer's weights (a checkpoint or the shipped ``localizer.pt``) with a fresh optimizer: a fine-tune.
"""

from __future__ import annotations

import json
import logging
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..models.localizer import (
    CLASSES,
    DESCRIPTOR_MEAN,
    HEATMAP_SIGMA_MM,
    INPUT_SPACING_MM,
    TRAINING_FIELD,
    LocalizerNet,
    id_to_class_lut,
    scan_descriptor,
)
from ..preprocess import AIR_HU, normalize_hu
from .common import (
    PoolFiles,
    batch_stream,
    keep_training,
    optimizer_step,
    parse_training_arguments,
    resume,
    save_checkpoint,
    training_arguments,
    training_device,
    update_running,
)

LOG = logging.getLogger("spinenav.train.localizer")

PATCH = TRAINING_FIELD
"""Training crop (k, j, i) at 4 mm (`TRAINING_FIELD`; most synthetic scans fit whole cranio-caudally)."""
BACKGROUND_WEIGHT = 0.2
HEATMAP_WEIGHT = 20.0
LEVEL_WEIGHT = 0.2
HEAT_LOSS_WEIGHT = 100.0
"""Keeps the center heatmap's gradient comparable to the level term's (both ~0.3 early on)."""


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def sample_patch(case: dict[str, np.ndarray], rng: np.random.Generator, patch=PATCH,
                 fov_p: float = 0.0, clip_p: float = 0.0, cut_p: float = 0.0) -> dict[str, np.ndarray]:
    """A random crop around the spine (pads with air), its targets at 8 mm, and the scan descriptor.

    With probability ``fov_p`` the field of view is narrowed further (`restrict_fov`), else with
    probability ``cut_p`` cut through the column from behind (`cut_behind`); with probability
    ``clip_p`` the HU are those of a bone-window export (`bone_window_export`).
    """
    hu = case["hu"].astype(np.float32)
    labels = case["labels"]
    shape = np.array(hu.shape)
    centers = case["centers"][:, ::-1] if len(case["centers"]) else (shape[None] - 1) / 2.0  # → (k, j, i)
    mid = centers.mean(axis=0)
    start = []
    for ax in range(3):
        n, p = shape[ax], patch[ax]
        if ax == 0:  # cranio-caudal: whole scan if it fits, else a random window
            lo = 0 if n <= p else int(rng.integers(0, n - p + 1))
            if n < p:
                lo = -int(rng.integers(0, p - n + 1))
        else:
            lo = int(round(mid[ax] - p / 2 + rng.normal(0, 6)))
        start.append(lo)
    start = np.array(start)
    x = np.full(patch, -1024.0, np.float32)
    y = np.zeros(patch, np.uint8)
    src = tuple(slice(max(0, s), min(n, s + p)) for s, n, p in zip(start, shape, patch, strict=True))
    dst = tuple(slice(sl.start - s, sl.stop - s) for sl, s in zip(src, start, strict=True))
    x[dst] = hu[src]
    y[dst] = labels[src]
    c = centers - start  # (k, j, i) in patch voxels (4 mm)
    if rng.random() < fov_p:
        x, y, c = restrict_fov(x, y, c, case["ids"], rng)
    elif cut_p and rng.random() < cut_p:
        x, y, c = cut_behind(x, y, c, case["ids"], rng)
    if rng.random() < clip_p:
        x = bone_window_export(x, rng)
    if rng.random() < 0.5:  # left-right mirror: vertebra levels are symmetric
        x, y = x[:, :, ::-1].copy(), y[:, :, ::-1].copy()
        c = c.copy()
        c[:, 2] = patch[2] - 1 - c[:, 2]
    desc = scan_descriptor(tuple(case["scan_spacing"]), hu)
    heat = heatmap_target(c, tuple(p // 2 for p in patch))
    return {"x": normalize_hu(x)[None], "cls": id_to_class_lut()[y], "heat": heat, "desc": desc}


FOV_Z_MM = (40.0, 160.0)
"""Cranio-caudal extent of a narrowed field of view (real test scans go down to 40 mm)."""
FOV_XY_MM = (60.0, 200.0)
"""In-plane extent of a narrowed field of view (a vertebra cutout can be 70 mm deep)."""
CUT_BEHIND_MM = (-5.0, 40.0)
"""Where `cut_behind`'s back edge runs, behind the vertebral centers (the centroid of the whole
vertebra lies near the back of the body)."""
CUT_WIDTH_MM = (140.0, 260.0)
MIN_VISIBLE = 0.3
"""A vertebra cut by the field of view stays a heatmap target when this fraction of it is visible."""


def restrict_fov(x: np.ndarray, y: np.ndarray, centers: np.ndarray, ids: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Narrow a training crop to a small field of view, as in a cutout or a short slab.

    A box of `FOV_Z_MM` cranio-caudal extent around a random point of the column (and, half of the
    time, of `FOV_XY_MM` in-plane) is kept; the rest becomes air and background, the way a small
    scan is padded at inference. A vertebra cut by the box keeps a heatmap target at the centroid
    of its visible part (what a reference mask of that scan measures) when at least `MIN_VISIBLE`
    of it is visible; otherwise it is no longer a target.
    """
    shape = np.array(x.shape)
    box_lo, box_hi = np.zeros(3, int), shape.copy()
    inside = np.all((centers >= 0) & (centers < shape), axis=1)
    anchor = centers[inside][rng.integers(inside.sum())] if inside.any() else shape / 2.0
    length = rng.uniform(*FOV_Z_MM) / INPUT_SPACING_MM
    lo = anchor[0] - rng.uniform(0.2, 0.8) * length
    box_lo[0], box_hi[0] = max(0, int(round(lo))), min(shape[0], int(round(lo + length)))
    if rng.random() < 0.5:
        for ax in (1, 2):
            width = rng.uniform(*FOV_XY_MM) / INPUT_SPACING_MM
            lo = anchor[ax] + rng.normal(0, 10.0 / INPUT_SPACING_MM) - width / 2
            box_lo[ax], box_hi[ax] = max(0, int(round(lo))), min(shape[ax], int(round(lo + width)))
    return _keep_box(x, y, centers, ids, box_lo, box_hi)


def cut_behind(x: np.ndarray, y: np.ndarray, centers: np.ndarray, ids: np.ndarray, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Narrow a training crop in-plane the way a cardiac CT or a CT angiogram is reconstructed: a
    field of view `CUT_WIDTH_MM` wide, aimed in front of the spine, whose back edge runs through the
    column (`CUT_BEHIND_MM` behind the vertebral centers), so that laminae and spinous processes or
    more are cut away over the whole length. Targets as in `restrict_fov`."""
    shape = np.array(x.shape)
    box_lo, box_hi = np.zeros(3, int), shape.copy()
    if len(centers):
        back = np.median(centers[:, 1]) + rng.uniform(*CUT_BEHIND_MM) / INPUT_SPACING_MM
        box_hi[1] = int(np.clip(round(back), 1, shape[1]))
        width = rng.uniform(*CUT_WIDTH_MM) / INPUT_SPACING_MM
        mid = np.median(centers[:, 2]) + rng.normal(0, 15.0 / INPUT_SPACING_MM)
        box_lo[2], box_hi[2] = max(0, int(round(mid - width / 2))), min(shape[2], int(round(mid + width / 2)))
    return _keep_box(x, y, centers, ids, box_lo, box_hi)


def _keep_box(x: np.ndarray, y: np.ndarray, centers: np.ndarray, ids: np.ndarray, box_lo: np.ndarray,
              box_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Air and background outside the box; the targets of the vertebrae still (partly) visible."""
    keep = np.zeros(x.shape, bool)
    keep[tuple(slice(a, b) for a, b in zip(box_lo, box_hi, strict=True))] = True
    before = np.bincount(y.ravel(), minlength=256)
    x = np.where(keep, x, AIR_HU).astype(np.float32)
    y = np.where(keep, y, 0).astype(np.uint8)
    after = np.bincount(y.ravel(), minlength=256)
    kept = []
    for n, vid in enumerate(ids):
        if after[vid] >= 0.95 * before[vid] and before[vid] > 0:
            kept.append(centers[n])
        elif after[vid] > 0 and after[vid] >= MIN_VISIBLE * before[vid]:
            kept.append(np.argwhere(y == vid).mean(axis=0))
    return x, y, np.array(kept, np.float64).reshape(-1, 3)


def bone_window_export(hu: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """HU as some exports and thresholded reconstructions deliver them: everything below a bone
    threshold (0-300 HU) replaced by one constant (-100 to 100 HU), so soft tissue and air vanish."""
    threshold, fill = rng.uniform(0.0, 300.0), rng.uniform(-100.0, 100.0)
    return np.where(hu < threshold, fill, hu).astype(np.float32)


def heatmap_target(centers_kji_4mm: np.ndarray, out_shape: tuple[int, int, int]) -> np.ndarray:
    """Max of Gaussians (σ = HEATMAP_SIGMA_MM) at the centers, on the 8 mm output grid."""
    c8 = (np.asarray(centers_kji_4mm, float) - 0.5) / 2.0  # 8 mm voxel (a) covers 4 mm voxels 2a, 2a+1
    sigma = HEATMAP_SIGMA_MM / (2 * INPUT_SPACING_MM)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in out_shape], indexing="ij")
    heat = np.zeros(out_shape, np.float32)
    for ck, cj, ci in c8:
        d2 = (grids[0] - ck) ** 2 + (grids[1] - cj) ** 2 + (grids[2] - ci) ** 2
        np.maximum(heat, np.exp(-d2 / (2 * sigma**2)), out=heat)
    return heat


def make_batch(rng: np.random.Generator, files: PoolFiles, batch: int, fov_p: float, clip_p: float, cut_p: float,
               constant_descriptor: bool) -> dict[str, np.ndarray]:
    """``batch`` samples of random training cases (`sample_patch`), stacked: x, cls, heat, desc."""
    fs = files()
    items = [sample_patch(_load(fs[int(rng.integers(len(fs)))]), rng, fov_p=fov_p, clip_p=clip_p, cut_p=cut_p)
             for _ in range(batch)]
    if constant_descriptor:
        for it in items:
            it["desc"] = DESCRIPTOR_MEAN
    return {k: np.stack([it[k] for it in items]) for k in ("x", "cls", "heat", "desc")}


def loss_fn(out: torch.Tensor, cls_4mm: torch.Tensor, heat: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted heatmap MSE + soft-target cross-entropy of the level classes (targets pooled to 8 mm)."""
    n_cls = len(CLASSES)
    onehot = F.one_hot(cls_4mm.long(), n_cls).permute(0, 4, 1, 2, 3).float()
    soft = F.avg_pool3d(onehot, 2)  # fraction of each class in the 8 mm voxel
    logp = F.log_softmax(out[:, 1:], dim=1)
    weight = torch.ones(n_cls, device=out.device)
    weight[0] = BACKGROUND_WEIGHT
    ce = -(soft * logp * weight[None, :, None, None, None]).sum(1).mean()
    # level discrimination where there is bone of a vertebra: softmax over the levels alone,
    # averaged over those voxels only (otherwise the few vertebra voxels barely move the loss)
    fg = soft[:, 0] < 0.5
    levels = soft[:, 1:] / soft[:, 1:].sum(1, keepdim=True).clamp(min=1e-6)
    logp_levels = F.log_softmax(out[:, 2:], dim=1)
    level_ce = -(levels * logp_levels).sum(1)[fg].mean() if fg.any() else out.sum() * 0
    pred_heat = out[:, 0]
    mse = ((pred_heat - heat) ** 2 * (1 + HEATMAP_WEIGHT * heat)).mean()
    loss = ce + LEVEL_WEIGHT * level_ce + HEAT_LOSS_WEIGHT * mse
    return loss, {"ce": float(ce.detach()), "level_ce": float(level_ce.detach()), "mse": float(mse.detach())}


def train(
    pool: list[Path],
    out: Path,
    minutes: float,
    batch: int,
    lr: float,
    val_from: int,
    seed: int,
    use_descriptor: bool,
    threads: int,
    fov_p: float = 0.0,
    clip_p: float = 0.0,
    cut_p: float = 0.0,
    max_steps: int = 0,
    constant_descriptor: bool = False,
    workers: int = 0,
    init: Path | None = None,
) -> None:
    """``max_steps``: stop at this step (0: by time alone). ``constant_descriptor``: every sample gets
    `DESCRIPTOR_MEAN` instead of its own descriptor (the descriptor ablation's control arm).
    ``workers``: processes that make batches ahead (`common.batch_stream`; 0: this process).
    ``init``: weights to start from when ``out`` holds no checkpoint yet."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = training_device(threads)
    out.mkdir(parents=True, exist_ok=True)
    model = LocalizerNet(use_descriptor=use_descriptor).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    ckpt = out / "last.pt"
    step, log = resume(ckpt, model, opt, device)
    if step == 0 and init is not None:
        state = torch.load(init, map_location=device, weights_only=True)
        model.load_state_dict(state.get("model", state))
        LOG.info("initialized from %s", init)
    for group in opt.param_groups:  # a resumed run (fine-tuning) takes the learning rate it is given
        group["lr"] = lr
    t_end = time.time() + minutes * 60
    t_ckpt = time.time()
    running: dict[str, float] = {}
    files = PoolFiles(pool, val_from)
    stream = batch_stream(partial(make_batch, files=files, batch=batch, fov_p=fov_p, clip_p=clip_p, cut_p=cut_p,
                                  constant_descriptor=constant_descriptor), rng, seed, workers)
    while keep_training(t_end, step, max_steps):
        b = next(stream)
        x, cls, heat, desc = (b[k].to(device, non_blocking=True) for k in ("x", "cls", "heat", "desc"))
        model.train()
        loss, parts = loss_fn(model(x, desc), cls, heat)
        optimizer_step(model, opt, loss)
        step += 1
        update_running(running, parts)
        if step % 10 == 0:
            LOG.info("step %d  ce %.4f  level_ce %.3f  mse %.5f  (pool %d cases)", step, running["ce"],
                     running["level_ce"], running["mse"], len(files()))
            log.append({"step": step, **{k: round(v, 5) for k, v in running.items()}, "pool": len(files())})
        if time.time() - t_ckpt > 300 or time.time() >= t_end:
            save_checkpoint(ckpt, model, opt, step, log, use_descriptor=use_descriptor,
                            constant_descriptor=constant_descriptor)
            t_ckpt = time.time()
    save_checkpoint(ckpt, model, opt, step, log, use_descriptor=use_descriptor, constant_descriptor=constant_descriptor)
    (out / "train_log.json").write_text(json.dumps(log, indent=0) + "\n")




def main() -> None:
    parser = training_arguments(__doc__.splitlines()[0], val_from=1800)
    parser.add_argument("--no-descriptor", action="store_true")
    parser.add_argument("--constant-descriptor", action="store_true",
                        help="feed every sample DESCRIPTOR_MEAN, not its own descriptor (descriptor ablation)")
    parser.add_argument("--fov-p", type=float, default=0.0,
                        help="probability of narrowing a training crop to a small field of view")
    parser.add_argument("--clip-p", type=float, default=0.0,
                        help="probability of a bone-window export (soft tissue and air set to one value)")
    parser.add_argument("--cut-p", type=float, default=0.0,
                        help="probability of a field of view cut through the column from behind (cardiac CT, CTA)")
    parser.add_argument("--init", type=Path,
                        help="localizer weights to start from (a checkpoint or the shipped localizer.pt)")
    args = parse_training_arguments(parser)
    if args.init is not None and not args.init.is_file():
        parser.error(f"{args.init}: no such weights file; give a checkpoint (last.pt) or a shipped localizer.pt")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train(args.pool, args.out, args.minutes, args.batch, args.lr, args.val_from, args.seed, not args.no_descriptor,
          args.threads, args.fov_p, args.clip_p, args.cut_p, args.steps, args.constant_descriptor, args.workers,
          args.init)


if __name__ == "__main__":
    main()
