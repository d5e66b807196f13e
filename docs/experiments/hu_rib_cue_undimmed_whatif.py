"""What-if for the undimmed HU rib cue (docs/experiments/README.md): name the real cases with the
bone cue of `hu_rib_cue_undimmed.patch`, its table counted on ``bone_raw`` of the records.

    python docs/experiments/hu_rib_cue_undimmed_whatif.py CALIB.jsonl 1.5,3.0 1.0 [shipped]

Arguments: records, bin edges (ml), emission temperature; a fourth argument also runs the shipped cue.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from inference import label
from inference import pipeline as pl
from inference.ribs import bone_zone_ml
from inference.train.calibrate_labeling import fit

sys.path.insert(0, str(Path(__file__).parent))
from hu_rib_cue_real_whatif import run  # noqa: E402  (the earlier experiment's loop over the real cases)


def main() -> None:
    rows = [json.loads(line) for line in Path(sys.argv[1]).read_text().splitlines() if line.strip()]
    bins = tuple(float(x) for x in sys.argv[2].split(","))
    p = pl.Pipeline(device="cpu")
    if len(sys.argv) > 4:
        run(p, "shipped")
    label.RIB_BINS_ML = bins
    tmp = Path("/tmp/hu_rib_cue_undimmed_rows.jsonl")
    tmp.write_text("".join(json.dumps({**r, "rib_ml": r["bone_raw"]}) + "\n" for r in rows))
    label.RIB_LIKELIHOOD = {k: tuple(v) for k, v in fit(tmp)["table"].items()}
    label.EMISSION_TEMPERATURE = float(sys.argv[3])
    original = pl.Pipeline.segment_candidates

    def bone_cue(self, ct, cands, progress=None, cancel=None):
        seg, _ = original(self, ct, cands, progress, cancel)
        return seg, [bone_zone_ml(ct, seg.labels, c.center_lps) for c in cands]

    pl.Pipeline.segment_candidates = bone_cue
    run(p, f"bone {bins} T {sys.argv[3]}")


if __name__ == "__main__":
    main()
