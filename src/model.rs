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
//! The heads have their own files, as torchvision's `rpn.py` and `roi_heads.py`:
//! [`crate::detection::rpn_head`] and [`crate::detection::roi_head`]. This file assembles them,
//! loads and saves the whole network.

use crate::backbone::{Backbone, ConvBn};
use crate::detection::anchors::{feature_stride, AnchorGenerator};
use crate::detection::postprocess::{Detections, PostprocessConfig};
use crate::detection::proposals::{filter_proposals, ProposalConfig};
pub use crate::detection::roi_head::RoiHead;
pub use crate::detection::rpn_head::{RpnHead, RpnOutput};
use crate::error::{Error, Result};
use crate::io::weights::WeightFile;
use ndarray::{Array2, Array4, ArrayD};
use std::path::Path;

/// Tensors of one detection pass, named as in `cryodet trace` (PyTorch layouts).
#[derive(Default)]
pub struct Trace {
    pub tensors: Vec<(String, ArrayD<f32>)>,
}

impl Trace {
    /// The names of a trace, in the order of the forward pass (as `tools/torch_reference.py`'s
    /// `TRACE_NAMES`).
    pub const NAMES: [&'static str; 15] = [
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
    ];

    pub(crate) fn push(&mut self, name: &str, t: ArrayD<f32>) {
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

impl FasterRcnn {
    /// Loads a safetensors weight file (see `crate::io::weights` for the names).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_weights(WeightFile::load(path)?)
    }

    /// The network `wf` holds: its architecture is inferred from the tensors' names and shapes
    /// ([`crate::arch::skeleton`], zero tensors), every tensor the visitor names is then taken
    /// from the file with the placeholder's shape ([`FasterRcnn::fill`]), the convolutions are
    /// folded once, and a tensor the visitor never named is an error ([`WeightFile::finish`]).
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
        let mut config = DetectConfig::default();
        if let Some(anchors) = AnchorGenerator::from_metadata(&wf.metadata)
            .map_err(|reason| Error::weights(&wf.path, reason))?
        {
            config.anchors = anchors;
        }
        let (backbone, rpn, head) = crate::arch::skeleton(&wf, bn_eps, &config.anchors)?;
        let k = head.num_classes();
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
        let mut model = FasterRcnn {
            backbone,
            rpn,
            head,
            classes,
            bn_eps,
            info,
            config,
        };
        model.fill(&mut wf)?;
        model.refold();
        model.check_folds(&wf.path)?;
        wf.finish()?;
        Ok(model)
    }

    /// Every conv + BN pair: backbone.conv1, then each block of layer1 .. layer3 and layer4
    /// (conv1, conv2, conv3, downsample).
    fn conv_bns_mut(&mut self) -> impl Iterator<Item = &mut ConvBn> + '_ {
        let FasterRcnn { backbone, head, .. } = self;
        let Backbone { conv1, layers, .. } = backbone;
        let stages = layers.iter_mut().chain(std::iter::once(&mut head.layer4));
        let blocks = stages.flat_map(|s| s.blocks.iter_mut());
        std::iter::once(conv1).chain(blocks.flat_map(|b| {
            let main = [&mut b.conv1, &mut b.conv2, &mut b.conv3];
            main.into_iter().chain(b.downsample.as_mut())
        }))
    }

    /// Fails if a folded convolution has a non-finite weight or bias: `scale = weight /
    /// sqrt(running_var + eps)`, so a negative variance gives NaN weights.
    fn check_folds(&mut self, path: &Path) -> Result<()> {
        let finite = |c: &crate::nn::Conv2d| {
            c.weight.iter().all(|v| v.is_finite()) && c.bias.iter().flatten().all(|v| v.is_finite())
        };
        let Some(bad) = self
            .conv_bns_mut()
            .find(|cb| !finite(&cb.fused))
            .map(|cb| cb.conv.weight.as_ptr())
        else {
            return Ok(());
        };
        let name = self.param_name(bad).expect("a visited conv weight");
        let conv = name.strip_suffix(".weight").unwrap_or(&name);
        Err(Error::weights(
            path,
            format!(
                "the batch norm after `{conv}` folds into non-finite weights (running_var + eps <= 0?)"
            ),
        ))
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
        self.head
            .forward(&feat, &proposals, image, &self.config, trace)
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
        self.conv_bns_mut().for_each(ConvBn::refold);
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
