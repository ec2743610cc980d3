//! Fully connected layer (torch.nn.Linear).
//!
//! ```text
//! y[n, o] = b[o] + sum_i x[n, i] * w[o, i]        x: [N, I], w: [O, I], y: [N, O]
//! dx = dy · w        dw = dy^T · x        db = sum_n dy
//! ```

use super::gemm::{gemm, Mat};
use ndarray::{Array1, Array2, ArrayView2, Axis};

#[derive(Debug, Clone)]
pub struct Linear {
    /// `[O, I]`
    pub weight: Array2<f32>,
    /// `[O]`
    pub bias: Array1<f32>,
}

/// Gradients of a [`Linear`] layer.
pub struct LinearGrads {
    pub dx: Array2<f32>,
    pub dw: Array2<f32>,
    pub db: Array1<f32>,
}

impl Linear {
    pub fn new(weight: Array2<f32>, bias: Array1<f32>) -> Self {
        Linear {
            weight: weight.as_standard_layout().into_owned(),
            bias,
        }
    }

    pub fn forward(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let (n, i) = x.dim();
        let (o, wi) = self.weight.dim();
        assert_eq!(i, wi, "linear: input has {i} features, weight expects {wi}");
        let x = x.as_standard_layout();
        let mut y = Array2::from_shape_fn((n, o), |(_, j)| self.bias[j]);
        let w = Mat::rows(self.weight.as_slice().expect("standard"), o, i).t();
        gemm(
            1.0,
            Mat::rows(x.as_slice().expect("standard"), n, i),
            w,
            1.0,
            y.as_slice_mut().expect("standard"),
        );
        y
    }

    pub fn backward(&self, x: ArrayView2<f32>, dy: ArrayView2<f32>) -> LinearGrads {
        let (n, i) = x.dim();
        let o = self.weight.dim().0;
        let x = x.as_standard_layout();
        let dy = dy.as_standard_layout();
        let (xs, dys) = (
            x.as_slice().expect("standard"),
            dy.as_slice().expect("standard"),
        );
        let mut dx = Array2::zeros((n, i));
        gemm(
            1.0,
            Mat::rows(dys, n, o),
            Mat::rows(self.weight.as_slice().expect("standard"), o, i),
            0.0,
            dx.as_slice_mut().unwrap(),
        );
        let mut dw = Array2::zeros((o, i));
        gemm(
            1.0,
            Mat::rows(dys, n, o).t(),
            Mat::rows(xs, n, i),
            0.0,
            dw.as_slice_mut().unwrap(),
        );
        let db = dy.sum_axis(Axis(0));
        LinearGrads { dx, dw, db }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{check, dot64};

    #[test]
    fn linear_backward_matches_finite_differences() {
        let (n, i, o) = (3, 5, 4);
        let x = Array2::from_shape_fn((n, i), |(a, b)| ((a * i + b) as f32 * 0.37).sin());
        let w = Array2::from_shape_fn((o, i), |(a, b)| ((a * i + b) as f32 * 0.53).cos());
        let b = Array1::from_shape_fn(o, |k| 0.1 * k as f32);
        let r = Array2::from_shape_fn((n, o), |(a, c)| ((a * o + c) as f32 * 0.71).sin());
        let lin = Linear::new(w.clone(), b.clone());
        let g = lin.backward(x.view(), r.view());
        let f = |x: &Array2<f32>, w: &Array2<f32>, b: &Array1<f32>| {
            dot64(
                r.view(),
                Linear::new(w.clone(), b.clone()).forward(x.view()).view(),
            )
        };
        check(
            "linear dx",
            x.as_slice().unwrap(),
            g.dx.as_slice().unwrap(),
            1e-2,
            |v| f(&Array2::from_shape_vec((n, i), v.to_vec()).unwrap(), &w, &b),
        );
        check(
            "linear dw",
            w.as_slice().unwrap(),
            g.dw.as_slice().unwrap(),
            1e-2,
            |v| f(&x, &Array2::from_shape_vec((o, i), v.to_vec()).unwrap(), &b),
        );
        check(
            "linear db",
            b.as_slice().unwrap(),
            g.db.as_slice().unwrap(),
            1e-2,
            |v| f(&x, &w, &Array1::from(v.to_vec())),
        );
    }
}
