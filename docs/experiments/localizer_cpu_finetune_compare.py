"""Compare the labeling-calibration records of two localizers on the cases both hold.

    python docs/experiments/localizer_cpu_finetune_compare.py A.jsonl B.jsonl [N_CASES]

Each record file comes from `python -m inference.train.calibrate_labeling --weights W --records FILE`;
both are cut to the same cases and scored with `calibrate_labeling.fit` (cross-fitted rib table).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from inference.train.calibrate_labeling import fit


def load(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def main() -> None:
    a, b = load(sys.argv[1]), load(sys.argv[2])
    common = sorted({r["case"] for r in a} & {r["case"] for r in b})
    if len(sys.argv) > 3:
        common = common[: int(sys.argv[3])]
    elif common and max(r["case"] for r in b) in common:
        common = common[:-1]  # the last case of a run still collecting may be incomplete
    keep = set(common)
    for name, rows in (("A", a), ("B", b)):
        rr = [r for r in rows if r["case"] in keep]
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            f.writelines(json.dumps(r) + "\n" for r in rr)
        rep = fit(Path(f.name))
        matched = sum(1 for r in rr if r["true_id"])
        print(name, f"cases {len(keep)}, candidates {len(rr)}, true found {matched}, false {len(rr) - matched};",
              f"best temperature {rep['temperature']} (rib cue {rep['use_rib_cue']});",
              "named right:", rep["out_of_sample"], rep["by_view"])


if __name__ == "__main__":
    main()
