"""Plain-text rendering of an evaluation report (the `spinenav evaluate` output without --json)."""

from __future__ import annotations

from typing import Any


def format_report(report: dict[str, Any]) -> str:
    """A readable table of an `evaluate_labels` / `evaluate_bundle` report.

    One row per vertebra in cranio-caudal order, then the overall and per-region means, the
    identification rate, level shifts, mislabels and the note on the reference.
    """
    lines = ["SpineNav evaluation (coordinates LPS, distances mm)"]
    inputs = report.get("inputs", {})
    for key in ("bundle", "prediction", "reference"):
        if inputs.get(key):
            extra = f" ({inputs['reference_convention']})" if key == "reference" and inputs.get(
                "reference_convention") else ""
            lines.append(f"{key + ':':<12}{inputs[key]}{extra}")
    if report.get("grid", {}).get("prediction_resampled"):
        lines.append("grid:       prediction resampled onto the reference grid (nearest neighbour)")
    lines.append("")

    header = (f"{'level':<6}{'ref':>4}{'pred':>5}{'Dice':>8}{'HD95':>9}{'MSD':>8}{'center':>9}  "
              f"{'identified':<11}")
    lines += [header, "-" * len(header)]
    for r in report["per_vertebra"]:
        status = ""
        if r["in_reference"] and not r["in_prediction"]:
            status = "missed"
        elif r["in_prediction"] and not r["in_reference"]:
            status = "false positive"
        ident = "-" if r["identified"] is None else ("yes" if r["identified"] else "no")
        lines.append(
            f"{r['name']:<6}{_mark(r['in_reference']):>4}{_mark(r['in_prediction']):>5}{_num(r['dice']):>8}"
            f"{_num(r['hd95_mm'], 2):>9}{_num(r['msd_mm'], 2):>8}{_num(r['center_error_mm'], 1):>9}  "
            f"{ident:<11}{status}".rstrip()
        )

    o = report["overall"]
    lines += [
        "",
        f"overall:    Dice {_num(o['mean_dice'])} (vertebrae in both: {_num(o['mean_dice_matched'])}), "
        f"HD95 {_mm(o['mean_hd95_mm'], 2)}, MSD {_mm(o['mean_msd_mm'], 2)}, "
        f"center error {_mm(o['mean_center_error_mm'], 1)}",
        f"identified {o['n_identified']}/{o['n_reference']} reference vertebrae (id rate "
        f"{_pct(o['id_rate'])}); {o['n_predicted']} predicted, {o['n_missed']} missed, "
        f"{o['n_false_positives']} false positive(s)",
    ]
    for region, s in report.get("per_region", {}).items():
        if s["n_reference"] or s["n_predicted"]:
            lines.append(
                f"  {region:<9} Dice {_num(s['mean_dice'])}, HD95 {_mm(s['mean_hd95_mm'], 2)}, "
                f"center {_mm(s['mean_center_error_mm'], 1)}, "
                + (f"id rate {_pct(s['id_rate'])} ({s['n_identified']}/{s['n_reference']})"
                   if s["n_reference"] else "not in the reference")
            )
    lines.append("")
    lines.append("off-by-one shifts: " + ("none" if not report["shifts"] else ""))
    lines += [_shift_line(s) for s in report["shifts"]]
    if report.get("mislabels"):
        lines.append("other mislabels:")
        lines += [_shift_line(s) for s in report["mislabels"]]
    if report.get("note"):
        lines += ["", f"note: {report['note']}"]
    return "\n".join(line.rstrip() for line in lines)


def _shift_line(s: dict[str, Any]) -> str:
    return f"  {s['text']}, {_num(s['distance_mm'], 1)} mm from the reference centroid"


def _mark(flag: bool) -> str:
    return "x" if flag else "-"


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _mm(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f} mm"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"
