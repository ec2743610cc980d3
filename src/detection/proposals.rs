//! RPN proposal selection for one image and one feature level, as torchvision's
//! `RegionProposalNetwork.filter_proposals` (torchvision/models/detection/rpn.py), plus the two
//! box utilities it uses (torchvision.ops `clip_boxes_to_image`, `remove_small_boxes`).
//!
//! ```text
//! idx      = top-k(logits, pre_nms_top_n)          (ties: lower anchor index first)
//! score    = sigmoid(logit[idx]) = 1 / (1 + exp(-logit))
//! box      = clip(decode_rpn(deltas[idx], anchors[idx]), image)
//! keep     w >= min_size and h >= min_size;  then score >= score_thresh
//! keep     NMS(iou > nms_thresh suppressed);  first post_nms_top_n by score
//! ```
//!
//! Inputs follow the RPN head's flattening: row `(y * W + x) * A + a` for cell (y, x), anchor a.

use ndarray::{Array2, ArrayView2, Axis};

use super::box_coder::BoxCoder;
use super::nms::{nms_top_k, score_desc};

/// `RegionProposalNetwork` selection parameters. The algorithm is torchvision's; the counts are
/// py-faster-rcnn's (`lib/fast_rcnn/config.py`: `RPN_PRE_NMS_TOP_N` / `RPN_POST_NMS_TOP_N`
/// 12000 / 2000 in training, 6000 / 300 at test time), not torchvision's, whose `faster_rcnn.py`
/// defaults are 2000 / 2000 in training and 1000 / 1000 at test time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProposalConfig {
    /// Highest-scoring anchors kept before NMS.
    pub pre_nms_top_n: usize,
    /// Proposals kept after NMS.
    pub post_nms_top_n: usize,
    /// NMS IoU threshold (a box with IoU > this with a better one is dropped).
    pub nms_thresh: f32,
    /// Minimum side length in pixels (`remove_small_boxes`).
    pub min_size: f32,
    /// Minimum objectness probability (kept when `score >= score_thresh`).
    pub score_thresh: f32,
}

impl ProposalConfig {
    /// Test time (py-faster-rcnn's `TEST` values): 6000 before NMS, 300 after, NMS 0.7.
    pub fn testing() -> Self {
        ProposalConfig {
            pre_nms_top_n: 6000,
            post_nms_top_n: 300,
            nms_thresh: 0.7,
            min_size: 1e-3,
            score_thresh: 0.0,
        }
    }

    /// Training (py-faster-rcnn's `TRAIN` values): 12000 before NMS, 2000 after, NMS 0.7.
    pub fn training() -> Self {
        ProposalConfig {
            pre_nms_top_n: 12000,
            post_nms_top_n: 2000,
            ..Self::testing()
        }
    }
}

/// Clamp every box into the image `(h, w)`: x to `[0, w]`, y to `[0, h]`
/// (torchvision.ops.clip_boxes_to_image; NaN stays NaN like `torch.clamp`).
pub fn clip_boxes(boxes: &mut Array2<f32>, (h, w): (usize, usize)) {
    let (hf, wf) = (h as f32, w as f32);
    let clamp = |v: f32, hi: f32| {
        if v < 0.0 {
            0.0
        } else if v > hi {
            hi
        } else {
            v
        }
    };
    for mut row in boxes.outer_iter_mut() {
        row[0] = clamp(row[0], wf);
        row[1] = clamp(row[1], hf);
        row[2] = clamp(row[2], wf);
        row[3] = clamp(row[3], hf);
    }
}

/// Indices (increasing) of the boxes with both sides `>= min_size`
/// (torchvision.ops.remove_small_boxes).
pub fn remove_small_boxes(boxes: ArrayView2<f32>, min_size: f32) -> Vec<usize> {
    boxes
        .outer_iter()
        .enumerate()
        .filter(|(_, b)| b[2] - b[0] >= min_size && b[3] - b[1] >= min_size)
        .map(|(i, _)| i)
        .collect()
}

/// Indices of the `k` largest values, by decreasing value, equal values lower index first
/// (`torch.topk` leaves the order of ties unspecified; this is the deterministic choice).
pub fn top_k_indices(values: &[f32], k: usize) -> Vec<usize> {
    let k = k.min(values.len());
    let cmp = |&i: &usize, &j: &usize| score_desc(values[i], values[j]).then(i.cmp(&j));
    let mut idx: Vec<usize> = (0..values.len()).collect();
    if k < idx.len() && k > 0 {
        idx.select_nth_unstable_by(k - 1, cmp);
    }
    idx.truncate(k);
    idx.sort_unstable_by(cmp);
    idx
}

/// Logistic sigmoid `1 / (1 + exp(-x))`.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Proposals of one image from one feature level (torchvision `filter_proposals`, with the
/// decode that `RegionProposalNetwork.forward` applies before it).
///
/// `objectness`: logits `[N]`; `deltas`: `[N, 4]`; `anchors`: `[N, 4]`, all in (H, W, A) order.
/// Returns the proposals `[P, 4]` and their sigmoid scores, by decreasing score.
///
/// Panics if the three inputs disagree in length.
pub fn filter_proposals(
    objectness: &[f32],
    deltas: ArrayView2<f32>,
    anchors: ArrayView2<f32>,
    image_size: (usize, usize),
    cfg: &ProposalConfig,
) -> (Array2<f32>, Vec<f32>) {
    let n = objectness.len();
    assert!(
        deltas.dim() == (n, 4) && anchors.dim() == (n, 4),
        "filter_proposals: objectness [N], deltas [N, 4] and anchors [N, 4] must agree"
    );
    let top = top_k_indices(objectness, cfg.pre_nms_top_n);
    let scores: Vec<f32> = top.iter().map(|&i| sigmoid(objectness[i])).collect();
    let mut boxes = BoxCoder::rpn().decode(
        deltas.select(Axis(0), &top).view(),
        anchors.select(Axis(0), &top).view(),
    );
    clip_boxes(&mut boxes, image_size);

    let keep: Vec<usize> = remove_small_boxes(boxes.view(), cfg.min_size)
        .into_iter()
        .filter(|&i| scores[i] >= cfg.score_thresh)
        .collect();
    let boxes = boxes.select(Axis(0), &keep);
    let scores: Vec<f32> = keep.iter().map(|&i| scores[i]).collect();

    // torchvision runs batched_nms over the levels; with one level (all labels 0) both of its
    // paths reduce to plain NMS: the coordinate trick shifts by 0 * (max + 1) = 0 (the boxes are
    // finite here: NaN sides failed the size test, infinities were clipped), and the per-label
    // path re-sorts NMS's already score-sorted output. So plain NMS, stopped after
    // post_nms_top_n kept boxes, gives the same indices.
    let keep = nms_top_k(boxes.view(), &scores, cfg.nms_thresh, cfg.post_nms_top_n);
    let out_scores = keep.iter().map(|&i| scores[i]).collect();
    (boxes.select(Axis(0), &keep), out_scores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn top_k_breaks_ties_by_lower_index() {
        let v = [1.0f32, 3.0, 2.0, 3.0, 2.0, f32::NAN, 3.0];
        // NaN sorts first (as torch's descending sort), then 3.0 at indices 1, 3, 6.
        assert_eq!(top_k_indices(&v, 4), vec![5, 1, 3, 6]);
        assert_eq!(top_k_indices(&v, 6), vec![5, 1, 3, 6, 2, 4]);
        assert_eq!(top_k_indices(&v, 100).len(), 7);
        assert!(top_k_indices(&v, 0).is_empty());
    }

    #[test]
    fn clip_then_remove_small() {
        let mut b = array![
            [-5.0f32, -5.0, 10.0, 10.0],
            [270.0, 5.0, 300.0, 6.0],
            [0.0, 0.0, 1e-4, 5.0]
        ];
        clip_boxes(&mut b, (20, 275));
        assert_eq!(b.row(0).to_vec(), vec![0.0, 0.0, 10.0, 10.0]);
        assert_eq!(b.row(1).to_vec(), vec![270.0, 5.0, 275.0, 6.0]);
        assert_eq!(remove_small_boxes(b.view(), 1e-3), vec![0, 1]);
    }
}
