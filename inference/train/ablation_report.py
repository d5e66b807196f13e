"""The ablations' tables (docs/ablations.md) from the runs' evaluation files.

Each arm is a folder holding its training checkpoint (``last.pt``: step, architecture, loss log) and
what the evaluation scripts wrote for it:

- segmenter arms: ``synthetic.json`` (`inference.train.validate_synthetic --ckpt ARM/last.pt --out
  ARM/synthetic.json`) and ``real/localization.json`` (`inference.train.validate_real --weights ROOT
  --out ARM/real/localization --no-perturb`, ROOT holding the shipped localizer and the arm exported
  by `inference.train.export_weights`);
- localizer arms: ``real/localization.json`` (the same, with the perturbations) and
  ``calibration.json`` (`inference.train.calibrate_labeling --weights ROOT --docs
  ARM/calibration.md`);
- fine-tune arms (``--finetune``): ``synthetic.json`` and ``synthetic_contrast.json`` (validate_synthetic on
  two held-out pools, without and with contrast), ``real/localization.json``; ``last.pt`` where the arm was
  trained here (the shipped model's folder has none).

    python -m inference.train.ablation_report --segmenter base=A att=B nocen=C \\
        --localizer desc=D const=E --finetune shipped=F contrast=G --out docs/ablations.md

The commands that trained and judged each arm are in docs/ablations.md itself (``--notes FILE``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

SHIPPED_DECODING = "1.5/ribs"
"""The shipped decoding (emission temperature 1.5, rib cue on): the localizer arms are compared at it."""


def _arm(spec: str) -> tuple[str, Path]:
    name, _, folder = spec.partition("=")
    if not name or not folder:
        raise argparse.ArgumentTypeError(f"{spec}: expected NAME=FOLDER")
    return name, Path(folder)


def _step(folder: Path) -> int:
    """The training step the arm's checkpoint reached (its budget)."""
    return int(torch.load(folder / "last.pt", map_location="cpu", weights_only=False)["step"])


def _fmt(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def segmenter_table(arms: list[tuple[str, Path]]) -> list[str]:
    lines = ["| arm | steps | held-out synthetic Dice (vertebrae) | real CT, segmenter alone: Dice / HD95 (mm) | "
             "the same without slivers (< 10 ml) | real CT, whole pipeline: Dice / HD95 (mm) | "
             "lesion AP lytic / blastic / fracture (synthetic) |",
             "|---|---|---|---|---|---|---|"]
    per_case: dict[str, dict[str, float | None]] = {}
    for name, folder in arms:
        syn = json.loads((folder / "synthetic.json").read_text())
        real = json.loads((folder / "real" / "localization.json").read_text())
        o, s = real["oracle_summary"], real["summary"]["none"]
        ap = " / ".join(_fmt(v["ap"], 2) for v in syn["lesion_ap"].values())
        lines.append(f"| {name} | {_step(folder)} | {_fmt(syn['mean_dice'])} ({syn['vertebrae']}) | "
                     f"{_fmt(o['mean_dice'])} / {_fmt(o['mean_hd95_mm'], 2)} | "
                     f"{_fmt(o.get('mean_dice_without_slivers'))} ({o.get('n_without_slivers')}) | "
                     f"{_fmt(s['mean_dice'])} / "
                     f"{_fmt(s['mean_hd95_mm'], 2)} | {ap} |")
        for cname, entry in real["cases"].items():
            for row in entry["oracle_segmentation"]["per_vertebra"]:
                per_case.setdefault(f"{cname} {row['name']}", {})[name] = row["dice"]
    lines += ["", "Segmenter alone on real CT, Dice per vertebra:", "",
              "| vertebra | " + " | ".join(n for n, _ in arms) + " |", "|---|" + "---|" * len(arms)]
    for key, row in per_case.items():
        lines.append(f"| {key} | " + " | ".join(_fmt(row.get(n)) for n, _ in arms) + " |")
    return lines


def finetune_table(arms: list[tuple[str, Path]]) -> list[str]:
    """Segmenter fine-tunes against the shipped model: held-out synthetic CT without and with contrast
    (Dice, and the paired Dice difference to the first arm over the same vertebrae), lesion AP, real CT."""
    lines = ["| arm | steps | synthetic, no contrast: Dice (vertebrae) | Δ Dice to the first arm ± s.e. | "
             "synthetic, contrast: Dice (vertebrae) | Δ Dice to the first arm ± s.e. | "
             "lesion AP lytic / blastic / fracture, no contrast | real CT, segmenter alone: Dice / HD95 (mm) |",
             "|---|---|---|---|---|---|---|---|"]
    first: dict[str, np.ndarray] = {}
    for n, (name, folder) in enumerate(arms):
        cells = [name, str(_step(folder)) if (folder / "last.pt").is_file() else "shipped"]
        syns = {key: json.loads((folder / f"{key}.json").read_text()) for key in ("synthetic", "synthetic_contrast")}
        for key, syn in syns.items():
            dice = np.array([r["dice"] for r in syn["rows"]])
            cells.append(f"{_fmt(syn['mean_dice'], 4)} ({syn['vertebrae']})")
            if n == 0:
                first[key] = dice
                cells.append("–")
            else:
                d = dice - first[key]  # the same vertebrae in the same order (same pool, same cases)
                cells.append(f"{d.mean():+.4f} ± {d.std() / np.sqrt(len(d)):.4f}")
        ap = " / ".join(_fmt(v["ap"], 3) for v in syns["synthetic"]["lesion_ap"].values())
        o = json.loads((folder / "real" / "localization.json").read_text())["oracle_summary"]
        cells += [ap, f"{_fmt(o['mean_dice'])} / {_fmt(o['mean_hd95_mm'], 2)}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def localizer_table(arms: list[tuple[str, Path]]) -> list[str]:
    reals = {name: json.loads((folder / "real" / "localization.json").read_text()) for name, folder in arms}
    conditions = list(next(iter(reals.values()))["summary"])
    lines = ["Real CT, identified / reference vertebrae (mean center error, mm):", "",
             "| condition | " + " | ".join(n for n, _ in arms) + " |", "|---|" + "---|" * len(arms)]
    for cond in conditions:
        cells = []
        for name, _ in arms:
            s = reals[name]["summary"].get(cond)
            cells.append("–" if s is None else
                         f"{s['n_identified']} / {s['n_reference']} ({_fmt(s['mean_center_error_mm'], 1)})")
        lines.append(f"| {cond} | " + " | ".join(cells) + " |")
    lines += ["", "Held-out synthetic CT (`calibrate_labeling` cases, whole scans and 60–160 mm slabs), named right / "
              f"candidates matched to a true vertebra, decoding as shipped ({SHIPPED_DECODING}) and at each arm's "
              "own best decoding:", "", "| arm | steps | shipped decoding | own best (temperature / rib cue) |",
              "|---|---|---|---|"]
    for name, folder in arms:
        cal = json.loads((folder / "calibration.json").read_text())
        oos = cal["out_of_sample"]
        right, matched = oos[SHIPPED_DECODING]
        best = max(oos, key=lambda k: oos[k][0])
        lines.append(f"| {name} | {_step(folder)} | {right} / {matched} ({right / matched:.3f}) | "
                     f"{oos[best][0]} / {oos[best][1]} ({best}) |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segmenter", type=_arm, nargs="*", default=[])
    parser.add_argument("--localizer", type=_arm, nargs="*", default=[])
    parser.add_argument("--finetune", type=_arm, nargs="*", default=[])
    parser.add_argument("--notes", type=Path, help="markdown with the setup and commands, put first")
    parser.add_argument("--out", type=Path, default=Path("docs/ablations.md"))
    args = parser.parse_args()
    lines = ["# Ablations", "", "Tables generated by `python -m inference.train.ablation_report` from the runs' "
             "evaluation files (do not edit them by hand).", ""]
    if args.notes:
        lines += [args.notes.read_text().strip(), ""]
    if args.segmenter:
        lines += ["## Segmenter: attention gates and center channels", ""] + segmenter_table(args.segmenter) + [""]
    if args.localizer:
        lines += ["## Localizer: the scan descriptor", ""] + localizer_table(args.localizer) + [""]
    if args.finetune:
        lines += ["## Segmenter: contrast fine-tune", ""] + finetune_table(args.finetune) + [""]
    args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
