"""Regression inputs for the weight loader, found by `cryodet-fuzz --target weights-struct`
(tools/FUZZING.md). Writes tests/corpus/weights-struct/*.safetensors: a tiny valid network
(2 channels, 1x1 kernels except the RPN's 3x3, one block per stage; the fuzzer's seed),
`crash-even-kernel` (the fuzzer's finding, rebuilt by hand: accepted by the loader, then a panic
in the forward pass) and `refuse-*`, neighbouring cases the fixed loader must also refuse.

    python3 tools/make_corpus_weights.py
"""
import os
import numpy as np
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "corpus", "weights-struct")
C = 2


def tiny():
    t = {}
    k = [0.0]

    def add(name, shape):
        k[0] += 1.0
        idx = np.indices(shape).sum(axis=0) if len(shape) else np.array(0)
        t[name] = (0.1 + 0.01 * k[0] + 0.001 * idx).astype(np.float32)

    def bn(p, n):
        for s in ["weight", "bias", "running_mean", "running_var"]:
            add(f"{p}.{s}", (n,))

    def block(p):
        for i in (1, 2, 3):
            add(f"{p}.conv{i}.weight", (C, C, 1, 1))
            bn(f"{p}.bn{i}", C)
        add(f"{p}.downsample.0.weight", (C, C, 1, 1))
        bn(f"{p}.downsample.1", C)

    add("backbone.conv1.weight", (C, 3, 1, 1))
    bn("backbone.bn1", C)
    for layer in (1, 2, 3):
        block(f"backbone.layer{layer}.0")
    add("rpn.conv.weight", (C, C, 3, 3))
    add("rpn.conv.bias", (C,))
    add("rpn.cls_logits.weight", (9, C, 1, 1))
    add("rpn.cls_logits.bias", (9,))
    add("rpn.bbox_pred.weight", (36, C, 1, 1))
    add("rpn.bbox_pred.bias", (36,))
    block("head.layer4.0")
    add("head.cls_score.weight", (2, C))
    add("head.cls_score.bias", (2,))
    add("head.bbox_pred.weight", (8, C))
    add("head.bbox_pred.bias", (8,))
    return t


META = {"classes": "__background__,mito"}


def main():
    os.makedirs(OUT, exist_ok=True)
    save_file(tiny(), os.path.join(OUT, "seed-tiny.safetensors"), metadata=META)
    # Even / non-square kernel: main path and residual differ in size -> panic in forward.
    t = tiny()
    t["backbone.layer1.0.conv2.weight"] = np.full((C, C, 2, 1), 0.1, np.float32)
    save_file(t, os.path.join(OUT, "crash-even-kernel.safetensors"), metadata=META)
    # Zero-size kernel.
    t = tiny()
    t["backbone.layer2.0.conv3.weight"] = np.zeros((C, C, 0, 0), np.float32)
    save_file(t, os.path.join(OUT, "refuse-zero-kernel.safetensors"), metadata=META)
    # 0-D cls_score.weight: indexed shape[0].
    t = tiny()
    t["head.cls_score.weight"] = np.array(0.5, np.float32)
    save_file(t, os.path.join(OUT, "refuse-scalar-cls-score.safetensors"), metadata=META)
    # Negative running_var: NaN folded weights.
    t = tiny()
    t["backbone.bn1.running_var"] = np.array([-1.0, 0.5], np.float32)
    save_file(t, os.path.join(OUT, "refuse-negative-var.safetensors"), metadata=META)
    # Negative bn_eps.
    save_file(tiny(), os.path.join(OUT, "refuse-negative-eps.safetensors"),
              metadata={**META, "bn_eps": "-1"})


if __name__ == "__main__":
    main()
