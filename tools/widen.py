#!/usr/bin/env python3
"""Widens a cryodet model k times (Net2WiderNet, Chen et al. 2016, arXiv:1511.05641): the wider
network computes the same function, so training it starts where the narrow one stopped.

    python3 tools/widen.py weights/default.safetensors wide.safetensors [--k 2] [--noise 0.02] [--seed 0]

Every hidden width C becomes kC by tiling: new channel c copies old channel c mod C.
- a layer's outputs (axis 0 of conv/linear weights, biases, batch-norm weight/bias/running stats)
  are tiled, so every copy of a channel carries the same value;
- a layer's inputs (axis 1 of conv/linear weights) are tiled and divided by k, so that
      y[o] = sum_{c'} W'[o, c'] x'[c'] = sum_{c' : c' mod C = c} W[o, c] / k * x[c] = sum_c W[o, c] x[c];
- the image input (backbone.conv1 axis 1) and the outputs of the four predictors (RPN
  objectness/deltas, box classifier/deltas) keep their sizes.
Convolution, frozen batch norm, ReLU, max-pooling, RoI pooling, the residual sums (every block
of a stage tiles its stream with the same map) and average pooling all commute with the tiling,
so with --noise 0 the wide model's detections equal the narrow one's (to float rounding).

Copies would receive identical gradients and stay copies, so --noise adds
`noise * std(W) * N(0, 1)` to every conv/linear weight (default 0.02: a small change of the
function that breaks the symmetry). Metadata is kept (`iteration`/`epoch` reset to 0) and
`widened_from` records the source.

Needs numpy and safetensors (pip install numpy safetensors).
"""
import argparse

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

# Outputs that are not widths: class logits and box deltas of the RPN and of the box head.
FIXED_OUT = ("rpn.bbox_pred.", "rpn.cls_logits.", "head.bbox_pred.", "head.cls_score.")
# Inputs that are not widths: the image.
FIXED_IN = ("backbone.conv1.weight",)


def widen_tensor(name: str, t: np.ndarray, k: int) -> np.ndarray:
    if not name.startswith(FIXED_OUT):
        t = np.concatenate([t] * k, axis=0)
    if t.ndim >= 2 and not name.startswith(FIXED_IN):
        t = np.concatenate([t] * k, axis=1) / k
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--noise", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.k < 1:
        raise SystemExit("widen: --k must be >= 1")
    rng = np.random.default_rng(a.seed)
    out = {}
    with safe_open(a.src, "np") as f:
        meta = dict(f.metadata() or {})
        for name in sorted(f.keys()):
            t = f.get_tensor(name)
            if t.dtype != np.float32:
                t = t.astype(np.float32)
            w = widen_tensor(name, t, a.k)
            if w.ndim >= 2 and a.noise > 0:
                w = w + (a.noise * w.std()) * rng.standard_normal(w.shape).astype(np.float32)
            out[name] = np.ascontiguousarray(w, dtype=np.float32)
    meta.update(iteration="0", epoch="0", widened_from=f"{a.src} x{a.k} noise {a.noise} seed {a.seed}")
    save_file(out, a.dst, metadata=meta)
    print(f"{a.dst}: {len(out)} tensors, {sum(v.size for v in out.values())} parameters (x{a.k} widths)")


if __name__ == "__main__":
    main()
