//! The whole Faster R-CNN of the study's Fig. 1 and 2, C4 variant (torchvision semantics):
//!
//! ```text
//! input x [3, 1, H, W] (normalized)
//!  -> backbone (conv1 .. layer3)                       feat [C3, 1, h, w], stride 16
//!  -> RPN head: t = relu(conv3x3(feat))                [R, 1, h, w]
//!               objectness = conv1x1(t)                [A, 1, h, w]   (A = sizes x ratios anchors per cell)
//!               deltas     = conv1x1(t)                [4A, 1, h, w]
//!  -> proposals: top-k, decode, clip, NMS 0.7, keep 300    [P, 4]
//!  -> RoI max-pool 7x7 at scale 1/16                   [C3, P, 7, 7]  (CNHW: all RoIs in one batch)
//!  -> layer4 (first block stride 2), spatial mean      [P, C4]
//!  -> cls_score (Linear C4 -> K), bbox_pred (Linear C4 -> 4K)
//!  -> postprocess: softmax, class-specific decode, clip, score > 0.05, per-class NMS 0.5, top 100
//! ```
//! The anchors are the metadata `anchor_sizes` x `anchor_ratios` when the weight file records
//! them (new models: 32..512 x 0.5, 1, 2, A = 15), else torchvision's 128, 256, 512 x 0.5, 1, 2
//! (A = 9); an RPN head whose A differs from the anchors' is an error at load time.
//!
//! The RoI head's layer4 runs on all P RoIs at once, so each of its convolutions is one GEMM with
//! `N = P * 16` columns (the stride-2 first block maps 7x7 to 4x4).

use crate::backbone::{take4, Backbone, Stage, StageCache};
use crate::detection::anchors::{feature_stride, AnchorGenerator};
use crate::detection::postprocess::{postprocess_detections, Detections, PostprocessConfig};
use crate::detection::proposals::{filter_proposals, ProposalConfig};
use crate::detection::roi_pool::{roi_pool_backward, roi_pool_forward, roi_pool_values};
use crate::error::{Error, Result};
use crate::io::weights::WeightFile;
use crate::nn::mean::{spatial_mean, spatial_mean_backward};
use crate::nn::relu::relu_backward_inplace;
use crate::nn::Grads;
use crate::nn::{Conv2d, Linear};
use ndarray::{Array1, Array2, Array4, ArrayD, ArrayView2, Axis, Ix1, Ix2};
use std::path::Path;

/// The RPN head, the study's "three convolutional layers".
#[derive(Debug, Clone)]
pub struct RpnHead {
    /// 3x3, C3 -> R, followed by ReLU.
    pub conv: Conv2d,
    /// 1x1, R -> A objectness logits.
    pub cls_logits: Conv2d,
    /// 1x1, R -> 4A box deltas (per anchor: dx, dy, dw, dh).
    pub bbox_pred: Conv2d,
}

/// RPN outputs for one image, flattened in torchvision's (H, W, A) order.
pub struct RpnOutput {
    /// `[A, 1, h, w]` as the conv produced it (for trace).
    pub cls_logits: Array4<f32>,
    /// `[4A, 1, h, w]`
    pub bbox_pred: Array4<f32>,
    /// logits, `[h*w*A]`
    pub objectness: Vec<f32>,
    /// `[h*w*A, 4]`
    pub deltas: Array2<f32>,
}

impl RpnHead {
    pub fn forward(&self, feat: &Array4<f32>) -> RpnOutput {
        self.forward_cached(feat).0
    }
}

impl RpnHead {
    /// [`RpnHead::forward`] that also returns `t = relu(conv(feat))` for the backward pass.
    pub fn forward_cached(&self, feat: &Array4<f32>) -> (RpnOutput, Array4<f32>) {
        let t = self.conv.forward_fused(feat, None, true);
        let cls_logits = self.cls_logits.forward(&t);
        let bbox_pred = self.bbox_pred.forward(&t);
        let (objectness, deltas) = flatten_rpn(&cls_logits, &bbox_pred);
        (
            RpnOutput {
                cls_logits,
                bbox_pred,
                objectness,
                deltas,
            },
            t,
        )
    }

    /// Backward from the gradients of the flattened outputs (`d_objectness` `[h*w*A]`,
    /// `d_deltas` `[h*w*A, 4]`, (H, W, A) order): weight gradients into `grads` as `rpn.*`,
    /// returns dL/dfeat if `need_dx`.
    pub fn backward(
        &self,
        feat: &Array4<f32>,
        t: Array4<f32>,
        d_objectness: &[f32],
        d_deltas: ArrayView2<f32>,
        need_dx: bool,
        grads: &mut Grads,
    ) -> Option<Array4<f32>> {
        let (_, _, h, w) = t.dim();
        let a = self.cls_logits.out_channels();
        let d_cls = Array4::from_shape_fn((a, 1, h, w), |(k, _, y, x)| {
            d_objectness[(y * w + x) * a + k]
        });
        let d_bbox = Array4::from_shape_fn((4 * a, 1, h, w), |(c, _, y, x)| {
            d_deltas[[(y * w + x) * a + c / 4, c % 4]]
        });
        let mut dt = Array4::zeros(t.dim());
        for (name, conv, dy) in [
            ("rpn.cls_logits", &self.cls_logits, &d_cls),
            ("rpn.bbox_pred", &self.bbox_pred, &d_bbox),
        ] {
            let g = conv.backward(&t, dy, true);
            dt += &g.dx.expect("asked for");
            grads.insert(format!("{name}.weight"), g.dw.into_dyn());
            grads.insert(format!("{name}.bias"), g.db.into_dyn());
        }
        relu_backward_inplace(&mut dt, &t);
        drop(t);
        let g = self.conv.backward(feat, &dt, need_dx);
        grads.insert("rpn.conv.weight".to_string(), g.dw.into_dyn());
        grads.insert("rpn.conv.bias".to_string(), g.db.into_dyn());
        g.dx
    }
}

/// What the RoI head's backward needs (see [`FasterRcnn::head_forward_train`]).
pub struct HeadCache {
    /// RoI-pool argmax `[C3, P, 7, 7]` and the feature map's (h, w).
    argmax: Array4<i32>,
    feat_hw: (usize, usize),
    /// layer4's activations (None when layer4 is frozen), and whether its batch norms train.
    layer4: Option<StageCache>,
    train_bn: bool,
    /// layer4's output spatial size and the pooled vectors `[P, C4]` (input of the predictor).
    out_hw: (usize, usize),
    pooled: Array2<f32>,
}

/// `[A, 1, h, w]` logits and `[4A, 1, h, w]` deltas to `(h, w, a)`-ordered rows, as
/// torchvision's `concat_box_prediction_layers` (deltas viewed as `[A, 4, h, w]`).
pub fn flatten_rpn(cls: &Array4<f32>, bbox: &Array4<f32>) -> (Vec<f32>, Array2<f32>) {
    let (a, _, h, w) = cls.dim();
    let mut obj = Vec::with_capacity(h * w * a);
    let mut deltas = Array2::zeros((h * w * a, 4));
    for y in 0..h {
        for x in 0..w {
            for k in 0..a {
                let row = (y * w + x) * a + k;
                obj.push(cls[[k, 0, y, x]]);
                for j in 0..4 {
                    deltas[[row, j]] = bbox[[k * 4 + j, 0, y, x]];
                }
            }
        }
    }
    (obj, deltas)
}

/// The RoI head: layer4 + spatial mean + the class-specific predictor.
#[derive(Debug, Clone)]
pub struct RoiHead {
    pub layer4: Stage,
    pub cls_score: Linear,
    pub bbox_pred: Linear,
}

/// Tensors of one detection pass, named as in `cryodet trace` (PyTorch layouts).
#[derive(Default)]
pub struct Trace {
    pub tensors: Vec<(String, ArrayD<f32>)>,
}

impl Trace {
    fn push(&mut self, name: &str, t: ArrayD<f32>) {
        self.tensors.push((name.to_string(), t));
    }
    /// A CNHW map with N = 1 is NCHW memory: only the shape changes.
    fn push_map(&mut self, name: &str, x: &Array4<f32>) {
        let (c, n, h, w) = x.dim();
        self.push(
            name,
            x.view()
                .permuted_axes([1, 0, 2, 3])
                .as_standard_layout()
                .into_owned()
                .into_shape_with_order((n, c, h, w))
                .expect("contiguous")
                .into_dyn(),
        );
    }
}

/// Inference settings (torchvision's test-time defaults).
#[derive(Debug, Clone)]
pub struct DetectConfig {
    pub anchors: AnchorGenerator,
    pub proposals: ProposalConfig,
    pub postprocess: PostprocessConfig,
    /// RoI pooling output size (7 in the study).
    pub pool_size: usize,
    /// Scale from image pixels to feature cells (1/16).
    pub spatial_scale: f32,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            anchors: AnchorGenerator::default(),
            proposals: ProposalConfig::testing(),
            postprocess: PostprocessConfig::default(),
            pool_size: 7,
            spatial_scale: 1.0 / 16.0,
        }
    }
}

/// The network and its class names (index 0 is the background).
#[derive(Debug, Clone)]
pub struct FasterRcnn {
    pub backbone: Backbone,
    pub rpn: RpnHead,
    pub head: RoiHead,
    pub classes: Vec<String>,
    /// FrozenBatchNorm epsilon recorded in the weight file (`bn_eps`, default 1e-5).
    pub bn_eps: f32,
    /// Every other metadata entry of the weight file, kept through load and save: e.g.
    /// `min_size` and `preprocess` (how the training images were prepared, which `detect`
    /// follows by default), `epoch`, `iteration`.
    pub info: std::collections::BTreeMap<String, String>,
    pub config: DetectConfig,
}

fn take_vec(wf: &mut WeightFile, name: &str, n: usize) -> Result<Array1<f32>> {
    Ok(wf
        .take_shaped(name, &[n])?
        .into_dimensionality::<Ix1>()
        .expect("checked"))
}

fn take_conv(
    wf: &mut WeightFile,
    name: &str,
    in_ch: usize,
    k: usize,
    out_ch: Option<usize>,
) -> Result<Conv2d> {
    let w = take4(wf, &format!("{name}.weight"))?;
    let (co, ci, kh, kw) = w.dim();
    let want_co = out_ch.unwrap_or(co);
    if (ci, kh, kw, co) != (in_ch, k, k, want_co) {
        return Err(Error::weights(
            &wf.path,
            format!(
                "tensor `{name}.weight` has shape {:?}, expected {:?}",
                w.shape(),
                [want_co, in_ch, k, k]
            ),
        ));
    }
    let b = take_vec(wf, &format!("{name}.bias"), co)?;
    Ok(Conv2d::new(w, Some(b), 1, k / 2))
}

fn take_linear(wf: &mut WeightFile, name: &str, in_f: usize, out_f: usize) -> Result<Linear> {
    let w = wf
        .take_shaped(&format!("{name}.weight"), &[out_f, in_f])?
        .into_dimensionality::<Ix2>()
        .expect("checked");
    let b = take_vec(wf, &format!("{name}.bias"), out_f)?;
    Ok(Linear::new(w, b))
}

impl FasterRcnn {
    /// Loads a safetensors weight file (see `crate::io::weights` for the names).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_weights(WeightFile::load(path)?)
    }

    pub fn from_weights(mut wf: WeightFile) -> Result<Self> {
        let bn_eps = match wf.metadata.get("bn_eps") {
            Some(s) => s
                .trim()
                .parse::<f32>()
                .ok()
                .filter(|e| e.is_finite() && *e >= 0.0)
                .ok_or_else(|| {
                    Error::weights(
                        &wf.path,
                        format!("metadata `bn_eps` = {s:?} is not a number >= 0"),
                    )
                })?,
            None => 1e-5,
        };
        let backbone = Backbone::load(&mut wf, bn_eps)?;
        let c3 = backbone.out_channels();
        let mut config = DetectConfig::default();
        if let Some(anchors) = AnchorGenerator::from_metadata(&wf.metadata)
            .map_err(|reason| Error::weights(&wf.path, reason))?
        {
            config.anchors = anchors;
        }
        let a = config.anchors.num_anchors();
        let rpn_a = wf.get("rpn.cls_logits.weight").map(|t| t.shape()[0]);
        if rpn_a.is_some_and(|n| n != a) {
            return Err(Error::weights(
                &wf.path,
                format!(
                    "the RPN head predicts {} anchors per cell but the anchors ({}) give {a} \
                     (metadata `anchor_sizes` x `anchor_ratios`, default 128,256,512 x 0.5,1,2)",
                    rpn_a.unwrap_or(0),
                    config.anchors.describe()
                ),
            ));
        }
        let rpn_conv = take_conv(&mut wf, "rpn.conv", c3, 3, None)?;
        let r = rpn_conv.out_channels();
        let rpn = RpnHead {
            conv: rpn_conv,
            cls_logits: take_conv(&mut wf, "rpn.cls_logits", r, 1, Some(a))?,
            bbox_pred: take_conv(&mut wf, "rpn.bbox_pred", r, 1, Some(4 * a))?,
        };
        let layer4 = Stage::load(&mut wf, "head.layer4", 2, bn_eps)?;
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
        let head = RoiHead {
            layer4,
            cls_score: take_linear(&mut wf, "head.cls_score", c4, k)?,
            bbox_pred: take_linear(&mut wf, "head.bbox_pred", c4, 4 * k)?,
        };
        let classes = match wf.classes() {
            Some(c) if c.len() == k => c,
            Some(c) => {
                return Err(Error::weights(
                    &wf.path,
                    format!(
                        "metadata `classes` names {} classes but head.cls_score has {k} outputs",
                        c.len()
                    ),
                ))
            }
            None => std::iter::once("__background__".to_string())
                .chain((1..k).map(|i| format!("class{i}")))
                .collect(),
        };
        let info = wf
            .metadata
            .iter()
            .filter(|(k, _)| k.as_str() != "classes" && k.as_str() != "bn_eps")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        wf.finish()?;
        Ok(FasterRcnn {
            backbone,
            rpn,
            head,
            classes,
            bn_eps,
            info,
            config,
        })
    }

    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// Detections of one normalized image `x: [3, 1, H, W]`, boxes in x's pixels.
    pub fn detect(&self, x: &Array4<f32>) -> Detections {
        self.forward(x, None)
    }

    /// The forward pass; with `trace`, every intermediate tensor is recorded.
    pub fn forward(&self, x: &Array4<f32>, trace: Option<&mut Trace>) -> Detections {
        let (_, _, h, w) = x.dim();
        self.forward_image(x, (h, w), trace)
    }

    /// The forward pass on a padded tensor `x` whose image occupies the top-left
    /// `image = (h, w)` (torchvision pads to a multiple of 32): anchors are laid on the padded
    /// tensor, proposals and detections are clipped to the image.
    pub fn forward_image(
        &self,
        x: &Array4<f32>,
        image: (usize, usize),
        mut trace: Option<&mut Trace>,
    ) -> Detections {
        let (_, _, ph, pw) = x.dim();
        if let Some(t) = trace.as_deref_mut() {
            t.push_map("input", x);
        }
        let feat = match trace.as_deref_mut() {
            Some(t) => {
                let outs = self.backbone.forward_all(x);
                t.push_map("backbone.stem", &outs.stem);
                for (k, l) in outs.layers.iter().enumerate() {
                    t.push_map(&format!("backbone.layer{}", k + 1), l);
                }
                outs.layers.into_iter().last().expect("3 stages")
            }
            None => self.backbone.forward(x),
        };
        let rpn = self.rpn.forward(&feat);
        let proposals = self.proposals(&rpn, (ph, pw), image, (feat.dim().2, feat.dim().3));
        if let Some(t) = trace.as_deref_mut() {
            t.push_map("rpn.cls_logits", &rpn.cls_logits);
            t.push_map("rpn.bbox_pred", &rpn.bbox_pred);
            t.push("rpn.proposals", proposals.clone().into_dyn());
        }
        self.head_forward(&feat, &proposals, image, trace)
    }

    /// Proposals from the RPN outputs (torchvision's filter_proposals): anchors laid on the
    /// (padded) input tensor of size `padded`, boxes clipped to `image`.
    pub fn proposals(
        &self,
        rpn: &RpnOutput,
        padded: (usize, usize),
        image: (usize, usize),
        feat: (usize, usize),
    ) -> Array2<f32> {
        let anchors = self.anchors(padded, feat);
        filter_proposals(
            &rpn.objectness,
            rpn.deltas.view(),
            anchors.view(),
            image,
            &self.config.proposals,
        )
        .0
    }

    /// All anchors of an image, `[h*w*A, 4]`, with torchvision's stride = image // feature.
    pub fn anchors(&self, image: (usize, usize), feat: (usize, usize)) -> Array2<f32> {
        let (sh, sw) = (
            feature_stride(image.0, feat.0),
            feature_stride(image.1, feat.1),
        );
        self.config.anchors.grid_anchors(feat.0, feat.1, sh, sw)
    }

    /// RoI pooling, layer4, mean, predictor, postprocess.
    pub fn head_forward(
        &self,
        feat: &Array4<f32>,
        proposals: &Array2<f32>,
        image: (usize, usize),
        trace: Option<&mut Trace>,
    ) -> Detections {
        let (pooled, cls, bbox) = self.head_logits(feat, proposals, trace.is_some());
        let dets = postprocess_detections(
            cls.view(),
            bbox.view(),
            proposals.view(),
            image,
            &self.config.postprocess,
        );
        if let Some(t) = trace {
            let (pooled_map, pooled_vec) = pooled.expect("kept for trace");
            let pm = pooled_map
                .view()
                .permuted_axes([1, 0, 2, 3])
                .as_standard_layout()
                .into_owned();
            t.push("roi_pool", pm.into_dyn());
            t.push("head.pooled", pooled_vec.into_dyn());
            t.push("head.cls_score", cls.into_dyn());
            t.push("head.bbox_pred", bbox.into_dyn());
            t.push("detections.boxes", dets.boxes.clone().into_dyn());
            t.push(
                "detections.scores",
                Array1::from(dets.scores.clone()).into_dyn(),
            );
            t.push(
                "detections.labels",
                Array1::from_iter(dets.labels.iter().map(|&l| l as f32)).into_dyn(),
            );
        }
        dets
    }

    /// `(kept intermediates, class logits [P, K], box deltas [P, 4K])`.
    #[allow(clippy::type_complexity)]
    pub fn head_logits(
        &self,
        feat: &Array4<f32>,
        proposals: &Array2<f32>,
        keep: bool,
    ) -> (Option<(Array4<f32>, Array2<f32>)>, Array2<f32>, Array2<f32>) {
        let k = self.num_classes();
        if proposals.nrows() == 0 {
            return (
                keep.then(|| {
                    (
                        Array4::zeros((
                            feat.dim().0,
                            0,
                            self.config.pool_size,
                            self.config.pool_size,
                        )),
                        Array2::zeros((0, self.head.cls_score.weight.dim().1)),
                    )
                }),
                Array2::zeros((0, k)),
                Array2::zeros((0, 4 * k)),
            );
        }
        let ps = self.config.pool_size;
        let pooled_map = roi_pool_values(
            feat.index_axis(Axis(1), 0),
            proposals.view(),
            ps,
            ps,
            self.config.spatial_scale,
        );
        let y = self.head.layer4.forward(&pooled_map);
        let pooled = spatial_mean(&y);
        let cls = self.head.cls_score.forward(pooled.view());
        let bbox = self.head.bbox_pred.forward(pooled.view());
        (keep.then_some((pooled_map, pooled)), cls, bbox)
    }

    /// RoI head forward for training on `rois` `[P, 4]` (P > 0): RoI pool, layer4 (cached when
    /// `train_layer4`; its batch-norm affine gradients too with `train_bn`), spatial mean,
    /// predictor. Returns (class logits `[P, K]`, box deltas `[P, 4K]`, cache).
    pub fn head_forward_train(
        &self,
        feat: &Array4<f32>,
        rois: ArrayView2<f32>,
        train_layer4: bool,
        train_bn: bool,
    ) -> (Array2<f32>, Array2<f32>, HeadCache) {
        let ps = self.config.pool_size;
        let (pooled_map, argmax) = roi_pool_forward(
            feat.index_axis(Axis(1), 0),
            rois,
            ps,
            ps,
            self.config.spatial_scale,
        );
        let (layer4, y) = if train_layer4 {
            let c = self.head.layer4.forward_cached(pooled_map);
            let y = spatial_mean(c.output());
            let (_, _, oh, ow) = c.output().dim();
            ((Some(c), (oh, ow)), y)
        } else {
            let out = self.head.layer4.forward(&pooled_map);
            let (_, _, oh, ow) = out.dim();
            ((None, (oh, ow)), spatial_mean(&out))
        };
        let cls = self.head.cls_score.forward(y.view());
        let bbox = self.head.bbox_pred.forward(y.view());
        let cache = HeadCache {
            argmax,
            feat_hw: (feat.dim().2, feat.dim().3),
            layer4: layer4.0,
            train_bn,
            out_hw: layer4.1,
            pooled: y,
        };
        (cls, bbox, cache)
    }

    /// Backward of [`FasterRcnn::head_forward_train`] from `d_cls` `[P, K]` and `d_bbox`
    /// `[P, 4K]`: predictor and (if cached) layer4 gradients into `grads` as `head.*`; returns
    /// dL/dfeat `[C3, 1, h, w]` if `need_dfeat` (requires a cached layer4).
    pub fn head_backward(
        &self,
        cache: HeadCache,
        d_cls: ArrayView2<f32>,
        d_bbox: ArrayView2<f32>,
        need_dfeat: bool,
        grads: &mut Grads,
    ) -> Option<Array4<f32>> {
        let HeadCache {
            argmax,
            feat_hw,
            layer4,
            train_bn,
            out_hw,
            pooled,
        } = cache;
        let gc = self.head.cls_score.backward(pooled.view(), d_cls);
        let gb = self.head.bbox_pred.backward(pooled.view(), d_bbox);
        drop(pooled);
        grads.insert("head.cls_score.weight".into(), gc.dw.into_dyn());
        grads.insert("head.cls_score.bias".into(), gc.db.into_dyn());
        grads.insert("head.bbox_pred.weight".into(), gb.dw.into_dyn());
        grads.insert("head.bbox_pred.bias".into(), gb.db.into_dyn());
        let layer4 = layer4?;
        let dy = spatial_mean_backward(&(gc.dx + &gb.dx), out_hw);
        let d_pooled =
            self.head
                .layer4
                .backward("head.layer4", layer4, dy, need_dfeat, train_bn, grads)?;
        let (c, _, _, _) = d_pooled.dim();
        let d = roi_pool_backward(d_pooled.view(), argmax.view(), feat_hw.0, feat_hw.1);
        Some(
            d.into_shape_with_order((c, 1, feat_hw.0, feat_hw.1))
                .expect("contiguous"),
        )
    }

    /// The trainable tensor with torchvision name `name` (a conv weight of the backbone or
    /// layer4 — the unfolded `conv.weight` —, an RPN conv's weight or bias, a predictor's weight
    /// or bias, a batch norm's gamma or beta), for an optimizer step. Batch-norm statistics are
    /// not trainable: None.
    /// After changing backbone / layer4 weights call [`FasterRcnn::refold`].
    pub fn weight_mut(&mut self, name: &str) -> Option<ndarray::ArrayViewMutD<'_, f32>> {
        let mut found = None;
        self.visit_params_mut(|n, kind, t| {
            if kind == crate::params::Kind::Param && n == name {
                found = Some(t);
            }
        });
        found
    }

    /// Recomputes every folded conv + BN of the backbone and layer4 (after weight updates).
    pub fn refold(&mut self) {
        self.backbone.conv1.refold();
        for st in self
            .backbone
            .layers
            .iter_mut()
            .chain(std::iter::once(&mut self.head.layer4))
        {
            for b in &mut st.blocks {
                b.conv1.refold();
                b.conv2.refold();
                b.conv3.refold();
                if let Some(d) = &mut b.downsample {
                    d.refold();
                }
            }
        }
    }

    /// All weights under their torchvision names (for saving; [`crate::params`]).
    pub fn export(&self) -> Vec<(String, ArrayD<f32>)> {
        let mut out = Vec::new();
        self.visit_params(|n, _, t| out.push((n.to_string(), t.to_owned())));
        out
    }

    /// Metadata written with the weights: `info`, classes and bn_eps.
    pub fn metadata(&self) -> std::collections::HashMap<String, String> {
        let mut m: std::collections::HashMap<String, String> =
            self.info.clone().into_iter().collect();
        m.insert("classes".to_string(), self.classes.join(","));
        m.insert("bn_eps".to_string(), format!("{:e}", self.bn_eps));
        m
    }

    /// Saves the weights atomically (safetensors).
    pub fn save(
        &self,
        path: impl AsRef<Path>,
        precision: crate::io::weights::Precision,
    ) -> Result<()> {
        let tensors = self.export();
        let views: Vec<(String, ndarray::ArrayViewD<f32>)> =
            tensors.iter().map(|(n, t)| (n.clone(), t.view())).collect();
        crate::io::weights::save(path, &views, &self.metadata(), precision)
    }
}
