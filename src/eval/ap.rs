//! Average precision from a ranked list of true/false positives.
//!
//! Input: `tp: [D]`, the detections of one class over all images sorted by score (highest
//! first, ties in input order), `true` for a true positive, `false` for a false positive
//! (ignored detections are left out: they change neither precision nor recall, and removing them
//! leaves all three APs below unchanged), and `npos`, the number of non-difficult ground-truth
//! boxes. After the first `k` detections:
//!
//! ```text
//! recall[k] = TP(k) / npos,   precision[k] = TP(k) / (TP(k) + FP(k))
//! ```
//!
//! Three summaries of the precision-recall curve, each a port of its reference code:
//! * [`ap_all_point`]: VOC2010+ (`voc_ap(rec, prec, use_07_metric=False)`): precision made
//!   monotone from the right, area under that step curve, `sum (r[i+1]-r[i]) * p_interp[i+1]`.
//! * [`ap_11_point`]: VOC2007 (`use_07_metric=True`): mean over t in {0, 0.1, ..., 1} of
//!   `max(precision[recall >= t])` (0 if none).
//! * [`ap_coco101`]: pycocotools `COCOeval.accumulate`: precision made monotone from the right,
//!   sampled at the 101 recall thresholds `linspace(0, 1, 101)` with `searchsorted(side='left')`
//!   (the first point whose recall is `>= t`), 0 for thresholds beyond the maximum recall, mean
//!   of the 101 samples. Its precision is `TP / (TP + FP + eps)` with `eps = np.spacing(1)`.
//!
//! All three are `None` when `npos == 0` (AP is undefined without ground truth; pycocotools
//! reports -1 there). With ground truth but no detection they are 0.

/// `(recall[D], precision[D])` after each detection; see the module doc. `npos` must be > 0.
pub fn precision_recall(tp: &[bool], npos: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut ntp, mut nfp) = (0.0f64, 0.0f64);
    let mut recall = Vec::with_capacity(tp.len());
    let mut precision = Vec::with_capacity(tp.len());
    for &t in tp {
        if t {
            ntp += 1.0;
        } else {
            nfp += 1.0;
        }
        recall.push(ntp / npos as f64);
        // voc_eval.py: tp / np.maximum(tp + fp, np.finfo(np.float64).eps); tp + fp >= 1 here.
        precision.push(ntp / (ntp + nfp).max(f64::EPSILON));
    }
    (recall, precision)
}

/// VOC2010+ all-point interpolated AP (`voc_ap(..., use_07_metric=False)`).
pub fn ap_all_point(tp: &[bool], npos: usize) -> Option<f64> {
    if npos == 0 {
        return None;
    }
    let (rec, prec) = precision_recall(tp, npos);
    // mrec = [0, rec, 1], mpre = [0, prec, 0]
    let mut mrec = Vec::with_capacity(rec.len() + 2);
    mrec.push(0.0);
    mrec.extend_from_slice(&rec);
    mrec.push(1.0);
    let mut mpre = Vec::with_capacity(prec.len() + 2);
    mpre.push(0.0);
    mpre.extend_from_slice(&prec);
    mpre.push(0.0);
    for i in (1..mpre.len()).rev() {
        mpre[i - 1] = mpre[i - 1].max(mpre[i]);
    }
    let mut ap = 0.0;
    for i in 0..mrec.len() - 1 {
        if mrec[i + 1] != mrec[i] {
            ap += (mrec[i + 1] - mrec[i]) * mpre[i + 1];
        }
    }
    Some(ap)
}

/// VOC2007 11-point interpolated AP (`voc_ap(..., use_07_metric=True)`); the thresholds are
/// numpy's `arange(0, 1.1, 0.1)`, i.e. `i * 0.1`.
pub fn ap_11_point(tp: &[bool], npos: usize) -> Option<f64> {
    if npos == 0 {
        return None;
    }
    let (rec, prec) = precision_recall(tp, npos);
    let mut ap = 0.0;
    for i in 0..11 {
        let t = i as f64 * 0.1;
        let p = rec
            .iter()
            .zip(&prec)
            .filter(|(&r, _)| r >= t)
            .map(|(_, &p)| p)
            .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| m.max(p))))
            .unwrap_or(0.0);
        ap += p / 11.0;
    }
    Some(ap)
}

/// The 101 recall thresholds of pycocotools, `np.linspace(0, 1, 101)`: `i * 0.01`, last exactly 1.
pub fn coco_recall_thresholds() -> Vec<f64> {
    (0..101)
        .map(|i| if i == 100 { 1.0 } else { i as f64 * 0.01 })
        .collect()
}

/// The 101 interpolated precisions pycocotools stores in `precision[t, :, k, a, m]`.
pub fn coco101_precisions(tp: &[bool], npos: usize) -> Option<Vec<f64>> {
    if npos == 0 {
        return None;
    }
    let (mut ntp, mut nfp) = (0.0f64, 0.0f64);
    let mut rc = Vec::with_capacity(tp.len());
    let mut pr = Vec::with_capacity(tp.len());
    for &t in tp {
        if t {
            ntp += 1.0;
        } else {
            nfp += 1.0;
        }
        rc.push(ntp / npos as f64);
        pr.push(ntp / (nfp + ntp + f64::EPSILON));
    }
    for i in (1..pr.len()).rev() {
        if pr[i] > pr[i - 1] {
            pr[i - 1] = pr[i];
        }
    }
    let q = coco_recall_thresholds()
        .iter()
        .map(|&thr| {
            // searchsorted(rc, thr, side='left'): first index with rc[i] >= thr (rc is sorted).
            let i = rc.partition_point(|&r| r < thr);
            pr.get(i).copied().unwrap_or(0.0)
        })
        .collect();
    Some(q)
}

/// COCO 101-point AP: the mean of [`coco101_precisions`].
pub fn ap_coco101(tp: &[bool], npos: usize) -> Option<f64> {
    coco101_precisions(tp, npos).map(|q| q.iter().sum::<f64>() / q.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXACT: f64 = 1e-12;

    #[test]
    fn perfect_and_empty() {
        let tp = [true, true, true];
        assert!((ap_all_point(&tp, 3).unwrap() - 1.0).abs() < EXACT);
        assert!((ap_11_point(&tp, 3).unwrap() - 1.0).abs() < EXACT);
        assert!((ap_coco101(&tp, 3).unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(ap_all_point(&[], 3), Some(0.0));
        assert_eq!(ap_coco101(&[], 3), Some(0.0));
        assert_eq!(ap_all_point(&[false], 0), None);
    }

    #[test]
    fn hand_computed_all_point() {
        // TP, FP, TP with 4 GT: recall 0.25, 0.25, 0.5; precision 1, 0.5, 2/3.
        // Interpolated: 1 on (0, 0.25], 2/3 on (0.25, 0.5], 0 after -> 0.25 + 0.25 * 2/3.
        let ap = ap_all_point(&[true, false, true], 4).unwrap();
        assert!((ap - (0.25 + 0.25 * 2.0 / 3.0)).abs() < EXACT, "ap = {ap}");
        // 11-point: t = 0, 0.1, 0.2 -> 1; t = 0.3, 0.4, 0.5 -> 2/3; else 0.
        let ap11 = ap_11_point(&[true, false, true], 4).unwrap();
        assert!(
            (ap11 - (3.0 + 3.0 * 2.0 / 3.0) / 11.0).abs() < EXACT,
            "ap11 = {ap11}"
        );
        // 101-point: t = 0..0.25 (26 thresholds) -> 1, 0.26..0.5 (25) -> 2/3.
        let ap101 = ap_coco101(&[true, false, true], 4).unwrap();
        assert!(
            (ap101 - (26.0 + 25.0 * 2.0 / 3.0) / 101.0).abs() < 1e-9,
            "ap101 = {ap101}"
        );
    }
}
