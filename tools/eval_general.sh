#!/usr/bin/env bash
# Evaluates a model on every test set of the generalization issue and prints one table:
#   own fresh sets  - randomized synth as in training stages 1 and 2 (seeds 202 and 212, 100
#                     images each, never trained on) and the
#                     classic round-1 fresh set (synth --classic, seed 2: the no-regression check);
#   independent     - tools/indepgen (test2d, 4 magnifications, tomogram stacks): a final test,
#                     never trained on, nothing chosen on it;
#   real            - real cryo-ET / EM images with hand-made or source labels (provenance in
#                     weights/README.md): looked at and evaluated only.
#
#   tools/eval_general.sh [WEIGHTS]      (default weights/default.safetensors)
# Environment: INDEP=/work/indep_data (python3 tools/indepgen/generate.py INDEP --seed 2026),
# REAL=/work/real (images_px/ with the source's pixel sizes in PNG pHYs: tools/real/rebuild.py;
# the labels are tools/real/annotations),
# OUT=runs/eval_general, CRYODET=target/release/cryodet.
set -euo pipefail
W=${1:-weights/default.safetensors}
CRYODET=${CRYODET:-${CARGO_TARGET_DIR:-target}/release/cryodet}
OUT=${OUT:-runs/eval_general}
INDEP=${INDEP:-/work/indep_data}
REAL=${REAL:-/work/real}
mkdir -p "$OUT"

CRYODET="$CRYODET" tools/own_fresh_sets.sh

"$CRYODET" eval --gt runs/general/fresh/annotations --weights "$W" --images runs/general/fresh/images \
  --groups runs/general/fresh/manifest.csv --iou 0.5,0.7 --out "$OUT/own_fresh" | tail -3
"$CRYODET" eval --gt runs/general/fresh2/annotations --weights "$W" --images runs/general/fresh2/images \
  --groups runs/general/fresh2/manifest.csv --iou 0.5,0.7 --out "$OUT/own_fresh2" | tail -3
"$CRYODET" eval --gt runs/default/fresh_test/annotations --weights "$W" --images runs/default/fresh_test/images \
  --iou 0.5,0.7 --out "$OUT/classic_fresh" | tail -3
if [ -d "$REAL/images_px" ]; then
  "$CRYODET" eval --gt tools/real/annotations --weights "$W" --images "$REAL/images_px" \
    --groups tools/real/groups.csv --iou 0.5,0.7 --out "$OUT/real" | tail -3
  # the 14 cryo images alone (cryo-ET slices + one projection), from the same detections
  mkdir -p "$OUT/real_cryo_gt"
  for f in tools/real/annotations/*.xml; do
    case $(basename "$f") in hela_*|cem_*) ;; *) cp "$f" "$OUT/real_cryo_gt/" ;; esac
  done
  "$CRYODET" eval --gt "$OUT/real_cryo_gt" --pred "$OUT/real/detections" --iou 0.5,0.7 \
    --out "$OUT/real_cryo" | tail -3
fi
if [ -d "$INDEP" ]; then
  python3 tools/indepgen/evaluate.py --cryodet "$CRYODET" --weights "$W" --weights-3d "${W3D:-weights/slices.safetensors}" \
    --data "$INDEP" --out "$OUT/indep"
fi
