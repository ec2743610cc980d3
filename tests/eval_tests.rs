//! Evaluation: AP against pycocotools and the VOC devkit (fixture from tools/check_ap.py),
//! hand-computed edge cases, the detection file schema, and the report files.

use cryodet::eval::{evaluate, EvalConfig, GtBox, ImageEval, PredBox, Summary};
use cryodet::io::detections::{self, Detection, ImageDetections};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// pycocotools averages its 101 samples with numpy's pairwise sum; ours is sequential.
const COCO_TOL: f64 = 1e-6;
/// The VOC APs follow the same f64 operations as the Python port.
const VOC_TOL: f64 = 1e-9;
/// Hand-computed values (a few f64 operations).
const EXACT: f64 = 1e-12;

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/eval")
        .join(name)
}

fn f32_of(v: &Value) -> f32 {
    v.as_f64().expect("number") as f32
}

fn box_of(v: &Value) -> [f32; 4] {
    let a = v.as_array().expect("box array");
    [f32_of(&a[0]), f32_of(&a[1]), f32_of(&a[2]), f32_of(&a[3])]
}

/// `im[key]`, an array, each element made into a `T` by `f`.
fn boxes<T>(im: &Value, key: &str, f: impl Fn(&Value) -> T) -> Vec<T> {
    im[key].as_array().expect(key).iter().map(f).collect()
}

fn class_of(b: &Value) -> String {
    b["class"].as_str().expect("class").to_string()
}

fn load_reference() -> (Vec<ImageEval>, Value) {
    let text = std::fs::read_to_string(fixture_path("ap_reference.json"))
        .expect("tests/fixtures/eval/ap_reference.json (run tools/check_ap.py)");
    let v: Value = serde_json::from_str(&text).expect("fixture JSON");
    let images = v["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|im| ImageEval {
            name: im["name"].as_str().expect("name").to_string(),
            group: None,
            gt: boxes(im, "gt", |g| GtBox {
                bbox: box_of(&g["box"]),
                class: class_of(g),
                difficult: false,
                incomplete: false,
            }),
            pred: boxes(im, "pred", |p| PredBox {
                bbox: box_of(&p["box"]),
                class: class_of(p),
                score: f32_of(&p["score"]),
            }),
        })
        .collect();
    (images, v)
}

fn iou_list(v: &Value) -> Vec<f64> {
    v["iou_thresholds"]
        .as_array()
        .expect("ious")
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Compares one AP kind (per class, per IoU) to the fixture; prints every value on failure.
fn check_against(
    report: &cryodet::eval::EvalReport,
    expected: &Value,
    get: fn(&Summary) -> Option<f64>,
    tol: f64,
    what: &str,
) {
    let mut worst = 0.0f64;
    let mut failures = Vec::new();
    for (class, vals) in expected.as_object().expect("per-class object") {
        let cr = report
            .per_class
            .iter()
            .find(|c| &c.class == class)
            .unwrap_or_else(|| panic!("{what}: class {class} missing from the report"));
        for (t, ev) in vals.as_array().expect("per-iou").iter().enumerate() {
            let got = get(&cr.per_iou[t]);
            match (ev.as_f64(), got) {
                (None, None) => {}
                (Some(e), Some(g)) => {
                    let d = (e - g).abs();
                    worst = worst.max(d);
                    if d > tol {
                        failures.push(format!(
                            "{class} @ iou[{t}]: expected {e}, got {g}, diff {d:e}"
                        ));
                    }
                }
                (e, g) => failures.push(format!("{class} @ iou[{t}]: expected {e:?}, got {g:?}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{what}: max abs diff {worst:e} (tol {tol:e}); failures: {failures:#?}"
    );
    eprintln!("{what}: max abs diff {worst:e} (tol {tol:e})");
}

#[test]
fn ap_matches_pycocotools_and_voc_devkit() {
    let (images, v) = load_reference();
    let cfg = EvalConfig {
        iou_thresholds: iou_list(&v),
        ..EvalConfig::default()
    };
    let report = evaluate(&images, &cfg);
    let exp = &v["expected"];
    check_against(
        &report,
        &exp["coco101"],
        |s| s.ap_coco101,
        COCO_TOL,
        "COCO 101-point (maxDets 100)",
    );
    check_against(
        &report,
        &exp["voc_all_point"],
        |s| s.ap_all_point,
        VOC_TOL,
        "VOC all-point",
    );
    check_against(
        &report,
        &exp["voc_11_point"],
        |s| s.ap_11_point,
        VOC_TOL,
        "VOC 11-point",
    );

    // The fixture has an object found only beyond the 100th detection: without the maxDets cut
    // the COCO value changes, and matches pycocotools run with an unbounded maxDets.
    let cfg_all = EvalConfig {
        coco_max_dets: usize::MAX,
        ..cfg
    };
    let report_all = evaluate(&images, &cfg_all);
    check_against(
        &report_all,
        &exp["coco101_max_dets_unbounded"],
        |s| s.ap_coco101,
        COCO_TOL,
        "COCO 101-point (maxDets unbounded)",
    );
    let mito_ap = |r: &cryodet::eval::EvalReport| {
        let mito = r.per_class.iter().find(|c| c.class == "mito").unwrap();
        mito.per_iou[0].ap_coco101.unwrap()
    };
    let (a, b) = (mito_ap(&report), mito_ap(&report_all));
    assert!(
        (a - b).abs() > 1e-3,
        "maxDets should matter on this fixture: {a} vs {b}"
    );
}

fn gt(b: [f32; 4], class: &str) -> GtBox {
    GtBox {
        bbox: b,
        class: class.into(),
        difficult: false,
        incomplete: false,
    }
}

fn pred(b: [f32; 4], class: &str, score: f32) -> PredBox {
    PredBox {
        bbox: b,
        class: class.into(),
        score,
    }
}

fn image(name: &str, gt: Vec<GtBox>, pred: Vec<PredBox>) -> ImageEval {
    ImageEval {
        name: name.into(),
        group: None,
        gt,
        pred,
    }
}

fn cfg(ious: &[f64]) -> EvalConfig {
    EvalConfig {
        iou_thresholds: ious.to_vec(),
        ..EvalConfig::default()
    }
}

fn close(name: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "{name}: got {got}, want {want}, diff {:e}",
        (got - want).abs()
    );
}

/// The summary of the first class at IoU 0.5 on one image with ground truth `gt` and
/// predictions `pred`.
fn first_class_at_05(gt: Vec<GtBox>, pred: Vec<PredBox>) -> Summary {
    let r = evaluate(&[image("a", gt, pred)], &cfg(&[0.5]));
    r.per_class[0].per_iou[0].clone()
}

const A: [f32; 4] = [10.0, 10.0, 50.0, 50.0];
const B: [f32; 4] = [100.0, 100.0, 140.0, 160.0];

#[test]
fn no_predictions_at_all() {
    let s = &first_class_at_05(vec![gt(A, "mito"), gt(B, "mito")], vec![]);
    assert_eq!((s.tp, s.fp, s.fn_), (0, 0, 2));
    assert_eq!(s.ap_all_point, Some(0.0));
    assert_eq!(s.ap_coco101, Some(0.0));
    assert_eq!(
        (s.precision, s.recall, s.f1),
        (1.0, 0.0, 0.0),
        "0/0 := 1 for precision"
    );
    assert_eq!(s.miou, None);
    assert_eq!(s.best_f1_threshold, None);
}

#[test]
fn images_without_ground_truth_only_add_false_positives() {
    let with = vec![
        image("a", vec![gt(A, "mito")], vec![pred(A, "mito", 0.6)]),
        image("empty", vec![], vec![pred(B, "mito", 0.9)]),
    ];
    let r = evaluate(&with, &cfg(&[0.5]));
    let s = &r.per_class[0].per_iou[0];
    // Ranking: FP (0.9), TP (0.6) -> recall 0, 1; precision 0, 1/2: AP = 1 * 1/2.
    close("ap_all_point", s.ap_all_point.unwrap(), 0.5, EXACT);
    assert_eq!((s.tp, s.fp, s.fn_), (1, 1, 0));
    // Best F1: cut at 0.6 (P = 1/2, R = 1) -> 2/3; cut at 0.9 gives 0.
    close("best_f1", s.best_f1, 2.0 / 3.0, EXACT);
    assert_eq!(s.best_f1_threshold, Some(0.6f32 as f64));
    // The empty image alone: nothing to find, one false alarm.
    let img = &r.images[1].summary;
    assert_eq!((img.n_gt, img.tp, img.fp, img.f1), (0, 0, 1, 0.0));
    assert_eq!(
        img.ap_all_point, None,
        "AP is undefined without ground truth"
    );
    // An empty image with no detection is perfect.
    let r = evaluate(&[image("e", vec![], vec![])], &cfg(&[0.5]));
    assert_eq!(r.images[0].summary.f1, 1.0);
    assert!(r.per_class.is_empty());
}

#[test]
fn duplicate_detections_are_false_positives() {
    let a2 = [12.0, 10.0, 52.0, 50.0];
    let preds = [(A, 0.9), (a2, 0.8), (B, 0.7)].map(|(b, sc)| pred(b, "mito", sc));
    let s = &first_class_at_05(vec![gt(A, "mito"), gt(B, "mito")], preds.to_vec());
    assert_eq!((s.tp, s.fp, s.fn_), (2, 1, 0));
    // TP, FP, TP with 2 GT: (1/2)*1 + (1/2)*(2/3).
    close(
        "ap_all_point",
        s.ap_all_point.unwrap(),
        0.5 + 0.5 * 2.0 / 3.0,
        EXACT,
    );
    // mIoU over the TP pairs: both exact boxes -> 1.
    close("miou", s.miou.unwrap(), 1.0, EXACT);
}

#[test]
fn boxes_partly_outside_the_image_use_their_full_extent() {
    // GT clipped at the border [0,0,40,40]; the prediction extends outside, [-10,0,40,40]:
    // IoU = 1600 / 2000 = 0.8 (no clipping by the evaluator).
    let ims = vec![image(
        "a",
        vec![gt([0.0, 0.0, 40.0, 40.0], "mito")],
        vec![pred([-10.0, 0.0, 40.0, 40.0], "mito", 0.9)],
    )];
    let r = evaluate(&ims, &cfg(&[0.7, 0.8, 0.9]));
    let s = &r.per_class[0].per_iou;
    assert_eq!(s[0].tp, 1);
    assert_eq!(s[1].tp, 1, "IoU 0.8 >= threshold 0.8");
    assert_eq!(s[2].tp, 0);
    close("miou", s[0].miou.unwrap(), 0.8, 1e-7);
}

#[test]
fn class_absent_from_predictions_and_from_ground_truth() {
    let ims = vec![image(
        "a",
        vec![gt(A, "mito"), gt(B, "vesicle")],
        vec![
            pred(A, "mito", 0.9),
            pred([200.0, 200.0, 220.0, 220.0], "ghost", 0.9),
        ],
    )];
    let r = evaluate(&ims, &cfg(&[0.5]));
    assert_eq!(r.classes, vec!["ghost", "mito", "vesicle"]);
    let get = |c: &str| &r.per_class.iter().find(|x| x.class == c).unwrap().per_iou[0];
    assert_eq!(get("vesicle").ap_all_point, Some(0.0));
    assert_eq!(get("ghost").ap_all_point, None);
    assert_eq!(get("mito").ap_all_point, Some(1.0));
    // mAP over the classes with ground truth: (1 + 0) / 2; pooled: TP (0.9) and FP (0.9) tied,
    // in input order: mito first -> TP then FP, 2 GT -> AP 1/2.
    let o = &r.overall[0];
    close("map", o.map_all_point.unwrap(), 0.5, EXACT);
    close("pooled ap", o.pooled.ap_all_point.unwrap(), 0.5, EXACT);
    assert_eq!((o.pooled.tp, o.pooled.fp, o.pooled.fn_), (1, 1, 1));
}

#[test]
fn difficult_objects_are_neither_missed_nor_found() {
    let mut d = gt(B, "mito");
    d.difficult = true;
    let preds = [(B, 0.95), (B, 0.9), (A, 0.8)].map(|(b, sc)| pred(b, "mito", sc));
    let s = &first_class_at_05(vec![gt(A, "mito"), d], preds.to_vec());
    assert_eq!(s.n_gt, 1, "difficult ground truth is not counted");
    assert_eq!(s.n_ignored, 2);
    assert_eq!((s.tp, s.fp, s.fn_), (1, 0, 0));
    assert_eq!(s.ap_all_point, Some(1.0));
}

#[test]
fn score_threshold_and_groups() {
    let mut ims = vec![
        image("t1_000", vec![gt(A, "mito")], vec![pred(A, "mito", 0.9)]),
        image("t1_001", vec![gt(A, "mito")], vec![pred(A, "mito", 0.3)]),
        image("t2_000", vec![gt([0.0, 0.0, 30.0, 30.0], "mito")], vec![]),
    ];
    for im in &mut ims {
        im.group = Some(cryodet::eval::dataset::group_of_stem(&im.name));
    }
    ims[2].gt[0].incomplete = true;
    let r = evaluate(&ims, &cfg(&[0.5, 0.7]));
    // At score >= 0.5: 1 TP, 0 FP, 2 FN.
    let p = &r.overall[0].pooled;
    assert_eq!((p.tp, p.fp, p.fn_), (1, 0, 2));
    close("recall", p.recall, 1.0 / 3.0, EXACT);
    close("f1", p.f1, 0.5, EXACT);
    // Best F1 keeps both detections: P = 1, R = 2/3 -> 0.8 at threshold 0.3.
    close("best_f1", p.best_f1, 0.8, EXACT);
    assert_eq!(p.best_f1_threshold, Some(0.3f32 as f64));
    assert_eq!(r.groups.len(), 2);
    let (g1, g2) = (&r.groups[0], &r.groups[1]);
    assert_eq!(
        (g1.group.as_str(), g1.n_images, g1.n_incomplete),
        ("t1", 2, 0)
    );
    assert_eq!(
        (g2.group.as_str(), g2.n_images, g2.n_incomplete),
        ("t2", 1, 1)
    );
    assert_eq!(g1.ap, Some(1.0));
    assert_eq!(g2.ap, Some(0.0));
    close("t1 f1", g1.summary.f1, 2.0 / 3.0, EXACT);
}

#[test]
fn detection_files_round_trip_and_errors_name_the_file() {
    let dir = cryodet::testutil::temp_dir("eval-det");
    let d = ImageDetections {
        precision: None,
        image: "tomo_001.png".into(),
        width: 300,
        height: 200,
        detections: vec![Detection {
            bbox: [1.5, 2.0, 30.25, 40.0],
            score: 0.75,
            label: "mitochondria".into(),
            class_id: 1,
        }],
    };
    let p = dir.join("tomo_001.json");
    detections::write_json(&p, &d).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains("\"box\""), "the field is named `box`: {text}");
    assert_eq!(detections::read_image_detections(&p).unwrap(), d);

    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"image": "x", "width": 3, "height": 3, "detections": [{"box": [1, 2, 3], "score": 1, "label": "m", "class_id": 1}]}"#).unwrap();
    let e = detections::read_image_detections(&bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.json"), "{e}");
    let inverted = dir.join("inverted.json");
    std::fs::write(&inverted, r#"{"image": "x", "width": 3, "height": 3, "detections": [{"box": [5, 2, 3, 4], "score": 1, "label": "m", "class_id": 1}]}"#).unwrap();
    let e = detections::read_image_detections(&inverted)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("inverted.json") && e.contains("inverted box"),
        "{e}"
    );

    let csv = dir.join("d.csv");
    detections::write_csv(
        &csv,
        &[
            ("tomo.mrc".into(), Some(3), d.detections[0].clone()),
            ("a,b.png".into(), None, d.detections[0].clone()),
        ],
    )
    .unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "image,z,x1,y1,x2,y2,score,label,class_id");
    assert_eq!(lines[1], "tomo.mrc,3,1.5,2,30.25,40,0.75,mitochondria,1");
    assert_eq!(lines[2], "\"a,b.png\",,1.5,2,30.25,40,0.75,mitochondria,1");
    std::fs::remove_dir_all(&dir).ok();
}

/// A gray test image with bright ellipses inside the given boxes.
fn synthetic_image(w: u32, h: u32, boxes: &[[f32; 4]]) -> image::GrayImage {
    image::GrayImage::from_fn(w, h, |x, y| {
        let (xf, yf) = (x as f32 + 0.5, y as f32 + 0.5);
        let inside = boxes.iter().any(|b| {
            let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
            let (rx, ry) = ((b[2] - b[0]) / 2.0, (b[3] - b[1]) / 2.0);
            ((xf - cx) / rx).powi(2) + ((yf - cy) / ry).powi(2) <= 1.0
        });
        image::Luma([if inside {
            200
        } else {
            40 + ((x + y) % 30) as u8
        }])
    })
}

#[test]
fn report_files_plots_and_overlays() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("eval_report");
    let img_dir = out.join("images");
    std::fs::create_dir_all(&img_dir).unwrap();
    let objects: [[f32; 4]; 3] = [
        [20.0, 30.0, 90.0, 80.0],
        [150.0, 40.0, 230.0, 150.0],
        [0.0, 120.0, 60.0, 190.0],
    ];
    let mut images = Vec::new();
    for k in 0..4u32 {
        let name = format!("tomoA_{k:03}");
        synthetic_image(320, 200, &objects)
            .save(img_dir.join(format!("{name}.png")))
            .unwrap();
        let shift = 3.0 * k as f32;
        let mut gts: Vec<GtBox> = objects.iter().map(|&b| gt(b, "mitochondria")).collect();
        gts[2].incomplete = true;
        let mut preds: Vec<PredBox> = objects[..2 + (k % 2) as usize]
            .iter()
            .enumerate()
            .map(|(j, b)| {
                pred(
                    [b[0] + shift, b[1] - shift, b[2] + shift, b[3]],
                    "mitochondria",
                    0.95 - 0.1 * j as f32,
                )
            })
            .collect();
        preds.push(pred(
            [250.0, 150.0, 300.0, 190.0],
            "mitochondria",
            0.55 + 0.1 * k as f32,
        ));
        images.push(ImageEval {
            name,
            group: Some("tomoA".into()),
            gt: gts,
            pred: preds,
        });
    }
    let cfg = EvalConfig::default();
    let report = evaluate(&images, &cfg);
    cryodet::eval::write_report(&out, &report, &images, Some(&img_dir)).unwrap();

    for f in ["metrics.json", "report.md", "pr_curve.png", "ap_vs_iou.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| tomoA | 4 |"), "group row missing:\n{md}");
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["overall"].as_array().unwrap().len(), 5);
    assert_eq!(metrics["groups"][0]["n_incomplete"], 4);

    let pr = image::open(out.join("pr_curve.png")).unwrap().to_rgb8();
    assert_eq!((pr.width(), pr.height()), (1000, 600));
    // Every image has an FP at score >= 0.5, so all 4 have F1 < 1 and get an overlay.
    let ov = image::open(out.join("overlays/tomoA_000.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!((ov.width(), ov.height()), (320, 200));
    // Ground truth [150, 40, 230, 150]: its left edge is red; the detection (k = 0, no shift)
    // coincides and is drawn on top in blue; the GT [20, 30, 90, 80] bottom edge stays red
    // where the detection (bottom 80 too) ... so check a GT-only box: the third object has no
    // detection for k = 0.
    assert_eq!(ov.get_pixel(0, 150).0, cryodet::eval::report::GT_COLOR);
    assert_eq!(
        ov.get_pixel(1, 199).0,
        [0, 0, 0],
        "legend bar at the bottom"
    );
    // The FP [250, 150, 300, 190]: its left edge, above the legend (two lines on this 320 px
    // image: its top is at y = 200 - 42).
    assert_eq!(ov.get_pixel(250, 155).0, cryodet::eval::report::PRED_COLOR);
    eprintln!("report written to {}", out.display());
}

#[test]
fn font_sheet_renders_every_printable_character() {
    let chars: String = (0x20u8..=0x7e).map(|c| c as char).collect();
    let mut img = image::RgbImage::from_pixel(640, 130, image::Rgb([255, 255, 255]));
    for (row, chunk) in chars.as_bytes().chunks(32).enumerate() {
        let line = std::str::from_utf8(chunk).unwrap();
        cryodet::draw::draw_text(&mut img, 8, 8 + 40 * row as i32, line, [0, 0, 0], 3);
    }
    // Every glyph but the space sets at least one pixel in its cell.
    for (k, c) in chars.chars().enumerate().skip(1) {
        let (row, col) = (k / 32, k % 32);
        let (x0, y0) = (8 + col as u32 * 18, 8 + row as u32 * 40);
        let inked =
            (x0..x0 + 15).any(|x| (y0..y0 + 24).any(|y| img.get_pixel(x, y).0 == [0, 0, 0]));
        assert!(inked, "glyph {c:?} is empty");
    }
    img.save(Path::new(env!("CARGO_TARGET_TMPDIR")).join("font_sheet.png"))
        .unwrap();
}

/// `(file stem, VOC objects (xmin, ymin, xmax, ymax), name, truncated, difficult), detections)`.
type Slice = (&'static str, Vec<VocObj>, Vec<([f32; 4], f32)>);
type VocObj = ([u32; 4], &'static str, bool, bool);

fn labelimg_xml(file: &str, w: u32, h: u32, objects: &[VocObj]) -> String {
    let mut s = format!(
        "<annotation>\n\t<folder>images</folder>\n\t<filename>{file}</filename>\n\t<path>/data/{file}</path>\n\
         \t<source>\n\t\t<database>Unknown</database>\n\t</source>\n\
         \t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>1</depth>\n\t</size>\n\t<segmented>0</segmented>\n"
    );
    for (b, name, truncated, difficult) in objects {
        s += &format!(
            "\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>{}</truncated>\n\
             \t\t<difficult>{}</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{}</xmin>\n\t\t\t<ymin>{}</ymin>\n\
             \t\t\t<xmax>{}</xmax>\n\t\t\t<ymax>{}</ymax>\n\t\t</bndbox>\n\t</object>\n",
            *truncated as u8, *difficult as u8, b[0], b[1], b[2], b[3]
        );
    }
    s + "</annotation>\n"
}

#[test]
fn cli_eval_end_to_end() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("eval_cli");
    let _ = std::fs::remove_dir_all(&root);
    let (gt_dir, pred_dir, out) = (root.join("gt"), root.join("pred"), root.join("out"));
    std::fs::create_dir_all(&gt_dir).unwrap();
    std::fs::create_dir_all(&pred_dir).unwrap();
    // Two tomograms: "Unstim_20k_mito1" (2 slices, one object touching the border) and "INS_21"
    // (1 slice, missed object). VOC boxes are 1-based inclusive: xmin 21 -> x1 = 20.
    let slices: [Slice; 3] = [
        (
            "Unstim_20k_mito1_001",
            vec![([21, 31, 90, 80], "mitochondria", false, false)],
            vec![([20.0, 30.0, 90.0, 80.0], 0.9)],
        ),
        (
            "Unstim_20k_mito1_002",
            vec![
                ([1, 50, 60, 120], "mitochondria", false, false),
                ([150, 40, 230, 150], "mitochondria", false, false),
            ],
            vec![
                ([0.0, 49.0, 60.0, 120.0], 0.8),
                ([152.0, 40.0, 230.0, 150.0], 0.7),
                ([250.0, 10.0, 300.0, 60.0], 0.6),
            ],
        ),
        (
            "INS_21_001",
            vec![([100, 100, 120, 118], "mitochondria", false, false)],
            vec![([10.0, 10.0, 40.0, 40.0], 0.55)],
        ),
    ];
    for (stem, gts, preds) in &slices {
        std::fs::write(
            gt_dir.join(format!("{stem}.xml")),
            labelimg_xml(&format!("{stem}.png"), 320, 200, gts),
        )
        .unwrap();
        let d = ImageDetections {
            precision: None,
            image: format!("{stem}.png"),
            width: 320,
            height: 200,
            detections: preds
                .iter()
                .map(|(b, s)| Detection {
                    bbox: *b,
                    score: *s,
                    label: "mitochondria".into(),
                    class_id: 1,
                })
                .collect(),
        };
        detections::write_json(pred_dir.join(format!("{stem}.json")), &d).unwrap();
    }
    let exe = env!("CARGO_BIN_EXE_cryodet");
    let run = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("eval")
            .arg("--gt")
            .arg(&gt_dir)
            .arg("--out")
            .arg(&out)
            .args(extra);
        cmd.output().expect("run cryodet")
    };
    // A run that must succeed: its metrics.json.
    let metrics = |extra: &[&str]| -> Value {
        let o = run(extra);
        assert!(
            o.status.success(),
            "stderr: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap()
    };
    let m = metrics(&["--pred", pred_dir.to_str().unwrap()]);
    let groups = m["groups"].as_array().unwrap();
    let names: Vec<&str> = groups
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["INS_21", "Unstim_20k_mito1"],
        "groups in file order"
    );
    // Unstim: 3 GT, 3 TP at IoU 0.7 (the 152-shifted box has IoU 78/80 = 0.975), 1 FP; F1 = 6/7.
    let u = &groups[1];
    assert_eq!(
        (u["summary"]["tp"].as_u64(), u["summary"]["fp"].as_u64()),
        (Some(3), Some(1))
    );
    close(
        "Unstim F1",
        u["summary"]["f1"].as_f64().unwrap(),
        6.0 / 7.0,
        EXACT,
    );
    assert_eq!(
        u["n_incomplete"], 1,
        "the box with xmin = 1 touches the border"
    );
    assert_eq!(groups[0]["summary"]["f1"].as_f64(), Some(0.0));

    // A manifest overrides the prefix rule.
    let manifest = root.join("groups.tsv");
    std::fs::write(
        &manifest,
        "image\tgroup\nUnstim_20k_mito1_001.png\tA\nUnstim_20k_mito1_002\tA\nINS_21_001\tA\n",
    )
    .unwrap();
    let m = metrics(&[
        "--pred",
        pred_dir.to_str().unwrap(),
        "--groups",
        manifest.to_str().unwrap(),
    ]);
    assert_eq!(m["groups"].as_array().unwrap().len(), 1);

    // --weights needs the images.
    let o = run(&["--weights", "w.safetensors"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--images"), "{err}");
    // A missing detection file is an error naming it.
    std::fs::remove_file(pred_dir.join("INS_21_001.json")).unwrap();
    let o = run(&["--pred", pred_dir.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("INS_21_001.json") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn cli_eval_with_weights_runs_the_detector_first() {
    // Reduced-width random fixture weights: the boxes mean nothing; the wiring is what is tested.
    let weights = cryodet::testutil::fixture_path("model/weights_small.safetensors");
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("eval_cli_weights");
    let _ = std::fs::remove_dir_all(&root);
    let (gt_dir, img_dir, out) = (root.join("gt"), root.join("images"), root.join("out"));
    std::fs::create_dir_all(&gt_dir).unwrap();
    std::fs::create_dir_all(&img_dir).unwrap();
    let obj: [f32; 4] = [30.0, 20.0, 80.0, 70.0];
    for stem in ["cellA_001", "cellA_002"] {
        std::fs::write(
            gt_dir.join(format!("{stem}.xml")),
            labelimg_xml(
                &format!("{stem}.png"),
                131,
                97,
                &[([31, 21, 80, 70], "mitochondria", false, false)],
            ),
        )
        .unwrap();
        synthetic_image(131, 97, &[obj])
            .save(img_dir.join(format!("{stem}.png")))
            .unwrap();
    }
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cryodet"))
        .args([
            "eval",
            "--gt",
            gt_dir.to_str().unwrap(),
            "--images",
            img_dir.to_str().unwrap(),
        ])
        .args([
            "--weights",
            weights.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--size", "96", "--max-size", "160", "--keep-thresh", "0.0"])
        .output()
        .expect("run cryodet");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    for stem in ["cellA_001", "cellA_002"] {
        let d =
            detections::read_image_detections(out.join("detections").join(format!("{stem}.json")))
                .unwrap();
        assert_eq!((d.width, d.height), (131, 97));
    }
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["n_images"], 2);
    assert_eq!(m["overall"][0]["pooled"]["n_gt"], 2);
}
