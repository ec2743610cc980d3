#!/usr/bin/env bash
# Capacity comparison of weights/README.md: stage 3 of tools/train_general.sh run twice at once,
# on the same data, one thread each on its own core, for about the same wall-clock time:
#   WIDEN=1  width/8 (the stage-2 network, 0.30 M parameters), core 0: 18 epochs, lr/10 from 15
#   WIDEN=2  width/4 (widened by tools/widen.py, 1.20 M parameters), core 1: 9 epochs, lr/10 from 8
# (measured before the runs: 5.4 and 2.9 images/s on one thread, 1290 iterations an epoch, so
# ~72 and ~67 minutes). An interrupted run continues when this is run again (--resume). Then
# evaluate both: tools/eval_general.sh runs/general/run3_w1/best.safetensors (and _w2).
#
#   tools/capacity_stage3.sh      (from the repository root)
set -euo pipefail
export FROM_STAGE=${FROM_STAGE:-3} STAGE3_ONLY=1 THREADS=1
WORK=${WORK:-runs/general}
export WORK
mkdir -p "$WORK"
# the first run prepares data3, classic3 and the list; the second starts when the list is there
WIDEN=1 EPOCHS3=18 LR_STEPS3=15 taskset -c 0 tools/train_general.sh > "$WORK/run3_w1.log" 2>&1 &
while [ ! -f "$WORK/mix3/manifest.csv" ] || [ ! -f "$WORK/classic3/manifest.csv" ]; do sleep 5; done
sleep 5
WIDEN=2 EPOCHS3=9 LR_STEPS3=8 taskset -c 1 tools/train_general.sh > "$WORK/run3_w2.log" 2>&1 &
wait

# Held-out split (the same for both: same data, seed and split by group), each model with
# 2 threads after training, timed: AP@0.5/0.7 against seconds per image.
tools/heldout_dirs.sh "$WORK/run3_w1/test.txt" "$WORK/test_gt3" "$WORK/test_img3"
CRYODET=${CRYODET:-${CARGO_TARGET_DIR:-target}/release/cryodet}
n=$(wc -l < "$WORK/run3_w1/test.txt")
for w in 1 2; do
  r="$WORK/run3_w$w"
  t0=$(date +%s.%N)
  "$CRYODET" eval --gt "$WORK/test_gt3" --weights "$r/best.safetensors" --images "$WORK/test_img3" \
    --groups "$WORK/mix3/manifest.csv" --iou 0.5,0.7 --out "$r/eval_heldout" | tail -3
  t1=$(date +%s.%N)
  echo "run3_w$w: $n held-out images in $(echo "$t1 - $t0" | bc) s (detection + evaluation, 2 threads)"
done
