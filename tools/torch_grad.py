#!/usr/bin/env python3
"""torch autograd reference for `cryodet grad`: Faster R-CNN losses and weight gradients of one image.

The model is tools/torch_reference.py's (torchvision's own RegionProposalNetwork and RoIHeads,
ResNet-50 C4 with FrozenBatchNorm2d), put in training mode, with:
  - both fg/bg samplers replaced by take-all (every labelled anchor / RoI: deterministic), the
    same as `cryodet grad --sampling all`;
  - RPN pre/post NMS top-n for training = --pre-nms-top-n / --post-nms-top-n (12000 / 2000, as
    cryodet's ProposalConfig::training());
  - smooth-L1 beta = --beta in both box losses (torchvision hard-codes 1/9; patched for the study's 1);
  - requires_grad only on the trained weights: torchvision's trainable_backbone_layers counted from
    the top (layer4, layer3, layer2, layer1, conv1) plus the RPN head and the predictor.
Losses come from torchvision's code paths (GeneralizedRCNN.forward with targets); the gradient of
their sum is torch autograd's. Output names: loss_objectness, loss_rpn_box_reg, loss_classifier,
loss_box_reg, grad.<cryodet weight name>.

Commands:
  # full-width comparison (random weights, a 600x800 input with 4 GT boxes)
  python3 tools/torch_reference.py random-weights --config full --out /tmp/full.safetensors
  python3 tools/torch_grad.py make-input --size 600x800 --boxes 4 --seed 3 --out /tmp/x600.safetensors
  python3 tools/torch_grad.py run --weights /tmp/full.safetensors --input /tmp/x600.safetensors --out /tmp/g_torch.safetensors
  cryodet grad --weights /tmp/full.safetensors --input /tmp/x600.safetensors --out /tmp/g_ours.safetensors
  python3 tools/torch_grad.py compare --ours /tmp/g_ours.safetensors --ref /tmp/g_torch.safetensors
  (or `run ... --compare /tmp/g_ours.safetensors`)

  # committed fixtures (tests/grad_vs_torch.rs)
  python3 tools/torch_grad.py fixture --out-dir tests/fixtures/grad
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_reference():
    """Imports tools/torch_reference.py by path (it is a script, not a package)."""
    path = os.path.join(HERE, "torch_reference.py")
    spec = importlib.util.spec_from_file_location("torch_reference", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["torch_reference"] = mod
    spec.loader.exec_module(mod)
    return mod


ref = _load_reference()

LOSS_NAMES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")
LOSS_TOL = 1e-4  # relative
GRAD_TOL = 1e-3  # max|a-b| <= GRAD_TOL * max|b|


class TakeAll:
    """fg_bg_sampler returning every labelled element: pos = label >= 1, neg = label == 0 (masks)."""

    def __call__(self, matched_idxs):
        pos = [(m >= 1).to(torch.uint8) for m in matched_idxs]
        neg = [(m == 0).to(torch.uint8) for m in matched_idxs]
        return pos, neg


def trainable(name: str, layers: int) -> bool:
    """cryodet weight name -> trained under torchvision's trainable_backbone_layers = layers."""
    if name.startswith("rpn.") or name.startswith("head.cls_score") or name.startswith("head.bbox_pred"):
        return True
    order = ("head.layer4", "backbone.layer3", "backbone.layer2", "backbone.layer1", "backbone.conv1")
    return any(name.startswith(p) for p in order[:layers])


def losses_and_grads(model, x, boxes, labels, beta=1.0 / 9.0, layers=3, pre_nms=12000, post_nms=2000):
    """Training-mode losses (torchvision code paths) and autograd gradients of their sum."""
    model.train()
    model.rpn.fg_bg_sampler = TakeAll()
    model.roi_heads.fg_bg_sampler = TakeAll()
    model.rpn._pre_nms_top_n["training"] = pre_nms
    model.rpn._post_nms_top_n["training"] = post_nms
    names = {}
    for n, p in model.named_parameters():
        cn = ref.to_cryodet_name(n)
        p.requires_grad_(trainable(cn, layers))
        p.grad = None
        names[n] = cn
    orig = F.smooth_l1_loss

    def smooth_l1(input, target, size_average=None, reduce=None, reduction="mean", beta_=None, **kw):
        return orig(input, target, reduction=reduction, beta=beta)

    F.smooth_l1_loss = smooth_l1  # rpn.py and roi_heads.py call F.smooth_l1_loss(..., beta=1/9)
    try:
        target = {"boxes": boxes.to(torch.float32), "labels": labels.to(torch.int64)}
        losses = model([x[0]], [target])
    finally:
        F.smooth_l1_loss = orig
    total = sum(losses[k] for k in LOSS_NAMES)
    total.backward()
    out = {k: losses[k].detach().reshape(1).clone() for k in LOSS_NAMES}
    for n, p in model.named_parameters():
        if p.requires_grad:
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            out["grad." + names[n]] = g.detach().contiguous().clone()
    return out


def load_example(path):
    t = load_file(path)
    return t["input"].to(torch.float32), t["boxes"].to(torch.float32), t["labels"].to(torch.int64)


def random_boxes(h, w, n, num_classes, seed):
    """n GT boxes with sides 0.15..0.45 of the image, inside it; labels 1..K-1 cycling."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        bw, bh = (0.15 + 0.3 * torch.rand(2, generator=g)) * torch.tensor([w, h])
        x1 = torch.rand(1, generator=g) * (w - bw)
        y1 = torch.rand(1, generator=g) * (h - bh)
        out.append(torch.cat([x1, y1, x1 + bw, y1 + bh]))
    labels = torch.tensor([1 + i % (num_classes - 1) for i in range(n)], dtype=torch.int64)
    return torch.stack(out).to(torch.float32), labels


def compare(ours: dict, theirs: dict) -> bool:
    ok = True
    print(f"{'tensor':58s} {'max|a-b|':>10s} {'max|b|':>10s} {'ratio':>10s}")
    keep = lambda k: k.startswith("loss_") or k.startswith("grad.")  # noqa: E731
    for k in sorted(k for k in set(ours) | set(theirs) if keep(k)):
        if k not in ours or k not in theirs:
            print(f"{k:58s} missing in {'ours' if k not in ours else 'reference'}  FAIL")
            ok = False
            continue
        a, b = ours[k].to(torch.float64).flatten(), theirs[k].to(torch.float64).flatten()
        if a.shape != b.shape:
            print(f"{k:58s} shape {list(ours[k].shape)} != {list(theirs[k].shape)}  FAIL")
            ok = False
            continue
        d = (a - b).abs().max().item() if a.numel() else 0.0
        m = b.abs().max().item() if b.numel() else 0.0
        ratio = d / max(m, 1e-30)
        tol = LOSS_TOL if k.startswith("loss_") else GRAD_TOL
        good = d <= tol * m + 1e-12
        ok &= good
        print(f"{k:58s} {d:10.3e} {m:10.3e} {ratio:10.3e}  {'PASS' if good else 'FAIL'}")
    print("ALL PASS" if ok else "SOME FAIL")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="reference losses and gradients for a weight file and an example")
    r.add_argument("--weights", required=True)
    r.add_argument("--input", required=True, help="safetensors with input [1,3,H,W], boxes [G,4], labels [G]")
    r.add_argument("--out", required=True)
    r.add_argument("--beta", type=float, default=1.0 / 9.0)
    r.add_argument("--trainable-layers", type=int, default=3)
    r.add_argument("--pre-nms-top-n", type=int, default=12000)
    r.add_argument("--post-nms-top-n", type=int, default=2000)
    r.add_argument("--compare", help="cryodet grad output to compare with")
    c = sub.add_parser("compare", help="per-tensor comparison of two grad files")
    c.add_argument("--ours", required=True)
    c.add_argument("--ref", required=True)
    m = sub.add_parser("make-input", help="random normalised input + GT boxes + labels")
    m.add_argument("--size", default="600x800", help="HxW")
    m.add_argument("--boxes", type=int, default=4)
    m.add_argument("--classes", type=int, default=2, help="K including background")
    m.add_argument("--seed", type=int, default=3)
    m.add_argument("--out", required=True)
    f = sub.add_parser("fixture", help="write the committed reduced-width fixtures")
    f.add_argument("--out-dir", default="tests/fixtures/grad")
    a = ap.parse_args()

    if a.cmd == "run":
        model, _ = ref.load_weights(a.weights)
        x, boxes, labels = load_example(a.input)
        out = losses_and_grads(model, x, boxes, labels, a.beta, a.trainable_layers, a.pre_nms_top_n, a.post_nms_top_n)
        save_file(out, a.out)
        print(" ".join(f"{k} {out[k].item():.6f}" for k in LOSS_NAMES))
        if a.compare:
            sys.exit(0 if compare(load_file(a.compare), out) else 1)
    elif a.cmd == "compare":
        sys.exit(0 if compare(load_file(a.ours), load_file(a.ref)) else 1)
    elif a.cmd == "make-input":
        h, w = map(int, a.size.split("x"))
        x = ref.random_input(h, w, a.seed)
        boxes, labels = random_boxes(h, w, a.boxes, a.classes, a.seed + 1)
        save_file({"input": x, "boxes": boxes, "labels": labels.to(torch.float32)}, a.out)
    elif a.cmd == "fixture":
        os.makedirs(a.out_dir, exist_ok=True)
        wpath = os.path.join(a.out_dir, "weights_small.safetensors")
        c = ref.CONFIGS["small"]
        model = ref.build_config("small")
        ref.randomize(model, 7)
        ref.save_weights(model, wpath, c["classes"])
        k = len(c["classes"])
        # (name, H, W, GT boxes, trainable layers, beta, input seed)
        cases = [
            ("grad_small_t5", 130, 97, 3, 5, 1.0 / 9.0, 11),
            ("grad_small_t3_beta1", 87, 115, 2, 3, 1.0, 12),
        ]
        for name, h, w, nb, layers, beta, seed in cases:
            model, _ = ref.load_weights(wpath)
            x = ref.random_input(h, w, seed)
            boxes, labels = random_boxes(h, w, nb, k, seed + 1)
            out = losses_and_grads(model, x, boxes, labels, beta, layers)
            out.update({"input": x, "boxes": boxes, "labels": labels.to(torch.float32)})
            path = os.path.join(a.out_dir, name + ".safetensors")
            save_file(out, path, metadata={"trainable_layers": str(layers), "beta": repr(beta),
                                           "torch": torch.__version__})
            print(path, " ".join(f"{k_} {out[k_].item():.6f}" for k_ in LOSS_NAMES))


if __name__ == "__main__":
    main()
