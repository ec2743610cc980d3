//! The shipped default model (weights/default.safetensors) loads, records how it was trained,
//! and runs on the shipped example through the binary exactly as README's first command does.
//! Its accuracy is measured on a fresh synthetic test set by the command in weights/README.md.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn default_model_loads_with_its_training_metadata() {
    let m = cryodet::model::FasterRcnn::load(root().join("weights/default.safetensors"))
        .expect("shipped weights load");
    assert_eq!(
        m.classes,
        vec!["__background__".to_string(), "mitochondria".to_string()]
    );
    let size: usize = m
        .info
        .get("min_size")
        .expect("min_size recorded")
        .parse()
        .unwrap();
    assert!((128..=1000).contains(&size));
    assert!(m.info.contains_key("preprocess"));
    let t = cryodet::pipeline::recommended_score_thresh(&m).expect("score_thresh recorded");
    assert!(t > 0.05 && t < 1.0, "score_thresh {t}");
}

#[test]
fn readme_detect_command_runs_on_the_shipped_example() {
    let out = std::env::temp_dir().join(format!("cryodet-shipped-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(env!("CARGO_BIN_EXE_cryodet"))
        .current_dir(root())
        .args([
            "detect",
            "weights/example.png",
            "--overlay",
            "--gt",
            "weights",
            "--out",
        ])
        .arg(&out)
        .env_remove("CRYODET_WEIGHTS")
        .output()
        .expect("run cryodet");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let d = cryodet::io::detections::read_image_detections(out.join("example.json")).unwrap();
    assert_eq!((d.width, d.height), (1536, 1536));
    let m = cryodet::model::FasterRcnn::load(root().join("weights/default.safetensors")).unwrap();
    let t = cryodet::pipeline::recommended_score_thresh(&m).unwrap();
    assert!(
        !d.detections.is_empty(),
        "no detection on the shipped example"
    );
    for det in &d.detections {
        assert!(det.score >= t && det.label == "mitochondria", "{det:?}");
    }
    // The example (seed 7, not in the training set) has 4 mitochondria: each is found at IoU 0.5.
    let gt = cryodet::io::voc::read_voc(&root().join("weights/example.xml")).unwrap();
    for o in &gt.objects {
        let best = d
            .detections
            .iter()
            .map(|det| cryodet::detection::nms::iou(&o.bbox, &det.bbox))
            .fold(0.0f32, f32::max);
        assert!(best >= 0.5, "ground truth {:?}: best IoU {best}", o.bbox);
    }
    assert!(out.join("example.overlay.png").is_file() && out.join("example.csv").is_file());
}
