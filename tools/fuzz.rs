//! `cryodet-fuzz`: a mutational fuzzer for cryodet's file parsers that runs on stable Rust
//! (cargo-fuzz needs nightly). See tools/FUZZING.md.
//!
//! ```text
//! cargo run --release --features fuzz --bin cryodet-fuzz -- --target mrc --iters 1000000 --seed 1
//! targets: mrc voc weights weights-struct detections tilt image
//! ```
//!
//! Loop: pick an input from the pool (seeds = small valid files built here + the files of
//! `tests/corpus/<target>/`), apply 1..=4 random mutations (bit flips, random bytes, truncation,
//! insertion, deletion, chunk duplication, splicing with another input, "interesting" integers
//! 0, -1, i32::MAX, 2^31, 10^12 written at header offsets, dictionary tokens for text formats),
//! run the parser under `catch_unwind`. No coverage instrumentation: as cheap feedback, an input
//! whose result (Ok, or the error message with digits removed) was never seen joins the pool.
//!
//! Findings:
//! - a panic: the input is saved to `<findings>/<target>/crash-<fnv64>` and reported;
//! - an allocation larger than `--max-alloc` MB (default 256; the inputs are a few KB): the
//!   global allocator below saves the input as `<findings>/<target>/alloc-<fnv64>` and aborts
//!   (`--max-alloc` is a hard cap: a parser must refuse such a header before allocating).
//!
//! `<findings>` is `--findings DIR`, by default `cryodet-fuzz` in the system's temp directory:
//! the fuzzer never writes into the source tree unless asked (`--findings tests/corpus`). The
//! regression corpus `tests/corpus/<target>/` (`--corpus DIR`) is only read.
//!
//! The RNG is ChaCha8 from `--seed`, so a run is reproducible.

use cryodet::io::{detections, image as img_io, mrc, voc, weights};
use ndarray::{Array3, ArrayD, Dimension, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;

// ---------------------------------------------------------------------------------------------
// Allocation guard.

/// Largest single allocation allowed while a parser runs (bytes).
static MAX_ALLOC: AtomicUsize = AtomicUsize::new(usize::MAX);
/// The input under test (pointer, length), for the allocator to save before aborting.
static CURRENT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static CURRENT_LEN: AtomicUsize = AtomicUsize::new(0);
static IN_REPORT: AtomicBool = AtomicBool::new(false);
static CRASH_DIR: OnceLock<PathBuf> = OnceLock::new();

struct GuardAlloc;

impl GuardAlloc {
    /// Called with a too-large request: save the input and abort (once; the allocations made
    /// while saving pass through because `IN_REPORT` is set).
    fn too_large(size: usize) {
        if IN_REPORT.swap(true, Relaxed) {
            return;
        }
        let ptr = CURRENT.load(Relaxed);
        let len = CURRENT_LEN.load(Relaxed);
        if !ptr.is_null() {
            // SAFETY: CURRENT points at the live input buffer of the running execution (set by
            // `run_one` before the parser is called and cleared after); the fuzzer is one thread.
            let input = unsafe { std::slice::from_raw_parts(ptr, len) };
            if let Some(dir) = CRASH_DIR.get() {
                let p = dir.join(format!("alloc-{:016x}", fnv64(input)));
                let _ = std::fs::write(&p, input);
                eprintln!(
                    "FINDING: allocation of {size} bytes from a {len}-byte input, saved {}",
                    p.display()
                );
            }
        }
        std::process::abort();
    }
}

// SAFETY: every method forwards to `System` with the same arguments; the size check only reads
// atomics and, on violation, aborts the process.
unsafe impl GlobalAlloc for GuardAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if l.size() > MAX_ALLOC.load(Relaxed) {
            Self::too_large(l.size());
        }
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if l.size() > MAX_ALLOC.load(Relaxed) {
            Self::too_large(l.size());
        }
        System.alloc_zeroed(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > MAX_ALLOC.load(Relaxed) {
            Self::too_large(new);
        }
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static GLOBAL: GuardAlloc = GuardAlloc;

/// FNV-1a, 64 bit: stable names for saved inputs.
fn fnv64(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100000001b3)
    })
}

// ---------------------------------------------------------------------------------------------
// Targets.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Mrc,
    Voc,
    Weights,
    /// Weights mutated as tensors (shapes, names, values, metadata) and re-serialized, so the
    /// loader's checks behind a valid safetensors header are reached; an accepted network also
    /// runs one forward pass on a 40x36 image.
    WeightsStruct,
    Detections,
    Tilt,
    Image,
}

impl Target {
    fn parse(s: &str) -> Option<Target> {
        Some(match s {
            "mrc" => Target::Mrc,
            "voc" => Target::Voc,
            "weights" => Target::Weights,
            "weights-struct" => Target::WeightsStruct,
            "detections" | "json" => Target::Detections,
            "tilt" => Target::Tilt,
            "image" => Target::Image,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            Target::Mrc => "mrc",
            Target::Voc => "voc",
            Target::Weights => "weights",
            Target::WeightsStruct => "weights-struct",
            Target::Detections => "detections",
            Target::Tilt => "tilt",
            Target::Image => "image",
        }
    }
    /// Text formats get dictionary mutations.
    fn dictionary(self) -> &'static [&'static str] {
        match self {
            Target::Voc => &[
                "<object>",
                "</object>",
                "<bndbox>",
                "</bndbox>",
                "<xmin>",
                "</xmin>",
                "<ymax>",
                "<width>",
                "</width>",
                "<size>",
                "<name>",
                "&amp;",
                "&#0;",
                "&#x10FFFF;",
                "&lt;",
                "<!DOCTYPE a [<!ENTITY e \"x\">]>",
                "&e;",
                "<![CDATA[",
                "]]>",
                "<?xml version=\"1.0\"?>",
                "NaN",
                "inf",
                "-1",
                "1e39",
                "4294967296",
                "-0",
                "0x10",
                "99999999999999999999",
                "<annotation>",
                "</annotation>",
                "<difficult>1</difficult>",
                "\u{feff}",
                "\u{0}",
            ],
            Target::Detections => &[
                "{",
                "}",
                "[",
                "]",
                ",",
                ":",
                "\"box\"",
                "\"score\"",
                "\"slices\"",
                "\"z\"",
                "\"depth\"",
                "\"detections\"",
                "null",
                "true",
                "NaN",
                "1e39",
                "-1e39",
                "-1",
                "18446744073709551616",
                "4294967296",
                "0.5",
                "\"\\ud800\"",
                "\"\\u0000\"",
                "1e400",
            ],
            Target::Tilt => &[
                "\n", "\r\n", " ", "-60.0", "NaN", "inf", "-inf", "1e39", "180.0001", "-0", "+",
                ".", "e", "\u{0}", "\u{feff}", "1_0", "0x1p3",
            ],
            _ => &[],
        }
    }
    /// Byte offsets where interesting integers are written (header fields).
    fn offsets(self) -> &'static [usize] {
        match self {
            // nx ny nz mode mx my mz nsymbt machst nlabl ...
            Target::Mrc => &[0, 4, 8, 12, 28, 32, 36, 88, 92, 108, 208, 212, 220],
            // safetensors: u64 header length at 0.
            Target::Weights | Target::WeightsStruct => &[0, 4],
            // PNG IHDR width/height; TIFF IFD offset at 4.
            Target::Image => &[4, 8, 16, 20, 24],
            _ => &[],
        }
    }
}

const INTERESTING: [i64; 12] = [
    0,
    -1,
    1,
    i32::MAX as i64,
    i32::MIN as i64,
    1 << 31,
    1_000_000_000_000,
    65535,
    65536,
    0x7fff,
    i64::MAX,
    1 << 32,
];

/// Runs the target's parser; `Ok(())`, or the error text. Panics propagate.
fn run_target(t: Target, data: &[u8]) -> Result<(), String> {
    let e = |x: cryodet::Error| x.to_string();
    match t {
        Target::Mrc => mrc::parse_mrc_bytes(Path::new("fuzz.mrc"), data)
            .map(|_| ())
            .map_err(e),
        Target::Voc => voc::parse_voc_bytes(Path::new("fuzz.xml"), data)
            .map(|mut a| {
                a.clip_to_image();
                let _ = a.to_xml("f");
            })
            .map_err(e),
        Target::Weights => {
            let wf =
                weights::WeightFile::from_bytes(Path::new("fuzz.safetensors"), data).map_err(e)?;
            cryodet::model::FasterRcnn::from_weights(wf)
                .map(|_| ())
                .map_err(e)
        }
        Target::WeightsStruct => {
            let wf =
                weights::WeightFile::from_bytes(Path::new("fuzz.safetensors"), data).map_err(e)?;
            let model = cryodet::model::FasterRcnn::from_weights(wf).map_err(e)?;
            let x = ndarray::Array4::from_shape_fn((3, 1, 36, 40), |(c, _, y, x)| {
                ((c + y * 3 + x) % 7) as f32 * 0.3 - 1.0
            });
            let _ = model.detect(&x);
            Ok(())
        }
        Target::Detections => {
            let p = Path::new("fuzz.json");
            let text = std::str::from_utf8(data).map_err(|x| x.to_string())?;
            let a = detections::parse_image_detections(p, text).map(|_| ());
            let b = detections::parse_stack_detections(p, text).map(|_| ());
            // Either schema may be meant: Ok when one of them accepts the text.
            a.or(b).map_err(e)
        }
        Target::Tilt => cryodet::volume::tilt::parse_tilt_angles(Path::new("fuzz.tlt"), data)
            .map(|_| ())
            .map_err(e),
        Target::Image => {
            // The extension picks the decoder path; by content otherwise.
            let ext = match data.first() {
                Some(b'I') | Some(b'M') => "fuzz.tif",
                _ => "fuzz.png",
            };
            img_io::decode_gray(Path::new(ext), data)
                .map(|_| ())
                .map_err(e)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Seeds.

fn seeds(t: Target, corpus: &Path) -> Vec<Vec<u8>> {
    let tmp = std::env::temp_dir().join(format!("cryodet-fuzz-seed-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let read_fx = |names: &[&str]| -> Vec<Vec<u8>> {
        names
            .iter()
            .filter_map(|n| std::fs::read(fx.join(n)).ok())
            .collect()
    };
    let mut s: Vec<Vec<u8>> = match t {
        Target::Mrc => {
            let mut v = read_fx(&[
                "io/mode0.mrc",
                "io/mode1.mrc",
                "io/mode2.mrc",
                "io/mode6.mrc",
                "io/mode12.mrc",
                "io/exthdr.mrc",
                "io/bigendian.mrcs",
            ]);
            let vol = Array3::from_shape_fn((3, 5, 7), |(z, y, x)| (z * 35 + y * 7 + x) as f32);
            for mode in [1, 2, 6] {
                let p = tmp.join(format!("m{mode}.mrc"));
                mrc::write_mrc(&p, vol.view(), mode, 1.5).expect("write seed");
                v.push(std::fs::read(&p).unwrap());
            }
            v
        }
        Target::Voc => read_fx(&[
            "io/labelimg.xml",
            "io/empty.xml",
            "io/inverted.xml",
            "io/missing_ymax.xml",
            "io/nonnumeric.xml",
            "io/bad_utf8.xml",
        ]),
        Target::Weights => {
            let mut v = vec![tiny_weights(&tmp)];
            // The reduced-width fixture (115 KB) is slower per execution; a quarter of the pool.
            v.extend(read_fx(&["model/weights_small.safetensors"]));
            v.push(v[0].clone());
            v.push(v[0].clone());
            v
        }
        Target::WeightsStruct => vec![tiny_weights(&tmp)],
        Target::Detections => {
            let d = detections::Detection {
                bbox: [1.0, 2.0, 30.5, 40.0],
                score: 0.9,
                label: "mitochondria".into(),
                class_id: 1,
            };
            let img = detections::ImageDetections {
                precision: None,
                image: "a.png".into(),
                width: 64,
                height: 48,
                detections: vec![d.clone(), d.clone()],
            };
            let stack = detections::StackDetections {
                precision: None,
                image: "s.mrc".into(),
                width: 64,
                height: 48,
                depth: 3,
                slices: vec![detections::SliceDetections {
                    z: 2,
                    detections: vec![d],
                }],
            };
            vec![
                serde_json::to_vec_pretty(&img).unwrap(),
                serde_json::to_vec(&stack).unwrap(),
            ]
        }
        Target::Tilt => vec![
            b"-60.00\n-57.00\n  -54.00\n\n0.0\n3.0\n60.0\n".to_vec(),
            b"  -0.5\r\n  1.25\r\n".to_vec(),
        ],
        Target::Image => read_fx(&[
            "io/gray8.png",
            "io/gray16.png",
            "io/rgb8.png",
            "io/gray8.jpg",
            "io/gray16.tif",
            "io/float32.tif",
            "io/nan.tif",
        ]),
    };
    s.extend(read_dir_files(corpus));
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(!s.is_empty(), "no seeds for {}", t.name());
    s
}

/// The contents of every file in `dir` (sorted by name; none if it does not exist).
fn read_dir_files(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
}

/// A complete but tiny network (2 channels everywhere, 1x1 kernels except the RPN's 3x3,
/// one block per stage): a few KB, so one `from_weights` takes microseconds.
/// Adds one tensor (name, shape) to a tensor list: the callback `tiny_weights` builds with.
type PushFn<'a> = dyn FnMut(&mut Vec<(String, ArrayD<f32>)>, String, &[usize]) + 'a;

fn tiny_weights(tmp: &Path) -> Vec<u8> {
    let c = 2usize;
    let mut t: Vec<(String, ArrayD<f32>)> = Vec::new();
    let mut k = 0.0f32;
    let mut push = |t: &mut Vec<(String, ArrayD<f32>)>, name: String, shape: &[usize]| {
        k += 1.0;
        let kk = k;
        t.push((
            name,
            ArrayD::from_shape_fn(IxDyn(shape), |i| {
                0.1 + 0.01 * kk + 0.001 * i.as_array_view().sum() as f32
            }),
        ));
    };
    let bn = |t: &mut Vec<(String, ArrayD<f32>)>, p: &str, n: usize, push: &mut PushFn<'_>| {
        for s in ["weight", "bias", "running_mean", "running_var"] {
            push(t, format!("{p}.{s}"), &[n]);
        }
    };
    push(&mut t, "backbone.conv1.weight".into(), &[c, 3, 1, 1]);
    bn(&mut t, "backbone.bn1", c, &mut push);
    let block = |t: &mut Vec<(String, ArrayD<f32>)>, p: &str, push: &mut PushFn<'_>| {
        for i in 1..=3 {
            push(t, format!("{p}.conv{i}.weight"), &[c, c, 1, 1]);
            for s in ["weight", "bias", "running_mean", "running_var"] {
                push(t, format!("{p}.bn{i}.{s}"), &[c]);
            }
        }
        push(t, format!("{p}.downsample.0.weight"), &[c, c, 1, 1]);
        for s in ["weight", "bias", "running_mean", "running_var"] {
            push(t, format!("{p}.downsample.1.{s}"), &[c]);
        }
    };
    for l in 1..=3 {
        block(&mut t, &format!("backbone.layer{l}.0"), &mut push);
    }
    push(&mut t, "rpn.conv.weight".into(), &[c, c, 3, 3]);
    push(&mut t, "rpn.conv.bias".into(), &[c]);
    push(&mut t, "rpn.cls_logits.weight".into(), &[9, c, 1, 1]);
    push(&mut t, "rpn.cls_logits.bias".into(), &[9]);
    push(&mut t, "rpn.bbox_pred.weight".into(), &[36, c, 1, 1]);
    push(&mut t, "rpn.bbox_pred.bias".into(), &[36]);
    block(&mut t, "head.layer4.0", &mut push);
    push(&mut t, "head.cls_score.weight".into(), &[2, c]);
    push(&mut t, "head.cls_score.bias".into(), &[2]);
    push(&mut t, "head.bbox_pred.weight".into(), &[8, c]);
    push(&mut t, "head.bbox_pred.bias".into(), &[8]);
    let views: Vec<(String, ndarray::ArrayViewD<f32>)> =
        t.iter().map(|(n, a)| (n.clone(), a.view())).collect();
    let meta = HashMap::from([("classes".to_string(), "__background__,mito".to_string())]);
    let p = tmp.join("tiny.safetensors");
    weights::save(&p, &views, &meta, weights::Precision::F32).expect("save tiny weights");
    let b = std::fs::read(&p).unwrap();
    // The seed must be valid, else the fuzzer mostly explores the error path.
    let wf = weights::WeightFile::from_bytes(&p, &b).unwrap();
    cryodet::model::FasterRcnn::from_weights(wf).expect("tiny weights load");
    b
}

// ---------------------------------------------------------------------------------------------
// Mutations.

fn mutate(rng: &mut ChaCha8Rng, t: Target, data: &mut Vec<u8>, pool: &[Vec<u8>]) {
    let n = rng.gen_range(1..=4);
    for _ in 0..n {
        let len = data.len();
        match rng.gen_range(0..11) {
            // flip one bit
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                data[i] ^= 1 << rng.gen_range(0..8);
            }
            // random byte
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                data[i] = rng.gen();
            }
            // truncate
            2 if len > 0 => data.truncate(rng.gen_range(0..len)),
            // insert random bytes
            3 => {
                let i = rng.gen_range(0..=len);
                let k = rng.gen_range(1..=16);
                let ins: Vec<u8> = (0..k).map(|_| rng.gen()).collect();
                data.splice(i..i, ins);
            }
            // delete a chunk
            4 if len > 0 => {
                let i = rng.gen_range(0..len);
                let k = rng.gen_range(1..=(len - i).min(64));
                data.drain(i..i + k);
            }
            // duplicate a chunk elsewhere
            5 if len > 0 => {
                let i = rng.gen_range(0..len);
                let k = rng.gen_range(1..=(len - i).min(256));
                let chunk = data[i..i + k].to_vec();
                let j = rng.gen_range(0..=len);
                data.splice(j..j, chunk);
            }
            // splice: our prefix + another input's suffix
            6 => {
                let other = &pool[rng.gen_range(0..pool.len())];
                let a = rng.gen_range(0..=len);
                let b = rng.gen_range(0..=other.len());
                data.truncate(a);
                data.extend_from_slice(&other[b..]);
            }
            // interesting integer at a header offset (or anywhere), 4 or 8 bytes, LE or BE
            7 | 8 => {
                let offs = t.offsets();
                let off = if !offs.is_empty() && rng.gen_bool(0.8) {
                    offs[rng.gen_range(0..offs.len())]
                } else {
                    rng.gen_range(0..=len)
                };
                let v = INTERESTING[rng.gen_range(0..INTERESTING.len())];
                let bytes: Vec<u8> = match rng.gen_range(0..4) {
                    0 => (v as i32).to_le_bytes().to_vec(),
                    1 => (v as i32).to_be_bytes().to_vec(),
                    2 => v.to_le_bytes().to_vec(),
                    _ => (v as f32).to_le_bytes().to_vec(),
                };
                if data.len() < off + bytes.len() {
                    data.resize(off + bytes.len(), 0);
                }
                data[off..off + bytes.len()].copy_from_slice(&bytes);
            }
            // dictionary token (text formats) or a number in ASCII
            _ => {
                let dict = t.dictionary();
                let tok: Vec<u8> = if !dict.is_empty() && rng.gen_bool(0.7) {
                    dict[rng.gen_range(0..dict.len())].as_bytes().to_vec()
                } else {
                    INTERESTING[rng.gen_range(0..INTERESTING.len())]
                        .to_string()
                        .into_bytes()
                };
                let i = rng.gen_range(0..=len);
                if rng.gen_bool(0.5) || len == 0 {
                    data.splice(i..i, tok);
                } else {
                    let k = rng.gen_range(0..=(len - i).min(tok.len() + 4));
                    data.splice(i..i + k, tok);
                }
            }
        }
    }
    // Keep inputs small: the parsers' cost grows with size, bugs rarely need more.
    data.truncate(1 << 18);
}

/// Tensor-level mutation of a safetensors file (for `weights-struct`): 1..=3 edits of shapes,
/// names, values or metadata, then re-serialized (a file the parser cannot read is left as is).
fn mutate_tensors(rng: &mut ChaCha8Rng, data: &mut Vec<u8>) {
    let Ok(st) = safetensors::SafeTensors::deserialize(data) else {
        return;
    };
    let Ok((_, meta)) = safetensors::SafeTensors::read_metadata(data) else {
        return;
    };
    let mut meta = meta.metadata().clone().unwrap_or_default();
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let vals = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (n, v.shape().to_vec(), vals)
        })
        .collect();
    if t.is_empty() {
        return;
    }
    const DIMS: [usize; 9] = [0, 1, 2, 3, 4, 5, 7, 9, 36];
    for _ in 0..rng.gen_range(1..=3) {
        let i = rng.gen_range(0..t.len());
        match rng.gen_range(0..9) {
            // one dimension to a small value
            0 | 1 if !t[i].1.is_empty() => {
                let k = rng.gen_range(0..t[i].1.len());
                t[i].1[k] = DIMS[rng.gen_range(0..DIMS.len())];
            }
            // drop or add a dimension
            2 => {
                if rng.gen_bool(0.5) {
                    t[i].1.pop();
                } else {
                    t[i].1.push(DIMS[rng.gen_range(0..DIMS.len())]);
                }
            }
            // remove the tensor
            3 if t.len() > 1 => {
                t.remove(i);
                continue;
            }
            // copy under another tensor's name, or under a renumbered name
            4 => {
                let j = rng.gen_range(0..t.len());
                let name = if rng.gen_bool(0.5) {
                    t[j].0.clone()
                } else {
                    t[i].0
                        .replacen(".0.", &format!(".{}.", rng.gen_range(1..3)), 1)
                };
                let (_, shape, vals) = t[i].clone();
                t.retain(|x| x.0 != name);
                t.push((name, shape, vals));
                continue;
            }
            // a special value
            5 => {
                if let Some(v) = t[i].2.first_mut() {
                    *v = [f32::NAN, f32::INFINITY, 1e38, -1e38, 0.0, -1.0][rng.gen_range(0..6)];
                }
            }
            // metadata
            _ => {
                let (key, vals): (&str, &[&str]) = if rng.gen_bool(0.5) {
                    (
                        "classes",
                        &[
                            "",
                            ",",
                            "a",
                            "__background__,a,b",
                            "bg,mito",
                            "x,x,x,x,x,x,x,x",
                        ],
                    )
                } else {
                    (
                        "bn_eps",
                        &[
                            "0", "-1", "-1e-5", "nan", "inf", "1e-40", "abc", "1e30", " 1e-5 ",
                        ],
                    )
                };
                if rng.gen_bool(0.2) {
                    meta.remove(key);
                } else {
                    meta.insert(key.into(), vals[rng.gen_range(0..vals.len())].into());
                }
            }
        }
        // Keep data consistent with the (possibly new) shape; cap the element count.
        let n: usize = t[i].1.iter().product();
        if n > 1 << 16 {
            t[i].1 = vec![1];
        }
        let n: usize = t[i].1.iter().product();
        t[i].2.resize(n, 0.05);
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = t
        .iter()
        .map(|(n, s, v)| {
            (
                n.clone(),
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .filter_map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .ok()
                .map(|v| (n.clone(), v))
        })
        .collect();
    let meta = if meta.is_empty() { None } else { Some(meta) };
    if let Ok(b) = safetensors::serialize(views, &meta) {
        *data = b;
    }
}

/// The error message with digits removed: a cheap "which check fired" signature.
fn signature(r: &Result<(), String>) -> String {
    match r {
        Ok(()) => "ok".into(),
        // Cut before quoted input text (`"..."`, `'...'`), which would make every input unique.
        Err(m) => m
            .chars()
            .take_while(|c| !matches!(c, '"' | '\'' | '`' | '['))
            .filter(|c| !c.is_ascii_digit())
            .take(60)
            .collect(),
    }
}

thread_local! {
    static PANIC_MSG: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let Some(target) = get("--target").as_deref().and_then(Target::parse) else {
        eprintln!(
            "usage: cryodet-fuzz --target mrc|voc|weights|weights-struct|detections|tilt|image \
             [--iters N] [--seed S] [--max-alloc MB] [--corpus DIR] [--findings DIR]"
        );
        std::process::exit(2);
    };
    let iters: u64 = get("--iters").map_or(100_000, |s| s.parse().expect("--iters N"));
    let seed: u64 = get("--seed").map_or(1, |s| s.parse().expect("--seed S"));
    let max_alloc_mb: usize =
        get("--max-alloc").map_or(256, |s| s.parse().expect("--max-alloc MB"));
    // Seeds are read from the regression corpus and from earlier findings; findings are written
    // outside the source tree unless --findings says otherwise.
    let corpus_root = get("--corpus").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus"),
        PathBuf::from,
    );
    let findings_root =
        get("--findings").map_or_else(|| std::env::temp_dir().join("cryodet-fuzz"), PathBuf::from);
    let corpus = corpus_root.join(target.name());
    let dir = findings_root.join(target.name());
    std::fs::create_dir_all(&dir).expect("findings dir");
    CRASH_DIR.set(dir.clone()).unwrap();
    cryodet::nn::gemm::set_threads(1);
    eprintln!("findings go to {}", dir.display());

    let mut pool = seeds(target, &corpus);
    if dir != corpus {
        pool.extend(read_dir_files(&dir));
    }
    let n_seeds = pool.len();
    let mut seen: HashSet<String> = HashSet::new();
    let mut ok_pool: Vec<Vec<u8>> = Vec::new();
    for s in &pool {
        let r = run_target(target, s);
        if r.is_ok() {
            ok_pool.push(s.clone());
        }
        seen.insert(signature(&r));
    }
    std::panic::set_hook(Box::new(|info| {
        let loc = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        PANIC_MSG.with(|m| *m.borrow_mut() = format!("{msg} at {loc}"));
    }));
    MAX_ALLOC.store(max_alloc_mb << 20, Relaxed);

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut crashes: HashMap<String, (PathBuf, usize)> = HashMap::new();
    let (mut n_ok, mut n_err) = (0u64, 0u64);
    let t0 = Instant::now();
    let mut next_report = 100_000u64;
    for it in 0..iters {
        // Half the time start from an input the parser accepted (seeds or mutants): mutants of
        // valid files reach the checks behind the first one.
        let mut data = if !ok_pool.is_empty() && rng.gen_bool(0.5) {
            ok_pool[rng.gen_range(0..ok_pool.len())].clone()
        } else {
            pool[rng.gen_range(0..pool.len())].clone()
        };
        if target == Target::WeightsStruct && rng.gen_bool(0.9) {
            mutate_tensors(&mut rng, &mut data);
        } else {
            mutate(&mut rng, target, &mut data, &pool);
        }
        CURRENT.store(data.as_ptr() as *mut u8, Relaxed);
        CURRENT_LEN.store(data.len(), Relaxed);
        let r = std::panic::catch_unwind(|| run_target(target, &data));
        CURRENT.store(std::ptr::null_mut(), Relaxed);
        match r {
            Ok(res) => {
                if res.is_ok() {
                    n_ok += 1;
                    if ok_pool.len() < 1024 {
                        ok_pool.push(data.clone());
                    } else {
                        let i = rng.gen_range(0..ok_pool.len());
                        ok_pool[i] = data.clone();
                    }
                } else {
                    n_err += 1;
                }
                let sig = signature(&res);
                if seen.len() < 50_000 && !seen.contains(&sig) {
                    seen.insert(sig);
                    if pool.len() < 4096 {
                        pool.push(data);
                    }
                }
            }
            Err(_) => {
                let msg = PANIC_MSG.with(|m| m.borrow().clone());
                // One saved input per panic site (message with digits removed).
                let key: String = msg.chars().filter(|c| !c.is_ascii_digit()).collect();
                let e = crashes.entry(key).or_insert_with(|| {
                    let p = dir.join(format!("crash-{:016x}", fnv64(&data)));
                    std::fs::write(&p, &data).expect("save crash");
                    println!(
                        "FINDING at exec {it}: panic {msg} ({} bytes), saved {}",
                        data.len(),
                        p.display()
                    );
                    (p, 0)
                });
                e.1 += 1;
            }
        }
        if it + 1 == next_report {
            let s = t0.elapsed().as_secs_f64();
            eprintln!(
                "  {} execs, {:.0}/s, pool {}, signatures {}, panics {}",
                it + 1,
                (it + 1) as f64 / s,
                pool.len(),
                seen.len(),
                crashes.values().map(|c| c.1).sum::<usize>()
            );
            next_report += 100_000;
        }
    }
    let s = t0.elapsed().as_secs_f64();
    println!(
        "target {}: {iters} execs in {s:.1} s ({:.0} execs/s), seed {seed}, {n_seeds} seeds, \
         final pool {} (+{} accepted), {} distinct outcomes, ok {n_ok}, error {n_err}, panics {} at {} site(s)",
        target.name(),
        iters as f64 / s,
        pool.len(),
        ok_pool.len(),
        seen.len(),
        crashes.values().map(|c| c.1).sum::<usize>(),
        crashes.len()
    );
    for (k, (p, n)) in &crashes {
        println!("  {n} x {k}\n    example {}", p.display());
    }
    if !crashes.is_empty() {
        std::process::exit(1);
    }
}
