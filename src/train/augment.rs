//! Augmentation: the 8 symmetries of the square (flips and 90-degree rotations). Cryo-ET
//! projections have no preferred orientation, so every one is as likely as the original.
//!
//! Images are `[C, N, H, W]`; boxes `[N, 4]` as (x1, y1, x2, y2) in continuous pixel
//! coordinates, the image spanning `[0, W] x [0, H]` (pixel (r, c) covers `[c, c+1] x [r, r+1]`).
//!
//! ```text
//! horizontal flip:  pixel (r, c) -> (r, W-1-c);   point (x, y) -> (W - x, y)
//! vertical flip:    pixel (r, c) -> (H-1-r, c);   point (x, y) -> (x, H - y)
//! rotate 90 (counter-clockwise, numpy.rot90): output is W x H,
//!                   pixel (r, c) -> (W-1-c, r);   point (x, y) -> (y, W - x)
//! ```
//! Box corners are re-sorted after each map so that x1 <= x2 and y1 <= y2.
//!
//! [`augment_example`] is the one place where per-iteration augmentation happens (physical-scale
//! runs). Per iteration:
//! ```text
//! f ~ exp(U(ln lo, ln hi))                   (--scale-range lo,hi; log-uniform)
//! crop window of the Base, size min(side, max_input / f) per axis; with probability 0.8 (when
//!   the image has objects) placed so that it holds the centre of a random object, else uniform
//! boxes clipped to the window; a box keeping < 40 % of its area is dropped
//! anti-aliased resample of the window by f (transform::resample_antialiased): network pixels
//! random blur and noise (intensity_augment; with augmentation on)
//! preprocess (bilateral + equalization) at this resolution, ImageNet normalization
//! random symmetry (Dihedral)
//! ```
//! Cropping before resampling costs the same as resampling the whole image and cropping after,
//! up to the rounding of the window to whole pixels, and bounds the work by max_input^2.

use crate::preprocess::{preprocess, PreprocessConfig};
use crate::train::data::{Base, Example, DIFFICULT};
use crate::transform::{normalize_imagenet, resample_antialiased};
use ndarray::{s, Array2, Array4, Axis};
use rand::Rng;

/// Least fraction of a box's area inside the crop for the box to be kept.
pub const MIN_VISIBLE: f32 = 0.4;
/// Probability that a crop is placed on an object (when the image has one).
pub const OBJECT_CROP_P: f64 = 0.8;

/// Per-iteration augmentation settings.
#[derive(Debug, Clone)]
pub struct AugmentConfig {
    /// Log-uniform rescale range `[lo, hi]` (`[1, 1]`: none).
    pub scale_range: [f32; 2],
    /// Long side of the crop at network pixels.
    pub max_input: usize,
    /// Random flips and quarter turns.
    pub dihedral: bool,
    /// The study's preprocessing at the network resolution (`None`: skipped).
    pub preprocess: Option<PreprocessConfig>,
    /// Random blur and noise before the preprocessing ([`intensity_augment`]).
    pub intensity: bool,
}

/// Probability of a random blur in [`intensity_augment`].
pub const BLUR_P: f64 = 0.3;
/// Range of the blur's sigma, network pixels.
pub const BLUR_SIGMA: [f32; 2] = [0.3, 1.2];
/// Probability of added noise in [`intensity_augment`].
pub const NOISE_P: f64 = 0.5;
/// Range of the added noise's standard deviation, as a multiple of the image's own.
pub const NOISE_REL_STD: [f32; 2] = [0.1, 1.0];

/// Intensity augmentation of a `[0, 1]` image: other microscopes' transfer and other doses.
///
/// ```text
/// with probability BLUR_P:   img <- G_sigma * img,  sigma ~ U(0.3, 1.2) px   (MTF, denoised looks)
/// with probability NOISE_P:  img <- img + n,  n ~ N(0, (r * std(img))^2),  r ~ U(0.1, 1.0)
/// img <- clamp(img, 0, 1)
/// ```
/// Contrast and gamma changes are not drawn here: the histogram equalization that follows maps
/// every increasing intensity transform to (almost) the same image.
pub fn intensity_augment(img: &mut Array2<f32>, rng: &mut impl Rng) {
    if rng.gen_bool(BLUR_P) {
        let sigma = rng.gen_range(BLUR_SIGMA[0]..=BLUR_SIGMA[1]);
        *img = gaussian_blur(img, sigma);
    }
    if rng.gen_bool(NOISE_P) {
        let n = img.len().max(1) as f32;
        let mean = img.sum() / n;
        let std = (img.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n).sqrt();
        let s = rng.gen_range(NOISE_REL_STD[0]..=NOISE_REL_STD[1]) * std;
        let normal = rand_distr::Normal::new(0.0f32, s.max(1e-12)).expect("finite std");
        img.mapv_inplace(|v| v + rng.sample(normal));
    }
    img.mapv_inplace(|v| v.clamp(0.0, 1.0));
}

/// Separable Gaussian blur, kernel radius `ceil(3 sigma)`, borders replicated:
/// `y[i, j] = sum_{a,b} g[a] g[b] x[clamp(i + a), clamp(j + b)]`, `g` normalized to sum 1.
pub fn gaussian_blur(x: &Array2<f32>, sigma: f32) -> Array2<f32> {
    let r = (3.0 * sigma).ceil().max(1.0) as isize;
    let mut g: Vec<f32> = (-r..=r)
        .map(|a| (-((a * a) as f32) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = g.iter().sum();
    g.iter_mut().for_each(|v| *v /= total);
    let (h, w) = x.dim();
    let clampi = |i: isize, n: usize| i.clamp(0, n as isize - 1) as usize;
    let rows = Array2::from_shape_fn((h, w), |(i, j)| {
        (-r..=r)
            .zip(&g)
            .map(|(a, k)| k * x[[i, clampi(j as isize + a, w)]])
            .sum::<f32>()
    });
    Array2::from_shape_fn((h, w), |(i, j)| {
        (-r..=r)
            .zip(&g)
            .map(|(a, k)| k * rows[[clampi(i as isize + a, h), j]])
            .sum::<f32>()
    })
}

/// Boxes of `boxes` cut to the window `[x0, x0 + cw] x [y0, y0 + ch]`, in window coordinates;
/// rows keeping less than [`MIN_VISIBLE`] of their area are dropped. Returns the kept boxes and
/// the indices of their rows.
pub fn crop_boxes(
    boxes: &Array2<f32>,
    (x0, y0): (f32, f32),
    (cw, ch): (f32, f32),
) -> (Array2<f32>, Vec<usize>) {
    let mut kept = Vec::new();
    let mut rows = Vec::new();
    for (i, b) in boxes.axis_iter(Axis(0)).enumerate() {
        let area = (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0);
        let c = [
            (b[0] - x0).clamp(0.0, cw),
            (b[1] - y0).clamp(0.0, ch),
            (b[2] - x0).clamp(0.0, cw),
            (b[3] - y0).clamp(0.0, ch),
        ];
        let inside = (c[2] - c[0]) * (c[3] - c[1]);
        if area > 0.0 && inside >= MIN_VISIBLE * area {
            kept.extend_from_slice(&c);
            rows.push(i);
        }
    }
    let n = rows.len();
    (
        Array2::from_shape_vec((n, 4), kept).expect("4 per row"),
        rows,
    )
}

/// Start of a window of length `len` on an axis of length `n` (`len <= n`) holding `centre` when
/// given (clamped to the axis), else uniform.
fn window_start(rng: &mut impl Rng, n: usize, len: usize, centre: Option<f32>) -> usize {
    let max_start = n - len;
    if max_start == 0 {
        return 0;
    }
    match centre {
        Some(c) => {
            // Starts whose window [s, s + len) holds c: s in (c - len, c].
            let lo = (c - len as f32).ceil().max(0.0) as usize;
            let hi = (c.floor().max(0.0) as usize).min(max_start);
            if lo >= hi {
                hi.min(max_start)
            } else {
                rng.gen_range(lo..=hi)
            }
        }
        None => rng.gen_range(0..=max_start),
    }
}

/// One iteration's network input from a cached [`Base`] (module doc). `x` is `[3, 1, h, w]`,
/// not padded; boxes are in its pixels.
pub fn augment_example(base: &Base, cfg: &AugmentConfig, rng: &mut impl Rng) -> Example {
    let (h, w) = base.unit.dim();
    let [lo, hi] = cfg.scale_range;
    let f = if hi > lo {
        rng.gen_range(lo.ln()..=hi.ln()).exp()
    } else {
        lo
    } as f64;
    // Window in Base pixels covering at most max_input network pixels per axis.
    let cap = (cfg.max_input as f64 / f).floor().max(1.0) as usize;
    let (ch, cw) = (h.min(cap), w.min(cap));
    let objects: Vec<usize> = (0..base.boxes.nrows())
        .filter(|&r| base.labels[r] != DIFFICULT)
        .collect();
    let centre = if !objects.is_empty() && rng.gen_bool(OBJECT_CROP_P) {
        let b = base.boxes.row(objects[rng.gen_range(0..objects.len())]);
        Some(((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0))
    } else {
        None
    };
    let x0 = window_start(rng, w, cw, centre.map(|c| c.0));
    let y0 = window_start(rng, h, ch, centre.map(|c| c.1));
    let window = base.unit.slice(s![y0..y0 + ch, x0..x0 + cw]);
    let (boxes, rows) = crop_boxes(&base.boxes, (x0 as f32, y0 as f32), (cw as f32, ch as f32));
    let labels: Vec<usize> = rows.iter().map(|&r| base.labels[r]).collect();
    let oh = ((ch as f64 * f).round() as usize).clamp(1, cfg.max_input);
    let ow = ((cw as f64 * f).round() as usize).clamp(1, cfg.max_input);
    let mut img = resample_antialiased(window, oh, ow);
    let (sx, sy) = (ow as f32 / cw as f32, oh as f32 / ch as f32);
    let mut boxes = boxes;
    for mut b in boxes.axis_iter_mut(Axis(0)) {
        b[0] *= sx;
        b[1] *= sy;
        b[2] *= sx;
        b[3] *= sy;
    }
    if cfg.intensity {
        intensity_augment(&mut img, rng);
    }
    if let Some(p) = &cfg.preprocess {
        img = preprocess(img.view(), p);
    }
    let x = normalize_imagenet(img.view());
    let (x, boxes) = if cfg.dihedral {
        Dihedral::random(rng).apply(&x, &boxes)
    } else {
        (x, boxes)
    };
    Example { x, boxes, labels }
}

/// One of the 8 symmetries: `rot90` quarter turns after the optional flips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dihedral {
    pub hflip: bool,
    pub vflip: bool,
    /// Counter-clockwise quarter turns, 0..4.
    pub rot90: u8,
}

impl Dihedral {
    /// Each flip with probability 1/2, a uniform number of quarter turns.
    pub fn random(rng: &mut impl Rng) -> Self {
        Dihedral {
            hflip: rng.gen_bool(0.5),
            vflip: rng.gen_bool(0.5),
            rot90: rng.gen_range(0..4),
        }
    }

    /// Applies the symmetry to an image and its boxes.
    pub fn apply(&self, x: &Array4<f32>, boxes: &Array2<f32>) -> (Array4<f32>, Array2<f32>) {
        let (mut x, mut b) = (x.clone(), boxes.clone());
        if self.hflip {
            (x, b) = hflip(&x, &b);
        }
        if self.vflip {
            (x, b) = vflip(&x, &b);
        }
        for _ in 0..self.rot90 % 4 {
            (x, b) = rot90(&x, &b);
        }
        (x, b)
    }
}

/// Point map for every box: each corner goes through `f(x, y, h, w)`, then corners are sorted.
fn map_boxes(boxes: &Array2<f32>, f: impl Fn(f32, f32) -> (f32, f32)) -> Array2<f32> {
    let mut out = boxes.clone();
    for mut r in out.axis_iter_mut(Axis(0)) {
        let (ax, ay) = f(r[0], r[1]);
        let (bx, by) = f(r[2], r[3]);
        r[0] = ax.min(bx);
        r[1] = ay.min(by);
        r[2] = ax.max(bx);
        r[3] = ay.max(by);
    }
    out
}

/// Horizontal flip (mirror left-right).
pub fn hflip(x: &Array4<f32>, boxes: &Array2<f32>) -> (Array4<f32>, Array2<f32>) {
    let w = x.dim().3 as f32;
    (
        x.slice(s![.., .., .., ..;-1]).to_owned(),
        map_boxes(boxes, |px, py| (w - px, py)),
    )
}

/// Vertical flip (mirror top-bottom).
pub fn vflip(x: &Array4<f32>, boxes: &Array2<f32>) -> (Array4<f32>, Array2<f32>) {
    let h = x.dim().2 as f32;
    (
        x.slice(s![.., .., ..;-1, ..]).to_owned(),
        map_boxes(boxes, |px, py| (px, h - py)),
    )
}

/// Quarter turn counter-clockwise: `out[.., .., i, j] = x[.., .., j, W-1-i]`, shape `[C, N, W, H]`.
pub fn rot90(x: &Array4<f32>, boxes: &Array2<f32>) -> (Array4<f32>, Array2<f32>) {
    let w = x.dim().3 as f32;
    // Transpose H and W, then flip the new rows: numpy.rot90(x, 1, axes=(2, 3)).
    let t = x.view().permuted_axes([0, 1, 3, 2]);
    let out = t
        .slice(s![.., .., ..;-1, ..])
        .as_standard_layout()
        .into_owned();
    (out, map_boxes(boxes, |px, py| (py, w - px)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, EXACT};
    use rand::SeedableRng;

    /// A 2-channel 5 x 7 image (H != W, odd) with distinct values, and two boxes.
    fn sample() -> (Array4<f32>, Array2<f32>) {
        let x = Array4::from_shape_fn((2, 1, 5, 7), |(c, _, r, q)| (c * 100 + r * 10 + q) as f32);
        let b = ndarray::arr2(&[[1.0f32, 2.0, 3.0, 5.0], [0.0, 0.5, 7.0, 1.5]]);
        (x, b)
    }

    #[test]
    fn four_quarter_turns_are_the_identity() {
        let (x, b) = sample();
        let (mut y, mut c) = (x.clone(), b.clone());
        for k in 0..4 {
            (y, c) = rot90(&y, &c);
            let want = if k % 2 == 0 {
                (2, 1, 7, 5)
            } else {
                (2, 1, 5, 7)
            };
            assert_eq!(y.dim(), want, "after {} turns", k + 1);
        }
        assert_close("image", y.view().into_dyn(), x.view().into_dyn(), EXACT);
        assert_close("boxes", c.view().into_dyn(), b.view().into_dyn(), EXACT);
    }

    #[test]
    fn flips_are_involutions() {
        let (x, b) = sample();
        for f in [hflip, vflip] {
            let (y, c) = f(&x, &b);
            assert_ne!(y, x);
            let (z, d) = f(&y, &c);
            assert_close("image", z.view().into_dyn(), x.view().into_dyn(), EXACT);
            assert_close("boxes", d.view().into_dyn(), b.view().into_dyn(), EXACT);
        }
    }

    /// The pixel just inside each corner of a box stays just inside the same corner of the
    /// transformed box, for all 8 symmetries.
    #[test]
    fn pixels_at_box_corners_move_with_the_box() {
        let (h, w) = (5usize, 7usize);
        let bx = [1usize, 2, 4, 5]; // box covering pixel columns 1..4, rows 2..5
        for hf in [false, true] {
            for vf in [false, true] {
                for r in 0..4u8 {
                    let t = Dihedral {
                        hflip: hf,
                        vflip: vf,
                        rot90: r,
                    };
                    // Mark the 4 corner pixels of the box with 1..=4.
                    let mut x = Array4::<f32>::zeros((1, 1, h, w));
                    let corners = [
                        (bx[1], bx[0]),
                        (bx[1], bx[2] - 1),
                        (bx[3] - 1, bx[0]),
                        (bx[3] - 1, bx[2] - 1),
                    ];
                    for (k, &(rr, cc)) in corners.iter().enumerate() {
                        x[[0, 0, rr, cc]] = (k + 1) as f32;
                    }
                    let b =
                        ndarray::arr2(&[[bx[0] as f32, bx[1] as f32, bx[2] as f32, bx[3] as f32]]);
                    let (y, c) = t.apply(&x, &b);
                    let (x1, y1, x2, y2) = (
                        c[[0, 0]] as usize,
                        c[[0, 1]] as usize,
                        c[[0, 2]] as usize,
                        c[[0, 3]] as usize,
                    );
                    let mut seen: Vec<f32> =
                        [(y1, x1), (y1, x2 - 1), (y2 - 1, x1), (y2 - 1, x2 - 1)]
                            .iter()
                            .map(|&(rr, cc)| y[[0, 0, rr, cc]])
                            .collect();
                    seen.sort_by(f32::total_cmp);
                    assert_eq!(seen, vec![1.0, 2.0, 3.0, 4.0], "{t:?}: box {c:?}");
                    assert_eq!(y.sum(), 10.0);
                }
            }
        }
    }

    #[test]
    fn crop_keeps_boxes_with_forty_percent_inside() {
        let b = ndarray::arr2(&[
            [0.0f32, 0.0, 10.0, 10.0], // 100 % inside
            [15.0, 0.0, 25.0, 10.0],   // 50 % inside (x 15..20)
            [17.0, 0.0, 27.0, 10.0],   // 30 % inside: dropped
            [-6.0, 2.0, 4.0, 6.0],     // 40 % inside (x 0..4): kept, clipped
        ]);
        let (c, rows) = crop_boxes(&b, (0.0, 0.0), (20.0, 20.0));
        assert_eq!(rows, vec![0, 1, 3]);
        assert_eq!(c.row(1).to_vec(), vec![15.0, 0.0, 20.0, 10.0]);
        assert_eq!(c.row(2).to_vec(), vec![0.0, 2.0, 4.0, 6.0]);
        // Window coordinates: shifted by the window's origin.
        let (c, _) = crop_boxes(&b, (5.0, 1.0), (20.0, 20.0));
        assert_eq!(c.row(0).to_vec(), vec![0.0, 0.0, 5.0, 9.0]);
    }

    /// The boxes follow the image through rescale, crop and symmetry: a bright square stays
    /// inside its box, and the input is never larger than max_input.
    #[test]
    fn augmented_boxes_follow_the_image() {
        let mut unit = Array2::<f32>::zeros((300, 200));
        unit.slice_mut(s![120..160, 50..90]).fill(1.0);
        let base = Base {
            unit,
            boxes: ndarray::arr2(&[[50.0f32, 120.0, 90.0, 160.0]]),
            labels: vec![1],
        };
        let cfg = AugmentConfig {
            scale_range: [0.5, 2.0],
            max_input: 128,
            dihedral: true,
            intensity: false,
            preprocess: None,
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut with_object = 0;
        for _ in 0..40 {
            let ex = augment_example(&base, &cfg, &mut rng);
            let (_, _, h, w) = ex.x.dim();
            assert!(h <= 128 && w <= 128, "{h}x{w}");
            // Channel 0 back to [0, 1].
            let img = ex.x.slice(s![0, 0, .., ..]).mapv(|v| v * 0.229 + 0.485);
            let total: f32 = img.sum();
            if ex.labels.is_empty() {
                continue;
            }
            with_object += 1;
            let b = ex.boxes.row(0);
            let (x1, y1) = (b[0].floor() as usize, b[1].floor() as usize);
            let (x2, y2) = ((b[2].ceil() as usize).min(w), (b[3].ceil() as usize).min(h));
            let inside: f32 = img.slice(s![y1..y2, x1..x2]).sum();
            // Anti-aliasing spreads at most ~2 pixels of the edge outside the box.
            assert!(
                inside >= 0.9 * total - 1e-3,
                "inside {inside} of {total}, box {b:?}"
            );
        }
        // Crops are placed on the object with probability 0.8.
        assert!(
            with_object >= 24,
            "{with_object} of 40 crops hold the object"
        );
    }

    #[test]
    fn random_covers_all_eight() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let d = Dihedral::random(&mut rng);
            seen.insert((d.hflip, d.vflip, d.rot90));
        }
        assert_eq!(seen.len(), 16); // 2 x 2 x 4 parametrizations (8 distinct symmetries)
    }

    #[test]
    fn gaussian_blur_keeps_constants_and_mass_and_matches_naive() {
        // Constant stays constant (borders replicated, kernel normalized).
        let c = Array2::<f32>::from_elem((9, 13), 0.25);
        let b = gaussian_blur(&c, 1.1);
        assert!(b.iter().all(|v| (v - 0.25).abs() < 1e-6));
        // An impulse far from the border spreads into a normalized, symmetric 2D Gaussian.
        let mut x = Array2::<f32>::zeros((21, 23));
        x[[10, 11]] = 1.0;
        let sigma = 0.8f32;
        let y = gaussian_blur(&x, sigma);
        assert!((y.sum() - 1.0).abs() < 1e-5);
        let r = (3.0 * sigma).ceil() as i32;
        let norm: f32 = (-r..=r)
            .map(|a| (-(a * a) as f32 / (2.0 * sigma * sigma)).exp())
            .sum();
        for (di, dj) in [(0i32, 0i32), (1, 0), (0, 2), (-2, 1)] {
            let naive =
                (-((di * di + dj * dj) as f32) / (2.0 * sigma * sigma)).exp() / (norm * norm);
            let got = y[[(10 + di) as usize, (11 + dj) as usize]];
            assert!((got - naive).abs() < 1e-6, "{di},{dj}: {got} vs {naive}");
        }
        assert_eq!(y[[9, 11]], y[[11, 11]]);
    }

    #[test]
    fn intensity_augment_stays_in_unit_range_and_changes_some_images() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let base = Array2::from_shape_fn((17, 19), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 10.0);
        let mut changed = 0;
        for _ in 0..20 {
            let mut img = base.clone();
            intensity_augment(&mut img, &mut rng);
            assert!(img.iter().all(|v| (0.0..=1.0).contains(v)));
            if img != base {
                changed += 1;
            }
        }
        // P(unchanged) = (1 - 0.3) * (1 - 0.5) = 0.35 per image.
        assert!((5..20).contains(&changed), "{changed}");
    }
}
