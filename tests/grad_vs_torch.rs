//! `loss_and_grads` against torch autograd on reduced-width fixtures (tools/torch_grad.py
//! `fixture`): torchvision's RPN and RoIHeads in training mode with take-all sampling, so the
//! result is deterministic. Losses and every trained weight's gradient within GRADIENT.
//!
//! Regenerate: `python3 tools/torch_grad.py fixture --out-dir tests/fixtures/grad`.

use cryodet::model::FasterRcnn;
use cryodet::testutil::{assert_close, fixture_path, load_fixture, GRADIENT};
use cryodet::train::grad::{loss_and_grads, Sampling, TrainConfig};
use ndarray::{Array1, Ix2, Ix4};
use rand::SeedableRng;

fn check(case: &str, trainable_layers: usize, beta: f32) {
    let model = FasterRcnn::load(fixture_path("grad/weights_small.safetensors")).unwrap();
    let fx = load_fixture(fixture_path(&format!("grad/{case}.safetensors")));
    let x = fx["input"].clone().into_dimensionality::<Ix4>().unwrap();
    let (_, c, h, w) = x.dim();
    let x = x.into_shape_with_order((c, 1, h, w)).unwrap();
    let boxes = fx["boxes"].clone().into_dimensionality::<Ix2>().unwrap();
    let labels: Vec<usize> = fx["labels"].iter().map(|&l| l as usize).collect();
    let cfg = TrainConfig {
        sampling: Sampling::All,
        trainable_layers,
        beta,
        ..TrainConfig::default()
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let (losses, grads) = loss_and_grads(&model, &x, boxes.view(), &labels, &cfg, &mut rng);
    for (name, v) in [
        ("loss_objectness", losses.objectness),
        ("loss_rpn_box_reg", losses.rpn_box_reg),
        ("loss_classifier", losses.classifier),
        ("loss_box_reg", losses.box_reg),
    ] {
        let got = Array1::from(vec![v]).into_dyn();
        assert_close(
            &format!("{case} {name}"),
            got.view(),
            fx[name].view(),
            GRADIENT,
        );
    }
    let want: Vec<&String> = fx.keys().filter(|k| k.starts_with("grad.")).collect();
    assert_eq!(
        grads.len(),
        want.len(),
        "{case}: {} gradients, torch has {}",
        grads.len(),
        want.len()
    );
    for k in want {
        let name = &k["grad.".len()..];
        let g = grads
            .get(name)
            .unwrap_or_else(|| panic!("{case}: no gradient for {name}"));
        assert_close(&format!("{case} {k}"), g.view(), fx[k].view(), GRADIENT);
    }
}

/// All layers trained (conv1, max-pool and layer1 backward included), beta 1/9.
#[test]
fn grads_match_torch_all_layers() {
    check("grad_small_t5", 5, 1.0 / 9.0);
}

/// torchvision's default trainable_backbone_layers = 3 (conv1, layer1 frozen), beta 1 (Eq. 4).
#[test]
fn grads_match_torch_three_layers_beta1() {
    check("grad_small_t3_beta1", 3, 1.0);
}

/// No ground truth: every anchor and RoI is background, so no box loss and no box-regression
/// gradient; the phases return exactly the weights they train (RpnOnly: no `head.*`).
#[test]
fn no_boxes_and_phases() {
    use cryodet::train::grad::{trained_weights, Phase};
    let model = FasterRcnn::load(fixture_path("grad/weights_small.safetensors")).unwrap();
    let fx = load_fixture(fixture_path("grad/grad_small_t5.safetensors"));
    let x = fx["input"].clone().into_dimensionality::<Ix4>().unwrap();
    let (_, c, h, w) = x.dim();
    let x = x.into_shape_with_order((c, 1, h, w)).unwrap();
    let boxes = ndarray::Array2::<f32>::zeros((0, 4));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for phase in [Phase::Joint, Phase::RpnOnly, Phase::HeadOnly] {
        let cfg = TrainConfig {
            phase,
            ..TrainConfig::default()
        };
        let (l, g) = loss_and_grads(&model, &x, boxes.view(), &[], &cfg, &mut rng);
        assert_eq!((l.rpn_box_reg, l.box_reg), (0.0, 0.0));
        assert!(l.total().is_finite());
        assert_eq!(phase == Phase::HeadOnly, l.objectness == 0.0);
        assert_eq!(phase == Phase::RpnOnly, l.classifier == 0.0);
        let names: Vec<String> = trained_weights(&model, 3, false, phase)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            g.keys().cloned().collect::<std::collections::BTreeSet<_>>(),
            names.into_iter().collect()
        );
        if phase != Phase::RpnOnly {
            assert!(g["head.bbox_pred.weight"].iter().all(|&v| v == 0.0));
            assert!(g["head.cls_score.weight"].iter().any(|&v| v != 0.0));
        }
    }
}

/// Every trained weight (batch-norm gamma and beta included) can be reached by name for an
/// optimizer step, and a step on a conv
/// weight changes the network only after `refold`.
#[test]
fn weight_mut_reaches_every_trained_weight() {
    use cryodet::train::grad::{trained_weights, Phase};
    let mut model = FasterRcnn::load(fixture_path("grad/weights_small.safetensors")).unwrap();
    for (name, shape) in trained_weights(&model, 5, true, Phase::Joint) {
        let w = model
            .weight_mut(&name)
            .unwrap_or_else(|| panic!("weight_mut({name}) is None"));
        assert_eq!(w.shape(), shape.as_slice(), "{name}");
    }
    // batch-norm statistics are never trained (gamma and beta are, with --bn affine)
    assert!(model.weight_mut("backbone.bn1.running_mean").is_none());
    assert!(model.weight_mut("head.layer4.0.bn2.running_var").is_none());
    assert!(model.weight_mut("backbone.bn1.weight").is_some());
    assert!(model.weight_mut("backbone.layer9.0.conv1.weight").is_none());
    let before = model.backbone.layers[1].blocks[0]
        .conv2
        .fused
        .weight
        .clone();
    model
        .weight_mut("backbone.layer2.0.conv2.weight")
        .unwrap()
        .mapv_inplace(|v| v * 2.0);
    assert_eq!(
        model.backbone.layers[1].blocks[0].conv2.fused.weight,
        before
    );
    model.refold();
    assert_close(
        "refolded",
        model.backbone.layers[1].blocks[0]
            .conv2
            .fused
            .weight
            .view()
            .into_dyn(),
        (before * 2.0).view().into_dyn(),
        cryodet::testutil::FORWARD,
    );
}
