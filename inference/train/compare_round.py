"""Compare a localizer training round (`recipe_localizer_round.sh`) with the shipped model.

    python -m inference.train.compare_round OUT

Reads OUT/labeling_calibration.json (held-out synthetic cases, the new weights) against
docs/labeling_calibration.json (the shipped weights, the same cases when both used 100), and
OUT/real/localization.json against docs/localization.json on the real cases both hold. Prints a
Markdown table; a round is worth shipping only when it is better on the synthetic cases: the real
ones are too few to choose by (docs/limitations.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .calibrate_labeling import decoding_key
from .validate_real import summarize

ROOT = Path(__file__).resolve().parents[2]


def named_right(report: dict) -> tuple[int, int]:
    """Vertebrae named right / matched, out of sample, with the temperature and cue the report chose."""
    a, b = report["out_of_sample"][decoding_key(report["temperature"], report["use_rib_cue"])]
    return int(a), int(b)


def real_totals(results: dict, cases: set[str]) -> dict[str, Any]:
    """`validate_real.summarize` of the unperturbed runs of ``cases``, with their false positives."""
    runs = [results["cases"][c]["perturbations"]["none"] for c in sorted(cases)]
    return summarize(runs) | {"false_positives": sum(len(r["false_positives"]) for r in runs)}


def compare(out: Path, shipped_docs: Path = ROOT / "docs") -> str:
    new_cal = json.loads((out / "labeling_calibration.json").read_text())
    old_cal = json.loads((shipped_docs / "labeling_calibration.json").read_text())
    new_real = json.loads((out / "real" / "localization.json").read_text())
    old_real = json.loads((shipped_docs / "localization.json").read_text())
    cases = set(new_real["cases"]) & set(old_real["cases"])
    (na, nb), (oa, ob) = named_right(new_cal), named_right(old_cal)
    new_t, old_t = real_totals(new_real, cases), real_totals(old_real, cases)
    lines = [
        f"# Localizer round {out}", "",
        "| | shipped | this round |", "|---|---|---|",
        f"| synthetic: named right (out of sample) | {oa} / {ob} ({oa / ob:.3f}) | {na} / {nb} ({na / nb:.3f}) |",
        f"| synthetic: cases | {old_cal['cases']} | {new_cal['cases']} |",
        f"| synthetic: emission temperature, rib cue | {old_cal['temperature']}, {old_cal['use_rib_cue']} | "
        f"{new_cal['temperature']}, {new_cal['use_rib_cue']} |",
        f"| real ({len(cases)} cases): identified | {old_t['n_identified']} / {old_t['n_reference']} | "
        f"{new_t['n_identified']} / {new_t['n_reference']} |",
        f"| real: mean center error (mm) | {old_t['mean_center_error_mm']} | {new_t['mean_center_error_mm']} |",
        f"| real: false positives | {old_t['false_positives']} | {new_t['false_positives']} |", "",
    ]
    if new_cal["cases"] != old_cal["cases"]:
        lines.append("The synthetic figures are over different numbers of cases: not comparable.")
    for c in sorted(cases):
        o, n = old_real["cases"][c]["perturbations"]["none"], new_real["cases"][c]["perturbations"]["none"]
        lines.append(f"- {c}: shipped {', '.join(o['predicted']) or 'nothing'} ({o['n_identified']}/{o['n_reference']})"
                     f"; round {', '.join(n['predicted']) or 'nothing'} ({n['n_identified']}/{n['n_reference']})")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the round's folder (recipe_localizer_round.sh OUT)")
    args = parser.parse_args()
    for need in ("labeling_calibration.json", "real/localization.json"):
        if not (args.out / need).is_file():
            parser.error(f"{args.out / need}: missing; run inference/train/recipe_localizer_round.sh {args.out} first")
    sys.stdout.write(compare(args.out))


if __name__ == "__main__":
    main()
