//! FrozenBatchNorm2d (torchvision.ops.misc.FrozenBatchNorm2d): batch norm with fixed statistics
//! and fixed affine parameters, as in torchvision's detection backbones.
//!
//! ```text
//! scale[c] = weight[c] / sqrt(running_var[c] + eps)
//! shift[c] = bias[c] - running_mean[c] * scale[c]
//! y[c, n, h, w] = x[c, n, h, w] * scale[c] + shift[c]          x, y: [C, N, H, W]
//! ```
//! Backward: `dx = dy * scale[c]`; nothing in it is trained (torchvision registers all four
//! tensors as buffers). Because it is affine per output channel, it folds into the preceding
//! convolution: `w'[co,...] = w[co,...] * scale[co]`, `b'[co] = shift[co]` ([`FrozenBatchNorm2d::fold`]),
//! which is what the network runs.

use super::conv::Conv2d;
use ndarray::{Array1, Array4, Axis};

#[derive(Debug, Clone)]
pub struct FrozenBatchNorm2d {
    pub weight: Array1<f32>,
    pub bias: Array1<f32>,
    pub running_mean: Array1<f32>,
    pub running_var: Array1<f32>,
    pub eps: f32,
}

impl FrozenBatchNorm2d {
    /// Per-channel `(scale, shift)`, computed in f32 in torchvision's order.
    pub fn scale_shift(&self) -> (Array1<f32>, Array1<f32>) {
        let scale: Array1<f32> = self
            .weight
            .iter()
            .zip(&self.running_var)
            .map(|(w, v)| w * (1.0 / (v + self.eps).sqrt()))
            .collect();
        let shift = &self.bias - &(&self.running_mean * &scale);
        (scale, shift)
    }

    /// `y = x * scale + shift` per channel (the unfused reference).
    pub fn forward(&self, x: &Array4<f32>) -> Array4<f32> {
        let (scale, shift) = self.scale_shift();
        let mut y = x.clone();
        for (c, mut plane) in y.axis_iter_mut(Axis(0)).enumerate() {
            plane.mapv_inplace(|v| v * scale[c] + shift[c]);
        }
        y
    }

    /// `dx = dy * scale[c]`.
    pub fn backward(&self, dy: &Array4<f32>) -> Array4<f32> {
        let (scale, _) = self.scale_shift();
        let mut dx = dy.clone();
        for (c, mut plane) in dx.axis_iter_mut(Axis(0)).enumerate() {
            plane.mapv_inplace(|v| v * scale[c]);
        }
        dx
    }

    /// The convolution followed by this layer, as one convolution with a bias.
    pub fn fold(&self, conv: &Conv2d) -> Conv2d {
        let (scale, shift) = self.scale_shift();
        let mut w = conv.weight.clone();
        for (c, mut k) in w.axis_iter_mut(Axis(0)).enumerate() {
            k.mapv_inplace(|v| v * scale[c]);
        }
        let b = match &conv.bias {
            Some(b0) => &shift + &(b0 * &scale),
            None => shift,
        };
        Conv2d::new(w, Some(b), conv.stride, conv.padding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, FORWARD};

    #[test]
    fn folded_conv_equals_conv_then_bn() {
        let x = Array4::from_shape_fn((3, 2, 5, 7), |(c, n, h, w)| {
            ((c * 7 + n * 5 + h * 3 + w) as f32 * 0.37).sin()
        });
        let conv = Conv2d::new(
            Array4::from_shape_fn((4, 3, 3, 3), |(a, b, c, d)| {
                ((a + 2 * b + 3 * c + 5 * d) as f32 * 0.21).cos()
            }),
            None,
            2,
            1,
        );
        let bn = FrozenBatchNorm2d {
            weight: Array1::from(vec![0.5, 1.5, -0.7, 2.0]),
            bias: Array1::from(vec![0.1, -0.2, 0.3, 0.0]),
            running_mean: Array1::from(vec![0.3, -1.0, 0.2, 0.05]),
            running_var: Array1::from(vec![0.8, 1.3, 0.01, 4.0]),
            eps: 1e-5,
        };
        let want = bn.forward(&conv.forward(&x));
        let got = bn.fold(&conv).forward(&x);
        assert_close(
            "conv+bn folded",
            got.view().into_dyn(),
            want.view().into_dyn(),
            FORWARD,
        );
    }
}
