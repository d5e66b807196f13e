"""Synthetic columns against real ones: centroid spacing per level and sagittal curvature.

``python -m inference.synth.layout_report`` samples layouts from the generator (`sample_layout`,
default configuration) and compares them with the real columns the shape library was built from
(``assets/shapes/layouts.json``), writing ``docs/synthetic_layouts.md``. Real columns count once
per scan; the two sessions of one patient are two columns.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .config import SynthConfig
from .layout import column_spacings, real_columns, sample_layout
from .shapes import load_library

ROOT = Path(__file__).resolve().parents[2]
CURVES = {"thoracic kyphosis (T4–T5 to T11–T12)": (("T4", "T5"), ("T11", "T12")),
          "lumbar lordosis (L1–L2 to L4–L5)": (("L1", "L2"), ("L4", "L5")),
          "cervical lordosis (C3–C4 to C6–C7)": (("C3", "C4"), ("C6", "C7"))}
"""Sagittal angle between two segment vectors (centroid to centroid) of a column."""


def synthetic_columns(n: int, seed: int = 0, config: SynthConfig | None = None) -> list[dict[str, np.ndarray]]:
    """``n`` sampled layouts as level name → shape centroid (LPS mm)."""
    cfg = config or SynthConfig()
    lib = load_library()
    out = []
    for k in range(n):
        layout = sample_layout(np.random.default_rng([seed, k]), cfg, lib)
        out.append({lv.name: np.asarray(lv.center, float) for lv in layout.levels})
    return out


def spacings(columns: list[dict[str, np.ndarray]]) -> dict[str, list[float]]:
    """Centroid distance from each level to the next one present (registry neighbours only), mm."""
    out: dict[str, list[float]] = {}
    for col in columns:
        for (up, down), mm in column_spacings(col).items():
            out.setdefault(f"{up}–{down}", []).append(mm)
    return out


def curvatures(columns: list[dict[str, np.ndarray]]) -> dict[str, list[float]]:
    """`CURVES` in degrees (sagittal plane: anterior-posterior × head-feet), where a column has all four levels."""
    out: dict[str, list[float]] = {}
    for label, ((a, b), (c, d)) in CURVES.items():
        for col in columns:
            if all(k in col for k in (a, b, c, d)):
                u, v = (col[a] - col[b])[1:], (col[c] - col[d])[1:]
                cos = float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))
                out.setdefault(label, []).append(float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))))
    return out


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return f"{med:.1f} ({q1:.1f}–{q3:.1f}), n={len(values)}"


def report(n_synthetic: int = 300) -> str:
    real, synth = real_columns(), synthetic_columns(n_synthetic)
    rs, ss = spacings(real), spacings(synth)
    lines = ["# Synthetic columns against real ones", "",
             f"Written by `python -m inference.synth.layout_report`: {len(real)} real columns (the label maps of "
             f"the shape library, `assets/shapes/layouts.json`) against {n_synthetic} layouts sampled by the "
             "generator (default configuration). Median (interquartile range) and count.", "",
             "## Centroid spacing per level, mm", "", "| levels | real | synthetic | synthetic / real |",
             "|---|---|---|---|"]
    for key in [k for k in ss if k in rs] + [k for k in rs if k not in ss]:
        ratio = (f"{np.median(ss[key]) / np.median(rs[key]):.2f}" if key in ss and key in rs else "–")
        lines.append(f"| {key} | {_cell(rs.get(key, []))} | {_cell(ss.get(key, []))} | {ratio} |")
    rc, sc = curvatures(real), curvatures(synth)
    lines += ["", "## Sagittal curvature, degrees", "", "| curve | real | synthetic |", "|---|---|---|"]
    for label in CURVES:
        lines.append(f"| {label} | {_cell(rc.get(label, []))} | {_cell(sc.get(label, []))} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="synthetic layouts to sample")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "synthetic_layouts.md")
    args = parser.parse_args()
    args.out.write_text(report(args.n))


if __name__ == "__main__":
    main()
