//! Physical scale (issue 14, part 1): pixel sizes read from files, the anti-aliased resampler,
//! the scale choice of the pipeline, anchors recorded in the weights, `detect --pixel-size` and
//! the training options through `--resume`. Every test runs in well under a second except the
//! two that run the binary (a few seconds).

use cryodet::detection::anchors::AnchorGenerator;
use cryodet::io::image::{write_png_gray8, write_png_gray8_with_pixel_size};
use cryodet::io::mrc;
use cryodet::io::pixel_size::{pixel_size_nm, read_pixel_size};
use cryodet::model::FasterRcnn;
use cryodet::pipeline::{choose_scale, prepare, prepare_at, PipelineConfig};
use cryodet::testutil::{fixture_path, temp_dir, TINY_TRAIN};
use cryodet::transform::{antialias_taps, boxes_to_original, resample_antialiased};
use ndarray::{Array2, Array3};
use std::path::Path;

fn close(a: Option<f32>, b: f32) -> bool {
    a.is_some_and(|a| (a - b).abs() <= 1e-4 * b)
}

#[test]
fn mrc_header_voxel_size_zero_and_one_angstrom_unknown() {
    let d = temp_dir("scale-mrc");
    let vol = Array3::<f32>::from_shape_fn((2, 8, 9), |(z, y, x)| (z + y + x) as f32);
    for (angstrom, want) in [
        (2.6f32, Some(0.26f32)),
        (0.0, None),
        (1.0, None),
        (13.0, Some(1.3)),
    ] {
        let p = d.join(format!("v{angstrom}.mrc"));
        mrc::write_mrc(&p, vol.view(), 2, angstrom).unwrap();
        let got = pixel_size_nm(&p);
        match want {
            Some(w) => assert!(close(got, w), "{angstrom} A: {got:?}"),
            None => assert_eq!(got, None, "{angstrom} A"),
        }
    }
    assert_eq!(
        read_pixel_size(&d.join("v2.6.mrc"))
            .unwrap()
            .unwrap()
            .source,
        "MRC header"
    );
    std::fs::remove_dir_all(&d).ok();
}

/// A gray 8-bit TIFF with the given resolution tags and description.
fn write_tiff(
    path: &Path,
    xres: Option<(u32, u32)>,
    unit: Option<tiff::tags::ResolutionUnit>,
    description: Option<&str>,
) {
    use tiff::encoder::{colortype, Rational, TiffEncoder};
    let file = std::fs::File::create(path).unwrap();
    let mut enc = TiffEncoder::new(std::io::BufWriter::new(file)).unwrap();
    let mut img = enc.new_image::<colortype::Gray8>(6, 4).unwrap();
    if let Some((n, d)) = xres {
        img.x_resolution(Rational { n, d });
        img.y_resolution(Rational { n, d });
    }
    if let Some(u) = unit {
        img.resolution_unit(u);
    }
    if let Some(t) = description {
        img.encoder()
            .write_tag(tiff::tags::Tag::ImageDescription, t)
            .unwrap();
    }
    img.write_data(&[7u8; 24]).unwrap();
}

#[test]
fn tiff_resolution_tags_and_imagej_description() {
    use tiff::tags::ResolutionUnit;
    let d = temp_dir("scale-tiff");
    let p = d.join("a.tif");
    // 2e7 pixels per cm = 0.5 nm per pixel.
    write_tiff(
        &p,
        Some((20_000_000, 1)),
        Some(ResolutionUnit::Centimeter),
        None,
    );
    assert!(close(pixel_size_nm(&p), 0.5), "{:?}", pixel_size_nm(&p));
    assert_eq!(
        read_pixel_size(&p).unwrap().unwrap().source,
        "TIFF resolution"
    );
    // 2.54e7 / 1.27e7 pixels per inch = 2 nm.
    write_tiff(&p, Some((12_700_000, 1)), Some(ResolutionUnit::Inch), None);
    assert!(close(pixel_size_nm(&p), 2.0));
    // A display resolution (72 dpi) or no unit is unknown.
    write_tiff(&p, Some((72, 1)), Some(ResolutionUnit::Inch), None);
    assert_eq!(pixel_size_nm(&p), None);
    write_tiff(&p, Some((400, 1)), Some(ResolutionUnit::None), None);
    assert_eq!(pixel_size_nm(&p), None);
    // ImageJ: 400 pixels per micron = 2.5 nm; 0.8 pixels per nm = 1.25 nm.
    let ij = |unit: &str| format!("ImageJ=1.53t\nunit={unit}\nspacing=1\n");
    write_tiff(
        &p,
        Some((400, 1)),
        Some(ResolutionUnit::None),
        Some(&ij("micron")),
    );
    assert!(close(pixel_size_nm(&p), 2.5), "{:?}", pixel_size_nm(&p));
    assert_eq!(
        read_pixel_size(&p).unwrap().unwrap().source,
        "ImageJ description"
    );
    write_tiff(&p, Some((400, 1)), None, Some(&ij("\\u00B5m")));
    assert!(close(pixel_size_nm(&p), 2.5));
    write_tiff(&p, Some((4, 5)), None, Some(&ij("nm")));
    assert!(close(pixel_size_nm(&p), 1.25));
    // No resolution at all.
    write_tiff(&p, None, None, None);
    assert_eq!(pixel_size_nm(&p), None);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn png_phys_written_then_read() {
    let d = temp_dir("scale-png");
    let img = Array2::from_shape_fn((5, 7), |(y, x)| ((x + y) % 3) as f32 / 2.0);
    let p = d.join("a.png");
    write_png_gray8_with_pixel_size(&p, img.view(), Some(1.25)).unwrap();
    assert!(close(pixel_size_nm(&p), 1.25));
    assert_eq!(read_pixel_size(&p).unwrap().unwrap().source, "PNG pHYs");
    // The pixels are those of the plain writer.
    let q = d.join("b.png");
    write_png_gray8(&q, img.view()).unwrap();
    assert_eq!(
        cryodet::io::image::read_gray(&p).unwrap(),
        cryodet::io::image::read_gray(&q).unwrap()
    );
    assert_eq!(pixel_size_nm(&q), None);
    write_png_gray8_with_pixel_size(&q, img.view(), None).unwrap();
    assert_eq!(pixel_size_nm(&q), None);
    assert!(write_png_gray8_with_pixel_size(&q, img.view(), Some(0.1)).is_err());
    std::fs::remove_dir_all(&d).ok();
}

/// The resampler's definition evaluated directly in 2D (no separability, no precomputed taps).
fn naive_resample(img: &Array2<f32>, oh: usize, ow: usize) -> Array2<f32> {
    let (h, w) = img.dim();
    let (sy, sx) = (h as f64 / oh as f64, w as f64 / ow as f64);
    let tri = |t: f64| (1.0 - t.abs()).max(0.0);
    Array2::from_shape_fn((oh, ow), |(i, j)| {
        let (cy, cx) = ((i as f64 + 0.5) * sy, (j as f64 + 0.5) * sx);
        let (wy, wx) = (sy.max(1.0), sx.max(1.0));
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for y in 0..h {
            for x in 0..w {
                let k = tri((y as f64 + 0.5 - cy) / wy) * tri((x as f64 + 0.5 - cx) / wx);
                num += k * img[[y, x]] as f64;
                den += k;
            }
        }
        (num / den) as f32
    })
}

#[test]
fn antialiased_resampling_matches_the_naive_definition() {
    let img = Array2::from_shape_fn((23, 31), |(y, x)| ((y * 7 + x * 13) % 17) as f32 / 16.0);
    for (oh, ow) in [(7, 10), (11, 15), (23, 31), (40, 50), (5, 62)] {
        let fast = resample_antialiased(img.view(), oh, ow);
        let slow = naive_resample(&img, oh, ow);
        let err = (&fast - &slow).iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(err < 1e-5, "{oh}x{ow}: max error {err}");
    }
    // Taps sum to 1 and a factor-2 downscale uses the triangle (1, 3, 3, 1) / 8.
    let t = antialias_taps(16, 8);
    assert_eq!(t[3].0, 5);
    assert_eq!(t[3].1, vec![0.125, 0.375, 0.375, 0.125]);
}

#[test]
fn antialiased_downscale_of_constant_and_checkerboard() {
    let c = Array2::<f32>::from_elem((97, 130), 0.37);
    for (oh, ow) in [(26, 35), (10, 13), (49, 65), (1, 1)] {
        let r = resample_antialiased(c.view(), oh, ow);
        assert!(r.iter().all(|v| (v - 0.37).abs() < 1e-6), "{oh}x{ow}");
    }
    // A 1-pixel checkerboard of 0.2 / 0.9 at factor 2 averages to 0.55 everywhere but on the
    // border (where the triangle is cut off and renormalized).
    let cb = Array2::from_shape_fn(
        (64, 48),
        |(y, x)| if (x + y) % 2 == 0 { 0.2f32 } else { 0.9 },
    );
    let r = resample_antialiased(cb.view(), 32, 24);
    for y in 1..31 {
        for x in 1..23 {
            assert!(
                (r[[y, x]] - 0.55).abs() < 1e-5,
                "({y}, {x}) = {}",
                r[[y, x]]
            );
        }
    }
    // At factor 3 (odd: a nearest-pixel or 2-tap resize keeps a pattern) the mean is kept
    // up to the triangle's imbalance on an odd number of taps, well within 0.05 of 0.55.
    let r = resample_antialiased(cb.view(), 21, 16);
    for y in 1..20 {
        for x in 1..15 {
            assert!(
                (r[[y, x]] - 0.55).abs() < 0.05,
                "x3 ({y}, {x}) = {}",
                r[[y, x]]
            );
        }
    }
}

fn model_with_pixel_size() -> FasterRcnn {
    let mut m = FasterRcnn::load(fixture_path("model/weights_small.safetensors")).unwrap();
    m.info.insert("pixel_size_nm".into(), "2.5".into());
    m.info
        .insert("preprocess_order".into(), "resample-first".into());
    m
}

#[test]
fn scale_choice_and_box_mapping_back() {
    let m = model_with_pixel_size();
    let mut cfg = PipelineConfig::for_model(&m, None, None, false, None);
    cfg.preprocess = None;
    assert_eq!(cfg.model_pixel_nm, Some(2.5));
    assert!(cfg.resample_first);
    let px = |nm| {
        Some(cryodet::io::pixel_size::PixelSize {
            nm,
            source: "--pixel-size",
        })
    };
    // 0.26 nm files: x0.104, 3838 -> 399 px.
    let s = choose_scale(3838, 3708, &cfg, px(0.26));
    assert!(s.physical && (s.factor - 0.104).abs() < 1e-6);
    assert_eq!(s.out, (399, 386));
    assert!(
        s.note
            .contains("0.260 nm (--pixel-size) -> 2.50 nm, x0.104"),
        "{}",
        s.note
    );
    // Upscaling past the cap falls back to the cap with a note.
    let s = choose_scale(1000, 800, &cfg, px(10.0));
    assert_eq!(s.out, (2000, 1600));
    assert!(s.note.contains("capped"), "{}", s.note);
    // Unknown: the --size rule.
    let s = choose_scale(300, 200, &cfg, None);
    assert!(!s.physical && s.note.starts_with("pixel size unknown"));

    // Boxes on the network input map back to the original pixels.
    let raw = Array2::from_shape_fn((130, 97), |(y, x)| ((x * y) % 23) as f32);
    let p = prepare_at(&raw, &cfg, px(0.8)).unwrap();
    let (oh, ow) = p.resized;
    assert_eq!((oh, ow), (42, 31));
    assert_eq!(p.input.dim(), (3, 1, 64, 32));
    let orig = [[3.5f32, 10.25, 90.0, 129.0], [0.0, 0.0, 97.0, 130.0]];
    let mut b = Array2::from_shape_fn((2, 4), |(i, k)| {
        let s = if k % 2 == 0 {
            ow as f32 / 97.0
        } else {
            oh as f32 / 130.0
        };
        orig[i][k] * s
    });
    boxes_to_original(&mut b, p.resized, p.original);
    for i in 0..2 {
        for k in 0..4 {
            assert!((b[[i, k]] - orig[i][k]).abs() < 1e-3, "{b:?}");
        }
    }
}

/// A model without the new metadata prepares images exactly as before, whatever the file's
/// pixel size.
#[test]
fn old_model_ignores_pixel_size() {
    let m = FasterRcnn::load(fixture_path("model/weights_small.safetensors")).unwrap();
    let cfg = PipelineConfig::for_model(&m, Some(64), None, false, None);
    assert_eq!(cfg.model_pixel_nm, None);
    assert!(!cfg.resample_first);
    assert_eq!(m.config.anchors, AnchorGenerator::default());
    let raw = Array2::from_shape_fn((90, 70), |(y, x)| ((x * 3 + y) % 11) as f32);
    let a = prepare(&raw, &cfg).unwrap();
    let px = cryodet::io::pixel_size::PixelSize {
        nm: 0.3,
        source: "--pixel-size",
    };
    let b = prepare_at(&raw, &cfg, Some(px)).unwrap();
    assert_eq!(a.input, b.input);
    assert_eq!(a.resized, (82, 64));
}

#[test]
fn anchors_from_metadata_round_trip_and_mismatch_errors() {
    use cryodet::train::init::{build, fit_rpn_to_anchors};
    let m = FasterRcnn::load(fixture_path("model/weights_small.safetensors")).unwrap();
    let mut tensors = m.export();
    let mut meta = m.metadata();
    let anchors = AnchorGenerator {
        sizes: vec![32.0, 64.0, 128.0, 256.0, 512.0],
        ratios: vec![0.5, 1.0, 2.0],
    };
    let default = AnchorGenerator::default();
    assert!(fit_rpn_to_anchors(&mut tensors, &mut meta, &anchors, Some(&default), 1).unwrap());
    let m15 = build(tensors.clone(), meta.clone()).unwrap();
    assert_eq!(m15.config.anchors, anchors);
    assert_eq!(m15.rpn.cls_logits.out_channels(), 15);
    let d = temp_dir("scale-anchors");
    let p = d.join("m.safetensors");
    m15.save(&p, cryodet::io::weights::Precision::F32).unwrap();
    let back = FasterRcnn::load(&p).unwrap();
    assert_eq!(back.config.anchors, anchors);
    assert_eq!(back.info["anchor_sizes"], "32,64,128,256,512");
    // Same anchors: nothing re-initialized.
    let mut t2 = tensors.clone();
    assert!(!fit_rpn_to_anchors(&mut t2, &mut meta.clone(), &anchors, Some(&anchors), 1).unwrap());
    assert_eq!(t2.len(), tensors.len());
    // Metadata that does not match the RPN's weights is an error naming the anchors.
    let mut bad = meta.clone();
    bad.insert("anchor_sizes".into(), "64,128".into());
    let err = build(tensors.clone(), bad).unwrap_err().to_string();
    assert!(
        err.contains("15 anchors") && err.contains("64,128"),
        "{err}"
    );
    let mut bad = meta.clone();
    bad.insert("anchor_ratios".into(), "1,x".into());
    let err = build(tensors, bad).unwrap_err().to_string();
    assert!(err.contains("anchor_ratios"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}

fn run(args: &[&str]) -> (bool, String) {
    cryodet::testutil::run_exe(env!("CARGO_BIN_EXE_cryodet"), args)
}

#[test]
fn detect_prints_the_scale_line() {
    let d = temp_dir("scale-detect");
    let w = d.join("m.safetensors");
    model_with_pixel_size()
        .save(&w, cryodet::io::weights::Precision::F32)
        .unwrap();
    let img = Array2::from_shape_fn((200, 160), |(y, x)| ((x / 9 + y / 7) % 2) as f32);
    let png = d.join("a.png");
    write_png_gray8_with_pixel_size(&png, img.view(), Some(1.25)).unwrap();
    let (w, png, out) = (
        w.to_str().unwrap(),
        png.to_str().unwrap(),
        d.join("out").display().to_string(),
    );
    let detect = |opts: &[&str]| {
        let mut a = vec!["detect", png, "--weights", w, "--out", &out];
        a.extend_from_slice(opts);
        run(&a)
    };
    let (ok, err) = detect(&["--threads", "1"]);
    assert!(ok, "{err}");
    assert!(
        err.contains("pixel 1.250 nm (PNG pHYs) -> 2.50 nm, x0.500"),
        "{err}"
    );
    let (ok, err) = detect(&["--pixel-size", "5", "--threads", "1"]);
    assert!(ok, "{err}");
    assert!(
        err.contains("pixel 5.000 nm (--pixel-size) -> 2.50 nm, x2.000"),
        "{err}"
    );
    let (ok, err) = detect(&["--pixel-size=-1"]);
    assert!(!ok && err.contains("--pixel-size"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn train_scale_options_survive_resume() {
    use cryodet::io::voc::{write_voc, VocAnnotation, VocObject};
    let d = temp_dir("scale-train");
    let data = d.join("data");
    std::fs::create_dir_all(data.join("images")).unwrap();
    std::fs::create_dir_all(data.join("annotations")).unwrap();
    for i in 0..3 {
        let img = Array2::from_shape_fn((96, 80), |(y, x)| {
            let r = ((x as f32 - 40.0).powi(2) + (y as f32 - 48.0).powi(2)).sqrt();
            if r < 15.0 + i as f32 {
                0.2
            } else {
                0.7
            }
        });
        let name = format!("t{i}_0");
        write_png_gray8_with_pixel_size(
            &data.join("images").join(format!("{name}.png")),
            img.view(),
            (i > 0).then_some(2.0),
        )
        .unwrap();
        let ann = VocAnnotation {
            filename: format!("{name}.png"),
            path: None,
            width: 80,
            height: 96,
            depth: 1,
            objects: vec![VocObject {
                name: "m".into(),
                bbox: [25.0, 33.0, 55.0, 63.0],
                difficult: false,
                truncated: false,
            }],
        };
        write_voc(&data.join("annotations").join(format!("{name}.xml")), &ann).unwrap();
    }
    let run_dir = d.join("run");
    let (data_s, run_s) = (data.display().to_string(), run_dir.display().to_string());
    let head = ["train", "--data", &data_s, "--out", &run_s, "--epochs", "2"];
    let tail = [
        "--no-preprocess",
        "--rpn-batch",
        "32",
        "--roi-batch",
        "32",
        "--max-iters",
        "1",
        "--pixel-size",
        "4",
        "--model-pixel-size",
        "3",
        "--anchor-sizes",
        "16,48",
        "--scale-range",
        "0.8,1.25",
        "--max-input",
        "64",
    ];
    let (ok, err) = run(&[&head[..], &TINY_TRAIN[..], &tail[..]].concat());
    assert!(ok, "{err}");
    let opts = std::fs::read_to_string(run_dir.join("options.json")).unwrap();
    let (ok, err) = run(&[
        "train",
        "--resume",
        &run_s,
        "--max-iters",
        "3",
        "--threads",
        "1",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read_to_string(run_dir.join("options.json")).unwrap(),
        opts
    );
    let v: serde_json::Value = serde_json::from_str(&opts).unwrap();
    assert_eq!(v["scale"]["pixel_size"], 4.0);
    assert_eq!(v["scale"]["model_pixel_size"], 3.0);
    assert_eq!(v["scale"]["scale_range"], serde_json::json!([0.8, 1.25]));
    assert_eq!(v["scale"]["max_input"], 64);
    let m = FasterRcnn::load(run_dir.join("last.safetensors")).unwrap();
    assert_eq!(m.info["iteration"], "3");
    assert_eq!(m.info["pixel_size_nm"], "3");
    assert_eq!(m.info["preprocess_order"], "resample-first");
    assert_eq!(m.config.anchors.sizes, vec![16.0, 48.0]);
    assert_eq!(m.rpn.cls_logits.out_channels(), 6);
    // Bad values are one-line errors.
    let (ok, err) = run(&[
        "train",
        "--data",
        &data_s,
        "--out",
        &run_s,
        "--scale-range",
        "2,1",
    ]);
    assert!(!ok && err.contains("--scale-range"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}

/// options.json: the scale options round trip; a file written before they existed loads with
/// `scale: None` (the study's order, as the run was started).
#[test]
fn train_options_json_round_trip() {
    use cryodet::train::trainer::TrainOptions;
    let mut o = TrainOptions::new("d".into(), "o".into());
    let sc = o.scale.as_mut().unwrap();
    sc.pixel_size = Some(1.7);
    sc.anchor_sizes = vec![24.0, 96.0];
    sc.scale_range = [0.7, 1.4];
    sc.max_input = 512;
    let text = serde_json::to_string(&o).unwrap();
    let back: TrainOptions = serde_json::from_str(&text).unwrap();
    assert_eq!(back.scale, o.scale);
    let mut v = serde_json::to_value(&o).unwrap();
    v.as_object_mut().unwrap().remove("scale");
    let old: TrainOptions = serde_json::from_value(v).unwrap();
    assert_eq!(old.scale, None);
    // New runs get the documented defaults.
    let d = TrainOptions::new("d".into(), "o".into()).scale.unwrap();
    assert_eq!(d.model_pixel_size, 2.5);
    assert_eq!(d.anchor_sizes, vec![32.0, 64.0, 128.0, 256.0, 512.0]);
    assert_eq!(d.scale_range, [0.5, 2.0]);
    assert_eq!(d.max_input, 640);
}
