//! The RoI head of the C4 Faster R-CNN (torchvision's `roi_heads.py`, `RoIHeads` with a
//! `ResNet` layer4 box head and `FastRCNNPredictor`), on the P proposals `[P, 4]` of one image:
//!
//! ```text
//! RoI max-pool 7x7 at scale 1/16      [C3, P, 7, 7]   (CNHW: all RoIs in one batch)
//! layer4 (first block stride 2)       [C4, P, 4, 4]
//! spatial mean                        [P, C4]
//! cls_score = Linear(C4 -> K)         [P, K]
//! bbox_pred = Linear(C4 -> 4K)        [P, 4K]         (class-specific deltas)
//! postprocess: softmax, decode, clip, score > 0.05, per-class NMS 0.5, top 100
//! ```
//! layer4 runs on all P RoIs at once, so each of its convolutions is one GEMM with
//! `N = P * 16` columns.

use crate::backbone::{Stage, StageCache};
use crate::detection::postprocess::{postprocess_detections, Detections};
use crate::detection::roi_pool::{roi_pool_backward, roi_pool_forward, roi_pool_values};
use crate::model::{DetectConfig, Trace};
use crate::nn::mean::{spatial_mean, spatial_mean_backward};
use crate::nn::{Grads, Linear};
use ndarray::{Array1, Array2, Array4, ArrayView2, Axis};

/// The RoI head: layer4 + spatial mean + the class-specific predictor.
#[derive(Debug, Clone)]
pub struct RoiHead {
    pub layer4: Stage,
    pub cls_score: Linear,
    pub bbox_pred: Linear,
}

/// The predictor's outputs on P RoIs.
pub struct HeadOutput {
    /// Class logits, `[P, K]`.
    pub cls_logits: Array2<f32>,
    /// Class-specific box deltas, `[P, 4K]`.
    pub box_deltas: Array2<f32>,
}

/// The intermediates [`RoiHead::logits`] keeps when asked (for trace).
pub struct Pooled {
    /// RoI-pool output, `[C3, P, 7, 7]`.
    pub map: Array4<f32>,
    /// Spatial mean of layer4's output (the predictor's input), `[P, C4]`.
    pub vectors: Array2<f32>,
}

/// What the RoI head's backward needs (see [`RoiHead::forward_train`]).
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

impl RoiHead {
    /// K, the number of classes including the background.
    pub fn num_classes(&self) -> usize {
        self.cls_score.weight.nrows()
    }

    /// RoI pooling, layer4, mean, predictor, postprocess on `proposals` `[P, 4]` within an
    /// image of `image = (h, w)`; with `trace`, the intermediates are recorded.
    pub fn forward(
        &self,
        feat: &Array4<f32>,
        proposals: &Array2<f32>,
        image: (usize, usize),
        cfg: &DetectConfig,
        trace: Option<&mut Trace>,
    ) -> Detections {
        let (pooled, out) = self.logits(feat, proposals, cfg, trace.is_some());
        let HeadOutput {
            cls_logits,
            box_deltas,
        } = out;
        let dets = postprocess_detections(
            cls_logits.view(),
            box_deltas.view(),
            proposals.view(),
            image,
            &cfg.postprocess,
        );
        if let Some(t) = trace {
            let Pooled { map, vectors } = pooled.expect("kept for trace");
            let pm = map
                .view()
                .permuted_axes([1, 0, 2, 3])
                .as_standard_layout()
                .into_owned();
            t.push("roi_pool", pm.into_dyn());
            t.push("head.pooled", vectors.into_dyn());
            t.push("head.cls_score", cls_logits.into_dyn());
            t.push("head.bbox_pred", box_deltas.into_dyn());
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

    /// The predictor's outputs on `proposals` `[P, 4]`, and (if `keep`) the intermediates.
    pub fn logits(
        &self,
        feat: &Array4<f32>,
        proposals: &Array2<f32>,
        cfg: &DetectConfig,
        keep: bool,
    ) -> (Option<Pooled>, HeadOutput) {
        let (k, ps) = (self.num_classes(), cfg.pool_size);
        if proposals.nrows() == 0 {
            let pooled = keep.then(|| Pooled {
                map: Array4::zeros((feat.dim().0, 0, ps, ps)),
                vectors: Array2::zeros((0, self.cls_score.weight.ncols())),
            });
            let out = HeadOutput {
                cls_logits: Array2::zeros((0, k)),
                box_deltas: Array2::zeros((0, 4 * k)),
            };
            return (pooled, out);
        }
        let map = roi_pool_values(
            feat.index_axis(Axis(1), 0),
            proposals.view(),
            ps,
            ps,
            cfg.spatial_scale,
        );
        let y = self.layer4.forward(&map);
        let vectors = spatial_mean(&y);
        let out = self.predict(vectors.view());
        (keep.then_some(Pooled { map, vectors }), out)
    }

    /// `cls_score` and `bbox_pred` on the pooled vectors `[P, C4]`.
    fn predict(&self, pooled: ArrayView2<f32>) -> HeadOutput {
        HeadOutput {
            cls_logits: self.cls_score.forward(pooled),
            box_deltas: self.bbox_pred.forward(pooled),
        }
    }

    /// The forward pass for training on `rois` `[P, 4]` (P > 0): RoI pool, layer4 (cached when
    /// `train_layer4`; its batch-norm affine gradients too with `train_bn`), spatial mean,
    /// predictor.
    pub fn forward_train(
        &self,
        feat: &Array4<f32>,
        rois: ArrayView2<f32>,
        cfg: &DetectConfig,
        train_layer4: bool,
        train_bn: bool,
    ) -> (HeadOutput, HeadCache) {
        let ps = cfg.pool_size;
        let (pooled_map, argmax) =
            roi_pool_forward(feat.index_axis(Axis(1), 0), rois, ps, ps, cfg.spatial_scale);
        let (layer4, out_hw, y) = if train_layer4 {
            let c = self.layer4.forward_cached(pooled_map);
            let y = spatial_mean(c.output());
            let (_, _, oh, ow) = c.output().dim();
            (Some(c), (oh, ow), y)
        } else {
            let out = self.layer4.forward(&pooled_map);
            let (_, _, oh, ow) = out.dim();
            (None, (oh, ow), spatial_mean(&out))
        };
        let out = self.predict(y.view());
        let cache = HeadCache {
            argmax,
            feat_hw: (feat.dim().2, feat.dim().3),
            layer4,
            train_bn,
            out_hw,
            pooled: y,
        };
        (out, cache)
    }

    /// Backward of [`RoiHead::forward_train`] from `d_cls` `[P, K]` and `d_bbox` `[P, 4K]`:
    /// predictor and (if cached) layer4 gradients into `grads` as `head.*`; returns dL/dfeat
    /// `[C3, 1, h, w]` if `need_dfeat` (requires a cached layer4).
    pub fn backward(
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
        let gc = self.cls_score.backward(pooled.view(), d_cls);
        let gb = self.bbox_pred.backward(pooled.view(), d_bbox);
        drop(pooled);
        grads.insert("head.cls_score.weight".into(), gc.dw.into_dyn());
        grads.insert("head.cls_score.bias".into(), gc.db.into_dyn());
        grads.insert("head.bbox_pred.weight".into(), gb.dw.into_dyn());
        grads.insert("head.bbox_pred.bias".into(), gb.db.into_dyn());
        let layer4 = layer4?;
        let dy = spatial_mean_backward(&(gc.dx + &gb.dx), out_hw);
        let d_pooled =
            self.layer4
                .backward("head.layer4", layer4, dy, need_dfeat, train_bn, grads)?;
        let (c, _, _, _) = d_pooled.dim();
        let d = roi_pool_backward(d_pooled.view(), argmax.view(), feat_hw.0, feat_hw.1);
        Some(
            d.into_shape_with_order((c, 1, feat_hw.0, feat_hw.1))
                .expect("contiguous"),
        )
    }
}
