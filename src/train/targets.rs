//! Training targets of Faster R-CNN, as torchvision (models/detection/_utils.py `Matcher`,
//! `BalancedPositiveNegativeSampler`; rpn.py `assign_targets_to_anchors`; roi_heads.py
//! `add_gt_proposals`, `assign_targets_to_proposals`, `select_training_samples`).
//!
//! ```text
//! Matcher(iou [G, N], high, low):  best[n] = max_g iou[g, n], arg[n] = first g attaining it
//!   match[n] = arg[n] if best >= high;  BETWEEN (-2) if low <= best < high;  BELOW (-1) if best < low
//!   allow_low_quality: for every g, every n with iou[g, n] == max_n' iou[g, n'] gets match[n] = arg[n]
//! RPN:      labels 1 (matched), 0 (BELOW), -1 (BETWEEN, ignored); no GT -> all 0
//!           matcher (0.7, 0.3, low-quality on); targets = BoxCoder::rpn().encode(gt[match], anchor)
//! RoI head: rois = cat(proposals, gt); matcher (0.5, 0.5, low-quality off);
//!           labels = gt_label[match] (>= 1), 0 for BELOW; no GT -> all 0
//!           targets = BoxCoder::roi_head().encode(gt[match], roi)
//! sampler:  pos = {label >= 1}, neg = {label == 0}; num_pos = min(#pos, int(batch * fraction)),
//!           num_neg = min(#neg, batch - num_pos); random subsets (or, `Sampling::All`, all of them)
//! ```
//! Sampled indices are returned in increasing order, as torchvision's `torch.where(pos | neg)`.

use crate::detection::nms::box_iou;
use ndarray::{Array2, ArrayView2, Axis};
use rand::seq::index::sample;

/// `Matcher.BELOW_LOW_THRESHOLD`
pub const BELOW_LOW_THRESHOLD: i64 = -1;
/// `Matcher.BETWEEN_THRESHOLDS`
pub const BETWEEN_THRESHOLDS: i64 = -2;

/// How the sampler picks anchors / RoIs among the labelled ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// torchvision's sampler: random subsets of at most `batch` with a positive fraction.
    Random,
    /// Every labelled (non-ignored) element; deterministic (used to compare with torch).
    All,
}

/// torchvision's `Matcher` on `iou` `[G, N]` (G >= 1): per column the matched row, or
/// [`BELOW_LOW_THRESHOLD`] / [`BETWEEN_THRESHOLDS`].
pub fn match_boxes(iou: ArrayView2<f32>, high: f32, low: f32, allow_low_quality: bool) -> Vec<i64> {
    let (g, n) = iou.dim();
    assert!(g > 0, "match_boxes: no ground-truth boxes");
    let mut all = vec![0i64; n];
    let mut best = vec![f32::NEG_INFINITY; n];
    for gi in 0..g {
        for (j, &v) in iou.row(gi).iter().enumerate() {
            if v > best[j] || gi == 0 {
                best[j] = v;
                all[j] = gi as i64;
            }
        }
    }
    let mut matches: Vec<i64> = (0..n)
        .map(|j| {
            if best[j] < low {
                BELOW_LOW_THRESHOLD
            } else if best[j] < high {
                BETWEEN_THRESHOLDS
            } else {
                all[j]
            }
        })
        .collect();
    if allow_low_quality {
        for row in iou.outer_iter() {
            let hi = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            for (j, &v) in row.iter().enumerate() {
                if v == hi {
                    matches[j] = all[j];
                }
            }
        }
    }
    matches
}

/// Labels and matched GT of the elements being classified (anchors or RoIs).
#[derive(Debug, Clone)]
pub struct Assigned {
    /// >= 1: foreground (class), 0: background, -1: ignored.
    pub labels: Vec<i64>,
    /// Matched GT index for foreground elements (0 otherwise).
    pub matched: Vec<usize>,
}

/// RPN targets of `anchors` `[N, 4]` against `gt` `[G, 4]` (rpn.py `assign_targets_to_anchors`).
pub fn assign_anchors(
    anchors: ArrayView2<f32>,
    gt: ArrayView2<f32>,
    fg_iou: f32,
    bg_iou: f32,
) -> Assigned {
    let n = anchors.nrows();
    if gt.nrows() == 0 {
        return Assigned {
            labels: vec![0; n],
            matched: vec![0; n],
        };
    }
    let m = match_boxes(box_iou(gt, anchors).view(), fg_iou, bg_iou, true);
    Assigned {
        labels: m
            .iter()
            .map(|&v| match v {
                BELOW_LOW_THRESHOLD => 0,
                BETWEEN_THRESHOLDS => -1,
                _ => 1,
            })
            .collect(),
        matched: m.iter().map(|&v| v.max(0) as usize).collect(),
    }
}

/// RoI-head targets: `rois` = proposals followed by the GT boxes (roi_heads.py
/// `add_gt_proposals`), matched with `fg_iou` as both thresholds and no low-quality matches.
/// Returns `(rois [P + G, 4], assignment)`.
pub fn assign_rois(
    proposals: ArrayView2<f32>,
    gt: ArrayView2<f32>,
    gt_labels: &[usize],
    fg_iou: f32,
) -> (Array2<f32>, Assigned) {
    assert_eq!(
        gt.nrows(),
        gt_labels.len(),
        "assign_rois: one label per GT box"
    );
    let rois = ndarray::concatenate(Axis(0), &[proposals.view(), gt.view()]).expect("both [_, 4]");
    let n = rois.nrows();
    if gt.nrows() == 0 {
        return (
            rois,
            Assigned {
                labels: vec![0; n],
                matched: vec![0; n],
            },
        );
    }
    let m = match_boxes(box_iou(gt, rois.view()).view(), fg_iou, fg_iou, false);
    let a = Assigned {
        labels: m
            .iter()
            .map(|&v| match v {
                BELOW_LOW_THRESHOLD => 0,
                BETWEEN_THRESHOLDS => -1,
                g => gt_labels[g as usize] as i64,
            })
            .collect(),
        matched: m.iter().map(|&v| v.max(0) as usize).collect(),
    };
    (rois, a)
}

/// Background elements (label 0) of `boxes` `[N, 4]` that overlap a difficult object of
/// `ignore` `[D, 4]` with IoU `>= thresh` become ignored (-1): a detection of an object no
/// annotator could see is neither right nor wrong (the VOC devkit's rule for `<difficult>`,
/// carried into training; torchvision has no such objects). Foreground labels are kept.
pub fn ignore_near(
    labels: &mut [i64],
    boxes: ArrayView2<f32>,
    ignore: ArrayView2<f32>,
    thresh: f32,
) {
    assert_eq!(
        labels.len(),
        boxes.nrows(),
        "ignore_near: one label per box"
    );
    if ignore.nrows() == 0 {
        return;
    }
    let iou = box_iou(ignore, boxes); // [D, N]
    for (j, l) in labels.iter_mut().enumerate() {
        if *l == 0 && iou.column(j).iter().any(|&v| v >= thresh) {
            *l = -1;
        }
    }
}

/// torchvision's `BalancedPositiveNegativeSampler` for one image: the sampled indices in
/// increasing order.
pub fn sample_labels(
    labels: &[i64],
    batch: usize,
    positive_fraction: f32,
    sampling: Sampling,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Vec<usize> {
    let pos: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] >= 1).collect();
    let neg: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == 0).collect();
    let mut out = match sampling {
        Sampling::All => pos.into_iter().chain(neg).collect::<Vec<_>>(),
        Sampling::Random => {
            let num_pos = pos.len().min((batch as f32 * positive_fraction) as usize);
            let num_neg = neg.len().min(batch - num_pos);
            let mut v: Vec<usize> = sample(rng, pos.len(), num_pos)
                .into_iter()
                .map(|i| pos[i])
                .collect();
            v.extend(sample(rng, neg.len(), num_neg).into_iter().map(|i| neg[i]));
            v
        }
    };
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_near_turns_only_overlapping_background_to_ignored() {
        // Element 0 overlaps the difficult box (IoU 0.81), element 1 too but is foreground,
        // element 2 is far away, element 3 overlaps it below the threshold (IoU 0.31).
        let boxes = array![
            [0.0f32, 0.0, 9.0, 10.0],
            [0.0, 0.0, 10.0, 10.0],
            [50.0, 50.0, 60.0, 60.0],
            [5.0, 0.0, 15.0, 10.0]
        ];
        let ignore = array![[0.0f32, 0.0, 10.0, 9.0]];
        let mut labels = vec![0i64, 1, 0, 0];
        ignore_near(&mut labels, boxes.view(), ignore.view(), 0.5);
        assert_eq!(labels, vec![-1, 1, 0, 0]);
        // No difficult object: unchanged.
        let mut labels = vec![0i64, 1, 0, 0];
        ignore_near(
            &mut labels,
            boxes.view(),
            Array2::<f32>::zeros((0, 4)).view(),
            0.5,
        );
        assert_eq!(labels, vec![0, 1, 0, 0]);
    }
    use ndarray::array;
    use rand::SeedableRng;

    #[test]
    fn matcher_thresholds_and_low_quality_ties() {
        // 2 GT x 5 anchors (fg 0.7, bg 0.3): anchor 1 is fg for GT 0 (0.8), anchors 0, 3, 4 are
        // between, anchor 2 below. Both GTs' best anchor is anchor 1 (0.8 and 0.75), already fg.
        let iou = array![[0.5f32, 0.8, 0.1, 0.0, 0.2], [0.1, 0.75, 0.2, 0.4, 0.4]];
        let m = match_boxes(iou.view(), 0.7, 0.3, false);
        assert_eq!(
            m,
            vec![
                BETWEEN_THRESHOLDS,
                0,
                BELOW_LOW_THRESHOLD,
                BETWEEN_THRESHOLDS,
                BETWEEN_THRESHOLDS
            ]
        );
        // Low-quality matching only adds each GT's best anchor, here anchor 1 for both: nothing
        // changes (anchors 3, 4 at 0.4 are not GT 1's best).
        assert_eq!(match_boxes(iou.view(), 0.7, 0.3, true), m);

        // The low-quality rule proper: GT 1's best IoU (0.4, anchors 3 and 4 tied) is below the
        // fg threshold; without the rule GT 1 has no positive anchor, with it both tied anchors
        // become fg, matched to GT 1.
        let iou = array![[0.5f32, 0.8, 0.1, 0.0, 0.2], [0.1, 0.2, 0.2, 0.4, 0.4]];
        assert_eq!(
            match_boxes(iou.view(), 0.7, 0.3, false),
            vec![
                BETWEEN_THRESHOLDS,
                0,
                BELOW_LOW_THRESHOLD,
                BETWEEN_THRESHOLDS,
                BETWEEN_THRESHOLDS
            ]
        );
        assert_eq!(
            match_boxes(iou.view(), 0.7, 0.3, true),
            vec![BETWEEN_THRESHOLDS, 0, BELOW_LOW_THRESHOLD, 1, 1]
        );

        let iou = array![[0.5f32, 0.1, 0.0], [0.2, 0.25, 0.25]];
        // GT 1's best (0.25, below even the bg threshold) is tied by anchors 1 and 2: both become
        // fg (matched to their own argmax, GT 1); anchor 0 is GT 0's best.
        assert_eq!(match_boxes(iou.view(), 0.7, 0.3, true), vec![0, 1, 1]);

        // torchvision's quirk: a promoted anchor is matched to its own argmax GT, not to the GT
        // whose best it is. GT 1's best anchor is anchor 1 (0.3), whose best GT is GT 0 (0.35).
        let iou = array![[0.9f32, 0.35], [0.0, 0.3]];
        assert_eq!(
            match_boxes(iou.view(), 0.7, 0.3, false),
            vec![0, BETWEEN_THRESHOLDS]
        );
        assert_eq!(match_boxes(iou.view(), 0.7, 0.3, true), vec![0, 0]);
    }

    /// RPN labels: a GT box whose best anchor IoU (0.5) is below the fg threshold (0.7) still
    /// gets that anchor as a positive (label 1, matched to it).
    #[test]
    fn rpn_low_quality_best_anchor_is_positive() {
        let anchors = array![
            [0.0f32, 0.0, 10.0, 10.0],
            [20.0, 20.0, 30.0, 30.0],
            [0.0, 10.0, 10.0, 30.0]
        ];
        // IoU with anchor 0: 100 / 200 = 0.5; anchor 1: 0; anchor 2: 100 / 300 = 1/3 (between).
        let gt = array![[0.0f32, 0.0, 10.0, 20.0]];
        let a = assign_anchors(anchors.view(), gt.view(), 0.7, 0.3);
        assert_eq!(a.labels, vec![1, 0, -1]);
        assert_eq!(a.matched[0], 0);
    }

    #[test]
    fn rpn_no_gt_is_all_background_and_sampler_counts() {
        let anchors = array![[0.0f32, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 20.0]];
        let a = assign_anchors(anchors.view(), Array2::zeros((0, 4)).view(), 0.7, 0.3);
        assert_eq!(a.labels, vec![0, 0]);
        let labels: Vec<i64> = (0..100)
            .map(|i| {
                if i % 10 == 0 {
                    1
                } else if i % 3 == 0 {
                    -1
                } else {
                    0
                }
            })
            .collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let s = sample_labels(&labels, 16, 0.25, Sampling::Random, &mut rng);
        assert_eq!(s.len(), 16);
        assert_eq!(s.iter().filter(|&&i| labels[i] == 1).count(), 4);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        let all = sample_labels(&labels, 16, 0.25, Sampling::All, &mut rng);
        assert_eq!(all.len(), labels.iter().filter(|&&l| l >= 0).count());
    }

    #[test]
    fn roi_targets_append_gt_and_take_its_label() {
        let props = array![[0.0f32, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]];
        let gt = array![[0.0f32, 0.0, 10.0, 11.0]];
        let (rois, a) = assign_rois(props.view(), gt.view(), &[2], 0.5);
        assert_eq!(rois.nrows(), 3);
        assert_eq!(rois.row(2), gt.row(0));
        assert_eq!(a.labels, vec![2, 0, 2]);
    }
}
