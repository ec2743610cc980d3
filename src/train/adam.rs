//! Adam, exactly as `torch.optim.Adam` (single-tensor path, `amsgrad=False`, `maximize=False`),
//! with its state kept by weight name. [`Adam::step_model`] updates a model's weights in place
//! (the training loop); [`Adam::step`] a list of named tensors.
//!
//! For one parameter `p` with gradient `g` at its `t`-th update (t counted per parameter, as torch
//! does: a parameter without a gradient in a step is skipped and its `t` does not advance):
//!
//! ```text
//! g  = g + wd * p                                   (L2 weight decay, not AdamW's)
//! m  = m + (1 - b1) * (g - m)                       (torch: exp_avg.lerp_(g, 1 - b1) = b1 m + (1 - b1) g)
//! v  = b2 * v + (1 - b2) * g * g
//! p  = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//! ```
//! The bias corrections are computed in f64 (Python floats in torch) and applied in f32.
//! Defaults: b1 = 0.9, b2 = 0.999, eps = 1e-8 (torch's), lr = 1e-5 (the study's).
//!
//! The state saves to a safetensors file: tensors `adam.m.<name>`, `adam.v.<name>`, metadata
//! `step` (number of [`Adam::step`] calls), `step.<name>` (per-parameter t) and the
//! hyper-parameters, so a resumed run continues bit for bit.

use crate::error::{Error, Result};
use crate::io::weights::{save, Precision, WeightFile};
use crate::model::FasterRcnn;
use crate::nn::Grads;
use crate::params::Kind;
use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, Zip};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// Hyper-parameters (torch names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamConfig {
    /// torch's betas and eps with the study's learning rate 1e-5.
    fn default() -> Self {
        AdamConfig {
            lr: 1e-5,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Moments of one parameter.
#[derive(Debug, Clone)]
pub struct Moments {
    /// First moment (torch's `exp_avg`).
    pub m: ArrayD<f32>,
    /// Second moment (torch's `exp_avg_sq`).
    pub v: ArrayD<f32>,
    /// Updates applied to this parameter so far (torch's per-parameter `step`).
    pub t: u64,
}

/// The optimizer: hyper-parameters and the per-name state.
#[derive(Debug, Clone)]
pub struct Adam {
    pub config: AdamConfig,
    /// Number of `step` calls.
    pub step: u64,
    pub state: BTreeMap<String, Moments>,
}

impl Adam {
    pub fn new(config: AdamConfig) -> Self {
        Adam {
            config,
            step: 0,
            state: BTreeMap::new(),
        }
    }

    /// One update of `p` by its gradient `g` (same shape), advancing that parameter's state.
    pub fn update(&mut self, name: &str, p: &mut ArrayD<f32>, g: ArrayViewD<f32>) -> Result<()> {
        self.update_view(name, p.view_mut(), g)
    }

    /// [`Adam::update`] of a borrowed tensor (a weight inside the model).
    pub fn update_view(
        &mut self,
        name: &str,
        p: ArrayViewMutD<f32>,
        g: ArrayViewD<f32>,
    ) -> Result<()> {
        if p.shape() != g.shape() {
            return Err(Error::invalid(format!(
                "gradient of `{name}` has shape {:?}, the weight {:?}",
                g.shape(),
                p.shape()
            )));
        }
        let c = self.config;
        let st = self
            .state
            .entry(name.to_string())
            .or_insert_with(|| Moments {
                m: ArrayD::zeros(p.raw_dim()),
                v: ArrayD::zeros(p.raw_dim()),
                t: 0,
            });
        if st.m.shape() != p.shape() {
            return Err(Error::invalid(format!(
                "optimizer state of `{name}` has shape {:?}, the weight {:?}",
                st.m.shape(),
                p.shape()
            )));
        }
        st.t += 1;
        let bias1 = 1.0 - (c.beta1 as f64).powi(st.t as i32);
        let bias2_sqrt = (1.0 - (c.beta2 as f64).powi(st.t as i32)).sqrt();
        let step_size = (c.lr as f64 / bias1) as f32;
        let bias2_sqrt = bias2_sqrt as f32;
        let (b1c, b2, b2c) = (1.0 - c.beta1, c.beta2, 1.0 - c.beta2);
        Zip::from(p)
            .and(&g)
            .and(&mut st.m)
            .and(&mut st.v)
            .for_each(|p, &g, m, v| {
                let g = if c.weight_decay != 0.0 {
                    g + c.weight_decay * *p
                } else {
                    g
                };
                *m += b1c * (g - *m);
                *v = b2 * *v + b2c * g * g;
                let denom = v.sqrt() / bias2_sqrt + c.eps;
                *p -= step_size * (*m / denom);
            });
        Ok(())
    }

    /// One optimizer step: every weight with a gradient is updated; the others are untouched.
    /// A gradient for a name that is not a weight is an error (a bug in the caller).
    pub fn step(
        &mut self,
        weights: &mut [(String, ArrayD<f32>)],
        grads: &BTreeMap<String, ArrayD<f32>>,
    ) -> Result<()> {
        let missing: Vec<&String> = grads
            .keys()
            .filter(|n| !weights.iter().any(|(w, _)| w == *n))
            .collect();
        if !missing.is_empty() {
            return Err(Error::invalid(format!(
                "gradients for unknown weights: {missing:?}"
            )));
        }
        for (name, p) in weights.iter_mut() {
            if let Some(g) = grads.get(name) {
                self.update(name, p, g.view())?;
            }
        }
        self.step += 1;
        Ok(())
    }

    /// One optimizer step on the model's own weights, in place ([`FasterRcnn::visit_params_mut`]),
    /// then one [`FasterRcnn::refold`]: the same arithmetic as [`Adam::step`] on
    /// `model.export()` followed by a rebuild, without copying or re-validating the network.
    /// A gradient for a name that is not a trained parameter is an error, reported before
    /// anything changes.
    pub fn step_model(&mut self, model: &mut FasterRcnn, grads: &Grads) -> Result<()> {
        let mut params = BTreeSet::new();
        model.visit_params(|n, kind, _| {
            if kind == Kind::Param {
                params.insert(n.to_string());
            }
        });
        let missing: Vec<&String> = grads.keys().filter(|n| !params.contains(*n)).collect();
        if !missing.is_empty() {
            return Err(Error::invalid(format!(
                "gradients for unknown weights: {missing:?}"
            )));
        }
        let mut result = Ok(());
        model.visit_params_mut(|name, _, p| {
            if let (Some(g), Ok(())) = (grads.get(name), &result) {
                result = self.update_view(name, p, g.view());
            }
        });
        result?;
        model.refold();
        self.step += 1;
        Ok(())
    }

    /// Saves the state atomically (safetensors, f32).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut tensors: Vec<(String, ArrayViewD<f32>)> = Vec::new();
        let mut meta = HashMap::new();
        for (name, st) in &self.state {
            tensors.push((format!("adam.m.{name}"), st.m.view()));
            tensors.push((format!("adam.v.{name}"), st.v.view()));
            meta.insert(format!("step.{name}"), st.t.to_string());
        }
        let c = self.config;
        meta.insert("step".into(), self.step.to_string());
        meta.insert("lr".into(), format!("{:e}", c.lr));
        meta.insert("beta1".into(), format!("{:e}", c.beta1));
        meta.insert("beta2".into(), format!("{:e}", c.beta2));
        meta.insert("eps".into(), format!("{:e}", c.eps));
        meta.insert("weight_decay".into(), format!("{:e}", c.weight_decay));
        save(path, &tensors, &meta, Precision::F32)
    }

    /// Loads a state written by [`Adam::save`]; the hyper-parameters come from `config` (so a
    /// resumed run may change the learning rate), the moments and counters from the file.
    pub fn load(path: impl AsRef<Path>, config: AdamConfig) -> Result<Self> {
        let path = path.as_ref();
        let wf = WeightFile::load(path)?;
        let parse = |key: &str| -> Result<u64> {
            let s = wf
                .metadata
                .get(key)
                .ok_or_else(|| Error::weights(path, format!("missing metadata `{key}`")))?;
            s.parse().map_err(|_| {
                Error::weights(path, format!("metadata `{key}` = {s:?} is not a count"))
            })
        };
        let mut adam = Adam::new(config);
        adam.step = parse("step")?;
        for name in wf.names() {
            let Some(p) = name.strip_prefix("adam.m.") else {
                if !name.starts_with("adam.v.") {
                    return Err(Error::weights(path, format!("unexpected tensor `{name}`")));
                }
                continue;
            };
            let m = wf.get(name).expect("listed").clone();
            let v = wf
                .get(&format!("adam.v.{p}"))
                .ok_or_else(|| Error::weights(path, format!("missing tensor `adam.v.{p}`")))?
                .clone();
            if v.shape() != m.shape() {
                return Err(Error::weights(
                    path,
                    format!(
                        "`adam.v.{p}` has shape {:?}, `adam.m.{p}` {:?}",
                        v.shape(),
                        m.shape()
                    ),
                ));
            }
            let t = parse(&format!("step.{p}"))?;
            adam.state.insert(p.to_string(), Moments { m, v, t });
        }
        Ok(adam)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, FORWARD};
    use ndarray::{arr1, Array1};

    /// Reference values from torch 2.x (run in tools/ or a Python shell):
    /// ```python
    /// p = torch.tensor([0.5, -1.25, 2.0, 0.0], requires_grad=True)
    /// opt = torch.optim.Adam([p], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    /// for g in [[0.1, -0.2, 3.0, 0.0], [-0.05, 0.4, 1.0, 1e-6], [0.3, 0.3, -2.0, -1e-3]]:
    ///     p.grad = torch.tensor(g); opt.step(); print(p)
    /// print(opt.state[p]['exp_avg'], opt.state[p]['exp_avg_sq'])
    /// ```
    #[test]
    #[allow(clippy::excessive_precision)] // torch's printed values, kept verbatim
    fn matches_torch_sequence() {
        let cfg = AdamConfig {
            lr: 1e-2,
            weight_decay: 0.1,
            ..AdamConfig::default()
        };
        let mut adam = Adam::new(cfg);
        let mut w = vec![("w".to_string(), arr1(&[0.5f32, -1.25, 2.0, 0.0]).into_dyn())];
        let grads = [
            [0.1f32, -0.2, 3.0, 0.0],
            [-0.05, 0.4, 1.0, 1e-6],
            [0.3, 0.3, -2.0, -1e-3],
        ];
        let expected = [
            [4.900000095e-01f32, -1.240000010e+00, 1.990000010e+00, 0.0],
            [
                4.833492041e-01,
                -1.239712000e+00,
                1.981113672e+00,
                -7.337623741e-03,
            ],
            [
                4.754493833e-01,
                -1.241945624e+00,
                1.978020549e+00,
                -9.528691880e-04,
            ],
        ];
        for (g, e) in grads.iter().zip(&expected) {
            let mut gm = BTreeMap::new();
            gm.insert("w".to_string(), arr1(g).into_dyn());
            adam.step(&mut w, &gm).unwrap();
            assert_close("p", w[0].1.view(), arr1(e).into_dyn().view(), FORWARD);
        }
        let st = &adam.state["w"];
        let m: Array1<f32> = arr1(&[
            4.689349607e-02,
            1.611787826e-02,
            1.869211495e-01,
            -1.732862438e-04,
        ]);
        let v: Array1<f32> = arr1(&[
            1.437932660e-04,
            2.124998282e-04,
            1.490249671e-02,
            3.005933280e-09,
        ]);
        assert_close("exp_avg", st.m.view(), m.into_dyn().view(), FORWARD);
        assert_close("exp_avg_sq", st.v.view(), v.into_dyn().view(), FORWARD);
        assert_eq!((adam.step, st.t), (3, 3));
    }

    /// A parameter without a gradient is skipped; its own step counter does not advance.
    #[test]
    fn skips_weights_without_gradients_and_roundtrips() {
        let mut adam = Adam::new(AdamConfig::default());
        let mut w = vec![
            ("a".to_string(), arr1(&[1.0f32, 2.0]).into_dyn()),
            ("b".to_string(), arr1(&[3.0f32]).into_dyn()),
        ];
        let mut g = BTreeMap::new();
        g.insert("a".to_string(), arr1(&[0.5f32, -0.5]).into_dyn());
        adam.step(&mut w, &g).unwrap();
        g.insert("b".to_string(), arr1(&[1.0f32]).into_dyn());
        adam.step(&mut w, &g).unwrap();
        assert_eq!((adam.state["a"].t, adam.state["b"].t, adam.step), (2, 1, 2));

        let dir = crate::testutil::temp_dir("adam");
        let path = dir.join("opt.safetensors");
        adam.save(&path).unwrap();
        let back = Adam::load(&path, adam.config).unwrap();
        assert_eq!(back.step, 2);
        for (n, st) in &adam.state {
            let b = &back.state[n];
            assert_eq!((b.t, &b.m, &b.v), (st.t, &st.m, &st.v), "{n}");
        }
        // A gradient for an unknown weight is reported.
        g.insert("c".to_string(), arr1(&[1.0f32]).into_dyn());
        assert!(adam.step(&mut w, &g).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The training loop's in-place step ([`Adam::step_model`]) against the old one, kept here
    /// as the reference: `export` -> [`Adam::step`] -> rebuild (`init::build`, which re-folds
    /// every BN). 6 steps of a reduced network on a random image with one box, all layers and
    /// the batch norms' gamma and beta trained, the same random sampling: weights, optimizer
    /// state and losses agree to 1e-6
    /// relative (they are in fact bit-identical: the same f32 operations on the same values).
    #[test]
    fn in_place_step_equals_export_step_build() {
        use crate::train::grad::{loss_and_grads, TrainConfig};
        use crate::train::init::{build, he_init, Arch};
        use rand::{Rng, SeedableRng};
        let classes = vec!["__background__".to_string(), "a".to_string()];
        let (t, meta) =
            he_init(&Arch::reduced(16, Some([1, 2, 1, 2])).unwrap(), &classes, 4).unwrap();
        let mut fast = build(t.clone(), meta.clone()).unwrap();
        let mut slow = build(t, meta).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let x = ndarray::Array4::from_shape_fn((3, 1, 96, 128), |_| rng.gen_range(-1.0f32..1.0));
        let boxes = ndarray::arr2(&[[20.0f32, 16.0, 70.0, 60.0]]);
        let cfg = TrainConfig {
            trainable_layers: 5,
            train_bn: true,
            roi_batch: 64,
            ..TrainConfig::default()
        };
        let config = AdamConfig {
            lr: 1e-3,
            ..AdamConfig::default()
        };
        let (mut adam_fast, mut adam_slow) = (Adam::new(config), Adam::new(config));
        let (mut rng_fast, mut rng_slow) = (
            rand_chacha::ChaCha8Rng::seed_from_u64(5),
            rand_chacha::ChaCha8Rng::seed_from_u64(5),
        );
        for step in 0..6 {
            let (lf, gf) = loss_and_grads(&fast, &x, boxes.view(), &[1], &cfg, &mut rng_fast);
            adam_fast.step_model(&mut fast, &gf).unwrap();
            let (ls, gs) = loss_and_grads(&slow, &x, boxes.view(), &[1], &cfg, &mut rng_slow);
            let mut weights = slow.export();
            adam_slow.step(&mut weights, &gs).unwrap();
            slow = build(weights, slow.metadata()).unwrap();
            assert!(
                (lf.total() - ls.total()).abs() <= 1e-6 * ls.total().abs(),
                "step {step}"
            );
        }
        assert_eq!(adam_fast.step, 6);
        let tol = 1e-6;
        for ((n, a), (m, b)) in fast.export().iter().zip(&slow.export()) {
            assert_eq!(n, m);
            assert_close(n, a.view(), b.view(), tol);
        }
        // The folded convolutions the forward pass runs agree too.
        let (fb, sb) = (
            &fast.backbone.layers[1].blocks[0].conv2,
            &slow.backbone.layers[1].blocks[0].conv2,
        );
        assert_close(
            "fused",
            fb.fused.weight.view().into_dyn(),
            sb.fused.weight.view().into_dyn(),
            tol,
        );
        assert_ne!(fb.fused.weight, fb.conv.weight, "the BN is folded in");
        // beta moved off its initial 0 and the folded bias follows it (mean 0: shift = beta)
        assert!(fb.bn.bias.iter().any(|&b| b != 0.0), "beta trained");
        assert_close(
            "fused bias",
            fb.fused.bias.as_ref().unwrap().view().into_dyn(),
            fb.bn.bias.view().into_dyn(),
            tol,
        );
        for (n, st) in &adam_slow.state {
            let f = &adam_fast.state[n];
            assert_eq!(f.t, st.t, "{n}");
            assert_close(n, f.m.view(), st.m.view(), tol);
            assert_close(n, f.v.view(), st.v.view(), tol);
        }
        assert_eq!(adam_fast.state.len(), adam_slow.state.len());
        // A gradient for a buffer (a batch-norm statistic) is refused before anything changes.
        let before = fast.export();
        let mut g = Grads::new();
        g.insert(
            "head.cls_score.bias".into(),
            ArrayD::ones(ndarray::IxDyn(&[2])),
        );
        g.insert(
            "backbone.bn1.running_var".into(),
            ArrayD::ones(ndarray::IxDyn(&[4])),
        );
        assert!(adam_fast.step_model(&mut fast, &g).is_err());
        assert_eq!(fast.export(), before);
    }

    /// Timing, not a check (`cargo test --release --lib step_cost -- --ignored --nocapture`):
    /// one optimizer step of the old loop (export, step, rebuild) against the in-place one, on
    /// the shipped architecture (width / 8, blocks 2, 2, 2, 2) and on the full ResNet-50, with
    /// a gradient for every trained weight.
    #[test]
    #[ignore]
    fn step_cost() {
        use crate::train::grad::{trained_weights, Phase};
        use crate::train::init::{build, he_init, Arch};
        use std::time::Instant;
        let classes = vec!["__background__".to_string(), "a".to_string()];
        for (label, arch) in [
            (
                "width/8, blocks 2,2,2,2",
                Arch::reduced(8, Some([2, 2, 2, 2])).unwrap(),
            ),
            ("ResNet-50", Arch::resnet50()),
        ] {
            let (t, meta) = he_init(&arch, &classes, 1).unwrap();
            let mut model = build(t, meta).unwrap();
            let grads: Grads = trained_weights(&model, 5, false, Phase::Joint)
                .into_iter()
                .map(|(n, s)| (n, ArrayD::from_elem(s, 1e-3f32)))
                .collect();
            let mut adam = Adam::new(AdamConfig::default());
            let reps = 5;
            let t0 = Instant::now();
            for _ in 0..reps {
                let mut w = model.export();
                adam.step(&mut w, &grads).unwrap();
                model = build(w, model.metadata()).unwrap();
            }
            let old = t0.elapsed().as_secs_f64() / reps as f64;
            let t0 = Instant::now();
            for _ in 0..reps {
                adam.step_model(&mut model, &grads).unwrap();
            }
            let new = t0.elapsed().as_secs_f64() / reps as f64;
            let n: usize = grads.values().map(|g| g.len()).sum();
            eprintln!(
                "{label}: {n} trained weights; export+step+build {:.2} ms, step_model {:.2} ms",
                old * 1e3,
                new * 1e3
            );
        }
    }
}
