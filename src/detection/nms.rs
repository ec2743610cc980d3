//! Box overlap and non-maximum suppression, as torchvision.ops (`box_area`, `box_iou`, `nms` =
//! csrc/ops/cpu/nms_kernel.cpp, `batched_nms` = ops/boxes.py).
//!
//! ```text
//! area(b)   = (x2 - x1) (y2 - y1)
//! inter     = max(0, min(ax2, bx2) - max(ax1, bx1)) * max(0, min(ay2, by2) - max(ay1, by1))
//! IoU(a, b) = inter / (area(a) + area(b) - inter)
//! ```
//!
//! Greedy NMS: visit the boxes by decreasing score; keep a box unless it was suppressed; a kept
//! box suppresses every later box whose IoU with it is strictly greater than the threshold.
//!
//! Order of equal scores. torchvision's CPU kernel orders the boxes with
//! `scores.sort(stable=True, descending=True)`, so equal scores are visited lower index first;
//! we do the same (a stable sort), which makes `nms` identical to torchvision's, ties included.
//! `batched_nms` on more than 1000 boxes re-sorts the kept boxes with torch's *unstable* sort;
//! there we keep lower index first (deterministic), which can differ from torch only in the
//! order of exactly equal scores.
//!
//! Threshold. The kernel compares the f32 IoU with a *double* threshold (`ovr > iou_threshold`,
//! the Python float). We take the threshold to be the shortest decimal that rounds to the given
//! f32 (0.7f32 -> 0.7, the literal the caller wrote) and compare against the largest f32 not above
//! that double, which for an f32 IoU is the same test (`x > t` <=> `x > round_down_f32(t)`). With a
//! plain f32 comparison, an IoU of exactly 0.3f32 (> 0.3 as a double) would not be suppressed at
//! threshold 0.3 while torchvision suppresses it.
//!
//! Boxes are `[N, 4]` as `(x1, y1, x2, y2)`.

use ndarray::{Array2, ArrayView2};
use std::cmp::Ordering;

/// Area of one box `(x1, y1, x2, y2)`: `(x2 - x1) * (y2 - y1)` (no +1).
#[inline]
pub fn box_area(b: &[f32]) -> f32 {
    (b[2] - b[0]) * (b[3] - b[1])
}

/// `std::max` as in the C++ kernel: `(a < b) ? b : a` (a NaN `b` is ignored, like C++).
#[inline(always)]
fn cmax(a: f32, b: f32) -> f32 {
    if a < b {
        b
    } else {
        a
    }
}

/// `std::min` as in the C++ kernel: `(b < a) ? b : a`.
#[inline(always)]
fn cmin(a: f32, b: f32) -> f32 {
    if b < a {
        b
    } else {
        a
    }
}

/// Intersection over union of two boxes, computed like torchvision's NMS kernel.
#[inline]
pub fn iou(a: &[f32], b: &[f32]) -> f32 {
    iou_with_areas(a, box_area(a), b, box_area(b))
}

/// Area of the intersection of two boxes (0 when they do not overlap), as torchvision's NMS
/// kernel computes it.
#[inline(always)]
pub fn intersection(a: &[f32], b: &[f32]) -> f32 {
    let w = cmax(0.0, cmin(a[2], b[2]) - cmax(a[0], b[0]));
    let h = cmax(0.0, cmin(a[3], b[3]) - cmax(a[1], b[1]));
    w * h
}

#[inline(always)]
fn iou_with_areas(a: &[f32], area_a: f32, b: &[f32], area_b: f32) -> f32 {
    let inter = intersection(a, b);
    inter / (area_a + area_b - inter)
}

/// Pairwise IoU `[Na, Nb]` (torchvision.ops.box_iou).
pub fn box_iou(a: ArrayView2<f32>, b: ArrayView2<f32>) -> Array2<f32> {
    assert!(
        a.ncols() == 4 && b.ncols() == 4,
        "box_iou: boxes must be [N, 4]"
    );
    let rows_b: Vec<[f32; 4]> = b.outer_iter().map(|r| [r[0], r[1], r[2], r[3]]).collect();
    let areas_b: Vec<f32> = rows_b.iter().map(|r| box_area(r)).collect();
    let mut out = Array2::<f32>::zeros((a.nrows(), b.nrows()));
    for (ra, mut o) in a.outer_iter().zip(out.outer_iter_mut()) {
        let ra = [ra[0], ra[1], ra[2], ra[3]];
        let area_a = box_area(&ra);
        for (j, rb) in rows_b.iter().enumerate() {
            o[j] = iou_with_areas(&ra, area_a, rb, areas_b[j]);
        }
    }
    out
}

/// Descending score order, NaN first (as torch's descending sort), -0.0 == 0.0: a total order, so
/// a stable sort with it is deterministic.
#[inline]
pub(crate) fn score_desc(a: f32, b: f32) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
    }
}

/// Indices `0..n` sorted by decreasing score, equal scores lower index first.
pub(crate) fn argsort_desc(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&i, &j| score_desc(scores[i], scores[j]));
    order
}

/// The f32 `t32` with `x > t32 <=> (x as f64) > t` for every f32 `x`, where `t` is the double the
/// caller meant (see the module doc): the largest f32 not above `t`.
fn threshold_for_f32_compare(iou_threshold: f32) -> f32 {
    // Shortest decimal that round-trips to this f32, read back as a double ("0.7" -> 0.7).
    let meant: f64 = format!("{iou_threshold}")
        .parse()
        .unwrap_or(iou_threshold as f64);
    let t = meant as f32;
    if (t as f64) > meant {
        t.next_down()
    } else {
        t
    }
}

/// Non-maximum suppression (torchvision.ops.nms, CPU kernel): indices of the kept boxes, by
/// decreasing score (equal scores: lower index first).
pub fn nms(boxes: ArrayView2<f32>, scores: &[f32], iou_threshold: f32) -> Vec<usize> {
    nms_top_k(boxes, scores, iou_threshold, usize::MAX)
}

/// [`nms`] that stops once `max_keep` boxes are kept: the result is the first `max_keep` entries
/// of `nms(...)` (later boxes cannot affect earlier decisions), found faster.
pub fn nms_top_k(
    boxes: ArrayView2<f32>,
    scores: &[f32],
    iou_threshold: f32,
    max_keep: usize,
) -> Vec<usize> {
    let n = boxes.nrows();
    assert_eq!(boxes.ncols(), 4, "nms: boxes must be [N, 4]");
    assert_eq!(scores.len(), n, "nms: one score per box");
    let thr = threshold_for_f32_compare(iou_threshold);
    let mut live = LiveBoxes::new(boxes, &argsort_desc(scores));
    let mut keep = Vec::new();
    // `pos` walks the live list in visiting order; `dead` counts suppressed entries after it.
    let mut pos = 0;
    let mut dead = 0usize;
    while pos < live.len() && keep.len() < max_keep {
        if live.suppressed[pos] != 0 {
            pos += 1;
            dead -= 1;
            continue;
        }
        keep.push(live.index[pos]);
        dead += live.suppress_after(pos, thr);
        pos += 1;
        // Once more than half of what is left is dead, drop it: later rows then scan less.
        if 2 * dead > live.len() - pos {
            live.compact(pos);
            pos = 0;
            dead = 0;
        }
    }
    keep
}

/// The boxes still to be visited, in visiting order, as a structure of arrays: the IoU loop then
/// reads contiguous memory and auto-vectorises. Suppressed boxes stay in place (flagged) until
/// [`LiveBoxes::compact`] drops them.
struct LiveBoxes {
    x1: Vec<f32>,
    y1: Vec<f32>,
    x2: Vec<f32>,
    y2: Vec<f32>,
    area: Vec<f32>,
    /// Row of the box in the caller's array.
    index: Vec<usize>,
    suppressed: Vec<u8>,
}

impl LiveBoxes {
    fn new(boxes: ArrayView2<f32>, order: &[usize]) -> Self {
        let col = |k: usize| -> Vec<f32> { order.iter().map(|&i| boxes[[i, k]]).collect() };
        let (x1, y1, x2, y2) = (col(0), col(1), col(2), col(3));
        let area = (0..order.len())
            .map(|k| (x2[k] - x1[k]) * (y2[k] - y1[k]))
            .collect();
        let suppressed = vec![0u8; order.len()];
        LiveBoxes {
            x1,
            y1,
            x2,
            y2,
            area,
            index: order.to_vec(),
            suppressed,
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    /// Flag every box after `i` whose IoU with box `i` is > `thr` (as the kernel's inner loop;
    /// it computes the IoU of already-flagged boxes too, which changes nothing but removes a
    /// branch). Returns how many boxes were newly flagged.
    fn suppress_after(&mut self, i: usize, thr: f32) -> usize {
        let (ix1, iy1, ix2, iy2, ia) =
            (self.x1[i], self.y1[i], self.x2[i], self.y2[i], self.area[i]);
        let r = i + 1;
        let (sx1, sy1, sx2, sy2) = (&self.x1[r..], &self.y1[r..], &self.x2[r..], &self.y2[r..]);
        let (sa, ss) = (&self.area[r..], &mut self.suppressed[r..]);
        let mut newly = 0u32;
        for j in 0..ss.len() {
            let w = cmax(0.0, cmin(ix2, sx2[j]) - cmax(ix1, sx1[j]));
            let h = cmax(0.0, cmin(iy2, sy2[j]) - cmax(iy1, sy1[j]));
            let inter = w * h;
            let ovr = inter / (ia + sa[j] - inter);
            let hit = (ovr > thr) as u8;
            newly += (hit & !ss[j] & 1) as u32;
            ss[j] |= hit;
        }
        newly as usize
    }

    /// Keep only the unflagged boxes at positions `from..`, in order.
    fn compact(&mut self, from: usize) {
        let mut out = 0;
        for k in from..self.len() {
            if self.suppressed[k] == 0 {
                self.x1[out] = self.x1[k];
                self.y1[out] = self.y1[k];
                self.x2[out] = self.x2[k];
                self.y2[out] = self.y2[k];
                self.area[out] = self.area[k];
                self.index[out] = self.index[k];
                out += 1;
            }
        }
        for v in [
            &mut self.x1,
            &mut self.y1,
            &mut self.x2,
            &mut self.y2,
            &mut self.area,
        ] {
            v.truncate(out);
        }
        self.index.truncate(out);
        self.suppressed.clear();
        self.suppressed.resize(out, 0);
    }
}

/// Per-class NMS (torchvision.ops.batched_nms): boxes with different `labels` never suppress each
/// other; the result is sorted by decreasing score.
///
/// Mirrors torchvision's two code paths so that results match it bit for bit:
/// - up to 1000 boxes (`boxes.numel() <= 4000`): the "coordinate trick", one NMS over the boxes
///   shifted by `label * (max_coordinate + 1)` in f32 (the shift rounds coordinates, which can move
///   an IoU by ~1e-7 relative; we reproduce that);
/// - more boxes: NMS per label, then the kept indices sorted by decreasing score (equal scores:
///   lower index first, where torch's unstable sort leaves the order unspecified).
pub fn batched_nms(
    boxes: ArrayView2<f32>,
    scores: &[f32],
    labels: &[usize],
    iou_threshold: f32,
) -> Vec<usize> {
    let n = boxes.nrows();
    assert_eq!(boxes.ncols(), 4, "batched_nms: boxes must be [N, 4]");
    assert!(
        scores.len() == n && labels.len() == n,
        "batched_nms: one score and label per box"
    );
    if n == 0 {
        return Vec::new();
    }
    if n * 4 > 4000 {
        batched_nms_per_label(boxes, scores, labels, iou_threshold)
    } else {
        batched_nms_coordinate_trick(boxes, scores, labels, iou_threshold)
    }
}

/// torchvision `_batched_nms_coordinate_trick`.
fn batched_nms_coordinate_trick(
    boxes: ArrayView2<f32>,
    scores: &[f32],
    labels: &[usize],
    iou_threshold: f32,
) -> Vec<usize> {
    // torch.max propagates NaN.
    let max_coordinate = boxes.iter().fold(f32::NEG_INFINITY, |m, &v| {
        if v.is_nan() || m.is_nan() {
            f32::NAN
        } else {
            m.max(v)
        }
    });
    let step = max_coordinate + 1.0;
    let mut shifted = boxes.to_owned();
    for (mut row, &label) in shifted.outer_iter_mut().zip(labels) {
        let offset = label as f32 * step;
        row.mapv_inplace(|v| v + offset);
    }
    nms(shifted.view(), scores, iou_threshold)
}

/// torchvision `_batched_nms_vanilla`.
fn batched_nms_per_label(
    boxes: ArrayView2<f32>,
    scores: &[f32],
    labels: &[usize],
    iou_threshold: f32,
) -> Vec<usize> {
    let mut distinct: Vec<usize> = labels.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let mut kept = vec![false; boxes.nrows()];
    for &label in &distinct {
        let members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == label).collect();
        let sub_boxes = boxes.select(ndarray::Axis(0), &members);
        let sub_scores: Vec<f32> = members.iter().map(|&i| scores[i]).collect();
        for k in nms(sub_boxes.view(), &sub_scores, iou_threshold) {
            kept[members[k]] = true;
        }
    }
    let mut keep: Vec<usize> = (0..kept.len()).filter(|&i| kept[i]).collect();
    keep.sort_by(|&i, &j| score_desc(scores[i], scores[j]));
    keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn threshold_matches_double_compare() {
        for t in [0.3f32, 0.5, 0.7, 0.1, 0.45] {
            let t32 = threshold_for_f32_compare(t);
            let meant: f64 = format!("{t}").parse().unwrap();
            for x in [t.next_down(), t, t.next_up(), t32, t32.next_up()] {
                assert_eq!(x > t32, (x as f64) > meant, "t={t} x={x}");
            }
        }
    }

    #[test]
    fn equal_scores_keep_lower_index() {
        let b = array![
            [0.0f32, 0.0, 10.0, 10.0],
            [0.0, 0.0, 10.0, 10.0],
            [20.0, 20.0, 30.0, 30.0]
        ];
        assert_eq!(nms(b.view(), &[0.5, 0.5, 0.5], 0.5), vec![0, 2]);
    }
}
