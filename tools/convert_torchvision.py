#!/usr/bin/env python3
"""Convert torchvision checkpoints to a cryodet weight file (ResNet-50 C4 Faster R-CNN).

    # (a) ImageNet ResNet-50 (a torchvision state dict .pth, e.g. resnet50-0676ba61.pth / -11ad3fa6.pth)
    python3 tools/convert_torchvision.py --resnet50 resnet50.pth \
        --classes __background__,mitochondria --out model.safetensors [--half]
    #     or let torchvision load it (needs the file in the torch hub cache; no download here):
    python3 tools/convert_torchvision.py --torchvision-weights IMAGENET1K_V1 --classes ... --out ...

    # offline self-test (random torchvision resnet50 / fasterrcnn_resnet50_fpn, ~1 min)
    python3 tools/convert_torchvision.py --selftest

    # (b) a torchvision Faster R-CNN checkpoint (state dict, or a dict with "model"/"state_dict")
    python3 tools/convert_torchvision.py --detection fasterrcnn_resnet50_fpn_coco.pth \
        --classes __background__,mitochondria --out model.safetensors

Name mapping (torchvision -> cryodet), applied when the shape fits the C4 model:

    conv1.*, bn1.*, layer1-3.*              -> backbone.*            (ImageNet ResNet state dict)
    layer4.*                                -> head.layer4.*
    fc.*                                    -> dropped (ImageNet classifier)
    backbone.body.{conv1,bn1,layer1-3}.*    -> backbone.*            (detection checkpoints)
    backbone.body.layer4.*                  -> head.layer4.*
    rpn.head.conv.0.0.* / rpn.head.conv.*   -> rpn.conv.*            (only if [R, 1024, 3, 3])
    rpn.head.{cls_logits,bbox_pred}.*       -> rpn.{cls_logits,bbox_pred}.*   (only if 9 / 36 outputs)
    roi_heads.box_predictor.{cls_score,bbox_pred}.*  -> head.{cls_score,bbox_pred}.*  (only if 2048 in, K out)
    *.num_batches_tracked                   -> dropped

What cannot map from torchvision's fasterrcnn_resnet50_fpn (an FPN model, not C4): backbone.fpn.*
(no FPN here), rpn.head.* (256 -> 256 on FPN levels with 3 anchors per location; here 1024 -> R
with 9), roi_heads.box_head.fc6/fc7 (TwoMLPHead on 256x7x7; here layer4 + mean), and
roi_heads.box_predictor.* (1024 inputs, 91 COCO classes; here 2048 and K). Only the ResNet trunk
(conv1 .. layer4) carries over; everything else is freshly initialised and listed.

Fresh initialisation (Detectron's, as the task asks; torchvision's RPNHead also uses std 0.01):
RPN 3x3 conv, cls_logits, bbox_pred ~ N(0, 0.01); cls_score ~ N(0, 0.01); bbox_pred ~ N(0, 0.001);
all biases 0. (torchvision's FastRCNNPredictor itself keeps nn.Linear's default init.)

FrozenBatchNorm eps: metadata `bn_eps` = "1e-5" (torchvision's FrozenBatchNorm2d default, and the
eps of ImageNet training). torchvision sets eps = 0 when it loads its own COCO detection
checkpoints (`overwrite_eps(model, 0.0)` in fasterrcnn_resnet50_fpn), so --detection defaults to
"0"; override with --bn-eps.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import OrderedDict

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference as ref  # noqa: E402

TRUNK = re.compile(r"^(conv1|bn1|layer[1-4])\.")


def load_state_dict(path: str) -> "OrderedDict[str, torch.Tensor]":
    """A state dict from a .pth/.pt (plain, or under 'model' / 'state_dict') or a .safetensors file."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return OrderedDict(load_file(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a state dict (got {type(obj).__name__})")
    out = OrderedDict()
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"{path}: entry {k} is a {type(v).__name__}, not a tensor")
        out[k[len("module.") :] if k.startswith("module.") else k] = v
    return out


def trunk_name(k: str) -> str | None:
    """ResNet trunk key (conv1/bn1/layerN...) -> cryodet name, or None."""
    if not TRUNK.match(k):
        return None
    if k.startswith("layer4."):
        return "head." + k
    return "backbone." + k


def map_name(k: str) -> str | None:
    """torchvision name -> cryodet name (shape still to be checked), None if it has no counterpart."""
    if k.endswith("num_batches_tracked"):
        return None
    if k.startswith("backbone.body."):
        return trunk_name(k[len("backbone.body.") :])
    t = trunk_name(k)
    if t is not None:
        return t
    m = re.fullmatch(r"rpn\.head\.conv(?:\.0\.0)?\.(weight|bias)", k)
    if m:
        return f"rpn.conv.{m.group(1)}"
    m = re.fullmatch(r"rpn\.head\.(cls_logits|bbox_pred)\.(weight|bias)", k)
    if m:
        return f"rpn.{m.group(1)}.{m.group(2)}"
    m = re.fullmatch(r"roi_heads\.box_predictor\.(cls_score|bbox_pred)\.(weight|bias)", k)
    if m:
        return f"head.{m.group(1)}.{m.group(2)}"
    return None


@torch.no_grad()
def fresh_heads(model, seed: int) -> None:
    """Detectron-style init of the RPN and the predictor: N(0, 0.01) / N(0, 0.001), biases 0."""
    g = torch.Generator().manual_seed(seed)
    rpn = model.rpn.head
    pred = model.roi_heads.box_predictor
    for layer, std in ((rpn.conv, 0.01), (rpn.cls_logits, 0.01), (rpn.bbox_pred, 0.01),
                       (pred.cls_score, 0.01), (pred.bbox_pred, 0.001)):
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * std)
        layer.bias.zero_()


def convert(src: "OrderedDict[str, torch.Tensor]", classes, rpn_width: int = 512, bn_eps: float = 1e-5,
            seed: int = 0, verbose: bool = True):
    """Returns (model, report) with every tensor of `src` that maps (by name and shape) copied in."""
    cfg = ref.CONFIGS["full"]
    widths = ref.Widths(stem=cfg["widths"].stem, planes=cfg["widths"].planes, rpn=rpn_width)
    model = ref.build(widths, cfg["blocks"], len(classes), bn_eps)
    fresh_heads(model, seed)
    target = ref.state_dict_cryodet(model)  # cryodet name -> tensor (fresh)
    tv_of = {ref.to_cryodet_name(n): n for n in model.state_dict() if not n.endswith("num_batches_tracked")}
    mapped, unmapped, mismatched = [], [], []
    new = OrderedDict(target)
    for k, v in src.items():
        name = map_name(k)
        if name is None:
            if not k.endswith("num_batches_tracked"):
                unmapped.append(k)
            continue
        if name not in target:
            unmapped.append(k)
            continue
        if tuple(v.shape) != tuple(target[name].shape):
            mismatched.append(f"{k} {list(v.shape)} -> {name} {list(target[name].shape)}")
            continue
        new[name] = v.detach().to(torch.float32).clone()
        mapped.append(name)
    fresh = [n for n in target if n not in set(mapped)]
    model.load_state_dict({tv_of[n]: t for n, t in new.items()}, strict=False)
    if verbose:
        print(f"mapped {len(mapped)} tensors; freshly initialised {len(fresh)}: "
              f"{_summary(fresh)}")
        if unmapped:
            print(f"not mapped (no C4 counterpart) {len(unmapped)}: {_summary(unmapped)}")
        if mismatched:
            print(f"not mapped (shape differs) {len(mismatched)}:")
            for m in mismatched[:20]:
                print("   ", m)
            if len(mismatched) > 20:
                print(f"    ... {len(mismatched) - 20} more")
    return model, dict(mapped=mapped, fresh=fresh, unmapped=unmapped, mismatched=mismatched)


def _summary(names, n: int = 6) -> str:
    """Group names by their first two components: 'backbone.fpn (16), rpn.head (6), ...'."""
    groups = OrderedDict()
    for k in names:
        g = ".".join(k.split(".")[:2])
        groups[g] = groups.get(g, 0) + 1
    items = [f"{g} ({c})" for g, c in groups.items()]
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more groups)" if len(items) > n else "")


@torch.no_grad()
def selftest(tmp: str) -> int:
    """Offline check: a random torchvision resnet50 (weights=None, random BN statistics) and a random
    fasterrcnn_resnet50_fpn are saved as .pth, converted, reloaded with torch_reference.load_weights,
    and the C4 trunk must reproduce torchvision's layer3 / layer4 outputs (f32: 1e-4 relative,
    f16: 1e-2) and carry bn_eps 1e-5 / 0."""
    import torchvision

    torch.manual_seed(0)
    r = torchvision.models.resnet50(weights=None).eval()
    for m in r.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0, 0.1)
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    r50 = os.path.join(tmp, "resnet50_random.pth")
    torch.save(r.state_dict(), r50)
    x = torch.randn(1, 3, 97, 131)
    y3 = r.layer3(r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x)))))))
    y4 = r.layer4(y3)
    ok = True
    for half, tol in ((False, 1e-4), (True, 1e-2)):
        out = os.path.join(tmp, f"c4_{'f16' if half else 'f32'}.safetensors")
        args = ["--resnet50", r50, "--classes", "__background__,mitochondria,vesicle", "--out", out]
        main(args + (["--half"] if half else []))
        m, classes = ref.load_weights(out)
        z3 = m.backbone(x)
        z4 = m.roi_heads.box_head.layer4(z3)
        e3 = ((z3 - y3).abs().max() / y3.abs().max()).item()
        e4 = ((z4 - y4).abs().max() / y4.abs().max()).item()
        good = e3 <= tol and e4 <= tol and m.backbone.bn1.eps == 1e-5 and len(classes) == 3
        print(f"{'PASS' if good else 'FAIL'} resnet50 -> {out}: layer3 rel {e3:.2e}, layer4 rel {e4:.2e} (tol {tol:g})")
        ok &= good
    d = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval()
    det = os.path.join(tmp, "fasterrcnn_fpn_random.pth")
    torch.save({"model": d.state_dict()}, det)
    out = os.path.join(tmp, "c4_from_fpn.safetensors")
    main(["--detection", det, "--out", out])
    m, _ = ref.load_weights(out)
    sd = d.state_dict()
    good = (m.backbone.bn1.eps == 0.0
            and torch.equal(m.backbone.layer2[1].conv2.weight, sd["backbone.body.layer2.1.conv2.weight"])
            and torch.equal(m.roi_heads.box_head.layer4[2].bn3.running_var, sd["backbone.body.layer4.2.bn3.running_var"]))
    print(f"{'PASS' if good else 'FAIL'} fasterrcnn_resnet50_fpn -> {out}: trunk copied, bn_eps 0")
    ok &= good
    return 0 if ok else 1


def main(argv=None) -> int:
    if argv is None and sys.argv[1:2] == ["--selftest"]:
        import tempfile

        torch.set_num_threads(1)
        return selftest(tempfile.mkdtemp(prefix="cryodet_convert_"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--resnet50", help="torchvision ImageNet ResNet-50 state dict (.pth)")
    src.add_argument("--torchvision-weights", help="torchvision.models.ResNet50_Weights member, e.g. IMAGENET1K_V1")
    src.add_argument("--detection", help="torchvision detection checkpoint (.pth), e.g. fasterrcnn_resnet50_fpn")
    ap.add_argument("--classes", default="__background__,mitochondria",
                    help="comma-separated class names, background first")
    ap.add_argument("--out", required=True)
    ap.add_argument("--rpn-width", type=int, default=512)
    ap.add_argument("--bn-eps", type=float, default=None,
                    help="FrozenBatchNorm eps to record (default 1e-5; 0 for --detection)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fresh RPN/predictor weights")
    ap.add_argument("--half", action="store_true", help="store f16 (half the size; cryodet converts to f32)")
    args = ap.parse_args(argv)

    classes = [c.strip() for c in args.classes.split(",")]
    if len(classes) < 2 or any(not c for c in classes):
        ap.error("--classes needs the background and at least one class, comma-separated")
    if args.resnet50:
        sd = load_state_dict(args.resnet50)
        eps = 1e-5 if args.bn_eps is None else args.bn_eps
    elif args.torchvision_weights:
        import torchvision

        w = getattr(torchvision.models.ResNet50_Weights, args.torchvision_weights)
        sd = OrderedDict(torchvision.models.resnet50(weights=w).state_dict())
        eps = 1e-5 if args.bn_eps is None else args.bn_eps
    else:
        sd = load_state_dict(args.detection)
        eps = 0.0 if args.bn_eps is None else args.bn_eps
    model, rep = convert(sd, classes, args.rpn_width, eps, args.seed)
    if not any(n.startswith("backbone.") for n in rep["mapped"]):
        print("error: no backbone tensor mapped; is this a ResNet-50 checkpoint?", file=sys.stderr)
        return 1
    ref.save_weights(model, args.out, classes, bn_eps=eps, half=args.half)
    print(f"wrote {args.out} ({'f16' if args.half else 'f32'}, bn_eps {ref._fmt_eps(eps)}, classes {classes})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
