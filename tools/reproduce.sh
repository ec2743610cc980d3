#!/usr/bin/env bash
# Reproduces the study's experiment on synthetic cryo-ET data, end to end:
#   synth (train set, seed 1; fresh test set, seed 2)
#   -> train twice: with the study's preprocessing (bilateral + equalization) and without
#   -> detect on the fresh test set -> eval at IoU 0.5..0.9
# and writes, per variant, the study's Table 2 (F1, AP@0.7, mIoU, incomplete objects per
# "tomogram" group) in OUT/<variant>/eval/report.md and its Fig. 6 (AP vs IoU:
# ap_vs_iou.png; precision-recall curves: pr_curve.png), plus OUT/summary.md comparing both.
#
# Run from the repository root:  tools/reproduce.sh            (all settings overridable, e.g.
#                                EPOCHS=10 N_TRAIN=120 tools/reproduce.sh)
# Cost: two trainings; with the defaults about 45 min each on 2 cores (see weights/README.md).
set -euo pipefail

OUT=${OUT:-runs/reproduce}
N_TRAIN=${N_TRAIN:-300}
N_TEST=${N_TEST:-60}
SIZE=${SIZE:-384}           # network input (short side), as tools/train_default.sh
. "$(dirname "$0")/classic_recipe.sh"

cargo build --release
CRYODET=${CRYODET:-${CARGO_TARGET_DIR:-target}/release/cryodet}
mkdir -p "$OUT"

[ -d "$OUT/train_data/images" ] || "$CRYODET" synth "$OUT/train_data" --classic --n "$N_TRAIN" --size "$GEN_SIZE" --snr "$SNR" --seed 1 --groups 10
[ -d "$OUT/test_data/images" ] || "$CRYODET" synth "$OUT/test_data" --classic --n "$N_TEST" --size "$GEN_SIZE" --snr "$SNR" --seed 2 --groups 10

for variant in preprocessed raw; do
  flags=()
  [ "$variant" = raw ] && flags=(--no-preprocess)
  run="$OUT/$variant/run"
  if [ -f "$run/state.json" ]; then
    "$CRYODET" train --resume "$run" --threads "$THREADS"
  else
    "$CRYODET" train --data "$OUT/train_data" --out "$run" --epochs "$EPOCHS" --lr "$LR" \
      --size "$SIZE" --width-div "$WIDTH_DIV" --blocks "$BLOCKS" --roi-batch "$ROI_BATCH" \
      --lr-steps "$LR_STEPS" --seed 1 --split-by-group --threads "$THREADS" "${flags[@]}"
  fi
  "$CRYODET" eval --gt "$OUT/test_data/annotations" --weights "$run/best.safetensors" \
    --images "$OUT/test_data/images" --groups "$OUT/test_data/manifest.csv" \
    --size "$SIZE" --iou 0.5,0.6,0.7,0.8,0.9 --out "$OUT/$variant/eval" "${flags[@]}"
done

{
  echo "# Synthetic reproduction of the study's Fig. 6a: AP at each IoU threshold"
  echo
  echo "test set: $N_TEST images (seed 2, SNR $SNR at ${GEN_SIZE}px, network input ${SIZE}px); training: $N_TRAIN images (seed 1)"
  echo
  for variant in preprocessed raw; do
    echo "## $variant"
    echo
    sed -n '/^## Overall/,/^## /p' "$OUT/$variant/eval/report.md" | sed '$d'
  done
} > "$OUT/summary.md"
echo "summary: $OUT/summary.md"
