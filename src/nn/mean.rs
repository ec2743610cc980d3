//! Spatial mean (torch's AdaptiveAvgPool2d(1) + flatten), the end of ResNet's layer4.
//!
//! ```text
//! y[n, c] = 1/(H*W) sum_{h,w} x[c, n, h, w]        x: [C, N, H, W], y: [N, C]
//! dx[c, n, h, w] = dy[n, c] / (H*W)
//! ```
//! The output is transposed to `[N, C]` (rows = RoIs), the input layout of [`super::Linear`].

use ndarray::{Array2, Array4, Axis};

pub fn spatial_mean(x: &Array4<f32>) -> Array2<f32> {
    let (c, n, h, w) = x.dim();
    let hw = (h * w) as f32;
    let mut y = Array2::zeros((n, c));
    for (ci, xc) in x.axis_iter(Axis(0)).enumerate() {
        for (ni, plane) in xc.axis_iter(Axis(0)).enumerate() {
            y[[ni, ci]] = plane.sum() / hw;
        }
    }
    y
}

pub fn spatial_mean_backward(dy: &Array2<f32>, hw: (usize, usize)) -> Array4<f32> {
    let (n, c) = dy.dim();
    let area = (hw.0 * hw.1) as f32;
    Array4::from_shape_fn((c, n, hw.0, hw.1), |(ci, ni, _, _)| dy[[ni, ci]] / area)
}
