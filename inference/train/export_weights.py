"""Turn a training checkpoint into shipped weights: ``assets/weights/<model>/`` + manifest.json.

    python -m inference.train.export_weights CKPT [--model localizer] [--metrics docs/localization.json]
    python -m inference.train.export_weights CKPT --model segmenter [--metrics docs/segmentation.json]
    python -m inference.train.export_weights CKPT --model lesion --synthetic docs/segmentation_synthetic.json

Writes the model's state dict alone (float32, no optimizer) and a manifest with its sha256, the
architecture, input spacing, label map, training recipe and (when given) the metrics on real CT.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import torch

from .. import registry
from ..models.localizer import (
    CLASSES,
    DESCRIPTOR_NAMES,
    HEATMAP_SIGMA_MM,
    INPUT_SPACING_MM,
    OUTPUT_SPACING_MM,
    freeze_descriptor,
)
from ..models.weights import WEIGHTS_ROOT, sha256_of
from . import train_segmenter as ts
from .pool import POOL_CONFIG
from .train_localizer import BACKGROUND_WEIGHT, HEAT_LOSS_WEIGHT, HEATMAP_WEIGHT, LEVEL_WEIGHT, PATCH

WIDTHS = (16, 32, 48, 64)
SEGMENTER_SCHEDULE = (
    "steps 0-865 the recipe above without low-density marrow; 865-3542 with it; from 3542 lesion fine-tuning "
    "(--lesion-weight 3 --lesion-pos-weight 30 --lesion-focus 0.5: half of the samples from vertebrae with a "
    "lesion), after the lesion head had learned nothing (held-out synthetic AP 0.03-0.06 at step 3542); that run "
    "(1.0-step4653) was then widened with the rib channel (--init, inference.models.segmenter.widen_head) and "
    "fine-tuned with the same lesion settings at lr 5e-4 on a regenerated pool (same seeds, now with rib maps) for "
    "3180 steps (1.1-ft3180). 1.2: fine-tuned from 1.1 with the same lesion settings at lr 3e-4 on two pools, the "
    "2 mm pool of seed 2 and a new one of seed 3 (200 cases, --fov-mode lumbar --fov-mode thoracolumbar) made after "
    "the synthetic engine's lower border for scans ending at the sacrum was moved so that the whole sacrum is often "
    f"in view; {round(100 * ts.P_SACRUM_BATCH)}% of its batches are sacrum crops in the taller SACRUM_PATCH "
    "(resumed once at step 154 with --threads 1 --seed 1) for 1454 steps, then continued from those weights at lr "
    "1e-4 (seed 2, fresh optimizer) to settle. The step count below is that last run's"
)


def _write_weights(ckpt: Path, out: Path, name: str, version: str | None = None) -> tuple[dict, dict]:
    """The checkpoint's model weights alone (float32) as ``out/<name>.pt``; the checkpoint and manifest header."""
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{name}.pt"
    tmp = weights.with_suffix(".tmp")
    model_state = state["model"]
    if state.get("constant_descriptor"):  # the descriptor ablation's control arm: bake the constant in
        model_state = freeze_descriptor(model_state)
    torch.save({k: v.float() for k, v in model_state.items()}, tmp)
    tmp.replace(weights)
    header = {
        "name": name,
        "version": version or f"1.0-step{state['step']}",
        "file": weights.name,
        "sha256": sha256_of(weights),
        "bytes": weights.stat().st_size,
        "date": dt.date.today().isoformat(),
    }
    return state, header


def _finish(out: Path, manifest: dict, state: dict, notes: str, metrics: dict | None, synthetic: dict | None,
            optimizer: str = "AdamW lr 2e-3, weight decay 1e-4, batch 2, gradient clip 5") -> Path:
    """Add the run's facts and metrics to the manifest and write it; the weights' path."""
    log = state.get("log") or []
    manifest["training"] |= {
        "optimizer": optimizer,
        "steps": state["step"],
        "final_running_loss": log[-1] if log else None,
        "hardware": notes,
    }
    manifest["metrics_real_ct"] = metrics
    if synthetic is not None and isinstance(synthetic.get("rows"), list):  # per-vertebra rows stay in docs/
        synthetic = synthetic | {"rows": "per-vertebra rows in docs/segmentation_synthetic.json"}
    manifest["metrics_synthetic_heldout"] = synthetic
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out / manifest["file"]


LOCALIZER_SCHEDULE = (
    "AdamW, batch 2, seed 0, lr 2e-3: steps 0-525 cross-entropy + 10 x heatmap MSE only; 525-861 + 0.2 x level "
    "cross-entropy; 861-8154 heatmap weight 100 (shipped as 1.0-step8154). Fine-tuned from step 8154 with lr 5e-4: "
    "steps 8154-9908 --fov-p 0.5 (seed 5; crops narrowed to 40-160 mm fields of view, cutouts), 9908-11273 "
    "--fov-p 0.5 --clip-p 0.1 (seed 6; bone-window exports). The fine-tune was chosen after seeing the small "
    "real fields of view fail, and the checkpoint kept after comparing it with 1.0 on the same real cases: there "
    "is no untouched real test set. 1.1: fine-tuned further from step 11273 with lr 5e-4, --fov-p 0.4 --clip-p 0.1 "
    "--cut-p 0.25 (seed 7; from step 11525 seed 8 and 1 thread): fields of view cut through the column from behind "
    "(cardiac CT, CT angiogram); from step 12454 (seed 9) also on a pool of seed 5 (150 cases, --contrast-p 0.7: "
    "contrast-filled aorta, vena cava and heart, blood 150-550 HU), from step 13418 (seed 10) also on one of seed 6 "
    "(150 cases, --contrast-p 0.7, blood 150-700 HU). Cut and contrast were added after the localizer found no "
    "vertebra on the real aorta-stent CT angiogram, taking its heart and aorta (450-600 HU) for bone"
)
"""How the shipped localizer was trained, in order (recorded in its manifest)."""


def export(ckpt: Path, out: Path, metrics: dict | None, notes: str, pool: dict | None,
           synthetic: dict | None = None, version: str | None = None, schedule: str | None = None) -> Path:
    state, manifest = _write_weights(ckpt, out, "localizer", version)
    manifest |= {
        "architecture": {
            "class": "inference.models.localizer.LocalizerNet",
            "widths": list(WIDTHS),
            "use_descriptor": bool(state.get("use_descriptor", True)),
            "descriptor": list(DESCRIPTOR_NAMES),
            "descriptor_frozen": bool(state.get("constant_descriptor", False)),
            "input": f"1 channel, HU clipped to [-1000, 1500] / 1000, {INPUT_SPACING_MM} mm isotropic LPS-aligned",
            "output": f"{OUTPUT_SPACING_MM} mm: channel 0 center heatmap (Gaussian sigma {HEATMAP_SIGMA_MM} mm), "
            f"channels 1..{len(CLASSES)} level logits",
        },
        "classes": [
            {"index": k, "id": vid, "name": "background" if vid == 0 else registry.name_of(vid)}
            for k, vid in enumerate(CLASSES)
        ],
        "training": {
            "code": "inference/train/pool.py, inference/train/train_localizer.py",
            "data": "synthetic CT only (inference/synth, shapes from assets/shapes); no real CT was trained on",
            "pool": pool,
            "synth_config": "inference.train.pool.POOL_CONFIG",
            "synth_overrides": {
                "working_spacing_mm": POOL_CONFIG.working_spacing_mm,
                "inplane_spacing_mm": list(POOL_CONFIG.inplane_spacing_mm),
                "slice_spacing_mm": list(POOL_CONFIG.slice_spacing_mm),
            },
            "patch_kji_4mm": list(PATCH),
            "loss": f"soft-target cross-entropy (background weight {BACKGROUND_WEIGHT}) + {LEVEL_WEIGHT} x level "
            f"cross-entropy on vertebra voxels + {HEAT_LOSS_WEIGHT} x heatmap MSE weighted (1 + {HEATMAP_WEIGHT} x "
            "target)",
            "schedule": schedule or LOCALIZER_SCHEDULE,
        },
    }
    return _finish(out, manifest, state, notes, metrics, synthetic)


def export_segmenter(ckpt: Path, out: Path, metrics: dict | None, notes: str, pool: dict | None,
                     synthetic: dict | None = None, version: str | None = None, schedule: str | None = None) -> Path:
    from ..models import segmenter as sm

    state, manifest = _write_weights(ckpt, out, "segmenter", version)
    arch = state.get("arch") or {}  # older checkpoints: the plain U-Net with center channels
    manifest |= {
        "architecture": {
            "class": "inference.models.segmenter.SegmenterNet",
            "widths": list(sm.WIDTHS),
            "attention": bool(arch.get("attention", False)),
            "use_centers": bool(arch.get("use_centers", True)),
            "input": f"3 channels on a {sm.INPUT_SPACING_MM} mm LPS-aligned crop {list(sm.PATCH)} (k, j, i; "
            f"{list(sm.SACRUM_PATCH)} for the sacrum) around "
            f"one vertebra center: HU clipped to [-1000, 1500] / 1000, Gaussian (sigma {sm.CENTER_SIGMA_MM} mm) "
            "at this center, max of Gaussians at the other centers",
            "output": "channel 0 mask logit of this vertebra; channels 1-3 lesion logits " + ", ".join(sm.LESION_TYPES)
            + f"; channel {sm.RIB_CHANNEL} rib logit (any rib outside the vertebrae; the labeling's rib cue)",
        },
        "training": {
            "code": "inference/train/pool.py (--spacing 2.0), inference/train/train_segmenter.py",
            "data": "synthetic CT only (inference/synth, shapes from assets/shapes); no real CT was trained on",
            "pool": pool,
            "synth_config": "inference.train.pool.POOL_CONFIG",
            "loss": f"BCE weighted (1 + {ts.BOUNDARY_WEIGHT}) within {ts.BOUNDARY_MM} mm of the surface + soft Dice + "
            f"{ts.VOLUME_WEIGHT} x squared normalized volume error + {ts.LESION_WEIGHT} x lesion BCE (pos weight "
            f"{ts.LESION_POS_WEIGHT}) + {ts.RIB_WEIGHT} x rib BCE (pos weight {ts.RIB_POS_WEIGHT})",
            "augmentation": f"center jitter {ts.CENTER_JITTER_MM} mm (x2.5 for 15% of samples), neighbour centers "
            f"dropped with p {ts.P_DROP_NEIGHBOUR}, HU gain 0.92-1.08, offset +-30, noise 0-25 HU, left-right mirror; "
            f"low-density marrow (p {ts.P_LOW_DENSITY}) from step 865; in the rib fine-tune from its step 582, ribs "
            f"dimmed toward soft tissue (p {ts.P_DIM_RIBS}, gain {ts.RIB_GAIN[0]}-{ts.RIB_GAIN[1]}); in the sacrum "
            f"fine-tune (1.2) batches of sacrum crops (p {ts.P_SACRUM_BATCH})",
            "schedule": schedule or SEGMENTER_SCHEDULE,
        },
        # raw lesion score per type that flags (5 % false alarms on synthetic training cases); see inference.segment
        "lesion_thresholds": (synthetic or {}).get("lesion_thresholds"),
    }
    return _finish(out, manifest, state, notes, metrics, synthetic)


def export_lesion(ckpt: Path, out: Path, metrics: dict | None, notes: str, pool: dict | None,
                  synthetic: dict | None = None, version: str | None = None, schedule: str | None = None) -> Path:
    from ..models import lesion as lm
    from ..models import segmenter as sm
    from . import train_lesion as tl

    state, manifest = _write_weights(ckpt, out, "lesion", version)
    manifest |= {
        "architecture": {
            "class": "inference.models.lesion.LesionNet",
            "widths": list(lm.WIDTHS),
            "input": f"2 channels on the segmenter's {sm.INPUT_SPACING_MM} mm crop {list(sm.PATCH)} (k, j, i) around "
            "one vertebra center: HU clipped to [-1000, 1500] / 1000, the vertebra's mask (the segmenter's, > 0.5)",
            "output": "3 logits: " + ", ".join(sm.LESION_TYPES) + " present in the vertebra",
        },
        "training": {
            "code": "inference/train/pool.py (--spacing 2.0), inference/train/train_lesion.py",
            "data": "synthetic CT only (inference/synth, shapes from assets/shapes); no real CT was trained on",
            "pool": pool,
            "synth_config": "inference.train.pool.POOL_CONFIG",
            "targets": f"a type is present when >= {tl.MIN_LESION_VOXELS} voxels of the true mask carry it",
            "loss": "binary cross-entropy per type; half of each batch from vertebrae with a lesion (type drawn "
            "at random)",
            "augmentation": f"crop shift N(0, {tl.JITTER_VOXELS} voxels) within +-{tl.MARGIN}, mask dilated or eroded "
            f"by one voxel (p {tl.P_MASK_JITTER}), low-density marrow (p {ts.P_LOW_DENSITY}), HU gain 0.92-1.08, "
            "offset +-30, noise 0-25 HU, left-right mirror; true masks (the segmenter's at inference)",
            "schedule": schedule or "one run from scratch; the checkpoint with the best mean validation AP kept",
        },
        # raw probability per type that flags (5 % false alarms on synthetic training cases); see inference.segment
        "lesion_thresholds": (synthetic or {}).get("lesion_thresholds"),
    }
    return _finish(out, manifest, state, notes, metrics, synthetic,
                   optimizer="AdamW lr 1e-3, weight decay 1e-4, batch 16, gradient clip 5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("--model", choices=["localizer", "segmenter", "lesion"], default="localizer")
    parser.add_argument("--out", type=Path, help="default: assets/weights/<model>")
    parser.add_argument("--metrics", type=Path, help="JSON written by inference.train.validate_real")
    parser.add_argument("--pool", type=Path, nargs="+", help="pool folder(s) (their pool.json is recorded)")
    parser.add_argument("--notes", default="", help="where it was trained (CPU model, threads, wall time)")
    parser.add_argument("--synthetic", type=Path, help="JSON of the held-out synthetic validation")
    parser.add_argument("--version", help="version (default 1.0-step<checkpoint step>)")
    parser.add_argument("--schedule", help="training schedule text (default: the shipped model's)")
    args = parser.parse_args()
    metrics = json.loads(args.metrics.read_text()) if args.metrics else None
    pools = []
    for folder in args.pool or []:
        meta = json.loads((folder / "pool.json").read_text())
        meta["cases_present"] = len(list(folder.glob("case_*.npz")))
        meta.pop("config", None)
        pools.append(meta)
    pool = None if not pools else pools[0] if len(pools) == 1 else pools
    synthetic = json.loads(args.synthetic.read_text()) if args.synthetic else None
    out = args.out or WEIGHTS_ROOT / args.model
    if args.model == "localizer":
        export(args.ckpt, out, metrics, args.notes, pool, synthetic, args.version, args.schedule)
    elif args.model == "segmenter":
        export_segmenter(args.ckpt, out, metrics, args.notes, pool, synthetic, args.version, args.schedule)
    else:
        export_lesion(args.ckpt, out, metrics, args.notes, pool, synthetic, args.version, args.schedule)


if __name__ == "__main__":
    main()
