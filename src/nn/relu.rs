//! ReLU: `y = max(x, 0)`; backward `dx = dy * [y > 0]` (torch's convention: zero gradient at 0).

use ndarray::{Array4, Zip};

/// In place: `x = max(x, 0)`.
pub fn relu_inplace(x: &mut Array4<f32>) {
    x.par_mapv_inplace(|v| v.max(0.0));
}

/// `dx = dy * [y > 0]`, with `y` the forward output.
pub fn relu_backward(dy: &Array4<f32>, y: &Array4<f32>) -> Array4<f32> {
    let mut dx = dy.clone();
    Zip::from(&mut dx).and(y).par_for_each(|d, &yv| {
        if yv <= 0.0 {
            *d = 0.0
        }
    });
    dx
}

/// In place: `dy = dy * [y > 0]` (the ReLU backward without a copy).
pub fn relu_backward_inplace(dy: &mut Array4<f32>, y: &Array4<f32>) {
    assert_eq!(dy.dim(), y.dim(), "relu backward: shapes differ");
    Zip::from(dy).and(y).par_for_each(|d, &yv| {
        if yv <= 0.0 {
            *d = 0.0
        }
    });
}
