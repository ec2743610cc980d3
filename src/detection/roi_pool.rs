//! RoI max pooling, as torchvision.ops.roi_pool (CPU kernel,
//! torchvision/csrc/ops/cpu/roi_pool_kernel.cpp), for one image.
//!
//! For a RoI `(x1, y1, x2, y2)` in image pixels and `spatial_scale` (1/16 for C4 features):
//!
//! ```text
//! start_w = round(x1 * scale), end_w = round(x2 * scale)    (C round: half away from zero)
//! roi_w   = max(end_w - start_w + 1, 1),  bin_w = roi_w / pooled_w      (f32; same for h)
//! wstart  = clip(floor(pw * bin_w) + start_w, 0, W),  wend = clip(ceil((pw + 1) * bin_w) + start_w, 0, W)
//! out[c, p, ph, pw] = max over h in [hstart, hend), w in [wstart, wend) of x[c, h, w]
//! argmax            = h * W + w of the first maximum (strict >, row-major scan)
//! ```
//!
//! An empty bin (hend <= hstart or wend <= wstart) gives 0 and argmax -1 (no gradient). A bin
//! whose values are all below -f32::MAX or NaN keeps the kernel's -f32::MAX and argmax -1.
//!
//! Backward: `dx[c, argmax] += dy[c, p, ph, pw]` for every non-empty bin, accumulated in the
//! kernel's order (RoI, then bin) so sums are bit-identical to torchvision's.
//!
//! Layout: the output is CNHW `[C, P, ph, pw]` (channel-major; torchvision returns
//! `[P, C, ph, pw]`) so that the RoI head can treat the P pooled RoIs as one batch in the
//! crate's `[C, N, H, W]` layout. Work is split over channels with rayon.

use ndarray::parallel::prelude::*;
use ndarray::{Array3, Array4, ArrayView2, ArrayView3, ArrayView4, Axis};
use rayon::prelude::*;

/// Feature-map window `[hstart, hend) x [wstart, wend)` of one output bin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bin {
    hstart: usize,
    hend: usize,
    wstart: usize,
    wend: usize,
}

impl Bin {
    fn is_empty(&self) -> bool {
        self.hend <= self.hstart || self.wend <= self.wstart
    }
}

/// The `pooled_h * pooled_w` bins of each RoI, `[P * ph * pw]` in (p, ph, pw) order.
fn roi_bins(
    rois: ArrayView2<f32>,
    pooled_h: usize,
    pooled_w: usize,
    spatial_scale: f32,
    (height, width): (usize, usize),
) -> Vec<Bin> {
    // Kernel arithmetic is in C int; clamping to [0, H] makes the final values fit usize.
    let clip = |v: i64, hi: usize| v.clamp(0, hi as i64) as usize;
    let mut bins = Vec::with_capacity(rois.nrows() * pooled_h * pooled_w);
    for roi in rois.outer_iter() {
        // `int start = round(x * scale)`: f32 product, rounded half away from zero.
        let start_w = (roi[0] * spatial_scale).round() as i64;
        let start_h = (roi[1] * spatial_scale).round() as i64;
        let end_w = (roi[2] * spatial_scale).round() as i64;
        let end_h = (roi[3] * spatial_scale).round() as i64;
        // Malformed RoIs are forced to 1x1.
        let roi_w = (end_w - start_w + 1).max(1);
        let roi_h = (end_h - start_h + 1).max(1);
        let bin_h = roi_h as f32 / pooled_h as f32;
        let bin_w = roi_w as f32 / pooled_w as f32;
        for ph in 0..pooled_h {
            let hstart = (ph as f32 * bin_h).floor() as i64 + start_h;
            let hend = ((ph + 1) as f32 * bin_h).ceil() as i64 + start_h;
            for pw in 0..pooled_w {
                let wstart = (pw as f32 * bin_w).floor() as i64 + start_w;
                let wend = ((pw + 1) as f32 * bin_w).ceil() as i64 + start_w;
                bins.push(Bin {
                    hstart: clip(hstart, height),
                    hend: clip(hend, height),
                    wstart: clip(wstart, width),
                    wend: clip(wend, width),
                });
            }
        }
    }
    bins
}

/// Max-pool every RoI of `rois` `[P, 4]` (image pixels) over `features` `[C, H, W]` into
/// `pooled_h x pooled_w` bins. Returns the pooled values `[C, P, ph, pw]` and the argmax
/// `[C, P, ph, pw]` (flat `h * W + w` into the channel's map, -1 for empty bins).
///
/// Panics if `rois` is not `[P, 4]`.
pub fn roi_pool_forward(
    features: ArrayView3<f32>,
    rois: ArrayView2<f32>,
    pooled_h: usize,
    pooled_w: usize,
    spatial_scale: f32,
) -> (Array4<f32>, Array4<i32>) {
    assert_eq!(rois.ncols(), 4, "roi_pool: rois must be [P, 4]");
    let (channels, height, width) = features.dim();
    let num_rois = rois.nrows();
    let bins = roi_bins(rois, pooled_h, pooled_w, spatial_scale, (height, width));
    let shape = (channels, num_rois, pooled_h, pooled_w);
    let mut output = Array4::<f32>::zeros(shape);
    let mut argmax = Array4::<i32>::zeros(shape);
    // Channel maps as contiguous [H * W] slices (a copy only if the caller's view is strided).
    let features = features.as_standard_layout();
    let plane = height * width;
    let flat = features.as_slice().expect("standard layout is contiguous");
    output
        .axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(argmax.axis_iter_mut(Axis(0)).into_par_iter())
        .enumerate()
        .for_each(|(c, (mut out_c, mut arg_c))| {
            let map = &flat[c * plane..(c + 1) * plane];
            // [P, ph, pw] of one channel, in the same (p, ph, pw) order as `bins`.
            let out_c = out_c.as_slice_mut().expect("fresh array is contiguous");
            let arg_c = arg_c.as_slice_mut().expect("fresh array is contiguous");
            for ((bin, o), a) in bins.iter().zip(out_c.iter_mut()).zip(arg_c.iter_mut()) {
                let mut maxval = if bin.is_empty() { 0.0f32 } else { -f32::MAX };
                let mut maxidx = -1i32;
                for h in bin.hstart..bin.hend {
                    let row_start = h * width + bin.wstart;
                    let row = &map[row_start..h * width + bin.wend];
                    for (dw, &v) in row.iter().enumerate() {
                        // Branch-free select (random data makes `v > maxval` unpredictable).
                        let better = v > maxval;
                        maxidx = if better {
                            (row_start + dw) as i32
                        } else {
                            maxidx
                        };
                        maxval = if better { v } else { maxval };
                    }
                }
                *o = maxval;
                *a = maxidx;
            }
        });
    (output, argmax)
}

/// Channels pooled together by [`roi_pool_values`] (one 512-bit vector of f32).
const CHANNEL_BLOCK: usize = 16;

/// The values of [`roi_pool_forward`] without the argmax (inference), vectorized over channels:
/// for each block of 16 channels the maps are transposed to `[H * W, 16]`, so that a bin's
/// maximum is a running element-wise max of contiguous 16-vectors (`v > m ? v : m`, the
/// kernel's comparison, so NaN and -inf handling are the same). Output `[C, P, ph, pw]`,
/// bit-identical to `roi_pool_forward(..).0`.
pub fn roi_pool_values(
    features: ArrayView3<f32>,
    rois: ArrayView2<f32>,
    pooled_h: usize,
    pooled_w: usize,
    spatial_scale: f32,
) -> Array4<f32> {
    assert_eq!(rois.ncols(), 4, "roi_pool: rois must be [P, 4]");
    let (channels, height, width) = features.dim();
    let bins = roi_bins(rois, pooled_h, pooled_w, spatial_scale, (height, width));
    let nbins = bins.len();
    let mut output = Array4::<f32>::uninit((channels, rois.nrows(), pooled_h, pooled_w));
    if nbins == 0 || channels == 0 {
        // SAFETY: the array has no elements.
        return unsafe { output.assume_init() };
    }
    let features = features.as_standard_layout();
    let plane = height * width;
    let flat = features.as_slice().expect("standard layout is contiguous");
    const B: usize = CHANNEL_BLOCK;
    output
        .as_slice_mut()
        .expect("fresh array is contiguous")
        .par_chunks_mut(B * nbins)
        .enumerate()
        .for_each(|(blk, out)| {
            let c0 = blk * B;
            let cb = out.len() / nbins; // B, or fewer in the last block
            let mut t = vec![0f32; plane * B];
            for c in 0..cb {
                let map = &flat[(c0 + c) * plane..(c0 + c + 1) * plane];
                for (i, &v) in map.iter().enumerate() {
                    t[i * B + c] = v;
                }
            }
            for (b, bin) in bins.iter().enumerate() {
                let mut m = [if bin.is_empty() { 0.0f32 } else { -f32::MAX }; B];
                for h in bin.hstart..bin.hend {
                    let row = &t[(h * width + bin.wstart) * B..(h * width + bin.wend) * B];
                    for v in row.chunks_exact(B) {
                        for j in 0..B {
                            m[j] = if v[j] > m[j] { v[j] } else { m[j] };
                        }
                    }
                }
                for (c, &mc) in m.iter().enumerate().take(cb) {
                    out[c * nbins + b].write(mc);
                }
            }
        });
    // SAFETY: each chunk holds `cb` whole channel rows of `nbins` elements and the loop above
    // wrote every (c < cb, b < nbins) of it; the chunks cover the array.
    unsafe { output.assume_init() }
}

/// Gradient of [`roi_pool_forward`] with respect to the features: `[C, feat_h, feat_w]` with
/// `dx[c, argmax[c, p, i, j]] += grad_out[c, p, i, j]` (bins with argmax -1 contribute nothing).
///
/// Panics if `grad_out` and `argmax` differ in shape or an argmax lies outside the map.
pub fn roi_pool_backward(
    grad_out: ArrayView4<f32>,
    argmax: ArrayView4<i32>,
    feat_h: usize,
    feat_w: usize,
) -> Array3<f32> {
    assert_eq!(
        grad_out.dim(),
        argmax.dim(),
        "roi_pool_backward: grad and argmax shapes differ"
    );
    let channels = grad_out.dim().0;
    let mut grad_in = Array3::<f32>::zeros((channels, feat_h, feat_w));
    let plane = feat_h * feat_w;
    grad_in
        .axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(grad_out.axis_iter(Axis(0)).into_par_iter())
        .zip(argmax.axis_iter(Axis(0)).into_par_iter())
        .for_each(|((mut dx, dy), arg)| {
            let dx = dx.as_slice_mut().expect("fresh array is contiguous");
            // Row-major (p, ph, pw) iteration: the kernel's accumulation order.
            for (&g, &a) in dy.iter().zip(arg.iter()) {
                if a >= 0 {
                    let a = a as usize;
                    assert!(
                        a < plane,
                        "roi_pool_backward: argmax {a} outside a {feat_h}x{feat_w} map"
                    );
                    dx[a] += g;
                }
            }
        });
    grad_in
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array3};

    #[test]
    fn whole_map_roi_takes_max_and_backprops_to_it() {
        let x = Array3::from_shape_fn((2, 3, 4), |(c, h, w)| (c * 100 + h * 4 + w) as f32);
        let rois = array![[0.0f32, 0.0, 3.0, 2.0]];
        let (out, arg) = roi_pool_forward(x.view(), rois.view(), 1, 1, 1.0);
        assert_eq!(out[[0, 0, 0, 0]], 11.0);
        assert_eq!(out[[1, 0, 0, 0]], 111.0);
        assert_eq!(arg[[1, 0, 0, 0]], 11);
        let g = roi_pool_backward(Array4::ones((2, 1, 1, 1)).view(), arg.view(), 3, 4);
        assert_eq!(g.sum(), 2.0);
        assert_eq!(g[[0, 2, 3]], 1.0);
    }

    /// The channel-vectorized values path equals the reference kernel bit for bit: channels not
    /// a multiple of the block, H != W, RoIs partly outside, malformed, and fully outside.
    #[test]
    fn values_path_equals_forward() {
        let x = Array3::from_shape_fn((37, 9, 13), |(c, h, w)| {
            ((c * 131 + h * 17 + w * 7) as f32 * 0.61).sin()
        });
        let rois = array![
            [0.0f32, 0.0, 200.0, 140.0],
            [35.5, 20.0, 90.0, 150.0],
            [150.0, 100.0, 400.0, 300.0],
            [60.0, 60.0, 30.0, 30.0],
            [500.0, 500.0, 600.0, 600.0],
            [8.0, 8.0, 8.0, 8.0]
        ];
        let (want, _) = roi_pool_forward(x.view(), rois.view(), 7, 7, 1.0 / 16.0);
        let got = roi_pool_values(x.view(), rois.view(), 7, 7, 1.0 / 16.0);
        assert_eq!(got.dim(), want.dim());
        let bad = got
            .iter()
            .zip(want.iter())
            .position(|(a, b)| a.to_bits() != b.to_bits());
        assert!(bad.is_none(), "first differing element (flat) {bad:?}");
        assert!(want.iter().any(|&v| v == 0.0), "no empty bin tested");
    }

    #[test]
    fn roi_outside_map_gives_empty_bins() {
        let x = Array3::<f32>::ones((1, 4, 4));
        let rois = array![[100.0f32, 100.0, 120.0, 120.0]];
        let (out, arg) = roi_pool_forward(x.view(), rois.view(), 2, 2, 1.0);
        assert!(out.iter().all(|&v| v == 0.0));
        assert!(arg.iter().all(|&a| a == -1));
    }
}
