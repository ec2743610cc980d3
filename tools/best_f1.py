#!/usr/bin/env python3
"""Prints the F1-optimal score threshold at IoU 0.5 from `cryodet eval`'s metrics.json (rounded
to 3 decimals), for `tools/set_metadata.py WEIGHTS score_thresh=...`. Standard library only.

    python3 tools/best_f1.py runs/default/eval_heldout/metrics.json
"""
import json
import sys

if len(sys.argv) != 2:
    sys.exit(__doc__)
m = json.load(open(sys.argv[1]))
row = [o for o in m["overall"] if abs(o["iou_threshold"] - 0.5) < 1e-9][0]
print(round(row["pooled"]["best_f1_threshold"], 3))
