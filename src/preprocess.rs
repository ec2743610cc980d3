//! The study's preprocessing (paper, "Data preprocessing"): a bilateral filter followed by
//! histogram equalization; the study's alternatives (equalize first, Gaussian filter, none);
//! and the single-image SNR estimate it used to choose them.
//!
//! All functions take and return gray images `[H, W]` with values in [0, 1]
//! (see `transform::to_unit_range`).
//!
//! # The study's sigma_r = 1.2 and sigma_d = 100, and what they mean here
//!
//! The paper gives "a bilateral filter with σr = 1.2 and σd = 100" and no code. Read with
//! Tomasi & Manduchi's names (σd = domain/spatial, σr = range), that is a 100-pixel spatial
//! Gaussian with a 1.2-gray-level range Gaussian, which is degenerate either way: on 8-bit
//! values the range kernel rejects every neighbour differing by more than ~3 levels, so at the
//! study's SNR (0.06-0.12, noise std of tens of levels) the filter does nothing; on [0, 1]
//! values the range kernel accepts everything and the filter is a 100-pixel blur that erases
//! membranes. Neither reproduces the paper's Fig. 3. The reading that does is OpenCV's
//! `cv2.bilateralFilter(img8, d=-1, sigmaColor=100, sigmaSpace=1.2)` on 8-bit images
//! (σd = "difference" in gray levels, σr = spatial "radius" in pixels): noise is averaged in a
//! small window while steps of more than ~100 levels (membrane edges after contrast
//! stretching) are kept. cryodet therefore defines
//!
//! - `sigma_spatial`: spatial Gaussian sigma in **pixels** (study: 1.2);
//! - `sigma_range`: range Gaussian sigma in **8-bit gray levels**, i.e. for [0, 1] images a
//!   difference `d` is weighted by `exp(-(255 d)^2 / (2 sigma_range^2))` (study: 100);
//!
//! and [`bilateral_filter`] follows OpenCV's definition: window radius
//! `r = max(1, round(1.5 sigma_spatial))`, circular window (offsets with `|o| <= r`),
//! border `BORDER_REFLECT_101`, weights `exp(-|o|^2 / (2 sigma_s^2)) * exp(-(255 d)^2 /
//! (2 sigma_r^2))`, normalized by their sum. On an 8-bit image (values k/255) its output
//! times 255 equals OpenCV's before OpenCV's final rounding to an integer (tested against
//! a cv2 fixture). The radius is capped at [`MAX_BILATERAL_RADIUS`] so a large sigma
//! cannot make the cost explode (the window is then a truncated Gaussian).
//!
//! Cost: `(number of window taps) x H x W` weight evaluations, the range weight read from a
//! lookup table; rows run in parallel (rayon). With the study's sigma (13 taps) a
//! 3708 x 3838 image takes well under a second per core.

use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// Study's spatial sigma in pixels (the paper's "σr = 1.2"; see module doc).
pub const STUDY_SIGMA_SPATIAL: f32 = 1.2;
/// Study's range sigma in 8-bit gray levels (the paper's "σd = 100"; see module doc).
pub const STUDY_SIGMA_RANGE: f32 = 100.0;
/// Largest bilateral window radius in pixels (a 33 x 33 window).
pub const MAX_BILATERAL_RADIUS: usize = 16;
/// Histogram bins of [`equalize_histogram`] (OpenCV's `equalizeHist` on 8-bit values).
pub const EQUALIZE_BINS: usize = 256;
/// Range-weight table resolution: entries per unit of [0, 1] intensity difference
/// (16 per 8-bit gray level, so 8-bit differences hit entries exactly).
const RANGE_LUT_PER_UNIT: f32 = 255.0 * 16.0;

/// The denoising filter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Filter {
    None,
    /// Edge-preserving bilateral filter; units in the module doc.
    Bilateral {
        sigma_spatial: f32,
        sigma_range: f32,
    },
    /// Gaussian blur with `sigma` in pixels.
    Gaussian {
        sigma: f32,
    },
}

/// Which preprocessing to run. `Default` is the study's: bilateral (1.2 px, 100 levels),
/// then histogram equalization.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PreprocessConfig {
    pub filter: Filter,
    /// Run histogram equalization at all.
    pub equalize: bool,
    /// Equalize before filtering (the study's rejected alternative) instead of after.
    pub equalize_first: bool,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        PreprocessConfig {
            filter: Filter::Bilateral {
                sigma_spatial: STUDY_SIGMA_SPATIAL,
                sigma_range: STUDY_SIGMA_RANGE,
            },
            equalize: true,
            equalize_first: false,
        }
    }
}

/// Run the configured preprocessing on an image in [0, 1]; the result is in [0, 1].
pub fn preprocess(img: ArrayView2<f32>, cfg: &PreprocessConfig) -> Array2<f32> {
    let mut x = img.to_owned();
    if cfg.equalize && cfg.equalize_first {
        x = equalize_histogram(x.view());
    }
    x = match cfg.filter {
        Filter::None => x,
        Filter::Bilateral {
            sigma_spatial,
            sigma_range,
        } => bilateral_filter(x.view(), sigma_spatial, sigma_range),
        Filter::Gaussian { sigma } => gaussian_filter(x.view(), sigma),
    };
    if cfg.equalize && !cfg.equalize_first {
        x = equalize_histogram(x.view());
    }
    x
}

/// OpenCV's `BORDER_REFLECT_101` index: `-1 -> 1`, `n -> n - 2` (`gfedcb|abcdefgh|gfedcba`).
pub fn reflect101(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let n = n as isize;
    let period = 2 * (n - 1);
    let mut i = i.rem_euclid(period);
    if i >= n {
        i = period - i;
    }
    i as usize
}

/// Copy of `img` with `r` border pixels on every side, filled by [`reflect101`].
fn pad_reflect101(img: ArrayView2<f32>, r: usize) -> Array2<f32> {
    let (h, w) = img.dim();
    Array2::from_shape_fn((h + 2 * r, w + 2 * r), |(y, x)| {
        img[[
            reflect101(y as isize - r as isize, h),
            reflect101(x as isize - r as isize, w),
        ]]
    })
}

/// Bilateral filter (OpenCV's definition; units and window in the module doc):
///
/// ```text
/// out(p) = sum_o ws(o) wr(x(p+o) - x(p)) x(p+o) / sum_o ws(o) wr(x(p+o) - x(p))
/// ws(o) = exp(-|o|^2 / (2 sigma_spatial^2)),  |o| <= r = max(1, round(1.5 sigma_spatial))
/// wr(d) = exp(-(255 d)^2 / (2 sigma_range^2))
/// ```
/// Non-positive sigmas are replaced by 1 (as OpenCV does).
pub fn bilateral_filter(img: ArrayView2<f32>, sigma_spatial: f32, sigma_range: f32) -> Array2<f32> {
    let (h, w) = img.dim();
    if h == 0 || w == 0 {
        return img.to_owned();
    }
    let ss = if sigma_spatial > 0.0 {
        sigma_spatial as f64
    } else {
        1.0
    };
    let sr = if sigma_range > 0.0 {
        sigma_range as f64
    } else {
        1.0
    };
    let r = ((ss * 1.5).round_ties_even() as usize).clamp(1, MAX_BILATERAL_RADIUS);
    let padded = pad_reflect101(img, r);
    let pw = w + 2 * r;
    let p = padded.as_slice().expect("fresh array is contiguous");

    // Window offsets (row, column in the padded image, relative to the window's top-left
    // corner) and spatial weights, in OpenCV's order (row-major over the square).
    let mut taps: Vec<(usize, usize, f32)> = Vec::new();
    let ri = r as isize;
    for dy in -ri..=ri {
        for dx in -ri..=ri {
            let d2 = (dy * dy + dx * dx) as f64;
            if d2.sqrt() > r as f64 {
                continue;
            }
            let wgt = (-0.5 * d2 / (ss * ss)).exp() as f32;
            taps.push(((dy + ri) as usize, (dx + ri) as usize, wgt));
        }
    }
    // Range weights for |d| = k / RANGE_LUT_PER_UNIT, k = 0..=RANGE_LUT_PER_UNIT (|d| <= 1);
    // larger differences use the last entry.
    let lut_len = RANGE_LUT_PER_UNIT as usize + 1;
    let lut: Vec<f32> = (0..lut_len)
        .map(|k| {
            let levels = k as f64 * 255.0 / RANGE_LUT_PER_UNIT as f64;
            (-0.5 * levels * levels / (sr * sr)).exp() as f32
        })
        .collect();
    let max_k = (lut_len - 1) as f32;

    // One output row at a time; taps in the outer loop so every inner loop streams through
    // contiguous rows (sum and weight accumulators per pixel of the row).
    let mut out = Array2::<f32>::zeros((h, w));
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(y, mut row)| {
            let row = row
                .as_slice_mut()
                .expect("rows of a fresh array are contiguous");
            let centre = &p[(y + r) * pw + r..(y + r) * pw + r + w];
            let mut sum = vec![0f32; w];
            let mut wsum = vec![0f32; w];
            for &(ty, tx, ws) in &taps {
                let src = &p[(y + ty) * pw + tx..(y + ty) * pw + tx + w];
                for (((&v, &c), s), t) in src.iter().zip(centre).zip(&mut sum).zip(&mut wsum) {
                    // Nearest table entry; `as usize` truncates after adding 0.5 (values >= 0).
                    let k = ((v - c).abs() * RANGE_LUT_PER_UNIT + 0.5).min(max_k) as usize;
                    let wgt = ws * lut[k];
                    *s += wgt * v;
                    *t += wgt;
                }
            }
            for ((o, s), t) in row.iter_mut().zip(&sum).zip(&wsum) {
                *o = s / t;
            }
        });
    out
}

/// Gaussian blur, separable, border `BORDER_REFLECT_101`, kernel radius `ceil(3 sigma)`
/// (at least 1), kernel normalized to sum 1. `sigma <= 0` returns a copy.
pub fn gaussian_filter(img: ArrayView2<f32>, sigma: f32) -> Array2<f32> {
    let (h, w) = img.dim();
    if sigma <= 0.0 || h == 0 || w == 0 {
        return img.to_owned();
    }
    let r = ((3.0 * sigma).ceil() as usize).max(1);
    let mut k: Vec<f32> = (0..=2 * r)
        .map(|i| {
            let d = i as f32 - r as f32;
            (-0.5 * d * d / (sigma * sigma)).exp()
        })
        .collect();
    let total: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= total);
    // Rows, then columns (the transpose trick keeps both passes on contiguous rows).
    let blur_rows = |src: ArrayView2<f32>| -> Array2<f32> {
        let (n, m) = src.dim();
        let mut out = Array2::<f32>::zeros((n, m));
        out.axis_iter_mut(Axis(0))
            .into_par_iter()
            .enumerate()
            .for_each(|(y, mut row)| {
                let s = src.row(y);
                let padded: Vec<f32> = (0..m + 2 * r)
                    .map(|i| s[reflect101(i as isize - r as isize, m)])
                    .collect();
                for (x, o) in row.iter_mut().enumerate() {
                    *o = k
                        .iter()
                        .zip(&padded[x..x + 2 * r + 1])
                        .map(|(a, b)| a * b)
                        .sum();
                }
            });
        out
    };
    let pass1 = blur_rows(img);
    let pass2 = blur_rows(pass1.t().as_standard_layout().view());
    pass2.t().as_standard_layout().into_owned()
}

/// Histogram equalization of an image in [0, 1], OpenCV's `equalizeHist` on 8-bit values:
/// `v = round(255 x)` (clamped), then with `c(v)` the cumulative histogram and `v0` the
/// smallest occupied level,
///
/// ```text
/// out = round(255 (c(v) - c(v0)) / (N - c(v0))) / 255
/// ```
///
/// 256 bins ([`EQUALIZE_BINS`]), so the output has at most 256 levels, as in the study
/// (which equalized 8-bit images). A constant image is returned quantized but unchanged.
pub fn equalize_histogram(img: ArrayView2<f32>) -> Array2<f32> {
    let top = (EQUALIZE_BINS - 1) as f32;
    let level = |x: f32| (x.clamp(0.0, 1.0) * top).round() as usize;
    // Histogram per row block in parallel, then summed.
    let hist = img
        .axis_iter(Axis(0))
        .into_par_iter()
        .fold(
            || vec![0u64; EQUALIZE_BINS],
            |mut hist, row| {
                row.iter().for_each(|&x| hist[level(x)] += 1);
                hist
            },
        )
        .reduce(
            || vec![0u64; EQUALIZE_BINS],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let total: u64 = hist.iter().sum();
    let Some(v0) = hist.iter().position(|&c| c > 0) else {
        return img.to_owned();
    };
    let mut lut = vec![0f32; EQUALIZE_BINS];
    if hist[v0] == total {
        lut.iter_mut()
            .enumerate()
            .for_each(|(v, l)| *l = v as f32 / top);
    } else {
        let scale = top as f64 / (total - hist[v0]) as f64;
        let mut sum = 0u64;
        for v in v0 + 1..EQUALIZE_BINS {
            sum += hist[v];
            lut[v] = (sum as f64 * scale).round_ties_even() as f32 / top;
        }
    }
    let mut out = img.to_owned();
    out.par_mapv_inplace(|x| lut[level(x)]);
    out
}

/// Single-image SNR estimate by autocorrelation (Thong, Sim, Phang, Mitchell & Chan,
/// "Single-image signal-to-noise ratio estimation", Scanning 23, 2001; the study's ref. \[25\]).
///
/// With `x` the image minus its mean and `r(k)` the autocorrelation at lag `k` (mean of
/// `x(p) x(p + k)` over all valid pairs), white noise adds only to `r(0)`. The noise-free
/// `r(0)` (= signal variance) is extrapolated linearly from the first two lags,
/// `S = 2 r(1) - r(2)` ("first-order interpolation" in Thong et al.), computed along rows and
/// along columns and averaged, and clamped to `[0, r(0)]`. Then
///
/// ```text
/// SNR = S / (r(0) - S)
/// ```
///
/// 0 for a constant or pure-noise image, `f32::INFINITY` for a noise-free one. Needs at least
/// 3 pixels along each axis (else 0). Smoothing filters correlate the noise, so after
/// filtering this estimate rises as in the paper's Fig. 4d.
pub fn estimate_snr(img: ArrayView2<f32>) -> f32 {
    let (h, w) = img.dim();
    if h < 3 || w < 3 {
        return 0.0;
    }
    let n = (h * w) as f64;
    let mean = img.iter().map(|&v| v as f64).sum::<f64>() / n;
    let x = img.mapv(|v| v as f64 - mean);
    let r0 = x.iter().map(|v| v * v).sum::<f64>() / n;
    if r0.is_nan() || r0 <= 0.0 {
        return 0.0;
    }
    // Mean of x(y, c) * x(y + dy, c + dx) over valid pairs.
    let lag = |dy: usize, dx: usize| -> f64 {
        let s: f64 = (0..h - dy)
            .into_par_iter()
            .map(|y| {
                let a = x.row(y);
                let b = x.row(y + dy);
                (0..w - dx).map(|c| a[c] * b[c + dx]).sum::<f64>()
            })
            .sum();
        s / ((h - dy) * (w - dx)) as f64
    };
    let along_rows = 2.0 * lag(0, 1) - lag(0, 2);
    let along_cols = 2.0 * lag(1, 0) - lag(2, 0);
    let signal = (0.5 * (along_rows + along_cols)).clamp(0.0, r0);
    let noise = r0 - signal;
    if noise <= r0 * 1e-12 {
        return f32::INFINITY;
    }
    (signal / noise) as f32
}
