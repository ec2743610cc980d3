#!/usr/bin/env python3
"""Fixtures for tests/detection_ops.rs: torchvision's detection ops on small, awkward inputs.

Run from the repository root:

    python3 tools/make_ops_fixtures.py

Writes tests/fixtures/ops/{anchors,box_coder,nms,roi_pool,proposals,postprocess}.safetensors.
Made with torch 2.15 / torchvision 0.29 (CPU). All tensors are float32 except the index outputs
(int64); the Rust loader reads every dtype as f32 (indices < 2^24 are exact).

The torch lines that produce each expected value are in the functions below and are quoted in
the matching test of tests/detection_ops.rs.
"""

import math
import os

import torch
import torchvision
from safetensors.torch import save_file
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import nms, batched_nms, roi_pool, box_iou

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "ops")


def save(name, tensors):
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    path = os.path.join(OUT, name + ".safetensors")
    save_file(tensors, path)
    print(f"{path}: {os.path.getsize(path) / 1024:.1f} KB, keys {sorted(tensors)}")


def random_boxes(g, n, w, h, min_side=1.0, max_side=None):
    """Boxes (x1, y1, x2, y2) with positive sides, mostly inside a w x h image."""
    max_side = max_side or max(w, h) / 2
    x1 = torch.rand(n, generator=g) * w
    y1 = torch.rand(n, generator=g) * h
    bw = min_side + torch.rand(n, generator=g) * (max_side - min_side)
    bh = min_side + torch.rand(n, generator=g) * (max_side - min_side)
    return torch.stack([x1, y1, x1 + bw, y1 + bh], dim=1)


def anchors():
    # Image 211 x 275, feature maps 13 x 17 (strides 211 // 13 = 16, 275 // 17 = 16) and 9 x 11
    # (strides 23, 25: stride_h != stride_w).
    images = ImageList(torch.zeros(1, 3, 211, 275), [(211, 275)])
    default = AnchorGenerator(sizes=((128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))
    default_anchors = default(images, [torch.zeros(1, 1, 13, 17)])[0]
    # Custom: size 45 at ratio 1 gives +-22.5, a half-way case (torch.round: half to even -> 22).
    custom = AnchorGenerator(sizes=((45, 83.0),), aspect_ratios=((0.7, 1.0, 3.0),))
    custom_anchors = custom(images, [torch.zeros(1, 1, 9, 11)])[0]
    save("anchors", {
        "default_anchors": default_anchors,            # [13*17*9, 4]
        "custom_anchors": custom_anchors,              # [9*11*6, 4]
        "custom_base": custom.cell_anchors[0],         # [6, 4]
        "custom_sizes": torch.tensor([45.0, 83.0]),
        "custom_ratios": torch.tensor([0.7, 1.0, 3.0]),
    })


def box_coder():
    g = torch.Generator().manual_seed(1)
    n = 64
    ref = random_boxes(g, n, 300, 200, min_side=2.0)
    gt = random_boxes(g, n, 300, 200, min_side=2.0)
    deltas = torch.randn(n, 4, generator=g)
    # Large deltas: clamped (dw, dh > log(1000/16)), large negative (not clamped), big shifts.
    deltas[:8, 2:] = torch.tensor([[10.0, 20.0], [5.0, -10.0], [-30.0, 4.2], [4.1, 4.2],
                                   [50.0, 50.0], [-50.0, 0.0], [3.0, 60.0], [1.0, 1.0]])
    deltas[:8, :2] *= 20.0
    k = 3
    deltas_k = torch.randn(n, 4 * k, generator=g) * 3.0
    deltas_k[:4, 2::4] = 40.0
    rpn, roi = BoxCoder((1.0, 1.0, 1.0, 1.0)), BoxCoder((10.0, 10.0, 5.0, 5.0))
    save("box_coder", {
        "ref": ref, "gt": gt, "deltas": deltas, "deltas_k": deltas_k,
        "encode_rpn": rpn.encode_single(gt, ref),
        "encode_roi": roi.encode_single(gt, ref),
        "decode_rpn": rpn.decode_single(deltas, ref),
        "decode_roi": roi.decode_single(deltas, ref),
        "decode_roi_k": roi.decode(deltas_k, [ref]),  # [n, k, 4]
    })


def nms_fixture():
    g = torch.Generator().manual_seed(2)
    # Hand-made: exact score ties (boxes 0, 2, 3; boxes 4, 5, 6); IoU(0, 1) is exactly 0.3 (as f32
    # 0.300000012 > the double 0.3: box 0 suppressed at threshold 0.3) and IoU(0, 2) exactly 0.5
    # (not > 0.5: box 2 kept at threshold 0.5); box 3 duplicates box 0.
    tie_boxes = torch.tensor([
        [0, 0, 10, 10], [0, 0, 10, 3], [0, 5, 10, 10], [0, 0, 10, 10],
        [20, 20, 30, 30], [21, 20, 31, 30], [20, 21, 30, 31], [50, 50, 52, 52],
    ], dtype=torch.float32)
    tie_scores = torch.tensor([0.5, 0.9, 0.5, 0.5, 0.7, 0.7, 0.7, 0.1])
    # Many random boxes, scores quantised to 2 decimals (many ties; the CPU kernel sorts stably).
    n = 2000
    boxes = random_boxes(g, n, 400, 300, min_side=4.0, max_side=80.0)
    scores = torch.round(torch.rand(n, generator=g) * 100) / 100
    # batched_nms: <= 1000 boxes takes the coordinate-trick path, more the per-class path.
    small_boxes, small_scores = boxes[:600], scores[:600]
    small_labels = torch.randint(0, 4, (600,), generator=g)
    big_scores = torch.rand(n, generator=g)  # no ties: torch's re-sort there is unstable
    big_labels = torch.randint(1, 5, (n,), generator=g)
    save("nms", {
        "tie_boxes": tie_boxes, "tie_scores": tie_scores,
        "tie_keep_03": nms(tie_boxes, tie_scores, 0.3),
        "tie_keep_05": nms(tie_boxes, tie_scores, 0.5),
        "tie_iou": box_iou(tie_boxes, tie_boxes),
        "boxes": boxes, "scores": scores,
        "keep_05": nms(boxes, scores, 0.5),
        "keep_07": nms(boxes, scores, 0.7),
        "iou_first64": box_iou(boxes[:64], boxes[64:128]),
        "small_labels": small_labels.float(),
        "small_keep": batched_nms(small_boxes, small_scores, small_labels, 0.5),
        "big_scores": big_scores, "big_labels": big_labels.float(),
        "big_keep": batched_nms(boxes, big_scores, big_labels, 0.5),
    })


def roi_pool_fixture():
    g = torch.Generator().manual_seed(3)
    c, h, w = 5, 11, 14
    x = torch.randn(1, c, h, w, generator=g)
    x[0, 1] = torch.randint(0, 3, (h, w), generator=g).float()  # tied maxima: first index wins
    x[0, 2] = 0.25                                              # one constant channel
    scale = 1.0 / 16
    rois = torch.tensor([
        [0, 0, 0, 223, 175],        # the whole map
        [0, 40, 24, 120, 90],       # 40/16 = 2.5: C round -> 3 (half-even would give 2)
        [0, -24, -40, 60, 50],      # starts outside (-1.5 -> -2, -2.5 -> -3)
        [0, 180, 140, 400, 300],    # runs off the bottom-right: empty bins
        [0, 300, 10, 500, 60],      # entirely right of the map: all bins empty
        [0, 100, 100, 101, 101],    # tiny: 1x1 cell
        [0, 90, 80, 70, 60],        # inverted (x2 < x1): forced to 1x1
        [0, 17.3, 33.9, 150.2, 66.6],
        [0, 0, 0, 15, 15],
        [0, 7.99, 8.0, 8.01, 24.0],
    ], dtype=torch.float32)
    out = {"x": x[0], "rois": rois[:, 1:]}
    for ph, pw in [(4, 3), (7, 7)]:
        xg = x.clone().requires_grad_(True)
        pooled = roi_pool(xg, rois, (ph, pw), scale)             # [P, C, ph, pw]
        _, argmax = torch.ops.torchvision.roi_pool(x, rois, scale, ph, pw)
        grad_out = torch.randn(pooled.shape, generator=g)
        pooled.backward(grad_out)
        out[f"out_{ph}x{pw}"] = pooled
        out[f"argmax_{ph}x{pw}"] = argmax.float()
        out[f"grad_out_{ph}x{pw}"] = grad_out
        out[f"grad_x_{ph}x{pw}"] = xg.grad[0]
    save("roi_pool", out)


def proposals_fixture():
    g = torch.Generator().manual_seed(4)
    image_size = (211, 275)
    fh, fw = 13, 17
    gen = AnchorGenerator(sizes=((128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))
    images = ImageList(torch.zeros(1, 3, *image_size), [image_size])
    anchors = gen(images, [torch.zeros(1, 1, fh, fw)])[0]
    n = anchors.shape[0]
    logits = torch.randn(n, generator=g) * 2.0
    deltas = torch.randn(n, 4, generator=g) * 0.5
    out = {"anchors": anchors, "logits": logits, "deltas": deltas}
    configs = {
        # torchvision test-time defaults; ~1900 boxes reach NMS (its per-level path).
        "testing": dict(pre=6000, post=300, nms=0.7, min_size=1e-3, score=0.0),
        # top-k below N, small-box removal and a score threshold; < 1000 boxes reach NMS.
        "custom": dict(pre=500, post=50, nms=0.6, min_size=40.0, score=0.4),
    }
    for name, cfg in configs.items():
        rpn = RegionProposalNetwork(
            gen, RPNHead(1, gen.num_anchors_per_location()[0]),
            fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
            pre_nms_top_n=dict(training=cfg["pre"], testing=cfg["pre"]),
            post_nms_top_n=dict(training=cfg["post"], testing=cfg["post"]),
            nms_thresh=cfg["nms"], score_thresh=cfg["score"],
        ).eval()
        rpn.min_size = cfg["min_size"]
        proposals = rpn.box_coder.decode(deltas, [anchors]).view(1, -1, 4)
        boxes, scores = rpn.filter_proposals(proposals, logits.view(1, -1), [image_size], [n])
        out[f"{name}_boxes"] = boxes[0]
        out[f"{name}_scores"] = scores[0]
        out[f"{name}_config"] = torch.tensor(
            [cfg["pre"], cfg["post"], cfg["nms"], cfg["min_size"], cfg["score"]], dtype=torch.float32)
    save("proposals", out)


def postprocess_fixture():
    g = torch.Generator().manual_seed(5)
    image_size = (211, 275)
    out = {}
    # "small": 300 proposals, K = 3, logits quantised to halves (exact score ties; <= 1000
    # candidates, so torchvision's stable coordinate-trick NMS path).
    # "big": 700 proposals, K = 3 (> 1000 candidates: the per-class path), no ties.
    # "k2": 400 proposals, K = 2 (the study's case: background + mitochondrion).
    for name, p, k, quantise in [("small", 300, 3, True), ("big", 700, 3, False), ("k2", 400, 2, False)]:
        props = random_boxes(g, p, 275, 211, min_side=3.0, max_side=120.0)
        logits = torch.randn(p, k, generator=g) * 2.0
        if quantise:
            logits = torch.round(logits * 2) / 2
        else:
            logits[:, 0] -= 1.5  # more foreground candidates
        reg = torch.randn(p, 4 * k, generator=g)
        reg[:5] *= 30.0  # some boxes leave the image / get clamped / become tiny after clipping
        heads = RoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, None,
                         score_thresh=0.05, nms_thresh=0.5, detections_per_img=100)
        boxes, scores, labels = heads.postprocess_detections(logits, reg, [props], [image_size])
        out.update({
            f"{name}_proposals": props, f"{name}_logits": logits, f"{name}_regression": reg,
            f"{name}_boxes": boxes[0], f"{name}_scores": scores[0], f"{name}_labels": labels[0].float(),
        })
    save("postprocess", out)


if __name__ == "__main__":
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    print("torch", torch.__version__, "torchvision", torchvision.__version__)
    anchors()
    box_coder()
    nms_fixture()
    roi_pool_fixture()
    proposals_fixture()
    postprocess_fixture()
