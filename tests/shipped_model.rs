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
    let m = cryodet::model::FasterRcnn::load(root().join("weights/default.safetensors")).expect("shipped weights load");
    assert_eq!(m.classes, vec!["__background__".to_string(), "mitochondria".to_string()]);
    let size: usize = m.info.get("min_size").expect("min_size recorded").parse().unwrap();
    assert!((128..=1000).contains(&size));
    assert!(m.info.contains_key("preprocess"));
}

#[test]
fn readme_detect_command_runs_on_the_shipped_example() {
    let out = std::env::temp_dir().join(format!("cryodet-shipped-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(env!("CARGO_BIN_EXE_cryodet"))
        .current_dir(root())
        .args(["detect", "weights/example.png", "--overlay", "--gt", "weights", "--out"])
        .arg(&out)
        .env_remove("CRYODET_WEIGHTS")
        .output()
        .expect("run cryodet");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let d = cryodet::io::detections::read_image_detections(out.join("example.json")).unwrap();
    assert_eq!((d.width, d.height), (384, 384));
    for det in &d.detections {
        assert!(det.score >= 0.5 && det.label == "mitochondria", "{det:?}");
    }
    assert!(out.join("example.overlay.png").is_file() && out.join("example.csv").is_file());
}
