//! `cryodet detect` end to end through the binary, with the reduced-width fixture weights
//! (random weights: the boxes mean nothing, the files and their invariants do).

use cryodet::io::detections::{read_image_detections, read_stack_detections};
use cryodet::testutil::{fixture_path, temp_dir};
use std::path::Path;
use std::process::Command;

fn cryodet(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cryodet"))
        .args(args)
        .output()
        .expect("run cryodet");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A 16-bit gray PNG with a bright ring on a noisy background (deterministic).
fn write_png16(path: &Path, w: u32, h: u32) {
    let img = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - w as f32 / 2.0, y as f32 - h as f32 / 2.0);
        let r = (dx * dx + dy * dy).sqrt();
        let ring = if (r - 40.0).abs() < 4.0 { 20000.0 } else { 0.0 };
        let noise = ((x * 7919 + y * 104729) % 1000) as f32 * 10.0;
        image::Luma([(10000.0 + ring + noise) as u16])
    });
    img.save(path).unwrap();
}

fn weights() -> String {
    fixture_path("model/weights_small.safetensors")
        .display()
        .to_string()
}

#[test]
fn detect_writes_json_csv_voc_overlay_with_boxes_inside_the_image() {
    let dir = temp_dir("cli-formats");
    let img = dir.join("cell_01.png");
    write_png16(&img, 211, 157);
    let out = dir.join("out");
    let (code, err) = cryodet(&[
        "detect",
        img.to_str().unwrap(),
        "--weights",
        &weights(),
        "--out",
        out.to_str().unwrap(),
        "--format",
        "json,csv,voc",
        "--overlay",
        "--score-thresh",
        "0.0",
        "--size",
        "160",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("[1/1]"), "progress line expected: {err}");
    let d = read_image_detections(out.join("cell_01.json")).unwrap();
    assert_eq!((d.width, d.height), (211, 157));
    assert!(
        !d.detections.is_empty(),
        "random weights with threshold 0 give detections"
    );
    for det in &d.detections {
        let [x1, y1, x2, y2] = det.bbox;
        assert!(
            0.0 <= x1 && x1 < x2 && x2 <= 211.0 && 0.0 <= y1 && y1 < y2 && y2 <= 157.0,
            "{:?}",
            det.bbox
        );
        assert!(det.class_id >= 1 && !det.label.is_empty());
    }
    let csv = std::fs::read_to_string(out.join("cell_01.csv")).unwrap();
    assert_eq!(csv.lines().count(), d.detections.len() + 1);
    let voc = cryodet::io::voc::read_voc(&out.join("cell_01.xml")).unwrap();
    assert_eq!(voc.objects.len(), d.detections.len());
    assert!(out.join("cell_01.overlay.png").is_file());
}

#[test]
fn detect_continues_past_bad_files_and_exits_nonzero() {
    let dir = temp_dir("cli-bad");
    let good = dir.join("good.png");
    write_png16(&good, 120, 100);
    let truncated = dir.join("truncated.png");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let missing = dir.join("missing.tif");
    let out = dir.join("out");
    let (code, err) = cryodet(&[
        "detect",
        truncated.to_str().unwrap(),
        missing.to_str().unwrap(),
        good.to_str().unwrap(),
        "--weights",
        &weights(),
        "--out",
        out.to_str().unwrap(),
        "--size",
        "128",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("truncated.png") && err.contains("missing.tif"),
        "{err}"
    );
    assert!(err.contains("2 of 3 input(s) failed"), "{err}");
    assert!(
        out.join("good.json").is_file(),
        "the good input is still processed"
    );
}

#[test]
fn detect_mrc_slices_and_3d_linking() {
    let dir = temp_dir("cli-mrc");
    let stack = dir.join("tomo.mrc");
    let vol = ndarray::Array3::from_shape_fn((5, 90, 110), |(z, y, x)| {
        ((x * 31 + y * 17 + z * 7) % 97) as f32 / 97.0
    });
    cryodet::io::mrc::write_mrc(&stack, vol.view(), 2, 10.0).unwrap();
    let out = dir.join("out");
    let (code, err) = cryodet(&[
        "detect",
        stack.to_str().unwrap(),
        "--weights",
        &weights(),
        "--out",
        out.to_str().unwrap(),
        "--slices",
        "1:4",
        "--3d",
        "--score-thresh",
        "0.0",
        "--size",
        "96",
    ]);
    assert_eq!(code, 0, "{err}");
    let s = read_stack_detections(out.join("tomo.json")).unwrap();
    assert_eq!((s.width, s.height, s.depth), (110, 90, 5));
    assert_eq!(
        s.slices.iter().map(|x| x.z).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    for f in [
        "tomo.objects.json",
        "tomo.objects.csv",
        "tomo.objects.txt",
        "tomo.montage.png",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
}

#[test]
fn detect_shard_takes_every_nth_input() {
    let dir = temp_dir("cli-shard");
    for i in 0..5 {
        write_png16(&dir.join(format!("img{i}.png")), 64, 48);
    }
    let out = dir.join("out");
    let (code, err) = cryodet(&[
        "detect",
        dir.to_str().unwrap(),
        "--weights",
        &weights(),
        "--out",
        out.to_str().unwrap(),
        "--shard",
        "1/2",
        "--size",
        "64",
    ]);
    assert_eq!(code, 0, "{err}");
    let mut made: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    made.sort();
    assert_eq!(made, vec!["img1.json", "img3.json"]);
    let (code, err) = cryodet(&[
        "detect",
        dir.to_str().unwrap(),
        "--weights",
        &weights(),
        "--shard",
        "2/2",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--shard"), "{err}");
}

/// `cryodet link` on a hand-written stack file detected with stride 3 (z = 0, 3, ..., 27):
/// one organelle on z 0..=15 with a fragment on z 9 and a box missing on z 12 (bridged), one on
/// z 18..=27 of another class, and a lone box on z 24 (dropped by --min-slices 3).
#[test]
fn link_relinks_a_stack_file_with_inferred_stride() {
    use cryodet::io::detections::{write_json, Detection, SliceDetections, StackDetections};
    let dir = temp_dir("cli-link");
    let det = |b: [f32; 4], class_id: usize| Detection {
        bbox: b,
        score: 0.9,
        label: if class_id == 1 {
            "mitochondria"
        } else {
            "vesicle"
        }
        .into(),
        class_id,
    };
    let slices = (0..30)
        .step_by(3)
        .map(|z| {
            let mut d = Vec::new();
            if z <= 15 && z != 12 {
                d.push(det([10.0, 10.0, 50.0, 40.0], 1));
            }
            if z == 9 {
                d.push(det([12.0, 12.0, 30.0, 38.0], 1)); // fragment, inside the whole
            }
            if z >= 18 {
                d.push(det([60.0, 5.0, 80.0, 25.0], 2));
            }
            if z == 24 {
                d.push(det([100.0, 100.0, 110.0, 110.0], 1));
            }
            SliceDetections { z, detections: d }
        })
        .collect();
    let stack = StackDetections {
        precision: None,
        image: "tomo.mrc".into(),
        width: 128,
        height: 120,
        depth: 30,
        slices,
    };
    let file = dir.join("tomo.json");
    write_json(&file, &stack).unwrap();
    let out = dir.join("objects");
    let (code, err) = cryodet(&[
        "link",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let objs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tomo.objects.json")).unwrap())
            .unwrap();
    let objs = objs["objects"].as_array().unwrap();
    assert_eq!(objs.len(), 2, "{objs:?}");
    let (a, b) = (&objs[0], &objs[1]);
    assert_eq!(a["class"], "mitochondria");
    assert_eq!(
        a["bbox3d"],
        serde_json::json!([10.0, 10.0, 0.0, 50.0, 40.0, 16.0])
    );
    assert_eq!(a["n_slices"], 5); // z 0, 3, 6, 9, 15 (12 bridged, fragment dropped)
    assert_eq!(b["class"], "vesicle");
    assert_eq!(
        b["bbox3d"],
        serde_json::json!([60.0, 5.0, 18.0, 80.0, 25.0, 28.0])
    );
    let csv = std::fs::read_to_string(out.join("tomo.objects.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3);
    assert!(out.join("tomo.objects.txt").is_file());
    // with stride 1 the z-gap 12 -> 15 is three missing slices (> max_gap 2): two objects
    let (code, err) = cryodet(&[
        "link",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--stride",
        "1",
        "--min-slices",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(out.join("tomo.objects.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["objects"].as_array().unwrap().len(), 4, "{text}");
    // a hand-edited file with a huge class id: linked, named by the fallback `class_N`
    let mut huge = stack.clone();
    for s in huge.slices.iter_mut() {
        for d in s.detections.iter_mut() {
            d.class_id = 4_000_000_000;
        }
    }
    let huge_file = dir.join("huge.json");
    write_json(&huge_file, &huge).unwrap();
    let (code, err) = cryodet(&[
        "link",
        huge_file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(out.join("huge.objects.csv")).unwrap();
    assert!(text.contains("class_4000000000"), "{text}");
    // errors: one line naming the file; bad options
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"image\": 3}").unwrap();
    let (code, err) = cryodet(&[
        "link",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("bad.json") && err.contains("not a stack detection file"),
        "{err}"
    );
    let (code, err) = cryodet(&["link", file.to_str().unwrap(), "--link-iou", "0"]);
    assert_ne!(code, 0);
    assert!(err.contains("--link-iou"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}
