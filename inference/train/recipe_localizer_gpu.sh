#!/usr/bin/env bash
# Fine-tune the shipped localizer on a GPU machine, on a fresh synthetic pool painted on the GPU while
# the training reads it (PoolFiles re-lists the pool every 30 s, so training starts after a minute).
#
#   inference/train/recipe_localizer_gpu.sh OUT [TRAIN_MINUTES] [POOL_PROCESSES] [CASES]
#
# Writes OUT/run/last.pt (checkpoint every few minutes and at the end), OUT/run/train_log.json,
# OUT/pool.json (how the pool was made) and OUT/recipe.log. Turn the checkpoint into shipped weights
# with `python -m inference.train.export_weights OUT/run/last.pt --model localizer`, then judge it
# with `calibrate_labeling --weights` (held-out synthetic CT) and `validate_real --weights` (real CT).
# Seed 21 is a pool seed no other training used (1, 5-8: localizer; 2, 12: segmenter; 31: lesions;
# 77: labeling calibration).
set -euo pipefail
OUT=${1:?usage: recipe_localizer_gpu.sh OUT [TRAIN_MINUTES] [POOL_PROCESSES] [CASES]}
MINUTES=${2:-6}
PROCS=${3:-6}
CASES=${4:-6000}
WORKERS=${WORKERS:-8}
POOL=${POOL:-/tmp/spinenav_pool_localizer}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT" "$POOL"
exec > >(tee -a "$OUT/recipe.log") 2>&1
echo "recipe start $(date -u +%FT%TZ): $PROCS pool processes on $DEVICE, $CASES cases max, $MINUTES min training"
pids=()
for p in $(seq 0 $((PROCS - 1))); do
  python -m inference.train.pool --out "$POOL" --seed 21 --device "$DEVICE" \
    --start $((p * CASES / PROCS)) -n $(((p + 1) * CASES / PROCS)) >"$OUT/pool_$p.log" 2>&1 &
  pids+=($!)
done
until [ "$(find "$POOL" -name 'case_*.npz' | wc -l)" -ge $((2 * PROCS)) ]; do sleep 2; done
echo "training from $(date -u +%FT%TZ) on $(find "$POOL" -name 'case_*.npz' | wc -l) cases (pool still growing)"
python -m inference.train.train_localizer --pool "$POOL" --out "$OUT/run" --minutes "$MINUTES" \
  --batch 16 --lr 5e-4 --seed 21 --val-from 1000000 --workers "$WORKERS" \
  --fov-p 0.4 --clip-p 0.1 --cut-p 0.25 --init assets/weights/localizer/localizer.pt
kill "${pids[@]}" 2>/dev/null || true
wait "${pids[@]}" 2>/dev/null || true
cp "$POOL/pool.json" "$OUT/pool.json"
echo "recipe end $(date -u +%FT%TZ): $(find "$POOL" -name 'case_*.npz' | wc -l) pool cases made"
