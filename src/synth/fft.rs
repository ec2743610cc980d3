//! A small radix-2 complex FFT for the image-formation filters of the randomized generator
//! (CTF, missing wedge, low-pass), by hand as the project's numerical core is.
//!
//! `fft(x)[k] = sum_n x[n] exp(-2 pi i n k / N)` (forward, unnormalised) and the inverse with
//! `+i` and a factor `1 / N`, so that `ifft(fft(x)) = x`. Iterative Cooley-Tukey with a
//! bit-reversal permutation, `N` a power of two, cost `O(N log N)`. 2-D transforms are rows then
//! columns. A real image of `h x w` is embedded in a `H x W` power-of-two grid with mirrored
//! borders ([`filter_real`]), so that the periodic transform does not wrap one border onto the
//! other.

/// A complex number `(re, im)`.
pub(crate) type C = (f32, f32);

/// Twiddle factors `exp(-2 pi i k / n)`, `k < n / 2`, for transforms of length `n` (f64-accurate).
pub(crate) fn twiddles(n: usize) -> Vec<C> {
    (0..n / 2)
        .map(|k| {
            let a = -2.0 * std::f64::consts::PI * k as f64 / n as f64;
            (a.cos() as f32, a.sin() as f32)
        })
        .collect()
}

/// In-place FFT of `x` (length a power of two); `inverse` uses `+i` and divides by `N`.
#[cfg(test)]
pub(crate) fn fft(x: &mut [C], inverse: bool) {
    let tw = twiddles(x.len());
    fft_with(x, inverse, &tw);
}

/// [`fft`] with precomputed [`twiddles`] of `x.len()`.
pub(crate) fn fft_with(x: &mut [C], inverse: bool, tw: &[C]) {
    let n = x.len();
    if n <= 1 {
        return;
    }
    debug_assert!(n.is_power_of_two() && tw.len() == n / 2);
    let bits = n.trailing_zeros();
    for i in 0..n {
        let j = i.reverse_bits() >> (usize::BITS - bits);
        if j > i {
            x.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let half = len / 2;
        let step = n / len;
        for start in (0..n).step_by(len) {
            for k in 0..half {
                let (wr, wi) = tw[k * step];
                let wi = if inverse { -wi } else { wi };
                let (ar, ai) = x[start + k];
                let (br, bi) = x[start + k + half];
                let (tr, ti) = (br * wr - bi * wi, br * wi + bi * wr);
                x[start + k] = (ar + tr, ai + ti);
                x[start + k + half] = (ar - tr, ai - ti);
            }
        }
        len *= 2;
    }
    if inverse {
        let s = 1.0 / n as f32;
        x.iter_mut().for_each(|v| *v = (v.0 * s, v.1 * s));
    }
}

/// 2-D FFT of a row-major `hh x ww` grid (both powers of two).
pub(crate) fn fft2(x: &mut [C], hh: usize, ww: usize, inverse: bool) {
    let (tw_w, tw_h) = (twiddles(ww), twiddles(hh));
    for row in x.chunks_mut(ww) {
        fft_with(row, inverse, &tw_w);
    }
    let mut col = vec![(0.0, 0.0); hh];
    for j in 0..ww {
        for i in 0..hh {
            col[i] = x[i * ww + j];
        }
        fft_with(&mut col, inverse, &tw_h);
        for i in 0..hh {
            x[i * ww + j] = col[i];
        }
    }
}

/// Signed frequency of FFT bin `k` of `n`, cycles per pixel: `k / n` for `k < n / 2`, else
/// `k / n - 1`.
#[inline]
pub(crate) fn freq(k: usize, n: usize) -> f32 {
    if k < n / 2 {
        k as f32 / n as f32
    } else {
        k as f32 / n as f32 - 1.0
    }
}

/// Filter a real `h x w` image (row-major) by the transfer function `tf(fy, fx)` (frequencies in
/// cycles per pixel, in `[-0.5, 0.5)`): embed it in the next power-of-two grid of at least
/// `h + 8` x `w + 8` with mirrored borders, transform, multiply, transform back, crop. Returns the filtered `h x w` image.
pub(crate) fn filter_real(
    img: &[f32],
    h: usize,
    w: usize,
    tf: impl Fn(f32, f32) -> f32,
) -> Vec<f32> {
    let hh = (h + 8).next_power_of_two();
    let ww = (w + 8).next_power_of_two();
    let (oi, oj) = ((hh - h) / 2, (ww - w) / 2);
    let refl = |k: isize, n: usize| -> usize {
        let n = n as isize;
        let p = 2 * n;
        let mut m = k.rem_euclid(p);
        if m >= n {
            m = p - 1 - m;
        }
        m as usize
    };
    let mut g = vec![(0.0f32, 0.0f32); hh * ww];
    for i in 0..hh {
        let si = refl(i as isize - oi as isize, h);
        for j in 0..ww {
            let sj = refl(j as isize - oj as isize, w);
            g[i * ww + j] = (img[si * w + sj], 0.0);
        }
    }
    fft2(&mut g, hh, ww, false);
    for i in 0..hh {
        let fy = freq(i, hh);
        for j in 0..ww {
            let t = tf(fy, freq(j, ww));
            let v = &mut g[i * ww + j];
            *v = (v.0 * t, v.1 * t);
        }
    }
    fft2(&mut g, hh, ww, true);
    let mut out = vec![0.0f32; h * w];
    for i in 0..h {
        for j in 0..w {
            out[i * w + j] = g[(i + oi) * ww + j + oj].0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft_matches_the_dft_and_inverts() {
        let n = 16;
        let x: Vec<C> = (0..n)
            .map(|k| ((k as f32 * 0.7).sin(), (k as f32 * 0.3).cos()))
            .collect();
        let mut y = x.clone();
        fft(&mut y, false);
        for (k, yk) in y.iter().enumerate() {
            let (mut re, mut im) = (0.0f64, 0.0f64);
            for (m, xm) in x.iter().enumerate() {
                let a = -2.0 * std::f64::consts::PI * (m * k) as f64 / n as f64;
                re += xm.0 as f64 * a.cos() - xm.1 as f64 * a.sin();
                im += xm.0 as f64 * a.sin() + xm.1 as f64 * a.cos();
            }
            assert!((yk.0 as f64 - re).abs() < 1e-4 && (yk.1 as f64 - im).abs() < 1e-4);
        }
        fft(&mut y, true);
        for (a, b) in x.iter().zip(&y) {
            assert!((a.0 - b.0).abs() < 1e-5 && (a.1 - b.1).abs() < 1e-5);
        }
    }

    #[test]
    fn identity_filter_returns_the_image() {
        let (h, w) = (37, 50);
        let img: Vec<f32> = (0..h * w).map(|k| ((k * 7919) % 101) as f32).collect();
        let out = filter_real(&img, h, w, |_, _| 1.0);
        for (a, b) in img.iter().zip(&out) {
            assert!((a - b).abs() < 1e-2, "{a} {b}");
        }
    }
}
