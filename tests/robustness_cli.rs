//! Malformed inputs through the `cryodet` binary: every case must exit non-zero (and not with
//! a panic's 101), print no "panicked", and say on stderr which file is bad and why.
//!
//! The malformed files are built here from small valid ones (`write_mrc`, the `image` crate,
//! the fixture weights `tests/fixtures/model/weights_small.safetensors`). `detect` runs use
//! `--size 64` and the small weights, so the whole suite takes a few seconds.

use cryodet::io::mrc::write_mrc;
use cryodet::io::weights::{save, Precision, WeightFile};
use cryodet::testutil::{fixture_path, temp_dir, TINY_TRAIN};
use ndarray::{Array3, ArrayD, ArrayViewD};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A header claiming 10^12 voxels must be refused within this time (it reads 1 KB).
const HUGE_CLAIM_MAX_TIME: Duration = Duration::from_secs(5);
/// ... and within this address space (KB, `ulimit -v`): far below the 4 TB the claim implies.
const HUGE_CLAIM_MAX_VMEM_KB: u64 = 1 << 20;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cryodet")
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run cryodet");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The command must fail cleanly: exit code 1 (not a panic's 101 or a signal), no panic
/// message, and stderr containing every `expected` substring (file name and reason).
fn expect_failure(args: &[&str], expected: &[&str]) -> String {
    let (code, err) = run(args);
    check_failure(code, &err, args, expected);
    err
}

fn check_failure(code: i32, err: &str, args: &[&str], expected: &[&str]) {
    assert!(
        code != 0 && code != 101 && code != -1,
        "cryodet {args:?}: exit code {code}, expected a clean failure\n{err}"
    );
    assert!(
        !err.contains("panicked"),
        "cryodet {args:?} panicked:\n{err}"
    );
    for e in expected {
        assert!(
            err.contains(e),
            "cryodet {args:?}: stderr lacks {e:?}:\n{err}"
        );
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn weights_path() -> PathBuf {
    fixture_path("model/weights_small.safetensors")
}

// ----------------------------------------------------------------------------------------------
// Builders of valid inputs.

/// A valid float32 MRC of `nz x ny x nx` (x fastest) and its bytes.
fn valid_mrc(dir: &Path, nz: usize, ny: usize, nx: usize) -> Vec<u8> {
    let vol = Array3::from_shape_fn((nz, ny, nx), |(z, y, x)| {
        ((z * 31 + y * 7 + x * 3) % 50) as f32
    });
    let p = dir.join("valid.mrc");
    write_mrc(&p, vol.view(), 2, 1.0).unwrap();
    std::fs::read(&p).unwrap()
}

fn put_i32(b: &mut [u8], off: usize, v: i32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// `cryodet info FILE` on `bytes` written to `dir/name`; must fail with `expected` (the file
/// name is always expected).
fn info_fails(dir: &Path, name: &str, bytes: &[u8], expected: &[&str]) {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    let mut exp = vec![name];
    exp.extend_from_slice(expected);
    expect_failure(&["info", s(&p)], &exp);
}

/// A 64x64 8-bit gray PNG (a bright disc on a ramp).
fn valid_png(dir: &Path) -> Vec<u8> {
    let img = image::GrayImage::from_fn(64, 64, |x, y| {
        let r2 = (x as i32 - 32).pow(2) + (y as i32 - 32).pow(2);
        image::Luma([if r2 < 200 { 220 } else { (x + y) as u8 }])
    });
    let p = dir.join("valid.png");
    img.save(&p).unwrap();
    std::fs::read(&p).unwrap()
}

/// `cryodet detect INPUT --weights W --size 64 --out DIR/out` plus `extra` arguments.
fn detect_args<'a>(
    input: &'a str,
    weights: &'a str,
    out: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut a = vec![
        "detect",
        input,
        "--weights",
        weights,
        "--out",
        out,
        "--size",
        "64",
        "--max-size",
        "64",
        "--threads",
        "1",
    ];
    a.extend_from_slice(extra);
    a
}

// ----------------------------------------------------------------------------------------------
// MRC.

#[test]
fn mrc_malformed_headers_and_sizes() {
    let d = temp_dir("robust-mrc");
    let good = valid_mrc(&d, 3, 8, 6);
    assert_eq!(good.len(), 1024 + 3 * 8 * 6 * 4);

    // 1. header only
    info_fails(
        &d,
        "header_only.mrc",
        &good[..1024],
        &["MRC size mismatch", "truncated?"],
    );
    // 2. half of the data
    let half = 1024 + (good.len() - 1024) / 2;
    info_fails(
        &d,
        "half_data.mrc",
        &good[..half],
        &["MRC size mismatch", "truncated?"],
    );
    // 3. trailing bytes: read (as mrcfile and IMOD do), with a one-line warning (tests/files.rs)
    let mut b = good.clone();
    b.extend_from_slice(&[0u8; 10]);
    let p = d.join("trailing.mrc");
    std::fs::write(&p, &b).unwrap();
    let (code, err) = run(&["info", s(&p)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("trailing.mrc: 10 byte(s) after the voxel data"),
        "{err}"
    );
    // 4. unsupported mode; 5. negative nx; 6. zero ny; 7. negative nsymbt; 8. nsymbt larger
    // than the file: the i32 at byte `at` set to `v`.
    let cases: [(&str, usize, i32, &[&str]); 5] = [
        ("mode3.mrc", 12, 3, &["unsupported MRC mode 3"]),
        ("neg_nx.mrc", 0, -6, &["invalid MRC header: nx = -6"]),
        ("zero_ny.mrc", 4, 0, &["invalid MRC header: ny = 0"]),
        ("neg_nsymbt.mrc", 92, -4, &["nsymbt = -4"]),
        (
            "big_nsymbt.mrc",
            92,
            1 << 30,
            &["1073741824 bytes of extended", "truncated?"],
        ),
    ];
    for (name, at, v, want) in cases {
        let mut b = good.clone();
        put_i32(&mut b, at, v);
        info_fails(&d, name, &b, want);
    }
    // 9. unknown machine stamp and a header valid under no byte order
    let mut b = good.clone();
    b[212..216].copy_from_slice(&[0x12, 0x34, 0, 0]);
    put_i32(&mut b, 12, 0x7f00_7f00);
    info_fails(&d, "bad_stamp.mrc", &b, &["unknown machine stamp 12 34"]);
    // 10. stamp says big-endian, data is little-endian: nx read as 6 << 24
    let mut b = good.clone();
    b[212..216].copy_from_slice(&[0x11, 0x11, 0, 0]);
    info_fails(
        &d,
        "wrong_endian.mrc",
        &b,
        &["invalid MRC header: nx = 100663296"],
    );
    // 11. not 'MAP ' at 208
    let mut b = good.clone();
    b[208..212].copy_from_slice(b"JUNK");
    info_fails(&d, "no_map.mrc", &b, &["expected 'MAP '"]);
    // 12. shorter than a header; 13. empty
    info_fails(
        &d,
        "short.mrc",
        &good[..100],
        &["100 bytes, shorter than the 1024-byte header"],
    );
    info_fails(
        &d,
        "empty.mrc",
        &[],
        &["0 bytes, shorter than the 1024-byte header"],
    );
}

#[test]
fn mrc_claiming_1e12_voxels_is_refused_fast_without_allocating() {
    let d = temp_dir("robust-mrc_huge");
    let mut b = valid_mrc(&d, 1, 4, 4);
    for off in [0, 4, 8] {
        put_i32(&mut b, off, 10_000); // 10^4 on each axis: 10^12 voxels, 4 TB of float32
    }
    let p = d.join("huge.mrc");
    std::fs::write(&p, &b).unwrap();
    let t0 = Instant::now();
    let (code, err) = info_under_vmem_limit(&p);
    let dt = t0.elapsed();
    check_failure(
        code,
        &err,
        &["info", s(&p)],
        &[
            "huge.mrc",
            "10000x10000x10000",
            "4000000001024 bytes",
            "truncated?",
        ],
    );
    assert!(dt < HUGE_CLAIM_MAX_TIME, "took {dt:?}");
}

#[test]
fn mrc_nan_pixels_fail_or_are_masked_and_slices_and_tilts_are_checked() {
    let d = temp_dir("robust-mrc_nan");
    let mut vol = Array3::from_shape_fn((2, 64, 64), |(z, y, x)| ((z + y * 3 + x) % 40) as f32);
    vol[[0, 10, 20]] = f32::NAN;
    vol[[1, 5, 5]] = f32::INFINITY;
    let p = d.join("nan_stack.mrc");
    write_mrc(&p, vol.view(), 2, 1.0).unwrap();
    let w = weights_path();
    let out = d.join("out");
    // 14. NaN in an MRC section: an error naming the file, the count and the first pixel
    let args = detect_args(s(&p), s(&w), s(&out), &["--slices", "0"]);
    expect_failure(
        &args,
        &["nan_stack.mrc", "1 non-finite pixel(s)", "(y=10, x=20)"],
    );
    // 15. with --mask-nonfinite: a warning and success
    let args = detect_args(s(&p), s(&w), s(&out), &["--mask-nonfinite"]);
    let (code, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("nan_stack.mrc: slice 0: 1 NaN/Inf pixel(s) replaced by the median"),
        "{err}"
    );
    // 16. --slices outside the stack
    let args = detect_args(s(&p), s(&w), s(&out), &["--slices", "5:9"]);
    expect_failure(&args, &["nan_stack.mrc", "--slices \"5:9\"", "within 0..2"]);
    // 17. a junk tilt file beside the stack
    std::fs::write(d.join("nan_stack.tlt"), "-60.0\nabc\n").unwrap();
    let args = detect_args(s(&p), s(&w), s(&out), &["--mask-nonfinite"]);
    expect_failure(&args, &["nan_stack.tlt", "line 2: not a number"]);
}

// ----------------------------------------------------------------------------------------------
// Images.

#[test]
fn image_malformed_files() {
    let d = temp_dir("robust-img");
    let png = valid_png(&d);
    // 18. truncated PNG (header intact, pixel data cut)
    info_fails(
        &d,
        "truncated.png",
        &png[..png.len() / 2],
        &["cannot decode image", "unexpected end of file"],
    );
    // 19. a .png that is text
    info_fails(
        &d,
        "text.png",
        b"hello, I am not an image\n",
        &["cannot decode image"],
    );
    // 20. empty .png
    info_fails(&d, "empty.png", &[], &["cannot decode image"]);
    // 21. JPEG garbage: SOI marker then noise
    let mut jpg = vec![0xFF, 0xD8, 0xFF, 0xE0];
    jpg.extend((0..300u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    info_fails(&d, "garbage.jpg", &jpg, &["cannot decode image", "Jpeg"]);
    // 22. PNG claiming 100000 x 100000 pixels (IHDR width/height patched, CRC fixed)
    let mut huge = png.clone();
    huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&huge[12..29]);
    huge[29..33].copy_from_slice(&crc.to_be_bytes());
    let p = d.join("huge_claim.png");
    std::fs::write(&p, &huge).unwrap();
    let out = d.join("out");
    let w = weights_path();
    expect_failure(
        &detect_args(s(&p), s(&w), s(&out), &[]),
        &["huge_claim.png", "cannot decode image"],
    );
    // 23. TIFF claiming huge dimensions (fixture: ImageWidth/ImageLength beyond the limits)
    let t = fixture_path("io/huge.tif");
    expect_failure(&["info", s(&t)], &["huge.tif", "TIFF"]);
    expect_failure(
        &detect_args(s(&t), s(&w), s(&out), &[]),
        &["huge.tif", "TIFF"],
    );
    // 24b. a 1.2 KB JPEG whose header claims 46352 x 19464 pixels (900 MB; found by
    // cryodet-fuzz): refused by the decode budget, not allocated
    let bomb = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/image/alloc-400e56a3395ee758"),
    )
    .unwrap();
    info_fails(
        &d,
        "bomb.jpg",
        &bomb,
        &["cannot decode image", "Memory limit exceeded"],
    );
    // 23b. a 16-bit TIFF whose ImageWidth/ImageLength tags (LONG) are patched to 60000 x 60000
    // (7.2 GB of samples, under MAX_SIDE on each axis): refused before allocating
    let mut tif = std::fs::read(fixture_path("io/gray16.tif")).unwrap();
    let ifd = u32::from_le_bytes(tif[4..8].try_into().unwrap()) as usize;
    let n = u16::from_le_bytes(tif[ifd..ifd + 2].try_into().unwrap()) as usize;
    let mut patched = 0;
    for i in 0..n {
        let e = ifd + 2 + 12 * i;
        let tag = u16::from_le_bytes(tif[e..e + 2].try_into().unwrap());
        if tag == 256 || tag == 257 {
            tif[e + 8..e + 12].copy_from_slice(&60_000u32.to_le_bytes());
            patched += 1;
        }
    }
    assert_eq!(patched, 2, "ImageWidth/ImageLength tags not found");
    let p = d.join("huge_claim.tif");
    std::fs::write(&p, &tif).unwrap();
    let (code, err) = info_under_vmem_limit(&p);
    check_failure(
        code,
        &err,
        &["info", s(&p)],
        &["huge_claim.tif", "cannot decode TIFF"],
    );
    // 24. TIFF cut after its header
    let tif = std::fs::read(fixture_path("io/gray16.tif")).unwrap();
    info_fails(&d, "cut.tif", &tif[..12], &["cannot decode TIFF"]);
}

/// `cryodet info PATH` under an address-space limit (`HUGE_CLAIM_MAX_VMEM_KB`) far below the
/// size a file claims, where an allocation of the claimed size would abort (a signal, not exit
/// 1): the exit code and stderr.
fn info_under_vmem_limit(p: &Path) -> (i32, String) {
    let cmd = format!(
        "ulimit -v {HUGE_CLAIM_MAX_VMEM_KB}; exec '{}' info '{}'",
        bin(),
        s(p)
    );
    let out = Command::new("sh").args(["-c", &cmd]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), err)
}

/// A fresh directory `tag` holding a valid `cell.png`: (the directory, the image, `out` in it for
/// detect's outputs).
fn cell_dir(tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    let d = temp_dir(tag);
    let img = d.join("cell.png");
    std::fs::write(&img, valid_png(&d)).unwrap();
    let out = d.join("out");
    (d, img, out)
}

/// CRC-32 (PNG chunk checksum, polynomial 0xEDB88320).
fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn float_tiff_nan_pixels_fail_or_are_masked() {
    let d = temp_dir("robust-tif_nan");
    let t = fixture_path("io/nan.tif");
    let w = weights_path();
    let out = d.join("out");
    // 25. NaN pixels in a float TIFF
    expect_failure(
        &detect_args(s(&t), s(&w), s(&out), &[]),
        &["nan.tif", "2 non-finite pixel(s)"],
    );
    // 26. masked: warning and success
    let (code, err) = run(&detect_args(s(&t), s(&w), s(&out), &["--mask-nonfinite"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("nan.tif: 2 NaN/Inf pixel(s) replaced"),
        "{err}"
    );
}

// ----------------------------------------------------------------------------------------------
// LabelImg / VOC XML (read by `detect --overlay --gt DIR` through `cryodet::io::voc`).

const GOOD_XML: &str = "<annotation>\n\t<folder>f</folder>\n\t<filename>cell.png</filename>\n\
\t<size>\n\t\t<width>64</width>\n\t\t<height>64</height>\n\t\t<depth>1</depth>\n\t</size>\n\
\t<object>\n\t\t<name>mitochondria</name>\n\t\t<difficult>0</difficult>\n\
\t\t<bndbox>\n\t\t\t<xmin>10</xmin>\n\t\t\t<ymin>12</ymin>\n\t\t\t<xmax>30</xmax>\n\t\t\t<ymax>40</ymax>\n\t\t</bndbox>\n\
\t</object>\n</annotation>\n";

#[test]
fn voc_malformed_annotations() {
    let (d, img, out) = cell_dir("robust-voc");
    let w = weights_path();
    let gt = d.join("gt");
    std::fs::create_dir_all(&gt).unwrap();
    let xml = gt.join("cell.xml");
    let gt_run = |bytes: &[u8], expected: &[&str]| {
        std::fs::write(&xml, bytes).unwrap();
        let mut exp = vec!["cell.xml"];
        exp.extend_from_slice(expected);
        expect_failure(
            &detect_args(s(&img), s(&w), s(&out), &["--overlay", "--gt", s(&gt)]),
            &exp,
        );
    };
    // The valid annotation works (so the cases below fail for their own reason).
    std::fs::write(&xml, GOOD_XML).unwrap();
    let (code, err) = run(&detect_args(
        s(&img),
        s(&w),
        s(&out),
        &["--overlay", "--gt", s(&gt)],
    ));
    assert_eq!(code, 0, "{err}");

    // 27. malformed XML (unclosed element)
    gt_run(
        GOOD_XML.replace("</xmin>", "").as_bytes(),
        &["malformed XML"],
    );
    // 28. invalid UTF-8
    let mut b = GOOD_XML.as_bytes().to_vec();
    let at = GOOD_XML.find("mitochondria").unwrap();
    b[at] = 0xFF;
    gt_run(&b, &["not valid UTF-8", &format!("byte {at}")]);
    // 29. missing bndbox coordinate
    gt_run(
        GOOD_XML.replace("\t\t\t<ymax>40</ymax>\n", "").as_bytes(),
        &["object 1", "missing <ymax>"],
    );
    // 30. missing bndbox
    let start = GOOD_XML.find("\t\t<bndbox>").unwrap();
    let end = GOOD_XML.find("</bndbox>\n").unwrap() + "</bndbox>\n".len();
    let no_box = format!("{}{}", &GOOD_XML[..start], &GOOD_XML[end..]);
    gt_run(no_box.as_bytes(), &["missing <bndbox>"]);
    // 31. non-numeric coordinate
    gt_run(
        GOOD_XML
            .replace("<xmin>10</xmin>", "<xmin>ten</xmin>")
            .as_bytes(),
        &["<xmin> is not a finite number: \"ten\""],
    );
    // 32. xmax < xmin
    gt_run(
        GOOD_XML
            .replace("<xmax>30</xmax>", "<xmax>5</xmax>")
            .as_bytes(),
        &["inverted box xmin=10 ymin=12 xmax=5"],
    );
    // 33. wrong root element
    gt_run(
        GOOD_XML.replace("annotation>", "annot>").as_bytes(),
        &["root element is <annot>, expected <annotation>"],
    );
    // 34. difficult flag neither 0 nor 1
    gt_run(
        GOOD_XML
            .replace("<difficult>0", "<difficult>maybe")
            .as_bytes(),
        &["<difficult> must be 0 or 1"],
    );
}

// ----------------------------------------------------------------------------------------------
// Weights.

/// Named tensors and string metadata of a weight file.
type TensorsAndMetadata = (
    Vec<(String, ArrayD<f32>)>,
    std::collections::HashMap<String, String>,
);

/// The fixture weights' tensors and metadata, for building variants.
fn fixture_tensors() -> TensorsAndMetadata {
    let wf = WeightFile::load(weights_path()).unwrap();
    let t = wf
        .names()
        .map(|n| (n.clone(), wf.get(n).unwrap().clone()))
        .collect();
    (t, wf.metadata.clone())
}

fn save_variant(
    path: &Path,
    t: &[(String, ArrayD<f32>)],
    meta: &std::collections::HashMap<String, String>,
) {
    let views: Vec<(String, ArrayViewD<f32>)> =
        t.iter().map(|(n, a)| (n.clone(), a.view())).collect();
    save(path, &views, meta, Precision::F32).unwrap();
}

#[test]
fn weights_malformed_files() {
    let (d, img, out) = cell_dir("robust-weights");
    let detect_with = |name: &str, expected: &[&str]| {
        let p = d.join(name);
        let mut exp = vec![name];
        exp.extend_from_slice(expected);
        expect_failure(&detect_args(s(&img), s(&p), s(&out), &[]), &exp);
    };
    let good = std::fs::read(weights_path()).unwrap();

    // 35. garbage
    std::fs::write(
        d.join("garbage.safetensors"),
        b"PK\x03\x04 definitely not tensors",
    )
    .unwrap();
    detect_with(
        "garbage.safetensors",
        &["not a valid safetensors file", "HeaderTooLarge"],
    );
    // 36. truncated (header intact, data cut)
    std::fs::write(d.join("truncated.safetensors"), &good[..good.len() / 2]).unwrap();
    detect_with(
        "truncated.safetensors",
        &["not a valid safetensors file", "MetadataIncompleteBuffer"],
    );
    // 37. header length larger than the file
    let mut b = good.clone();
    b[..8].copy_from_slice(&(good.len() as u64 * 10).to_le_bytes());
    std::fs::write(d.join("hdrlen.safetensors"), &b).unwrap();
    detect_with(
        "hdrlen.safetensors",
        &["not a valid safetensors file", "InvalidHeaderLength"],
    );
    // 38. empty file
    std::fs::write(d.join("empty.safetensors"), b"").unwrap();
    detect_with(
        "empty.safetensors",
        &["not a valid safetensors file", "HeaderTooSmall"],
    );

    let (tensors, meta) = fixture_tensors();
    // Saves the tensors `t` with metadata `m` as `name`; detect with it fails with `expected`.
    let variant_fails = |name: &str, t: &[(String, ArrayD<f32>)], m: &_, expected: &[&str]| {
        save_variant(&d.join(name), t, m);
        detect_with(name, expected);
    };
    // 39. missing tensor
    let t: Vec<_> = tensors
        .iter()
        .filter(|(n, _)| n != "head.bbox_pred.bias")
        .cloned()
        .collect();
    let want = ["missing tensor `head.bbox_pred.bias`"];
    variant_fails("missing.safetensors", &t, &meta, &want);
    // 40. extra tensor
    let mut t = tensors.clone();
    t.push(("head.extra.weight".into(), ArrayD::zeros(vec![3, 2])));
    let want = ["1 unexpected tensor(s)", "`head.extra.weight` [3, 2]"];
    variant_fails("extra.safetensors", &t, &meta, &want);
    // 41. mis-shaped tensor
    let mut t = tensors.clone();
    let i = t
        .iter()
        .position(|(n, _)| n == "head.cls_score.bias")
        .unwrap();
    let k = t[i].1.len();
    t[i].1 = ArrayD::zeros(vec![k + 1]);
    let want = format!(
        "tensor `head.cls_score.bias` has shape [{}], expected [{k}]",
        k + 1
    );
    variant_fails("misshaped.safetensors", &t, &meta, &[&want]);
    // 42. NaN in a tensor
    let mut t = tensors.clone();
    let i = t.iter().position(|(n, _)| n == "rpn.conv.weight").unwrap();
    t[i].1.as_slice_mut().unwrap()[3] = f32::NAN;
    let want = ["tensor `rpn.conv.weight` contains NaN or Inf"];
    variant_fails("nan.safetensors", &t, &meta, &want);
    // 43. `classes` metadata naming the wrong number of classes;
    // 44. `bn_eps` metadata that is not a number.
    for (name, key, value, want) in [
        (
            "classes.safetensors",
            "classes",
            "__background__,a,b,c,d,e,f",
            "metadata `classes` names 7 classes",
        ),
        (
            "bneps.safetensors",
            "bn_eps",
            "tiny",
            "metadata `bn_eps` = \"tiny\" is not a number >= 0",
        ),
    ] {
        let mut m = meta.clone();
        m.insert(key.into(), value.into());
        variant_fails(name, &tensors, &m, &[want]);
    }
}

// ----------------------------------------------------------------------------------------------
// Command-line arguments, directories, detection JSON for `eval`.

#[test]
fn bad_arguments_and_inputs() {
    let (d, img, out) = cell_dir("robust-args");
    let w = weights_path();
    // 45. --shard I/N with I >= N
    expect_failure(
        &detect_args(s(&img), s(&w), s(&out), &["--shard", "3/2"]),
        &["--shard \"3/2\": expected I/N with 0 <= I < N"],
    );
    // 46. unknown --format
    expect_failure(
        &detect_args(s(&img), s(&w), s(&out), &["--format", "json,yaml"]),
        &["--format: unknown format \"yaml\""],
    );
    // 47. a missing input file
    let missing = d.join("missing.png");
    expect_failure(
        &detect_args(s(&missing), s(&w), s(&out), &[]),
        &["missing.png"],
    );
    // 48. a directory with no images: warned about by name (nothing to do)
    let empty = d.join("no_images");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("notes.txt"), "not an image").unwrap();
    let (code, err) = run(&detect_args(s(&empty), s(&w), s(&out), &[]));
    assert!(code == 1 && !err.contains("panicked"), "{err}");
    assert!(
        err.contains("no_images: no images or MRC files in this directory")
            && err.contains("error: no input files"),
        "{err}"
    );
    // 49. a missing weight file
    let nw = d.join("nope.safetensors");
    expect_failure(
        &detect_args(s(&img), s(&nw), s(&out), &[]),
        &["nope.safetensors"],
    );
}

#[test]
fn eval_malformed_detection_json() {
    let d = temp_dir("robust-eval");
    let gt = d.join("gt");
    let pred = d.join("pred");
    std::fs::create_dir_all(&gt).unwrap();
    std::fs::create_dir_all(&pred).unwrap();
    std::fs::write(gt.join("cell_01.xml"), GOOD_XML).unwrap();
    let json = pred.join("cell_01.json");
    let eval_out = d.join("eval_out");
    let eval_args = [
        "eval",
        "--gt",
        s(&gt),
        "--pred",
        s(&pred),
        "--out",
        s(&eval_out),
    ];
    let eval = |text: &str, expected: &[&str]| {
        std::fs::write(&json, text).unwrap();
        let mut exp = vec!["cell_01.json"];
        exp.extend_from_slice(expected);
        expect_failure(&eval_args, &exp);
    };
    let good = r#"{"image": "cell.png", "width": 64, "height": 64, "detections": [
        {"box": [9, 11, 30, 40], "score": 0.9, "label": "mitochondria", "class_id": 1}]}"#;
    // The valid file evaluates (so the cases below fail for their own reason).
    std::fs::write(&json, good).unwrap();
    let out = Command::new(bin()).args(eval_args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 50. malformed JSON
    eval(&good[..good.len() - 5], &["invalid JSON"]);
    // 51. missing field
    eval(
        &good.replace("\"score\": 0.9, ", ""),
        &["not an image detection file", "score"],
    );
    // 52. inverted box
    eval(
        &good.replace("[9, 11, 30, 40]", "[30, 11, 9, 40]"),
        &["detection 0: inverted box"],
    );
    // 53. a stack file where an image file is expected
    eval(
        r#"{"image": "s.mrc", "width": 64, "height": 64, "depth": 2, "slices": []}"#,
        &["this is a stack detection file"],
    );
    // 54. a box with the wrong number of coordinates
    eval(
        &good.replace("[9, 11, 30, 40]", "[9, 11, 30]"),
        &["not an image detection file"],
    );
}

#[test]
fn train_refuses_an_unknown_class() {
    let d = temp_dir("robust-train");
    std::fs::create_dir_all(d.join("images")).unwrap();
    std::fs::create_dir_all(d.join("annotations")).unwrap();
    std::fs::write(d.join("images/cell.png"), valid_png(&d)).unwrap();
    std::fs::write(d.join("annotations/cell.xml"), GOOD_XML).unwrap();
    let out = d.join("run");
    // 55. an object whose class is not in --classes (refused while loading, before training)
    let head = [
        "train",
        "--data",
        s(&d),
        "--out",
        s(&out),
        "--classes",
        "ribosome,vesicle",
        "--max-iters",
        "1",
    ];
    expect_failure(
        &[&head[..], &TINY_TRAIN[..]].concat(),
        &[
            "cell.xml",
            "unknown class \"mitochondria\"; the known classes (--classes) are: ribosome, vesicle",
        ],
    );
}
