//! Final detections of one image from the RoI head's outputs, as torchvision's
//! `RoIHeads.postprocess_detections` (torchvision/models/detection/roi_heads.py).
//!
//! ```text
//! p[i, k]      = softmax_k(class_logits[i, :])
//! box[i, k]    = clip(decode_roi_head(box_regression[i, 4k..4k+4], proposals[i]), image)
//! candidates   = (i, k) for k = 1..K-1, proposal-major, class-minor   (column 0 = background)
//! keep         p > score_thresh (strict);  both sides >= min_size;
//!              per-class NMS (IoU > nms_thresh suppressed);  first detections_per_img by score
//! ```
//!
//! The candidate order matters only for exact ties; it is torchvision's
//! (`boxes[:, 1:].reshape(-1, 4)`), so ties resolve the same way.

use ndarray::{Array2, ArrayView2, Axis};

use super::box_coder::BoxCoder;
use super::nms::batched_nms;
use super::proposals::remove_small_boxes;

/// `RoIHeads` test-time parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PostprocessConfig {
    /// Class probability a detection must exceed (strictly).
    pub score_thresh: f32,
    /// Per-class NMS IoU threshold.
    pub nms_thresh: f32,
    /// Detections kept per image, best first.
    pub detections_per_img: usize,
    /// Minimum side length in pixels (torchvision hard-codes 1e-2).
    pub min_size: f32,
}

impl Default for PostprocessConfig {
    /// torchvision's Faster R-CNN defaults: 0.05, 0.5, 100, 1e-2.
    fn default() -> Self {
        PostprocessConfig {
            score_thresh: 0.05,
            nms_thresh: 0.5,
            detections_per_img: 100,
            min_size: 1e-2,
        }
    }
}

/// Detections of one image, by decreasing score.
#[derive(Clone, Debug, PartialEq)]
pub struct Detections {
    /// `[D, 4]` as `(x1, y1, x2, y2)` in input-image pixels.
    pub boxes: Array2<f32>,
    /// Class probabilities, `[D]`.
    pub scores: Vec<f32>,
    /// Class indices in `1..K` (0 is the background and never reported).
    pub labels: Vec<usize>,
}

impl Detections {
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}

/// Row-wise softmax `exp(x - max) / sum exp(x - max)` of `[P, K]` logits.
pub fn softmax_rows(logits: ArrayView2<f32>) -> Array2<f32> {
    let mut out = logits.to_owned();
    for mut row in out.outer_iter_mut() {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let sum: f32 = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
    out
}

/// Detections of one image (torchvision `postprocess_detections`).
///
/// `class_logits` `[P, K]`, `box_regression` `[P, 4K]` (class-specific deltas), `proposals`
/// `[P, 4]`, `image_size` `(h, w)`. Panics if the shapes disagree.
pub fn postprocess_detections(
    class_logits: ArrayView2<f32>,
    box_regression: ArrayView2<f32>,
    proposals: ArrayView2<f32>,
    image_size: (usize, usize),
    cfg: &PostprocessConfig,
) -> Detections {
    let (num_props, num_classes) = class_logits.dim();
    assert!(
        box_regression.dim() == (num_props, 4 * num_classes) && proposals.dim() == (num_props, 4),
        "postprocess_detections: need class_logits [P, K], box_regression [P, 4K], proposals [P, 4]"
    );
    let scores = softmax_rows(class_logits);
    // [P, K, 4] viewed as [P * K, 4], clipped.
    let mut boxes = BoxCoder::roi_head()
        .decode_per_class(box_regression, proposals)
        .into_shape_with_order((num_props * num_classes, 4))
        .expect("decode_per_class returns a contiguous array");
    super::proposals::clip_boxes(&mut boxes, image_size);

    // Foreground candidates (i, k >= 1), proposal-major, above the score threshold.
    let mut cand_rows = Vec::new();
    let mut cand_scores = Vec::new();
    let mut cand_labels = Vec::new();
    for i in 0..num_props {
        for k in 1..num_classes {
            let s = scores[[i, k]];
            if s > cfg.score_thresh {
                cand_rows.push(i * num_classes + k);
                cand_scores.push(s);
                cand_labels.push(k);
            }
        }
    }
    let cand_boxes = boxes.select(Axis(0), &cand_rows);

    let big = remove_small_boxes(cand_boxes.view(), cfg.min_size);
    let boxes = cand_boxes.select(Axis(0), &big);
    let scores: Vec<f32> = big.iter().map(|&i| cand_scores[i]).collect();
    let labels: Vec<usize> = big.iter().map(|&i| cand_labels[i]).collect();

    let mut keep = batched_nms(boxes.view(), &scores, &labels, cfg.nms_thresh);
    keep.truncate(cfg.detections_per_img);
    Detections {
        boxes: boxes.select(Axis(0), &keep),
        scores: keep.iter().map(|&i| scores[i]).collect(),
        labels: keep.iter().map(|&i| labels[i]).collect(),
    }
}
