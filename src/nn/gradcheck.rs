//! Finite-difference gradient checks for the layer tests (test builds only).
//!
//! ```text
//! numeric[i] = (f(x + h e_i) - f(x - h e_i)) / (2h)      (f evaluated with an f64 sum)
//! ```
//! compared with the analytic gradient on up to `MAX_CHECKS` coordinates spread over `x`, with
//! the crate's GRADIENT tolerance (`max|a - n| <= tol * max|n|`).

use crate::testutil::{assert_close, GRADIENT};
use ndarray::{Array1, ArrayD, ArrayView};

/// Coordinates checked per tensor (evenly spaced, always including the first and last).
pub const MAX_CHECKS: usize = 40;

/// `<r, y>` in f64: the scalar loss whose gradient with respect to `y` is `r`.
pub fn dot64<D: ndarray::Dimension>(r: ArrayView<f32, D>, y: ArrayView<f32, D>) -> f64 {
    r.iter()
        .zip(y.iter())
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum()
}

/// Checks `analytic` (same length as `x`) against central differences of `f` at `x`.
#[track_caller]
pub fn check(name: &str, x: &[f32], analytic: &[f32], h: f32, f: impl Fn(&[f32]) -> f64) {
    assert_eq!(x.len(), analytic.len(), "{name}: gradient length");
    let n = x.len();
    let idx: Vec<usize> = if n <= MAX_CHECKS {
        (0..n).collect()
    } else {
        (0..MAX_CHECKS)
            .map(|k| k * (n - 1) / (MAX_CHECKS - 1))
            .collect()
    };
    let mut xp = x.to_vec();
    let mut numeric = Vec::with_capacity(idx.len());
    for &i in &idx {
        xp[i] = x[i] + h;
        let fp = f(&xp);
        xp[i] = x[i] - h;
        let fm = f(&xp);
        xp[i] = x[i];
        numeric.push(((fp - fm) / (2.0 * h as f64)) as f32);
    }
    let picked: Vec<f32> = idx.iter().map(|&i| analytic[i]).collect();
    let a: ArrayD<f32> = Array1::from(picked).into_dyn();
    let b: ArrayD<f32> = Array1::from(numeric).into_dyn();
    assert_close(name, a.view(), b.view(), GRADIENT);
}
