//! The one place where the weights of a [`FasterRcnn`] get their names: a visitor over every
//! stored tensor, in torchvision's naming and in the order of a saved file.
//!
//! ```text
//! backbone.conv1.weight, backbone.bn1.{weight,bias,running_mean,running_var}
//! backbone.layer{1,2,3}.{i}.conv{1,2,3}.weight, .bn{1,2,3}.*, .downsample.0.weight, .downsample.1.*
//! rpn.{conv,cls_logits,bbox_pred}.{weight,bias}
//! head.layer4.{i}.*                                (as a backbone stage)
//! head.{cls_score,bbox_pred}.{weight,bias}
//! ```
//! [`FasterRcnn::visit_params`] lends each tensor read-only (export, saving);
//! [`FasterRcnn::visit_params_mut`] lends it writable (the optimizer step, gradient checks).
//! Both are generated from one body by the `visitor!` macro below, which differs only in `&` /
//! `&mut` and `view` / `view_mut` (the pattern of syn's `visit` / `visit_mut`), so the naming
//! scheme is written once. Loading goes through it too: [`crate::arch`] infers the architecture
//! from the few names and shapes it needs and builds the network with zero tensors, then
//! [`FasterRcnn::fill`] takes each visited name's tensor out of the file (checking its shape)
//! and whatever the file has left is an error.
//!
//! Each tensor comes with its [`Kind`]: the trainable parameters (conv and linear weights and
//! biases, batch-norm gamma and beta) and the batch-norm statistics, which are never trained. A conv weight of the
//! backbone or layer4 is the unfolded `conv.weight`; the folded convolution the forward pass
//! runs must be recomputed with [`FasterRcnn::refold`] after writing to it.

use crate::error::Result;
use crate::io::weights::WeightFile;
use crate::model::FasterRcnn;
use ndarray::{ArrayViewD, ArrayViewMutD};

/// What a tensor is to the optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A trainable parameter: a conv or linear weight or bias, or a batch norm's affine
    /// `weight` / `bias` (trained only with `cryodet train --bn affine`).
    Param,
    /// A batch-norm statistic (`running_mean`, `running_var`): never trained.
    Buffer,
}

/// One body for both visitors: `$View` is `ArrayViewD` or `ArrayViewMutD`, `$view` the method
/// that makes it, `$m` is `mut` or nothing.
macro_rules! visitor {
    ($View:ident, $view:ident $(, $m:tt)?) => {
        use super::Kind;
        use crate::backbone::{Backbone, Bottleneck, ConvBn, Stage};
        use crate::detection::{roi_head::RoiHead, rpn_head::RpnHead};
        use crate::model::FasterRcnn;
        use crate::nn::{Conv2d, FrozenBatchNorm2d, Linear};
        use ndarray::$View;

        type Visitor<'v, 'a> = dyn FnMut(&str, Kind, $View<'a, f32>) + 'v;

        fn conv_bn<'a>(cb: &'a $($m)? ConvBn, conv: &str, bn: &str, f: &mut Visitor<'_, 'a>) {
            let ConvBn { conv: c, bn: b, .. } = cb;
            f(&format!("{conv}.weight"), Kind::Param, c.weight.$view().into_dyn());
            let FrozenBatchNorm2d {
                weight,
                bias,
                running_mean,
                running_var,
                ..
            } = b;
            f(&format!("{bn}.weight"), Kind::Param, weight.$view().into_dyn());
            f(&format!("{bn}.bias"), Kind::Param, bias.$view().into_dyn());
            f(&format!("{bn}.running_mean"), Kind::Buffer, running_mean.$view().into_dyn());
            f(&format!("{bn}.running_var"), Kind::Buffer, running_var.$view().into_dyn());
        }

        fn stage<'a>(st: &'a $($m)? Stage, prefix: &str, f: &mut Visitor<'_, 'a>) {
            let Stage { blocks } = st;
            for (i, b) in blocks.into_iter().enumerate() {
                let p = format!("{prefix}.{i}");
                let Bottleneck {
                    conv1,
                    conv2,
                    conv3,
                    downsample,
                } = b;
                conv_bn(conv1, &format!("{p}.conv1"), &format!("{p}.bn1"), f);
                conv_bn(conv2, &format!("{p}.conv2"), &format!("{p}.bn2"), f);
                conv_bn(conv3, &format!("{p}.conv3"), &format!("{p}.bn3"), f);
                if let Some(d) = downsample {
                    conv_bn(d, &format!("{p}.downsample.0"), &format!("{p}.downsample.1"), f);
                }
            }
        }

        fn conv<'a>(c: &'a $($m)? Conv2d, name: &str, f: &mut Visitor<'_, 'a>) {
            let Conv2d { weight, bias, .. } = c;
            f(&format!("{name}.weight"), Kind::Param, weight.$view().into_dyn());
            if let Some(b) = bias {
                f(&format!("{name}.bias"), Kind::Param, b.$view().into_dyn());
            }
        }

        fn linear<'a>(l: &'a $($m)? Linear, name: &str, f: &mut Visitor<'_, 'a>) {
            let Linear { weight, bias, .. } = l;
            f(&format!("{name}.weight"), Kind::Param, weight.$view().into_dyn());
            f(&format!("{name}.bias"), Kind::Param, bias.$view().into_dyn());
        }

        pub(super) fn model<'a>(m: &'a $($m)? FasterRcnn, f: &mut Visitor<'_, 'a>) {
            let FasterRcnn {
                backbone, rpn, head, ..
            } = m;
            let Backbone { conv1, layers, .. } = backbone;
            conv_bn(conv1, "backbone.conv1", "backbone.bn1", f);
            for (k, st) in layers.into_iter().enumerate() {
                stage(st, &format!("backbone.layer{}", k + 1), f);
            }
            let RpnHead {
                conv: rpn_conv,
                cls_logits,
                bbox_pred,
            } = rpn;
            for (c, name) in [
                (rpn_conv, "rpn.conv"),
                (cls_logits, "rpn.cls_logits"),
                (bbox_pred, "rpn.bbox_pred"),
            ] {
                conv(c, name, f);
            }
            let RoiHead {
                layer4,
                cls_score,
                bbox_pred,
            } = head;
            stage(layer4, "head.layer4", f);
            for (l, name) in [(cls_score, "head.cls_score"), (bbox_pred, "head.bbox_pred")] {
                linear(l, name, f);
            }
        }
    };
}

mod shared {
    visitor!(ArrayViewD, view);
}

mod exclusive {
    visitor!(ArrayViewMutD, view_mut, mut);
}

impl FasterRcnn {
    /// Calls `f(name, kind, tensor)` for every stored tensor (module doc), read-only.
    pub fn visit_params<'a>(&'a self, mut f: impl FnMut(&str, Kind, ArrayViewD<'a, f32>)) {
        shared::model(self, &mut f);
    }

    /// Calls `f(name, kind, tensor)` for every stored tensor (module doc), writable. After
    /// writing to a backbone or layer4 conv weight, call [`FasterRcnn::refold`].
    pub fn visit_params_mut<'a>(
        &'a mut self,
        mut f: impl FnMut(&str, Kind, ArrayViewMutD<'a, f32>),
    ) {
        exclusive::model(self, &mut f);
    }

    /// Copies into every visited tensor the file's tensor of that name, taking it out of `wf`;
    /// it must have the visited tensor's shape (the errors name the file, the tensor and both
    /// shapes, [`WeightFile::take_shaped`]). Call [`FasterRcnn::refold`] after.
    pub fn fill(&mut self, wf: &mut WeightFile) -> Result<()> {
        let mut res = Ok(());
        self.visit_params_mut(|name, _, mut t| {
            if res.is_ok() {
                res = wf.take_shaped(name, t.shape()).map(|v| t.assign(&v));
            }
        });
        res
    }

    /// The visitor's name of the tensor whose data starts at `ptr` (to name a layer in an error).
    pub fn param_name(&self, ptr: *const f32) -> Option<String> {
        let mut found = None;
        self.visit_params(|n, _, t| {
            if t.as_ptr() == ptr {
                found = Some(n.to_string());
            }
        });
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::init::{build, he_init, Arch};

    /// The visitor sees every tensor of the weight file once, under the file's name and shape,
    /// and the mutable visitor sees the same names in the same order.
    #[test]
    fn visitor_names_every_tensor_once() {
        let classes = vec!["__background__".to_string(), "a".to_string()];
        let (t, meta) =
            he_init(&Arch::reduced(32, Some([1, 2, 1, 2])).unwrap(), &classes, 1).unwrap();
        let mut model = build(t.clone(), meta).unwrap();
        let mut seen = Vec::new();
        model.visit_params(|n, k, a| seen.push((n.to_string(), k, a.to_owned())));
        // he_init lists the tensors in another order (layer4 before the RPN).
        let want: std::collections::BTreeMap<&str, &ndarray::ArrayD<f32>> =
            t.iter().map(|(n, a)| (n.as_str(), a)).collect();
        assert_eq!((seen.len(), want.len()), (t.len(), t.len()));
        for (n, k, a) in &seen {
            assert_eq!(Some(&a), want.get(n.as_str()), "{n}");
            let bn = n.contains(".bn") || n.contains("downsample.1");
            let stat = n.ends_with("running_mean") || n.ends_with("running_var");
            assert_eq!(*k == Kind::Buffer, bn && stat, "{n}");
        }
        let mut names = Vec::new();
        model.visit_params_mut(|n, _, _| names.push(n.to_string()));
        assert!(names.iter().eq(seen.iter().map(|s| &s.0)));
    }
}
