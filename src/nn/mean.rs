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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{check, dot64};

    #[test]
    fn spatial_mean_backward_matches_finite_differences() {
        let x = Array4::from_shape_fn((3, 2, 5, 4), |(c, n, h, w)| {
            ((c * 40 + n * 20 + h * 4 + w) as f32 * 0.31).sin()
        });
        let r = Array2::from_shape_fn((2, 3), |(n, c)| (n * 3 + c) as f32 - 2.5);
        let dx = spatial_mean_backward(&r, (5, 4));
        check(
            "mean dx",
            x.as_slice().unwrap(),
            dx.as_slice().unwrap(),
            1e-2,
            |v| {
                let xv = Array4::from_shape_vec(x.dim(), v.to_vec()).unwrap();
                dot64(r.view(), spatial_mean(&xv).view())
            },
        );
    }
}
