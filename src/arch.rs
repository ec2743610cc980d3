//! The network a weight file describes, inferred from the names and shapes of its tensors (no
//! value is read), built with zero tensors for [`crate::params`]' visitor to fill:
//!
//! ```text
//! {conv}.weight [Co, Ci, k, k]             every conv of the backbone and layer4 (k odd, no 0)
//! {stage}.{i}.conv1.weight for i = 0..n    n blocks per stage (at least one)
//! {stage}.{i}.downsample.0.weight          block i has a projection shortcut
//! rpn.conv.weight [R, ..]                  RPN width R
//! rpn.cls_logits.weight [A, ..]            A must be the anchors' sizes x ratios
//! head.cls_score.weight [K, ..]            K classes (background included)
//! ```
//! From these every other shape follows: the batch norms `[Co]`, the RPN convs
//! `[R, C3, 3, 3]`, `[A, R, 1, 1]`, `[4A, R, 1, 1]` (with biases), the predictor `[K, C4]`,
//! `[4K, C4]`; filling checks each one ([`FasterRcnn::fill`](crate::model::FasterRcnn::fill)). Here
//! the channel counts must chain: 3 -> conv1 -> layer1 -> layer2 -> layer3 (C3) -> layer4 (C4),
//! and within a block in -> conv1 -> conv2 -> conv3 (= the shortcut's output).

use crate::backbone::{Backbone, Bottleneck, ConvBn, Stage};
use crate::detection::anchors::AnchorGenerator;
use crate::detection::{roi_head::RoiHead, rpn_head::RpnHead};
use crate::error::{Error, Result};
use crate::io::weights::WeightFile;
use crate::nn::{Conv2d, FrozenBatchNorm2d, Linear, MaxPool2d};
use ndarray::{Array1, Array2, Array4};

/// The three parts of the network `wf` describes, every tensor zero; `eps` is the batch norms'.
pub fn skeleton(
    wf: &WeightFile,
    eps: f32,
    anchors: &AnchorGenerator,
) -> Result<(Backbone, RpnHead, RoiHead)> {
    let backbone = backbone(wf, eps)?;
    let c3 = backbone.out_channels();
    let rpn = rpn(wf, c3, anchors)?;
    let head = head(wf, c3, eps)?;
    Ok((backbone, rpn, head))
}

/// The shape of 4-D tensor `name`, which has no zero dimension (a layer without channels or
/// kernel is no layer).
fn shape4(wf: &WeightFile, name: &str) -> Result<[usize; 4]> {
    let t = wf
        .get(name)
        .ok_or_else(|| Error::weights(&wf.path, format!("missing tensor `{name}`")))?;
    let shape: [usize; 4] = t.shape().try_into().map_err(|_| {
        Error::weights(
            &wf.path,
            format!(
                "tensor `{name}` has shape {:?}, expected 4 dimensions",
                t.shape()
            ),
        )
    })?;
    if shape.contains(&0) {
        return Err(Error::weights(
            &wf.path,
            format!("tensor `{name}` has shape {shape:?} with a zero dimension"),
        ));
    }
    Ok(shape)
}

/// `{conv}.weight`'s conv (no bias, padding k / 2) and a batch norm of its outputs.
fn conv_bn(wf: &WeightFile, conv: &str, stride: usize, eps: f32) -> Result<ConvBn> {
    let name = format!("{conv}.weight");
    let [co, ci, kh, kw] = shape4(wf, &name)?;
    // Padding k / 2 keeps the size `floor((H - 1) / s) + 1` only for square odd kernels;
    // any other kernel would give the main path and the residual different sizes.
    if kh != kw || kh % 2 == 0 {
        return Err(Error::weights(
            &wf.path,
            format!(
                "tensor `{name}` has shape {:?}: the kernel must be square with an odd size",
                [co, ci, kh, kw]
            ),
        ));
    }
    let zeros = || Array1::zeros(co);
    let bn = FrozenBatchNorm2d {
        weight: zeros(),
        bias: zeros(),
        running_mean: zeros(),
        running_var: zeros(),
        eps,
    };
    let w = Array4::zeros((co, ci, kh, kw));
    Ok(ConvBn::new(Conv2d::new(w, None, stride, kh / 2), bn))
}

/// Block `p`, its conv2 and shortcut with `stride`. The channel counts must chain:
/// in -> conv1 -> conv2 -> conv3 (= out), and without a downsample, in == out and stride 1.
fn bottleneck(wf: &WeightFile, p: &str, stride: usize, eps: f32) -> Result<Bottleneck> {
    let conv1 = conv_bn(wf, &format!("{p}.conv1"), 1, eps)?;
    let conv2 = conv_bn(wf, &format!("{p}.conv2"), stride, eps)?;
    let conv3 = conv_bn(wf, &format!("{p}.conv3"), 1, eps)?;
    let downsample = match wf.contains(&format!("{p}.downsample.0.weight")) {
        true => Some(conv_bn(wf, &format!("{p}.downsample.0"), stride, eps)?),
        false => None,
    };
    let b = Bottleneck {
        conv1,
        conv2,
        conv3,
        downsample,
    };
    let (c1, c2, c3) = (&b.conv1.conv, &b.conv2.conv, &b.conv3.conv);
    let bad = |what: String| Err(Error::weights(&wf.path, format!("block `{p}`: {what}")));
    if c2.in_channels() != c1.out_channels() {
        return bad(format!(
            "conv2.weight takes {} channels but conv1.weight gives {}",
            c2.in_channels(),
            c1.out_channels()
        ));
    }
    if c3.in_channels() != c2.out_channels() {
        return bad(format!(
            "conv3.weight takes {} channels but conv2.weight gives {}",
            c3.in_channels(),
            c2.out_channels()
        ));
    }
    match &b.downsample {
        Some(d)
            if d.conv.out_channels() != c3.out_channels()
                || d.conv.in_channels() != c1.in_channels() =>
        {
            bad(format!(
                "downsample.0.weight maps {} -> {} channels, expected {} -> {}",
                d.conv.in_channels(),
                d.conv.out_channels(),
                c1.in_channels(),
                c3.out_channels()
            ))
        }
        None if c1.in_channels() != c3.out_channels() || c2.stride != 1 => bad(format!(
            "no downsample but {} -> {} channels (stride {})",
            c1.in_channels(),
            c3.out_channels(),
            c2.stride
        )),
        _ => Ok(b),
    }
}

/// Stage `prefix` with as many blocks `{prefix}.0`, `{prefix}.1`, ... as the file holds, the
/// first with `stride`.
fn stage(wf: &WeightFile, prefix: &str, stride: usize, eps: f32) -> Result<Stage> {
    let mut blocks = Vec::new();
    while wf.contains(&format!("{prefix}.{}.conv1.weight", blocks.len())) {
        let i = blocks.len();
        let s = if i == 0 { stride } else { 1 };
        blocks.push(bottleneck(wf, &format!("{prefix}.{i}"), s, eps)?);
    }
    if blocks.is_empty() {
        return Err(Error::weights(
            &wf.path,
            format!("missing tensor `{prefix}.0.conv1.weight` (stage `{prefix}` has no blocks)"),
        ));
    }
    for w in blocks.windows(2) {
        if w[1].in_channels() != w[0].out_channels() {
            return Err(Error::weights(
                &wf.path,
                format!(
                    "stage `{prefix}`: a block gives {} channels, the next takes {}",
                    w[0].out_channels(),
                    w[1].in_channels()
                ),
            ));
        }
    }
    Ok(Stage { blocks })
}

/// conv1 (stride 2, 3 input channels) and layer1 .. layer3 (strides 1, 2, 2).
fn backbone(wf: &WeightFile, eps: f32) -> Result<Backbone> {
    let conv1 = conv_bn(wf, "backbone.conv1", 2, eps)?;
    if conv1.conv.in_channels() != 3 {
        return Err(Error::weights(
            &wf.path,
            format!(
                "tensor `backbone.conv1.weight` takes {} input channels, expected 3",
                conv1.conv.in_channels()
            ),
        ));
    }
    let mut layers: Vec<Stage> = Vec::new();
    for (k, stride) in [(1, 1), (2, 2), (3, 2)] {
        let stage = stage(wf, &format!("backbone.layer{k}"), stride, eps)?;
        let prev = layers
            .last()
            .map_or(conv1.conv.out_channels(), |s| s.out_channels());
        if stage.in_channels() != prev {
            return Err(Error::weights(
                &wf.path,
                format!(
                    "`backbone.layer{k}.0.conv1.weight` takes {} channels, the previous layer \
                     gives {prev}",
                    stage.in_channels()
                ),
            ));
        }
        layers.push(stage);
    }
    Ok(Backbone {
        conv1,
        maxpool: MaxPool2d::resnet(),
        layers,
    })
}

/// A conv with stride 1, padding k / 2 and a bias.
fn conv(co: usize, ci: usize, k: usize) -> Conv2d {
    Conv2d::new(
        Array4::zeros((co, ci, k, k)),
        Some(Array1::zeros(co)),
        1,
        k / 2,
    )
}

/// The RPN head on `c3` channels, for the anchors' A per cell.
fn rpn(wf: &WeightFile, c3: usize, anchors: &AnchorGenerator) -> Result<RpnHead> {
    let [r, ..] = shape4(wf, "rpn.conv.weight")?;
    let a = anchors.num_anchors();
    let [file_a, ..] = shape4(wf, "rpn.cls_logits.weight")?;
    if file_a != a {
        return Err(Error::weights(
            &wf.path,
            format!(
                "the RPN head predicts {file_a} anchors per cell but the anchors ({}) give {a} \
                 (metadata `anchor_sizes` x `anchor_ratios`, default 128,256,512 x 0.5,1,2)",
                anchors.describe()
            ),
        ));
    }
    Ok(RpnHead {
        conv: conv(r, c3, 3),
        cls_logits: conv(a, r, 1),
        bbox_pred: conv(4 * a, r, 1),
    })
}

/// layer4 (stride 2) on `c3` channels and the predictor for K classes.
fn head(wf: &WeightFile, c3: usize, eps: f32) -> Result<RoiHead> {
    let layer4 = stage(wf, "head.layer4", 2, eps)?;
    if layer4.in_channels() != c3 {
        return Err(Error::weights(
            &wf.path,
            format!(
                "`head.layer4.0.conv1.weight` takes {} channels, layer3 gives {c3}",
                layer4.in_channels()
            ),
        ));
    }
    let c4 = layer4.out_channels();
    let k = match wf.get("head.cls_score.weight") {
        None => {
            return Err(Error::weights(
                &wf.path,
                "missing tensor `head.cls_score.weight`",
            ))
        }
        Some(t) if t.ndim() == 2 && t.shape()[0] > 0 => t.shape()[0],
        Some(t) => {
            return Err(Error::weights(
                &wf.path,
                format!(
                    "tensor `head.cls_score.weight` has shape {:?}, expected [num_classes, {c4}]",
                    t.shape()
                ),
            ))
        }
    };
    let linear = |o: usize| Linear::new(Array2::zeros((o, c4)), Array1::zeros(o));
    Ok(RoiHead {
        layer4,
        cls_score: linear(k),
        bbox_pred: linear(4 * k),
    })
}
