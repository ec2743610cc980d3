//! The input transform for one gray image, mirroring torchvision's
//! `GeneralizedRCNNTransform` (`torchvision/models/detection/transform.py`):
//!
//! 1. [`to_unit_range`]: raw intensities -> [0, 1] (cryodet's step; torchvision expects [0, 1]).
//! 2. [`normalize_imagenet`]: gray -> 3 identical channels, `(x - mean_c) / std_c`.
//! 3. [`resize_scale`] / [`resized_size`] / [`resize_bilinear`]: `F.interpolate(x[None],
//!    scale_factor=scale, mode="bilinear", recompute_scale_factor=True, align_corners=False)`.
//! 4. [`pad_to_multiple`]: `batch_images` zero-pads H and W up to a multiple of 32.
//! 5. [`boxes_to_original`]: `postprocess` / `resize_boxes` maps boxes back to original pixels.
//!
//! torchvision normalizes *before* resizing; [`transform_image`] does 2-4 in that order.
//!
//! Precision: the resize scale is an f64 (a Python float in torchvision), so the output size
//! `floor(h * scale)` is computed exactly as Python does. The bilinear kernel itself runs in
//! f32 like torch's CPU kernel (`opmath_t = float`).

use crate::error::{Error, Result};
use ndarray::{s, Array2, Array3, Array4, ArrayView2, ArrayView3, Axis};
use rayon::prelude::*;

/// ImageNet channel means (R, G, B), torchvision's `image_mean`.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (R, G, B), torchvision's `image_std`.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// torchvision's `size_divisible` for `batch_images`.
pub const SIZE_DIVISIBLE: usize = 32;

/// How raw intensities are mapped to [0, 1].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scaling {
    /// `(x - min) / (max - min)`.
    MinMax,
    /// `clip((x - p_lo) / (p_hi - p_lo), 0, 1)` with `p_lo`, `p_hi` the given percentiles
    /// (in percent, numpy's default linear interpolation). Robust to hot pixels and to the
    /// extreme values of cryo-ET projections.
    Percentile(f32, f32),
}

impl Default for Scaling {
    /// Percentiles 0.1 and 99.9, clipped: a few outlier pixels (hot pixels, gold fiducials,
    /// reconstruction edges) must not compress the contrast of the whole image.
    fn default() -> Self {
        Scaling::Percentile(0.1, 99.9)
    }
}

/// numpy-style percentile (`method="linear"`) of `values` (any order; reordered in place).
/// `q` in percent, clamped to [0, 100]. Non-finite values must have been removed.
pub fn percentile(values: &mut [f32], q: f32) -> f32 {
    assert!(!values.is_empty(), "percentile of an empty set");
    let pos = (q.clamp(0.0, 100.0) as f64 / 100.0) * (values.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    let (_, &mut a, rest) = values.select_nth_unstable_by(lo, f32::total_cmp);
    if frac == 0.0 || rest.is_empty() {
        return a;
    }
    // The next order statistic is the minimum of the part above `lo`.
    let b = rest.iter().copied().fold(f32::INFINITY, f32::min);
    (a as f64 + frac * (b as f64 - a as f64)) as f32
}

/// Map raw intensities `[H, W]` to [0, 1] (see [`Scaling`]). A constant image (range 0)
/// maps to all zeros. Non-finite pixels are ignored when finding the range (use
/// `io::image::check_finite` first; they come out as NaN or clipped).
pub fn to_unit_range(img: ArrayView2<f32>, scaling: Scaling) -> Array2<f32> {
    let mut finite: Vec<f32> = img.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return Array2::zeros(img.dim());
    }
    let (lo, hi, clip) = match scaling {
        Scaling::MinMax => {
            let (lo, hi) = finite
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            (lo, hi, false)
        }
        Scaling::Percentile(p_lo, p_hi) => {
            let lo = percentile(&mut finite, p_lo.min(p_hi));
            let hi = percentile(&mut finite, p_lo.max(p_hi));
            (lo, hi, true)
        }
    };
    let range = hi - lo;
    if range.is_nan() || range <= 0.0 {
        return Array2::zeros(img.dim());
    }
    let inv = 1.0 / range as f64;
    img.mapv(|v| {
        let y = ((v as f64 - lo as f64) * inv) as f32;
        if clip {
            y.clamp(0.0, 1.0)
        } else {
            y
        }
    })
}

/// torchvision's resize scale: `min(min_size / min(h, w), max_size / max(h, w))`, in f64 as
/// Python computes it.
pub fn resize_scale(h: usize, w: usize, min_size: f32, max_size: f32) -> f64 {
    let (short, long) = (h.min(w) as f64, h.max(w) as f64);
    (min_size as f64 / short).min(max_size as f64 / long)
}

/// Output size of `F.interpolate(scale_factor=scale, recompute_scale_factor=True)`:
/// `(floor(h * scale), floor(w * scale))` in f64.
pub fn resized_size(h: usize, w: usize, scale: f64) -> (usize, usize) {
    (
        (h as f64 * scale).floor() as usize,
        (w as f64 * scale).floor() as usize,
    )
}

/// Source indices and weights of torch's linear interpolation along one axis
/// (`align_corners=False`, scale recomputed as `in / out`):
///
/// ```text
/// src = max(0, (dst + 0.5) * in/out - 0.5);  i0 = min(floor(src), in - 1)
/// i1 = i0 + (i0 < in - 1);  l1 = clamp(src - i0, 0, 1);  l0 = 1 - l1
/// ```
/// all in f32 (torch's `area_pixel_compute_source_index` and `guard_index_and_lambda`).
/// When `in == out` torch copies: `i0 = i1 = dst`, `l0 = 1`, `l1 = 0`.
fn linear_taps(n_in: usize, n_out: usize) -> Vec<(usize, usize, f32, f32)> {
    let ratio = n_in as f32 / n_out as f32;
    (0..n_out)
        .map(|d| {
            if n_in == n_out {
                return (d, d, 1.0, 0.0);
            }
            let src = (ratio * (d as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(n_in - 1);
            let i1 = i0 + usize::from(i0 < n_in - 1);
            let l1 = (src - i0 as f32).clamp(0.0, 1.0);
            (i0, i1, 1.0 - l1, l1)
        })
        .collect()
}

/// Bilinear resize `[H, W] -> [out_h, out_w]`, exactly torch's CPU
/// `F.interpolate(mode="bilinear", align_corners=False)` with recomputed scale:
/// `y = l0h * (l0w * x[h0, w0] + l1w * x[h0, w1]) + l1h * (l0w * x[h1, w0] + l1w * x[h1, w1])`.
pub fn resize_bilinear(img: ArrayView2<f32>, out_h: usize, out_w: usize) -> Array2<f32> {
    let (h, w) = img.dim();
    let mut out = Array2::<f32>::zeros((out_h, out_w));
    if h == 0 || w == 0 || out_h == 0 || out_w == 0 {
        return out;
    }
    let th = linear_taps(h, out_h);
    let tw = linear_taps(w, out_w);
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(th.par_iter())
        .for_each(|(mut row, &(h0, h1, l0h, l1h))| {
            let r0 = img.row(h0);
            let r1 = img.row(h1);
            for (o, &(w0, w1, l0w, l1w)) in row.iter_mut().zip(&tw) {
                let t0 = l0w * r0[w0] + l1w * r0[w1];
                let t1 = l0w * r1[w0] + l1w * r1[w1];
                *o = l0h * t0 + l1h * t1;
            }
        });
    out
}

/// Gray `[H, W]` in [0, 1] to the normalized network input `[3, 1, H, W]` (CNHW):
/// `x_c = (img - mean_c) / std_c` with ImageNet mean and std (torchvision's `normalize`, in f32).
pub fn normalize_imagenet(img: ArrayView2<f32>) -> Array4<f32> {
    let (h, w) = img.dim();
    let mut out = Array4::<f32>::zeros((3, 1, h, w));
    for c in 0..3 {
        let (m, s) = (IMAGENET_MEAN[c], IMAGENET_STD[c]);
        out.slice_mut(s![c, 0, .., ..])
            .zip_mut_with(&img, |o, &v| *o = (v - m) / s);
    }
    out
}

/// Zero-pad `[C, N, H, W]` so that H and W are multiples of `divisible` (torchvision's
/// `batch_images`, padding at the bottom and right).
pub fn pad_to_multiple(x: &Array4<f32>, divisible: usize) -> Array4<f32> {
    let (c, n, h, w) = x.dim();
    let up = |v: usize| v.div_ceil(divisible.max(1)) * divisible.max(1);
    if up(h) == h && up(w) == w {
        return x.clone();
    }
    let mut out = Array4::<f32>::zeros((c, n, up(h), up(w)));
    out.slice_mut(s![.., .., ..h, ..w]).assign(x);
    out
}

/// The whole torchvision transform for one image in [0, 1]: normalize, resize (scale from
/// `min_size`/`max_size`), pad to a multiple of 32. Returns the padded `[3, 1, Hp, Wp]` input
/// and the resized (unpadded) size `(h', w')` that `boxes_to_original` needs.
pub fn transform_image(
    img: ArrayView2<f32>,
    min_size: f32,
    max_size: f32,
) -> Result<(Array4<f32>, (usize, usize))> {
    let (h, w) = img.dim();
    if h == 0 || w == 0 {
        return Err(Error::invalid(format!(
            "cannot transform an empty {h}x{w} image"
        )));
    }
    let (oh, ow) = resized_size(h, w, resize_scale(h, w, min_size, max_size));
    if oh == 0 || ow == 0 {
        return Err(Error::invalid(format!(
            "image {h}x{w} resizes to an empty {oh}x{ow}"
        )));
    }
    let normalized = normalize_imagenet(img);
    let mut resized = Array4::<f32>::zeros((3, 1, oh, ow));
    for c in 0..3 {
        let r = resize_bilinear(normalized.slice(s![c, 0, .., ..]), oh, ow);
        resized.slice_mut(s![c, 0, .., ..]).assign(&r);
    }
    Ok((pad_to_multiple(&resized, SIZE_DIVISIBLE), (oh, ow)))
}

/// Map boxes `[N, 4]` as `(x1, y1, x2, y2)` predicted on the resized image back to original
/// pixels (torchvision's `resize_boxes`): x *= W_orig / W_resized, y *= H_orig / H_resized,
/// the ratios computed in f32. `resized` and `original` are `(h, w)`.
pub fn boxes_to_original(
    boxes: &mut Array2<f32>,
    resized: (usize, usize),
    original: (usize, usize),
) {
    let ratio_h = original.0 as f32 / resized.0 as f32;
    let ratio_w = original.1 as f32 / resized.1 as f32;
    for mut b in boxes.axis_iter_mut(Axis(0)) {
        b[0] *= ratio_w;
        b[1] *= ratio_h;
        b[2] *= ratio_w;
        b[3] *= ratio_h;
    }
}

/// Resize each `[H, W]` plane of `[C, H, W]` (helper for multi-channel callers).
pub fn resize_planes(x: ArrayView3<f32>, out_h: usize, out_w: usize) -> Array3<f32> {
    let mut out = Array3::<f32>::zeros((x.dim().0, out_h, out_w));
    for (mut o, p) in out.outer_iter_mut().zip(x.outer_iter()) {
        o.assign(&resize_bilinear(p, out_h, out_w));
    }
    out
}

/// Taps of an anti-aliased linear resampling along one axis, `n_in -> n_out` (PIL's
/// `ImagingResample` with the bilinear filter; torch's `interpolate(antialias=True)`):
///
/// ```text
/// s = n_in / n_out,  support = max(s, 1)                (triangle widened to the factor)
/// centre(d) = (d + 0.5) * s                             (output pixel d covers [d s, (d+1) s])
/// w(d, j) = tri((j + 0.5 - centre) / support),  tri(t) = max(0, 1 - |t|),  j in 0..n_in
/// weights normalized to sum 1 per output pixel
/// ```
/// Downscaling by s averages over ~2s input pixels (no aliasing of fine texture); upscaling
/// (s < 1) is ordinary linear interpolation with edge replication. Returns, per output pixel,
/// the first input index and the weights of the following pixels.
pub fn antialias_taps(n_in: usize, n_out: usize) -> Vec<(usize, Vec<f32>)> {
    let s = n_in as f64 / n_out as f64;
    let support = s.max(1.0);
    (0..n_out)
        .map(|d| {
            let centre = (d as f64 + 0.5) * s;
            let lo = ((centre - support).floor().max(0.0)) as usize;
            let hi = ((centre + support).ceil() as usize).min(n_in);
            let mut w: Vec<f64> = (lo..hi)
                .map(|j| (1.0 - ((j as f64 + 0.5 - centre) / support).abs()).max(0.0))
                .collect();
            let sum: f64 = w.iter().sum();
            if sum > 0.0 {
                w.iter_mut().for_each(|v| *v /= sum);
            } else {
                // Cannot happen for n_in >= 1 (the nearest pixel has positive weight); kept safe.
                w = vec![1.0];
            }
            (lo, w.into_iter().map(|v| v as f32).collect())
        })
        .collect()
}

/// Anti-aliased separable resampling `[H, W] -> [out_h, out_w]` with [`antialias_taps`] along
/// each axis (rows first, then columns). A constant image stays constant; box coordinates map
/// as `x_out = x_in * out_w / W` (the geometry of [`resize_bilinear`] and [`boxes_to_original`]).
pub fn resample_antialiased(img: ArrayView2<f32>, out_h: usize, out_w: usize) -> Array2<f32> {
    let (h, w) = img.dim();
    if h == 0 || w == 0 || out_h == 0 || out_w == 0 {
        return Array2::zeros((out_h, out_w));
    }
    let tw = antialias_taps(w, out_w);
    let th = antialias_taps(h, out_h);
    // Horizontal pass: [h, out_w].
    let mut tmp = Array2::<f32>::zeros((h, out_w));
    tmp.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(y, mut row)| {
            let src = img.row(y);
            for (o, (lo, wt)) in row.iter_mut().zip(&tw) {
                *o = wt.iter().enumerate().map(|(k, &c)| c * src[lo + k]).sum();
            }
        });
    // Vertical pass: [out_h, out_w].
    let mut out = Array2::<f32>::zeros((out_h, out_w));
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(th.par_iter())
        .for_each(|(mut row, (lo, wt))| {
            for (k, &c) in wt.iter().enumerate() {
                row.scaled_add(c, &tmp.row(lo + k));
            }
        });
    out
}

/// Gray `[H, W]` in [0, 1], already at the network's resolution, to the padded network input
/// `[3, 1, Hp, Wp]` (ImageNet normalization, zero padding to a multiple of 32): the
/// resample-first path, where no resize happens inside the transform.
pub fn input_without_resize(img: ArrayView2<f32>) -> Array4<f32> {
    pad_to_multiple(&normalize_imagenet(img), SIZE_DIVISIBLE)
}
