#!/usr/bin/env python3
"""Reference AP values for cryodet's evaluator (tests/eval_tests.rs).

Run:  pip install pycocotools numpy && python3 tools/check_ap.py
Writes tests/fixtures/eval/ap_reference.json (a few tens of KB; deterministic for a given seed).

What it does
1. Generates a randomized detection problem: several images of different sizes, 3 classes with
   ground truth ("mito", "vesicle", "granule") and one class that only has detections ("ghost");
   "granule" has ground truth but no detection at all; two images have no ground truth; one
   has no detection; jittered detections around ground truth, duplicates, pure false positives,
   boxes partly outside the image, tied scores, and one image with > 100 detections of one
   class (pycocotools keeps only maxDets = 100 per image and class).
   Every coordinate and score is a float32 value, so cryodet (f32 boxes widened to f64) and
   pycocotools (float64) see exactly the same numbers.
2. Runs pycocotools' COCOeval (iouType 'bbox', areaRng 'all', maxDets 100, no crowd) and takes
   per-class AP = mean(precision[t, :, k, 0, -1]) at IoU 0.5 and 0.75 (None where pycocotools
   has -1, i.e. the class has no ground truth).
3. Runs COCOeval again with maxDets = 10**9 (keep every detection) and feeds its matches
   (dtMatches / dtIgnore, ranked by score with a stable sort) to a port of the Pascal VOC devkit's
   voc_ap (py-faster-rcnn voc_eval.py), both use_07_metric=False (all-point) and True (11-point).
   Both sides use continuous IoU (area = w * h, no +1): the devkit's +1 pixel areas are a
   property of its integer boxes, not of the AP formula, so we keep the IoU identical on both
   sides and compare only matching + interpolation. The matching is pycocotools' (best
   untaken ground truth), which cryodet uses for every AP (see src/eval/matching.rs).

The torch/pycocotools lines that produce the expected values are `coco_per_class_ap` and
`voc_per_class_ap` below.
"""
import json
import os

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

SEED = 20240611
IOUS = [0.5, 0.75]
CLASSES = ["mito", "vesicle", "granule", "ghost"]  # ghost: detections only; granule: GT only
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "eval", "ap_reference.json")


def f32(x):
    return float(np.float32(x))


def make_dataset(rng):
    images = []
    n_images = 10
    for i in range(n_images):
        w, h = int(rng.integers(200, 600)), int(rng.integers(200, 600))
        gt, pred = [], []
        no_gt = i in (3, 7)
        no_pred = i == 5
        for cls in ["mito", "vesicle", "granule"]:
            if no_gt:
                break
            for _ in range(int(rng.integers(0, 6))):
                bw, bh = rng.uniform(15, 120), rng.uniform(15, 120)
                x1 = rng.uniform(-0.2 * bw, w - 0.8 * bw)  # sometimes partly outside the image
                y1 = rng.uniform(-0.2 * bh, h - 0.8 * bh)
                box = [f32(x1), f32(y1), f32(x1 + bw), f32(y1 + bh)]
                gt.append({"box": box, "class": cls})
        if not no_pred:
            for g in gt:
                if g["class"] == "granule":
                    continue
                n_copies = int(rng.random() < 0.85) + int(rng.random() < 0.3)  # miss / duplicate
                for _ in range(n_copies):
                    x1, y1, x2, y2 = g["box"]
                    s = 0.06 * max(x2 - x1, y2 - y1)
                    j = rng.normal(0, s, 4)
                    box = [x1 + j[0], y1 + j[1], x2 + j[2], y2 + j[3]]
                    box = [f32(min(box[0], box[2] - 1)), f32(min(box[1], box[3] - 1)), f32(box[2]), f32(box[3])]
                    pred.append({"box": box, "class": g["class"], "score": score(rng, 0.3, 1.0)})
            n_fp = int(rng.integers(0, 5)) + (120 if i == 9 else 0)
            for _ in range(n_fp):
                bw, bh = rng.uniform(10, 100), rng.uniform(10, 100)
                x1, y1 = rng.uniform(-10, w - bw), rng.uniform(-10, h - bh)
                cls = ["mito", "vesicle", "ghost"][int(rng.integers(0, 3))] if i != 9 else "mito"
                box = [f32(x1), f32(y1), f32(x1 + bw), f32(y1 + bh)]
                pred.append({"box": box, "class": cls, "score": score(rng, 0.02, 0.8)})
            if i == 9:
                # An object found only by the lowest-scoring detection: its rank (> 100) puts it
                # beyond pycocotools' maxDets, so the 101-point AP (maxDets 100) and the VOC APs
                # (every detection) see different recalls.
                box = [f32(40.5), f32(60.25), f32(140.75), f32(130.0)]
                gt.append({"box": box, "class": "mito"})
                pred.append({"box": [f32(42.0), f32(61.0), f32(139.0), f32(128.5)], "class": "mito", "score": f32(0.01)})
            order = rng.permutation(len(pred))  # detections in no particular order
            pred = [pred[k] for k in order]
        images.append({"name": f"img_{i:02d}", "width": w, "height": h, "gt": gt, "pred": pred})
    return images


def score(rng, lo, hi):
    s = rng.uniform(lo, hi)
    if rng.random() < 0.25:
        s = round(s, 1)  # ties
    return f32(s)


def to_coco(images):
    cats = [{"id": k + 1, "name": c} for k, c in enumerate(CLASSES)]
    cid = {c: k + 1 for k, c in enumerate(CLASSES)}
    gt = {"images": [], "annotations": [], "categories": cats}
    dets = []
    for i, im in enumerate(images):
        gt["images"].append({"id": i + 1, "width": im["width"], "height": im["height"]})
        for g in im["gt"]:
            x1, y1, x2, y2 = g["box"]
            gt["annotations"].append({
                "id": len(gt["annotations"]) + 1, "image_id": i + 1, "category_id": cid[g["class"]],
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
            })
        for p in im["pred"]:
            x1, y1, x2, y2 = p["box"]
            dets.append({"image_id": i + 1, "category_id": cid[p["class"]],
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "score": p["score"]})
    coco_gt = COCO()
    coco_gt.dataset = gt
    coco_gt.createIndex()
    return coco_gt, coco_gt.loadRes(dets)


def run_cocoeval(coco_gt, coco_dt, max_dets):
    ev = COCOeval(coco_gt, coco_dt, "bbox")
    ev.params.iouThrs = np.array(IOUS)
    ev.params.maxDets = [1, 10, max_dets]
    ev.params.areaRng = [[0, 1e5 ** 2]]
    ev.params.areaRngLbl = ["all"]
    ev.evaluate()
    ev.accumulate()
    return ev


def coco_per_class_ap(ev):
    out = {}
    for k, c in enumerate(CLASSES):
        vals = []
        for t in range(len(IOUS)):
            s = ev.eval["precision"][t, :, k, 0, -1]
            vals.append(float(np.mean(s[s > -1])) if np.any(s > -1) else None)
        out[c] = vals
    return out


def voc_ap(rec, prec, use_07_metric=False):
    """py-faster-rcnn lib/datasets/voc_eval.py: voc_ap, verbatim in substance."""
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap = ap + p / 11.0
    else:
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = np.concatenate(([0.0], prec, [0.0]))
        for i in range(mpre.size - 1, 0, -1):
            mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
        i = np.where(mrec[1:] != mrec[:-1])[0]
        ap = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    return float(ap)


def voc_per_class_ap(ev, use_07):
    out = {}
    n_img = len(ev.params.imgIds)
    for k, c in enumerate(CLASSES):
        vals = []
        for t in range(len(IOUS)):
            scores, tps, ign, npos = [], [], [], 0
            for i in range(n_img):  # evalImgs order: [cat][area][image]
                e = ev.evalImgs[k * n_img + i]
                if e is None:
                    continue
                scores += list(e["dtScores"])
                tps += list(e["dtMatches"][t] > 0)
                ign += list(e["dtIgnore"][t])
                npos += int(np.count_nonzero(np.logical_not(e["gtIgnore"])))
            if npos == 0:
                vals.append(None)
                continue
            order = np.argsort(-np.array(scores, dtype=np.float64), kind="mergesort")
            tp = np.array(tps, dtype=bool)[order] if scores else np.zeros(0, bool)
            keep = np.logical_not(np.array(ign, dtype=bool)[order]) if scores else np.zeros(0, bool)
            tp = tp[keep]
            fp = np.logical_not(tp)
            tp_c, fp_c = np.cumsum(tp).astype(np.float64), np.cumsum(fp).astype(np.float64)
            rec = tp_c / float(npos)
            prec = tp_c / np.maximum(tp_c + fp_c, np.finfo(np.float64).eps)
            vals.append(voc_ap(rec, prec, use_07))
        out[c] = vals
    return out


def main():
    rng = np.random.default_rng(SEED)
    images = make_dataset(rng)
    coco_gt, coco_dt = to_coco(images)
    ev100 = run_cocoeval(coco_gt, coco_dt, 100)
    ev_all = run_cocoeval(coco_gt, coco_dt, 10 ** 9)
    fixture = {
        "generator": "tools/check_ap.py",
        "seed": SEED,
        "iou_thresholds": IOUS,
        "classes": CLASSES,
        "images": images,
        "expected": {
            "coco101": coco_per_class_ap(ev100),
            "coco101_max_dets_unbounded": coco_per_class_ap(ev_all),
            "voc_all_point": voc_per_class_ap(ev_all, False),
            "voc_11_point": voc_per_class_ap(ev_all, True),
        },
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(fixture, f, indent=None, separators=(",", ":"))
        f.write("\n")
    n_gt = sum(len(im["gt"]) for im in images)
    n_pred = sum(len(im["pred"]) for im in images)
    print(f"wrote {os.path.normpath(OUT)}: {len(images)} images, {n_gt} gt, {n_pred} detections")
    for key, v in fixture["expected"].items():
        print(key, json.dumps(v))


if __name__ == "__main__":
    main()
