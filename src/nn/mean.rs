//! Spatial mean (torch's AdaptiveAvgPool2d(1) + flatten), the end of ResNet's layer4.
//!
//! ```text
//! y[n, c] = 1/(H*W) sum_{h,w} x[c, n, h, w]        x: [C, N, H, W], y: [N, C]
//! dx[c, n, h, w] = dy[n, c] / (H*W)
//! ```
//! The output is transposed to `[N, C]` (rows = RoIs), the input layout of [`super::Linear`].

use ndarray::{Array2, Array4};
use rayon::prelude::*;

pub fn spatial_mean(x: &Array4<f32>) -> Array2<f32> {
    let (c, n, h, w) = x.dim();
    let hw = h * w;
    if c == 0 || n == 0 || hw == 0 {
        return Array2::from_elem((n, c), if hw == 0 { f32::NAN } else { 0.0 });
    }
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    // [C, N] in parallel over channels (each channel's N planes are contiguous), then transposed.
    let mut yt = Array2::<f32>::zeros((c, n));
    yt.as_slice_mut()
        .expect("fresh array")
        .par_chunks_mut(n)
        .zip(xs.par_chunks(n * hw))
        .for_each(|(row, planes)| {
            for (v, plane) in row.iter_mut().zip(planes.chunks_exact(hw)) {
                *v = plane.iter().sum::<f32>() / hw as f32;
            }
        });
    yt.t().as_standard_layout().into_owned()
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
    use crate::testutil::{assert_close, FORWARD};

    /// y[n, c] is the mean of plane (c, n), with C != N != H != W.
    #[test]
    fn spatial_mean_matches_definition() {
        let x = Array4::from_shape_fn((5, 3, 2, 7), |(c, n, h, w)| {
            ((c * 31 + n * 11 + h * 5 + w) as f32 * 0.7).sin()
        });
        let want = Array2::from_shape_fn((3, 5), |(n, c)| {
            let mut s = 0.0f64;
            for h in 0..2 {
                for w in 0..7 {
                    s += x[[c, n, h, w]] as f64;
                }
            }
            (s / 14.0) as f32
        });
        let got = spatial_mean(&x);
        assert_close(
            "spatial_mean",
            got.view().into_dyn(),
            want.view().into_dyn(),
            FORWARD,
        );
    }

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
