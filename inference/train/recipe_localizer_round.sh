#!/usr/bin/env bash
# One training round of the localizer on a GPU machine, judged in the same call: fine-tune
# (recipe_localizer_gpu.sh), export, name the 100 held-out synthetic calibration cases with the new
# weights (calibrate_labeling, same cases as docs/labeling_calibration.md) and the real cases that
# travel with the repository (validate_real, no perturbations), then compare both with the shipped
# model (inference.train.compare_round). Sized for one device call of under 10 minutes:
#
#   inference/train/recipe_localizer_round.sh OUT [TRAIN_MINUTES]      # e.g. OUT=$OUT on the device
#
# Writes OUT/weights/localizer/ (localizer.pt + manifest.json, ~3 MB: under the 16 MiB that comes
# back), OUT/labeling_calibration.{md,json}, OUT/records.jsonl, OUT/real/, OUT/compare.md and the
# logs. Nothing in the repository changes; ship a better model by copying OUT/weights/localizer to
# assets/weights/localizer and re-running calibrate_labeling --fit-only and validate_real here.
# Environment: DEVICE (cuda), CAL_N (100 cases), CAL_WORKERS (12 processes making cases),
# POOL_PROCS (6) and POOL_CASES (6000) for the training pool.
set -euo pipefail
OUT=${1:?usage: recipe_localizer_round.sh OUT [TRAIN_MINUTES]}
MINUTES=${2:-4}
DEVICE=${DEVICE:-cuda}
CAL_N=${CAL_N:-100}
CAL_WORKERS=${CAL_WORKERS:-12}
mkdir -p "$OUT/weights" "$OUT/real"
DEVICE=$DEVICE inference/train/recipe_localizer_gpu.sh "$OUT/train" "$MINUTES" "${POOL_PROCS:-6}" "${POOL_CASES:-6000}"
cp -r assets/weights/segmenter assets/weights/lesion "$OUT/weights/"
python -m inference.train.export_weights "$OUT/train/run/last.pt" --model localizer --out "$OUT/weights/localizer" \
  --pool "$OUT/train" --notes "recipe_localizer_round.sh on $DEVICE, $MINUTES min ($(date -u +%F))"
echo "judging from $(date -u +%FT%TZ)"
python -m inference.train.calibrate_labeling --n "$CAL_N" --records "$OUT/records.jsonl" \
  --docs "$OUT/labeling_calibration.md" --weights "$OUT/weights" --device "$DEVICE" --workers "$CAL_WORKERS" \
  >"$OUT/calibrate.log" 2>&1
python -m inference.train.validate_real --weights "$OUT/weights" --out "$OUT/real/localization" --no-perturb \
  >"$OUT/validate_real.log" 2>&1
python -m inference.train.compare_round "$OUT" | tee "$OUT/compare.md"
echo "round end $(date -u +%FT%TZ)"
