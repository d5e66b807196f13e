"""Train the level-sequence network (`inference.models.sequence`) on synthetic straightened spines.

Two steps:

``prepare``: each case of a synthetic pool made at 2 mm (``python -m inference.train.pool --spacing 2``) is
tracked (`inference.column.track_column`, as in an analysis), straightened, and written as the straightened
HU at 2 mm (`inference.column.sequence.straight_hu`; the bone map is drawn from it in training) with each plane's class
(`plane_classes`). ``--follow`` keeps waiting for new pool cases (a pool still being generated).

``train`` (the default): random stretches of the prepared spines (96–448 mm, as fields of view cut them),
left-right mirrored at random, fields of view cut from a side or from behind, the bone map's threshold
drawn at random (`BONE_CENTRE_HU`), noise; cross-entropy per plane plus `HEAT_WEIGHT` × binary cross-entropy
of the centre heat (`inference.column.sequence.centre_heat`). Checkpoints every few minutes (``last.pt``);
a run resumes from it; ``--init`` starts from another run's weights.

    python -m inference.train.train_sequence prepare --pool POOL --out CACHE [--follow MINUTES]
    python -m inference.train.train_sequence train --cache CACHE --out RUN --minutes 60
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..column import straighten, track_column
from ..column.sequence import GRID_MM, N_CLASSES, bone_channel, centre_heat, plane_classes, straight_hu
from ..models.sequence import LevelSequenceNet
from ..volume import Volume
from .common import LOG, optimizer_step, resume, save_checkpoint, training_device

CROP_MM = (96.0, 448.0)
"""Lengths of the stretches of column trained on."""
BONE_CENTRE_HU, BONE_WIDTH_HU = (110.0, 350.0), (15.0, 60.0)
"""Ranges of the bone map's centre and width in training (`bone_channel`)."""
HEAT_WEIGHT = 5.0
"""Weight of the centre-heat loss (binary cross-entropy) beside the class cross-entropy."""
CHECKPOINT_MINUTES = 4.0
RESCAN_STEPS = 200
"""Prepared cases are listed again every this many steps (a cache still being filled)."""


def straightened_case(path: Path) -> dict[str, np.ndarray] | None:
    """Input and per-plane classes of one pool case (None when no column is tracked)."""
    d = np.load(path)
    spacing = float(d["spacing"][0])
    origin = tuple(float(v) for v in d["origin"])
    ct = Volume(d["hu"].astype(np.float32), (spacing,) * 3, origin)
    labels = Volume(d["labels"], (spacing,) * 3, origin)
    track = track_column(ct)
    if len(track.points_lps) < 2:
        return None
    spine = straighten(ct, track)
    x = straight_hu(spine)
    y = plane_classes(labels, spine)
    n = min(len(x), len(y))
    if n < 16:
        return None
    return {"hu": np.clip(np.rint(x[:n]), -1024, 3071).astype(np.int16), "y": y[:n].astype(np.int8)}


def prepare(pools: list[Path], out: Path, follow_minutes: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    t_end = time.time() + 60 * follow_minutes
    while True:
        todo = [p for pool in pools for p in sorted(pool.glob("case_*.npz"))
                if not any((out / f"{pool.name}_{p.stem}{ext}").exists() for ext in (".npz", ".skip"))]
        for p in todo:
            target = out / f"{p.parent.name}_{p.stem}.npz"
            try:
                case = straightened_case(p)
            except Exception as exc:  # a synthetic case the tracker cannot follow is skipped, not fatal
                LOG.warning("%s: %s", p, exc)
                case = None
            if case is None:
                target.with_suffix(".skip").touch()
                continue
            tmp = target.with_name("partial_" + target.name)
            np.savez_compressed(tmp, **case)
            tmp.replace(target)
        if time.time() > t_end:
            return
        if not todo:
            time.sleep(20)


def _cases(cache: Path, val_from: int) -> tuple[list[Path], list[Path]]:
    files = sorted(p for p in cache.glob("*_case_*.npz"))
    idx = [int(p.stem.rsplit("_", 1)[1]) for p in files]
    return [p for p, i in zip(files, idx, strict=True) if i < val_from], \
        [p for p, i in zip(files, idx, strict=True) if i >= val_from]


def sample(path: Path, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One augmented training stretch: (x [s, ap, lr] float32, y [s] int64)."""
    d = np.load(path)
    hu, y = d["hu"], d["y"].astype(np.int64)
    x = bone_channel(hu, float(rng.uniform(*BONE_CENTRE_HU)), float(rng.uniform(*BONE_WIDTH_HU)))
    n = int(rng.uniform(*CROP_MM) / GRID_MM)
    if len(x) > n:
        a = int(rng.integers(0, len(x) - n + 1))
        x, y = x[a:a + n], y[a:a + n]
    if rng.random() < 0.5:
        x = x[:, :, ::-1]
    if rng.random() < 0.3:  # a field of view cut from one side or from behind
        if rng.random() < 0.5:
            cut = int(rng.integers(x.shape[2] // 2 + 10, x.shape[2]))
            x = x.copy()
            if rng.random() < 0.5:
                x[:, :, cut:] = 0
            else:
                x[:, :, : x.shape[2] - cut] = 0
        else:
            cut = int(rng.integers(x.shape[1] // 2 + 5, x.shape[1]))
            x = x.copy()
            x[:, cut:] = 0
    gamma = float(np.exp(rng.normal(0, 0.3)))  # thinner or thicker bone (threshold, kernel, partial volume)
    x = np.clip(x, 0, 1) ** gamma
    x = x + rng.normal(0, rng.uniform(0, 0.08), x.shape).astype(np.float32)
    return np.ascontiguousarray(x, np.float32), y


def evaluate(model: LevelSequenceNet, files: list[Path], device: torch.device) -> dict[str, float]:
    """Plane accuracy on held-out prepared cases: all planes, and planes inside a vertebra."""
    model.eval()
    right = n = right_v = n_v = 0
    with torch.inference_mode():
        for p in files:
            d = np.load(p)
            x = torch.from_numpy(bone_channel(d["hu"]))[None, None].to(device)
            y = d["y"].astype(np.int64)
            pred = model(x)[0, :N_CLASSES].argmax(0).cpu().numpy()
            right += int((pred == y).sum())
            n += len(y)
            v = y > 0
            right_v += int((pred[v] == y[v]).sum())
            n_v += int(v.sum())
    model.train()
    return {"plane_acc": right / max(n, 1), "vertebra_plane_acc": right_v / max(n_v, 1), "cases": len(files)}


def _init_from(model: LevelSequenceNet, path: Path) -> None:
    """Start from another run's weights: every tensor of the same shape is copied, and the leading rows
    of a grown output layer (a head given a new channel)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    state = state.get("model", state)
    own = model.state_dict()
    for k, v in state.items():
        if k in own and own[k].shape == v.shape:
            own[k] = v
        elif k in own and own[k].shape[1:] == v.shape[1:] and own[k].shape[0] > v.shape[0]:
            own[k][: v.shape[0]] = v
    model.load_state_dict(own)
    LOG.info("initialised from %s", path)


def train(args: argparse.Namespace) -> None:
    device = training_device(args.threads)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    model = LevelSequenceNet().to(device)
    if args.init is not None and not (args.out / "last.pt").exists():
        _init_from(model, args.init)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = args.out / "last.pt"
    step, log = resume(ckpt, model, opt, device)
    t_end = time.time() + 60 * args.minutes
    t_ckpt = time.time()
    files: list[Path] = []
    running = []
    while time.time() < t_end:
        if step % RESCAN_STEPS == 0 or not files:
            files, held = _cases(args.cache, args.val_from)
            if not files:
                time.sleep(30)
                continue
        xs, ys = zip(*(sample(files[int(rng.integers(len(files)))], rng) for _ in range(args.batch)), strict=True)
        n = min(len(y) for y in ys)
        x = torch.from_numpy(np.stack([a[:n] for a in xs]))[:, None].to(device)
        y = torch.from_numpy(np.stack([b[:n] for b in ys])).to(device)
        heat = torch.from_numpy(np.stack([centre_heat(b[:n]) for b in ys])).to(device)
        logits = model(x)
        loss = F.cross_entropy(logits[:, :N_CLASSES], y, label_smoothing=0.05) + HEAT_WEIGHT * \
            F.binary_cross_entropy_with_logits(logits[:, N_CLASSES], heat)
        optimizer_step(model, opt, loss)
        running.append(loss.item())
        step += 1
        if step % 50 == 0:
            LOG.info("step %d loss %.4f (%d cases)", step, float(np.mean(running[-50:])), len(files))
            log.append({"step": step, "loss": float(np.mean(running[-50:])), "cases": len(files)})
        if time.time() - t_ckpt > 60 * CHECKPOINT_MINUTES:
            save_checkpoint(ckpt, model, opt, step, log, architecture=model.architecture())
            t_ckpt = time.time()
    save_checkpoint(ckpt, model, opt, step, log, architecture=model.architecture())
    _, held = _cases(args.cache, args.val_from)
    if held:
        LOG.info("held-out: %s", evaluate(model, held, device))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="straighten the cases of synthetic pools")
    p.add_argument("--pool", type=Path, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--follow", type=float, default=0.0, help="keep waiting for new pool cases this many minutes")
    t = sub.add_parser("train", help="train on prepared cases")
    t.add_argument("--cache", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--minutes", type=float, default=60.0)
    t.add_argument("--batch", type=int, default=2)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--val-from", type=int, default=700, help="pool cases from this index on are held out")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--init", type=Path, help="weights to start from (a checkpoint; a grown head keeps its old rows)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.command == "prepare":
        for pool in args.pool:
            if not pool.is_dir():
                parser.error(f"no such pool folder: {pool}; make one with python -m inference.train.pool --spacing 2")
        prepare(args.pool, args.out, args.follow)
    else:
        if not args.cache.is_dir():
            parser.error(f"no such folder: {args.cache}; run the prepare step first")
        train(args)


if __name__ == "__main__":
    main()
