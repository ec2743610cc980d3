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
