//! The RPN head, the study's "three convolutional layers" (torchvision's `rpn.py`,
//! `RPNHead` and `concat_box_prediction_layers`):
//!
//! ```text
//! t          = relu(conv3x3(feat))     [R, 1, h, w]
//! objectness = conv1x1(t)              [A, 1, h, w]    (A anchors per cell)
//! deltas     = conv1x1(t)              [4A, 1, h, w]   (per anchor: dx, dy, dw, dh)
//! ```
//! then both flattened to rows in torchvision's (h, w, A) order. The proposals the outputs give
//! are [`crate::detection::proposals`]'s.

use crate::nn::relu::relu_backward_inplace;
use crate::nn::{Conv2d, Grads};
use ndarray::{Array2, Array4, ArrayView2};

/// The RPN head's three convolutions.
#[derive(Debug, Clone)]
pub struct RpnHead {
    /// 3x3, C3 -> R, followed by ReLU.
    pub conv: Conv2d,
    /// 1x1, R -> A objectness logits.
    pub cls_logits: Conv2d,
    /// 1x1, R -> 4A box deltas (per anchor: dx, dy, dw, dh).
    pub bbox_pred: Conv2d,
}

/// RPN outputs for one image, flattened in torchvision's (H, W, A) order.
pub struct RpnOutput {
    /// `[A, 1, h, w]` as the conv produced it (for trace).
    pub cls_logits: Array4<f32>,
    /// `[4A, 1, h, w]`
    pub bbox_pred: Array4<f32>,
    /// logits, `[h*w*A]`
    pub objectness: Vec<f32>,
    /// `[h*w*A, 4]`
    pub deltas: Array2<f32>,
}

/// What [`RpnHead::backward`] needs from the forward pass.
pub struct RpnCache {
    /// `t = relu(conv(feat))`, `[R, 1, h, w]`.
    t: Array4<f32>,
}

impl RpnHead {
    pub fn forward(&self, feat: &Array4<f32>) -> RpnOutput {
        self.forward_cached(feat).0
    }

    /// [`RpnHead::forward`] that also keeps what the backward pass needs.
    pub fn forward_cached(&self, feat: &Array4<f32>) -> (RpnOutput, RpnCache) {
        let t = self.conv.forward_fused(feat, None, true);
        let cls_logits = self.cls_logits.forward(&t);
        let bbox_pred = self.bbox_pred.forward(&t);
        let (objectness, deltas) = flatten_rpn(&cls_logits, &bbox_pred);
        let out = RpnOutput {
            cls_logits,
            bbox_pred,
            objectness,
            deltas,
        };
        (out, RpnCache { t })
    }

    /// Backward from the gradients of the flattened outputs (`d_objectness` `[h*w*A]`,
    /// `d_deltas` `[h*w*A, 4]`, (H, W, A) order): weight gradients into `grads` as `rpn.*`,
    /// returns dL/dfeat if `need_dx`.
    pub fn backward(
        &self,
        feat: &Array4<f32>,
        cache: RpnCache,
        d_objectness: &[f32],
        d_deltas: ArrayView2<f32>,
        need_dx: bool,
        grads: &mut Grads,
    ) -> Option<Array4<f32>> {
        let RpnCache { t } = cache;
        let (_, _, h, w) = t.dim();
        let a = self.cls_logits.out_channels();
        let d_cls = Array4::from_shape_fn((a, 1, h, w), |(k, _, y, x)| {
            d_objectness[(y * w + x) * a + k]
        });
        let d_bbox = Array4::from_shape_fn((4 * a, 1, h, w), |(c, _, y, x)| {
            d_deltas[[(y * w + x) * a + c / 4, c % 4]]
        });
        let mut dt = Array4::zeros(t.dim());
        for (name, conv, dy) in [
            ("rpn.cls_logits", &self.cls_logits, &d_cls),
            ("rpn.bbox_pred", &self.bbox_pred, &d_bbox),
        ] {
            let g = conv.backward(&t, dy, true);
            dt += &g.dx.expect("asked for");
            grads.insert(format!("{name}.weight"), g.dw.into_dyn());
            grads.insert(format!("{name}.bias"), g.db.into_dyn());
        }
        relu_backward_inplace(&mut dt, &t);
        drop(t);
        let g = self.conv.backward(feat, &dt, need_dx);
        grads.insert("rpn.conv.weight".to_string(), g.dw.into_dyn());
        grads.insert("rpn.conv.bias".to_string(), g.db.into_dyn());
        g.dx
    }
}

/// `[A, 1, h, w]` logits and `[4A, 1, h, w]` deltas to `(h, w, a)`-ordered rows, as
/// torchvision's `concat_box_prediction_layers` (deltas viewed as `[A, 4, h, w]`).
pub fn flatten_rpn(cls: &Array4<f32>, bbox: &Array4<f32>) -> (Vec<f32>, Array2<f32>) {
    let (a, _, h, w) = cls.dim();
    let mut obj = Vec::with_capacity(h * w * a);
    let mut deltas = Array2::zeros((h * w * a, 4));
    for y in 0..h {
        for x in 0..w {
            for k in 0..a {
                let row = (y * w + x) * a + k;
                obj.push(cls[[k, 0, y, x]]);
                for j in 0..4 {
                    deltas[[row, j]] = bbox[[k * 4 + j, 0, y, x]];
                }
            }
        }
    }
    (obj, deltas)
}
