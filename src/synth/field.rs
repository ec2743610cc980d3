//! Random fields and separable Gaussian filtering for the synthetic image generator.
//!
//! `gaussian_blur(x, sigma)[i, j] = sum_{di, dj} g(di) g(dj) x[refl(i + di), refl(j + dj)]` with
//! `g(k) = exp(-k^2 / (2 sigma^2)) / Z` truncated at `|k| <= ceil(3 sigma)` and normalised to sum 1;
//! borders are mirrored (`refl(-1) = 0`, `refl(n) = n - 1`), so a constant image stays constant.
//! Two 1-D passes (rows, then columns): cost `O(H W sigma)`.

use ndarray::Array2;
use rand::Rng;
use rand_distr::StandardNormal;

/// Normalised 1-D Gaussian taps `g(-r..=r)`, `r = ceil(3 sigma)`.
fn kernel(sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil().max(1.0) as isize;
    let mut k: Vec<f32> = (-r..=r)
        .map(|d| (-(d * d) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    k
}

/// Mirror an index into `0..n` (edge pixel repeated: ... 1 0 | 0 1 2 ... n-1 | n-1 n-2 ...).
#[inline]
fn reflect(i: isize, n: isize) -> usize {
    let period = 2 * n;
    let mut m = i.rem_euclid(period);
    if m >= n {
        m = period - 1 - m;
    }
    m as usize
}

/// Convolve one line `src` (length n) into `dst` with the taps `k` (mirrored borders).
fn convolve_line(src: &[f32], dst: &mut [f32], k: &[f32]) {
    let n = src.len() as isize;
    let r = (k.len() / 2) as isize;
    for i in 0..n {
        let mut acc = 0.0f32;
        if i - r >= 0 && i + r < n {
            let base = (i - r) as usize;
            for (t, kv) in k.iter().enumerate() {
                acc += kv * src[base + t];
            }
        } else {
            for (t, kv) in k.iter().enumerate() {
                acc += kv * src[reflect(i - r + t as isize, n)];
            }
        }
        dst[i as usize] = acc;
    }
}

/// Separable Gaussian blur with standard deviation `sigma` pixels (see the module doc).
/// `sigma <= 0` returns a copy.
pub(crate) fn gaussian_blur(x: &Array2<f32>, sigma: f32) -> Array2<f32> {
    if sigma <= 0.0 {
        return x.clone();
    }
    let (h, w) = x.dim();
    let k = kernel(sigma);
    let src = x.as_standard_layout();
    let src = src.as_slice().expect("standard layout");
    // Rows.
    let mut rows = vec![0.0f32; h * w];
    for i in 0..h {
        convolve_line(&src[i * w..(i + 1) * w], &mut rows[i * w..(i + 1) * w], &k);
    }
    // Columns: gather each column into a line buffer, convolve, scatter.
    let mut out = vec![0.0f32; h * w];
    let mut col = vec![0.0f32; h];
    let mut res = vec![0.0f32; h];
    for j in 0..w {
        for i in 0..h {
            col[i] = rows[i * w + j];
        }
        convolve_line(&col, &mut res, &k);
        for i in 0..h {
            out[i * w + j] = res[i];
        }
    }
    Array2::from_shape_vec((h, w), out).expect("shape h*w")
}

/// `h x w` independent standard normal samples.
pub(crate) fn white_noise<R: Rng>(rng: &mut R, h: usize, w: usize) -> Array2<f32> {
    Array2::from_shape_simple_fn((h, w), || rng.sample::<f32, _>(StandardNormal))
}

/// A stationary Gaussian random field with a Gaussian correlation of width `sigma` pixels,
/// normalised to zero mean and unit (sample) variance: `f = (G_sigma * n - mean) / std`.
pub(crate) fn smooth_field<R: Rng>(rng: &mut R, h: usize, w: usize, sigma: f32) -> Array2<f32> {
    let mut f = gaussian_blur(&white_noise(rng, h, w), sigma);
    standardize(&mut f);
    f
}

/// A smooth random field like [`smooth_field`] for any `sigma`, in `O(h w)`: for `sigma > 3`
/// px it is drawn on a grid `f = sigma / 2` times coarser (blur 2 coarse px), bilinearly
/// interpolated back to `h x w`, and standardized (correlation ~ `sigma`; the randomized
/// generator's large-scale fields: gradients, chromatin, ice).
pub(crate) fn smooth_field_any<R: Rng>(rng: &mut R, h: usize, w: usize, sigma: f32) -> Array2<f32> {
    if sigma <= 3.0 {
        return smooth_field(rng, h, w, sigma);
    }
    let f = sigma / 2.0;
    let (ch, cw) = (
        ((h as f32 / f).ceil() as usize + 2).max(2),
        ((w as f32 / f).ceil() as usize + 2).max(2),
    );
    let c = smooth_field(rng, ch, cw, 2.0);
    let mut out = Array2::from_shape_fn((h, w), |(i, j)| {
        let y = i as f32 / f;
        let x = j as f32 / f;
        let (i0, j0) = (y.floor() as usize, x.floor() as usize);
        let (i1, j1) = ((i0 + 1).min(ch - 1), (j0 + 1).min(cw - 1));
        let (ty, tx) = (y - i0 as f32, x - j0 as f32);
        let top = c[[i0, j0]] * (1.0 - tx) + c[[i0, j1]] * tx;
        let bot = c[[i1, j0]] * (1.0 - tx) + c[[i1, j1]] * tx;
        top * (1.0 - ty) + bot * ty
    });
    standardize(&mut out);
    out
}

/// In place: subtract the mean, divide by the standard deviation (left unscaled if it is 0).
pub(crate) fn standardize(f: &mut Array2<f32>) {
    let (m, v) = mean_var(f.iter().copied());
    let s = if v > 0.0 { 1.0 / v.sqrt() } else { 1.0 };
    f.mapv_inplace(|x| (x - m) * s);
}

/// Mean and population variance, accumulated in f64 (two passes are not needed at this size:
/// values are O(1..100) and n <= 1e7, so the f64 sum of squares keeps ~8 significant digits).
pub(crate) fn mean_var(it: impl Iterator<Item = f32>) -> (f32, f32) {
    let (mut n, mut s, mut s2) = (0usize, 0f64, 0f64);
    for x in it {
        n += 1;
        s += x as f64;
        s2 += (x as f64) * (x as f64);
    }
    if n == 0 {
        return (0.0, 0.0);
    }
    let m = s / n as f64;
    ((m) as f32, ((s2 / n as f64) - m * m).max(0.0) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_keeps_constants_and_mass() {
        let x = Array2::from_elem((7, 11), 3.0f32);
        let y = gaussian_blur(&x, 2.5);
        assert!(y.iter().all(|v| (v - 3.0).abs() < 1e-5));
        let mut d = Array2::zeros((21, 23));
        d[[10, 11]] = 1.0;
        let y = gaussian_blur(&d, 1.5);
        assert!((y.sum() - 1.0).abs() < 1e-5);
        assert!((y[[10, 11]] - y.iter().cloned().fold(0.0, f32::max)).abs() < 1e-9);
    }
}
