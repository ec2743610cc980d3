#!/usr/bin/env python3
"""3D check of `cryodet detect --3d` against a synthetic stack's ground truth (issue: 3D tomograms).

    cryodet synth runs/stack --n 0 --size 1536 --snr 0.1 --seed 13 --mrc-slices 40
    cryodet detect runs/stack/stack.mrc --3d --out runs/stack/det     # weights/slices.safetensors
    python3 tools/eval_3d.py --gt runs/stack/stack_gt.json --pred runs/stack/det/stack.objects.json

(tools/train_slices.sh runs this on six fresh tomograms.)

For every ground-truth object present in at least --min-slices slices, the best 3D IoU with any
predicted object (boxes x1,y1,z1,x2,y2,z2, z2 exclusive, in both files) is printed; an object is
"found" when that IoU >= --iou (0.7). Predicted objects of >= --min-slices slices that overlap no
ground truth at 3D IoU >= 0.5 are listed as spurious. Exit code 1 if an object was not found.
Only the standard library is needed.
"""

from __future__ import annotations

import argparse
import json
import sys


def iou3d(a, b) -> float:
    """IoU of two boxes [x1, y1, z1, x2, y2, z2] (continuous coordinates, z2 exclusive)."""
    inter = 1.0
    for lo, hi in ((0, 3), (1, 4), (2, 5)):
        d = min(a[hi], b[hi]) - max(a[lo], b[lo])
        if d <= 0:
            return 0.0
        inter *= d
    vol = lambda c: (c[3] - c[0]) * (c[4] - c[1]) * (c[5] - c[2])  # noqa: E731
    return inter / (vol(a) + vol(b) - inter)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gt", required=True, help="stack_gt.json written by cryodet synth --mrc-slices")
    ap.add_argument("--pred", required=True, help="NAME.objects.json written by cryodet detect --3d")
    ap.add_argument("--min-slices", type=int, default=3)
    ap.add_argument("--iou", type=float, default=0.7)
    a = ap.parse_args()
    gt = json.load(open(a.gt))["objects"]
    pred = json.load(open(a.pred))["objects"]
    found = 0
    considered = 0
    print(f"{'gt id':>5} {'slices':>6} {'gt bbox3d':44s} {'best IoU':>8}  pred id")
    for g in gt:
        n = len(g["slices"])
        if n < a.min_slices:
            continue
        considered += 1
        best, best_id = 0.0, None
        for p in pred:
            v = iou3d(g["bbox3d"], p["bbox3d"])
            if v > best:
                best, best_id = v, p["id"]
        found += best >= a.iou
        box = ",".join(f"{v:.0f}" for v in g["bbox3d"])
        print(f"{g['id']:>5} {n:>6} {box:44s} {best:8.3f}  {best_id}")
    spurious = [p for p in pred if p["n_slices"] >= a.min_slices
                and max((iou3d(g["bbox3d"], p["bbox3d"]) for g in gt), default=0.0) < 0.5]
    for p in spurious:
        print(f"spurious: pred {p['id']} bbox3d {p['bbox3d']} ({p['n_slices']} slices, score {p['score']:.3f})")
    print(f"found {found}/{considered} objects (>= {a.min_slices} slices) at 3D IoU >= {a.iou}; "
          f"{len(spurious)} spurious of {len(pred)} predicted")
    return 0 if found == considered else 1


if __name__ == "__main__":
    sys.exit(main())
