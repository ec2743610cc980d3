#!/usr/bin/env python3
"""The learning-curve study of issue 15: fine-tune a base model on N = 5, 10, 20, 50 labelled
images of one domain with the default recipe, train the same architecture from scratch on the
same images, and score every model on a separate test set of that domain.

    python3 tools/learning_curve.py --pool POOL --test TEST --base weights/default.safetensors \
        --out runs/lc_NAME [--ns 5,10,20,50] [--modes finetune,scratch] [--seed 0] [--threads 1]

POOL and TEST are LabelImg data sets (images/ + annotations/, optional groups.csv or
manifest.csv with image,group columns for TEST). The N training images are the first N of one
seeded shuffle of POOL, so the sets are nested (the 5 are among the 10, ...). TEST is never
trained on. Nothing here looks at TEST before a run has ended, and no option is chosen on it.

The two modes, run with the binary's own options (target/release/cryodet):
  finetune  cryodet train --data LIST --init BASE --out RUN
            (the default fine-tuning recipe, src/train/finetune.rs: nothing else given unless
            --train-args adds options, to compare a variant of the recipe)
  scratch   the same recipe (same split, epochs, augmentation, validation and selection) from a
            He-initialized network of BASE's architecture (width/8, blocks 2,2,2,2 for the
            shipped model; --scratch-arch), with every stage trained and the from-scratch
            learning rate 2e-4 (weights/README.md):
            cryodet train --data LIST --init RANDOM --out RUN --trainable-layers 5 --lr 2e-4
            RANDOM = iteration 0 of `cryodet train --width-div 8 --blocks 2,2,2,2 --max-iters 0`
Then for each run (and once for BASE itself, N = 0):
  cryodet eval --gt TEST/annotations --weights RUN/best.safetensors --images TEST/images \
      --iou 0.5,0.7 [--groups TEST/groups.csv] --out RUN/eval_test
Writes OUT/learning_curve.csv and OUT/learning_curve.md (N, mode, minutes of training, AP at
IoU 0.5 and 0.7 on TEST, the epoch kept). `cryodet eval` uses every core the process may run
on: pin the study with `taskset -c CPU` to give it one core. A run whose eval_test/metrics.json exists is not
repeated, so an interrupted study continues where it stopped.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time


def stems(data):
    """Image stems of a LabelImg data set that have both an image and an annotation."""
    ann = os.path.join(data, "annotations")
    img = os.path.join(data, "images")
    by_stem = {os.path.splitext(f)[0]: f for f in os.listdir(img)}
    out = []
    for f in sorted(os.listdir(ann)):
        s, ext = os.path.splitext(f)
        if ext == ".xml" and s in by_stem:
            out.append((s, os.path.join(img, by_stem[s]), os.path.join(ann, f)))
    if not out:
        sys.exit(f"{data}: no image with an annotation under images/ and annotations/")
    return out


def run(cmd, log):
    """Runs cmd with its output in log; exits with the command and log on failure."""
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        sys.exit(f"failed (exit {rc}): {' '.join(cmd)}; see {log}")


def ap_of(metrics_path):
    """(AP@0.5, AP@0.7), all-point mAP, from cryodet eval's metrics.json."""
    m = json.load(open(metrics_path))
    ap = {round(o["iou_threshold"], 2): o["map_all_point"] for o in m["overall"]}
    return ap[0.5], ap[0.7]


def kept_epoch(run_dir):
    """The epoch best.safetensors holds: the last val.csv row marked best (0 = the start)."""
    path = os.path.join(run_dir, "val.csv")
    if not os.path.exists(path):
        return "-"
    lines = [l.strip().split(",") for l in open(path)]
    col = {name: i for i, name in enumerate(lines[0])}
    kept = [r[col["epoch"]] for r in lines[1:] if r[col["best"]] not in ("", "0", "false", "no")]
    return kept[-1] if kept else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ns", default="5,10,20,50")
    ap.add_argument("--modes", default="finetune,scratch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scratch-arch", default="8:2,2,2,2", help="WIDTH_DIV:BLOCKS of the scratch network")
    ap.add_argument("--target-iters", type=int, default=None,
                    help="a variant of the recipe's length: --epochs clamp(round(T / n_train), 8, 120) with the "
                         "recipe's n_train (N below 10, else round(5 N / 6))")
    ap.add_argument("--train-args", default="", help="extra options for every `cryodet train` (a recipe variant)")
    ap.add_argument("--cryodet", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "cryodet"))
    a = ap.parse_args()

    ns = [int(n) for n in a.ns.split(",")]
    modes = a.modes.split(",")
    pool = stems(a.pool)
    test = stems(a.test)
    if max(ns) > len(pool):
        sys.exit(f"{a.pool}: {len(pool)} annotated images, fewer than N = {max(ns)}")
    shared = {os.path.realpath(i) for _, i, _ in pool} & {os.path.realpath(i) for _, i, _ in test}
    if shared:
        sys.exit(f"--pool and --test share {len(shared)} image(s), e.g. {sorted(shared)[0]}")
    unknown = [m for m in modes if m not in ("finetune", "scratch")]
    if unknown:
        sys.exit(f"unknown mode {unknown[0]} (finetune, scratch)")
    os.makedirs(a.out, exist_ok=True)
    order = list(pool)
    random.Random(a.seed).shuffle(order)
    groups = [os.path.join(a.test, g) for g in ("groups.csv", "manifest.csv") if os.path.exists(os.path.join(a.test, g))]

    def evaluate(weights, out_dir):
        metrics = os.path.join(out_dir, "metrics.json")
        if not os.path.exists(metrics):
            cmd = [a.cryodet, "eval", "--gt", os.path.join(a.test, "annotations"), "--weights", weights,
                   "--images", os.path.join(a.test, "images"), "--iou", "0.5,0.7", "--out", out_dir]
            if groups:
                cmd += ["--groups", groups[0]]
            os.makedirs(out_dir, exist_ok=True)
            run(cmd, out_dir + ".log")
        return ap_of(metrics)

    rows = []
    b50, b70 = evaluate(a.base, os.path.join(a.out, "base_eval_test"))
    rows.append((0, "base", 0.0, b50, b70, "-"))
    print(f"N=0 base: AP@0.5 {b50:.3f}  AP@0.7 {b70:.3f}", flush=True)

    random_init = os.path.join(a.out, "scratch_init", "last.safetensors")
    if "scratch" in modes and not os.path.exists(random_init):
        wd, blocks = a.scratch_arch.split(":")
        run([a.cryodet, "train", "--data", a.pool, "--out", os.path.join(a.out, "scratch_init"),
             "--width-div", wd, "--blocks", blocks, "--max-iters", "0", "--seed", str(a.seed),
             "--threads", "1"], os.path.join(a.out, "scratch_init.log"))

    for n in ns:
        nd = os.path.join(a.out, f"n{n:02d}")
        os.makedirs(nd, exist_ok=True)
        lst = os.path.join(nd, "train.txt")
        with open(lst, "w") as f:
            for _, img, xml in order[:n]:
                f.write(f"{os.path.abspath(img)} {os.path.abspath(xml)}\n")
        for mode in modes:
            rd = os.path.join(nd, mode)
            done = os.path.join(rd, "minutes.txt")
            if not os.path.exists(done):
                if os.path.exists(rd):
                    shutil.rmtree(rd)  # an interrupted run of this study: start it again
                cmd = [a.cryodet, "train", "--data", lst, "--out", rd, "--seed", str(a.seed),
                       "--threads", str(a.threads)] + a.train_args.split()
                if a.target_iters:
                    n_train = n if n < 10 else round(5 * n / 6)
                    cmd += ["--epochs", str(min(120, max(8, round(a.target_iters / n_train))))]
                if mode == "finetune":
                    cmd += ["--init", a.base]
                else:
                    cmd += ["--init", random_init, "--trainable-layers", "5", "--lr", "2e-4"]
                t0 = time.time()
                run(cmd, rd + ".log")
                with open(done, "w") as f:
                    f.write(f"{(time.time() - t0) / 60:.2f}\n")
            minutes = float(open(done).read())
            a50, a70 = evaluate(os.path.join(rd, "best.safetensors"), os.path.join(rd, "eval_test"))
            rows.append((n, mode, minutes, a50, a70, kept_epoch(rd)))
            print(f"N={n} {mode}: {minutes:.1f} min, AP@0.5 {a50:.3f}  AP@0.7 {a70:.3f}, epoch kept {rows[-1][5]}", flush=True)

    with open(os.path.join(a.out, "learning_curve.csv"), "w") as f:
        f.write("n,mode,train_minutes,ap50,ap70,epoch_kept\n")
        for r in rows:
            f.write(f"{r[0]},{r[1]},{r[2]:.2f},{r[3]:.4f},{r[4]:.4f},{r[5]}\n")
    with open(os.path.join(a.out, "learning_curve.md"), "w") as f:
        f.write(f"pool {a.pool} ({len(pool)} images), test {a.test} ({len(test)} images), base {a.base}, "
                f"threads {a.threads}\n\n| N | mode | minutes | AP@0.5 | AP@0.7 | epoch kept |\n|---|---|---|---|---|---|\n")
        for r in rows:
            f.write(f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.3f} | {r[4]:.3f} | {r[5]} |\n")
    print(open(os.path.join(a.out, "learning_curve.md")).read())


if __name__ == "__main__":
    main()
