//! ResNet-50 v1.5 exactly as `torchvision.models.resnet50` (with FrozenBatchNorm2d), split as
//! the study's Fig. 2: conv1 .. layer3 ("conv1 to conv4_x", stride 16) is the shared backbone;
//! layer4 ("conv5_x") belongs to the RoI head (see [`crate::model`]).
//!
//! ```text
//! stem:        x -> conv1 7x7/2 (pad 3) -> bn1 -> relu -> maxpool 3x3/2 (pad 1)
//! bottleneck:  out = relu(bn1(conv1 1x1 (x)))
//!              out = relu(bn2(conv2 3x3/stride (out)))        <- v1.5: the stride sits here
//!              out = bn3(conv3 1x1 (out))
//!              y   = relu(out + (downsample(x) or x))          downsample = conv 1x1/stride + bn
//! stage:       blocks[0] (stride s, downsample), blocks[1..] (stride 1)
//! ```
//! Widths and block counts are read from the weight file (names and shapes), so a reduced
//! network (fewer channels or blocks) runs through the same code. Each conv + BN pair runs as
//! one convolution with the BN folded in ([`ConvBn`]).

use crate::error::{Error, Result};
use crate::io::weights::WeightFile;
use crate::nn::{Conv2d, FrozenBatchNorm2d, MaxPool2d};
use ndarray::{Array1, Array4, Ix1, Ix4};

/// A convolution followed by a frozen batch norm. `conv` and `bn` are the parameters as stored
/// (torchvision names); `fused` is the folded convolution the forward pass runs.
#[derive(Debug, Clone)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: FrozenBatchNorm2d,
    pub fused: Conv2d,
}

impl ConvBn {
    pub fn new(conv: Conv2d, bn: FrozenBatchNorm2d) -> Self {
        let fused = bn.fold(&conv);
        ConvBn { conv, bn, fused }
    }

    /// Loads `{conv}.weight` and `{bn}.{weight,bias,running_mean,running_var}`; padding = k / 2.
    pub fn load(
        wf: &mut WeightFile,
        conv: &str,
        bn: &str,
        stride: usize,
        eps: f32,
    ) -> Result<Self> {
        let name = format!("{conv}.weight");
        let w = take4(wf, &name)?;
        let (co, _, kh, kw) = w.dim();
        // Padding k / 2 keeps the size `floor((H - 1) / s) + 1` only for square odd kernels;
        // any other kernel would give the main path and the residual different sizes.
        if kh != kw || kh % 2 == 0 {
            return Err(Error::weights(
                &wf.path,
                format!(
                    "tensor `{name}` has shape {:?}: the kernel must be square with an odd size",
                    w.shape()
                ),
            ));
        }
        let pad = kh / 2;
        let mut vec = |suffix: &str| -> Result<Array1<f32>> {
            let t = wf.take_shaped(&format!("{bn}.{suffix}"), &[co])?;
            Ok(t.into_dimensionality::<Ix1>().expect("checked"))
        };
        let bn = FrozenBatchNorm2d {
            weight: vec("weight")?,
            bias: vec("bias")?,
            running_mean: vec("running_mean")?,
            running_var: vec("running_var")?,
            eps,
        };
        let cb = ConvBn::new(Conv2d::new(w, None, stride, pad), bn);
        // scale = weight / sqrt(running_var + eps): a negative variance gives NaN weights.
        let finite = |c: &Conv2d| {
            c.weight.iter().all(|v| v.is_finite()) && c.bias.iter().flatten().all(|v| v.is_finite())
        };
        if !finite(&cb.fused) {
            return Err(Error::weights(
                &wf.path,
                format!(
                    "the batch norm after `{conv}` folds into non-finite weights (running_var + eps <= 0?)"
                ),
            ));
        }
        Ok(cb)
    }

    /// Recomputes the folded convolution after `conv` or `bn` changed (training).
    pub fn refold(&mut self) {
        self.fused = self.bn.fold(&self.conv);
    }

    /// `act(bn(conv(x)) + residual)`.
    pub fn forward(
        &self,
        x: &Array4<f32>,
        residual: Option<&Array4<f32>>,
        relu: bool,
    ) -> Array4<f32> {
        self.fused.forward_fused(x, residual, relu)
    }

    /// Appends `(name, tensor)` pairs in torchvision's naming for saving.
    pub fn export(&self, conv: &str, bn: &str, out: &mut Vec<(String, ndarray::ArrayD<f32>)>) {
        out.push((
            format!("{conv}.weight"),
            self.conv.weight.clone().into_dyn(),
        ));
        out.push((format!("{bn}.weight"), self.bn.weight.clone().into_dyn()));
        out.push((format!("{bn}.bias"), self.bn.bias.clone().into_dyn()));
        out.push((
            format!("{bn}.running_mean"),
            self.bn.running_mean.clone().into_dyn(),
        ));
        out.push((
            format!("{bn}.running_var"),
            self.bn.running_var.clone().into_dyn(),
        ));
    }
}

/// Takes a 4-D tensor with no zero dimension (a layer without channels or kernel is no layer).
pub fn take4(wf: &mut WeightFile, name: &str) -> Result<Array4<f32>> {
    let t = wf.take(name, 4)?;
    if t.shape().contains(&0) {
        return Err(Error::weights(
            &wf.path,
            format!(
                "tensor `{name}` has shape {:?} with a zero dimension",
                t.shape()
            ),
        ));
    }
    Ok(t.into_dimensionality::<Ix4>().expect("checked"))
}

#[derive(Debug, Clone)]
pub struct Bottleneck {
    pub conv1: ConvBn,
    pub conv2: ConvBn,
    pub conv3: ConvBn,
    pub downsample: Option<ConvBn>,
}

impl Bottleneck {
    pub fn load(wf: &mut WeightFile, p: &str, stride: usize, eps: f32) -> Result<Self> {
        let conv1 = ConvBn::load(wf, &format!("{p}.conv1"), &format!("{p}.bn1"), 1, eps)?;
        let conv2 = ConvBn::load(wf, &format!("{p}.conv2"), &format!("{p}.bn2"), stride, eps)?;
        let conv3 = ConvBn::load(wf, &format!("{p}.conv3"), &format!("{p}.bn3"), 1, eps)?;
        let downsample = if wf.contains(&format!("{p}.downsample.0.weight")) {
            Some(ConvBn::load(
                wf,
                &format!("{p}.downsample.0"),
                &format!("{p}.downsample.1"),
                stride,
                eps,
            )?)
        } else {
            None
        };
        let b = Bottleneck {
            conv1,
            conv2,
            conv3,
            downsample,
        };
        b.check(wf, p)?;
        Ok(b)
    }

    /// The channel counts must chain: in -> conv1 -> conv2 -> conv3 (= out), and without a
    /// downsample, in == out and stride 1.
    fn check(&self, wf: &WeightFile, p: &str) -> Result<()> {
        let (c1, c2, c3) = (&self.conv1.conv, &self.conv2.conv, &self.conv3.conv);
        let bad = |what: String| Err(Error::weights(&wf.path, format!("block `{p}`: {what}")));
        if c2.in_channels() != c1.out_channels() {
            return bad(format!(
                "conv2.weight takes {} channels but conv1.weight gives {}",
                c2.in_channels(),
                c1.out_channels()
            ));
        }
        if c3.in_channels() != c2.out_channels() {
            return bad(format!(
                "conv3.weight takes {} channels but conv2.weight gives {}",
                c3.in_channels(),
                c2.out_channels()
            ));
        }
        match &self.downsample {
            Some(d)
                if d.conv.out_channels() != c3.out_channels()
                    || d.conv.in_channels() != c1.in_channels() =>
            {
                bad(format!(
                    "downsample.0.weight maps {} -> {} channels, expected {} -> {}",
                    d.conv.in_channels(),
                    d.conv.out_channels(),
                    c1.in_channels(),
                    c3.out_channels()
                ))
            }
            None if c1.in_channels() != c3.out_channels() || c2.stride != 1 => bad(format!(
                "no downsample but {} -> {} channels (stride {})",
                c1.in_channels(),
                c3.out_channels(),
                c2.stride
            )),
            _ => Ok(()),
        }
    }

    pub fn in_channels(&self) -> usize {
        self.conv1.conv.in_channels()
    }
    pub fn out_channels(&self) -> usize {
        self.conv3.conv.out_channels()
    }

    pub fn forward(&self, x: &Array4<f32>) -> Array4<f32> {
        let out = self.conv1.forward(x, None, true);
        let out = self.conv2.forward(&out, None, true);
        match &self.downsample {
            Some(d) => {
                let identity = d.forward(x, None, false);
                self.conv3.forward(&out, Some(&identity), true)
            }
            None => self.conv3.forward(&out, Some(x), true),
        }
    }

    pub fn export(&self, p: &str, out: &mut Vec<(String, ndarray::ArrayD<f32>)>) {
        self.conv1
            .export(&format!("{p}.conv1"), &format!("{p}.bn1"), out);
        self.conv2
            .export(&format!("{p}.conv2"), &format!("{p}.bn2"), out);
        self.conv3
            .export(&format!("{p}.conv3"), &format!("{p}.bn3"), out);
        if let Some(d) = &self.downsample {
            d.export(
                &format!("{p}.downsample.0"),
                &format!("{p}.downsample.1"),
                out,
            );
        }
    }
}

/// A ResNet stage (torchvision's `layerK`): its blocks, the first with the stage's stride.
#[derive(Debug, Clone)]
pub struct Stage {
    pub blocks: Vec<Bottleneck>,
}

impl Stage {
    /// Loads `{prefix}.0`, `{prefix}.1`, ... for as many blocks as the file holds.
    pub fn load(wf: &mut WeightFile, prefix: &str, stride: usize, eps: f32) -> Result<Self> {
        let mut blocks = Vec::new();
        while wf.contains(&format!("{prefix}.{}.conv1.weight", blocks.len())) {
            let i = blocks.len();
            blocks.push(Bottleneck::load(
                wf,
                &format!("{prefix}.{i}"),
                if i == 0 { stride } else { 1 },
                eps,
            )?);
        }
        if blocks.is_empty() {
            return Err(Error::weights(
                &wf.path,
                format!(
                    "missing tensor `{prefix}.0.conv1.weight` (stage `{prefix}` has no blocks)"
                ),
            ));
        }
        for w in blocks.windows(2) {
            if w[1].in_channels() != w[0].out_channels() {
                return Err(Error::weights(
                    &wf.path,
                    format!(
                        "stage `{prefix}`: a block gives {} channels, the next takes {}",
                        w[0].out_channels(),
                        w[1].in_channels()
                    ),
                ));
            }
        }
        Ok(Stage { blocks })
    }

    pub fn in_channels(&self) -> usize {
        self.blocks[0].in_channels()
    }
    pub fn out_channels(&self) -> usize {
        self.blocks.last().expect("non-empty").out_channels()
    }

    pub fn forward(&self, x: &Array4<f32>) -> Array4<f32> {
        let mut y = self.blocks[0].forward(x);
        for b in &self.blocks[1..] {
            y = b.forward(&y);
        }
        y
    }

    pub fn export(&self, prefix: &str, out: &mut Vec<(String, ndarray::ArrayD<f32>)>) {
        for (i, b) in self.blocks.iter().enumerate() {
            b.export(&format!("{prefix}.{i}"), out);
        }
    }
}

/// conv1 .. layer3: `[3, 1, H, W]` -> `[C3, 1, ~H/16, ~W/16]`.
#[derive(Debug, Clone)]
pub struct Backbone {
    pub conv1: ConvBn,
    pub maxpool: MaxPool2d,
    pub layers: Vec<Stage>,
}

/// Every stage's output, for `trace`.
pub struct BackboneOutputs {
    pub stem: Array4<f32>,
    pub layers: Vec<Array4<f32>>,
}

impl Backbone {
    pub fn load(wf: &mut WeightFile, eps: f32) -> Result<Self> {
        let conv1 = ConvBn::load(wf, "backbone.conv1", "backbone.bn1", 2, eps)?;
        if conv1.conv.in_channels() != 3 {
            return Err(Error::weights(
                &wf.path,
                format!(
                    "tensor `backbone.conv1.weight` takes {} input channels, expected 3",
                    conv1.conv.in_channels()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (k, stride) in [(1, 1), (2, 2), (3, 2)] {
            let stage = Stage::load(wf, &format!("backbone.layer{k}"), stride, eps)?;
            let prev = layers
                .last()
                .map_or(conv1.conv.out_channels(), |s: &Stage| s.out_channels());
            if stage.in_channels() != prev {
                return Err(Error::weights(&wf.path, format!("`backbone.layer{k}.0.conv1.weight` takes {} channels, the previous layer gives {prev}", stage.in_channels())));
            }
            layers.push(stage);
        }
        Ok(Backbone {
            conv1,
            maxpool: MaxPool2d::resnet(),
            layers,
        })
    }

    pub fn out_channels(&self) -> usize {
        self.layers.last().expect("3 stages").out_channels()
    }

    pub fn stem(&self, x: &Array4<f32>) -> Array4<f32> {
        let y = self.conv1.forward(x, None, true);
        self.maxpool.forward(&y).0
    }

    /// The shared feature map (layer3's output).
    pub fn forward(&self, x: &Array4<f32>) -> Array4<f32> {
        let mut y = self.stem(x);
        for s in &self.layers {
            y = s.forward(&y);
        }
        y
    }

    /// Like [`Backbone::forward`] but keeps every stage's output.
    pub fn forward_all(&self, x: &Array4<f32>) -> BackboneOutputs {
        let stem = self.stem(x);
        let mut layers: Vec<Array4<f32>> = Vec::new();
        for s in &self.layers {
            let y = s.forward(layers.last().unwrap_or(&stem));
            layers.push(y);
        }
        BackboneOutputs { stem, layers }
    }

    pub fn export(&self, out: &mut Vec<(String, ndarray::ArrayD<f32>)>) {
        self.conv1.export("backbone.conv1", "backbone.bn1", out);
        for (k, s) in self.layers.iter().enumerate() {
            s.export(&format!("backbone.layer{}", k + 1), out);
        }
    }
}
