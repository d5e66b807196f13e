"""Rib cue measured in several zones beside each vertebra, on the labeling calibration cases and on the
real cases (docs/experiments/README.md, "Rib-cue zones"). Applies to the shipped code as is.

    python docs/experiments/rib_zones_collect.py synthetic 100 /tmp/zones.jsonl   # ~10 min on 2 cores
    python docs/experiments/rib_zones_collect.py fit /tmp/zones.jsonl
    python docs/experiments/rib_zones_collect.py real

``synthetic`` writes `inference.train.calibrate_labeling` records with a ``rib_zones`` entry per candidate;
``fit`` runs that script's two-fold fit with each zone's cue in place of the shipped one (bin edges kept,
scaled by the zone's volume, or halved); ``real`` prints each zone's cue per candidate of the real cases.
"""

import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import inference.label as L  # noqa: E402
import inference.ribs as R  # noqa: E402
import inference.segment as S  # noqa: E402
import inference.train.calibrate_labeling as C  # noqa: E402

ZONES = {  # lateral |x| (mm), posterior y (mm), half height (mm)
    "default": ((25.0, 64.0), (-10.0, 45.0), 8.0),
    "joint": ((15.0, 40.0), (-10.0, 30.0), 8.0),
    "joint5": ((15.0, 40.0), (-10.0, 30.0), 5.0),
    "mid": ((20.0, 50.0), (-10.0, 35.0), 6.0),
    "outer": ((40.0, 64.0), (-10.0, 45.0), 8.0),
}
_last: list[dict] = []
_by_tag: dict[int, dict] = {}
_rib_zone_ml, _VertebraMask = R.rib_zone_ml, S.VertebraMask


def _all_zones(rib_prob, center_kji, spacing, in_view=None, own=None):
    out = {}
    saved = (R.ZONE_LATERAL_MM, R.ZONE_POSTERIOR_MM, R.ZONE_AXIAL_MM)
    try:
        for name, (lat, post, ax) in ZONES.items():
            R.ZONE_LATERAL_MM, R.ZONE_POSTERIOR_MM, R.ZONE_AXIAL_MM = lat, post, ax
            out[name] = _rib_zone_ml(rib_prob, center_kji, spacing, in_view, own)
    finally:
        R.ZONE_LATERAL_MM, R.ZONE_POSTERIOR_MM, R.ZONE_AXIAL_MM = saved
    _last.append(out)
    return out["default"]


def _mask(vid, *args, **kwargs):  # the segmentation stage makes each mask right after its rib cue
    _by_tag[vid] = _last[-1]
    return _VertebraMask(vid, *args, **kwargs)


S.rib_zone_ml, S.VertebraMask = _all_zones, _mask
_records = C._records


def _records_with_zones(pipeline, ct, labels, case, view):
    _by_tag.clear()
    rows = _records(pipeline, ct, labels, case, view)
    for n, r in enumerate(rows):
        z = _by_tag.get(n + 1, dict.fromkeys(ZONES))
        r["rib_zones"] = {k: None if v is None else round(v, 3) for k, v in z.items()}
    return rows


def fit(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    volume = {k: (a[1] - a[0]) * (b[1] - b[0]) * h for k, (a, b, h) in ZONES.items()}
    for name in ZONES:
        for how, f in (("same edges", 1.0), ("scaled", volume[name] / volume["default"]),
                       ("half scaled", 0.5 * volume[name] / volume["default"])):
            L.RIB_BINS_ML = C.RIB_BINS_ML = (0.25 * f, 1.0 * f)
            with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as tmp:
                tmp.write("\n".join(json.dumps(dict(r, rib_ml=r["rib_zones"][name])) for r in rows))
            rep = C.fit(Path(tmp.name))
            Path(tmp.name).unlink()
            o = {k: v[0] for k, v in rep["out_of_sample"].items() if k.startswith(("1.5", "2.0", "3.0"))}
            print(f"{name:8s} {how:12s} edges {[round(x, 3) for x in L.RIB_BINS_ML]} named right {o}")
            print(f"{'':8s} table T11-T13 {rep['table']['T11-T13']} L1 {rep['table']['L1']}")


def real() -> None:
    from inference import registry
    from inference.io import onto_grid, read_ct, read_label_map
    from inference.measure import vertebra_centers
    from inference.pipeline import Pipeline
    from inference.train.validate_real import real_cases

    p = Pipeline(device="cpu")
    for case in real_cases():
        ct, truth = read_ct(case.ct), read_label_map(case.truth)
        truth = truth if truth.same_grid(ct) else onto_grid(truth, ct)
        ref = vertebra_centers(truth)
        cands = p.candidates(p._run_localizer(ct, None))
        if not cands:
            continue
        _by_tag.clear()
        p.segment_candidates(ct, cands)
        for n, c in enumerate(cands):
            d = {v: float(np.linalg.norm(c.center_lps - t)) for v, t in ref.items()}
            v = min(d, key=d.get)
            name = registry.name_of(v) if d[v] <= C.MATCH_MM else "-"
            z = {k: None if x is None else round(x, 2) for k, x in _by_tag[n + 1].items()}
            print(case.name, n, name, z)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    C._records = _records_with_zones
    if sys.argv[1] == "synthetic":
        C.collect(int(sys.argv[2]), Path(sys.argv[3]))
    elif sys.argv[1] == "fit":
        fit(Path(sys.argv[2]))
    else:
        real()
