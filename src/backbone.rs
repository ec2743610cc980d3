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
//! Widths and block counts are read from the weight file's names and shapes
//! ([`crate::arch`]), so a reduced network (fewer channels or blocks) runs through the same code. Each conv + BN pair runs as
//! one convolution with the BN folded in ([`ConvBn`]).

use crate::nn::conv::ConvGrads;
use crate::nn::relu::relu_backward_inplace;
use crate::nn::{Conv2d, FrozenBatchNorm2d, Grads, MaxPool2d};
use ndarray::{Array1, Array4, Axis};

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

    /// Recomputes the folded convolution after `conv` or `bn` changed (training).
    /// In place (the weight array is reused), with [`FrozenBatchNorm2d::fold`]'s arithmetic, so
    /// the result is bit for bit a fresh [`ConvBn::new`]'s.
    pub fn refold(&mut self) {
        if self.fused.weight.dim() != self.conv.weight.dim() {
            self.fused = self.bn.fold(&self.conv);
            return;
        }
        let (scale, shift) = self.bn.scale_shift();
        for ((mut f, w), &s) in self
            .fused
            .weight
            .outer_iter_mut()
            .zip(self.conv.weight.outer_iter())
            .zip(&scale)
        {
            ndarray::Zip::from(&mut f)
                .and(&w)
                .for_each(|f, &w| *f = w * s);
        }
        self.fused.bias = Some(match &self.conv.bias {
            Some(b0) => &shift + &(b0 * &scale),
            None => shift,
        });
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

    /// Backward of `bn(conv(x))` given `g` = dL/d(bn output) (any ReLU already applied to `g`).
    /// The trained parameters are the unfolded `conv.weight` and, with `train_bn`, the batch
    /// norm's affine `weight` (gamma) and `bias` (beta); its statistics are never trained.
    /// `y = conv_fused(x)` with `w_fused[co] = w[co] * scale[co]`, `b_fused[co] = shift[co]
    /// (+ b0[co] * scale[co] for a conv with a bias b0)`, `scale = gamma / sqrt(var + eps)`,
    /// `shift = beta - mean * scale`, so
    /// ```text
    /// dW[co]     = dW_fused[co] * scale[co]                        dx: the fused convolution's
    /// dbeta[co]  = db_fused[co]
    /// dscale[co] = sum(dW_fused[co] * w[co]) + db_fused[co] * (b0[co] - mean[co])
    /// dgamma[co] = dscale[co] / sqrt(var[co] + eps)
    /// ```
    pub fn backward(
        &self,
        x: &Array4<f32>,
        g: &Array4<f32>,
        need_dx: bool,
        train_bn: bool,
    ) -> ConvBnGrads {
        let ConvGrads { dx, mut dw, db } = self.fused.backward(x, g, need_dx);
        let (scale, _) = self.bn.scale_shift();
        let dbn = train_bn.then(|| {
            let bn = &self.bn;
            let dgamma = Array1::from_shape_fn(scale.len(), |c| {
                let dw_w: f64 = dw
                    .index_axis(Axis(0), c)
                    .iter()
                    .zip(self.conv.weight.index_axis(Axis(0), c))
                    .map(|(&d, &w)| d as f64 * w as f64)
                    .sum();
                let b0 = self.conv.bias.as_ref().map_or(0.0, |b| b[c]);
                let dscale = dw_w + db[c] as f64 * (b0 - bn.running_mean[c]) as f64;
                (dscale / ((bn.running_var[c] + bn.eps) as f64).sqrt()) as f32
            });
            (dgamma, db)
        });
        for (c, mut k) in dw.axis_iter_mut(Axis(0)).enumerate() {
            k.mapv_inplace(|v| v * scale[c]);
        }
        ConvBnGrads { dx, dw, dbn }
    }
}

/// Gradients of a [`ConvBn`]: `dx` (when asked for), the unfolded conv weight's `dw`
/// `[Co, Ci, kh, kw]`, and with `train_bn` the batch norm's `(dgamma, dbeta)` `[Co]`.
pub struct ConvBnGrads {
    pub dx: Option<Array4<f32>>,
    pub dw: Array4<f32>,
    pub dbn: Option<(Array1<f32>, Array1<f32>)>,
}

impl ConvBnGrads {
    /// Puts the gradients into `grads` as `{conv}.weight` (and `{bn}.weight`, `{bn}.bias`);
    /// returns `dx`.
    pub fn insert(self, conv: &str, bn: &str, grads: &mut Grads) -> Option<Array4<f32>> {
        grads.insert(format!("{conv}.weight"), self.dw.into_dyn());
        if let Some((dgamma, dbeta)) = self.dbn {
            grads.insert(format!("{bn}.weight"), dgamma.into_dyn());
            grads.insert(format!("{bn}.bias"), dbeta.into_dyn());
        }
        self.dx
    }
}

#[derive(Debug, Clone)]
pub struct Bottleneck {
    pub conv1: ConvBn,
    pub conv2: ConvBn,
    pub conv3: ConvBn,
    pub downsample: Option<ConvBn>,
}

impl Bottleneck {
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
}

/// A ResNet stage (torchvision's `layerK`): its blocks, the first with the stage's stride.
#[derive(Debug, Clone)]
pub struct Stage {
    pub blocks: Vec<Bottleneck>,
}

impl Stage {
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

    /// Forward pass keeping what the backward needs: every block's input and output and the
    /// two inner (post-ReLU) activations of each block.
    pub fn forward_cached(&self, x: Array4<f32>) -> StageCache {
        let mut acts = vec![x];
        let mut mids = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            let x = acts.last().expect("non-empty");
            let out1 = b.conv1.forward(x, None, true);
            let out2 = b.conv2.forward(&out1, None, true);
            let y = match &b.downsample {
                Some(d) => {
                    let identity = d.forward(x, None, false);
                    b.conv3.forward(&out2, Some(&identity), true)
                }
                None => b.conv3.forward(&out2, Some(x), true),
            };
            mids.push((out1, out2));
            acts.push(y);
        }
        StageCache { acts, mids }
    }

    /// Backward through the stage given `dy` = dL/d(stage output). Weight gradients go into
    /// `grads` as `{prefix}.{i}.conv1.weight`, ... (with `train_bn` also `{prefix}.{i}.bn1.weight`,
    /// `.bn1.bias`, ..., `.downsample.1.*`); returns dL/d(stage input) if `need_dx`.
    ///
    /// Per block (`y = relu(bn3(conv3(o2)) + r)`, `o2 = relu(bn2(conv2(o1)))`, `o1 = relu(bn1(conv1(x)))`,
    /// `r = x` or `downsample(x)`): `g = dy * [y > 0]`; conv3 gets `g`; the residual branch gets
    /// `g`; `dx = conv1ᵀ(...) + (downsampleᵀ(g) or g)`.
    pub fn backward(
        &self,
        prefix: &str,
        cache: StageCache,
        dy: Array4<f32>,
        need_dx: bool,
        train_bn: bool,
        grads: &mut Grads,
    ) -> Option<Array4<f32>> {
        let StageCache { mut acts, mut mids } = cache;
        let mut dy = dy;
        let nb = self.blocks.len();
        for i in (0..nb).rev() {
            let b = &self.blocks[i];
            let p = format!("{prefix}.{i}");
            let y = acts.pop().expect("cached output");
            let (out1, out2) = mids.pop().expect("cached block");
            let x = acts.last().expect("cached input");
            let want_dx = need_dx || i > 0;
            let mut g = dy;
            relu_backward_inplace(&mut g, &y);
            drop(y);
            let mut d2 = b
                .conv3
                .backward(&out2, &g, true, train_bn)
                .insert(&format!("{p}.conv3"), &format!("{p}.bn3"), grads)
                .expect("asked for");
            relu_backward_inplace(&mut d2, &out2);
            drop(out2);
            let residual = match &b.downsample {
                Some(d) => d.backward(x, &g, want_dx, train_bn).insert(
                    &format!("{p}.downsample.0"),
                    &format!("{p}.downsample.1"),
                    grads,
                ),
                None => want_dx.then_some(g),
            };
            let mut d1 = b
                .conv2
                .backward(&out1, &d2, true, train_bn)
                .insert(&format!("{p}.conv2"), &format!("{p}.bn2"), grads)
                .expect("asked for");
            drop(d2);
            relu_backward_inplace(&mut d1, &out1);
            drop(out1);
            let dx = b.conv1.backward(x, &d1, want_dx, train_bn).insert(
                &format!("{p}.conv1"),
                &format!("{p}.bn1"),
                grads,
            );
            if !want_dx {
                return None;
            }
            let mut dx = dx.expect("asked for");
            dx += &residual.expect("asked for");
            dy = dx;
        }
        Some(dy)
    }
}

/// Activations of a [`Stage`] kept for its backward pass: `acts[0]` is the input, `acts[i + 1]`
/// block i's output; `mids[i]` = (relu(bn1(conv1)), relu(bn2(conv2))) of block i.
pub struct StageCache {
    pub acts: Vec<Array4<f32>>,
    pub mids: Vec<(Array4<f32>, Array4<f32>)>,
}

impl StageCache {
    pub fn output(&self) -> &Array4<f32> {
        self.acts.last().expect("non-empty")
    }
}

/// What [`Backbone::backward`] needs: the stem's input, ReLU output and max-pool argmax when
/// conv1 is trained, and the cache of each trained stage (None for frozen ones).
pub struct BackboneCache {
    stem: Option<(Array4<f32>, Array4<f32>, Array4<u32>)>,
    stages: Vec<Option<StageCache>>,
    trainable_layers: usize,
    train_bn: bool,
}

/// Whether torchvision's `trainable_layers` (counted from the top: layer4, layer3, layer2,
/// layer1, conv1) trains backbone stage `k` (1..=3, layer_k) — conv1 is `k = 0`, layer4 `k = 4`.
pub fn stage_trainable(trainable_layers: usize, k: usize) -> bool {
    trainable_layers + k >= 5
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
    pub fn out_channels(&self) -> usize {
        self.layers.last().expect("3 stages").out_channels()
    }

    pub fn stem(&self, x: &Array4<f32>) -> Array4<f32> {
        let y = self.conv1.forward(x, None, true);
        self.maxpool.forward_values(&y)
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

    /// Forward pass for training: returns layer3's output and the cache of the trained part
    /// (frozen stages below the first trained one run without keeping anything); `train_bn`:
    /// the backward also gives the trained stages' batch-norm affine gradients.
    pub fn forward_train(
        &self,
        x: &Array4<f32>,
        trainable_layers: usize,
        train_bn: bool,
    ) -> (Array4<f32>, BackboneCache) {
        let (mut y, stem) = if stage_trainable(trainable_layers, 0) {
            let s = self.conv1.forward(x, None, true);
            let (p, arg) = self.maxpool.forward(&s);
            (p, Some((x.clone(), s, arg)))
        } else {
            (self.stem(x), None)
        };
        let mut stages = Vec::new();
        for (k, st) in self.layers.iter().enumerate() {
            if stage_trainable(trainable_layers, k + 1) {
                let c = st.forward_cached(y);
                y = c.output().clone();
                stages.push(Some(c));
            } else {
                y = st.forward(&y);
                stages.push(None);
            }
        }
        (
            y,
            BackboneCache {
                stem,
                stages,
                trainable_layers,
                train_bn,
            },
        )
    }

    /// Backward from `dfeat` = dL/d(layer3 output) down to the first trained layer; weight
    /// gradients (trained layers only) go into `grads`.
    pub fn backward(&self, cache: BackboneCache, dfeat: Array4<f32>, grads: &mut Grads) {
        let BackboneCache {
            stem,
            mut stages,
            trainable_layers,
            train_bn,
        } = cache;
        let mut dy = dfeat;
        for k in (0..self.layers.len()).rev() {
            let Some(c) = stages[k].take() else {
                return;
            };
            let need_dx = stage_trainable(trainable_layers, k);
            match self.layers[k].backward(
                &format!("backbone.layer{}", k + 1),
                c,
                dy,
                need_dx,
                train_bn,
                grads,
            ) {
                Some(d) => dy = d,
                None => return,
            }
        }
        if let Some((x, s, arg)) = stem {
            let mut ds = self.maxpool.backward(&dy, &arg, (s.dim().2, s.dim().3));
            relu_backward_inplace(&mut ds, &s);
            self.conv1.backward(&x, &ds, false, train_bn).insert(
                "backbone.conv1",
                "backbone.bn1",
                grads,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{check, dot64};
    use rand::{Rng, SeedableRng};

    fn rand4(
        shape: (usize, usize, usize, usize),
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Array4<f32> {
        Array4::from_shape_fn(shape, |_| rng.gen_range(-1.0..1.0))
    }

    fn conv_bn(
        ci: usize,
        co: usize,
        k: usize,
        s: usize,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> ConvBn {
        let w = rand4((co, ci, k, k), rng) * (1.0 / ((ci * k * k) as f32).sqrt());
        let mut v = |lo: f32, hi: f32| Array1::from_shape_fn(co, |_| rng.gen_range(lo..hi));
        let bn = FrozenBatchNorm2d {
            weight: v(0.5, 1.5),
            bias: v(-0.2, 0.2),
            running_mean: v(-0.1, 0.1),
            running_var: v(0.5, 1.5),
            eps: 1e-5,
        };
        ConvBn::new(Conv2d::new(w, None, s, k / 2), bn)
    }

    /// A stage of two bottlenecks (the first with stride 2 and a downsample): the backward's
    /// dx, the unfolded conv-weight gradients and (train_bn) the batch norms' gamma and beta
    /// gradients == finite differences of `<r, stage(x)>`.
    #[test]
    fn stage_backward_matches_finite_differences() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let (ci, mid, co) = (3, 2, 5);
        let b0 = Bottleneck {
            conv1: conv_bn(ci, mid, 1, 1, &mut rng),
            conv2: conv_bn(mid, mid, 3, 2, &mut rng),
            conv3: conv_bn(mid, co, 1, 1, &mut rng),
            downsample: Some(conv_bn(ci, co, 1, 2, &mut rng)),
        };
        let b1 = Bottleneck {
            conv1: conv_bn(co, mid, 1, 1, &mut rng),
            conv2: conv_bn(mid, mid, 3, 1, &mut rng),
            conv3: conv_bn(mid, co, 1, 1, &mut rng),
            downsample: None,
        };
        let stage = Stage {
            blocks: vec![b0, b1],
        };
        let x = rand4((ci, 2, 7, 6), &mut rng); // N = 2, odd H, H != W
        let cache = stage.forward_cached(x.clone());
        assert_eq!(cache.output(), &stage.forward(&x));
        let r = rand4(cache.output().dim(), &mut rng);
        let mut grads = Grads::new();
        let dx = stage
            .backward("s", cache, r.clone(), true, true, &mut grads)
            .unwrap();
        let h = 1e-3;
        check(
            "stage dx",
            x.as_slice().unwrap(),
            dx.as_slice().unwrap(),
            h,
            |v| {
                let xv = Array4::from_shape_vec(x.dim(), v.to_vec()).unwrap();
                dot64(r.view(), stage.forward(&xv).view())
            },
        );
        type Pick = fn(&mut Stage) -> &mut ConvBn;
        let picks: [(&str, Pick); 5] = [
            ("s.0.conv1.weight", |s| &mut s.blocks[0].conv1),
            ("s.0.conv2.weight", |s| &mut s.blocks[0].conv2),
            ("s.0.conv3.weight", |s| &mut s.blocks[0].conv3),
            ("s.0.downsample.0.weight", |s| {
                s.blocks[0].downsample.as_mut().unwrap()
            }),
            ("s.1.conv2.weight", |s| &mut s.blocks[1].conv2),
        ];
        for (name, pick) in picks {
            let mut st = stage.clone();
            let w0 = pick(&mut st).conv.weight.clone();
            let g = grads[name].as_slice().unwrap().to_vec();
            check(name, w0.as_slice().unwrap(), &g, h, |v| {
                let mut s2 = stage.clone();
                let cb = pick(&mut s2);
                cb.conv.weight = Array4::from_shape_vec(w0.dim(), v.to_vec()).unwrap();
                cb.refold();
                dot64(r.view(), s2.forward(&x).view())
            });
        }
        type PickBn = fn(&mut Stage) -> &mut Array1<f32>;
        let bn_picks: [(&str, PickBn); 5] = [
            ("s.0.bn1.weight", |s| &mut s.blocks[0].conv1.bn.weight),
            ("s.0.bn2.bias", |s| &mut s.blocks[0].conv2.bn.bias),
            ("s.0.bn3.weight", |s| &mut s.blocks[0].conv3.bn.weight),
            ("s.0.downsample.1.weight", |s| {
                &mut s.blocks[0].downsample.as_mut().unwrap().bn.weight
            }),
            ("s.1.bn3.bias", |s| &mut s.blocks[1].conv3.bn.bias),
        ];
        for (name, pick) in bn_picks {
            let mut st = stage.clone();
            let p0 = pick(&mut st).clone();
            let g = grads[name].as_slice().unwrap().to_vec();
            check(name, p0.as_slice().unwrap(), &g, h, |v| {
                let mut s2 = stage.clone();
                *pick(&mut s2) = Array1::from(v.to_vec());
                for b in &mut s2.blocks {
                    b.conv1.refold();
                    b.conv2.refold();
                    b.conv3.refold();
                    if let Some(d) = &mut b.downsample {
                        d.refold();
                    }
                }
                dot64(r.view(), s2.forward(&x).view())
            });
        }
        // 7 conv weights, and gamma and beta of their 7 batch norms
        assert_eq!(grads.len(), 21);
        // without train_bn: the conv weights only
        let mut frozen = Grads::new();
        stage.backward(
            "s",
            stage.forward_cached(x.clone()),
            r,
            false,
            false,
            &mut frozen,
        );
        assert_eq!(frozen.len(), 7);
        assert!(frozen
            .keys()
            .all(|k| k.contains("conv") || k.contains("downsample.0")));
    }
}
