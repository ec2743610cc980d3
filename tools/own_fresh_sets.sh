#!/usr/bin/env bash
# Makes (if absent) the three own fresh test sets that no model was trained on:
#   runs/general/fresh   randomized synth as in training stage 1 (seed 202, 100 images)
#   runs/general/fresh2  randomized synth as in stage 2 (seed 212, 100 images)
#   runs/default/fresh_test  the classic round-1 style (seed 2, 60 images; the no-regression check)
# Used by tools/eval_general.sh (evaluation) and tools/train_general.sh (score threshold).
set -euo pipefail
CRYODET=${CRYODET:-${CARGO_TARGET_DIR:-target}/release/cryodet}
[ -d runs/general/fresh/images ] || "$CRYODET" synth runs/general/fresh --n 100 --seed 202 --groups 10 \
  --pixel-nm-range 1.0,4 --fov-nm-range 600,2400
[ -d runs/general/fresh2/images ] || "$CRYODET" synth runs/general/fresh2 --n 100 --seed 212 --groups 10 \
  --pixel-nm-range 1.5,4 --fov-nm-range 1200,3000 --snr-range 0.06,3
[ -d runs/default/fresh_test/images ] || "$CRYODET" synth runs/default/fresh_test --classic --n 60 \
  --size 1536 --snr 0.1 --seed 2 --groups 10
