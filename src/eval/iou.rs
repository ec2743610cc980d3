//! Box intersection-over-union for evaluation, in f64.
//!
//! Boxes are `(x1, y1, x2, y2)` in continuous pixel coordinates (pixel `i` covers `[i, i+1)`):
//!
//!   area(b) = (x2 - x1) * (y2 - y1)
//!   IoU(a, b) = |a ∩ b| / (area(a) + area(b) - |a ∩ b|),   0 when the boxes do not overlap.
//!
//! This is what pycocotools (`maskApi.c: bbIou`) and torchvision (`box_iou`) compute; the
//! operations are done in the same order as `bbIou` (`i / (da + ga - i)`), so IoUs agree bit for
//! bit with pycocotools on boxes given as f32.
//!
//! The Pascal VOC devkit instead works on inclusive integer pixel indices and adds one pixel:
//! `w = x2 - x1 + 1`. With `plus_one = true` every width and height (of the boxes and of the
//! intersection) gets `+1`, as in `VOCevaldet.m` / `voc_eval.py`, for boxes given in the devkit's
//! inclusive convention. cryodet's boxes are continuous, so the default is `plus_one = false`.

/// IoU of two boxes `[x1, y1, x2, y2]`; see the module doc. Degenerate boxes give 0.
pub fn box_iou(a: [f64; 4], b: [f64; 4], plus_one: bool) -> f64 {
    let one = if plus_one { 1.0 } else { 0.0 };
    let iw = a[2].min(b[2]) - a[0].max(b[0]) + one;
    if iw <= 0.0 {
        return 0.0;
    }
    let ih = a[3].min(b[3]) - a[1].max(b[1]) + one;
    if ih <= 0.0 {
        return 0.0;
    }
    let area_a = (a[2] - a[0] + one) * (a[3] - a[1] + one);
    let area_b = (b[2] - b[0] + one) * (b[3] - b[1] + one);
    let inter = iw * ih;
    let union = area_a + area_b - inter;
    if union <= 0.0 {
        return 0.0;
    }
    inter / union
}

/// Widens an f32 box to f64 (exactly).
pub fn to_f64(b: [f32; 4]) -> [f64; 4] {
    [b[0] as f64, b[1] as f64, b[2] as f64, b[3] as f64]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_known_boxes() {
        // [0,0,10,10] and [5,0,15,10]: intersection 50, union 150.
        let v = box_iou([0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], false);
        assert!((v - 1.0 / 3.0).abs() < 1e-15, "iou = {v}");
        // Touching edges do not overlap.
        assert_eq!(
            box_iou([0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0], false),
            0.0
        );
        // With +1 they share one column of pixels: 1*11 / (121 + 121 - 11).
        let v = box_iou([0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0], true);
        assert!((v - 11.0 / 231.0).abs() < 1e-15, "iou = {v}");
        // Identical boxes, and a degenerate (zero-area) box.
        assert_eq!(
            box_iou([1.0, 2.0, 3.0, 5.0], [1.0, 2.0, 3.0, 5.0], false),
            1.0
        );
        assert_eq!(
            box_iou([1.0, 2.0, 1.0, 5.0], [1.0, 2.0, 3.0, 5.0], false),
            0.0
        );
    }
}
