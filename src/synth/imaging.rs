//! Image formation of the randomized generator: projected (or sectioned) density -> CTF ->
//! missing wedge -> noise -> gradients -> display conversions.
//!
//! 1. **Transfer** (one FFT pass, `synth/fft.rs`), frequency `k` in nm^-1:
//!    `chi(k) = pi lambda df k^2 - pi/2 Cs lambda^3 k^4 + phase_shift`,
//!    `CTF(k) = -(sqrt(1 - A^2) sin chi + A cos chi) exp(-B k^2 / 4)` (weak-phase object, under-focus
//!    `df > 0`, amplitude contrast `A`), 300 kV: `lambda = 1.97 pm`, `Cs = 2.7 mm`. The sign makes
//!    dense = dark at low frequency. Phase-flipped tomograms use `-|...|`. A Volta phase plate
//!    adds `phase_shift ~ pi/2`: `sin chi ~ 1` at low k (strong low-frequency contrast).
//!    Binning low-pass: `exp(-2 pi^2 sigma^2 f^2)` (f in cycles/px).
//!    **Missing wedge** (slices; a 2-D stand-in for the 3-D wedge of a +-60 degree tilt series):
//!    frequencies whose direction lies within `half` of the wedge axis keep only `residual` of
//!    their amplitude (sharp edge): features along that axis are elongated and dense objects
//!    throw fan-shaped streaks; **streaks** add the dense objects smeared along the wedge axis.
//!    Energy-filtered thick specimens add amplitude contrast at low frequency:
//!    `+ lowfreq exp(-(40 nm k)^2)` inside the bracket (`lowfreq` 0.05-0.3 in projections).
//! 2. **Noise**: `n = sqrt(1 - m) w1 + sqrt(m) G_s * w2` (white and correlated parts, each of unit
//!    variance), low-passed like the signal when binned, then scaled so that
//!    `var_w(S) / var(n) = snr` exactly, `var_w` the variance of `S` winsorized at its 1st/99th
//!    percentiles (ice and carbon would otherwise set the noise level), S before gradients.
//! 3. **Gradients**: `S += std(S) (g . (p - c) / side + bump * smooth field(side / 4))` in both
//!    the noisy and the clean image (illumination / thickness); a lamella adds its thickness
//!    contrast (wedge and curtains, `synth/lamella.rs`) here too.
//! 4. **Display** (same map for noisy and clean): smoothing (Gaussian, median, or a guided
//!    filter as the bilateral-like edge-preserving look; He et al. 2013), clipping at the
//!    noisy image's `(lo, hi)` percentiles to `[0, 1]`, gamma `v^gamma`, inversion `1 - v`.

use super::appearance::{Imaging, Smooth};
use super::fft::filter_real;
use super::field::{gaussian_blur, mean_var, smooth_field_any, standardize, white_noise};
use ndarray::Array2;
use rand_chacha::ChaCha8Rng;

/// Electron wavelength at 300 kV, nm.
pub const LAMBDA_NM: f32 = 1.97e-3;
/// Spherical aberration, nm (2.7 mm).
pub const CS_NM: f32 = 2.7e6;

/// `CTF(k)` of the module doc (k in nm^-1).
pub fn ctf(k: f32, im: &Imaging) -> f32 {
    let k2 = k * k;
    let chi = std::f32::consts::PI * LAMBDA_NM * im.defocus_nm * k2
        - std::f32::consts::FRAC_PI_2 * CS_NM * LAMBDA_NM.powi(3) * k2 * k2
        + im.phase_shift;
    let a = im.amp_contrast;
    let v = (1.0 - a * a).sqrt() * chi.sin() + a * chi.cos();
    // Energy-filter (zero-loss) amplitude contrast of thick specimens: inelastically scattered
    // electrons removed by the slit, a low-frequency term of weight `lowfreq` below ~1/(40 nm).
    let v = v + im.lowfreq * (-k2 * 40.0 * 40.0).exp();
    let env = (-im.b_nm2 * k2 / 4.0).exp();
    if im.ctf_flip {
        -v.abs() * env
    } else {
        -v * env
    }
}

/// Density -> signal `S` (step 1), centred to zero mean.
pub(crate) fn transfer(density: &Array2<f32>, px_nm: f32, im: &Imaging) -> Array2<f32> {
    let (h, w) = density.dim();
    let src = density.as_standard_layout();
    let src = src.as_slice().expect("standard layout");
    let bin = im.bin_sigma;
    let wedge = im
        .wedge
        .map(|(ang, half, res)| (ang.cos(), ang.sin(), half.cos(), res));
    let tf = |fy: f32, fx: f32| -> f32 {
        let f = (fy * fy + fx * fx).sqrt();
        let mut t = ctf(f / px_nm, im);
        if bin > 0.0 {
            t *= (-2.0 * std::f32::consts::PI.powi(2) * bin * bin * f * f).exp();
        }
        if let Some((c, s, cos_half, res)) = wedge {
            if f > 0.0 && ((fx * c + fy * s) / f).abs() > cos_half {
                t *= res;
            }
        }
        t
    };
    let mut out = filter_real(src, h, w, tf);
    if im.streaks > 0.0 {
        if let Some((ang, _, _)) = im.wedge {
            add_streaks(&mut out, src, h, w, ang, im.streaks);
        }
    }
    let mut s = Array2::from_shape_vec((h, w), out).expect("h*w");
    let (m, _) = mean_var(s.iter().copied());
    s.mapv_inplace(|x| x - m);
    s
}

/// Back-projection streaks: the densest 0.5 % of the density (above its 99.5th percentile),
/// smeared over +-h/3 along direction `ang` with a decaying weight, added as dark-light rays.
fn add_streaks(out: &mut [f32], d: &[f32], h: usize, w: usize, ang: f32, k: f32) {
    let mut sorted: Vec<f32> = d.iter().step_by(7).copied().collect();
    let q = (sorted.len() * 995 / 1000).min(sorted.len() - 1);
    sorted.select_nth_unstable_by(q, |a, b| a.total_cmp(b));
    let thr = sorted[q];
    let (_, v_out) = mean_var(out.iter().copied());
    let (_, v_d) = mean_var(d.iter().copied());
    let gain = k * (v_out / v_d.max(1e-12)).sqrt();
    let (c, s) = (ang.cos(), ang.sin());
    let reach = (h.max(w) / 3) as isize;
    let mut acc = vec![0.0f32; h * w];
    for i in 0..h {
        for j in 0..w {
            let x = d[i * w + j] - thr;
            if x <= 0.0 {
                continue;
            }
            for t in (-reach..=reach).step_by(1) {
                if t == 0 {
                    continue;
                }
                let ii = i as f32 + t as f32 * s;
                let jj = j as f32 + t as f32 * c;
                if ii < 0.0 || jj < 0.0 || ii >= h as f32 || jj >= w as f32 {
                    continue;
                }
                let wgt = 1.0 / (1.0 + (t.unsigned_abs() as f32) * 0.05);
                acc[ii as usize * w + jj as usize] += x * wgt;
            }
        }
    }
    for (o, a) in out.iter_mut().zip(&acc) {
        *o -= gain * 0.02 * a;
    }
}

/// Noise of step 2 for a signal of variance `signal_var`.
pub(crate) fn noise(
    rng: &mut ChaCha8Rng,
    h: usize,
    w: usize,
    signal_var: f32,
    im: &Imaging,
) -> Array2<f32> {
    let mut n = white_noise(rng, h, w);
    standardize(&mut n);
    if im.noise_mix > 0.0 {
        let c = smooth_field_any(rng, h, w, im.noise_sigma);
        n = n * (1.0 - im.noise_mix).sqrt() + c * im.noise_mix.sqrt();
    }
    if im.bin_sigma > 0.0 {
        n = gaussian_blur(&n, im.bin_sigma);
    }
    standardize(&mut n);
    let s = (signal_var / im.snr).sqrt();
    n.mapv_inplace(|x| x * s);
    n
}

/// Steps 2-4: signal -> (noisy, clean) display images in `[0, 1]`. `specimen[k]` is false on
/// pixels of ice contamination and carbon: the SNR and the display range are measured on the
/// specimen only (a user sets the contrast on the cell; ice and carbon saturate). `shading`
/// (a lamella's thickness contrast, `synth/lamella.rs`, in units of std(S)) is added with the
/// gradients.
pub(crate) fn form(
    s: Array2<f32>,
    specimen: &[bool],
    im: &Imaging,
    shading: Option<&Array2<f32>>,
    rng: &mut ChaCha8Rng,
) -> (Array2<f32>, Array2<f32>) {
    let (h, w) = s.dim();
    let vs = robust_var(&s, specimen);
    let n = noise(rng, h, w, vs, im);
    // Gradients.
    let sd = vs.sqrt();
    let side = h.max(w) as f32;
    let bump = smooth_field_any(rng, h, w, side / 4.0);
    let mut grad = Array2::from_shape_fn((h, w), |(i, j)| {
        sd * (im.gradient[0] * (j as f32 + 0.5 - 0.5 * w as f32) / side
            + im.gradient[1] * (i as f32 + 0.5 - 0.5 * h as f32) / side)
    });
    grad.zip_mut_with(&bump, |g, b| *g += sd * im.bump * b);
    if let Some(sh) = shading {
        grad.zip_mut_with(sh, |g, x| *g += sd * x);
    }
    let clean = &s + &grad;
    let noisy = &clean + &n;
    let (noisy, clean) = (smooth(noisy, im.smooth), smooth(clean, im.smooth));
    // Clip at percentiles of the noisy image.
    let (lo, hi) = percentiles(&noisy, specimen, im.clip.0, im.clip.1);
    let span = (hi - lo).max(1e-12);
    let map = |v: f32| {
        let x = ((v - lo) / span).clamp(0.0, 1.0);
        let x = if im.gamma != 1.0 { x.powf(im.gamma) } else { x };
        if im.invert {
            1.0 - x
        } else {
            x
        }
    };
    (noisy.mapv(map), clean.mapv(map))
}

/// Variance of `x` winsorized at its 1st and 99th percentiles: the signal's contrast without
/// the few extreme pixels of ice or carbon (which would otherwise set the noise level).
pub(crate) fn robust_var(x: &Array2<f32>, mask: &[bool]) -> f32 {
    let (lo, hi) = percentiles(x, mask, 1.0, 99.0);
    let sel = x
        .iter()
        .zip(mask)
        .filter(|(_, &m)| m)
        .map(|(v, _)| v.clamp(lo, hi));
    let (_, v) = mean_var(sel);
    if v > 0.0 {
        v
    } else {
        mean_var(x.iter().copied()).1
    }
}

/// Values at the `lo` and `hi` percentiles (0..=100) of `x` over `mask` (every 3rd sample;
/// all pixels when the mask selects fewer than 1 %).
fn percentiles(x: &Array2<f32>, mask: &[bool], lo: f32, hi: f32) -> (f32, f32) {
    let mut v: Vec<f32> = x
        .iter()
        .zip(mask)
        .step_by(3)
        .filter(|(_, &m)| m)
        .map(|(v, _)| *v)
        .collect();
    if v.len() * 100 < x.len() / 3 {
        v = x.iter().step_by(3).copied().collect();
    }
    v.sort_unstable_by(|a, b| a.total_cmp(b));
    let at = |p: f32| v[(((p / 100.0) * (v.len() - 1) as f32).round() as usize).min(v.len() - 1)];
    (at(lo), at(hi))
}

/// The display smoothing of step 4.
fn smooth(x: Array2<f32>, s: Smooth) -> Array2<f32> {
    match s {
        Smooth::None => x,
        Smooth::Gaussian(sig) => gaussian_blur(&x, sig),
        Smooth::Median(r) => median(&x, r),
        Smooth::Bilateral(sig, range) => guided(&x, sig.round().max(1.0) as usize, range),
    }
}

/// Median over a `(2r+1)^2` window (borders clamped).
fn median(x: &Array2<f32>, r: usize) -> Array2<f32> {
    let (h, w) = x.dim();
    let r = r as isize;
    let mut buf = Vec::with_capacity(((2 * r + 1) * (2 * r + 1)) as usize);
    Array2::from_shape_fn((h, w), |(i, j)| {
        buf.clear();
        for di in -r..=r {
            let ii = (i as isize + di).clamp(0, h as isize - 1) as usize;
            for dj in -r..=r {
                let jj = (j as isize + dj).clamp(0, w as isize - 1) as usize;
                buf.push(x[[ii, jj]]);
            }
        }
        let m = buf.len() / 2;
        *buf.select_nth_unstable_by(m, |a, b| a.total_cmp(b)).1
    })
}

/// Mean over a `(2r+1)^2` box (borders clamped), by running sums: `O(h w)`.
fn box_mean(x: &Array2<f32>, r: usize) -> Array2<f32> {
    let (h, w) = x.dim();
    let pass = |src: &Array2<f32>, along_rows: bool| -> Array2<f32> {
        let (n_lines, len) = if along_rows { (h, w) } else { (w, h) };
        let mut out = Array2::<f32>::zeros((h, w));
        let mut line = vec![0.0f64; len + 1];
        for l in 0..n_lines {
            for k in 0..len {
                let v = if along_rows { src[[l, k]] } else { src[[k, l]] };
                line[k + 1] = line[k] + v as f64;
            }
            for k in 0..len {
                let a = k.saturating_sub(r);
                let b = (k + r + 1).min(len);
                let m = ((line[b] - line[a]) / (b - a) as f64) as f32;
                if along_rows {
                    out[[l, k]] = m;
                } else {
                    out[[k, l]] = m;
                }
            }
        }
        out
    };
    pass(&pass(x, true), false)
}

/// Guided filter of `x` by itself (radius `r`, `eps = (range std(x))^2`): an edge-preserving
/// smoothing in `O(h w)`, the bilateral-like look.
fn guided(x: &Array2<f32>, r: usize, range: f32) -> Array2<f32> {
    let (_, v) = mean_var(x.iter().copied());
    let eps = range * range * v;
    let m = box_mean(x, r);
    let m2 = box_mean(&x.mapv(|v| v * v), r);
    let var = &m2 - &m.mapv(|v| v * v);
    let a = var.mapv(|v| v.max(0.0) / (v.max(0.0) + eps));
    let b = &m - &(&a * &m);
    let (ma, mb) = (box_mean(&a, r), box_mean(&b, r));
    &(&ma * x) + &mb
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imaging(defocus_nm: f32, amp: f32, phase: f32) -> Imaging {
        Imaging {
            mode: super::super::appearance::Mode::Projection,
            defocus_nm,
            amp_contrast: amp,
            lowfreq: 0.0,
            phase_shift: phase,
            b_nm2: 0.0,
            ctf_flip: false,
            wedge: None,
            streaks: 0.0,
            snr: 1.0,
            noise_sigma: 1.0,
            noise_mix: 0.0,
            gradient: [0.0; 2],
            bump: 0.0,
            bin_sigma: 0.0,
            clip: (0.0, 100.0),
            gamma: 1.0,
            smooth: Smooth::None,
            invert: false,
        }
    }

    /// The CTF is the documented formula (checked in f64 at 300 kV, Cs 2.7 mm): pure phase
    /// contrast `-sin(chi)`, amplitude contrast `-A` at k = 0, a phase plate's `-1` at k = 0.
    #[test]
    fn ctf_is_the_weak_phase_formula() {
        let im = imaging(4000.0, 0.0, 0.0);
        for k in [0.01f64, 0.05, 0.1, 0.2, 0.3] {
            let (lam, cs, df) = (1.97e-3f64, 2.7e6f64, 4000.0f64);
            let chi = std::f64::consts::PI * lam * df * k * k
                - std::f64::consts::FRAC_PI_2 * cs * lam.powi(3) * k.powi(4);
            let want = -chi.sin();
            let got = ctf(k as f32, &im) as f64;
            assert!((got - want).abs() < 1e-4, "k {k}: {got} vs {want}");
        }
        assert!((ctf(0.0, &imaging(4000.0, 0.1, 0.0)) + 0.1).abs() < 1e-6);
        let pp = imaging(500.0, 0.0, std::f32::consts::FRAC_PI_2);
        assert!((ctf(0.0, &pp) + 1.0).abs() < 1e-6);
        // First zero of a 4 µm under-focus CTF near k = 1 / sqrt(lambda df) = 0.356 nm^-1.
        assert!(ctf(0.34, &im) < 0.0 && ctf(0.37, &im) > 0.0);
    }

    #[test]
    fn guided_filter_keeps_constants_and_smooths_noise() {
        let c = Array2::from_elem((20, 30), 0.7f32);
        assert!(guided(&c, 3, 0.5).iter().all(|v| (v - 0.7).abs() < 1e-5));
        let n = Array2::from_shape_fn((40, 40), |(i, j)| (((i * 31 + j * 17) % 13) as f32) / 13.0);
        let (_, v0) = mean_var(n.iter().copied());
        let (_, v1) = mean_var(guided(&n, 3, 1.0).iter().copied());
        assert!(v1 < 0.5 * v0, "{v1} vs {v0}");
    }
}
