//! Helpers for tests that compare cryodet with PyTorch dumps (used by unit and integration tests).
//!
//! Tolerance levels are named, as in tract: [`EXACT`], [`FORWARD`], [`GRADIENT`]. A comparison
//! passes when `max|a - b| <= tol * max|b|` (relative to the reference's largest magnitude, the
//! criterion of the acceptance tests), and on failure reports the max abs and rel differences and
//! the first index that breaks the bound.

use ndarray::{ArrayD, ArrayViewD, Dimension};
use std::collections::HashMap;
use std::path::Path;

/// Bit-for-bit (integer-valued outputs, indices, rounding of box corners).
pub const EXACT: f32 = 0.0;
/// f32 forward passes: differences come only from summation order.
pub const FORWARD: f32 = 1e-4;
/// Gradients: longer chains of rounding.
pub const GRADIENT: f32 = 1e-3;

/// Max abs difference, max relative difference (|a-b| / max(|b|, tiny)), max|b|, and the first
/// index (in logical order) where `|a-b| > tol * max|b|`.
pub fn compare(
    actual: ArrayViewD<f32>,
    expected: ArrayViewD<f32>,
    rel_tol: f32,
) -> (f32, f32, f32, Option<Vec<usize>>) {
    let max_b = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    let bound = rel_tol * max_b + 1e-12;
    let (mut max_abs, mut max_rel, mut first) = (0f32, 0f32, None);
    for ((idx, a), b) in actual.indexed_iter().zip(expected.iter()) {
        let d = (a - b).abs();
        let d = if d.is_nan() { f32::INFINITY } else { d };
        max_abs = max_abs.max(d);
        max_rel = max_rel.max(d / b.abs().max(1e-12));
        if d > bound && first.is_none() {
            first = Some(idx.slice().to_vec());
        }
    }
    (max_abs, max_rel, max_b, first)
}

/// Panics (with the statistics) unless `actual` matches `expected` within `rel_tol * max|expected|`.
#[track_caller]
pub fn assert_close(name: &str, actual: ArrayViewD<f32>, expected: ArrayViewD<f32>, rel_tol: f32) {
    assert_eq!(
        actual.shape(),
        expected.shape(),
        "{name}: shape {:?} != expected {:?}",
        actual.shape(),
        expected.shape()
    );
    let (max_abs, max_rel, max_b, first) = compare(actual.view(), expected.view(), rel_tol);
    if let Some(idx) = first {
        let a = actual[idx.as_slice()];
        let b = expected[idx.as_slice()];
        panic!(
            "{name}: max|a-b| = {max_abs:.3e} > {rel_tol:.0e} * max|b| ({max_b:.3e}); max rel = {max_rel:.3e}; \
             first bad index {idx:?}: got {a}, expected {b}"
        );
    }
}

/// Reads every tensor of a safetensors fixture as f32 (integer tensors converted).
pub fn load_fixture(path: impl AsRef<Path>) -> HashMap<String, ArrayD<f32>> {
    let path = path.as_ref();
    let wf = crate::io::weights::WeightFile::load(path).unwrap_or_else(|e| panic!("fixture: {e}"));
    wf.names()
        .map(|n| (n.clone(), wf.get(n).unwrap().clone()))
        .collect()
}

/// A fresh, empty directory `<system temp>/cryodet-<tag>-<pid>` for one test's files (a
/// leftover of an earlier run is removed first). The process id keeps test binaries apart; within
/// one binary the tests run in parallel, so each test passes its own `tag`.
/// `cryodet train` options of the tiny network that the CLI tests train for an iteration or
/// two: 64 px inputs, every width divided by 16, one bottleneck per stage, one thread.
pub const TINY_TRAIN: [&str; 8] = [
    "--size",
    "64",
    "--width-div",
    "16",
    "--blocks",
    "1,1,1,1",
    "--threads",
    "1",
];

/// Runs `exe ARGS` (a test passes `env!("CARGO_BIN_EXE_cryodet")`, which only an integration
/// test knows): whether it succeeded, and its stderr.
pub fn run_exe(exe: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(exe)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{exe}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh, empty directory `cryodet-{tag}-{pid}` in the system's temp directory.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cryodet-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    d
}

/// Path of a committed fixture: `tests/fixtures/<rel>`.
pub fn fixture_path(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}
