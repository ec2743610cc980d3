//! Matching the detections of one class in one image to that class's ground truth.
//!
//! Rule (pycocotools `COCOeval.evaluateImg` with the VOC devkit's "difficult" objects):
//! 1. Detections are visited by score, highest first; equal scores keep their input order
//!    (a stable sort, as pycocotools' `mergesort` and MATLAB's `sort`).
//! 2. A detection is matched to the **unmatched, non-difficult** ground-truth box of highest IoU,
//!    if that IoU is `>= t` (the threshold is capped at `1 - 1e-10` as in pycocotools, so `t = 1`
//!    still accepts identical boxes). Among equal IoUs the later ground truth wins (pycocotools'
//!    loop). It is then a true positive (TP) and that ground truth is taken.
//! 3. Otherwise, if some **difficult** ground truth has IoU `>= t`, the detection is *ignored*:
//!    neither TP nor FP (VOC devkit). A difficult box may absorb any number of detections (like a
//!    COCO crowd region; the devkit never marks difficult boxes as detected).
//! 4. Otherwise the detection is a false positive (FP): no overlap, too little overlap, or a
//!    duplicate of a ground truth already taken by a higher-scoring detection.
//!
//! Difference from the VOC devkit (`VOCevaldet.m`, `voc_eval.py`): the devkit takes the ground
//! truth of highest IoU among ALL boxes, taken or not, so a duplicate next to a second, untaken
//! object is an FP there but may be a TP here. The two agree whenever objects do not overlap.

use super::iou::box_iou;

/// The outcome of one detection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Match {
    /// True positive: matched ground truth `gt` (index into the given list) with IoU `iou`.
    Tp { gt: usize, iou: f64 },
    /// False positive.
    Fp,
    /// Matched a difficult ground truth: excluded from precision and recall.
    Ignored,
}

use serde::Serialize;

/// Matches detections to ground truth at IoU threshold `thr`.
///
/// `gt: [G]` boxes `(x1, y1, x2, y2)` with `difficult: [G]`; `pred: [D]` boxes ALREADY sorted by
/// score, highest first (use [`sort_by_score`]). Returns one [`Match`] per detection, in that order.
pub fn match_detections(
    gt: &[[f64; 4]],
    difficult: &[bool],
    pred: &[[f64; 4]],
    thr: f64,
    plus_one: bool,
) -> Vec<Match> {
    assert_eq!(
        gt.len(),
        difficult.len(),
        "gt and difficult must have the same length"
    );
    let thr = thr.min(1.0 - 1e-10);
    let mut taken = vec![false; gt.len()];
    pred.iter()
        .map(|p| {
            let ious: Vec<f64> = gt.iter().map(|g| box_iou(*p, *g, plus_one)).collect();
            // Best untaken, non-difficult ground truth ("<" skips, so ties go to the later one).
            let mut best: Option<(usize, f64)> = None;
            for (g, &iou) in ious.iter().enumerate() {
                if difficult[g] || taken[g] || iou < best.map_or(thr, |b| b.1) {
                    continue;
                }
                best = Some((g, iou));
            }
            if let Some((g, iou)) = best {
                taken[g] = true;
                return Match::Tp { gt: g, iou };
            }
            let hits_difficult = ious.iter().zip(difficult).any(|(&iou, &d)| d && iou >= thr);
            if hits_difficult {
                Match::Ignored
            } else {
                Match::Fp
            }
        })
        .collect()
}

/// Indices that sort `scores` descending, ties in input order (stable). NaN scores go last.
pub fn sort_by_score(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| {
        let (sa, sb) = (scores[a], scores[b]);
        match (sa.is_nan(), sb.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => sb.partial_cmp(&sa).unwrap_or(std::cmp::Ordering::Equal),
        }
    });
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    const G0: [f64; 4] = [0.0, 0.0, 10.0, 10.0];
    const G1: [f64; 4] = [20.0, 20.0, 30.0, 30.0];

    #[test]
    fn duplicate_is_fp_and_misses_are_fp() {
        let pred = [G0, [0.5, 0.0, 10.5, 10.0], [100.0, 100.0, 110.0, 110.0]];
        let m = match_detections(&[G0, G1], &[false, false], &pred, 0.5, false);
        assert_eq!(m[0], Match::Tp { gt: 0, iou: 1.0 });
        assert_eq!(m[1], Match::Fp, "duplicate of a taken ground truth");
        assert_eq!(m[2], Match::Fp, "no overlap");
    }

    #[test]
    fn difficult_ground_truth_makes_detections_ignored() {
        let pred = [G0, G0, G1];
        let m = match_detections(&[G0, G1], &[true, false], &pred, 0.5, false);
        assert_eq!(
            m,
            vec![
                Match::Ignored,
                Match::Ignored,
                Match::Tp { gt: 1, iou: 1.0 }
            ]
        );
    }

    #[test]
    fn prefers_untaken_ground_truth_and_threshold_is_inclusive() {
        // Two overlapping objects; the first detection takes the best one, the second detection
        // (closer to the taken one) falls back to the other one if its IoU is high enough.
        let a = [0.0, 0.0, 10.0, 10.0];
        let b = [2.0, 0.0, 12.0, 10.0]; // IoU(a, b) = 80 / 120 = 2/3
        let m = match_detections(&[a, b], &[false, false], &[a, a], 2.0 / 3.0, false);
        assert_eq!(m[0], Match::Tp { gt: 0, iou: 1.0 });
        assert!(
            matches!(m[1], Match::Tp { gt: 1, .. }),
            "IoU == threshold matches: {:?}",
            m[1]
        );
        let m = match_detections(&[a, b], &[false, false], &[a, a], 0.67, false);
        assert_eq!(m[1], Match::Fp);
    }

    #[test]
    fn stable_descending_sort() {
        assert_eq!(
            sort_by_score(&[0.5, 0.9, 0.5, f64::NAN, 0.9]),
            vec![1, 4, 0, 2, 3]
        );
    }
}
