//! File readers/writers, the preprocessing and the input transform, against reference files
//! and values made by `tools/make_io_fixtures.py` (tifffile, PIL, mrcfile, torch, torchvision,
//! OpenCV). Fixtures: tests/fixtures/io/.

use cryodet::io::{image as img_io, mrc, voc};
use cryodet::preprocess::{self, Filter, PreprocessConfig};
use cryodet::testutil::{assert_close, fixture_path, load_fixture, EXACT};
use cryodet::transform::{self, Scaling};
use ndarray::{Array2, Array3, ArrayD, Axis};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// torch's bilinear kernel in f32 vs ours: same operations, possibly a different FMA/order.
const RESIZE_TOL: f32 = 1e-6;
/// zune-jpeg vs libjpeg (PIL): IDCT and upsampling differ by a level or two.
const JPEG_LEVELS_TOL: f32 = 2.0;
/// Rec.601 luma: same f32 operations as the numpy reference.
const LUMA_TOL: f32 = 1e-6;
/// cryodet's bilateral (float) vs OpenCV's (rounded to an integer at the end), in gray levels.
const BILATERAL_LEVELS_TOL: f32 = 0.5 + 1e-3;

fn fx(name: &str) -> PathBuf {
    fixture_path(&format!("io/{name}"))
}

fn expected() -> HashMap<String, ArrayD<f32>> {
    load_fixture(fx("expected.safetensors"))
}

fn check(name: &str, actual: ArrayD<f32>, exp: &HashMap<String, ArrayD<f32>>, key: &str, tol: f32) {
    let e = exp
        .get(key)
        .unwrap_or_else(|| panic!("fixture has no {key}"));
    assert_close(name, actual.view(), e.view(), tol);
}

/// A scratch directory for files written by the tests.
fn scratch(sub: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(sub);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Error message of a failing call (panics if it succeeded).
fn err_text<T: std::fmt::Debug>(r: cryodet::Result<T>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

// ---------------------------------------------------------------- images

#[test]
fn images_read_back_exactly() {
    let exp = expected();
    for (file, key, tol) in [
        ("gray16.tif", "gray16", EXACT),
        ("gray16.png", "gray16", EXACT),
        ("gray8.png", "gray8", EXACT),
        ("float32.tif", "float32", EXACT),
        ("rgb8.png", "rgb8_gray", LUMA_TOL),
    ] {
        let img = img_io::read_gray(&fx(file)).unwrap();
        check(file, img.into_dyn(), &exp, key, tol);
    }
    let info = img_io::image_info(&fx("gray16.tif")).unwrap();
    assert_eq!(
        (info.width, info.height, info.color.as_str()),
        (7, 5, "gray 16-bit")
    );
    let info = img_io::image_info(&fx("rgb8.png")).unwrap();
    assert_eq!(
        (info.width, info.height, info.color.as_str()),
        (3, 4, "RGB 8-bit")
    );
    assert!(img_io::is_image_path(Path::new("a/b.TIF")));
    assert!(!img_io::is_image_path(Path::new("a/b.mrc")));
}

#[test]
fn jpeg_reads_close_to_libjpeg() {
    let exp = expected();
    let img = img_io::read_gray(&fx("gray8.jpg")).unwrap();
    let e = &exp["jpeg"];
    let max_e = e.iter().fold(0f32, |m, v| m.max(v.abs()));
    check(
        "gray8.jpg",
        img.into_dyn(),
        &exp,
        "jpeg",
        JPEG_LEVELS_TOL / max_e,
    );
}

#[test]
fn huge_claimed_image_sizes_are_refused() {
    for file in ["huge.png", "huge.tif"] {
        let msg = err_text(img_io::read_gray(&fx(file)));
        assert!(msg.contains(file), "{file}: {msg}");
    }
}

#[test]
fn image_errors_name_the_file() {
    let d = scratch("image_errors");
    let p = d.join("not_an_image.png");
    std::fs::write(&p, b"this is not a PNG file at all").unwrap();
    let msg = err_text(img_io::read_gray(&p));
    assert!(msg.contains("not_an_image.png"), "{msg}");
    let msg = err_text(img_io::read_gray(&d.join("missing.tif")));
    assert!(msg.contains("missing.tif"), "{msg}");
}

#[test]
fn nan_pixels_are_an_error_or_masked_by_the_median() {
    let p = fx("nan.tif");
    let img = img_io::read_gray(&p).unwrap();
    let msg = err_text(img_io::check_finite(&p, img.clone(), false));
    assert!(
        msg.contains("nan.tif") && msg.contains("2 non-finite"),
        "{msg}"
    );
    let (clean, n) = img_io::check_finite(&p, img, true).unwrap();
    assert_eq!(n, 2);
    // Finite values 0..12 without 6 (NaN) and 8 (Inf): lower median of 10 values = 4.
    assert_eq!(clean[[1, 2]], 4.0);
    assert_eq!(clean[[2, 0]], 4.0);
    assert_eq!(clean[[0, 1]], 1.0);
}

#[test]
fn png_writers_round_trip() {
    let d = scratch("png");
    let img = Array2::from_shape_fn((3, 5), |(y, x)| (y * 5 + x) as f32 / 14.0);
    img_io::write_png_gray8(&d.join("a8.png"), img.view()).unwrap();
    img_io::write_png_gray16(&d.join("a16.png"), img.view()).unwrap();
    let r8 = img_io::read_gray(&d.join("a8.png")).unwrap();
    let r16 = img_io::read_gray(&d.join("a16.png")).unwrap();
    let e8 = img.mapv(|v| (v * 255.0).round());
    let e16 = img.mapv(|v| (v * 65535.0).round());
    assert_close("png8", r8.into_dyn().view(), e8.into_dyn().view(), EXACT);
    assert_close("png16", r16.into_dyn().view(), e16.into_dyn().view(), EXACT);
}

// ---------------------------------------------------------------- MRC

#[test]
fn mrc_files_from_mrcfile_read_back_exactly() {
    let exp = expected();
    for (file, key, mode, little, ext) in [
        ("mode0.mrc", "mode0", 0, true, 0),
        ("mode1.mrc", "mode1", 1, true, 0),
        ("mode2.mrc", "mode2", 2, true, 0),
        ("mode6.mrc", "mode6", 6, true, 0),
        ("mode12.mrc", "mode12", 12, true, 0),
        ("bigendian.mrcs", "bigendian", 2, false, 0),
        ("exthdr.mrc", "exthdr", 1, true, 40),
    ] {
        let p = fx(file);
        assert!(mrc::is_mrc_path(&p));
        let h = mrc::read_header(&p).unwrap();
        assert_eq!((h.nx, h.ny, h.nz, h.mode), (7, 5, 3, mode), "{file}");
        assert_eq!((h.little_endian, h.ext_header_len), (little, ext), "{file}");
        let vol = mrc::read_volume(&p).unwrap();
        check(file, vol.clone().into_dyn(), &exp, key, EXACT);
        for z in 0..h.nz {
            let sl = mrc::read_slice(&p, &h, z).unwrap();
            let e = vol.index_axis(Axis(0), z).to_owned();
            assert_close(file, sl.into_dyn().view(), e.into_dyn().view(), EXACT);
        }
        if file.starts_with("mode") {
            assert_eq!(h.voxel_size, [1.5, 2.0, 2.5], "{file}");
        }
    }
    let h = mrc::read_header(&fx("exthdr.mrc")).unwrap();
    assert_eq!(h.exttyp, "SERI");
    assert_eq!(mrc::read_header(&fx("bigendian.mrcs")).unwrap().ispg, 0);
}

/// Writes cryodet MRCs (re-read here; validate them with mrcfile by
/// `python3 tools/make_io_fixtures.py --validate $CARGO_TARGET_DIR/tmp/io_tests_written/*.mrc`).
#[test]
fn mrc_write_read_roundtrip() {
    let d = scratch("io_tests_written");
    let vol = Array3::from_shape_fn((3, 4, 6), |(z, y, x)| {
        (z as f32 * 1000.7 - y as f32 * 300.2 + x as f32 * 0.5) - 900.0
    });
    for mode in [2, 1, 6] {
        let p = d.join(format!("written_mode{mode}.mrc"));
        mrc::write_mrc(&p, vol.view(), mode, 3.25).unwrap();
        let h = mrc::read_header(&p).unwrap();
        assert_eq!(
            (h.nx, h.ny, h.nz, h.mode, h.nversion),
            (6, 4, 3, mode, 20140)
        );
        assert_eq!(h.voxel_size, [3.25; 3]);
        let back = mrc::read_volume(&p).unwrap();
        let stored = match mode {
            2 => vol.clone(),
            1 => vol.mapv(|v| v.round().clamp(-32768.0, 32767.0)),
            _ => vol.mapv(|v| v.round().clamp(0.0, 65535.0)),
        };
        assert_close(
            &format!("mode {mode}"),
            back.view().into_dyn(),
            stored.view().into_dyn(),
            EXACT,
        );
        let (lo, hi) = stored
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        assert_eq!((h.dmin, h.dmax), (lo, hi));
    }
    assert!(mrc::write_mrc(&d.join("bad.mrc"), vol.view(), 12, 1.0).is_err());
}

/// Copy of a fixture's bytes with `edit` applied, written to the scratch directory.
fn corrupted(src: &str, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut b = std::fs::read(fx(src)).unwrap();
    edit(&mut b);
    let p = scratch("mrc_errors").join(name);
    std::fs::write(&p, b).unwrap();
    p
}

#[test]
fn mrc_errors_are_typed_and_allocate_nothing() {
    let le = |v: i32| v.to_le_bytes();
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            corrupted("mode2.mrc", "truncated.mrc", |b| b.truncate(b.len() - 10)),
            "size mismatch",
        ),
        (
            // 10^4 x 10^4 x 10^4 = 10^12 float voxels claimed by a 1444-byte file.
            corrupted("mode2.mrc", "huge.mrc", |b| {
                for i in 0..3 {
                    b[4 * i..4 * i + 4].copy_from_slice(&le(10_000));
                }
            }),
            "size mismatch",
        ),
        (
            corrupted("mode2.mrc", "mode3.mrc", |b| {
                b[12..16].copy_from_slice(&le(3))
            }),
            "mode 3",
        ),
        (
            corrupted("mode2.mrc", "negdim.mrc", |b| {
                b[4..8].copy_from_slice(&le(-5))
            }),
            "ny = -5",
        ),
        (
            corrupted("mode2.mrc", "nsymbt.mrc", |b| {
                b[92..96].copy_from_slice(&le(-1))
            }),
            "nsymbt",
        ),
        (
            corrupted("mode2.mrc", "short.mrc", |b| b.truncate(1000)),
            "shorter than",
        ),
        (
            corrupted("mode2.mrc", "nomap.mrc", |b| {
                b[208..212].copy_from_slice(b"XXXX")
            }),
            "MAP",
        ),
        (
            corrupted("mode2.mrc", "stamp.mrc", |b| {
                b[212..216].copy_from_slice(&[0, 0, 0, 0]);
                b[0..4].copy_from_slice(&[0xff; 4]);
            }),
            "machine stamp",
        ),
    ];
    for (p, reason) in cases {
        let msg = err_text(mrc::read_volume(&p));
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(msg.contains(name) && msg.contains(reason), "{name}: {msg}");
    }
    // Trailing bytes are counted, not an error (mrcfile warns, IMOD reads such files).
    let p = corrupted("mode2.mrc", "trailing.mrc", |b| b.extend([0u8; 8]));
    assert_eq!(mrc::read_header(&p).unwrap().trailing_bytes, 8);
    assert_eq!(
        mrc::read_volume(&p).unwrap(),
        mrc::read_volume(&fx("mode2.mrc")).unwrap()
    );
    let p = fx("mode2.mrc");
    let h = mrc::read_header(&p).unwrap();
    assert!(err_text(mrc::read_slice(&p, &h, 3)).contains("out of range"));
    // Unknown machine stamp but a plausible little-endian header: read as little-endian.
    let p = corrupted("mode2.mrc", "nostamp.mrc", |b| {
        b[212..216].copy_from_slice(&[0; 4])
    });
    assert!(mrc::read_header(&p).unwrap().little_endian);
}

// ---------------------------------------------------------------- VOC

#[test]
fn labelimg_xml_reads_and_writes_back_identically() {
    let p = fx("labelimg.xml");
    let a = voc::read_voc(&p).unwrap();
    assert_eq!(a.filename, "slice_063.png");
    assert_eq!(
        a.path.as_deref(),
        Some("/data/Unstim_20k_mito1/images/slice_063.png")
    );
    assert_eq!((a.width, a.height, a.depth), (120, 80, 1));
    assert_eq!(a.objects.len(), 2);
    let o = &a.objects[0];
    assert_eq!(
        (o.name.as_str(), o.bbox, o.difficult, o.truncated),
        ("mitochondria", [10.0, 20.0, 50.0, 60.0], false, false)
    );
    let o = &a.objects[1];
    assert_eq!(
        (o.name.as_str(), o.bbox, o.difficult, o.truncated),
        ("mito & co", [0.0, 29.0, 120.0, 80.0], true, true)
    );

    let out = scratch("voc").join("roundtrip.xml");
    voc::write_voc(&out, &a).unwrap();
    assert_eq!(voc::read_voc(&out).unwrap(), a);
    // Byte for byte LabelImg's layout (the fixture's one decimal coordinate is written as an integer).
    let original = std::fs::read_to_string(&p).unwrap().replace("30.0", "30");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), original);

    // An XML declaration, a byte-order mark and LabelImg's `verified` attribute are accepted.
    let text = std::fs::read_to_string(&p).unwrap();
    let variant = format!(
        "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>\n{}",
        text.replace("<annotation>", "<annotation verified=\"yes\">")
    );
    assert_eq!(voc::parse_voc(&p, &variant).unwrap(), a);

    let empty = voc::read_voc(&fx("empty.xml")).unwrap();
    assert!(empty.objects.is_empty());
    voc::write_voc(&out, &empty).unwrap();
    assert_eq!(voc::read_voc(&out).unwrap(), empty);
}

#[test]
fn voc_rounding_and_clipping() {
    let mut a = voc::read_voc(&fx("labelimg.xml")).unwrap();
    a.objects[0].bbox = [9.6, 19.4, 50.4, 59.6];
    let xml = a.to_xml("images");
    assert!(
        xml.contains("<xmin>11</xmin>") && xml.contains("<ymin>20</ymin>"),
        "{xml}"
    );
    assert!(
        xml.contains("<xmax>50</xmax>") && xml.contains("<ymax>60</ymax>"),
        "{xml}"
    );

    let mut o = a.objects[0].clone();
    o.bbox = [-5.0, -3.0, 10.0, 90.0]; // clipped to [0, 0, 10, 80]
    a.objects.push(o.clone());
    o.bbox = [125.0, 0.0, 140.0, 10.0]; // entirely right of the 120-pixel image: dropped
    a.objects.push(o);
    let warnings = a.clip_to_image();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(a.objects.len(), 3);
    assert_eq!(a.objects[2].bbox, [0.0, 0.0, 10.0, 80.0]);
}

#[test]
fn voc_errors_name_the_file_and_the_reason() {
    for (file, reason) in [
        ("malformed.xml", "malformed XML"),
        ("bad_utf8.xml", "UTF-8"),
        ("nonnumeric.xml", "xmin"),
        ("inverted.xml", "inverted"),
        ("missing_ymax.xml", "missing <ymax>"),
        ("no_such_file.xml", "no_such_file.xml"),
    ] {
        let msg = err_text(voc::read_voc(&fx(file)));
        assert!(msg.contains(file) && msg.contains(reason), "{file}: {msg}");
    }
}

// ---------------------------------------------------------------- transform

#[test]
fn bilinear_resize_matches_torch_interpolate() {
    let exp = expected();
    let x = exp["resize_in"]
        .clone()
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap();
    for (name, scale) in [("down", 0.61), ("up", 1.7), ("up3", 3.0), ("half", 0.5)] {
        let key = format!("resize_{name}");
        let e = &exp[&key];
        let (oh, ow) = transform::resized_size(13, 17, scale);
        assert_eq!([oh, ow], e.shape(), "{key}: output size");
        let y = transform::resize_bilinear(x.view(), oh, ow);
        check(&key, y.into_dyn(), &exp, &key, RESIZE_TOL);
    }
    // Same size: a copy.
    let y = transform::resize_bilinear(x.view(), 13, 17);
    assert_close("identity", y.into_dyn().view(), x.view().into_dyn(), EXACT);
}

#[test]
fn torchvision_transform_and_boxes_back() {
    let exp = expected();
    let img = exp["rcnn_in"]
        .clone()
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap();
    let (x, size) = transform::transform_image(img.view(), 50.0, 64.0).unwrap();
    let es = &exp["rcnn_size"];
    assert_eq!([size.0 as f32, size.1 as f32], [es[[0]], es[[1]]]);
    let e = &exp["rcnn_out"];
    let x3 = x.index_axis(Axis(1), 0).to_owned().into_dyn();
    assert_close("GeneralizedRCNNTransform", x3.view(), e.view(), RESIZE_TOL);

    let mut boxes = exp["rcnn_boxes"]
        .clone()
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap();
    transform::boxes_to_original(&mut boxes, size, (29, 41));
    check(
        "resize_boxes",
        boxes.into_dyn(),
        &exp,
        "rcnn_boxes_orig",
        EXACT,
    );
}

#[test]
fn unit_range_scalings() {
    // 0..999: numpy.percentile(x, 0.1) = 0.999, percentile(x, 99.9) = 998.001.
    let x = Array2::from_shape_fn((25, 40), |(y, c)| (y * 40 + c) as f32);
    let u = transform::to_unit_range(x.view(), Scaling::default());
    let (lo, hi) = (0.999f64, 998.001f64);
    let e = x.mapv(|v| (((v as f64 - lo) / (hi - lo)) as f32).clamp(0.0, 1.0));
    assert_close("percentile", u.into_dyn().view(), e.into_dyn().view(), 1e-6);
    let m = transform::to_unit_range(x.view(), Scaling::MinMax);
    assert_eq!((m[[0, 0]], m[[24, 39]]), (0.0, 1.0));
    let c = transform::to_unit_range(Array2::from_elem((3, 4), 7.0).view(), Scaling::MinMax);
    assert!(c.iter().all(|&v| v == 0.0));
    assert!((transform::resize_scale(600, 900, 800.0, 1333.0) - 800.0 / 600.0).abs() < 1e-15);
    assert_eq!(
        transform::resized_size(600, 900, 800.0 / 600.0),
        (800, 1200)
    );
}

// ---------------------------------------------------------------- preprocessing

#[test]
fn bilateral_and_equalize_match_opencv() {
    let exp = expected();
    let Some(u8img) = exp.get("cv_in") else {
        eprintln!("no OpenCV fixtures; skipped");
        return;
    };
    let x = u8img
        .clone()
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap()
        .mapv(|v| v / 255.0);
    for (key, sr, ss) in [
        ("cv_bilateral_100_1.2", 100.0, 1.2),
        ("cv_bilateral_30_2.5", 30.0, 2.5),
    ] {
        let y = preprocess::bilateral_filter(x.view(), ss, sr).mapv(|v| v * 255.0);
        let e = &exp[key];
        let worst = y
            .iter()
            .zip(e.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            worst <= BILATERAL_LEVELS_TOL,
            "{key}: max |ours - cv2| = {worst} levels"
        );
    }
    let q = preprocess::equalize_histogram(x.view()).mapv(|v| (v * 255.0).round());
    check("equalizeHist", q.into_dyn(), &exp, "cv_equalize", EXACT);
}

/// Direct 2-D convolution with reflect-101 borders: the reference for the separable filter.
fn gaussian_reference(x: &Array2<f32>, sigma: f32) -> Array2<f32> {
    let (h, w) = x.dim();
    let r = (3.0 * sigma).ceil() as isize;
    let k: Vec<f64> = (-r..=r)
        .map(|d| (-0.5 * (d * d) as f64 / (sigma as f64).powi(2)).exp())
        .collect();
    let ks: f64 = k.iter().sum();
    Array2::from_shape_fn((h, w), |(y, c)| {
        let mut s = 0.0;
        for dy in -r..=r {
            for dx in -r..=r {
                let v = x[[
                    preprocess::reflect101(y as isize + dy, h),
                    preprocess::reflect101(c as isize + dx, w),
                ]] as f64;
                s += k[(dy + r) as usize] * k[(dx + r) as usize] * v;
            }
        }
        (s / (ks * ks)) as f32
    })
}

#[test]
fn gaussian_filter_matches_direct_convolution() {
    let x = Array2::from_shape_fn((9, 14), |(y, c)| ((y * 7 + c * 3) % 11) as f32 / 10.0);
    for sigma in [0.8f32, 1.3, 4.0] {
        let y = preprocess::gaussian_filter(x.view(), sigma);
        let e = gaussian_reference(&x, sigma);
        assert_close(
            &format!("gaussian {sigma}"),
            y.into_dyn().view(),
            e.into_dyn().view(),
            1e-5,
        );
    }
}

#[test]
fn preprocess_orders_and_snr_estimate() {
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};
    // Smooth signal (variance 0.5 * 0.1^2 per sinusoid) plus white noise at SNR 0.1.
    let (h, w) = (200, 240);
    let clean = Array2::from_shape_fn((h, w), |(y, x)| {
        0.5 + 0.1 * (x as f32 * 0.05).sin() + 0.1 * (y as f32 * 0.07).cos()
    });
    let mean = clean.mean().unwrap();
    let sv = clean.mapv(|v| (v - mean).powi(2)).mean().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let noise = Normal::new(0.0f32, (sv / 0.1).sqrt()).unwrap();
    let noisy = clean.mapv(|v| v + noise.sample(&mut rng));
    let snr = preprocess::estimate_snr(noisy.view());
    assert!((snr - 0.1).abs() < 0.02, "SNR estimate {snr}, true 0.1");
    assert!(preprocess::estimate_snr(clean.view()) > 100.0);
    assert_eq!(
        preprocess::estimate_snr(Array2::from_elem((5, 5), 3.0f32).view()),
        0.0
    );

    let unit = transform::to_unit_range(noisy.view(), Scaling::default());
    let cfg = PreprocessConfig::default();
    let Filter::Bilateral {
        sigma_spatial,
        sigma_range,
    } = cfg.filter
    else {
        panic!("default is bilateral")
    };
    let study = preprocess::preprocess(unit.view(), &cfg);
    let manual = preprocess::equalize_histogram(
        preprocess::bilateral_filter(unit.view(), sigma_spatial, sigma_range).view(),
    );
    assert_close(
        "filter then equalize",
        study.view().into_dyn(),
        manual.view().into_dyn(),
        EXACT,
    );
    let first = preprocess::preprocess(
        unit.view(),
        &PreprocessConfig {
            equalize_first: true,
            ..cfg
        },
    );
    let manual = preprocess::bilateral_filter(
        preprocess::equalize_histogram(unit.view()).view(),
        sigma_spatial,
        sigma_range,
    );
    assert_close(
        "equalize then filter",
        first.view().into_dyn(),
        manual.view().into_dyn(),
        EXACT,
    );
    assert!(study.iter().all(|v| (0.0..=1.0).contains(v)));
    // Denoising raises the (white-noise) SNR estimate.
    let filtered = preprocess::bilateral_filter(unit.view(), sigma_spatial, sigma_range);
    assert!(
        preprocess::estimate_snr(filtered.view()) > 3.0 * preprocess::estimate_snr(unit.view())
    );
    let none = preprocess::preprocess(
        unit.view(),
        &PreprocessConfig {
            filter: Filter::None,
            equalize: false,
            equalize_first: false,
        },
    );
    assert_close(
        "none",
        none.view().into_dyn(),
        unit.view().into_dyn(),
        EXACT,
    );
}
