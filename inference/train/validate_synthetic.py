"""Judge the segmenter and its lesion head on held-out synthetic cases (never trained on).

    python -m inference.train.validate_synthetic --pool POOL [--from 216] [--out docs/segmentation_synthetic.json]

Each held-out pool case (index ≥ ``--from``; the training run used ``--val-from`` with the same
value) is segmented from its true centers (`inference.segment.segment_vertebrae`, as in the
pipeline). Reported: Dice per vertebra against the synthetic masks, and for each lesion type the
average precision (AP) of the per-vertebra lesion score, a vertebra counting as positive for a type
when at least ``MIN_LESION_VOXELS`` voxels of its mask carry that lesion. With ``--calibrate`` the
flag thresholds (raw score per type at a 5 % false-alarm rate) are first set on training cases and
then applied, and a type whose held-out AP stays below ``MIN_AP_TO_FLAG`` gets no threshold (it is
not flagged); they go into the manifest of the model that scores lesions: the lesion classifier
(`inference.models.lesion`) when one is shipped or given, else the segmenter. Lesion figures count only
the levels the pipeline scores (C1, C2 and the sacrum, `inference.models.lesion.NOT_SCORED`, are left
out: the engine draws no lesion there and the pipeline gives them no score); Dice counts every level.
Synthetic numbers say the model learned what the engine draws; they do not say how it does on real
lesions.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import registry
from ..config import SHIPPED
from ..models.lesion import NOT_SCORED, LesionNet
from ..models.segmenter import LESION_TYPES, SegmenterNet
from ..models.weights import WEIGHTS_ROOT, load_state
from ..segment import LESION_FLAG, segment_vertebrae
from ..volume import Volume
from .pool import POOL_CONFIG

LOG = logging.getLogger("spinenav.validate_synthetic")
MIN_LESION_VOXELS = 5
"""At 2 mm: 40 mm³, a lesion of ~4 mm across."""
LARGE_LESION_VOXELS = 125
"""At 2 mm: 1 ml, a lesion of ~12 mm across (a metastasis a reader would not want missed)."""


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the precision-recall curve (step interpolation, as scikit-learn's AP)."""
    positive = np.asarray(positive, bool)
    if not positive.any():
        return None
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = positive[order]
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


FALSE_ALARM_TARGET = 0.05
MIN_AP_TO_FLAG = 0.1
"""A lesion type whose held-out AP stays below this (a few times its ~3 % prevalence) is not flagged at all."""


def scored(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of levels the pipeline gives a lesion score (all but `NOT_SCORED`)."""
    return [r for r in rows if registry.name_of(r["id"]) not in NOT_SCORED]


def calibrate(pool: Path, first: int, stop: int, model: SegmenterNet, device: torch.device,
              lesion_model: LesionNet | None = None) -> dict[str, float]:
    """Per lesion type, the raw score that flags at most `FALSE_ALARM_TARGET` of lesion-free vertebrae.

    Measured on training cases ``first`` … ``stop - 1`` (never on the held-out ones judged by `run`).
    """
    rows = scored(run(pool, first, model, device, stop=stop, lesion_model=lesion_model)["rows"])
    out = {}
    for name in LESION_TYPES:
        neg = np.array([r["scores"].get(name, 0.0) for r in rows if r["lesion_voxels"][name] < MIN_LESION_VOXELS])
        out[name] = round(max(0.5, float(np.quantile(neg, 1 - FALSE_ALARM_TARGET))) if len(neg) else 0.5, 4)
    return out


def run(pool: Path, start: int, model: SegmenterNet, device: torch.device, stop: int | None = None,
        thresholds: dict[str, float] | None = None, lesion_model: LesionNet | None = None) -> dict[str, Any]:
    files = sorted(p for p in pool.glob("case_*.npz") if int(p.stem[5:]) >= start
                   and (stop is None or int(p.stem[5:]) < stop))
    dices, rows = [], []
    for path in files:
        with np.load(path) as z:
            case = {k: z[k] for k in z.files}
        spacing = float(case["spacing"][0])
        origin = tuple(float(o) for o in case["origin"])
        ct = Volume(case["hu"].astype(np.int16), (spacing,) * 3, origin)
        labels = case["labels"]
        items = [(int(vid), np.asarray(origin) + spacing * c) for vid, c in zip(case["ids"], case["centers"],
                                                                                 strict=True)]
        seg = segment_vertebrae(model, ct, items, device, lesion_thresholds=thresholds, lesion_model=lesion_model,
                                mirror=SHIPPED.segmenter_mirror)
        pred = seg.labels.array
        for vid, _ in items:
            t, p = labels == vid, pred == vid
            if not t.any():
                continue
            d = 2 * np.count_nonzero(t & p) / (np.count_nonzero(t) + np.count_nonzero(p))
            dices.append(d)
            truth_types = {name: int(np.count_nonzero(t & (case["lesions"] == code + 1)))
                           for code, name in enumerate(LESION_TYPES)}
            m = seg.masks.get(vid)
            rows.append({"case": path.stem, "id": vid, "dice": round(d, 4), "voxels": int(t.sum()),
                         "lesion_voxels": truth_types,
                         "scores": {k: round(v, 4) for k, v in (m.lesion_scores if m else {}).items()}})
        LOG.info("%s: %d vertebrae, mean Dice %.3f", path.stem, len(items), np.mean(dices[-len(items):]))
    ap, ap_large = lesion_ap(scored(rows))
    return {
        "cases": len(files),
        "first_case": start,
        "mirror": SHIPPED.segmenter_mirror,
        "vertebrae": len(rows),
        "mean_dice": round(float(np.mean(dices)), 4) if dices else None,
        "median_dice": round(float(np.median(dices)), 4) if dices else None,
        "lesion_ap": ap,
        "lesion_ap_large": ap_large,
        "lesion_vertebrae": len(scored(rows)),
        "lesion_levels_left_out": list(NOT_SCORED),
        "flag_at_0.5": flag_rates(scored(rows), LESION_TYPES),
        "rows": rows,
    }


def lesion_ap(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per lesion type: AP with every lesion of ≥ `MIN_LESION_VOXELS` positive, and AP of the large ones
    (≥ `LARGE_LESION_VOXELS`) against lesion-free vertebrae (smaller lesions left out of both sides)."""
    ap, ap_large = {}, {}
    for name in LESION_TYPES:
        scores = np.array([r["scores"].get(name, 0.0) for r in rows])
        voxels = np.array([r["lesion_voxels"][name] for r in rows])
        positive = voxels >= MIN_LESION_VOXELS
        ap[name] = {"ap": None if (a := average_precision(scores, positive)) is None else round(a, 3),
                    "positives": int(positive.sum()), "negatives": int((~positive).sum()),
                    "prevalence": round(float(positive.mean()), 3) if len(rows) else None}
        keep = (voxels >= LARGE_LESION_VOXELS) | ~positive
        large = voxels[keep] >= LARGE_LESION_VOXELS
        ap_large[name] = {"ap": None if (a := average_precision(scores[keep], large)) is None else round(a, 3),
                          "positives": int(large.sum())}
    return ap, ap_large


def flag_rates(rows: list[dict[str, Any]], types) -> dict[str, float]:
    """Share of vertebrae with a lesion (of ``types``) that are flagged, and of those without one."""
    if not types:
        return {"types": [], "sensitivity": None, "false_alarm_rate": None}
    pos = np.array([max(r["lesion_voxels"][t] for t in types) >= MIN_LESION_VOXELS for r in rows])
    flagged = np.array([max((r["scores"].get(t, 0.0) for t in types), default=0.0) >= 0.5 for r in rows])
    return {
        "types": list(types),
        "sensitivity": round(float((flagged & pos).sum() / max(pos.sum(), 1)), 3),
        "false_alarm_rate": round(float((flagged & ~pos).sum() / max((~pos).sum(), 1)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, required=True)
    parser.add_argument("--from", dest="start", type=int, default=216)
    parser.add_argument("--weights", type=Path, default=WEIGHTS_ROOT)
    parser.add_argument("--ckpt", type=Path, help="a segmenter training checkpoint instead of the shipped weights")
    parser.add_argument("--lesion-ckpt", type=Path,
                        help="a lesion-classifier training checkpoint instead of the shipped classifier")
    parser.add_argument("--no-lesion-model", action="store_true",
                        help="score lesions with the segmenter's own channels (as before the classifier)")
    parser.add_argument("--out", type=Path, default=Path("docs/segmentation_synthetic.json"))
    parser.add_argument("--calibrate", nargs=2, type=int, metavar=("FIRST", "STOP"),
                        help="set the lesion flag thresholds on training cases FIRST..STOP-1 first")
    parser.add_argument("--calibrate-pool", type=Path, help="pool of those training cases (default: --pool)")
    parser.add_argument("--update-manifest", action="store_true",
                        help="write these metrics into the shipped manifests, and the thresholds (types failing the "
                        "AP rule disabled) into the manifest of the model that scores lesions")
    args = parser.parse_args()
    if args.update_manifest and (args.ckpt or args.lesion_ckpt):
        parser.error("--update-manifest judges the shipped weights; leave out --ckpt and --lesion-ckpt")
    for ckpt, trainer in ((args.ckpt, "train_segmenter"), (args.lesion_ckpt, "train_lesion")):
        if ckpt and not ckpt.is_file():
            parser.error(f"{ckpt}: no such checkpoint; give the last.pt or best.pt of a "
                         f"python -m inference.train.{trainer} run")
    if args.calibrate_pool and not args.calibrate_pool.is_dir():
        parser.error(f"{args.calibrate_pool}: no such pool folder; make one with python -m inference.train.pool")
    if not any(p.stem[5:].isdigit() and int(p.stem[5:]) >= args.start for p in args.pool.glob("case_*.npz")):
        # judged on nothing, every lesion type would fail the AP rule (and --update-manifest switch them off)
        parser.error(f"{args.pool}: no pool case from index {args.start} on; make one with python -m "
                     "inference.train.pool or lower --from")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    manifest = None
    if args.ckpt:
        state = torch.load(args.ckpt, map_location="cpu", weights_only=False)
        model = SegmenterNet(**(state.get("arch") or {}))
        model.load_state_dict(state["model"])
    else:
        weights, manifest = load_state("segmenter", args.weights)
        model = SegmenterNet.from_architecture(manifest["architecture"])
        model.load_state_dict(weights)
    model.eval()
    lesion_model, lesion_manifest = None, None
    if args.lesion_ckpt:
        lesion_model = LesionNet()
        lesion_model.load_state_dict(torch.load(args.lesion_ckpt, map_location="cpu", weights_only=False)["model"])
    elif not args.no_lesion_model and (args.weights / "lesion" / "manifest.json").is_file():
        weights, lesion_manifest = load_state("lesion", args.weights)
        lesion_model = LesionNet.from_architecture(lesion_manifest["architecture"])
        lesion_model.load_state_dict(weights)
    scorer = manifest if lesion_model is None else lesion_manifest  # the shipped model that scores lesions
    thresholds = None
    if args.calibrate:
        thresholds = calibrate(args.calibrate_pool or args.pool, args.calibrate[0], args.calibrate[1], model,
                               torch.device("cpu"), lesion_model)
        LOG.info("lesion thresholds (raw, %d%% false alarms on cases %d-%d): %s", 100 * FALSE_ALARM_TARGET,
                 args.calibrate[0], args.calibrate[1] - 1, thresholds)
    elif scorer is not None:
        thresholds = scorer.get("lesion_thresholds")  # judge the flags the shipped model raises
    # a type already disabled (None) is measured on its raw score, so its AP is still reported
    measured = None if thresholds is None else {t: LESION_FLAG if v is None else v for t, v in thresholds.items()}
    res = run(args.pool, args.start, model, torch.device("cpu"), thresholds=measured, lesion_model=lesion_model)
    pool_meta = args.pool / "pool.json"
    res["pool_seed"] = json.loads(pool_meta.read_text()).get("seed") if pool_meta.is_file() else None
    res["lesion_scores_from"] = "segmenter" if lesion_model is None else "lesion"
    if thresholds is not None:  # set here, or the shipped ones: the same rule decides which types flag
        thresholds = dict(thresholds)
        for name, v in res["lesion_ap"].items():
            if v["ap"] is None or v["ap"] < MIN_AP_TO_FLAG:
                thresholds[name] = None
                LOG.info("%s: held-out AP %s < %s, not flagged", name, v["ap"], MIN_AP_TO_FLAG)
        flagged, rows = [t for t in LESION_TYPES if thresholds[t] is not None], scored(res["rows"])
        res["flag_at_0.5"] = flag_rates(rows, flagged)
        res["flag_by_type"] = {t: flag_rates(rows, [t]) for t in flagged}
    res["lesion_thresholds"] = thresholds
    res["calibration_cases"] = args.calibrate
    res["calibration_pool"] = None if not args.calibrate else describe_pool(args.calibrate_pool or args.pool)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    if args.update_manifest:
        # the weights are unchanged (same file, same sha256): only what was measured on them is updated
        metrics = {k: v for k, v in res.items() if k != "rows"} | {"rows": f"per-vertebra rows in {args.out}"}
        if lesion_model is None:
            _update_manifest(args.weights / "segmenter" / "manifest.json", manifest, metrics, thresholds)
        else:
            # the segmenter's own lesion figures (a --no-lesion-model run) stay; only its Dice is refreshed
            dice = {k: metrics[k] for k in ("cases", "first_case", "mirror", "vertebrae", "mean_dice", "median_dice")}
            _update_manifest(args.weights / "segmenter" / "manifest.json", manifest,
                             manifest.get("metrics_synthetic_heldout", {}) | dice, None)
            _update_manifest(args.weights / "lesion" / "manifest.json", lesion_manifest, metrics, thresholds)
    LOG.info("mean Dice %s over %d vertebrae; lesion AP %s; flag %s", res["mean_dice"], res["vertebrae"],
             {k: v["ap"] for k, v in res["lesion_ap"].items()}, res["flag_at_0.5"])


def describe_pool(pool: Path) -> str:
    """"seed S" of a pool, with the synthesis settings that differ from `POOL_CONFIG` (from its pool.json);
    the folder's path when it has no pool.json."""
    meta_path = pool / "pool.json"
    if not meta_path.is_file():
        return str(pool)
    meta = json.loads(meta_path.read_text())
    config = meta.get("config") or {}
    changed = [f"{k} {v}" for k, v in config.items() if k in ("p_lesions", "p_contrast")
               and v != getattr(POOL_CONFIG, k)]
    return f"seed {meta.get('seed')}" + (f" ({', '.join(changed)})" if changed else "")


def _update_manifest(path: Path, manifest: dict, metrics: dict, thresholds: dict | None) -> None:
    """Write ``metrics`` (and ``thresholds``, when given) into the manifest at ``path``, whole, then swapped in:
    a crash never leaves half a manifest."""
    manifest["metrics_synthetic_heldout"] = metrics
    if thresholds is not None:
        manifest["lesion_thresholds"] = thresholds
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(path)
    LOG.info("%s updated (lesion thresholds %s)", path, manifest.get("lesion_thresholds"))


if __name__ == "__main__":
    main()
