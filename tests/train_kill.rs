//! A training run killed while it saves a checkpoint leaves the previous checkpoint intact, and
//! `--resume` continues it to exactly the weights of an uninterrupted run.
//!
//! The kill lands inside the save thanks to the trainer's test hook `CRYODET_TEST_SLOW_SAVE_MS`
//! (a sleep between writing the new files and renaming them over the old ones; see
//! `cryodet::train::trainer`). Runtime: ~2 s in release (tiny network: width / 32, one block per
//! stage, 64-pixel images, 4 training images, 3 epochs).

use cryodet::model::FasterRcnn;
use cryodet::testutil::temp_dir;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cryodet");
/// Sleep of the save hook: long enough to find the trainer inside it.
const SLOW_SAVE_MS: &str = "3000";
/// Give up waiting for the trainer after this long.
const TIMEOUT: Duration = Duration::from_secs(120);

fn train_args(data: &Path, out: &Path) -> Vec<String> {
    [
        "train",
        "--data",
        &data.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--epochs",
        "3",
        "--size",
        "64",
        "--width-div",
        "32",
        "--blocks",
        "1,1,1,1",
        "--threads",
        "1",
        "--seed",
        "5",
        "--no-preprocess",
        "--rpn-batch",
        "32",
        "--roi-batch",
        "16",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run_ok(args: &[String]) {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "cryodet {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn state(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("state.json")).unwrap()).unwrap()
}

/// The state without its wall-clock field.
fn state_without_time(run: &Path) -> serde_json::Value {
    let mut s = state(run);
    s.as_object_mut().unwrap().remove("seconds");
    s
}

#[test]
fn killed_while_saving_then_resumed() {
    let root = temp_dir("train-kill");
    let data = root.join("data");
    // 5 images: 4 train, 1 test (5:1 split).
    run_ok(&[
        "synth".into(),
        data.display().to_string(),
        "--n".into(),
        "5".into(),
        "--size".into(),
        "64".into(),
        "--seed".into(),
        "2".into(),
        "--max-mito".into(),
        "2".into(),
    ]);

    // The reference: the same run without interruption.
    let reference = root.join("reference");
    run_ok(&train_args(&data, &reference));

    // The run we kill during its second checkpoint (after epoch 2).
    let run = root.join("run");
    let mut child = Command::new(BIN)
        .args(train_args(&data, &run))
        .env("CRYODET_TEST_SLOW_SAVE_MS", SLOW_SAVE_MS)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let in_second_save = || {
        run.join("state.json.new").exists()
            && run.join("state.json").exists()
            && state(&run)["epoch"] == 1
    };
    while !in_second_save() {
        assert!(
            start.elapsed() < TIMEOUT,
            "trainer never reached its second save"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("trainer exited ({status}) before it could be killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // The previous checkpoint (epoch 1) is intact and loads; the new files are beside it.
    let s = state(&run);
    assert_eq!(
        (s["epoch"].as_u64(), s["iteration"].as_u64()),
        (Some(1), Some(4))
    );
    FasterRcnn::load(run.join("last.safetensors")).expect("previous checkpoint loads");
    FasterRcnn::load(run.join("best.safetensors")).expect("best checkpoint loads");
    assert!(run.join("last.safetensors.new").exists());

    // --resume completes the interrupted checkpoint and finishes the run.
    run_ok(&["train".into(), "--resume".into(), run.display().to_string()]);
    let s = state(&run);
    assert_eq!(
        (s["epoch"].as_u64(), s["iteration"].as_u64()),
        (Some(3), Some(12))
    );
    assert_eq!(
        state_without_time(&run),
        state_without_time(&reference),
        "state differs from the uninterrupted run"
    );
    let a = FasterRcnn::load(run.join("last.safetensors"))
        .unwrap()
        .export();
    let b = FasterRcnn::load(reference.join("last.safetensors"))
        .unwrap()
        .export();
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ta == tb, "weight `{na}` differs from the uninterrupted run");
    }
    // train.csv: one row per iteration, 1..=12, no duplicates from the killed epoch.
    let csv = std::fs::read_to_string(run.join("train.csv")).unwrap();
    let iters: Vec<u64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(iters, (1..=12).collect::<Vec<u64>>());
    std::fs::remove_dir_all(&root).ok();
}
