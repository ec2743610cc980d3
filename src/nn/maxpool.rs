//! Max pooling (torch.nn.MaxPool2d(kernel, stride, padding), ceil_mode = False), as in
//! ResNet's stem: MaxPool2d(3, stride 2, padding 1).
//!
//! ```text
//! y[c, n, oh, ow] = max_{ky, kx < k} x[c, n, oh*s - p + ky, ow*s - p + kx]   (padding = -inf)
//!   x: [C, N, H, W], y: [C, N, OH, OW], OH = (H + 2p - k) / s + 1
//! ```
//! The argmax (flat `h*W + w` within the plane; the first maximum in scan order wins ties, as
//! PyTorch's CPU kernel) is kept for the backward pass, which routes `dy` to it.

use super::conv::out_size;
use ndarray::{Array4, Axis};
use rayon::prelude::*;

#[derive(Debug, Clone, Copy)]
pub struct MaxPool2d {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl MaxPool2d {
    /// ResNet's stem pooling.
    pub fn resnet() -> Self {
        MaxPool2d {
            kernel: 3,
            stride: 2,
            padding: 1,
        }
    }

    /// The input range `[lo, hi)` of each of the `out` windows along an axis of length `len`,
    /// clipped to the image: `lo = max(o*s - p, 0)`, `hi = min(o*s - p + k, len)` (shared by
    /// all planes).
    fn windows(&self, out: usize, len: usize) -> Vec<(usize, usize)> {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        (0..out)
            .map(|o| {
                let lo = (o * s) as isize - p as isize;
                let hi = (lo + k as isize).min(len as isize);
                (lo.max(0) as usize, hi.max(0) as usize)
            })
            .collect()
    }

    /// Returns `(y, argmax)`; argmax holds flat indices `iy * W + ix` into each input plane.
    pub fn forward(&self, x: &Array4<f32>) -> (Array4<f32>, Array4<u32>) {
        let (c, n, h, w) = x.dim();
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let (oh, ow) = (out_size(h, k, s, p), out_size(w, k, s, p));
        let mut y = Array4::<f32>::zeros((c, n, oh, ow));
        let mut arg = Array4::<u32>::zeros((c, n, oh, ow));
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let (plane_in, plane_out) = (h * w, oh * ow);
        if plane_out == 0 {
            return (y, arg);
        }
        let (rows, cols) = (self.windows(oh, h), self.windows(ow, w));
        y.as_slice_mut()
            .expect("fresh array")
            .par_chunks_mut(plane_out)
            .zip(
                arg.as_slice_mut()
                    .expect("fresh array")
                    .par_chunks_mut(plane_out),
            )
            .zip(xs.par_chunks(plane_in))
            .for_each(|((yp, ap), plane)| {
                for (oy, &(y0, y1)) in rows.iter().enumerate() {
                    for (ox, &(x0, x1)) in cols.iter().enumerate() {
                        let (mut best, mut bi) = (f32::NEG_INFINITY, u32::MAX);
                        for iy in y0..y1 {
                            let row = &plane[iy * w..(iy + 1) * w];
                            for (ix, &v) in row.iter().enumerate().take(x1).skip(x0) {
                                // strict >: the first maximum wins; NaN propagates like torch
                                if v > best || v.is_nan() || bi == u32::MAX {
                                    best = v;
                                    bi = (iy * w + ix) as u32;
                                }
                            }
                        }
                        yp[oy * ow + ox] = best;
                        ap[oy * ow + ox] = bi;
                    }
                }
            });
        (y, arg)
    }

    /// The values of [`MaxPool2d::forward`] without the argmax (inference), computed separably:
    /// a max over each window's columns for every input row, then over the window's rows,
    /// the second pass running over contiguous output rows. The max propagates NaN (as torch), so
    /// it is associative and the values equal `forward(x).0` (up to the sign of tied zeros).
    pub fn forward_values(&self, x: &Array4<f32>) -> Array4<f32> {
        let (c, n, h, w) = x.dim();
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let (oh, ow) = (out_size(h, k, s, p), out_size(w, k, s, p));
        let mut y = Array4::<f32>::zeros((c, n, oh, ow));
        let (plane_in, plane_out) = (h * w, oh * ow);
        if plane_out == 0 || plane_in == 0 {
            return y;
        }
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let (rows, cols) = (self.windows(oh, h), self.windows(ow, w));
        let max = |m: f32, v: f32| if v > m || v.is_nan() { v } else { m };
        y.as_slice_mut()
            .expect("fresh array")
            .par_chunks_mut(plane_out)
            .zip(xs.par_chunks(plane_in))
            .for_each(|(yp, plane)| {
                let mut hm = vec![f32::NEG_INFINITY; h * ow];
                for (row, hrow) in plane.chunks_exact(w).zip(hm.chunks_exact_mut(ow)) {
                    for (hv, &(x0, x1)) in hrow.iter_mut().zip(&cols) {
                        *hv = row[x0..x1]
                            .iter()
                            .fold(f32::NEG_INFINITY, |m, &v| max(m, v));
                    }
                }
                for (yrow, &(y0, y1)) in yp.chunks_exact_mut(ow).zip(&rows) {
                    yrow.fill(f32::NEG_INFINITY);
                    for hrow in hm[y0 * ow..y1 * ow].chunks_exact(ow) {
                        for (yv, &hv) in yrow.iter_mut().zip(hrow) {
                            *yv = max(*yv, hv);
                        }
                    }
                }
            });
        y
    }

    /// `dx[c, n, argmax] += dy[c, n, oh, ow]`; `input_hw` = (H, W) of the forward input.
    pub fn backward(
        &self,
        dy: &Array4<f32>,
        argmax: &Array4<u32>,
        input_hw: (usize, usize),
    ) -> Array4<f32> {
        let (c, n, _, _) = dy.dim();
        let (h, w) = input_hw;
        let mut dx = Array4::<f32>::zeros((c, n, h, w));
        dx.axis_iter_mut(Axis(0))
            .into_par_iter()
            .enumerate()
            .for_each(|(ch, mut dxc)| {
                for nn in 0..n {
                    let mut plane = dxc.index_axis_mut(Axis(0), nn);
                    let flat = plane.as_slice_mut().expect("standard layout");
                    let g = dy.index_axis(Axis(0), ch);
                    let a = argmax.index_axis(Axis(0), ch);
                    for (gv, &ai) in g
                        .index_axis(Axis(0), nn)
                        .iter()
                        .zip(a.index_axis(Axis(0), nn).iter())
                    {
                        flat[ai as usize] += gv;
                    }
                }
            });
        dx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maxpool_odd_size_padding_and_ties() {
        // 1 channel, 5x6 plane with a tie (two 9s) inside one window: the first (scan order) wins.
        let vals = [
            1., 2., 3., 0., 0., 4., //
            9., 0., 9., 1., 1., 1., //
            0., 0., 0., 7., 0., 0., //
            5., 0., 0., 0., 0., 8., //
            0., 6., 0., 0., 0., 0.,
        ];
        let x = Array4::from_shape_vec((1, 1, 5, 6), vals.to_vec()).unwrap();
        let (y, arg) = MaxPool2d::resnet().forward(&x);
        assert_eq!(y.dim(), (1, 1, 3, 3));
        // window (oy=1, ox=1) covers rows 1..=3, cols 1..=3 -> 9 at (1,2) flat 8
        assert_eq!(y[[0, 0, 1, 1]], 9.0);
        assert_eq!(arg[[0, 0, 1, 1]], 8);
        // window (0,0) covers rows 0..=1, cols 0..=1 -> 9 at (1,0) flat 6
        assert_eq!((y[[0, 0, 0, 0]], arg[[0, 0, 0, 0]]), (9.0, 6));
        // window (0,1) covers rows 0..=1 cols 1..=3: 9 at (1,2)
        assert_eq!((y[[0, 0, 0, 1]], arg[[0, 0, 0, 1]]), (9.0, 8));
        assert_eq!(MaxPool2d::resnet().forward_values(&x), y);
        let dy = Array4::from_elem((1, 1, 3, 3), 1.0f32);
        let dx = MaxPool2d::resnet().backward(&dy, &arg, (5, 6));
        assert_eq!(dx.sum(), 9.0);
        assert_eq!(dx[[0, 0, 1, 2]], 2.0); // the 9 at (1,2) is the max of windows (0,1) and (1,1)
    }

    /// forward_values == forward(..).0 on several planes of odd size, with a NaN and -inf.
    #[test]
    fn values_path_equals_forward() {
        let mut x = Array4::from_shape_fn((3, 2, 9, 7), |(c, n, h, w)| {
            ((c * 61 + n * 29 + h * 7 + w) as f32 * 0.83).sin()
        });
        x[[1, 0, 4, 4]] = f32::NAN;
        x[[2, 1, 0, 0]] = f32::NEG_INFINITY;
        let pool = MaxPool2d::resnet();
        let want = pool.forward(&x).0;
        let got = pool.forward_values(&x);
        assert_eq!(got.dim(), want.dim());
        for (i, (a, b)) in got.iter().zip(want.iter()).enumerate() {
            assert!(
                a == b || (a.is_nan() && b.is_nan()),
                "element {i}: {a} != {b}"
            );
        }
        assert!(
            want.iter().any(|v| v.is_nan()),
            "NaN not propagated by the reference"
        );
    }

    /// Backward == finite differences on a tie-free input (stride 2, padding 1, odd sizes).
    #[test]
    fn maxpool_backward_matches_finite_differences() {
        use crate::nn::gradcheck::{check, dot64};
        let x = Array4::from_shape_fn((2, 2, 7, 6), |(c, n, h, w)| {
            ((c * 84 + n * 42 + h * 6 + w) as f32 * 1.37).sin() * 3.0
        });
        let mp = MaxPool2d::resnet();
        let (y, arg) = mp.forward(&x);
        let r = Array4::from_shape_fn(y.dim(), |(c, n, h, w)| {
            ((c + 2 * n + 3 * h + 5 * w) as f32 * 0.7).cos()
        });
        let dx = mp.backward(&r, &arg, (7, 6));
        check(
            "maxpool dx",
            x.as_slice().unwrap(),
            dx.as_slice().unwrap(),
            1e-3,
            |v| {
                let xv = Array4::from_shape_vec(x.dim(), v.to_vec()).unwrap();
                dot64(r.view(), mp.forward(&xv).0.view())
            },
        );
    }
}
