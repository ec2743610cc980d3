//! Losses and gradients of the whole Faster R-CNN for one image: the training step's forward
//! and backward pass (torchvision `GeneralizedRCNN` in training mode, "approximate joint
//! training": the proposals are constants of the backward pass, as torchvision's `detach()`).
//!
//! ```text
//! feat      = backbone(x)                                   (stages cached from the first trained one)
//! rpn       = rpn_head(feat);  proposals = filter(rpn)       (cfg.proposals: py-faster-rcnn's 12000 / 2000)
//! RPN loss  on sampled anchors (targets.rs, losses.rs)        -> d_rpn -> dfeat
//! rois      = cat(proposals, gt);  sampled RoIs -> roi_pool -> layer4 -> mean -> predictor
//! head loss on sampled RoIs                                  -> d_head -> dfeat
//! backbone backward(dfeat) down to the first trained stage
//! ```
//! Trained weights follow torchvision's `trainable_backbone_layers`: counted from the top
//! (layer4, layer3, layer2, layer1, conv1), 3 = layer2..layer4; the RPN head and the predictor are
//! always trained. FrozenBatchNorm statistics are buffers, never trained; its affine gamma and
//! beta are trained with `train_bn` (`cryodet train --bn affine`), else frozen as torchvision's.

use crate::backbone::stage_trainable;
use crate::detection::box_coder::BoxCoder;
use crate::detection::proposals::{filter_proposals, ProposalConfig};
use crate::model::FasterRcnn;
use crate::nn::Grads;
use crate::train::data::DIFFICULT;
use crate::train::losses::{head_loss, rpn_loss};
use crate::train::targets::{assign_anchors, assign_rois, ignore_near, sample_labels};
use ndarray::{Array2, Array4, ArrayView2, Axis};

pub use crate::train::targets::Sampling;

/// Which losses a step optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// All four losses (approximate joint training; proposals are constants in the backward).
    Joint,
    /// RPN losses only (the head is not run); gradients reach the RPN head and the backbone.
    RpnOnly,
    /// RoI-head losses only (proposals from the current RPN); gradients reach the head and the
    /// backbone, not the RPN head.
    HeadOnly,
}

/// Training-time settings: torchvision's Faster R-CNN defaults (samplers, matchers, beta), except
/// the proposal counts, which are py-faster-rcnn's 12000 / 2000 (torchvision: 2000 / 2000; see
/// [`ProposalConfig`]).
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub rpn_batch: usize,
    pub rpn_pos_fraction: f32,
    pub rpn_fg_iou: f32,
    pub rpn_bg_iou: f32,
    pub roi_batch: usize,
    pub roi_pos_fraction: f32,
    pub roi_fg_iou: f32,
    /// smooth-L1 beta of both box losses (torchvision 1/9; the study's Eq. 4: 1).
    pub beta: f32,
    pub sampling: Sampling,
    /// torchvision's trainable_backbone_layers (0..=5): 3 trains layer2, layer3, layer4.
    pub trainable_layers: usize,
    /// Also train the trained stages' batch-norm affine parameters (gamma, beta; statistics
    /// stay fixed). torchvision's FrozenBatchNorm2d trains neither (false).
    pub train_bn: bool,
    pub proposals: ProposalConfig,
    pub phase: Phase,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            rpn_batch: 256,
            rpn_pos_fraction: 0.5,
            rpn_fg_iou: 0.7,
            rpn_bg_iou: 0.3,
            roi_batch: 512,
            roi_pos_fraction: 0.25,
            roi_fg_iou: 0.5,
            beta: 1.0 / 9.0,
            sampling: Sampling::Random,
            trainable_layers: 3,
            train_bn: false,
            proposals: ProposalConfig::training(),
            phase: Phase::Joint,
        }
    }
}

/// The four losses of one image (torchvision's `loss_objectness`, `loss_rpn_box_reg`,
/// `loss_classifier`, `loss_box_reg`); a phase's inactive losses are 0.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Losses {
    pub objectness: f32,
    pub rpn_box_reg: f32,
    pub classifier: f32,
    pub box_reg: f32,
}

impl Losses {
    /// torchvision's names of the four losses, in the order of [`Losses::values`].
    pub const NAMES: [&'static str; 4] = [
        "loss_objectness",
        "loss_rpn_box_reg",
        "loss_classifier",
        "loss_box_reg",
    ];

    /// `[objectness, rpn_box_reg, classifier, box_reg]`.
    pub fn values(&self) -> [f32; 4] {
        [
            self.objectness,
            self.rpn_box_reg,
            self.classifier,
            self.box_reg,
        ]
    }

    /// Sum with all weights lambda = 1.
    pub fn total(&self) -> f32 {
        self.objectness + self.rpn_box_reg + self.classifier + self.box_reg
    }
}

/// Losses and gradients for one image `x` `[3, 1, H, W]` (normalized) with ground truth
/// `gt_boxes` `[G, 4]` (x1, y1, x2, y2 in x's pixels) and `gt_labels` (1..K-1).
/// Gradients are keyed by torchvision weight name (as `FasterRcnn::export`) and hold the
/// trained weights the phase reaches (RpnOnly: no `head.*`; HeadOnly: no `rpn.*`).
pub fn loss_and_grads(
    model: &FasterRcnn,
    x: &Array4<f32>,
    gt_boxes: ArrayView2<f32>,
    gt_labels: &[usize],
    cfg: &TrainConfig,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> (
    Losses,
    std::collections::BTreeMap<String, ndarray::ArrayD<f32>>,
) {
    let (_, _, h, w) = x.dim();
    // Difficult objects (label DIFFICULT) are not targets; what overlaps them is not background.
    let (gt_boxes, gt_labels, ignore) = split_difficult(gt_boxes, gt_labels);
    let (gt_boxes, gt_labels) = (gt_boxes.view(), &gt_labels[..]);
    let t = cfg.trainable_layers.min(5);
    let train_layer4 = stage_trainable(t, 4);
    let train_feat = stage_trainable(t, 3);
    let mut grads = Grads::new();
    let mut losses = Losses::default();

    let (feat, bcache) = model.backbone.forward_train(x, t, cfg.train_bn);
    let (rpn, rpn_cache) = model.rpn.forward_cached(&feat);
    let (fh, fw) = (feat.dim().2, feat.dim().3);
    let anchors = model.anchors((h, w), (fh, fw));
    let proposals = filter_proposals(
        &rpn.objectness,
        rpn.deltas.view(),
        anchors.view(),
        (h, w),
        &cfg.proposals,
    )
    .0;
    let mut dfeat: Option<Array4<f32>> = None;
    let mut add = |d: Option<Array4<f32>>| {
        if let Some(d) = d {
            match dfeat.as_mut() {
                Some(acc) => *acc += &d,
                None => dfeat = Some(d),
            }
        }
    };

    // RPN: anchor targets, sample, losses, backward.
    if cfg.phase != Phase::HeadOnly {
        let mut a = assign_anchors(anchors.view(), gt_boxes, cfg.rpn_fg_iou, cfg.rpn_bg_iou);
        ignore_near(&mut a.labels, anchors.view(), ignore.view(), cfg.rpn_bg_iou);
        let sampled = sample_labels(
            &a.labels,
            cfg.rpn_batch,
            cfg.rpn_pos_fraction,
            cfg.sampling,
            rng,
        );
        let labels: Vec<f32> = sampled.iter().map(|&i| a.labels[i] as f32).collect();
        let targets = regression_targets(
            &BoxCoder::rpn(),
            &sampled,
            &a.labels,
            &a.matched,
            gt_boxes,
            anchors.view(),
        );
        let l = rpn_loss(
            &rpn.objectness,
            rpn.deltas.view(),
            &sampled,
            &labels,
            targets.view(),
            cfg.beta,
        );
        losses.objectness = l.objectness;
        losses.rpn_box_reg = l.box_reg;
        add(model.rpn.backward(
            &feat,
            rpn_cache,
            &l.d_objectness,
            l.d_deltas.view(),
            train_feat,
            &mut grads,
        ));
    } else {
        drop(rpn_cache);
    }

    // RoI head: proposals + GT, targets, sample, forward on the sample, losses, backward.
    if cfg.phase != Phase::RpnOnly {
        let (rois, mut a) = assign_rois(proposals.view(), gt_boxes, gt_labels, cfg.roi_fg_iou);
        ignore_near(&mut a.labels, rois.view(), ignore.view(), cfg.roi_fg_iou);
        let sampled = sample_labels(
            &a.labels,
            cfg.roi_batch,
            cfg.roi_pos_fraction,
            cfg.sampling,
            rng,
        );
        if !sampled.is_empty() {
            let rois_s = rois.select(Axis(0), &sampled);
            let labels: Vec<usize> = sampled.iter().map(|&i| a.labels[i] as usize).collect();
            let targets = regression_targets(
                &BoxCoder::roi_head(),
                &sampled,
                &a.labels,
                &a.matched,
                gt_boxes,
                rois.view(),
            );
            let (out, hcache) = model.head.forward_train(
                &feat,
                rois_s.view(),
                &model.config,
                train_layer4,
                cfg.train_bn,
            );
            let l = head_loss(
                out.cls_logits.view(),
                out.box_deltas.view(),
                &labels,
                targets.view(),
                cfg.beta,
            );
            losses.classifier = l.classifier;
            losses.box_reg = l.box_reg;
            drop(out);
            add(model.head.backward(
                hcache,
                l.d_cls.view(),
                l.d_bbox.view(),
                train_feat,
                &mut grads,
            ));
        }
    }

    drop(feat);
    if let Some(d) = dfeat {
        model.backbone.backward(bcache, d, &mut grads);
    }
    // Weights the phase trains but no gradient reached (no sampled anchors or RoIs): zeros.
    for (name, shape) in trained_weights(model, t, cfg.train_bn, cfg.phase) {
        grads
            .entry(name)
            .or_insert_with(|| ndarray::ArrayD::zeros(shape));
    }
    (losses, grads)
}

/// `(targets [G, 4], their labels, difficult boxes [D, 4])` of a ground truth whose difficult
/// objects carry the label [`DIFFICULT`].
fn split_difficult(
    boxes: ArrayView2<f32>,
    labels: &[usize],
) -> (Array2<f32>, Vec<usize>, Array2<f32>) {
    assert_eq!(boxes.nrows(), labels.len(), "one label per GT box");
    let keep: Vec<usize> = (0..labels.len())
        .filter(|&i| labels[i] != DIFFICULT)
        .collect();
    let hard: Vec<usize> = (0..labels.len())
        .filter(|&i| labels[i] == DIFFICULT)
        .collect();
    (
        boxes.select(Axis(0), &keep),
        keep.iter().map(|&i| labels[i]).collect(),
        boxes.select(Axis(0), &hard),
    )
}

/// Names and shapes of the weights a step with `trainable_layers`, `train_bn` and `phase`
/// trains (the keys of [`loss_and_grads`]'s gradients).
pub fn trained_weights(
    model: &FasterRcnn,
    trainable_layers: usize,
    train_bn: bool,
    phase: Phase,
) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let conv = |out: &mut Vec<(String, Vec<usize>)>, name: &str, w: &ndarray::Array4<f32>| {
        out.push((format!("{name}.weight"), w.shape().to_vec()));
    };
    let conv_bn = |out: &mut Vec<(String, Vec<usize>)>,
                   conv_name: &str,
                   bn: &str,
                   cb: &crate::backbone::ConvBn| {
        conv(out, conv_name, &cb.conv.weight);
        if train_bn {
            out.push((format!("{bn}.weight"), cb.bn.weight.shape().to_vec()));
            out.push((format!("{bn}.bias"), cb.bn.bias.shape().to_vec()));
        }
    };
    let stage = |out: &mut Vec<(String, Vec<usize>)>, prefix: &str, st: &crate::backbone::Stage| {
        for (i, b) in st.blocks.iter().enumerate() {
            let p = format!("{prefix}.{i}");
            conv_bn(out, &format!("{p}.conv1"), &format!("{p}.bn1"), &b.conv1);
            conv_bn(out, &format!("{p}.conv2"), &format!("{p}.bn2"), &b.conv2);
            conv_bn(out, &format!("{p}.conv3"), &format!("{p}.bn3"), &b.conv3);
            if let Some(d) = &b.downsample {
                conv_bn(
                    out,
                    &format!("{p}.downsample.0"),
                    &format!("{p}.downsample.1"),
                    d,
                );
            }
        }
    };
    if stage_trainable(trainable_layers, 0) {
        conv_bn(
            &mut out,
            "backbone.conv1",
            "backbone.bn1",
            &model.backbone.conv1,
        );
    }
    for (k, st) in model.backbone.layers.iter().enumerate() {
        if stage_trainable(trainable_layers, k + 1) {
            stage(&mut out, &format!("backbone.layer{}", k + 1), st);
        }
    }
    if phase != Phase::HeadOnly {
        for (name, c) in [
            ("rpn.conv", &model.rpn.conv),
            ("rpn.cls_logits", &model.rpn.cls_logits),
            ("rpn.bbox_pred", &model.rpn.bbox_pred),
        ] {
            conv(&mut out, name, &c.weight);
            out.push((format!("{name}.bias"), vec![c.out_channels()]));
        }
    }
    if phase != Phase::RpnOnly {
        if stage_trainable(trainable_layers, 4) {
            stage(&mut out, "head.layer4", &model.head.layer4);
        }
        for (name, l) in [
            ("head.cls_score", &model.head.cls_score),
            ("head.bbox_pred", &model.head.bbox_pred),
        ] {
            out.push((format!("{name}.weight"), l.weight.shape().to_vec()));
            out.push((format!("{name}.bias"), l.bias.shape().to_vec()));
        }
    }
    out
}

/// Encoded targets `[S, 4]` of the sampled elements (rows of non-foreground ones are 0).
fn regression_targets(
    coder: &BoxCoder,
    sampled: &[usize],
    labels: &[i64],
    matched: &[usize],
    gt: ArrayView2<f32>,
    reference: ArrayView2<f32>,
) -> Array2<f32> {
    let fg: Vec<usize> = (0..sampled.len())
        .filter(|&k| labels[sampled[k]] >= 1)
        .collect();
    let mut out = Array2::zeros((sampled.len(), 4));
    if fg.is_empty() {
        return out;
    }
    let g: Vec<usize> = fg.iter().map(|&k| matched[sampled[k]]).collect();
    let r: Vec<usize> = fg.iter().map(|&k| sampled[k]).collect();
    let enc = coder.encode(
        gt.select(Axis(0), &g).view(),
        reference.select(Axis(0), &r).view(),
    );
    for (row, &k) in fg.iter().enumerate() {
        out.row_mut(k).assign(&enc.row(row));
    }
    out
}
