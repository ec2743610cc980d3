//! Real files, real tomograms (issue 17) through the `cryodet` binary: files as other programs
//! write them (IMOD's unsigned bytes, trailing data, `.ccp4`/`.preali`/compressed MRC, planar
//! and multi-page TIFF), and what `detect` writes (unique names, all-or-nothing outputs, boxes
//! inside the image, no empty IMOD point file, label volumes with the input's geometry, one VOC
//! file naming each slice), and item 12's messages (`info`, `eval`, `train`, `synth`).
//! `tools/check_written_mrc.sh` validates the MRC files written with `mrcfile`.
//!
//! Every file is built here in Rust (MRC headers byte by byte from `write_mrc`'s, TIFF by the
//! `tiff` crate or by hand for the planar layout), so no Python is needed. `detect` runs use the
//! small fixture weights at a 64..90 px input: the whole file takes a few seconds.

use cryodet::io::mrc::{self, write_mrc, write_mrc_with, MrcGeometry, IMOD_STAMP};
use cryodet::io::voc;
use cryodet::testutil::{fixture_path, temp_dir, TINY_TRAIN};
use ndarray::{Array2, Array3};
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// Exit code, stdout, stderr of `cryodet ARGS`.
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cryodet"))
        .args(args)
        .output()
        .expect("run cryodet");
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(!e.contains("panicked"), "cryodet {args:?} panicked:\n{e}");
    (out.status.code().unwrap_or(-1), o, e)
}

/// `run` that must succeed; returns (stdout, stderr).
fn ok(args: &[&str]) -> (String, String) {
    let (code, o, e) = run(args);
    assert_eq!(code, 0, "cryodet {args:?} failed:\n{e}");
    (o, e)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn weights() -> String {
    fixture_path("model/weights_small.safetensors")
        .to_str()
        .unwrap()
        .to_string()
}

/// `detect INPUTS --weights small --out OUT --size 64 --max-size 64 --threads 1 EXTRA`.
fn detect(inputs: &[&str], out: &Path, extra: &[&str]) -> (i32, String, String) {
    let w = weights();
    let mut a = vec!["detect"];
    a.extend_from_slice(inputs);
    a.extend_from_slice(&["--weights", &w, "--out", s(out), "--threads", "1"]);
    if !extra.contains(&"--size") {
        a.extend_from_slice(&["--size", "64", "--max-size", "64"]);
    }
    a.extend_from_slice(extra);
    run(&a)
}

fn put_i32(b: &mut [u8], off: usize, v: i32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// A float32 MRC of `nz x ny x nx` (a smooth pattern) written by cryodet; its bytes.
fn float_mrc(path: &Path, nz: usize, ny: usize, nx: usize) -> Vec<u8> {
    let vol = Array3::from_shape_fn((nz, ny, nx), |(z, y, x)| {
        ((z * 31 + y * 7 + x * 3) % 50) as f32
    });
    write_mrc(path, vol.view(), 2, 1.0).unwrap();
    std::fs::read(path).unwrap()
}

/// A mode-0 MRC of `nz x ny x nx` bytes `data`, with IMOD's stamp and `flags` when given.
fn byte_mrc(path: &Path, (nz, ny, nx): (usize, usize, usize), data: &[u8], imod: Option<i32>) {
    assert_eq!(data.len(), nz * ny * nx);
    let mut b = float_mrc(path, nz, ny, nx);
    b.truncate(1024);
    put_i32(&mut b, 12, 0);
    if let Some(flags) = imod {
        put_i32(&mut b, 152, IMOD_STAMP);
        put_i32(&mut b, 156, flags);
    }
    b.extend_from_slice(data);
    std::fs::write(path, b).unwrap();
}

/// `(min, max)` of `info`'s intensity line.
fn intensity(stdout: &str) -> (f64, f64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("intensity"))
        .unwrap_or_else(|| panic!("no intensity line:\n{stdout}"));
    let t: Vec<&str> = line.split_whitespace().collect();
    let after = |k: &str| -> f64 {
        let i = t.iter().position(|w| *w == k).unwrap();
        t[i + 1].parse().unwrap()
    };
    (after("min"), after("max"))
}

fn intensity_line(stdout: &str) -> String {
    stdout
        .lines()
        .find(|l| l.starts_with("intensity"))
        .unwrap()
        .to_string()
}

fn json(p: &Path) -> serde_json::Value {
    let t = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&t).unwrap()
}

/// A gray image `[H, W]` saved as 8-bit PNG.
fn png(path: &Path, img: &Array2<u8>) {
    let (h, w) = img.dim();
    image::GrayImage::from_fn(w as u32, h as u32, |x, y| {
        image::Luma([img[[y as usize, x as usize]]])
    })
    .save(path)
    .unwrap();
}

/// A 64x64 test picture: a bright disc at (cy, cx) on a ramp.
fn disc(cy: i32, cx: i32, n: usize) -> Array2<u8> {
    Array2::from_shape_fn((n, n), |(y, x)| {
        let r2 = (x as i32 - cx).pow(2) + (y as i32 - cy).pow(2);
        if r2 < 150 {
            220
        } else {
            ((x + y) % 90) as u8
        }
    })
}

// ---------------------------------------------------------------------------------- item 1

#[test]
fn imod_unsigned_bytes_follow_imods_flag_and_the_override() {
    let d = temp_dir("files-imod");
    let data: Vec<u8> = (0..256).map(|i| (10 + i % 227) as u8).collect();
    let dims = (1, 16, 16);
    let unsigned = d.join("imod_unsigned.mrc");
    byte_mrc(&unsigned, dims, &data, Some(0));
    let signed_flag = d.join("imod_signed.mrc");
    byte_mrc(&signed_flag, dims, &data, Some(1));
    let plain = d.join("plain.mrc");
    byte_mrc(&plain, dims, &data, None);

    // IMOD's stamp, signed bit clear: 10..236 as stored.
    let (o, _) = ok(&["info", s(&unsigned)]);
    assert_eq!(intensity(&o), (10.0, 236.0), "{o}");
    assert!(o.contains("uint8"), "{o}");
    // IMOD's stamp with the signed bit, and no stamp at all (MRC2014): signed.
    for p in [&signed_flag, &plain] {
        let (o, _) = ok(&["info", s(p)]);
        let (lo, hi) = intensity(&o);
        assert!(lo < 0.0 && hi <= 127.0, "{}: {o}", p.display());
    }
    // The override, both ways.
    let (o, _) = ok(&["info", s(&plain), "--mrc-signed-bytes", "no"]);
    assert_eq!(intensity(&o), (10.0, 236.0), "{o}");
    let (o, _) = ok(&["info", s(&unsigned), "--mrc-signed-bytes", "yes"]);
    assert!(intensity(&o).0 < 0.0, "{o}");
    // detect takes the option too.
    let (code, _, e) = detect(&[s(&plain)], &d.join("out"), &["--mrc-signed-bytes", "no"]);
    assert_eq!(code, 0, "{e}");
}

// ---------------------------------------------------------------------------------- item 7

#[test]
fn trailing_bytes_are_a_one_line_warning() {
    let d = temp_dir("files-trailing");
    let p = d.join("tail.mrc");
    let mut b = float_mrc(&p, 2, 64, 64);
    b.extend_from_slice(&[7u8; 512]);
    std::fs::write(&p, &b).unwrap();
    let (_, e) = ok(&["info", s(&p)]);
    assert!(
        e.contains("tail.mrc: 512 byte(s) after the voxel data ignored"),
        "{e}"
    );
    let (code, _, e) = detect(&[s(&p)], &d.join("out"), &[]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(
        e.matches("512 byte(s) after the voxel data").count(),
        1,
        "{e}"
    );
    assert_eq!(json(&d.join("out/tail.json"))["depth"], 2);
}

// ---------------------------------------------------------------------------------- item 6

#[test]
fn mrc_recognized_by_header_and_decompressed() {
    let d = temp_dir("files-names");
    let p = d.join("vol.mrc");
    let bytes = float_mrc(&p, 2, 64, 64);
    let (o, _) = ok(&["info", s(&p)]);
    let reference = intensity_line(&o);
    let gz = d.join("vol.map.gz");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&bytes).unwrap();
    std::fs::write(&gz, e.finish().unwrap()).unwrap();
    let bz = d.join("vol.map.bz2");
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    e.write_all(&bytes).unwrap();
    std::fs::write(&bz, e.finish().unwrap()).unwrap();
    for name in ["vol.ccp4", "vol.preali", "vol.data"] {
        std::fs::write(d.join(name), &bytes).unwrap();
    }
    for (name, what) in [
        ("vol.ccp4", "little-endian)"),
        ("vol.preali", "little-endian)"),
        ("vol.data", "little-endian)"),
        ("vol.map.gz", "gzip compressed"),
        ("vol.map.bz2", "bzip2 compressed"),
    ] {
        let (o, _) = ok(&["info", s(&d.join(name))]);
        assert!(
            o.contains("type       MRC") && o.contains(what),
            "{name}: {o}"
        );
        assert_eq!(intensity_line(&o), reference, "{name}");
    }
    // A compressed file that is not an MRC: the message names the compression.
    let png_gz = d.join("img.png.gz");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b"\x89PNG not really").unwrap();
    std::fs::write(&png_gz, e.finish().unwrap()).unwrap();
    let (code, _, err) = run(&["info", s(&png_gz)]);
    assert!(
        code == 1 && err.contains("img.png.gz") && err.contains("gzip compressed"),
        "{err}"
    );
    // detect reads them as stacks; a directory includes the MRC of an unknown extension.
    let out = d.join("out");
    let (code, _, err) = detect(&[s(&gz), s(&bz)], &out, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out.join("vol.json"))["depth"], 2);
    assert_eq!(json(&out.join("vol_1.json"))["depth"], 2);
    let only = d.join("only");
    std::fs::create_dir_all(&only).unwrap();
    std::fs::write(only.join("tomo.data"), &bytes).unwrap();
    let (code, _, err) = detect(&[s(&only)], &d.join("out2"), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&d.join("out2/tomo.json"))["depth"], 2);
}

// ---------------------------------------------------------------------------------- item 4, 5

#[test]
fn no_objects_no_point_file_and_labels_keep_the_geometry() {
    let d = temp_dir("files-objects");
    let p = d.join("geo.mrc");
    let vol = Array3::from_shape_fn((3, 64, 64), |(z, y, x)| ((z + y * 3 + x) % 40) as f32);
    let geom = MrcGeometry {
        voxel_size: [19.5, 19.5, 208.3],
        origin: [100.0, -50.0, 25.0],
        nstart: [5, -6, 7],
    };
    write_mrc_with(&p, vol.view(), 2, &geom).unwrap();
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // A point file of an earlier run that found objects: stale now.
    std::fs::write(out.join("geo.objects.txt"), "1 1 0 0 0\n").unwrap();
    let (code, _, e) = detect(
        &[s(&p)],
        &out,
        &["--3d", "--label-volume", "--score-thresh", "1.5"],
    );
    assert_eq!(code, 0, "{e}");
    assert!(e.contains("no IMOD point file"), "{e}");
    assert!(
        !out.join("geo.objects.txt").exists(),
        "empty/stale point file left"
    );
    assert!(out.join("geo.objects.json").is_file());
    let h = mrc::read_header(&out.join("geo.labels.mrc")).unwrap();
    for i in 0..3 {
        assert!(
            (h.voxel_size[i] - geom.voxel_size[i]).abs() < 1e-3,
            "{:?}",
            h.voxel_size
        );
    }
    assert_eq!(h.origin, geom.origin);
    assert_eq!(h.nstart, geom.nstart);
    assert_eq!((h.nx, h.ny, h.nz, h.mode), (64, 64, 3, 6));
}

/// `cryodet link` follows the same rule as `detect --3d`: no objects, no point file (a stale one
/// of an earlier run removed), a note.
#[test]
fn link_without_objects_writes_no_point_file() {
    use cryodet::io::detections::{write_json, Detection, SliceDetections, StackDetections};
    let d = temp_dir("files-link-empty");
    // One box on one slice: dropped by --min-slices 3, so no object.
    let slices = (0..4)
        .map(|z| SliceDetections {
            z,
            detections: if z == 1 {
                vec![Detection {
                    bbox: [5.0, 5.0, 20.0, 20.0],
                    score: 0.9,
                    label: "mitochondria".into(),
                    class_id: 1,
                }]
            } else {
                Vec::new()
            },
        })
        .collect();
    let file = d.join("tomo.json");
    let stack = StackDetections {
        precision: None,
        image: "tomo.mrc".into(),
        width: 64,
        height: 64,
        depth: 4,
        slices,
    };
    write_json(&file, &stack).unwrap();
    let out = d.join("objects");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("tomo.objects.txt"), "1 1 0 0 0\n").unwrap();
    let (o, e) = ok(&["link", s(&file), "--out", s(&out)]);
    assert!(o.contains("0 3D object(s)"), "{o}");
    assert!(e.contains("no IMOD point file"), "{e}");
    assert!(
        !out.join("tomo.objects.txt").exists(),
        "empty or stale point file left"
    );
    assert!(out.join("tomo.objects.json").is_file());
}

// ---------------------------------------------------------------------------------- item 9

/// Streaming `detect --3d`: montage tiles downscaled to at most 1024 px (a 1100 px stack gives
/// 1024 px tiles) and at most 16 tiles however deep the stack (20 slices at `--montage-every 1`
/// take every 2nd: 10 tiles, 3 rows of 4); the progress line per slice with its time and ETA.
/// The peak-RSS figures come from `tools/bench_stream.sh`, not from a test.
#[test]
fn stack_montage_is_bounded_and_progress_has_an_eta() {
    let d = temp_dir("files-stream");
    let gap = 4;
    // `detect --3d --montage-every 1` on an nz x n x n MRC: stderr and the montage's size.
    let montage = |name: &str, nz: usize, n: usize| {
        let p = d.join(format!("{name}.mrc"));
        float_mrc(&p, nz, n, n);
        let (code, _, e) = detect(&[s(&p)], &d.join("out"), &["--3d", "--montage-every", "1"]);
        assert_eq!(code, 0, "{e}");
        let png = d.join(format!("out/{name}.montage.png"));
        (e, image::image_dimensions(png).unwrap())
    };
    let (e, dims) = montage("big", 2, 1100);
    assert!(
        e.contains("slice 0 (1/2):") && e.contains(" s, ETA "),
        "{e}"
    );
    assert!(e.contains("slice 1 (2/2):"), "{e}");
    assert_eq!(dims, (2 * (1024 + gap) + gap, 1024 + 2 * gap));
    let (_, dims) = montage("deep", 20, 64);
    assert_eq!(dims, (4 * (64 + gap) + gap, 3 * (64 + gap) + gap));
}

// ---------------------------------------------------------------------------------- item 10

#[test]
fn boxes_are_clipped_to_the_image_after_mapping_back() {
    let d = temp_dir("files-clip");
    // 100 px at --size 90: the f32 ratio 100/90 maps a box edge at 90 to 100.00001.
    let p = d.join("edge.png");
    png(&p, &disc(95, 95, 100));
    let out = d.join("out");
    let (code, _, e) = detect(
        &[s(&p)],
        &out,
        &["--size", "90", "--max-size", "90", "--score-thresh", "0"],
    );
    assert_eq!(code, 0, "{e}");
    let v = json(&out.join("edge.json"));
    let dets = v["detections"].as_array().unwrap();
    assert!(!dets.is_empty());
    let mut at_border = 0;
    for det in dets {
        let b: Vec<f64> = det["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert!(
            0.0 <= b[0]
                && b[0] < b[2]
                && b[2] <= 100.0
                && 0.0 <= b[1]
                && b[1] < b[3]
                && b[3] <= 100.0,
            "box outside the 100x100 image: {b:?}"
        );
        at_border += usize::from(b[2] == 100.0 || b[3] == 100.0);
    }
    assert!(
        at_border > 0,
        "no box reaches the border: the test checks nothing"
    );
}

// ---------------------------------------------------------------------------------- item 8

#[test]
fn output_names_are_unique_within_a_run() {
    let d = temp_dir("files-unique");
    for sub in ["a", "b", "c"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    png(&d.join("a/x.png"), &disc(20, 20, 64));
    png(&d.join("b/x.png"), &disc(40, 40, 64));
    let out = d.join("out");
    let (a, b) = (d.join("a/x.png"), d.join("b/x.png"));
    let (code, _, e) = detect(&[s(&a), s(&b)], &out, &[]);
    assert_eq!(code, 0, "{e}");
    assert!(e.contains("x_1"), "{e}");
    assert_eq!(json(&out.join("x.json"))["image"], s(&a));
    assert_eq!(json(&out.join("x_1.json"))["image"], s(&b));
    assert!(out.join("x_1.csv").is_file());
    // x.png and x.tif in one directory.
    png(&d.join("c/x.png"), &disc(20, 20, 64));
    let data: Vec<u8> = disc(30, 30, 64).iter().copied().collect();
    let f = std::fs::File::create(d.join("c/x.tif")).unwrap();
    let mut enc = tiff::encoder::TiffEncoder::new(f).unwrap();
    enc.write_image::<tiff::encoder::colortype::Gray8>(64, 64, &data)
        .unwrap();
    drop(enc);
    let out = d.join("out_c");
    let (code, _, e) = detect(&[s(&d.join("c"))], &out, &[]);
    assert_eq!(code, 0, "{e}");
    assert!(json(&out.join("x.json"))["image"]
        .as_str()
        .unwrap()
        .ends_with("x.png"));
    assert!(json(&out.join("x_1.json"))["image"]
        .as_str()
        .unwrap()
        .ends_with("x.tif"));
}

// ---------------------------------------------------------------------------------- item 11

#[test]
fn a_nan_slice_leaves_no_output_and_names_the_slice() {
    let d = temp_dir("files-nan");
    let mut vol = Array3::from_shape_fn((5, 64, 64), |(z, y, x)| ((z + y * 3 + x) % 40) as f32);
    vol[[3, 10, 20]] = f32::NAN;
    let p = d.join("st.mrc");
    write_mrc(&p, vol.view(), 2, 1.0).unwrap();
    let out = d.join("out");
    let (code, _, e) = detect(&[s(&p)], &out, &["--format", "json,csv,voc"]);
    assert_eq!(code, 1, "{e}");
    assert!(
        e.contains("st.mrc") && e.contains("slice 3") && e.contains("--mask-nonfinite"),
        "{e}"
    );
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "outputs left by a failed input: {left:?}");
    // With the option: every output, no temporary directory.
    let (code, _, e) = detect(
        &[s(&p)],
        &out,
        &["--format", "json,csv,voc", "--mask-nonfinite"],
    );
    assert_eq!(code, 0, "{e}");
    assert!(e.contains("slice 3: 1 NaN/Inf pixel(s) replaced"), "{e}");
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 5 + 2, "{names:?}");
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}

// ---------------------------------------------------------------------------------- item 2, 3

/// An uncompressed little-endian RGB TIFF with PlanarConfiguration = 2 (one strip per plane),
/// as `tifffile.imwrite` writes a `(3, H, W)` array.
fn planar_rgb_tiff(w: u32, h: u32, rgb: &[[u8; 3]]) -> Vec<u8> {
    let n = (w * h) as usize;
    assert_eq!(rgb.len(), n);
    let data_off = 8u32;
    let bps_off = data_off + 3 * n as u32;
    let so_off = bps_off + 6;
    let sc_off = so_off + 12;
    let ifd_off = sc_off + 12;
    assert_eq!(ifd_off % 2, 0);
    let mut b = Vec::new();
    b.extend_from_slice(b"II*\0");
    b.extend_from_slice(&ifd_off.to_le_bytes());
    for c in 0..3 {
        b.extend(rgb.iter().map(|p| p[c]));
    }
    for _ in 0..3 {
        b.extend_from_slice(&8u16.to_le_bytes());
    }
    for c in 0..3u32 {
        b.extend_from_slice(&(data_off + c * n as u32).to_le_bytes());
    }
    for _ in 0..3 {
        b.extend_from_slice(&(n as u32).to_le_bytes());
    }
    // (tag, type 3 = SHORT / 4 = LONG, count, value or offset), sorted by tag.
    let entries: [(u16, u16, u32, u32); 10] = [
        (256, 3, 1, w),
        (257, 3, 1, h),
        (258, 3, 3, bps_off),
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (273, 4, 3, so_off),
        (277, 3, 1, 3),
        (278, 3, 1, h),
        (279, 4, 3, sc_off),
        (284, 3, 1, 2),
    ];
    b.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, typ, count, val) in entries {
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&typ.to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
        b.extend_from_slice(&val.to_le_bytes());
    }
    b.extend_from_slice(&0u32.to_le_bytes());
    b
}

#[test]
fn planar_rgb_tiff_reads_as_chunky_rgb() {
    let d = temp_dir("files-planar");
    let (w, h) = (64u32, 48u32);
    let rgb: Vec<[u8; 3]> = (0..w * h)
        .map(|i| [(i % 251) as u8, (i * 7 % 256) as u8, (255 - i % 256) as u8])
        .collect();
    let planar = d.join("planar.tif");
    std::fs::write(&planar, planar_rgb_tiff(w, h, &rgb)).unwrap();
    let chunky = d.join("chunky.tif");
    let flat: Vec<u8> = rgb.iter().flatten().copied().collect();
    let f = std::fs::File::create(&chunky).unwrap();
    tiff::encoder::TiffEncoder::new(f)
        .unwrap()
        .write_image::<tiff::encoder::colortype::RGB8>(w, h, &flat)
        .unwrap();
    let (a, _) = ok(&["info", s(&planar)]);
    let (b, _) = ok(&["info", s(&chunky)]);
    assert_eq!(intensity_line(&a), intensity_line(&b));
    let (code, _, e) = detect(&[s(&planar)], &d.join("out"), &[]);
    assert_eq!(code, 0, "{e}");
}

/// A gray 8-bit TIFF of `n` 64x64 pages, page `k` a disc at row `20 + 10 k`.
fn tiff_pages(path: &Path, n: i32) {
    let f = std::fs::File::create(path).unwrap();
    let mut enc = tiff::encoder::TiffEncoder::new(f).unwrap();
    for k in 0..n {
        let data: Vec<u8> = disc(20 + 10 * k, 30, 64).iter().copied().collect();
        enc.write_image::<tiff::encoder::colortype::Gray8>(64, 64, &data)
            .unwrap();
    }
}

#[test]
fn multi_page_tiff_is_a_stack() {
    let d = temp_dir("files-pages");
    let p = d.join("pages.tif");
    tiff_pages(&p, 3);
    let (o, _) = ok(&["info", s(&p)]);
    assert!(o.contains("pages      3"), "{o}");
    let out = d.join("out");
    let (code, _, e) = detect(&[s(&p)], &out, &["--format", "json,voc"]);
    assert_eq!(code, 0, "{e}");
    let v = json(&out.join("pages.json"));
    assert_eq!(v["depth"], 3);
    assert_eq!(v["slices"].as_array().unwrap().len(), 3);
    assert_voc_names_each_slice(&out, "pages", &[0, 1, 2]);
    let (code, _, e) = detect(&[s(&p)], &d.join("out2"), &["--slices", "1:3", "--3d"]);
    assert_eq!(code, 0, "{e}");
    let zs: Vec<u64> = json(&d.join("out2/pages.json"))["slices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["z"].as_u64().unwrap())
        .collect();
    assert_eq!(zs, [1, 2]);
    assert!(d.join("out2/pages.objects.json").is_file());
    // preprocess reads a page, as an MRC section (the middle one by default), never page 0
    // silently.
    let (o, _) = ok(&["preprocess", s(&p), s(&d.join("pre.png"))]);
    assert!(o.contains("page 1 of 3"), "{o}");
    let (o, _) = ok(&["preprocess", s(&p), s(&d.join("pre2.png")), "--slice", "2"]);
    assert!(o.contains("page 2 of 3"), "{o}");
    let (code, _, e) = run(&["preprocess", s(&p), s(&d.join("pre3.png")), "--slice", "3"]);
    assert!(code != 0 && e.contains("out of range"), "{e}");
    // An MRC stack's VOC files too.
    let m = d.join("st.mrc");
    float_mrc(&m, 3, 64, 64);
    let (code, _, e) = detect(&[s(&m)], &d.join("out3"), &["--format", "voc"]);
    assert_eq!(code, 0, "{e}");
    assert_voc_names_each_slice(&d.join("out3"), "st", &[0, 1, 2]);
}

/// `NAME_zZZZZ.xml` for every slice `z`, each naming its own slice (`<filename>`), all distinct,
/// with `<path>` the stack.
fn assert_voc_names_each_slice(out: &Path, name: &str, zs: &[usize]) {
    let mut seen = std::collections::BTreeSet::new();
    for z in zs {
        let xml = out.join(format!("{name}_z{z:04}.xml"));
        let ann = voc::read_voc(&xml).unwrap();
        assert_eq!(
            ann.filename,
            format!("{name}_z{z:04}.png"),
            "{}",
            xml.display()
        );
        assert!(ann.path.unwrap().contains(name));
        assert!(seen.insert(ann.filename));
    }
}

// ---------------------------------------------------------------------------------- item 12

#[test]
fn info_skips_blank_labels_and_garbage_types_and_explains_smooth_snr() {
    let d = temp_dir("files-info");
    let p = d.join("relion.mrc");
    let mut b = float_mrc(&p, 1, 32, 32);
    put_i32(&mut b, 220, 10); // nlabl = 10, labels 2..10 blank
    b[104..108].copy_from_slice(&[0xff, 0x01, 0x9c, 0x00]);
    std::fs::write(&p, &b).unwrap();
    let (o, _) = ok(&["info", s(&p)]);
    assert_eq!(
        o.lines().filter(|l| l.starts_with("label")).count(),
        1,
        "{o}"
    );
    assert!(o.contains("(type unset)"), "{o}");
    // A ramp: the autocorrelation finds no noise.
    let ramp = d.join("ramp.png");
    png(
        &ramp,
        &Array2::from_shape_fn((64, 64), |(y, x)| (x + y) as u8),
    );
    let (o, _) = ok(&["info", s(&ramp)]);
    assert!(o.contains("SNR        not estimated"), "{o}");
}

/// LabelImg XML of one `w x h` image with `mitochondria` boxes.
fn gt_xml(path: &Path, (w, h): (u32, u32), boxes: &[[f32; 4]]) {
    let ann = voc::VocAnnotation {
        filename: "x.png".into(),
        path: None,
        width: w,
        height: h,
        depth: 1,
        objects: boxes
            .iter()
            .map(|&bbox| voc::VocObject {
                name: "mitochondria".into(),
                bbox,
                difficult: false,
                truncated: false,
            })
            .collect(),
    };
    voc::write_voc(path, &ann).unwrap();
}

/// `eval` with detections but no true positive says so (not "no detection"), and the overlay's
/// footer of a long image name wraps on a 540 px-wide image: it shows as many text pixels as
/// on a 2000 px-wide image of the same height (same text scale), where it fits on one line.
/// Fails on a report that says "(no detection)" or a footer cut at the image edge.
#[test]
fn eval_says_no_true_positive_and_wraps_the_overlay_footer() {
    let d = temp_dir("files-eval");
    let name = "Unstim_20k_mito1_063_bin2";
    let white = |w: u32| -> usize {
        let case = d.join(format!("w{w}"));
        for sub in ["gt", "pred", "img"] {
            std::fs::create_dir_all(case.join(sub)).unwrap();
        }
        gt_xml(
            &case.join(format!("gt/{name}.xml")),
            (w, 540),
            &[[50.0, 50.0, 150.0, 150.0]],
        );
        // Score 0.3: below the score threshold, so not drawn (the only white is the footer).
        let pred = serde_json::json!({
            "image": format!("{name}.png"), "width": w, "height": 540,
            "detections": [{"box": [300.0, 300.0, 400.0, 400.0], "score": 0.3,
                            "label": "mitochondria", "class_id": 1}]
        });
        std::fs::write(case.join(format!("pred/{name}.json")), pred.to_string()).unwrap();
        // A constant image: black after the percentile scaling.
        png(
            &case.join(format!("img/{name}.png")),
            &Array2::from_elem((540, w as usize), 90u8),
        );
        let out = case.join("out");
        ok(&[
            "eval",
            "--gt",
            s(&case.join("gt")),
            "--pred",
            s(&case.join("pred")),
            "--images",
            s(&case.join("img")),
            "--out",
            s(&out),
        ]);
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(
            md.contains("(no true positive among 1 detection(s))")
                && !md.contains("(no detection)"),
            "{md}"
        );
        let ov = image::open(out.join(format!("overlays/{name}.png")))
            .unwrap()
            .to_rgb8();
        assert_eq!(ov.width(), w);
        ov.pixels().filter(|p| p.0 == [255, 255, 255]).count()
    };
    let (narrow, wide) = (white(540), white(2000));
    assert!(wide > 0);
    assert_eq!(narrow, wide, "footer text cut off on the 540 px image");
}

/// `train`: an annotation whose image has an unsupported format is a one-line error naming the
/// image and the reason (not "no image with this stem"); a multi-page TIFF is refused (its
/// annotation is for one image), and so is one as `eval --weights` input. Fails on a `train`
/// that skips with a warning or reads page 1.
#[test]
fn train_and_eval_name_unsupported_images_and_refuse_tiff_stacks() {
    let d = temp_dir("files-train-formats");
    let train = |data: &Path| {
        let out = data.join("run");
        let head = [
            "train",
            "--data",
            s(data),
            "--out",
            s(&out),
            "--max-iters",
            "1",
        ];
        run(&[&head[..], &TINY_TRAIN[..]].concat())
    };
    let set = |dir: &str| {
        let data = d.join(dir);
        std::fs::create_dir_all(data.join("images")).unwrap();
        std::fs::create_dir_all(data.join("annotations")).unwrap();
        png(&data.join("images/a.png"), &disc(30, 30, 64));
        gt_xml(
            &data.join("annotations/a.xml"),
            (64, 64),
            &[[18.0, 18.0, 42.0, 42.0]],
        );
        gt_xml(
            &data.join("annotations/b.xml"),
            (64, 64),
            &[[18.0, 18.0, 42.0, 42.0]],
        );
        data
    };
    let bmp = set("bmp");
    // A 64x64 24-bit BMP (BITMAPINFOHEADER; the image crate is built without BMP support).
    let mut b = Vec::new();
    b.extend_from_slice(b"BM");
    for v in [54 + 64 * 64 * 3u32, 0, 54, 40, 64, 64] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&24u16.to_le_bytes());
    for v in [0u32, 64 * 64 * 3, 2835, 2835, 0, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.resize(54 + 64 * 64 * 3, 100);
    std::fs::write(bmp.join("images/b.bmp"), b).unwrap();
    let (code, _, e) = train(&bmp);
    assert_ne!(code, 0, "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains("b.bmp") && e.contains("unsupported image format") && e.contains("b.xml"),
        "{e}"
    );
    let pages = set("pages");
    tiff_pages(&pages.join("images/b.tif"), 2);
    let (code, _, e) = train(&pages);
    assert_ne!(code, 0, "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains("b.tif") && e.contains("multi-page TIFF (2 pages)"),
        "{e}"
    );
    // eval --weights on the same images: refused the same way.
    let (code, _, e) = run(&[
        "eval",
        "--gt",
        s(&pages.join("annotations")),
        "--weights",
        &weights(),
        "--images",
        s(&pages.join("images")),
        "--size",
        "64",
        "--max-size",
        "64",
        "--out",
        s(&d.join("eval")),
    ]);
    assert_ne!(code, 0, "{e}");
    assert!(
        e.contains("b.tif") && e.contains("multi-page TIFF (2 pages)"),
        "{e}"
    );
}

/// `synth --mrc-slices`: stack.mrc's header has stack_gt.json's pixel size in x, y and its
/// slice spacing in z (they differ here, so an isotropic header fails).
#[test]
fn synth_stack_header_has_the_slice_spacing() {
    let d = temp_dir("files-synth-stack");
    ok(&[
        "synth",
        s(&d),
        "--n",
        "0",
        "--classic",
        "--size",
        "96",
        "--seed",
        "2",
        "--mrc-slices",
        "4",
    ]);
    let gt = json(&d.join("stack_gt.json"));
    let (px, dz) = (
        gt["pixel_nm"].as_f64().unwrap() as f32 * 10.0,
        gt["slice_nm"].as_f64().unwrap() as f32 * 10.0,
    );
    assert!(
        (px - dz).abs() > 1.0,
        "pixel {px} A, slice {dz} A: the test checks nothing"
    );
    let h = mrc::read_header(&d.join("stack.mrc")).unwrap();
    for (got, want) in h.voxel_size.iter().zip([px, px, dz]) {
        assert!(
            (got - want).abs() <= 1e-3 * want,
            "{:?} vs {px} {px} {dz}",
            h.voxel_size
        );
    }
    let (o, _) = ok(&["info", s(&d.join("stack.mrc"))]);
    assert!(
        o.contains(&format!(
            "voxel      {} x {} x {} A",
            h.voxel_size[0], h.voxel_size[1], h.voxel_size[2]
        )),
        "{o}"
    );
}

/// `synth --resume` after an interrupted run: a missing PNG, a PNG cut before its IEND chunk and
/// an annotation cut mid-XML are written again, complete files are kept, and the result (pixels,
/// annotations, manifest) equals an uninterrupted run's. Fails on a synth that regenerates
/// nothing (the damaged files stay) or that skips without checking completeness.
#[test]
fn synth_resume_completes_an_interrupted_run() {
    let d = temp_dir("files-synth-resume");
    let (full, part) = (d.join("full"), d.join("part"));
    let synth = |out: &Path, extra: &[&str]| {
        let mut a = vec![
            "synth",
            s(out),
            "--n",
            "5",
            "--seed",
            "3",
            "--groups",
            "2",
            "--size",
            "96",
        ];
        a.extend_from_slice(extra);
        ok(&a);
    };
    synth(&full, &[]);
    synth(&part, &[]);
    // the interruption: one image missing, one PNG and one XML cut short, no manifest yet
    let (img, ann) = (part.join("images"), part.join("annotations"));
    std::fs::remove_file(img.join("synth_g000_00001.png")).unwrap();
    let png = std::fs::read(img.join("synth_g001_00002.png")).unwrap();
    std::fs::write(img.join("synth_g001_00002.png"), &png[..png.len() / 2]).unwrap();
    let xml = std::fs::read(ann.join("synth_g002_00004.xml")).unwrap();
    std::fs::write(ann.join("synth_g002_00004.xml"), &xml[..xml.len() / 2]).unwrap();
    std::fs::remove_file(part.join("manifest.csv")).unwrap();
    // a complete image is kept, not drawn again: four marker bytes after its signature (it still
    // ends in IEND) must survive the resumed run
    let kept = img.join("synth_g000_00000.png");
    let mut marked = std::fs::read(&kept).unwrap();
    marked.splice(8..8, *b"MARK");
    std::fs::write(&kept, &marked).unwrap();
    synth(&part, &["--resume"]);
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        marked,
        "a complete image was drawn again"
    );
    for i in 1..5 {
        let g = i / 2;
        for (sub, ext) in [("images", "png"), ("annotations", "xml")] {
            let name = format!("{sub}/synth_g{g:03}_{i:05}.{ext}");
            let mut want = std::fs::read(full.join(&name)).unwrap();
            if ext == "xml" {
                // <path> names the output directory
                let t = String::from_utf8(want).unwrap();
                want = t.replace(s(&full), s(&part)).into_bytes();
            }
            assert_eq!(
                want,
                std::fs::read(part.join(&name)).unwrap(),
                "{name} differs from the uninterrupted run's"
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(full.join("manifest.csv")).unwrap(),
        std::fs::read_to_string(part.join("manifest.csv")).unwrap()
    );
}
