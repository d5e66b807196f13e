"""Plan screws on every real reference label map and grade them against it: docs/planning.md.

    python -m inference.planning.report [--out docs/planning.md]

Each real label map in tests/data (and ../shared/data/real when present) is planned on its own
thoracic and lumbar levels (`plan_labels`, as ``spinenav plan`` does) and every screw is graded
against that same mask. This measures the proposal geometry on real anatomy, not the segmentation;
and since a proposal is thinned and shortened until it fits the mask it was planned on, grades on
that mask are optimistic by construction. The second table is the honest one: screws planned on
SpineNav's own segmentation of the real CTs (`Pipeline.analyze`), graded against the reference
masks of the same levels.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from ..io import read_ct, read_label_map
from ..measure import CUT_AREA_MM2
from .bundle import CUT_MARGIN_MM, plan_labels, plan_labels_with_models, summary
from .screws import MIN_BONE_DEPTH_MM

LOG = logging.getLogger("spinenav.planning.report")
ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data" / "real"


def label_maps() -> list[tuple[str, Path, Path | None]]:
    """(name, reference label map, its CT or None) of every real label map there is."""
    d = ROOT / "tests" / "data"
    maps: list[tuple[str, Path, Path | None]] = [
        ("ts_abdomen_3mm (TotalSegmentator, 3 mm)", ROOT / "assets/sample/abdomen_vertebrae_totalseg.nii.gz",
         ROOT / "assets/sample/abdomen_ct_3mm.nii.gz"),
        ("ts_dicom_thoracolumbar (TotalSegmentator)", d / "ts_dicom_thoracolumbar/example_seg_dicom.nii.gz",
         d / "ts_dicom_thoracolumbar/dicom"),
        ("tptbox_lumbar_cutout (VerSe-style)", d / "tptbox_ct_lumbar_cutout/sub-ct_seg-vert_label-22_msk.nii.gz",
         d / "tptbox_ct_lumbar_cutout/sub-ct_label-22_ct.nii.gz"),
    ]
    for sub in ("sub-gl003", "sub-gl017", "sub-verse004", "sub-verse010"):
        for base in (d / "verse_labels_only", SHARED / "verse_labels_only"):
            found = sorted((base / sub).glob("*seg-vert_msk.nii.gz")) if (base / sub).is_dir() else []
            if found:
                maps.append((f"VerSe {sub} (expert masks)", found[0], None))  # the labels come without CT
                break
    return [(name, p, ct if ct is not None and ct.exists() else None) for name, p, ct in maps if p.exists()]


CT_CASES = [
    ("ts_abdomen_3mm", ROOT / "assets/sample/abdomen_ct_3mm.nii.gz",
     ROOT / "assets/sample/abdomen_vertebrae_totalseg.nii.gz"),
    ("tptbox_lumbar_cutout", ROOT / "tests/data/tptbox_ct_lumbar_cutout/sub-ct_label-22_ct.nii.gz",
     ROOT / "tests/data/tptbox_ct_lumbar_cutout/sub-ct_seg-vert_label-22_msk.nii.gz"),
]


def run_on_own_segmentation() -> dict[str, Any]:
    """Plan on the pipeline's masks, grade against the reference mask of the same level."""
    from dataclasses import replace

    from .. import registry
    from ..io import onto_grid, read_ct
    from ..pipeline import Pipeline
    from .screws import VertebraModel, evaluate

    pipeline = Pipeline(device="cpu")
    cases, every = {}, []
    for name, ct_path, truth_path in CT_CASES:
        if not ct_path.exists():
            continue
        ct = read_ct(ct_path)
        truth = read_label_map(truth_path)
        truth = truth if truth.same_grid(ct) else onto_grid(truth, ct, path=str(truth_path))
        seg = pipeline.analyze(ct).segmentation
        screws = plan_labels(seg.labels)
        graded = []
        for s in screws:
            try:
                model = VertebraModel.build(truth, registry.id_of(s.level))
            except ValueError:
                continue  # a level the reference does not have (a naming error shows in docs/localization.md)
            graded.append(evaluate(model, replace(s, notes=[*s.notes, "graded on the reference mask"])))
        every += graded
        cases[name] = {"summary": summary(graded), "screws": [s.to_json() for s in graded],
                       "planned": len(screws)}
    return {"overall": summary(every), "n_screws": len(every), "cases": cases}


def run() -> dict[str, Any]:
    cases = {}
    every = []
    for name, path, ct_path in label_maps():
        labels = read_label_map(path)
        ct = read_ct(ct_path) if ct_path is not None else None
        result = plan_labels_with_models(labels, ct=ct)
        screws = result.screws
        every += screws
        cases[name] = {"path": os.path.relpath(path, ROOT), "summary": summary(screws),
                       "screws": [s.to_json() for s in screws], "not_planned": result.not_planned}
    return {"overall": summary(every), "n_screws": len(every), "cases": cases, "own": run_on_own_segmentation()}


def markdown(res: dict[str, Any]) -> str:
    o = res["overall"]
    lines = [
        "# Pedicle screw proposals on real label maps",
        "",
        "Generated by `python -m inference.planning.report` (do not edit by hand). Every thoracic and lumbar "
        "level of each real reference label map is planned automatically (`spinenav plan`) and each screw is "
        "graded against that same mask (Gertzbein–Robbins on the mask: A no breach (≤ 0.5 mm, the grading grid), "
        "B < 2 mm, C 2–4, D 4–6, E ≥ 6 mm). Grading on the mask alone: no cortical HU, no nerve roots or vessels. "
        "Proposals are starting points for the surgeon to check and edit, not a validated plan. A vertebra "
        f"that the scan's edge cuts across more than {CUT_AREA_MM2:g} mm² of bone, and a screw whose axis would "
        f"pass within {CUT_MARGIN_MM:g} mm of such a cut, are not planned: the bone around the screw is partly "
        "outside the image. Nor is a side whose pedicle axis finds less than "
        f"{MIN_BONE_DEPTH_MM:g} mm of bone (entry to the front cortex, less the tip margin) in the mask. They are "
        "listed as not planned, with levels the planner could not model. Where the "
        "map has its CT, *by HU* is a second breach measured against bone in the CT (≥ 200 HU within 3 mm of the "
        "mask, plus the mask's core): on the 3 mm sample, partial volume dims thin pedicle walls below that, so it "
        "reads stricter than the mask.",
        "",
        f"**All cases: {res['n_screws']} screws, {o['a_or_b']} grade A or B** — per grade {o['per_grade']}; "
        f"{o['entering_canal']} entering the canal; {o['colliding_pairs']} colliding pairs.",
        "",
        "| case | level | side | diameter × length (mm) | medial (°) | caudal (°) | breach (mm) | grade | "
        "by HU: breach (mm), grade | canal | collides | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, case in res["cases"].items():
        for s in case["screws"]:
            by_hu = "" if s["ct_breach_grade"] is None else f"{s['ct_breach_mm']}, {s['ct_breach_grade']}"
            lines.append(
                f"| {name} | {s['level']} | {s['side']} | {s['diameter_mm']:g} × {s['length_mm']:g} | "
                f"{s['medial_angle_deg']} | {s['caudal_angle_deg']} | {s['breach_mm']} | {s['breach_grade']} | "
                f"{by_hu} | "
                f"{'yes' if s['enters_canal'] else ''} | {'yes' if s['collides_with_other_screw'] else ''} | "
                f"{'; '.join(s['notes'])} |")
        for what, why in case.get("not_planned", {}).items():
            level, _, side = what.partition(" ")
            lines.append(f"| {name} | {level} | {side or 'both'} | | | | | | | | | {why} |")
    own = res["own"]
    lines += ["", "## Planned on SpineNav's segmentation, graded on the reference mask", "",
              f"**{own['n_screws']} screws, {own['overall']['a_or_b']} grade A or B** — per grade "
              f"{own['overall']['per_grade']}; {own['overall']['entering_canal']} entering the canal (of the "
              "reference). Breaches here add the segmentation's error to the proposal's.", "",
              "| case | level | side | diameter × length (mm) | breach (mm) | grade | canal |",
              "|---|---|---|---|---|---|---|"]
    for name, case in own["cases"].items():
        for s in case["screws"]:
            lines.append(f"| {name} | {s['level']} | {s['side']} | {s['diameter_mm']:g} × {s['length_mm']:g} | "
                         f"{s['breach_mm']} | {s['breach_grade']} | {'yes' if s['enters_canal'] else ''} |")
    lines += ["", "## Per case", "",
              "| case | screws | A or B | per grade | by HU: A or B | canal | colliding pairs | not planned |",
              "|---|---|---|---|---|---|---|---|"]
    for name, case in res["cases"].items():
        sm = case["summary"]
        lines.append(f"| {name} | {sum(sm['per_grade'].values())} | {sm['a_or_b']} | {sm['per_grade']} | "
                     f"{'' if sm['by_hu_a_or_b'] is None else sm['by_hu_a_or_b']} | {sm['entering_canal']} | "
                     f"{sm['colliding_pairs']} | {', '.join(case.get('not_planned', {})) or ''} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "planning.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    res = run()
    args.out.write_text(markdown(res))
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    LOG.info("%d screws: %s", res["n_screws"], res["overall"])


if __name__ == "__main__":
    main()
