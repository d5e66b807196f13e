"""Calibrating the column decoding on held-out synthetic CT: emission temperature and rib-cue table.

`inference.label.decode` combines the localizer's level votes with the rib cue (`inference.ribs`).
Both need numbers that no real data here can give (18 labelled real vertebrae): how over-confident
the votes are, and how often each level shows how much rib (the segmenter's rib channel, binned at
`inference.label.RIB_BINS_ML`) where a rib meets it. This script measures them on synthetic CT the
models never trained on:

1. ``collect``: generate cases (stream ``CALIBRATION_SEED``, not the training pool's), dim their
   ribs as the segmenter's training does (`inference.train.train_segmenter.RIB_GAIN`: the engine's
   ribs are far brighter than real ones), take each whole and as a random 60–160 mm slab along z
   (real scans are often that short), run the localizer, segment every candidate, measure the rib
   cue, and match candidates to the true centers;
2. ``fit``: two-fold cross-fitting (`fit`): count the rib-cue table (add-one smoothing) on one half
   of the cases, score the decoding on the other, both ways round, and pick the temperature, and
   whether to use the rib cue at all, that name the most vertebrae out of sample;
3. reliability (`reliability`): with that choice, the posterior temperature
   (`inference.label.POSTERIOR_TEMPERATURE`) that gives the true levels of vertebrae in anchored columns
   the highest likelihood out of sample, and then how often a vertebra shown with a label probability of p
   (after the cap on columns without a landmark, `inference.label.shown_confidence`) is named right, and
   how often one named wrong was one level off the way its shift probabilities said.

Run ``python -m inference.train.calibrate_labeling --n 100 --records /tmp/calib.jsonl``; it logs the
constants for `inference.label` and writes docs/labeling_calibration.md (and .json).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..label import (
    LEVELS,
    RIB_BINS_ML,
    RIB_GROUP_OF,
    RIB_GROUPS,
    UNANCHORED_CAP,
    decode,
    rib_bin,
    rib_likelihoods,
    shift_of,
    shown_confidence,
)
from ..measure import vertebra_centers
from ..synth.generator import generate
from ..synth.writer import case_seed
from ..volume import Volume
from .pool import POOL_CONFIG
from .train_segmenter import RIB_GAIN, dim_ribs

LOG = logging.getLogger("spinenav.train.calibrate")
ROOT = Path(__file__).resolve().parents[2]
CALIBRATION_SEED = 77
"""Seed stream of the calibration cases (the localizer's pool is stream 1)."""
MATCH_MM = 20.0
TEMPERATURES = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
POSTERIOR_TEMPERATURES = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0)
RELIABILITY_BINS = (0.0, 0.5, 0.7, 0.9, 0.97, 1.0)
"""Edges of the shown-probability bins of the reliability table (the first holds the capped labels)."""


def _slab(vol: Volume, k0: int, k1: int) -> Volume:
    o = vol.index_to_lps(np.array([[0.0, 0.0, float(k0)]]))[0]
    return Volume(np.ascontiguousarray(vol.array[k0:k1]), vol.spacing, tuple(o), vol.direction.copy())


def _records(pipeline, ct: Volume, labels: Volume, case: int, view: str) -> list[dict]:
    out = pipeline._run_localizer(ct, None)
    cands = pipeline.candidates(out)
    if not cands:
        return []
    _, ribs = pipeline.segment_candidates(ct, cands)
    truth = vertebra_centers(labels)
    rows = []
    for n, c in enumerate(cands):
        d = {vid: float(np.linalg.norm(c.center_lps - t)) for vid, t in truth.items()}
        vid = min(d, key=d.get) if d else 0
        rows.append({"case": case, "view": view, "order": n, "true_id": int(vid) if d and d[vid] <= MATCH_MM else 0,
                     "score": round(float(c.score), 4), "rib_ml": None if ribs[n] is None else round(ribs[n], 3),
                     "center": [round(float(x), 1) for x in c.center_lps],
                     "probs": [round(float(p), 5) for p in c.level_probs]})
    return rows


def calibration_case(i: int) -> tuple[Volume, Volume, Volume, tuple[int, int] | None]:
    """Calibration case ``i``: its CT with the ribs dimmed as in the segmenter's training (what the
    models read), its labels, the CT before dimming, and the slices (k0, k1) of its random 60–160 mm
    slab (None when the scan is not taller than that)."""
    case = generate(case_seed(CALIBRATION_SEED, i), POOL_CONFIG)
    rng = np.random.default_rng([CALIBRATION_SEED, i])
    ct = case.ct
    if case.ribs is not None:
        hu = case.ct.array.astype(np.float32)
        dim_ribs(hu, case.ribs.array, case.labels.array, rng.uniform(*RIB_GAIN))
        ct = case.ct.with_array(np.rint(hu).astype(case.ct.array.dtype))
    nk = ct.array.shape[0]
    length = int(rng.uniform(60.0, 160.0) / ct.spacing[2])
    slab = None
    if nk > length + 2:
        k0 = int(rng.integers(0, nk - length))
        slab = (k0, k0 + length)
    return ct, case.labels, case.ct, slab


def collect(n: int, records: Path, weights: Path | None = None, device: str = "cpu", precision: str = "fp32",
            workers: int = 1) -> None:
    """Append the candidates of calibration cases 0 … n-1 to ``records`` (JSON lines; resumes), with
    the models under ``weights`` (default: the shipped ones) on ``device``. The cases are always made on
    the CPU (the same cases on every machine), by ``workers`` processes while the models run."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from ..pipeline import Pipeline

    done = set()
    if records.exists():
        done = {json.loads(line)["case"] for line in records.read_text().splitlines() if line.strip()}
    todo = [i for i in range(n) if i not in done]
    pipeline = Pipeline(device=device, weights_root=weights, precision=precision)
    # spawned, not forked: a fork of a process whose torch thread pool has started can hang
    pool = (ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            if workers > 1 and len(todo) > 1 else None)
    try:
        made = pool.map(calibration_case, todo) if pool is not None else map(calibration_case, todo)
        for i, (ct, labels, _, slab) in zip(todo, made, strict=True):
            rows = _records(pipeline, ct, labels, i, "whole")
            if slab is not None:
                rows += _records(pipeline, _slab(ct, *slab), _slab(labels, *slab), i, "slab")
            with records.open("a") as f:
                for r in rows:
                    f.write(json.dumps(r) + "\n")
            LOG.info("case %d: %d candidates", i, len(rows))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _columns(rows: list[dict]) -> list[list[dict]]:
    by: dict[tuple, list[dict]] = {}
    for r in rows:
        by.setdefault((r["case"], r["view"]), []).append(r)
    return [sorted(v, key=lambda r: r["order"]) for v in by.values()]


def rib_table(rows: list[dict]) -> dict[str, tuple[float, float, float]]:
    """P(bin | group) with add-one smoothing, from candidates matched to a true vertebra."""
    counts = {g: np.ones(len(RIB_BINS_ML) + 1) for g, _ in RIB_GROUPS}
    for r in rows:
        b = rib_bin(r["rib_ml"])
        if r["true_id"] and b is not None and r["true_id"] in RIB_GROUP_OF:
            counts[RIB_GROUP_OF[r["true_id"]]][b] += 1
    return {g: tuple(round(float(x), 4) for x in c / c.sum()) for g, c in counts.items()}


def outcomes(columns: list[list[dict]], temperature: float, table: dict | None,
             posterior_temperature: float = 1.0) -> list[dict]:
    """Decode each column as the pipeline does; per candidate matched to a true vertebra: its view, the
    label probability shown (`shown_confidence`), whether its column is anchored, its shift
    probabilities, the probability given to its true level (``p_true``) and how its label relates to
    the truth (`inference.label.shift_of`)."""
    out = []
    for col in columns:
        ribs = [r["rib_ml"] for r in col]
        dec = decode(np.array([r["probs"] for r in col]), scores=np.array([min(1.0, r["score"]) for r in col]),
                     cues=None if table is None else rib_likelihoods(ribs, table), temperature=temperature,
                     posterior_temperature=posterior_temperature)
        shown, anchored = shown_confidence(dec.ids, dec.confidence, ribs)
        for n, r in enumerate(col):
            if r["true_id"]:
                out.append({"view": r["view"], "shown": float(shown[n]), "anchored": anchored,
                            "p_cranial": float(dec.p_shift_cranial[n]), "p_caudal": float(dec.p_shift_caudal[n]),
                            "p_true": float(dec.posterior[n, LEVELS.index(r["true_id"])]),
                            "outcome": shift_of(int(dec.ids[n]), int(r["true_id"]))})
    return out


def score_columns(columns: list[list[dict]], temperature: float, table: dict | None) -> dict[str, list[int]]:
    """Per view ("whole", "slab"): [vertebrae named right, vertebrae matched] after decoding each column."""
    out: dict[str, list[int]] = {}
    for o in outcomes(columns, temperature, table):
        acc = out.setdefault(o["view"], [0, 0])
        acc[0] += int(o["outcome"] == "right")
        acc[1] += 1
    return out


def reliability(items: list[dict]) -> dict:
    """Shown label probability against the share named right, per `RELIABILITY_BINS` bin and for anchored /
    unanchored columns; the expected calibration error (ECE: |mean shown − share right| weighted by bin
    size); and for the vertebrae named wrong, how often the truth was one level off and how much
    probability the shift estimates had put there."""
    shown = np.array([o["shown"] for o in items])
    right = np.array([o["outcome"] == "right" for o in items])
    bins = []
    for lo, hi in zip(RELIABILITY_BINS[:-1], RELIABILITY_BINS[1:], strict=True):
        sel = (shown > lo) & (shown <= hi) if lo > 0 else shown <= hi
        if sel.any():
            bins.append({"range": [lo, hi], "vertebrae": int(sel.sum()),
                         "mean_shown": round(float(shown[sel].mean()), 3),
                         "named_right": round(float(right[sel].mean()), 3)})
    ece = sum(b["vertebrae"] * abs(b["mean_shown"] - b["named_right"]) for b in bins) / max(len(items), 1)
    groups = {}
    for name, keep in (("anchored", True), ("unanchored", False)):
        sel = np.array([o["anchored"] == keep for o in items], bool)
        if sel.any():
            groups[name] = {"vertebrae": int(sel.sum()), "mean_shown": round(float(shown[sel].mean()), 3),
                            "named_right": round(float(right[sel].mean()), 3)}
    wrong = [o for o in items if o["outcome"] != "right"]
    kinds = {k: sum(o["outcome"] == k for o in wrong) for k in ("cranial", "caudal", "off", "dropped")}
    one_off = [o for o in wrong if o["outcome"] in ("cranial", "caudal")]
    # probability the shift estimates gave the true neighbour, and the other neighbour, when wrong by one
    p_true = [o["p_cranial"] if o["outcome"] == "cranial" else o["p_caudal"] for o in one_off]
    return {"vertebrae": len(items), "bins": bins, "ece": round(float(ece), 3), "by_anchoring": groups,
            "wrong": len(wrong), "wrong_by_kind": kinds,
            "mean_p_true_shift_when_one_off": round(float(np.mean(p_true)), 3) if p_true else None}


def decoding_key(temperature: float, use_rib_cue: bool) -> str:
    """How a decoding setting is named in the report's ``out_of_sample`` (e.g. "2.0/ribs")."""
    return f"{temperature}/{'ribs' if use_rib_cue else 'no ribs'}"


def fit(records: Path) -> dict:
    """Two-fold cross-fitting: the rib table is counted on one half of the cases and the decoding scored
    on the other, both ways round; the temperature and the use of the rib cue are chosen on the sum of
    those out-of-sample scores. The shipped table is then counted on all cases."""
    rows = [json.loads(line) for line in records.read_text().splitlines() if line.strip()]
    cases = sorted({r["case"] for r in rows})
    half = set(cases[: len(cases) // 2])
    folds = [([r for r in rows if r["case"] in half], [r for r in rows if r["case"] not in half]),
             ([r for r in rows if r["case"] not in half], [r for r in rows if r["case"] in half])]
    results: dict[tuple[float, bool], list[int]] = {}
    by_view: dict[tuple[float, bool, str], list[int]] = {}
    for fit_rows, test_rows in folds:
        table = rib_table(fit_rows)
        cols = _columns(test_rows)
        for t in TEMPERATURES:
            for use in (False, True):
                scores = score_columns(cols, t, table if use else None)
                for view in ("whole", "slab"):
                    a, b = scores.get(view, (0, 0))
                    for acc in (results.setdefault((t, use), [0, 0]), by_view.setdefault((t, use, view), [0, 0])):
                        acc[0] += a
                        acc[1] += b
    best_t, use_ribs = max(results, key=lambda k: (results[k][0], -k[0]))
    def held_out(tau: float) -> list[dict]:
        return [o for fit_rows, test_rows in folds
                for o in outcomes(_columns(test_rows), best_t, rib_table(fit_rows) if use_ribs else None, tau)]

    nll = {tau: -float(np.mean([np.log(max(o["p_true"], 1e-6)) for o in held_out(tau) if o["anchored"]] or [0.0]))
           for tau in POSTERIOR_TEMPERATURES}
    best_tau = min(nll, key=nll.get)
    report = {"cases": len(cases), "candidates": len(rows), "table": rib_table(rows),
              "temperature": best_t, "use_rib_cue": use_ribs,
              "out_of_sample": {decoding_key(t, u): v for (t, u), v in results.items()},
              "by_view": {f"{view}: {decoding_key(t, u)}": v for (t, u, view), v in by_view.items()
                          if t in (1.0, best_t)},
              "posterior_temperature": best_tau,
              "anchored_nll": {str(k): round(v, 4) for k, v in nll.items()},
              "reliability": reliability(held_out(best_tau)),
              "reliability_untempered": reliability(held_out(1.0))}
    return report


def markdown(report: dict) -> str:
    lines = [
        "# Labeling calibration on held-out synthetic CT",
        "",
        "Generated by `python -m inference.train.calibrate_labeling` (do not edit by hand). Synthetic cases of "
        f"seed stream {CALIBRATION_SEED} (the localizer trained on stream 1), each whole and as a random "
        "60–160 mm slab, ribs dimmed as in the segmenter's training; candidates from the shipped localizer, masks "
        "and rib cue from the shipped segmenter. Bin edges were set after looking at the rib volumes on the three "
        "real scans with ribs (docs/rib_cue.png); the likelihoods come from synthetic CT only.",
        "",
        f"{report['cases']} cases, {report['candidates']} candidates.",
        "",
        "## Rib cue: P(bin | level), volume (ml) the segmenter calls rib beside the vertebra",
        "",
        f"| levels | < {RIB_BINS_ML[0]:g} ml | {RIB_BINS_ML[0]:g}–{RIB_BINS_ML[1]:g} ml | ≥ {RIB_BINS_ML[1]:g} ml |",
        "|---|---|---|---|",
    ]
    lines += [f"| {g} | {p[0]} | {p[1]} | {p[2]} |" for g, p in report["table"].items()]
    lines += ["", f"Chosen on the out-of-sample scores: emission temperature **{report['temperature']}**, rib cue "
              f"**{'used' if report['use_rib_cue'] else 'not used'}** (the table above is counted on all cases).", "",
              "## Vertebrae named right after decoding (out of sample: each half scored with the other half's table)",
              "", "| temperature / cue | right / matched | rate |", "|---|---|---|"]
    for part in ("out_of_sample", "by_view"):
        for k, (a, b) in report[part].items():
            lines.append(f"| {k} | {a} / {b} | {a / b if b else 0:.3f} |")
    tau = report["posterior_temperature"]
    lines += ["", "## Are the label probabilities right? (out of sample, temperature and cue as chosen)", "",
              "Each matched vertebra with the label probability the app and vertebrae.json show (after the cap "
              f"at {UNANCHORED_CAP} on columns without a landmark in view, `inference.label.shown_confidence`), "
              "against how often that label was right. The posterior temperature "
              "(`inference.label.POSTERIOR_TEMPERATURE`) changes the probabilities, never the labels; it is "
              "the one of " + ", ".join(f"{t:g}" for t in POSTERIOR_TEMPERATURES) + " that gives the true "
              "levels of the vertebrae in anchored columns the highest likelihood out of sample (mean negative "
              "log-likelihood " + ", ".join(f"{k}: {v}" for k, v in report["anchored_nll"].items())
              + f"): **{tau:g}**.",
              ""]
    for title, rel in ((f"posterior temperature {tau:g} (shipped)", report["reliability"]),
                       ("untempered (posterior temperature 1)", report["reliability_untempered"])):
        lines += [f"### {title}", "", "| shown probability | vertebrae | mean shown | named right |",
                  "|---|---|---|---|"]
        for b in rel["bins"]:
            lo, hi = b["range"]
            lines.append(f"| {'≤' if lo == 0 else f'{lo:g} –'} {hi:g} | {b['vertebrae']} | {b['mean_shown']} | "
                         f"{b['named_right']} |")
        lines += ["", f"Expected calibration error: **{rel['ece']}** (over {rel['vertebrae']} vertebrae).", ""]
        lines += [f"- {name} columns: {g['vertebrae']} vertebrae, mean shown {g['mean_shown']}, named right "
                  f"{g['named_right']}" for name, g in rel["by_anchoring"].items()]
        k = rel["wrong_by_kind"]
        lines += [f"- of the {rel['wrong']} named wrong: truth one level above the label {k['cranial']}, one below "
                  f"{k['caudal']}, further off {k['off']}, decoded as a false detection {k['dropped']}; when one "
                  f"level off, the shift probability toward the truth averaged "
                  f"{rel['mean_p_true_shift_when_one_off']}", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=80)
    parser.add_argument("--records", type=Path, required=True, help="JSON lines of candidates (appended, resumes)")
    parser.add_argument("--fit-only", action="store_true")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "labeling_calibration.md")
    parser.add_argument("--weights", type=Path, help="folder of model weights (default: the shipped ones)")
    parser.add_argument("--device", default="cpu", help="where the models run (cpu, cuda; default cpu)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16", "auto"),
                        help="of the network passes (default fp32, as the CPU records)")
    parser.add_argument("--workers", type=int, default=1, help="processes making the cases (CPU)")
    args = parser.parse_args()
    if args.weights is not None and not args.weights.is_dir():
        parser.error(f"{args.weights}: no such weights folder; give one holding localizer/ and segmenter/")
    if args.fit_only and not args.records.is_file():
        parser.error(f"{args.records}: no records to fit; run without --fit-only first to collect them")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not args.fit_only:
        try:
            collect(args.n, args.records, args.weights, args.device, args.precision, max(1, args.workers))
        except InputError as exc:  # a device or precision this machine lacks, damaged weights
            parser.error(str(exc))
    report = fit(args.records)
    args.docs.write_text(markdown(report))
    (args.docs.with_suffix(".json")).write_text(json.dumps(report, indent=1, default=list))
    LOG.info("EMISSION_TEMPERATURE = %s (rib cue %s), POSTERIOR_TEMPERATURE = %s", report["temperature"],
             "used" if report["use_rib_cue"] else "NOT used", report["posterior_temperature"])
    LOG.info("RIB_LIKELIHOOD = %s", json.dumps(report["table"], indent=4))


if __name__ == "__main__":
    main()
