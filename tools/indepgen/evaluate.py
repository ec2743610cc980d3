#!/usr/bin/env python3
"""Evaluate a cryodet model on the independent test set written by generate.py; one table.

    python3 tools/indepgen/evaluate.py --cryodet target/release/cryodet \
        --weights weights/default.safetensors --data /work/indep_data --out runs/indep_eval \
        [--weights-3d weights/slices.safetensors] [--parts test2d,scale,stacks]

Runs, for every set:
  cryodet eval --gt SET/annotations --weights W --images SET/images --groups SET/groups.csv
               --iou 0.5,0.7 [--pixel-size NM] --out OUT/SET
on test2d (all images, then projections and slices separately) and on every scale/pxN.NN;
and for every stacks/stackN.mrc
  cryodet detect stackN.mrc --3d [--weights W3D] --out OUT/stacks/stackN
  python3 tools/eval_3d.py --gt stackN_gt.json --pred OUT/stacks/stackN/stackN.objects.json --iou 0.5
then prints AP at IoU 0.5 and 0.7 (all-point, from metrics.json) and the 3D counts.

`--pixel-size` is passed when the binary's `eval --help` lists it; INDEPGEN_PIXEL_SIZE=0 or 1
forces it off or on. This set is a final test: never train on it or choose anything on it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
EVAL3D = os.path.join(os.path.dirname(HERE), "eval_3d.py")


def run(cmd, log):
    with open(log, "w") as f:
        f.write(" ".join(cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    return r.returncode


def pixel_flag(binary):
    env = os.environ.get("INDEPGEN_PIXEL_SIZE")
    if env is not None:
        return env == "1"
    h = subprocess.run([binary, "eval", "--help"], capture_output=True, text=True)
    return "--pixel-size" in h.stdout


def subset(data_dir, out_dir, kind):
    """A view of test2d with only the images of one kind (symlinks) and its groups file."""
    rows = list(csv.DictReader(open(os.path.join(data_dir, "manifest.csv"))))
    for sub in ("images", "annotations"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    groups = []
    for r in rows:
        if r["kind"] != kind:
            continue
        stem = os.path.splitext(r["image"])[0]
        for sub, ext in (("images", ".tif"), ("annotations", ".xml")):
            dst = os.path.join(out_dir, sub, stem + ext)
            if not os.path.lexists(dst):
                os.symlink(os.path.abspath(os.path.join(data_dir, sub, stem + ext)), dst)
        groups.append((r["image"], r["group"]))
    with open(os.path.join(out_dir, "groups.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "group"])
        w.writerows(groups)
    return out_dir


def ap_of(metrics_path):
    m = json.load(open(metrics_path))
    out = {}
    for o in m["overall"]:
        out[round(o["iou_threshold"], 2)] = o["map_all_point"]
    return out, m["n_images"]


def eval2d(a, name, set_dir, pixel_nm, use_px, rows):
    out = os.path.join(a.out, name)
    os.makedirs(out, exist_ok=True)
    cmd = [a.cryodet, "eval", "--gt", os.path.join(set_dir, "annotations"), "--weights", a.weights,
           "--images", os.path.join(set_dir, "images"), "--groups", os.path.join(set_dir, "groups.csv"),
           "--iou", "0.5,0.7", "--out", out]
    if use_px:
        cmd += ["--pixel-size", f"{pixel_nm:g}"]
    rc = run(cmd, os.path.join(out, "log.txt"))
    if rc != 0 or not os.path.exists(os.path.join(out, "metrics.json")):
        rows.append((name, "-", "-", "-", f"FAILED (exit {rc}, {out}/log.txt)"))
        return
    ap, n = ap_of(os.path.join(out, "metrics.json"))
    rows.append((name, str(n), f"{ap.get(0.5, float('nan')):.3f}", f"{ap.get(0.7, float('nan')):.3f}",
                 f"pixel {pixel_nm:g} nm" + (" (--pixel-size)" if use_px else " (no --pixel-size)")))


def eval3d(a, data, rows3d):
    sdir = os.path.join(data, "stacks")
    stacks = sorted(f for f in os.listdir(sdir) if f.endswith(".mrc"))
    tot_found = tot_n = tot_spur = 0
    for s in stacks:
        stem = s[:-4]
        out = os.path.join(a.out, "stacks", stem)
        os.makedirs(out, exist_ok=True)
        cmd = [a.cryodet, "detect", os.path.join(sdir, s), "--3d", "--out", out]
        if a.weights_3d:
            cmd += ["--weights", a.weights_3d]
        rc = run(cmd, os.path.join(out, "detect_log.txt"))
        pred = os.path.join(out, stem + ".objects.json")
        if rc != 0 or not os.path.exists(pred):
            rows3d.append((stem, f"detect FAILED (exit {rc}, {out}/detect_log.txt)"))
            continue
        log = os.path.join(out, "eval_3d.txt")
        run([sys.executable, EVAL3D, "--gt", os.path.join(sdir, stem + "_gt.json"), "--pred", pred,
             "--iou", "0.5"], log)
        last = open(log).read().strip().splitlines()[-1]
        m = re.search(r"found (\d+)/(\d+) .*; (\d+) spurious", last)
        if m:
            f_, n_, sp = (int(v) for v in m.groups())
            tot_found += f_
            tot_n += n_
            tot_spur += sp
        rows3d.append((stem, last))
    if stacks:
        rows3d.append(("all", f"found {tot_found}/{tot_n} at 3D IoU >= 0.5; {tot_spur} spurious in {len(stacks)} stacks"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cryodet", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--weights-3d", default=None, help="weights for detect --3d (default: the binary's own)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--parts", default="test2d,scale,stacks")
    a = ap.parse_args()
    for p in (a.cryodet, a.weights, a.data):
        if not os.path.exists(p):
            print(f"indepgen evaluate: {p}: not found", file=sys.stderr)
            return 2
    if os.path.exists(a.out) and os.listdir(a.out):
        print(f"indepgen evaluate: {a.out} exists and is not empty; refusing to overwrite", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    use_px = pixel_flag(a.cryodet)
    parts = a.parts.split(",")
    rows, rows3d = [], []
    if "test2d" in parts:
        t2 = os.path.join(a.data, "test2d")
        px = float(next(csv.DictReader(open(os.path.join(t2, "manifest.csv"))))["pixel_nm"])
        eval2d(a, "test2d", t2, px, use_px, rows)
        for kind in ("projection", "slice"):
            sd = subset(t2, os.path.join(a.out, "sets", f"test2d_{kind}"), kind)
            eval2d(a, f"test2d_{kind}", sd, px, use_px, rows)
    if "scale" in parts:
        sc = os.path.join(a.data, "scale")
        for d in sorted(os.listdir(sc)):
            if d.startswith("px"):
                eval2d(a, f"scale_{d}", os.path.join(sc, d), float(d[2:]), use_px, rows)
    if "stacks" in parts:
        eval3d(a, a.data, rows3d)
    print(f"\nindependent test set {a.data}; weights {a.weights}")
    print(f"{'set':22s} {'images':>6s} {'AP@0.5':>7s} {'AP@0.7':>7s}  note")
    for r in rows:
        print(f"{r[0]:22s} {r[1]:>6s} {r[2]:>7s} {r[3]:>7s}  {r[4]}")
    for r in rows3d:
        print(f"3D {r[0]:10s} {r[1]}")
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump({"rows": rows, "rows3d": rows3d, "pixel_size_flag": use_px}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
