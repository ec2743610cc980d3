//! The whole network against torchvision, tensor by tensor, on a reduced-width fixture.
//!
//! Fixtures: `python3 tools/torch_reference.py fixture ...` (see tools/README.md) builds the
//! network from torchvision parts (Bottleneck + FrozenBatchNorm2d, AnchorGenerator,
//! RegionProposalNetwork, torchvision.ops.roi_pool, RoIHeads), fills it with random weights,
//! and saves `weights_small.safetensors` and the trace of inputs [1,3,75,101] and [1,3,130,97].

use cryodet::io::weights::WeightFile;
use cryodet::model::{FasterRcnn, Trace};
use cryodet::testutil::{assert_close, fixture_path, load_fixture, temp_dir, EXACT, FORWARD};
use ndarray::Ix4;

fn check_trace(trace_file: &str) {
    let model =
        FasterRcnn::load(fixture_path("model/weights_small.safetensors")).expect("fixture weights");
    let want = load_fixture(fixture_path(trace_file));
    let input = want["input"].clone().into_dimensionality::<Ix4>().unwrap();
    let (_, c, h, w) = input.dim();
    let x = input.into_shape_with_order((c, 1, h, w)).unwrap();
    let mut trace = Trace::default();
    model.forward(&x, Some(&mut trace));
    let names: Vec<&str> = trace.tensors.iter().map(|(n, _)| n.as_str()).collect();
    for expected in Trace::NAMES {
        assert!(names.contains(&expected), "trace lacks {expected}");
    }
    for (name, got) in &trace.tensors {
        let reference = want
            .get(name)
            .unwrap_or_else(|| panic!("fixture lacks {name}"));
        // Labels are class indices: exact. Everything else: f32 forward tolerance.
        let tol = if name == "detections.labels" {
            EXACT
        } else {
            FORWARD
        };
        assert_close(
            &format!("{trace_file}: {name}"),
            got.view(),
            reference.view(),
            tol,
        );
    }
    let n_det = trace
        .tensors
        .iter()
        .find(|(n, _)| n == "detections.scores")
        .unwrap()
        .1
        .len();
    assert!(
        n_det > 0,
        "the fixture must exercise post-processing (got no detections)"
    );
}

#[test]
fn trace_matches_torchvision_75x101() {
    check_trace("model/trace_small.safetensors");
}

#[test]
fn trace_matches_torchvision_130x97() {
    check_trace("model/trace_small_130x97.safetensors");
}

fn weights() -> WeightFile {
    WeightFile::load(fixture_path("model/weights_small.safetensors")).unwrap()
}

fn load_err(wf: WeightFile) -> String {
    match FasterRcnn::from_weights(wf) {
        Ok(_) => panic!("must fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn loader_names_a_missing_tensor() {
    let mut wf = weights();
    wf.take("backbone.layer2.0.bn2.running_var", 1).unwrap();
    let msg = load_err(wf);
    assert!(
        msg.contains("missing tensor `backbone.layer2.0.bn2.running_var`"),
        "{msg}"
    );
    assert!(
        msg.contains("weights_small.safetensors"),
        "error must name the file: {msg}"
    );
}

#[test]
fn loader_names_an_extra_tensor() {
    let wf = weights();
    let mut tensors: Vec<_> = wf
        .names()
        .map(|n| (n.clone(), wf.get(n).unwrap().clone()))
        .collect();
    tensors.push(("head.fc.weight".into(), ndarray::ArrayD::zeros(vec![2, 3])));
    let msg = load_err(WeightFile::from_tensors(
        &wf.path,
        tensors,
        wf.metadata.clone(),
    ));
    assert!(msg.contains("`head.fc.weight` [2, 3]"), "{msg}");
}

#[test]
fn loader_names_both_shapes_of_a_misshaped_tensor() {
    let wf = weights();
    let mut tensors: Vec<_> = wf
        .names()
        .map(|n| (n.clone(), wf.get(n).unwrap().clone()))
        .collect();
    for (n, t) in tensors.iter_mut() {
        if n == "backbone.layer1.0.bn1.weight" {
            *t = ndarray::ArrayD::ones(vec![t.len() + 1]);
        }
    }
    let msg = load_err(WeightFile::from_tensors(
        &wf.path,
        tensors,
        wf.metadata.clone(),
    ));
    assert!(
        msg.contains("`backbone.layer1.0.bn1.weight`") && msg.contains("expected"),
        "{msg}"
    );
}

#[test]
fn loader_rejects_garbage_and_wrong_class_metadata() {
    let dir = temp_dir("wt");
    let p = dir.join("garbage.safetensors");
    std::fs::write(&p, b"\xff\xff\xff\xff\xff\xff\xff\x7fnot a header").unwrap();
    let msg = FasterRcnn::load(&p).err().unwrap().to_string();
    assert!(msg.contains("garbage.safetensors"), "{msg}");
    let mut wf = weights();
    wf.metadata
        .insert("classes".into(), "__background__,mitochondria".into()); // fixture has K = 3
    assert!(load_err(wf).contains("names 2 classes"));
}

#[test]
fn save_and_reload_roundtrip_f32_and_f16() {
    let model = FasterRcnn::load(fixture_path("model/weights_small.safetensors")).unwrap();
    let dir = temp_dir("rt");
    for (prec, tol) in [
        (cryodet::io::weights::Precision::F32, EXACT),
        (cryodet::io::weights::Precision::F16, 1e-3),
    ] {
        let p = dir.join(format!("{prec:?}.safetensors"));
        model.save(&p, prec).unwrap();
        let back = FasterRcnn::load(&p).unwrap();
        assert_eq!(back.classes, model.classes);
        for ((n1, a), (n2, b)) in back.export().iter().zip(model.export().iter()) {
            assert_eq!(n1, n2);
            assert_close(n1, a.view(), b.view(), tol);
        }
    }
}
