//! Replays every file of `tests/corpus/<target>/` through the parser `cryodet-fuzz` fuzzes for
//! that target (tools/FUZZING.md), under `catch_unwind`:
//!
//! - no file may make a parser panic;
//! - `crash-*` (a panic found by the fuzzer), `alloc-*` (an oversized allocation found by the
//!   fuzzer) and `refuse-*` (a hand-made neighbour of a finding) must be refused with an error
//!   that names the file;
//! - `seed-*` (valid examples) must be accepted.
//!
//! Names of the form `crash-<hash>` / `alloc-<hash>` are written by the fuzzer; copy new ones
//! here after fixing the parser.

use cryodet::io::{detections, image as img_io, mrc, voc, weights};
use cryodet::model::FasterRcnn;
use std::path::{Path, PathBuf};

/// The parser of `target` on `data`; `path` names the file in errors. An accepted network also
/// runs one forward pass (the `weights-struct` finding was a panic there).
fn parse(target: &str, path: &Path, data: &[u8]) -> Result<(), String> {
    let e = |x: cryodet::Error| x.to_string();
    match target {
        "mrc" => mrc::parse_mrc_bytes(path, data).map(|_| ()).map_err(e),
        "voc" => voc::parse_voc_bytes(path, data).map(|_| ()).map_err(e),
        "weights" | "weights-struct" => {
            let wf = weights::WeightFile::from_bytes(path, data).map_err(e)?;
            let model = FasterRcnn::from_weights(wf).map_err(e)?;
            let x = ndarray::Array4::from_shape_fn((3, 1, 36, 40), |(c, _, y, x)| {
                ((c + y * 3 + x) % 7) as f32 * 0.3 - 1.0
            });
            let _ = model.detect(&x);
            Ok(())
        }
        "detections" => {
            let text = std::str::from_utf8(data).map_err(|x| format!("{}: {x}", path.display()))?;
            detections::parse_image_detections(path, text)
                .map(|_| ())
                .or_else(|_| detections::parse_stack_detections(path, text).map(|_| ()))
                .map_err(e)
        }
        "tilt" => cryodet::volume::tilt::parse_tilt_angles(path, data)
            .map(|_| ())
            .map_err(e),
        "image" => {
            // As the fuzzer: TIFF by its first byte ('I'/'M'), else by content.
            let name = match data.first() {
                Some(b'I') | Some(b'M') => path.with_extension("tif"),
                _ => path.with_extension("png"),
            };
            img_io::decode_gray(&name, data).map(|_| ()).map_err(e)
        }
        other => panic!("unknown corpus target directory {other:?}"),
    }
}

fn corpus_files() -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut out = Vec::new();
    for t in std::fs::read_dir(&root).expect("tests/corpus") {
        let t = t.unwrap().path();
        if !t.is_dir() {
            continue;
        }
        let target = t.file_name().unwrap().to_string_lossy().into_owned();
        for f in std::fs::read_dir(&t).unwrap() {
            out.push((target.clone(), f.unwrap().path()));
        }
    }
    out.sort();
    out
}

#[test]
fn every_corpus_file_is_handled_without_panic() {
    let files = corpus_files();
    assert!(files.len() >= 10, "corpus too small: {}", files.len());
    let mut failures = Vec::new();
    for (target, path) in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(path).unwrap();
        let r = std::panic::catch_unwind(|| parse(target, path, &data));
        let must_fail = ["crash-", "alloc-", "refuse-"]
            .iter()
            .any(|p| name.starts_with(p));
        match r {
            Err(_) => failures.push(format!("{target}/{name}: PANIC")),
            Ok(Ok(())) if must_fail => {
                failures.push(format!("{target}/{name}: accepted, expected an error"))
            }
            Ok(Err(msg)) if name.starts_with("seed-") => {
                failures.push(format!("{target}/{name}: seed refused: {msg}"))
            }
            Ok(Err(msg)) if !msg.contains(&name) => failures.push(format!(
                "{target}/{name}: error does not name the file: {msg}"
            )),
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus files:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// The corpus stays small (it is committed): minimized crashers and a few seeds.
#[test]
fn corpus_is_small() {
    let total: u64 = corpus_files()
        .iter()
        .map(|(_, p)| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(total < 500 * 1024, "tests/corpus is {total} bytes");
}
