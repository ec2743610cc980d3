#!/usr/bin/env python3
"""PyTorch/torchvision reference for cryodet's Faster R-CNN (ResNet-50 C4).

The model is assembled from torchvision's own parts, so the reference IS torchvision:

    GeneralizedRCNN(
      transform = IdentityTransform          (no resize, no normalisation: input is pre-normalised,
                                              image_sizes = [(H, W)])
      backbone  = Sequential(conv1 7x7/2, bn1 FrozenBatchNorm2d, relu, maxpool 3/2/1,
                             layer1, layer2, layer3)   of torchvision.models.resnet.Bottleneck
                                                       (norm_layer = FrozenBatchNorm2d, eps 1e-5)
      rpn       = torchvision RegionProposalNetwork(
                    AnchorGenerator(((128, 256, 512),), ((0.5, 1.0, 2.0),)),
                    C4RPNHead: 3x3 conv C3 -> R (+bias) + ReLU, 1x1 -> A (cls_logits), 1x1 -> 4A,
                    pre_nms_top_n 6000, post_nms_top_n 300, nms 0.7, score_thresh 0, min_size 1e-3)
      roi_heads = torchvision RoIHeads(
                    box_roi_pool  = torchvision.ops.roi_pool 7x7, spatial_scale 1/16 on layer3,
                    box_head      = layer4 (first block stride 2) + spatial mean -> [P, C4],
                    box_predictor = torchvision FastRCNNPredictor (cls_score, bbox_pred),
                    box coder weights (10, 10, 5, 5), score > 0.05, nms 0.5, 100 detections))

Run `python3 tools/torch_reference.py --help`; the commands that make the committed fixtures:

    python3 tools/torch_reference.py fixture --config small --seed 1 --size 75x101 \
        --out-weights tests/fixtures/model/weights_small.safetensors \
        --out tests/fixtures/model/trace_small.safetensors
    python3 tools/torch_reference.py fixture --weights tests/fixtures/model/weights_small.safetensors \
        --size 130x97 --input-seed 2001 --out tests/fixtures/model/trace_small_130x97.safetensors

Other sub-commands: `trace` (reference trace for any weight file and input), `random-weights`,
`random-input`, `stats` (activation statistics of a weight file on an input).

Weight-file names (f32 unless written with --half by the converter) are cryodet's, see
`save_weights`; safetensors metadata `classes` = "background,...", `bn_eps` = "1e-5" (default).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn
import torchvision
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.resnet import Bottleneck
from torchvision.ops.misc import FrozenBatchNorm2d
from safetensors.torch import load_file, save_file
from safetensors import safe_open

# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

ANCHOR_SIZES = ((128, 256, 512),)
ASPECT_RATIOS = ((0.5, 1.0, 2.0),)
NUM_ANCHORS = 9
ROI_SIZE = 7
FEATURE_STRIDE = 16
DEFAULT_BN_EPS = 1e-5


@dataclass(frozen=True)
class Widths:
    """Channel widths. Bottleneck output channels = 4 * planes (torchvision expansion)."""

    stem: int  # conv1 output channels (64 in ResNet-50)
    planes: tuple  # planes of layer1..layer4 (64, 128, 256, 512 in ResNet-50)
    rpn: int  # RPN 3x3 conv output channels (512)


CONFIGS = {
    # ResNet-50 C4: 64; 64/256, 128/512, 256/1024, 512/2048; blocks 3, 4, 6, 3; RPN 512; K = 2.
    "full": dict(
        widths=Widths(stem=64, planes=(64, 128, 256, 512), rpn=512),
        blocks=(3, 4, 6, 3),
        classes=("__background__", "mitochondria"),
    ),
    # Reduced network for committed fixtures: same structure and names, narrow and shallow.
    # stem 8, layer outputs 16, 24, 32, 64, RPN 20, K = 3: all widths distinct (catches transposed
    # axes); layer2 has a single block (downsample-only stage). layer3 is kept at 32 channels so
    # the roi_pool trace [P, 32, 7, 7] stays small.
    "small": dict(
        widths=Widths(stem=8, planes=(4, 6, 8, 16), rpn=20),
        blocks=(2, 1, 2, 2),
        classes=("__background__", "mitochondria", "vesicle"),
    ),
}

# --------------------------------------------------------------------------------------------
# Model: torchvision parts
# --------------------------------------------------------------------------------------------


def _make_layer(inplanes: int, planes: int, blocks: int, stride: int, eps: float) -> nn.Sequential:
    """Exactly torchvision.models.resnet.ResNet._make_layer (groups 1, base width 64, no dilation)."""
    norm = lambda c: FrozenBatchNorm2d(c, eps=eps)  # noqa: E731
    out = planes * Bottleneck.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, out, kernel_size=1, stride=stride, bias=False),
            norm(out),
        )
    layers = [Bottleneck(inplanes, planes, stride, downsample, norm_layer=norm)]
    for _ in range(1, blocks):
        layers.append(Bottleneck(out, planes, norm_layer=norm))
    return nn.Sequential(*layers)


def _backbone(widths: Widths, blocks, eps: float) -> nn.Sequential:
    """ResNet stem + layer1..3 (torchvision.models.resnet.ResNet's modules and names)."""
    p = widths.planes
    e = Bottleneck.expansion
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, widths.stem, kernel_size=7, stride=2, padding=3, bias=False),
            bn1=FrozenBatchNorm2d(widths.stem, eps=eps),
            relu=nn.ReLU(inplace=True),
            maxpool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            layer1=_make_layer(widths.stem, p[0], blocks[0], 1, eps),
            layer2=_make_layer(p[0] * e, p[1], blocks[1], 2, eps),
            layer3=_make_layer(p[1] * e, p[2], blocks[2], 2, eps),
        )
    )


class C4RPNHead(nn.Module):
    """torchvision.models.detection.rpn.RPNHead with a narrower 3x3 conv (C3 -> R instead of C3 -> C3).

    torchvision 0.29's RPNHead keeps the width (conv = Sequential(Conv2dNormActivation(C, C, 3,
    norm_layer=None)), names head.conv.0.0.{weight,bias}); the C4 model here uses 1024 -> 512.
    forward is RPNHead.forward: t = relu(conv(x)); logits = cls_logits(t); deltas = bbox_pred(t).
    """

    def __init__(self, in_channels: int, mid_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, mid_channels, kernel_size=3, stride=1, padding=1)
        self.cls_logits = nn.Conv2d(mid_channels, num_anchors, kernel_size=1, stride=1)
        self.bbox_pred = nn.Conv2d(mid_channels, num_anchors * 4, kernel_size=1, stride=1)

    def forward(self, x):
        logits, bbox_reg = [], []
        for feature in x:
            t = torch.relu(self.conv(feature))
            logits.append(self.cls_logits(t))
            bbox_reg.append(self.bbox_pred(t))
        return logits, bbox_reg


class RoIPoolC4(nn.Module):
    """box_roi_pool for RoIHeads: torchvision.ops.roi_pool (max pooling) on the single C4 map."""

    def forward(self, features, proposals, image_shapes):
        return torchvision.ops.roi_pool(features["0"], proposals, (ROI_SIZE, ROI_SIZE), 1.0 / FEATURE_STRIDE)


class C4BoxHead(nn.Module):
    """box_head: ResNet layer4 (first block stride 2) then the spatial mean -> [P, 4 * planes4]."""

    def __init__(self, inplanes: int, planes: int, blocks: int, eps: float) -> None:
        super().__init__()
        self.layer4 = _make_layer(inplanes, planes, blocks, 2, eps)

    def forward(self, x):
        return self.layer4(x).mean(dim=(2, 3))


class IdentityTransform(nn.Module):
    """Replaces GeneralizedRCNNTransform: no normalisation, no resize, no padding to 32."""

    def forward(self, images, targets=None):
        tensors = torch.stack(list(images))
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        return ImageList(tensors, sizes), targets

    def postprocess(self, result, image_shapes, original_image_sizes):
        return result


def build(widths: Widths, blocks, num_classes: int, eps: float = DEFAULT_BN_EPS) -> GeneralizedRCNN:
    """The torchvision model (eval mode) for the given widths, blocks per stage, classes (incl. bg)."""
    e = Bottleneck.expansion
    c3 = widths.planes[2] * e
    c4 = widths.planes[3] * e
    rpn = RegionProposalNetwork(
        AnchorGenerator(ANCHOR_SIZES, ASPECT_RATIOS),
        C4RPNHead(c3, widths.rpn, NUM_ANCHORS),
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_top_n=dict(training=12000, testing=6000),
        post_nms_top_n=dict(training=2000, testing=300),
        nms_thresh=0.7,
        score_thresh=0.0,
    )
    roi_heads = RoIHeads(
        RoIPoolC4(),
        C4BoxHead(c3, widths.planes[3], blocks[3], eps),
        FastRCNNPredictor(c4, num_classes),
        fg_iou_thresh=0.5,
        bg_iou_thresh=0.5,
        batch_size_per_image=512,
        positive_fraction=0.25,
        bbox_reg_weights=None,  # (10, 10, 5, 5)
        score_thresh=0.05,
        nms_thresh=0.5,
        detections_per_img=100,
    )
    model = GeneralizedRCNN(_backbone(widths, blocks, eps), rpn, roi_heads, IdentityTransform())
    return model.eval()


def build_config(name: str, eps: float = DEFAULT_BN_EPS) -> GeneralizedRCNN:
    c = CONFIGS[name]
    return build(c["widths"], c["blocks"], len(c["classes"]), eps)


# --------------------------------------------------------------------------------------------
# Random weights of realistic scale
# --------------------------------------------------------------------------------------------


CALIBRATION_SIZE = (160, 160)
CALIBRATION_SEED = 12345
RPN_SIZE_BIAS = -0.6  # added to the dw, dh biases of the random RPN


@torch.no_grad()
def randomize(model: GeneralizedRCNN, seed: int) -> None:
    """Random weights for which activations stay O(1) through the network and scores vary.

    - convs: Kaiming normal, fan_in, ReLU gain (variance-preserving forward), biases N(0, 0.1);
    - FrozenBN: weight ~ U(0.5, 1.5) (U(0.2, 0.5) on each block's last bn3, so that residual sums
      grow slowly), bias ~ N(0, 0.1), running_mean ~ N(0, 0.1), running_var ~ U(0.5, 1.5);
    - output layers calibrated on a fixed random input (CALIBRATION_SIZE / CALIBRATION_SEED):
      RPN objectness logits std 1.5 (sigmoid scores spread over (0, 1)); RPN deltas std 0.3 with
      dw, dh biased by RPN_SIZE_BIAS = -0.6 (proposals ~0.55 x the 128..512 px anchors, so small images
      still get many distinct proposals); class logits std 1.5 (several classes above 0.05); class
      box deltas std 1 (divided by the coder weights 10, 10, 5, 5).
    torchvision's own head init (std 0.01 / 0.001, biases 0) would make every score nearly equal.
    """
    g = torch.Generator().manual_seed(seed)

    def normal(t, std, mean=0.0):
        t.copy_(torch.randn(t.shape, generator=g) * std + mean)

    def uniform(t, lo, hi):
        t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)

    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            normal(m.weight, math.sqrt(2.0 / m.weight[0].numel()))
            if m.bias is not None:
                normal(m.bias, 0.1)
        elif isinstance(m, FrozenBatchNorm2d):
            if name.endswith("bn3"):
                uniform(m.weight, 0.2, 0.5)
            else:
                uniform(m.weight, 0.5, 1.5)
            normal(m.bias, 0.1)
            normal(m.running_mean, 0.1)
            uniform(m.running_var, 0.5, 1.5)
        elif isinstance(m, nn.Linear):
            normal(m.weight, 1.0 / math.sqrt(m.in_features))
            normal(m.bias, 0.1)

    x = random_input(*CALIBRATION_SIZE, CALIBRATION_SEED)
    # Stage-wise rescaling: y = relu(a) is positively homogeneous, so scaling the stem's bn1 and,
    # in each stage's first block, both bn3 and the downsample bn (weight and bias) by s scales
    # that output by s exactly. Set each to std 1 on the calibration input; within a stage the
    # residual sums then grow only over that stage's blocks.
    bb = model.backbone

    def rescale(bns, y):
        s = 1.0 / y.std()
        for bn in bns:
            bn.weight.mul_(s)
            bn.bias.mul_(s)

    rescale([bb.bn1], bb.relu(bb.bn1(bb.conv1(x))))
    y = bb.maxpool(bb.relu(bb.bn1(bb.conv1(x))))
    for layer in (bb.layer1, bb.layer2, bb.layer3, model.roi_heads.box_head.layer4):
        rescale([layer[0].bn3, layer[0].downsample[1]], layer[0](y))
        y = layer(y) if layer is not model.roi_heads.box_head.layer4 else y

    head = model.rpn.head
    t = torch.relu(head.conv(bb(x)))

    def calibrate(layer, inp, std, bias_std):
        normal(layer.weight, 1.0)
        normal(layer.bias, bias_std)
        out = layer(inp) - layer.bias.reshape((1, -1) + (1,) * (inp.dim() - 2))
        layer.weight.mul_(std / out.std())

    calibrate(head.cls_logits, t, 1.5, 0.3)
    calibrate(head.bbox_pred, t, 0.3, 0.05)
    head.bbox_pred.bias.view(-1, 4)[:, 2:] += RPN_SIZE_BIAS  # channel a * 4 + (dx, dy, dw, dh)

    pooled = {}
    h = model.roi_heads.box_head.register_forward_hook(lambda _m, _i, o: pooled.setdefault("x", o))
    try:
        model([x[0]])
    finally:
        h.remove()
    pred = model.roi_heads.box_predictor
    calibrate(pred.cls_score, pooled["x"], 1.5, 0.3)
    calibrate(pred.bbox_pred, pooled["x"], 1.0, 0.1)


def random_input(h: int, w: int, seed: int) -> torch.Tensor:
    """A normalised [1, 3, H, W] image: smooth background noise plus a few bright ellipses."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, h, w, generator=g)
    x = torch.nn.functional.avg_pool2d(x, 5, 1, 2, count_include_pad=False) * 2.0
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    for _ in range(max(2, (h * w) // 8000)):
        cy, cx = torch.rand(2, generator=g) * torch.tensor([h, w])
        ry, rx = 4 + torch.rand(2, generator=g) * min(h, w) / 8
        amp = 1.0 + torch.rand(1, generator=g)
        blob = torch.exp(-(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2))
        x = x + amp * blob
    return ((x - x.mean()) / x.std()).contiguous()  # normalised: mean 0, std 1


# --------------------------------------------------------------------------------------------
# Weight files (cryodet names)
# --------------------------------------------------------------------------------------------

# torchvision module path prefix -> cryodet weight-name prefix
_PREFIXES = (
    ("backbone.", "backbone."),
    ("rpn.head.", "rpn."),
    ("roi_heads.box_head.", "head."),
    ("roi_heads.box_predictor.", "head."),
)


def to_cryodet_name(tv_name: str) -> str:
    for a, b in _PREFIXES:
        if tv_name.startswith(a):
            return b + tv_name[len(a) :]
    raise KeyError(f"no cryodet name for {tv_name}")


def state_dict_cryodet(model: GeneralizedRCNN) -> "OrderedDict[str, torch.Tensor]":
    out = OrderedDict()
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        out[to_cryodet_name(k)] = v.detach().to(torch.float32).contiguous().clone()
    return out


def save_weights(model: GeneralizedRCNN, path: str, classes, bn_eps: float | None = None, half: bool = False) -> None:
    """Write the model's weights under cryodet's names (f32, or f16 with half=True)."""
    classes = list(classes)
    k = model.roi_heads.box_predictor.cls_score.out_features
    if len(classes) != k:
        raise ValueError(f"{len(classes)} class names for {k} outputs")
    if any("," in c for c in classes):
        raise ValueError("class names must not contain ','")
    if bn_eps is None:
        bn_eps = model.backbone.bn1.eps
    sd = state_dict_cryodet(model)
    if half:
        sd = OrderedDict((n, t.to(torch.float16)) for n, t in sd.items())
    save_file(sd, path, metadata={"classes": ",".join(classes), "bn_eps": _fmt_eps(bn_eps)})


def _fmt_eps(eps: float) -> str:
    """1e-05 -> "1e-5", 0 -> "0" (any float syntax parses; this is the documented spelling)."""
    return "0" if eps == 0 else f"{eps:g}".replace("e-0", "e-").replace("e+0", "e+")


def _blocks_of(names, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"\.(\d+)\.conv1\.weight$")
    idx = [int(m.group(1)) for n in names if (m := pat.match(n))]
    if not idx:
        raise ValueError(f"no blocks under {prefix}")
    if sorted(idx) != list(range(len(idx))):
        raise ValueError(f"non-contiguous blocks under {prefix}: {sorted(idx)}")
    return len(idx)


def load_weights(path: str):
    """Inverse of save_weights: (model, classes). Widths, blocks, K and bn_eps are read from the file."""
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    sd = {k: v.to(torch.float32) for k, v in load_file(path).items()}
    names = list(sd)
    planes = tuple(
        sd[f"{pre}.0.conv1.weight"].shape[0]
        for pre in ("backbone.layer1", "backbone.layer2", "backbone.layer3", "head.layer4")
    )
    blocks = tuple(_blocks_of(names, pre) for pre in ("backbone.layer1", "backbone.layer2", "backbone.layer3", "head.layer4"))
    widths = Widths(stem=sd["backbone.conv1.weight"].shape[0], planes=planes, rpn=sd["rpn.conv.weight"].shape[0])
    k = sd["head.cls_score.weight"].shape[0]
    eps = float(meta.get("bn_eps", DEFAULT_BN_EPS))
    classes = meta.get("classes", ",".join(["__background__"] + [f"class{i}" for i in range(1, k)])).split(",")
    if len(classes) != k:
        raise ValueError(f"{path}: metadata lists {len(classes)} classes, cls_score has {k} outputs")
    model = build(widths, blocks, k, eps)
    tv = OrderedDict((name, None) for name in model.state_dict() if not name.endswith("num_batches_tracked"))
    missing = [n for n in tv if to_cryodet_name(n) not in sd]
    expected = {to_cryodet_name(n) for n in tv}
    unexpected = [n for n in sd if n not in expected]
    if missing or unexpected:
        raise ValueError(f"{path}: missing {missing[:5]}..., unexpected {unexpected[:5]}...")
    model.load_state_dict({n: sd[to_cryodet_name(n)] for n in tv}, strict=False)
    return model.eval(), classes


# --------------------------------------------------------------------------------------------
# Trace
# --------------------------------------------------------------------------------------------

TRACE_NAMES = (
    "input",
    "backbone.stem",
    "backbone.layer1",
    "backbone.layer2",
    "backbone.layer3",
    "rpn.cls_logits",
    "rpn.bbox_pred",
    "rpn.proposals",
    "roi_pool",
    "head.pooled",
    "head.cls_score",
    "head.bbox_pred",
    "detections.boxes",
    "detections.scores",
    "detections.labels",
)


@torch.no_grad()
def trace(model: GeneralizedRCNN, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
    """Run the torchvision model once on x [1, 3, H, W]; forward hooks record the trace tensors.

    Returns f32 tensors named as in TRACE_NAMES (labels converted from int64 to f32).
    """
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != 3:
        raise ValueError(f"input must be [1, 3, H, W], got {list(x.shape)}")
    rec = OrderedDict()

    def put(name):
        def hook(_m, _inp, out):
            rec[name] = out

        return hook

    bb = model.backbone
    hooks = [
        bb.maxpool.register_forward_hook(put("backbone.stem")),
        bb.layer1.register_forward_hook(put("backbone.layer1")),
        bb.layer2.register_forward_hook(put("backbone.layer2")),
        bb.layer3.register_forward_hook(put("backbone.layer3")),
        model.rpn.head.register_forward_hook(put("_rpn_head")),
        model.rpn.register_forward_hook(put("_rpn")),
        model.roi_heads.box_roi_pool.register_forward_hook(put("roi_pool")),
        model.roi_heads.box_head.register_forward_hook(put("head.pooled")),
        model.roi_heads.box_predictor.register_forward_hook(put("_predictor")),
    ]
    try:
        x = x.to(torch.float32).contiguous()
        det = model([x[0]])[0]
    finally:
        for h in hooks:
            h.remove()
    out = OrderedDict()
    out["input"] = x
    for n in ("backbone.stem", "backbone.layer1", "backbone.layer2", "backbone.layer3"):
        out[n] = rec[n]
    logits, deltas = rec["_rpn_head"]
    out["rpn.cls_logits"] = logits[0]
    out["rpn.bbox_pred"] = deltas[0]
    out["rpn.proposals"] = rec["_rpn"][0][0]
    out["roi_pool"] = rec["roi_pool"]
    out["head.pooled"] = rec["head.pooled"]
    out["head.cls_score"], out["head.bbox_pred"] = rec["_predictor"]
    out["detections.boxes"] = det["boxes"]
    out["detections.scores"] = det["scores"]
    out["detections.labels"] = det["labels"]
    return OrderedDict((k, v.detach().to(torch.float32).contiguous().clone()) for k, v in out.items())


def save_trace(t, path: str, classes=None) -> None:
    meta = {"image_size": f"{t['input'].shape[2]}x{t['input'].shape[3]}", "torch": torch.__version__,
            "torchvision": torchvision.__version__}
    if classes is not None:
        meta["classes"] = ",".join(classes)
    save_file(dict(t), path, metadata=meta)


def load_input(path: str) -> torch.Tensor:
    t = load_file(path)
    if "input" in t:
        x = t["input"]
    elif len(t) == 1:
        x = next(iter(t.values()))
    else:
        raise ValueError(f"{path}: no tensor named 'input' among {sorted(t)}")
    x = x.to(torch.float32)
    if x.dim() == 3:
        x = x[None]
    return x


# --------------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------------


def _ties(v: torch.Tensor) -> int:
    """Number of values equal to another value in v (score ties make NMS/top-k order ambiguous)."""
    if v.numel() < 2:
        return 0
    s = torch.sort(v.flatten())[0]
    eq = s[1:] == s[:-1]
    return int(eq.sum())


@torch.no_grad()
def tie_hazards(model: GeneralizedRCNN, t) -> dict:
    """Places where torchvision's result depends on how equal scores are ordered.

    torch.topk and torch.sort (used by nms) do not order ties by index, so a reference is only
    reproducible by another implementation where no tie decides anything:
      rpn_nms: equal proposal scores (sigmoid of the top-k logits) on two boxes with IoU > 0.7;
      rpn_topk: a tie at the pre_nms_top_n boundary;
      det_nms: equal class scores on two same-class candidates with IoU > 0.5;
      det_cut: a tie at the detections_per_img boundary;
      det_order: equal scores among the kept detections (harmless if the comparison sorts ties).
    """
    from torchvision.ops import clip_boxes_to_image, remove_small_boxes

    h, w = t["input"].shape[2:]
    out = {}
    # RPN: all anchors decoded; top-k on logits
    a = t["rpn.cls_logits"].permute(0, 2, 3, 1).reshape(-1)
    k = min(model.rpn._pre_nms_top_n["testing"], a.numel())
    vals = a.sort(descending=True)[0]
    out["rpn_topk"] = int(k < a.numel() and vals[k - 1] == vals[k])
    anchors = model.rpn.anchor_generator(ImageList(t["input"], [(h, w)]), [t["backbone.layer3"]])[0]
    d = t["rpn.bbox_pred"].reshape(1, -1, 4, *t["rpn.bbox_pred"].shape[2:]).permute(0, 3, 4, 1, 2).reshape(-1, 4)
    boxes = clip_boxes_to_image(model.rpn.box_coder.decode_single(d, anchors), (h, w))
    top = a.topk(k)[1]
    sc, bx = torch.sigmoid(a[top]), boxes[top]
    out["rpn_nms"] = _tied_overlaps(sc, bx, model.rpn.nms_thresh)
    # RoI head candidates
    rh = model.roi_heads
    props = t["rpn.proposals"]
    scores = torch.softmax(t["head.cls_score"], -1)
    pb = clip_boxes_to_image(rh.box_coder.decode(t["head.bbox_pred"], [props]).reshape(props.shape[0], -1, 4), (h, w))
    n = 0
    all_sc = []
    for c in range(1, scores.shape[1]):
        s, b = scores[:, c], pb[:, c]
        keep = s > rh.score_thresh
        s, b = s[keep], b[keep]
        keep = remove_small_boxes(b, 1e-2)
        s, b = s[keep], b[keep]
        n += _tied_overlaps(s, b, rh.nms_thresh)
        all_sc.append(s)
    out["det_nms"] = n
    ds = t["detections.scores"]
    out["det_order"] = _ties(ds)
    cand = torch.cat(all_sc) if all_sc else torch.zeros(0)
    # boundary: the lowest kept score also appears among dropped candidates (approximation: any
    # candidate outside the kept set with exactly the cut score)
    cut = 0
    if ds.numel() == rh.detections_per_img:
        cut = int((cand == ds[-1]).sum() > (ds == ds[-1]).sum())
    out["det_cut"] = cut
    return out


def nms_stable(boxes: torch.Tensor, scores: torch.Tensor, thresh: float) -> torch.Tensor:
    """torchvision's CPU nms kernel (csrc/ops/cpu/nms_kernel.cpp) with a *stable* score order.

    Same f32 arithmetic: area = (x2 - x1) * (y2 - y1); inter = max(0, xx2 - xx1) * max(0, yy2 - yy1);
    ovr = inter / (area_i + area_j - inter); suppress j when (double) ovr > thresh. Only the order
    of equal scores differs: lower index first (torch's sort leaves it unspecified for n > 16).
    """
    order = torch.sort(scores, descending=True, stable=True)[1]
    b = boxes[order]
    x1, y1, x2, y2 = b.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    n = b.shape[0]
    suppressed = torch.zeros(n, dtype=torch.bool)
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        if i + 1 == n:
            break
        xx1 = torch.maximum(x1[i], x1[i + 1 :])
        yy1 = torch.maximum(y1[i], y1[i + 1 :])
        xx2 = torch.minimum(x2[i], x2[i + 1 :])
        yy2 = torch.minimum(y2[i], y2[i + 1 :])
        inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
        ovr = inter / (area[i] + area[i + 1 :] - inter)
        suppressed[i + 1 :] |= ovr.double() > thresh
    return order[torch.tensor(keep, dtype=torch.int64)]


def batched_nms_stable(boxes, scores, idxs, thresh):
    """torchvision.ops.batched_nms (both of its code paths) with nms_stable."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    if boxes.numel() > 4000:  # _batched_nms_vanilla
        keep_mask = torch.zeros_like(scores, dtype=torch.bool)
        for c in torch.unique(idxs):
            cur = torch.where(idxs == c)[0]
            keep_mask[cur[nms_stable(boxes[cur], scores[cur], thresh)]] = True
        k = torch.where(keep_mask)[0]
        return k[torch.sort(scores[k], descending=True, stable=True)[1]]
    # _batched_nms_coordinate_trick: boxes of class c shifted by c * (max + 1)
    offsets = idxs.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
    return nms_stable(boxes + offsets[:, None], scores, thresh)


@torch.no_grad()
def stable_detect(model: GeneralizedRCNN, x: torch.Tensor):
    """stable_trace's (proposals [P, 4], boxes [D, 4], scores [D], labels [D] as f32)."""
    t = stable_trace(model, x)
    return t["rpn.proposals"], t["detections.boxes"], t["detections.scores"], t["detections.labels"]


@torch.no_grad()
def stable_trace(model: GeneralizedRCNN, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
    """The test-time pipeline re-done with stable tie order (lower index first) everywhere.

    RPN: stable top-k of the logits, decode, clip, remove_small_boxes, score >= 0, batched NMS,
    post_nms_top_n; RoI heads on those proposals; postprocess_detections with stable NMS.
    Where no score ties decide anything, the result equals torchvision's. Returns the trace
    tensors from rpn.proposals on (rpn.proposals, roi_pool, head.*, detections.*).
    """
    from torchvision.ops import clip_boxes_to_image, remove_small_boxes

    h, w = x.shape[2:]
    feat = model.backbone(x)
    rpn = model.rpn
    logits, deltas = rpn.head([feat])
    a = logits[0].permute(0, 2, 3, 1).reshape(-1)
    d = deltas[0].reshape(1, -1, 4, *deltas[0].shape[2:]).permute(0, 3, 4, 1, 2).reshape(-1, 4)
    anchors = rpn.anchor_generator(ImageList(x, [(h, w)]), [feat])[0]
    boxes = rpn.box_coder.decode_single(d, anchors)
    k = min(rpn._pre_nms_top_n["testing"], a.numel())
    top = torch.sort(a, descending=True, stable=True)[1][:k]
    boxes, scores = clip_boxes_to_image(boxes[top], (h, w)), torch.sigmoid(a[top])
    keep = remove_small_boxes(boxes, rpn.min_size)
    boxes, scores = boxes[keep], scores[keep]
    keep = torch.where(scores >= rpn.score_thresh)[0]
    boxes, scores = boxes[keep], scores[keep]
    keep = batched_nms_stable(boxes, scores, torch.zeros(len(boxes), dtype=torch.int64), rpn.nms_thresh)
    props = boxes[keep[: rpn._post_nms_top_n["testing"]]]

    rh = model.roi_heads
    f = OrderedDict([("0", feat)])
    pooled_map = rh.box_roi_pool(f, [props], [(h, w)])
    pooled = rh.box_head(pooled_map)
    cls, reg = rh.box_predictor(pooled)
    pb = clip_boxes_to_image(rh.box_coder.decode(reg, [props]), (h, w))
    sc = torch.softmax(cls, -1)
    nc = sc.shape[1]
    labels = torch.arange(nc).view(1, -1).expand_as(sc)
    pb, sc, labels = pb[:, 1:].reshape(-1, 4), sc[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
    i = torch.where(sc > rh.score_thresh)[0]
    pb, sc, labels = pb[i], sc[i], labels[i]
    i = remove_small_boxes(pb, 1e-2)
    pb, sc, labels = pb[i], sc[i], labels[i]
    i = batched_nms_stable(pb, sc, labels, rh.nms_thresh)[: rh.detections_per_img]
    return OrderedDict(
        [
            ("rpn.proposals", props),
            ("roi_pool", pooled_map),
            ("head.pooled", pooled),
            ("head.cls_score", cls),
            ("head.bbox_pred", reg),
            ("detections.boxes", pb[i]),
            ("detections.scores", sc[i]),
            ("detections.labels", labels[i].to(torch.float32)),
        ]
    )


def canonical_order(boxes, scores, labels) -> torch.Tensor:
    """Permutation sorting detections by score (desc), ties by label, then x1, y1, x2, y2."""
    keys = [boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], labels, -scores]
    perm = torch.arange(scores.numel())
    for key in keys:  # least significant first, stable sorts
        perm = perm[torch.sort(key[perm], stable=True)[1]]
    return perm


@torch.no_grad()
def agrees_with_stable(model: GeneralizedRCNN, t) -> bool:
    """True when torchvision's proposals and detections equal the stable-tie pipeline's exactly
    (detections compared after canonical_order), i.e. the trace does not depend on tie order."""
    props, b, s, l = stable_detect(model, t["input"])
    if props.shape != t["rpn.proposals"].shape or not torch.equal(props, t["rpn.proposals"]):
        return False
    tb, ts, tl = t["detections.boxes"], t["detections.scores"], t["detections.labels"]
    if b.shape != tb.shape:
        return False
    p, q = canonical_order(b, s, l), canonical_order(tb, ts, tl)
    return torch.equal(b[p], tb[q]) and torch.equal(s[p], ts[q]) and torch.equal(l[p], tl[q])


def _tied_overlaps(scores: torch.Tensor, boxes: torch.Tensor, thresh: float) -> int:
    """Pairs of boxes with equal scores and IoU > thresh."""
    if scores.numel() < 2:
        return 0
    from torchvision.ops import box_iou

    same = scores[:, None] == scores[None, :]
    same.fill_diagonal_(False)
    if not bool(same.any()):
        return 0
    iou = box_iou(boxes, boxes)
    return int((same & (iou > thresh)).triu().sum())


@torch.no_grad()
def report(model: GeneralizedRCNN, t, file=sys.stdout) -> None:
    """Print activation statistics and the proposal/detection counts of a trace."""
    print("tensor                 shape                  mean       std        max|x|", file=file)
    for k, v in t.items():
        if v.numel() == 0:
            print(f"{k:22s} {str(list(v.shape)):22s} (empty)", file=file)
            continue
        print(f"{k:22s} {str(list(v.shape)):22s} {v.mean().item():+.4f}   {v.std().item() if v.numel() > 1 else 0:.4f}"
              f"     {v.abs().max().item():.4f}", file=file)
    # RPN candidates before NMS (logits top-k), and score ties
    logits = t["rpn.cls_logits"]
    a = logits.permute(0, 2, 3, 1).reshape(-1)
    k = min(model.rpn._pre_nms_top_n["testing"], a.numel())
    top = a.topk(k)[0]
    print(f"anchors {a.numel()}, pre-NMS candidates {k}, logit ties among them {_ties(top)}, "
          f"sigmoid ties {_ties(torch.sigmoid(top))}", file=file)
    props = t["rpn.proposals"]
    print(f"proposals {props.shape[0]} (post_nms_top_n {model.rpn._post_nms_top_n['testing']})", file=file)
    probs = torch.softmax(t["head.cls_score"], -1)[:, 1:]
    print(f"class scores > 0.05: {int((probs > 0.05).sum())} of {probs.numel()}, ties {_ties(probs)}", file=file)
    labels = t["detections.labels"]
    counts = {int(c): int((labels == c).sum()) for c in labels.unique()} if labels.numel() else {}
    sc = t["detections.scores"]
    rng = f"[{sc.min().item():.4f}, {sc.max().item():.4f}]" if sc.numel() else "-"
    print(f"detections {labels.numel()}, per label {counts}, score range {rng}", file=file)
    print(f"tie hazards {tie_hazards(model, t)}", file=file)
    print(f"equal to the stable-tie pipeline: {agrees_with_stable(model, t)}", file=file)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _size(s: str):
    m = re.fullmatch(r"(\d+)x(\d+)", s)
    if not m:
        raise argparse.ArgumentTypeError("size must be HxW, e.g. 75x101")
    return int(m.group(1)), int(m.group(2))


def _random_model(config: str, seed: int):
    model = build_config(config)
    randomize(model, seed)
    return model, CONFIGS[config]["classes"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("fixture", help="random weights (or --weights) + random input -> weights and trace files")
    p.add_argument("--config", choices=sorted(CONFIGS), default="small")
    p.add_argument("--seed", type=int, default=1, help="weight seed")
    p.add_argument("--input-seed", type=int, default=None, help="input seed (default: seed + 1000)")
    p.add_argument("--size", type=_size, default=(75, 101), help="HxW")
    p.add_argument("--weights", help="use this weight file instead of random weights")
    p.add_argument("--out-weights", help="write the random weights here (default: weights_<config>.safetensors "
                   "next to --out)")
    p.add_argument("--out", required=True, help="trace file (includes 'input')")

    p = sub.add_parser("trace", help="reference trace for a weight file and an input file")
    p.add_argument("--weights", required=True)
    p.add_argument("--input", required=True, help="safetensors with 'input' [1,3,H,W]")
    p.add_argument("--out", required=True)

    p = sub.add_parser("random-weights", help="random weights of realistic scale")
    p.add_argument("--config", choices=sorted(CONFIGS), default="full")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True)

    p = sub.add_parser("random-input", help="random normalised input [1,3,H,W] as 'input'")
    p.add_argument("--size", type=_size, required=True, help="HxW")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)

    p = sub.add_parser("stats", help="activation statistics, proposal and detection counts")
    p.add_argument("--weights", required=True)
    p.add_argument("--input", required=True)

    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import os

    for path in (getattr(args, "out", None), getattr(args, "out_weights", None)):
        if path and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)

    if args.cmd == "fixture":
        if not args.weights and not args.out_weights:
            args.out_weights = os.path.join(os.path.dirname(args.out) or ".", f"weights_{args.config}.safetensors")
            print(f"writing the random weights to {args.out_weights}")
        if args.weights:
            model, classes = load_weights(args.weights)
        else:
            model, classes = _random_model(args.config, args.seed)
        if args.out_weights:
            save_weights(model, args.out_weights, classes)
            model, classes = load_weights(args.out_weights)  # trace exactly what was written
        h, w = args.size
        x = random_input(h, w, args.input_seed if args.input_seed is not None else args.seed + 1000)
        t = trace(model, x)
        save_trace(t, args.out, classes)
        report(model, t)
    elif args.cmd == "trace":
        model, classes = load_weights(args.weights)
        t = trace(model, load_input(args.input))
        save_trace(t, args.out, classes)
        report(model, t)
    elif args.cmd == "random-weights":
        model, classes = _random_model(args.config, args.seed)
        save_weights(model, args.out, classes)
    elif args.cmd == "random-input":
        h, w = args.size
        save_file({"input": random_input(h, w, args.seed)}, args.out)
    elif args.cmd == "stats":
        model, _ = load_weights(args.weights)
        report(model, trace(model, load_input(args.input)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
