//! Box regression parametrisation, as torchvision's `BoxCoder`
//! (torchvision/models/detection/_utils.py: `encode_boxes`, `BoxCoder.decode_single`).
//!
//! For a reference box (anchor or proposal) `a` and a box `g`, with `w = x2 - x1` (no +1) and
//! `cx = x1 + 0.5 w`:
//!
//! ```text
//! encode:  tx = wx (g_cx - a_cx) / a_w     tw = ww ln(g_w / a_w)
//!          ty = wy (g_cy - a_cy) / a_h     th = wh ln(g_h / a_h)
//! decode:  dx = tx / wx, dy = ty / wy, dw = min(tw / ww, clip), dh = min(th / wh, clip)
//!          cx = dx a_w + a_cx,  w = exp(dw) a_w        (same for y, h)
//!          box = (cx - 0.5 w, cy - 0.5 h, cx + 0.5 w, cy + 0.5 h)
//! ```
//!
//! with `clip = ln(1000 / 16)` (dw, dh clamped from above only; NaN passes through like
//! `torch.clamp`). Everything is computed in f32 in torchvision's operation order.
//! Boxes are `[N, 4]` as `(x1, y1, x2, y2)`; deltas `[N, 4]` as `(tx, ty, tw, th)`.

use ndarray::{Array2, Array3, ArrayView2};

/// Weights `(wx, wy, ww, wh)` and the clamp of `dw`, `dh` applied when decoding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoxCoder {
    pub weights: [f32; 4],
    pub bbox_xform_clip: f32,
}

/// `math.log(1000.0 / 16)`, torchvision's default `bbox_xform_clip`, rounded to f32.
pub fn default_bbox_xform_clip() -> f32 {
    (1000.0f64 / 16.0).ln() as f32
}

impl BoxCoder {
    pub fn new(weights: [f32; 4]) -> Self {
        BoxCoder {
            weights,
            bbox_xform_clip: default_bbox_xform_clip(),
        }
    }

    /// The RPN's coder: weights (1, 1, 1, 1).
    pub fn rpn() -> Self {
        Self::new([1.0, 1.0, 1.0, 1.0])
    }

    /// The RoI head's coder: weights (10, 10, 5, 5).
    pub fn roi_head() -> Self {
        Self::new([10.0, 10.0, 5.0, 5.0])
    }

    /// Regression targets of `gt` `[N, 4]` relative to the row-aligned reference boxes
    /// `anchors` `[N, 4]` (torchvision `encode_boxes(reference_boxes=gt, proposals=anchors)`).
    ///
    /// Panics if the row counts differ or a view is not `[N, 4]`.
    pub fn encode(&self, gt: ArrayView2<f32>, anchors: ArrayView2<f32>) -> Array2<f32> {
        assert_eq!(
            gt.dim(),
            anchors.dim(),
            "encode: gt and anchors must both be [N, 4]"
        );
        assert_eq!(gt.ncols(), 4, "encode: boxes must be [N, 4]");
        let [wx, wy, ww, wh] = self.weights;
        let mut out = Array2::<f32>::zeros((gt.nrows(), 4));
        for ((g, a), mut t) in gt
            .outer_iter()
            .zip(anchors.outer_iter())
            .zip(out.outer_iter_mut())
        {
            let ex_w = a[2] - a[0];
            let ex_h = a[3] - a[1];
            let ex_cx = a[0] + 0.5 * ex_w;
            let ex_cy = a[1] + 0.5 * ex_h;
            let gt_w = g[2] - g[0];
            let gt_h = g[3] - g[1];
            let gt_cx = g[0] + 0.5 * gt_w;
            let gt_cy = g[1] + 0.5 * gt_h;
            t[0] = wx * (gt_cx - ex_cx) / ex_w;
            t[1] = wy * (gt_cy - ex_cy) / ex_h;
            t[2] = ww * (gt_w / ex_w).ln();
            t[3] = wh * (gt_h / ex_h).ln();
        }
        out
    }

    /// Decoded boxes `[N, 4]` from row-aligned `deltas` `[N, 4]` and reference `boxes` `[N, 4]`.
    pub fn decode(&self, deltas: ArrayView2<f32>, boxes: ArrayView2<f32>) -> Array2<f32> {
        assert_eq!(deltas.ncols(), 4, "decode: deltas must be [N, 4]");
        let n = deltas.nrows();
        self.decode_per_class(deltas, boxes)
            .into_shape_with_order((n, 4))
            .expect("decode: [N, 1, 4] is contiguous")
    }

    /// Class-specific decode: `deltas` `[P, 4K]` (class k in columns `4k..4k+4`) against the
    /// proposals `boxes` `[P, 4]` gives `[P, K, 4]` (torchvision `BoxCoder.decode` in the RoI head).
    ///
    /// Panics if the shapes disagree.
    pub fn decode_per_class(&self, deltas: ArrayView2<f32>, boxes: ArrayView2<f32>) -> Array3<f32> {
        assert_eq!(
            deltas.nrows(),
            boxes.nrows(),
            "decode: deltas and boxes need the same rows"
        );
        assert_eq!(boxes.ncols(), 4, "decode: boxes must be [N, 4]");
        assert_eq!(deltas.ncols() % 4, 0, "decode: deltas must be [N, 4K]");
        let k = deltas.ncols() / 4;
        let [wx, wy, ww, wh] = self.weights;
        let clip = self.bbox_xform_clip;
        // torch.clamp(max=clip): NaN stays NaN (f32::min would turn it into clip).
        let clamp_max = |v: f32| if v > clip { clip } else { v };
        let mut out = Array3::<f32>::zeros((deltas.nrows(), k, 4));
        for ((d, b), mut o) in deltas
            .outer_iter()
            .zip(boxes.outer_iter())
            .zip(out.outer_iter_mut())
        {
            let width = b[2] - b[0];
            let height = b[3] - b[1];
            let ctr_x = b[0] + 0.5 * width;
            let ctr_y = b[1] + 0.5 * height;
            for c in 0..k {
                let dx = d[4 * c] / wx;
                let dy = d[4 * c + 1] / wy;
                let dw = clamp_max(d[4 * c + 2] / ww);
                let dh = clamp_max(d[4 * c + 3] / wh);
                let pred_ctr_x = dx * width + ctr_x;
                let pred_ctr_y = dy * height + ctr_y;
                let half_w = 0.5 * (dw.exp() * width);
                let half_h = 0.5 * (dh.exp() * height);
                o[[c, 0]] = pred_ctr_x - half_w;
                o[[c, 1]] = pred_ctr_y - half_h;
                o[[c, 2]] = pred_ctr_x + half_w;
                o[[c, 3]] = pred_ctr_y + half_h;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn decode_inverts_encode() {
        let coder = BoxCoder::roi_head();
        let anchors = array![[10.0f32, 20.0, 50.0, 80.0], [0.0, 0.0, 16.0, 16.0]];
        let gt = array![[12.0f32, 18.0, 61.0, 70.0], [3.0, 1.0, 9.0, 30.0]];
        let back = coder.decode(
            coder.encode(gt.view(), anchors.view()).view(),
            anchors.view(),
        );
        for (a, b) in back.iter().zip(gt.iter()) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn large_deltas_are_clamped() {
        let coder = BoxCoder::rpn();
        let boxes = array![[0.0f32, 0.0, 10.0, 10.0]];
        let d = array![[0.0f32, 0.0, 100.0, 100.0]];
        let out = coder.decode(d.view(), boxes.view());
        // exp(ln(1000/16)) * 10 = 625 wide, centred at 5.
        assert!((out[[0, 2]] - out[[0, 0]] - 625.0).abs() < 1e-2);
    }
}
