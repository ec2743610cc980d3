#!/usr/bin/env bash
# The F1-optimal score threshold at IoU 0.5 of a model over several labelled sets pooled into
# one (each set's detections and ground truth under a prefix s0_, s1_, ..., so stems may repeat
# across sets), printed with 3 decimals for `tools/set_metadata.py W score_thresh=...`.
# One held-out split alone (200 images) gives a noisy argmax on a flat F1 curve; pooling the
# model's never-trained own sets gives more images to the same rule.
#
#   tools/pooled_threshold.sh WEIGHTS OUT GT_DIR IMG_DIR [GT_DIR IMG_DIR ...]
set -euo pipefail
[ $# -ge 4 ] && [ $(( ($# - 2) % 2 )) -eq 0 ] || { echo "usage: $0 WEIGHTS OUT GT_DIR IMG_DIR [GT_DIR IMG_DIR ...]" >&2; exit 2; }
CRYODET=${CRYODET:-${CARGO_TARGET_DIR:-target}/release/cryodet}
W=$1 OUT=$2
shift 2
rm -rf "$OUT"
mkdir -p "$OUT/gt" "$OUT/pred"
i=0
while [ $# -gt 0 ]; do
  "$CRYODET" eval --gt "$1" --weights "$W" --images "$2" --iou 0.5 --out "$OUT/set$i" > "$OUT/set$i.log" 2>&1
  for f in "$1"/*.xml; do
    s=$(basename "$f" .xml)
    cp "$f" "$OUT/gt/s${i}_$s.xml"
    [ ! -f "$OUT/set$i/detections/$s.json" ] || cp "$OUT/set$i/detections/$s.json" "$OUT/pred/s${i}_$s.json"
  done
  i=$((i + 1))
  shift 2
done
"$CRYODET" eval --gt "$OUT/gt" --pred "$OUT/pred" --iou 0.5 --out "$OUT/pooled" > "$OUT/pooled.log" 2>&1
python3 "$(dirname "$0")/best_f1.py" "$OUT/pooled/metrics.json"
