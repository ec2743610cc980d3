//! Initial weights for training, as torchvision initializes its modules:
//!
//! ```text
//! ResNet convs (torchvision.models.resnet):  w ~ N(0, 2 / fan_out),  fan_out = C_out * kh * kw
//!                                            (kaiming_normal_, mode="fan_out", relu)
//! BatchNorm (frozen):                        weight 1, bias 0, running_mean 0, running_var 1
//! RPN head convs (rpn.RPNHead):              w ~ N(0, 0.01^2), b = 0
//! cls_score:                                 w ~ N(0, 0.01^2), b = 0
//! bbox_pred:                                 w ~ N(0, 0.001^2), b = 0
//! ```
//! (the predictor's std 0.01 / 0.001 are Detectron's and the brief's choice; torchvision's
//! FastRCNNPredictor keeps nn.Linear's default uniform init.)
//!
//! [`Arch`] describes the network: the full ResNet-50 C4 (stem 64; planes 64/128/256/512 times
//! expansion 4; blocks 3, 4, 6, 3; RPN width 512) or a reduced one (every width divided by a
//! divisor, optional block counts) for tests and small CPUs. [`from_file`] instead takes
//! `backbone.*` and `head.layer4.*` from converted ImageNet weights and adds fresh RPN and
//! predictor tensors for the data set's classes, or starts from a complete cryodet model
//! (fine-tuning).
//!
//! Weights are produced as `(name, tensor)` pairs + metadata and built with
//! [`build`] = `FasterRcnn::from_weights(WeightFile::from_tensors(..))`.

use crate::error::{Error, Result};
use crate::io::weights::WeightFile;
use crate::model::FasterRcnn;
use ndarray::{ArrayD, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use std::collections::HashMap;
use std::path::Path;

/// Anchors per feature cell of the fresh heads made here (3 sizes x 3 ratios;
/// `AnchorGenerator::default()`); [`fit_rpn_to_anchors`] re-makes them for other anchors.
const NUM_ANCHORS: usize = 9;
/// ResNet bottleneck expansion.
pub const EXPANSION: usize = 4;

/// Widths and depths of a ResNet-50-C4 Faster R-CNN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arch {
    /// conv1 output channels.
    pub stem: usize,
    /// Bottleneck inner widths of layer1..layer4 (outputs are `planes * EXPANSION`).
    pub planes: [usize; 4],
    /// Blocks of layer1..layer4 (layer4 lives in the RoI head).
    pub blocks: [usize; 4],
    /// RPN 3x3 conv width.
    pub rpn: usize,
}

impl Arch {
    /// ResNet-50: stem 64, planes 64/128/256/512, blocks 3/4/6/3, RPN 512.
    pub fn resnet50() -> Self {
        Arch {
            stem: 64,
            planes: [64, 128, 256, 512],
            blocks: [3, 4, 6, 3],
            rpn: 512,
        }
    }

    /// ResNet-50 with every width divided by `div` (at least 1 channel) and optionally other
    /// block counts. `reduced(1, None)` is [`Arch::resnet50`].
    pub fn reduced(div: usize, blocks: Option<[usize; 4]>) -> Result<Self> {
        if div == 0 || div > 64 {
            return Err(Error::invalid(format!(
                "width divisor must be in 1..=64, got {div}"
            )));
        }
        if let Some(b) = blocks {
            if b.contains(&0) {
                return Err(Error::invalid(format!(
                    "every stage needs at least one block, got {b:?}"
                )));
            }
        }
        let full = Arch::resnet50();
        let d = |c: usize| (c / div).max(1);
        Ok(Arch {
            stem: d(full.stem),
            planes: full.planes.map(d),
            blocks: blocks.unwrap_or(full.blocks),
            rpn: d(full.rpn),
        })
    }
}

/// A seeded source of normal samples.
struct Init {
    rng: ChaCha8Rng,
}

impl Init {
    fn normal(&mut self, shape: &[usize], std: f32) -> ArrayD<f32> {
        let dist = Normal::new(0.0f32, std).expect("std > 0");
        ArrayD::from_shape_simple_fn(IxDyn(shape), || dist.sample(&mut self.rng))
    }

    /// Kaiming normal, fan_out, gain sqrt(2): `N(0, 2 / (C_out * kh * kw))`.
    fn kaiming(&mut self, co: usize, ci: usize, k: usize) -> ArrayD<f32> {
        let std = (2.0 / (co * k * k) as f32).sqrt();
        self.normal(&[co, ci, k, k], std)
    }
}

type Tensors = Vec<(String, ArrayD<f32>)>;

fn conv_bn(
    init: &mut Init,
    out: &mut Tensors,
    conv: &str,
    bn: &str,
    co: usize,
    ci: usize,
    k: usize,
) {
    out.push((format!("{conv}.weight"), init.kaiming(co, ci, k)));
    out.push((format!("{bn}.weight"), ArrayD::ones(IxDyn(&[co]))));
    out.push((format!("{bn}.bias"), ArrayD::zeros(IxDyn(&[co]))));
    out.push((format!("{bn}.running_mean"), ArrayD::zeros(IxDyn(&[co]))));
    out.push((format!("{bn}.running_var"), ArrayD::ones(IxDyn(&[co]))));
}

/// One ResNet stage `{prefix}.{i}`: `blocks` bottlenecks, the first with a downsample.
fn stage(
    init: &mut Init,
    out: &mut Tensors,
    prefix: &str,
    c_in: usize,
    planes: usize,
    blocks: usize,
) -> usize {
    let c_out = planes * EXPANSION;
    let mut c = c_in;
    for i in 0..blocks {
        let p = format!("{prefix}.{i}");
        conv_bn(
            init,
            out,
            &format!("{p}.conv1"),
            &format!("{p}.bn1"),
            planes,
            c,
            1,
        );
        conv_bn(
            init,
            out,
            &format!("{p}.conv2"),
            &format!("{p}.bn2"),
            planes,
            planes,
            3,
        );
        conv_bn(
            init,
            out,
            &format!("{p}.conv3"),
            &format!("{p}.bn3"),
            c_out,
            planes,
            1,
        );
        if i == 0 {
            conv_bn(
                init,
                out,
                &format!("{p}.downsample.0"),
                &format!("{p}.downsample.1"),
                c_out,
                c,
                1,
            );
        }
        c = c_out;
    }
    c_out
}

/// Fresh RPN (`rpn.*`, width `rpn` on `c3` input channels) and predictor (`head.cls_score`,
/// `head.bbox_pred` on `c4` features, `k` classes incl. background).
fn heads(init: &mut Init, out: &mut Tensors, c3: usize, rpn: usize, c4: usize, k: usize) {
    rpn_head(init, out, c3, rpn);
    predictor(init, out, c4, k);
}

/// Fresh RPN head of width `rpn` on `c3` input channels (`rpn.*`).
fn rpn_head(init: &mut Init, out: &mut Tensors, c3: usize, rpn: usize) {
    let zeros = |n: usize| ArrayD::<f32>::zeros(IxDyn(&[n]));
    out.push((
        "rpn.conv.weight".into(),
        init.normal(&[rpn, c3, 3, 3], 0.01),
    ));
    out.push(("rpn.conv.bias".into(), zeros(rpn)));
    out.push((
        "rpn.cls_logits.weight".into(),
        init.normal(&[NUM_ANCHORS, rpn, 1, 1], 0.01),
    ));
    out.push(("rpn.cls_logits.bias".into(), zeros(NUM_ANCHORS)));
    out.push((
        "rpn.bbox_pred.weight".into(),
        init.normal(&[4 * NUM_ANCHORS, rpn, 1, 1], 0.01),
    ));
    out.push(("rpn.bbox_pred.bias".into(), zeros(4 * NUM_ANCHORS)));
}

/// Fresh predictor for `k` classes on `c4` pooled features (`head.cls_score.*`, `head.bbox_pred.*`).
fn predictor(init: &mut Init, out: &mut Tensors, c4: usize, k: usize) {
    let zeros = |n: usize| ArrayD::<f32>::zeros(IxDyn(&[n]));
    out.push(("head.cls_score.weight".into(), init.normal(&[k, c4], 0.01)));
    out.push(("head.cls_score.bias".into(), zeros(k)));
    out.push((
        "head.bbox_pred.weight".into(),
        init.normal(&[4 * k, c4], 0.001),
    ));
    out.push(("head.bbox_pred.bias".into(), zeros(4 * k)));
}

/// Metadata of a weight file for `classes` (background first).
pub fn metadata(classes: &[String]) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert("classes".to_string(), classes.join(","));
    m.insert("bn_eps".to_string(), format!("{:e}", 1e-5f32));
    m
}

fn check_classes(classes: &[String]) -> Result<()> {
    if classes.len() < 2 {
        return Err(Error::invalid(format!(
            "need the background and at least one class, got {classes:?}"
        )));
    }
    Ok(())
}

/// He-initialized weights of the whole network `arch` for `classes` (background first).
pub fn he_init(
    arch: &Arch,
    classes: &[String],
    seed: u64,
) -> Result<(Tensors, HashMap<String, String>)> {
    check_classes(classes)?;
    let mut init = Init {
        rng: ChaCha8Rng::seed_from_u64(seed),
    };
    let mut out = Vec::new();
    conv_bn(
        &mut init,
        &mut out,
        "backbone.conv1",
        "backbone.bn1",
        arch.stem,
        3,
        7,
    );
    let mut c = arch.stem;
    for k in 0..3 {
        c = stage(
            &mut init,
            &mut out,
            &format!("backbone.layer{}", k + 1),
            c,
            arch.planes[k],
            arch.blocks[k],
        );
    }
    let c3 = c;
    let c4 = stage(
        &mut init,
        &mut out,
        "head.layer4",
        c3,
        arch.planes[3],
        arch.blocks[3],
    );
    heads(&mut init, &mut out, c3, arch.rpn, c4, classes.len());
    Ok((out, metadata(classes)))
}

/// Initial weights from a file (`--init`), either
/// - converted ImageNet weights (`backbone.*` and `head.layer4.*` only): a fresh RPN of width
///   `rpn` and a fresh predictor for `classes` are added; or
/// - a complete cryodet model (also `rpn.*`, `head.cls_score.*`, `head.bbox_pred.*`, e.g. the
///   shipped `weights/default.safetensors`): fine-tuning. Its RPN (class-agnostic) is kept; its
///   predictor is kept when its `classes` metadata equals `classes`, else a fresh one is made.
///
/// Any other tensor is an error. The file's `bn_eps` metadata is kept (its `score_thresh` is not:
/// it belongs to the weights before fine-tuning).
pub fn from_file(
    path: &Path,
    rpn: usize,
    classes: &[String],
    seed: u64,
) -> Result<(Tensors, HashMap<String, String>)> {
    check_classes(classes)?;
    let wf = WeightFile::load(path)?;
    let is_head = |n: &str| n.starts_with("head.cls_score.") || n.starts_with("head.bbox_pred.");
    let complete = wf.contains("rpn.conv.weight");
    let same_classes = complete
        && wf.metadata.get("classes").map(|c| {
            c.split(',')
                .map(str::trim)
                .eq(classes.iter().map(String::as_str))
        }) == Some(true);
    let mut out: Tensors = Vec::new();
    for name in wf.names() {
        let keep = name.starts_with("backbone.")
            || name.starts_with("head.layer4.")
            || (complete && name.starts_with("rpn."))
            || (same_classes && is_head(name));
        // A complete model's predictor for other classes is replaced, not an error.
        let replaced = complete && is_head(name);
        if !(keep || replaced) {
            return Err(Error::weights(
                path,
                format!("unexpected tensor `{name}`: an --init file holds backbone.* and head.layer4.* (ImageNet weights), or a complete cryodet model"),
            ));
        }
        if keep {
            out.push((name.clone(), wf.get(name).expect("listed").clone()));
        }
    }
    let width = |name: &str| -> Result<usize> {
        wf.get(name)
            .map(|t| t.shape()[0])
            .ok_or_else(|| Error::weights(path, format!("missing tensor `{name}`")))
    };
    // layer3's output = layer4's first downsample input; layer4's output = its last conv3's.
    let c3 = wf
        .get("head.layer4.0.downsample.0.weight")
        .map(|t| t.shape()[1])
        .ok_or_else(|| {
            Error::weights(path, "missing tensor `head.layer4.0.downsample.0.weight`")
        })?;
    let mut last = 0;
    while wf.contains(&format!("head.layer4.{}.conv3.weight", last + 1)) {
        last += 1;
    }
    let c4 = width(&format!("head.layer4.{last}.conv3.weight"))?;
    let mut init = Init {
        rng: ChaCha8Rng::seed_from_u64(seed),
    };
    if !complete {
        rpn_head(&mut init, &mut out, c3, rpn);
    }
    if !same_classes {
        predictor(&mut init, &mut out, c4, classes.len());
    }
    let mut meta = metadata(classes);
    if let Some(eps) = wf.metadata.get("bn_eps") {
        meta.insert("bn_eps".into(), eps.clone());
    }
    Ok((out, meta))
}

/// Makes the RPN's final layers fit `anchors` and records them in `meta` (`anchor_sizes`,
/// `anchor_ratios`). `source`: the anchors the tensors were trained with (`None` for fresh
/// heads, which [`rpn_head`] makes for the default 9). When the anchors differ from `source`
/// (other sizes or ratios, whether or not A changes), `rpn.cls_logits` and `rpn.bbox_pred` are
/// re-initialized (N(0, 0.01^2), bias 0) for A = sizes x ratios and the shared `rpn.conv` is
/// kept: their outputs are per-anchor and mean nothing for other anchors. Returns true when it
/// re-initialized a trained head (the caller says so).
pub fn fit_rpn_to_anchors(
    tensors: &mut Tensors,
    meta: &mut HashMap<String, String>,
    anchors: &crate::detection::anchors::AnchorGenerator,
    source: Option<&crate::detection::anchors::AnchorGenerator>,
    seed: u64,
) -> Result<bool> {
    let a = anchors.num_anchors();
    let rpn = tensors
        .iter()
        .find(|(n, _)| n == "rpn.conv.weight")
        .map(|(_, t)| t.shape()[0])
        .ok_or_else(|| Error::invalid("initial weights lack `rpn.conv.weight`"))?;
    let current = tensors
        .iter()
        .find(|(n, _)| n == "rpn.cls_logits.weight")
        .map(|(_, t)| t.shape()[0]);
    let trained = source.is_some();
    let same = match source {
        Some(s) => s == anchors,
        None => current == Some(a),
    };
    if !same {
        tensors.retain(|(n, _)| {
            !(n.starts_with("rpn.cls_logits.") || n.starts_with("rpn.bbox_pred."))
        });
        let mut init = Init {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_a9c4),
        };
        let zeros = |n: usize| ArrayD::<f32>::zeros(IxDyn(&[n]));
        tensors.push((
            "rpn.cls_logits.weight".into(),
            init.normal(&[a, rpn, 1, 1], 0.01),
        ));
        tensors.push(("rpn.cls_logits.bias".into(), zeros(a)));
        tensors.push((
            "rpn.bbox_pred.weight".into(),
            init.normal(&[4 * a, rpn, 1, 1], 0.01),
        ));
        tensors.push(("rpn.bbox_pred.bias".into(), zeros(4 * a)));
    }
    meta.extend(anchors.to_metadata());
    Ok(trained && !same)
}

/// Builds the network from in-memory tensors.
pub fn build(tensors: Tensors, metadata: HashMap<String, String>) -> Result<FasterRcnn> {
    FasterRcnn::from_weights(WeightFile::from_tensors(
        "<initial weights>",
        tensors,
        metadata,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> Vec<String> {
        vec!["__background__".into(), "mito".into()]
    }

    fn std_of(t: &ArrayD<f32>) -> f32 {
        let n = t.len() as f32;
        let mean = t.sum() / n;
        (t.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n).sqrt()
    }

    /// The full network builds, has ResNet-50's 23.5 M backbone+layer4 conv weights, and the
    /// conv stds follow sqrt(2 / fan_out).
    #[test]
    fn resnet50_builds_with_kaiming_stds() {
        let (t, meta) = he_init(&Arch::resnet50(), &classes(), 0).unwrap();
        let get = |n: &str| &t.iter().find(|(m, _)| m == n).unwrap().1;
        let convs: usize = t
            .iter()
            .filter(|(n, _)| n.contains("conv") && !n.starts_with("rpn") && n.ends_with("weight"))
            .map(|(_, a)| a.len())
            .sum::<usize>()
            + t.iter()
                .filter(|(n, _)| n.contains("downsample.0"))
                .map(|(_, a)| a.len())
                .sum::<usize>();
        // torchvision resnet50 has 23,454,912 conv weights (all convs, no fc).
        assert_eq!(convs, 23_454_912);
        // layer3 conv2: 256 x 256 x 3 x 3, fan_out = 2304 -> std 0.02946.
        let s = std_of(get("backbone.layer3.0.conv2.weight"));
        let want = (2.0f32 / 2304.0).sqrt();
        assert!((s - want).abs() < 0.02 * want, "std {s} vs {want}");
        let s = std_of(get("head.bbox_pred.weight"));
        assert!((s - 0.001).abs() < 0.1 * 0.001, "bbox_pred std {s}");
        assert_eq!(get("backbone.bn1.running_var").sum(), 64.0);
        let m = build(t, meta).unwrap();
        assert_eq!(m.backbone.out_channels(), 1024);
        assert_eq!(m.head.layer4.out_channels(), 2048);
        assert_eq!(m.rpn.conv.out_channels(), 512);
        assert_eq!(m.classes, classes());
    }

    /// A reduced network builds; the same seed gives the same weights, another seed others.
    #[test]
    fn reduced_is_seeded() {
        let arch = Arch::reduced(16, Some([1, 1, 1, 1])).unwrap();
        assert_eq!((arch.stem, arch.planes, arch.rpn), (4, [4, 8, 16, 32], 32));
        let (a, ma) = he_init(&arch, &classes(), 7).unwrap();
        let (b, _) = he_init(&arch, &classes(), 7).unwrap();
        let (c, _) = he_init(&arch, &classes(), 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let m = build(a, ma).unwrap();
        assert_eq!(m.head.layer4.blocks.len(), 1);
        assert!(Arch::reduced(0, None).is_err());
        assert!(he_init(&arch, &classes()[..1], 0).is_err());
    }

    /// --init: backbone and layer4 are taken as they are, the heads are fresh.
    #[test]
    fn imagenet_init_keeps_backbone() {
        let arch = Arch::reduced(16, Some([1, 1, 1, 1])).unwrap();
        let (t, _) = he_init(&arch, &classes(), 3).unwrap();
        let backbone: Vec<(String, ndarray::ArrayViewD<f32>)> = t
            .iter()
            .filter(|(n, _)| n.starts_with("backbone.") || n.starts_with("head.layer4."))
            .map(|(n, a)| (n.clone(), a.view()))
            .collect();
        let dir = crate::testutil::temp_dir("init");
        let path = dir.join("imagenet.safetensors");
        crate::io::weights::save(
            &path,
            &backbone,
            &HashMap::new(),
            crate::io::weights::Precision::F32,
        )
        .unwrap();
        let three: Vec<String> = vec!["__background__".into(), "a".into(), "b".into()];
        let (u, meta) = from_file(&path, arch.rpn, &three, 9).unwrap();
        let get = |v: &Tensors, n: &str| v.iter().find(|(m, _)| m == n).unwrap().1.clone();
        assert_eq!(
            get(&u, "backbone.layer2.0.conv2.weight"),
            get(&t, "backbone.layer2.0.conv2.weight")
        );
        assert_eq!(get(&u, "head.cls_score.weight").shape(), &[3, 128]);
        let m = build(u, meta).unwrap();
        assert_eq!(m.num_classes(), 3);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// --init with a complete model: fine-tuning keeps the RPN, and the predictor when the
    /// classes are the same; other classes get a fresh predictor.
    #[test]
    fn complete_model_init_fine_tunes() {
        let arch = Arch::reduced(16, Some([1, 1, 1, 1])).unwrap();
        let (t, meta) = he_init(&arch, &classes(), 3).unwrap();
        let dir = crate::testutil::temp_dir("init-finetune");
        let path = dir.join("model.safetensors");
        let views: Vec<(String, ndarray::ArrayViewD<f32>)> =
            t.iter().map(|(n, a)| (n.clone(), a.view())).collect();
        crate::io::weights::save(&path, &views, &meta, crate::io::weights::Precision::F32).unwrap();
        let get = |v: &Tensors, n: &str| v.iter().find(|(m, _)| m == n).unwrap().1.clone();
        // Same classes: every tensor is the file's.
        let (u, _) = from_file(&path, 999, &classes(), 9).unwrap();
        assert_eq!(u.len(), t.len());
        for name in [
            "rpn.conv.weight",
            "head.cls_score.weight",
            "head.bbox_pred.bias",
            "backbone.conv1.weight",
        ] {
            assert_eq!(get(&u, name), get(&t, name), "{name}");
        }
        // Other classes: RPN kept (its width is the file's, not 999), fresh 3-class predictor.
        let three: Vec<String> = vec!["__background__".into(), "a".into(), "b".into()];
        let (v, meta3) = from_file(&path, 999, &three, 9).unwrap();
        assert_eq!(get(&v, "rpn.conv.weight"), get(&t, "rpn.conv.weight"));
        assert_eq!(get(&v, "head.cls_score.weight").shape()[0], 3);
        assert_eq!(build(v, meta3).unwrap().num_classes(), 3);
        std::fs::remove_dir_all(&dir).ok();
    }
}
