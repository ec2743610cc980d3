//! Faster R-CNN losses and their gradients (torchvision rpn.py `compute_loss`, roi_heads.py
//! `fastrcnn_loss`). Sums run in f64; the results are f32.
//!
//! ```text
//! smooth_l1(d; beta) = 0.5 d^2 / beta  if |d| < beta,  |d| - 0.5 beta otherwise
//!                      (derivative d / beta, or sign(d));  beta = 0: |d|
//! bce(x, y)          = max(x, 0) - x y + ln(1 + exp(-|x|))      (derivative sigmoid(x) - y)
//! ce(z, c)           = logsumexp(z) - z[c]                      (derivative softmax(z) - onehot(c))
//!
//! RPN (S = sampled anchors, S+ = their positives):
//!   objectness = 1/|S| sum_{i in S} bce(logit_i, label_i)
//!   rpn_box    = 1/|S| sum_{i in S+} sum_j smooth_l1(delta_ij - target_ij)
//! RoI head (R = sampled RoIs, R+ = foreground ones, c_i = their class):
//!   classifier = 1/|R| sum_{i in R} ce(logits_i, label_i)
//!   box_reg    = 1/|R| sum_{i in R+} sum_j smooth_l1(deltas[i, 4 c_i + j] - target_ij)
//! ```
//! torchvision uses beta = 1/9 for both box losses; the study's Eq. 4 is beta = 1.

use ndarray::{Array2, ArrayView2};

/// `(smooth_l1(d), d/dd smooth_l1(d))`.
#[inline]
pub fn smooth_l1(d: f32, beta: f32) -> (f64, f32) {
    let a = d.abs();
    if a < beta {
        (0.5 * (d as f64) * (d as f64) / beta as f64, d / beta)
    } else {
        (
            a as f64 - 0.5 * beta as f64,
            if d > 0.0 {
                1.0
            } else if d < 0.0 {
                -1.0
            } else {
                0.0
            },
        )
    }
}

/// `(bce(x, y), sigmoid(x) - y)`.
#[inline]
pub fn bce_with_logits(x: f32, y: f32) -> (f64, f32) {
    let xd = x as f64;
    let loss = xd.max(0.0) - xd * y as f64 + (-xd.abs()).exp().ln_1p();
    let sig = 1.0 / (1.0 + (-xd).exp());
    (loss, (sig - y as f64) as f32)
}

/// RPN losses and their gradients with respect to the flattened RPN outputs.
pub struct RpnLoss {
    pub objectness: f32,
    pub box_reg: f32,
    /// dL/dlogit `[N]` (zero outside the sample).
    pub d_objectness: Vec<f32>,
    /// dL/ddelta `[N, 4]`.
    pub d_deltas: Array2<f32>,
}

/// `logits` `[N]`, `deltas` `[N, 4]`; `sampled` indices with their `labels` (0 or 1) and, for
/// positives, `targets` (row-aligned with `sampled`, rows of negatives ignored).
pub fn rpn_loss(
    logits: &[f32],
    deltas: ArrayView2<f32>,
    sampled: &[usize],
    labels: &[f32],
    targets: ArrayView2<f32>,
    beta: f32,
) -> RpnLoss {
    let n = logits.len();
    let mut d_obj = vec![0f32; n];
    let mut d_del = Array2::zeros((n, 4));
    let s = sampled.len();
    if s == 0 {
        return RpnLoss {
            objectness: 0.0,
            box_reg: 0.0,
            d_objectness: d_obj,
            d_deltas: d_del,
        };
    }
    let inv = 1.0 / s as f64;
    let (mut lo, mut lb) = (0f64, 0f64);
    for (k, &i) in sampled.iter().enumerate() {
        let (l, g) = bce_with_logits(logits[i], labels[k]);
        lo += l;
        d_obj[i] = (g as f64 * inv) as f32;
        if labels[k] > 0.0 {
            for j in 0..4 {
                let (l, g) = smooth_l1(deltas[[i, j]] - targets[[k, j]], beta);
                lb += l;
                d_del[[i, j]] = (g as f64 * inv) as f32;
            }
        }
    }
    RpnLoss {
        objectness: (lo * inv) as f32,
        box_reg: (lb * inv) as f32,
        d_objectness: d_obj,
        d_deltas: d_del,
    }
}

/// RoI-head losses and their gradients with respect to the predictor outputs.
pub struct HeadLoss {
    pub classifier: f32,
    pub box_reg: f32,
    /// `[R, K]`
    pub d_cls: Array2<f32>,
    /// `[R, 4K]`
    pub d_bbox: Array2<f32>,
}

/// `cls` `[R, K]`, `bbox` `[R, 4K]`, `labels` `[R]` (0 = background), `targets` `[R, 4]`
/// (rows of background RoIs ignored).
pub fn head_loss(
    cls: ArrayView2<f32>,
    bbox: ArrayView2<f32>,
    labels: &[usize],
    targets: ArrayView2<f32>,
    beta: f32,
) -> HeadLoss {
    let (r, k) = cls.dim();
    let mut d_cls = Array2::zeros((r, k));
    let mut d_bbox = Array2::zeros((r, 4 * k));
    if r == 0 {
        return HeadLoss {
            classifier: 0.0,
            box_reg: 0.0,
            d_cls,
            d_bbox,
        };
    }
    let inv = 1.0 / r as f64;
    let (mut lc, mut lb) = (0f64, 0f64);
    for i in 0..r {
        let z = cls.row(i);
        let m = z.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v)) as f64;
        let sum: f64 = z.iter().map(|&v| (v as f64 - m).exp()).sum();
        let lse = m + sum.ln();
        let c = labels[i];
        lc += lse - z[c] as f64;
        for j in 0..k {
            let p = (z[j] as f64 - lse).exp();
            d_cls[[i, j]] = ((p - if j == c { 1.0 } else { 0.0 }) * inv) as f32;
        }
        if c > 0 {
            for j in 0..4 {
                let (l, g) = smooth_l1(bbox[[i, 4 * c + j]] - targets[[i, j]], beta);
                lb += l;
                d_bbox[[i, 4 * c + j]] = (g as f64 * inv) as f32;
            }
        }
    }
    HeadLoss {
        classifier: (lc * inv) as f32,
        box_reg: (lb * inv) as f32,
        d_cls,
        d_bbox,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::check;
    use ndarray::array;

    #[test]
    fn rpn_loss_gradients_match_finite_differences() {
        let logits = vec![0.3f32, -1.2, 2.0, 0.0, -0.4];
        let deltas = array![
            [0.1f32, -0.2, 0.05, 0.3],
            [0.0, 0.0, 0.0, 0.0],
            [1.0, -0.01, 0.2, -0.5],
            [0.3, 0.3, 0.3, 0.3],
            [0.0, 0.1, 0.2, 0.3]
        ];
        let sampled = [0usize, 2, 3];
        let labels = [1.0f32, 1.0, 0.0];
        let targets = array![
            [0.0f32, 0.0, 0.1, 0.2],
            [0.5, 0.02, 0.0, -0.2],
            [9.0, 9.0, 9.0, 9.0]
        ];
        for beta in [1.0 / 9.0, 1.0] {
            let l = rpn_loss(
                &logits,
                deltas.view(),
                &sampled,
                &labels,
                targets.view(),
                beta,
            );
            let f_obj = |v: &[f32]| {
                rpn_loss(v, deltas.view(), &sampled, &labels, targets.view(), beta).objectness
                    as f64
            };
            check("rpn d_objectness", &logits, &l.d_objectness, 1e-2, f_obj);
            let f_box = |v: &[f32]| {
                let d = Array2::from_shape_vec((5, 4), v.to_vec()).unwrap();
                rpn_loss(&logits, d.view(), &sampled, &labels, targets.view(), beta).box_reg as f64
            };
            check(
                "rpn d_deltas",
                deltas.as_slice().unwrap(),
                l.d_deltas.as_slice().unwrap(),
                1e-3,
                f_box,
            );
        }
    }

    #[test]
    fn head_loss_gradients_match_finite_differences() {
        let cls = array![[0.3f32, -1.2, 2.0], [0.0, 0.5, -0.4], [1.0, 1.0, 1.0]];
        let bbox =
            Array2::from_shape_fn((3, 12), |(i, j)| ((i * 12 + j) as f32 * 0.37).sin() * 0.5);
        let labels = [2usize, 0, 1];
        let targets = array![
            [0.1f32, 0.2, -0.3, 0.0],
            [5.0, 5.0, 5.0, 5.0],
            [-0.2, 0.4, 0.05, 0.1]
        ];
        let l = head_loss(cls.view(), bbox.view(), &labels, targets.view(), 1.0 / 9.0);
        let f = |v: &[f32]| {
            let c = Array2::from_shape_vec((3, 3), v.to_vec()).unwrap();
            head_loss(c.view(), bbox.view(), &labels, targets.view(), 1.0 / 9.0).classifier as f64
        };
        check(
            "head d_cls",
            cls.as_slice().unwrap(),
            l.d_cls.as_slice().unwrap(),
            1e-2,
            f,
        );
        let f = |v: &[f32]| {
            let b = Array2::from_shape_vec((3, 12), v.to_vec()).unwrap();
            head_loss(cls.view(), b.view(), &labels, targets.view(), 1.0 / 9.0).box_reg as f64
        };
        check(
            "head d_bbox",
            bbox.as_slice().unwrap(),
            l.d_bbox.as_slice().unwrap(),
            1e-3,
            f,
        );
    }
}
