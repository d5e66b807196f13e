"""Train the per-vertebra segmenter + lesion head (`inference.models.segmenter`) on a synthetic pool.

    python -m inference.train.pool --out POOL -n 240 --seed 2 --spacing 2.0   # synthetic cases, 2 mm
    python -m inference.train.train_segmenter --pool POOL --out CKPT --minutes 60

Each sample is one vertebra of one pool case: a crop around its (jittered) center with the center
channels of `inference.models.segmenter.center_channels`. Neighbour centers are dropped at random,
as the localizer may miss one. Loss (region + boundary + volume, as seed 003 argues):

- binary cross-entropy + soft Dice of the mask (region);
- cross-entropy weighted up within ``BOUNDARY_MM`` of the true surface (keeps thin processes and
  the disc gaps between neighbours);
- squared normalized volume error (Δ/(predicted + true), keeps the total size honest when the overlap term saturates);
- lesion channels: binary cross-entropy with positive weight ``LESION_POS_WEIGHT``;
- rib channel: binary cross-entropy (positive weight ``RIB_POS_WEIGHT``) against the engine's painted
  ribs outside the vertebrae (pool cases without ``ribs`` leave it out).

``--init WEIGHTS`` starts from another segmenter's weights (a checkpoint or a shipped ``.pt``); an
older head with fewer output channels is padded (`inference.models.segmenter.widen_head`).

Cases with index ≥ ``--val-from`` are held out. CUDA when present, else CPU. Checkpoints every few
minutes to ``OUT/last.pt``; a run resumes from there.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from ..models.segmenter import (
    INPUT_SPACING_MM,
    LESION_CHANNELS,
    LESION_TYPES,
    PATCH,
    RIB_CHANNEL,
    SACRUM_IDS,
    SACRUM_PATCH,
    SegmenterNet,
    center_channels,
    crop,
    crop_start,
    widen_head,
)
from ..preprocess import normalize_hu
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

LOG = logging.getLogger("spinenav.train.segmenter")

BOUNDARY_MM = 4.0
BOUNDARY_WEIGHT = 4.0
VOLUME_WEIGHT = 0.5
LESION_WEIGHT = 0.5
LESION_POS_WEIGHT = 5.0
RIB_WEIGHT = 0.5
RIB_POS_WEIGHT = 3.0
CENTER_JITTER_MM = 3.0
P_DROP_NEIGHBOUR = 0.2
P_LOW_DENSITY = 0.25
"""Share of samples whose marrow is made less dense (added at step 865 of the shipped run, after the
real TPTBox L3, a low-density body, came out under-segmented)."""
P_SACRUM_BATCH = 0.15
"""Share of batches made of sacrum crops in `SACRUM_PATCH` (added in the sacrum fine-tune, 1.2)."""
RIB_GAIN = (0.2, 0.9)
P_DIM_RIBS = 0.7
"""Share of samples whose ribs are dimmed toward soft tissue by a gain drawn from ``RIB_GAIN``: the
engine paints ribs as tubes with a cortex one painting voxel (2 mm in the pool) thick at the cortical
HU (~1500), far brighter than real ribs, whose thin cortex is partial-volumed at 2-3 mm (added at
step 582 of the rib fine-tune, after the rib channel found synthetic ribs but none on real CT)."""


def load_case(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        keys = ("hu", "labels", "lesions", "ids", "centers", "ribs")
        return {k: z[k] for k in keys if k in z.files}


def lesion_ids(case: dict[str, np.ndarray]) -> np.ndarray:
    """Row numbers (into ``case["ids"]``) of the vertebrae that hold a lesion."""
    hit = np.unique(case["labels"][case["lesions"] > 0])
    return np.array([n for n, vid in enumerate(case["ids"]) if vid in hit], dtype=int)


def sample(case: dict[str, np.ndarray], rng: np.random.Generator, p_lesion: float = 0.0,
           target: int | None = None, shape: tuple[int, int, int] = PATCH) -> dict[str, np.ndarray]:
    """One training crop of ``shape``: inputs [3, k, j, i], mask target, lesion targets [3, k, j, i],
    rib target (NaN-filled when the case has no rib map). ``target``: the VerSe id to segment (one
    of the case's ids; default: a random vertebra)."""
    ids = case["ids"]
    centers = case["centers"][:, ::-1].astype(np.float64)  # (i, j, k) → (k, j, i)
    t = int(rng.integers(len(ids))) if target is None else int(np.flatnonzero(ids == target)[0])
    with_lesion = case.get("lesion_rows")
    if target is None and p_lesion and with_lesion is not None and len(with_lesion) and rng.random() < p_lesion:
        t = int(rng.choice(with_lesion))  # lesions are rare: show them more often (lesion fine-tuning)
    jitter = rng.normal(0, CENTER_JITTER_MM / INPUT_SPACING_MM, 3)
    if rng.random() < 0.15:
        jitter *= 2.5  # now and then a localizer miss of ~7 mm
    seen = centers + jitter  # the center the localizer would report (whole column shifted alike)
    start = crop_start(seen[t], shape)
    hu = crop(case["hu"], start, -1024, shape).astype(np.float32)
    labels = crop(case["labels"], start, 0, shape)
    lesions = crop(case["lesions"], start, 0, shape)
    if "ribs" in case:
        ribs = crop(case["ribs"], start, 0, shape).astype(np.float32)
    else:
        ribs = np.full(labels.shape, np.nan, np.float32)
    local = seen - start
    keep = rng.random(len(ids)) >= P_DROP_NEIGHBOUR
    keep[t] = True
    local[~keep] = np.nan
    chans = center_channels(local, t, shape=shape)
    y = (labels == ids[t]).astype(np.float32)
    les = np.stack([(lesions == code).astype(np.float32) for code in range(1, len(LESION_TYPES) + 1)])
    if "ribs" in case and rng.random() < P_DIM_RIBS:
        dim_ribs(hu, ribs, labels, rng.uniform(*RIB_GAIN))
    if rng.random() < P_LOW_DENSITY:
        # low-density (osteoporotic) marrow: pull the vertebrae's cancellous voxels toward soft tissue
        marrow = (labels > 0) & (hu < 500)
        hu[marrow] = 30.0 + rng.uniform(0.2, 0.8) * (hu[marrow] - 30.0)
    # intensity: small gain/offset and noise on top of the engine's own scanner randomization
    hu = hu * rng.uniform(0.92, 1.08) + rng.uniform(-30, 30) + rng.normal(0, rng.uniform(0, 25), hu.shape)
    x = np.concatenate([normalize_hu(hu)[None], chans])
    if rng.random() < 0.5:  # left-right mirror
        x, y, les, ribs = x[..., ::-1], y[..., ::-1], les[..., ::-1], ribs[..., ::-1]
    return {"x": np.ascontiguousarray(x), "y": np.ascontiguousarray(y), "les": np.ascontiguousarray(les),
            "ribs": np.ascontiguousarray(ribs)}


def dim_ribs(hu: np.ndarray, ribs: np.ndarray, labels: np.ndarray, gain: float) -> None:
    """Pull the ribs (with the partial-volume rim around them, outside the vertebrae) toward soft tissue,
    in place: HU → 50 + ``gain`` × (HU − 50)."""
    rib = ndimage.binary_dilation(ribs > 0) & (labels == 0)
    hu[rib] = 50.0 + gain * (hu[rib] - 50.0)


def boundary_weight(y: np.ndarray) -> np.ndarray:
    """1 + BOUNDARY_WEIGHT within BOUNDARY_MM of the mask surface (either side)."""
    if not y.any():
        return np.ones_like(y)
    inside = ndimage.distance_transform_edt(y)
    outside = ndimage.distance_transform_edt(1 - y)
    d = np.where(y > 0, inside, outside) * INPUT_SPACING_MM
    return (1.0 + BOUNDARY_WEIGHT * (d <= BOUNDARY_MM)).astype(np.float32)


def loss_fn(
    out: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    les: torch.Tensor,
    lesion_weight: float = LESION_WEIGHT,
    lesion_pos_weight: float = LESION_POS_WEIGHT,
    ribs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    logit = out[:, 0]
    bce = (F.binary_cross_entropy_with_logits(logit, y, reduction="none") * w).mean()
    p = torch.sigmoid(logit)
    dims = (1, 2, 3)
    inter = (p * y).sum(dims)
    dice = 1 - (2 * inter + 1) / (p.sum(dims) + y.sum(dims) + 1)
    vol = ((p.sum(dims) - y.sum(dims)) / (p.sum(dims) + y.sum(dims) + 1)) ** 2  # bounded in [0, 1)
    pos_weight = torch.full((len(LESION_TYPES), 1, 1, 1), lesion_pos_weight, device=out.device)
    les_bce = F.binary_cross_entropy_with_logits(out[:, LESION_CHANNELS], les, pos_weight=pos_weight)
    loss = bce + dice.mean() + VOLUME_WEIGHT * vol.mean() + lesion_weight * les_bce
    parts = {"bce": bce, "dice": 1 - dice.mean(), "vol": vol.mean(), "les": les_bce}
    if ribs is not None:
        known = torch.isfinite(ribs[:, 0, 0, 0])  # samples from cases with a rib map
        if known.any():
            rib_bce = F.binary_cross_entropy_with_logits(
                out[known, RIB_CHANNEL], ribs[known], pos_weight=torch.tensor(RIB_POS_WEIGHT, device=out.device))
            loss = loss + RIB_WEIGHT * rib_bce
            parts["rib"] = rib_bce
    return loss, {k: float(v.detach()) for k, v in parts.items()}


class SegmenterBatches:
    """Makes training batches (called with a random generator): vertebra crops of random pool cases
    (`sample`), or, with probability `P_SACRUM_BATCH`, a batch of sacrum crops in their own taller shape;
    with each crop's boundary weight. Holds up to ``cache_cases`` cases in memory, the only ones sampled
    once it is full."""

    def __init__(self, files: PoolFiles, batch: int, p_lesion: float, cache_cases: int):
        self.files, self.batch, self.p_lesion, self.cache_cases = files, batch, p_lesion, cache_cases
        self.cache: dict[Path, dict[str, np.ndarray]] = {}

    def __call__(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        cache = self.cache
        files = [f for f in self.files() if f in cache or len(cache) < self.cache_cases]
        items = []
        sacrum = rng.random() < P_SACRUM_BATCH  # a batch of sacrum crops (their own, taller shape)
        tries = 0
        while len(items) < self.batch:
            f = files[int(rng.integers(len(files)))]
            if f not in cache:
                cache[f] = load_case(f)
                cache[f]["lesion_rows"] = lesion_ids(cache[f])
            ids = cache[f]["ids"]
            tries += 1
            if sacrum and tries > 200:
                sacrum = False  # the pool holds (almost) no sacrum
            sacra = [int(v) for v in ids if v in SACRUM_IDS]
            if sacrum and sacra:
                items.append(sample(cache[f], rng, target=sacra[0], shape=SACRUM_PATCH))
            elif not sacrum and len(ids):
                items.append(sample(cache[f], rng, self.p_lesion))
        out = {k: np.stack([it[k] for it in items]) for k in ("x", "y", "les", "ribs")}
        out["w"] = np.stack([boundary_weight(it["y"]) for it in items])
        return out


def train(pool: list[Path], out: Path, minutes: float, batch: int, lr: float, val_from: int, seed: int,
          threads: int, lesion: tuple[float, float, float] = (LESION_WEIGHT, LESION_POS_WEIGHT, 0.0),
          init: Path | None = None, max_steps: int = 0, arch: dict | None = None, cache_cases: int = 400,
          workers: int = 0) -> None:
    """``lesion``: (loss weight, positive weight, share of samples drawn from vertebrae with a lesion);
    ``init``: weights to start from when ``out`` holds no checkpoint yet; ``max_steps``: stop at this
    step (0: by time alone); ``arch``: `SegmenterNet` keyword arguments (attention, use_centers), kept
    in the checkpoint; ``cache_cases``: cases held in memory (~24 MB each), the only ones sampled once
    the cache is full (shared out among the ``workers``, processes that make batches ahead; 0: this one)."""
    arch = dict(arch or {})
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = training_device(threads)
    out.mkdir(parents=True, exist_ok=True)
    model = SegmenterNet(**arch).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    ckpt = out / "last.pt"
    step, log = resume(ckpt, model, opt, device)
    if step == 0 and init is not None:
        state = torch.load(init, map_location=device)
        model.load_state_dict(widen_head(state.get("model", state), model))
        LOG.info("initialized from %s", init)
    t_end = time.time() + minutes * 60
    t_ckpt = time.time()
    running: dict[str, float] = {}
    files = PoolFiles(pool, val_from)
    # each batch-making process holds its own cache: together no more than cache_cases cases
    batches = SegmenterBatches(files, batch, lesion[2], max(1, cache_cases // max(1, workers)))
    stream = batch_stream(batches, rng, seed, workers)
    while keep_training(t_end, step, max_steps):
        b = next(stream)
        x, y, w, les, ribs = (b[k].to(device, non_blocking=True) for k in ("x", "y", "w", "les", "ribs"))
        model.train()
        loss, parts = loss_fn(model(x), y, w, les, lesion[0], lesion[1], ribs)
        optimizer_step(model, opt, loss)
        step += 1
        update_running(running, parts)
        if step % 10 == 0:
            LOG.info("step %d  " + "  ".join(f"{k} {v:.4f}" for k, v in running.items()) + "  (pool %d)",
                     step, len(files()))
            log.append({"step": step, **{k: round(v, 5) for k, v in running.items()}, "pool": len(files())})
        if time.time() - t_ckpt > 300 or time.time() >= t_end:
            save_checkpoint(ckpt, model, opt, step, log, arch=arch)
            t_ckpt = time.time()
    save_checkpoint(ckpt, model, opt, step, log, arch=arch)
    (out / "train_log.json").write_text(json.dumps(log, indent=0) + "\n")




def main() -> None:
    parser = training_arguments(__doc__.splitlines()[0], val_from=216)
    parser.add_argument("--lesion-weight", type=float, default=LESION_WEIGHT)
    parser.add_argument("--lesion-pos-weight", type=float, default=LESION_POS_WEIGHT)
    parser.add_argument("--lesion-focus", type=float, default=0.0,
                        help="share of samples taken from vertebrae with a lesion (lesion fine-tuning)")
    parser.add_argument("--init", type=Path, help="segmenter weights to start from (a checkpoint or a shipped .pt)")
    parser.add_argument("--attention", action="store_true", help="attention gates on the skip connections")
    parser.add_argument("--no-centers", action="store_true",
                        help="HU channel only, no center channels (the center-channel ablation)")
    parser.add_argument("--cache", type=int, default=400,
                        help="pool cases held in memory (~24 MB each at 2 mm); once full, only those are sampled")
    args = parse_training_arguments(parser)
    if args.init is not None and not args.init.is_file():
        parser.error(f"{args.init}: no such weights file; give a checkpoint (last.pt) or a shipped segmenter.pt")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train(args.pool, args.out, args.minutes, args.batch, args.lr, args.val_from, args.seed, args.threads,
          (args.lesion_weight, args.lesion_pos_weight, args.lesion_focus), args.init, args.steps,
          {"attention": args.attention, "use_centers": not args.no_centers}, args.cache, args.workers)


if __name__ == "__main__":
    main()
