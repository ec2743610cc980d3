//! The training loop with safe checkpoints (`cryodet train`).
//!
//! One iteration = one image (the study's and torchvision's reference batch of 1 per GPU):
//! ```text
//! example  = Base at the model's pixel size (cached) -> augment_example: random rescale, crop,
//!            preprocessing, flip/rotation (crate::train::augment) -> zero-pad to a multiple of 32
//!            (runs whose options.json has no `scale`, i.e. older runs: load (cached, the
//!            study's order) -> random flip/rotation -> pad)
//! losses, grads = loss_and_grads(model, x, boxes, labels)      (crate::train::grad)
//! weights  = Adam(weights, grads), in place; refold the frozen BN  (Adam::step_model)
//! ```
//! Schedules: `joint` trains everything with the summed loss (torchvision's approximate joint
//! training); `alternating` is the study's: the RPN and the shared layers first
//! (`Phase::RpnOnly`, the first half of the epochs, rounded up), then the classifier on the RPN's
//! proposals (`Phase::HeadOnly`).
//!
//! Files in the run directory RUN:
//! - `options.json`: the options of the run (read back by `--resume`);
//! - `split.json`: the train/test split ([`crate::train::data::Split`]); `train.txt` and
//!   `test.txt`: the two sets as list files (`image_path annotation_path` lines, usable as
//!   `--data` and easy to read from a shell script);
//! - `train.csv`: one row per iteration: epoch, iteration, the four losses, total, lr, seconds;
//! - `last.safetensors`: the weights after every epoch (and when `--max-iters` stops a run);
//! - `best.safetensors`: with `select = loss` (the default from scratch), the weights after an
//!   epoch whose mean total loss beat every earlier epoch's (the study: "saved only if the loss
//!   after one epoch is less than the best loss"); with `select = val-ap` (the fine-tuning
//!   recipe's), the starting weights (epoch 0) or a later epoch whose validation AP beat them
//!   ([`crate::train::finetune`]);
//! - `val.csv` (`select = val-ap`): the validation AP of the starting weights and of every epoch
//!   ([`crate::train::finetune::VAL_HEADER`]);
//! - `optimizer.safetensors`: Adam's state; `state.json`: epoch, position, image order, rng,
//!   best loss ([`TrainState`]).
//!
//! Checkpoints are written in two phases so that a run killed at any moment leaves one
//! consistent checkpoint: (1) every file is written completely to `NAME.new` (each itself
//! through a tmp file + rename, `io::weights::save`), `state.json.new` last; (2) the `.new` files
//! are renamed over the old ones, `state.json` last. On start, [`recover`] finishes an
//! interrupted phase 2 (`state.json.new` exists: phase 1 had completed) or deletes the debris of
//! an interrupted phase 1. **Test hook**: the environment variable `CRYODET_TEST_SLOW_SAVE_MS`
//! makes the trainer sleep that many milliseconds between the two phases, so a test can kill it
//! while it saves (tests/train_kill.rs); it is read only by `test_hook_pause_between_save_phases`,
//! compiled only with the `testutil` feature (on for `cargo test`, off for `cargo install`).

use crate::error::{Error, Result};
use crate::io::weights::{save, write_atomic, Precision};
use crate::model::FasterRcnn;
use crate::train::adam::{Adam, AdamConfig};
use crate::train::augment::{augment_example, Dihedral};
use crate::train::data::{Dataset, LoadConfig, Loader, Split};
use crate::train::finetune::{self, Validator};
use crate::train::init::{self, Arch};
use crate::transform::{pad_to_multiple, SIZE_DIVISIBLE};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use crate::train::finetune::{Select, ValScore};
pub use crate::train::grad::{loss_and_grads, Losses, Phase, Sampling, TrainConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// All losses at once (torchvision's approximate joint training).
    Joint,
    /// The study's: RPN + shared layers first, then the classifier.
    Alternating,
}

/// Everything that defines a run (saved as RUN/options.json).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOptions {
    pub data: PathBuf,
    pub out: PathBuf,
    /// Converted ImageNet weights (backbone.* and head.layer4.*); None: He initialization.
    pub init: Option<PathBuf>,
    pub epochs: usize,
    pub lr: f32,
    /// Short side of the network input (the study's 600).
    pub size: usize,
    /// Upper bound of the long side (1000).
    pub max_size: usize,
    pub seed: u64,
    /// Width divisor of a He-initialized network (1 = ResNet-50).
    pub width_div: usize,
    /// Blocks of layer1..layer4 of a He-initialized network (None = 3, 4, 6, 3).
    pub blocks: Option<[usize; 4]>,
    /// Smooth-L1 beta (torchvision 1/9; the study's Eq. 4: 1).
    pub beta: f32,
    pub schedule: Schedule,
    /// Run the study's preprocessing (bilateral filter + histogram equalization).
    pub preprocess: bool,
    /// Stop after this many iterations in total (a checkpoint is saved).
    pub max_iters: Option<u64>,
    pub roi_batch: usize,
    pub rpn_batch: usize,
    /// Class names without the background (None: from the annotations).
    pub classes: Option<Vec<String>>,
    /// Group manifest (None: DATA/manifest.csv if present, else file-name prefixes).
    pub manifest: Option<PathBuf>,
    pub split_by_group: bool,
    /// Random flips and quarter turns.
    pub augment: bool,
    /// Backbone stages trained, counted from the top (None: see [`TrainOptions::trainable_layers`]).
    #[serde(default)]
    pub trainable_layers: Option<usize>,
    /// Epochs (0-based, sorted) at which the learning rate is multiplied by `lr_gamma`, as
    /// torchvision's detection reference (`--lr-steps`, MultiStepLR). Empty: constant lr.
    #[serde(default)]
    pub lr_steps: Vec<usize>,
    /// Factor applied at each of `lr_steps` (torchvision's reference: 0.1).
    #[serde(default = "default_lr_gamma")]
    pub lr_gamma: f32,
    /// Physical scale, anchors, random rescale and crop (every new run); absent in the
    /// options.json of older runs, which `--resume` continues in the study's order.
    #[serde(default)]
    pub scale: Option<crate::train::data::ScaleOptions>,
    /// How best.safetensors is chosen (older runs: by the training loss).
    #[serde(default)]
    pub select: Select,
    /// Whether the batch norms' affine parameters train (older runs: frozen).
    #[serde(default)]
    pub bn: BnMode,
}

/// What training does with the batch norms (`cryodet train --bn`). Their statistics
/// (`running_mean`, `running_var`) are never trained either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BnMode {
    /// torchvision's FrozenBatchNorm2d: gamma and beta fixed too (made for pretrained backbones).
    #[default]
    Frozen,
    /// gamma and beta of every trained stage train as per-channel parameters: a network
    /// He-initialized here (gamma 1, beta 0, mean 0, var 1) otherwise has no bias anywhere in
    /// its backbone and layer4.
    Affine,
}

fn default_lr_gamma() -> f32 {
    0.1
}

impl TrainOptions {
    /// Defaults of the study (Adam lr 1e-5, short side 600) for a data set and a run directory.
    pub fn new(data: PathBuf, out: PathBuf) -> Self {
        TrainOptions {
            data,
            out,
            init: None,
            epochs: 10,
            lr: 1e-5,
            size: 600,
            max_size: 1000,
            seed: 0,
            width_div: 1,
            blocks: None,
            beta: 1.0 / 9.0,
            schedule: Schedule::Joint,
            preprocess: true,
            max_iters: None,
            roi_batch: 512,
            rpn_batch: 256,
            classes: None,
            manifest: None,
            split_by_group: false,
            augment: true,
            trainable_layers: None,
            lr_steps: Vec::new(),
            lr_gamma: default_lr_gamma(),
            scale: Some(Default::default()),
            select: Select::Loss,
            bn: BnMode::Frozen,
        }
    }

    /// Learning rate of epoch `epoch` (0-based): `lr * lr_gamma^(number of steps <= epoch)`.
    pub fn lr_at(&self, epoch: usize) -> f32 {
        let drops = self.lr_steps.iter().filter(|&&s| s <= epoch).count();
        self.lr * self.lr_gamma.powi(drops as i32)
    }

    /// The phase of epoch `epoch` (0-based).
    pub fn phase(&self, epoch: usize) -> Phase {
        match self.schedule {
            Schedule::Joint => Phase::Joint,
            Schedule::Alternating if epoch < self.epochs.div_ceil(2) => Phase::RpnOnly,
            Schedule::Alternating => Phase::HeadOnly,
        }
    }

    /// torchvision's `trainable_backbone_layers`: 3 (layer2..layer4) on ImageNet weights, all 5
    /// from scratch (torchvision's rule when no pretrained backbone is given).
    pub fn trainable_layers(&self) -> usize {
        match (self.trainable_layers, &self.init) {
            (Some(t), _) => t,
            (None, Some(_)) => 3,
            (None, None) => 5,
        }
    }

    fn train_config(&self, epoch: usize) -> TrainConfig {
        TrainConfig {
            rpn_batch: self.rpn_batch,
            roi_batch: self.roi_batch,
            beta: self.beta,
            phase: self.phase(epoch),
            trainable_layers: self.trainable_layers(),
            train_bn: self.bn == BnMode::Affine,
            ..TrainConfig::default()
        }
    }
}

/// Where the run is (saved as RUN/state.json with every checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epoch in progress, 0-based (= completed epochs when `pos == 0`).
    pub epoch: usize,
    /// Images of `order` done in this epoch.
    pub pos: usize,
    /// This epoch's image order (sample indices); empty before the epoch starts.
    pub order: Vec<usize>,
    /// Iterations done in total.
    pub iteration: u64,
    /// Sum and count of the total loss over this epoch's iterations so far.
    pub epoch_loss_sum: f64,
    pub epoch_loss_n: usize,
    /// Best epoch-mean total loss so far and the phase it was measured in.
    pub best_loss: Option<f64>,
    pub best_phase: Option<String>,
    /// Seed of the run; the rng is ChaCha8 seeded with it, at word position `rng_word_pos`.
    pub seed: u64,
    pub rng_word_pos: String,
    /// Training seconds so far.
    pub seconds: f64,
    /// `--select val-ap`: the best validation score so far (epoch 0: the starting weights).
    #[serde(default)]
    pub best_val: Option<ValScore>,
}

impl TrainState {
    fn new(seed: u64) -> Self {
        TrainState {
            epoch: 0,
            pos: 0,
            order: Vec::new(),
            iteration: 0,
            epoch_loss_sum: 0.0,
            epoch_loss_n: 0,
            best_loss: None,
            best_phase: None,
            seed,
            rng_word_pos: "0".into(),
            seconds: 0.0,
            best_val: None,
        }
    }

    fn rng(&self) -> Result<ChaCha8Rng> {
        let pos: u128 = self.rng_word_pos.parse().map_err(|_| {
            Error::invalid(format!(
                "state.json: bad rng_word_pos {:?}",
                self.rng_word_pos
            ))
        })?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_word_pos(pos);
        Ok(rng)
    }
}

const CHECKPOINT_FILES: [&str; 3] = [
    "optimizer.safetensors",
    "last.safetensors",
    "best.safetensors",
];

fn with_suffix(dir: &Path, name: &str, suffix: &str) -> PathBuf {
    dir.join(format!("{name}{suffix}"))
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| Error::io(to, e))
}

/// Phase 2 of a checkpoint: `.new` files over the old ones, `state.json` last.
fn commit(dir: &Path) -> Result<()> {
    for name in CHECKPOINT_FILES {
        let new = with_suffix(dir, name, ".new");
        if new.exists() {
            rename(&new, &dir.join(name))?;
        }
    }
    rename(
        &with_suffix(dir, "state.json", ".new"),
        &dir.join("state.json"),
    )
}

/// Brings RUN to a consistent checkpoint after a crash: finishes an interrupted commit, or
/// removes the files of an interrupted phase 1. Returns true when it had to do something.
pub fn recover(dir: &Path) -> Result<bool> {
    if with_suffix(dir, "state.json", ".new").exists() {
        commit(dir)?;
        return Ok(true);
    }
    let mut cleaned = false;
    for name in CHECKPOINT_FILES.iter().chain(&["state.json"]) {
        for suffix in [".new", ".new.tmp", ".tmp"] {
            let p = with_suffix(dir, name, suffix);
            if p.exists() {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                cleaned = true;
            }
        }
    }
    Ok(cleaned)
}

/// The model's weights with its metadata plus the state's `iteration` and `epoch`.
fn save_weights(path: &Path, model: &FasterRcnn, state: &TrainState) -> Result<()> {
    let tensors = model.export();
    let views: Vec<(String, ndarray::ArrayViewD<f32>)> =
        tensors.iter().map(|(n, t)| (n.clone(), t.view())).collect();
    let mut meta = model.metadata();
    meta.insert("iteration".into(), state.iteration.to_string());
    meta.insert("epoch".into(), state.epoch.to_string());
    save(path, &views, &meta, Precision::F32)
}

/// Writes a checkpoint in two phases (module doc). `best`: also replace best.safetensors.
pub fn save_checkpoint(
    dir: &Path,
    model: &FasterRcnn,
    adam: &Adam,
    state: &TrainState,
    best: bool,
) -> Result<()> {
    recover(dir)?;
    save_weights(&with_suffix(dir, "last.safetensors", ".new"), model, state)?;
    if best {
        save_weights(&with_suffix(dir, "best.safetensors", ".new"), model, state)?;
    }
    adam.save(with_suffix(dir, "optimizer.safetensors", ".new"))?;
    let json = serde_json::to_string_pretty(state).map_err(|e| Error::invalid(e.to_string()))?;
    write_atomic(&with_suffix(dir, "state.json", ".new"), json.as_bytes())?;
    test_hook_pause_between_save_phases();
    commit(dir)
}

/// The one test hook of the crate, read here and nowhere else: with the environment variable
/// `CRYODET_TEST_SLOW_SAVE_MS` set to a number, the trainer sleeps that many milliseconds between
/// the two phases of a checkpoint, a window in which a kill finds phase 1 complete
/// (tests/train_kill.rs kills the `cryodet` binary there).
///
/// Compiled only with the `testutil` feature, which the dev-dependency on this crate turns on for
/// `cargo test` (the binary the integration tests run is built with it; tests/train_kill.rs
/// fails without the hook); `cargo build` and `cargo install` leave it out.
#[cfg(feature = "testutil")]
fn test_hook_pause_between_save_phases() {
    if let Some(ms) = std::env::var("CRYODET_TEST_SLOW_SAVE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Without the `testutil` feature: nothing.
#[cfg(not(feature = "testutil"))]
fn test_hook_pause_between_save_phases() {}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))
}

/// `h:mm:ss`.
fn hms(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

const CSV_HEADER: &str =
    "epoch,iteration,loss_objectness,loss_rpn_box_reg,loss_classifier,loss_box_reg,total,lr,seconds";

/// Opens RUN/train.csv for appending, keeping only the header and rows up to `iteration`
/// (rows written after the last checkpoint of a killed run are dropped).
fn open_csv(path: &Path, iteration: u64) -> Result<std::fs::File> {
    let mut kept = String::from(CSV_HEADER);
    kept.push('\n');
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        for line in text.lines().skip(1) {
            let it = line.split(',').nth(1).and_then(|v| v.parse::<u64>().ok());
            if it.is_some_and(|it| it <= iteration) {
                kept.push_str(line);
                kept.push('\n');
            }
        }
    }
    write_atomic(path, kept.as_bytes())?;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// A new model for the options and classes.
fn initial_model(o: &TrainOptions, classes: &[String]) -> Result<FasterRcnn> {
    let (tensors, meta) = match &o.init {
        Some(path) => init::from_file(path, 512 / o.width_div.max(1), classes, o.seed)?,
        None => init::he_init(&Arch::reduced(o.width_div, o.blocks)?, classes, o.seed)?,
    };
    let (mut tensors, mut meta) = (tensors, meta);
    if let Some(sc) = &o.scale {
        let anchors = crate::detection::anchors::AnchorGenerator {
            sizes: sc.anchor_sizes.clone(),
            ..Default::default()
        };
        // The anchors the --init file's RPN was trained with (complete models only).
        let source = match &o.init {
            Some(p) => {
                let wf = crate::io::weights::WeightFile::load(p)?;
                wf.contains("rpn.cls_logits.weight").then(|| {
                    crate::detection::anchors::AnchorGenerator::from_metadata(&wf.metadata)
                        .map_err(|r| Error::weights(p, r))
                        .map(Option::unwrap_or_default)
                })
            }
            None => None,
        }
        .transpose()?;
        if init::fit_rpn_to_anchors(&mut tensors, &mut meta, &anchors, source.as_ref(), o.seed)? {
            eprintln!(
                "note: the --init model's RPN used {}; its final layers are re-initialized for {}",
                source.as_ref().map_or(String::new(), |a| a.describe()),
                anchors.describe()
            );
        }
        meta.insert(
            crate::pipeline::PIXEL_SIZE_KEY.into(),
            sc.model_pixel_size.to_string(),
        );
        meta.insert(
            crate::pipeline::ORDER_KEY.into(),
            crate::pipeline::RESAMPLE_FIRST.into(),
        );
    }
    init::build(tensors, meta)
}

/// Errors unless `o.out` is free for a new run (no `state.json`).
pub fn check_new_run(o: &TrainOptions) -> Result<()> {
    if o.out.join("state.json").exists() {
        return Err(Error::invalid(format!(
            "{} already holds a run; continue it with --resume {0} or choose another --out",
            o.out.display()
        )));
    }
    Ok(())
}

/// Starts a new run in `o.out` (which must not hold one), with the 5:1 split of
/// [`Split::new`].
pub fn train(o: TrainOptions) -> Result<()> {
    check_new_run(&o)?;
    let ds = Dataset::open(&o.data, o.classes.as_deref(), o.manifest.as_deref())?;
    let split = Split::new(&ds, o.seed, o.split_by_group);
    start(o, ds, split)
}

/// Starts a new run in `o.out` on data set `ds` with `split` (the fine-tuning recipe's may
/// validate on the training images: `crate::train::finetune`).
pub fn start(o: TrainOptions, ds: Dataset, split: Split) -> Result<()> {
    check_new_run(&o)?;
    let dir = &o.out;
    if o.epochs == 0 {
        return Err(Error::invalid("--epochs must be at least 1"));
    }
    if split.train.is_empty() {
        return Err(Error::invalid("the training split is empty"));
    }
    let val_objects = split
        .test
        .iter()
        .flat_map(|&i| &ds.samples[i].objects)
        .filter(|x| !x.difficult)
        .count();
    if o.select == Select::ValAp && val_objects == 0 {
        return Err(Error::invalid(
            "--select val-ap: the validation images hold no (non-difficult) object to compute an AP on; annotate some or use --select loss",
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    split.save(&dir.join("split.json"))?;
    for (name, idx) in [("train.txt", &split.train), ("test.txt", &split.test)] {
        write_atomic(&dir.join(name), ds.list_file(idx).as_bytes())?;
    }
    let json = serde_json::to_string_pretty(&o).map_err(|e| Error::invalid(e.to_string()))?;
    write_atomic(&dir.join("options.json"), json.as_bytes())?;
    let mut model = initial_model(&o, &ds.classes)?;
    // How the training images were prepared: `detect` and `eval` follow it by default.
    model.info.insert("min_size".into(), o.size.to_string());
    model.info.insert(
        "preprocess".into(),
        if o.preprocess {
            "bilateral+equalize"
        } else {
            "none"
        }
        .into(),
    );
    let adam = Adam::new(AdamConfig {
        lr: o.lr,
        ..AdamConfig::default()
    });
    let held = if split.test == split.train {
        "validating on the same images".to_string()
    } else {
        format!(
            "{} held out for {}",
            split.test.len(),
            match o.select {
                Select::ValAp => "validation",
                Select::Loss => "testing",
            }
        )
    };
    eprintln!(
        "training on {} images ({held}), classes {:?}",
        split.train.len(),
        &ds.classes[1..]
    );
    run_loop(&o, &ds, &split, model, adam, TrainState::new(o.seed))
}

/// Continues the run in `dir` exactly where its last checkpoint left it. `epochs` and
/// `max_iters` replace the saved ones when given (to extend a run).
pub fn resume(dir: &Path, epochs: Option<usize>, max_iters: Option<u64>) -> Result<()> {
    if recover(dir)? {
        eprintln!(
            "note: {}: completed an interrupted checkpoint",
            dir.display()
        );
    }
    let mut o: TrainOptions = read_json(&dir.join("options.json"))?;
    o.out = dir.to_path_buf();
    if let Some(e) = epochs {
        o.epochs = e;
    }
    if max_iters.is_some() {
        o.max_iters = max_iters;
    }
    let state: TrainState = read_json(&dir.join("state.json"))?;
    let split = Split::load(&dir.join("split.json"))?;
    let ds = Dataset::open(&o.data, o.classes.as_deref(), o.manifest.as_deref())?;
    if split
        .train
        .iter()
        .chain(&split.test)
        .any(|&i| i >= ds.samples.len())
        || split
            .train
            .iter()
            .zip(&split.train_images)
            .any(|(&i, n)| ds.samples[i].name() != *n)
    {
        return Err(Error::invalid(format!(
            "{}: the data set changed since the run started (split.json no longer matches)",
            o.data.display()
        )));
    }
    let last = dir.join("last.safetensors");
    let model = FasterRcnn::load(&last)?;
    let adam = Adam::load(
        dir.join("optimizer.safetensors"),
        AdamConfig {
            lr: o.lr,
            ..AdamConfig::default()
        },
    )?;
    let saved_iter = crate::io::weights::WeightFile::load(&last)?
        .metadata
        .get("iteration")
        .and_then(|v| v.parse::<u64>().ok());
    if saved_iter != Some(state.iteration) || adam.step != state.iteration {
        return Err(Error::invalid(format!(
            "{}: inconsistent checkpoint (state at iteration {}, weights at {saved_iter:?}, optimizer at {})",
            dir.display(),
            state.iteration,
            adam.step
        )));
    }
    eprintln!(
        "resuming {} at epoch {}, iteration {}",
        dir.display(),
        state.epoch + 1,
        state.iteration
    );
    run_loop(&o, &ds, &split, model, adam, state)
}

/// The loop over epochs and images, from `state` on.
fn run_loop(
    o: &TrainOptions,
    ds: &Dataset,
    split: &Split,
    mut model: FasterRcnn,
    mut adam: Adam,
    mut state: TrainState,
) -> Result<()> {
    let dir = &o.out;
    let mut rng = state.rng()?;
    let mut loader = Loader::new(
        ds,
        &split.train,
        LoadConfig {
            size: o.size,
            max_size: o.max_size,
            preprocess: o.preprocess.then(Default::default),
            scale: o.scale.clone(),
        },
    );
    let augment_cfg = augment_config(o);
    let mut csv = open_csv(&dir.join("train.csv"), state.iteration)?;
    // --select val-ap: the validation images are scored after every epoch, the starting weights
    // being epoch 0 and the first best.safetensors (crate::train::finetune).
    let mut validator = match o.select {
        Select::ValAp => Some(Validator::open(
            dir,
            &split.test,
            o.scale.as_ref(),
            state.epoch,
        )?),
        Select::Loss => None,
    };
    let mut val_secs = 0.0;
    if let Some(v) = validator.as_mut() {
        if state.best_val.is_none() && state.iteration == 0 {
            val_secs = score_starting_weights(v, &model, ds, dir, &mut state)?;
        }
    }
    let n = split.train.len();
    let total_iters = (o.epochs as u64 * n as u64).min(o.max_iters.unwrap_or(u64::MAX));
    let started = Instant::now();
    let mut ema: Option<f64> = None;
    let start_seconds = state.seconds;
    while state.epoch < o.epochs {
        if state.order.is_empty() {
            state.order = split.train.clone();
            state.order.shuffle(&mut rng);
        }
        let phase = o.phase(state.epoch);
        let phase_name = format!("{phase:?}");
        if state.best_phase.as_deref() != Some(phase_name.as_str()) {
            // A new phase optimizes another loss: its epochs are compared among themselves.
            state.best_loss = None;
            state.best_phase = Some(phase_name);
        }
        let tcfg = o.train_config(state.epoch);
        adam.config.lr = o.lr_at(state.epoch);
        while state.pos < state.order.len() {
            if o.max_iters.is_some_and(|m| state.iteration >= m) {
                state.rng_word_pos = rng.get_word_pos().to_string();
                save_checkpoint(dir, &model, &adam, &state, false)?;
                eprintln!(
                    "stopped at --max-iters {}; checkpoint saved",
                    state.iteration
                );
                return Ok(());
            }
            let t0 = Instant::now();
            let i = state.order[state.pos];
            let ex = step_input(o, ds, &mut loader, augment_cfg.as_ref(), i, &mut rng)?;
            let (losses, grads) =
                loss_and_grads(&model, &ex.x, ex.boxes.view(), &ex.labels, &tcfg, &mut rng);
            let total = losses.total();
            if !total.is_finite() {
                return Err(Error::invalid(format!(
                    "loss is not finite ({losses:?}) at iteration {} on {}; lower --lr",
                    state.iteration + 1,
                    ds.samples[i].image.display()
                )));
            }
            adam.step_model(&mut model, &grads)?;
            state.pos += 1;
            state.iteration += 1;
            state.epoch_loss_sum += total as f64;
            state.epoch_loss_n += 1;
            let dt = t0.elapsed().as_secs_f64();
            state.seconds = start_seconds + started.elapsed().as_secs_f64();
            // Seconds per iteration: exponential moving average (the first iterations also
            // load and preprocess images).
            let per_iter = ema.map_or(dt, |p| 0.9 * p + 0.1 * dt);
            ema = Some(per_iter);
            let eta = per_iter * total_iters.saturating_sub(state.iteration) as f64
                + val_secs * (o.epochs - state.epoch) as f64;
            let lr = adam.config.lr;
            log_iteration(&mut csv, o, &state, &losses, lr, dt, n, per_iter, eta)?;
        }
        let mean = state.epoch_loss_sum / state.epoch_loss_n.max(1) as f64;
        let loss_best = state.best_loss.is_none_or(|b| mean < b);
        if loss_best {
            state.best_loss = Some(mean);
        }
        let mut val_note = String::new();
        let is_best = match validator.as_mut() {
            None => loss_best,
            Some(v) => {
                let (better, secs, note) = score_epoch(v, &model, ds, &mut state, mean)?;
                (val_secs, val_note) = (secs, note);
                better
            }
        };
        eprintln!(
            "epoch {} done: mean loss {mean:.4}{val_note}{}",
            state.epoch + 1,
            if is_best {
                " (best so far, saved best.safetensors)"
            } else {
                ""
            }
        );
        state.epoch += 1;
        state.pos = 0;
        state.order.clear();
        state.epoch_loss_sum = 0.0;
        state.epoch_loss_n = 0;
        state.rng_word_pos = rng.get_word_pos().to_string();
        save_checkpoint(dir, &model, &adam, &state, is_best)?;
    }
    report_done(&state);
    Ok(())
}

/// One iteration's row of train.csv and its progress line on stderr (`n` images per epoch,
/// `per_iter` seconds per iteration, `eta` seconds left).
#[allow(clippy::too_many_arguments)]
fn log_iteration(
    csv: &mut std::fs::File,
    o: &TrainOptions,
    state: &TrainState,
    losses: &Losses,
    lr: f32,
    dt: f64,
    n: usize,
    per_iter: f64,
    eta: f64,
) -> Result<()> {
    let total = losses.total();
    let v = losses.values();
    let cols: String = v.iter().map(|l| format!("{l},")).collect();
    writeln!(
        csv,
        "{},{},{cols}{},{:e},{:.4}",
        state.epoch + 1,
        state.iteration,
        total,
        lr,
        dt
    )
    .map_err(|e| Error::io(o.out.join("train.csv"), e))?;
    eprintln!(
        "epoch {}/{} iter {}/{} ({}) |{} total {total:.4} | {:.2} img/s ETA {}",
        state.epoch + 1,
        o.epochs,
        state.pos,
        n,
        state.iteration,
        ["obj", "rpn_box", "cls", "box"]
            .iter()
            .zip(v)
            .map(|(n, l)| format!(" {n} {l:.4}"))
            .collect::<String>(),
        1.0 / per_iter,
        hms(eta)
    );
    Ok(())
}

/// The closing lines of a run: epochs, iterations, time, and which epoch best.safetensors is.
fn report_done(state: &TrainState) {
    eprintln!(
        "done: {} epochs, {} iterations, {}",
        state.epoch,
        state.iteration,
        hms(state.seconds)
    );
    match &state.best_val {
        Some(b) if b.epoch == 0 => eprintln!(
            "note: no epoch beat the starting weights on the validation images (AP@0.5 {:.4}, AP@0.7 {:.4}): best.safetensors is the starting model",
            b.ap50, b.ap70
        ),
        Some(b) => eprintln!(
            "best.safetensors: epoch {} (validation AP@0.5 {:.4}, AP@0.7 {:.4})",
            b.epoch, b.ap50, b.ap70
        ),
        None => {}
    }
}

/// The augmentation of a run at a physical scale (`--model-pixel-size`; None: the classic
/// fixed-size loader, where `--augment` only flips and rotates).
fn augment_config(o: &TrainOptions) -> Option<crate::train::augment::AugmentConfig> {
    o.scale
        .as_ref()
        .map(|sc| crate::train::augment::AugmentConfig {
            scale_range: if o.augment {
                sc.scale_range
            } else {
                [1.0, 1.0]
            },
            max_input: sc.max_input,
            dihedral: o.augment,
            preprocess: o.preprocess.then(Default::default),
            intensity: o.augment,
        })
}

/// One iteration's input: sample `i` loaded (and augmented), padded to a multiple of
/// `SIZE_DIVISIBLE`; `x` `[3, 1, H, W]`, boxes `[N, 4]` in x's pixels.
fn step_input(
    o: &TrainOptions,
    ds: &Dataset,
    loader: &mut Loader,
    augment_cfg: Option<&crate::train::augment::AugmentConfig>,
    i: usize,
    rng: &mut ChaCha8Rng,
) -> Result<crate::train::data::Example> {
    let ex = match augment_cfg {
        Some(a) => augment_example(&loader.get_base(ds, i)?, a, rng),
        None => loader.get(ds, i)?,
    };
    let (x, boxes) = if o.augment && augment_cfg.is_none() {
        Dihedral::random(rng).apply(&ex.x, &ex.boxes)
    } else {
        (ex.x, ex.boxes)
    };
    Ok(crate::train::data::Example {
        x: pad_to_multiple(&x, SIZE_DIVISIBLE),
        boxes,
        labels: ex.labels,
    })
}

/// --select val-ap before the first epoch: scores the starting weights (epoch 0), saves them as
/// the first best.safetensors; returns the seconds the scoring took.
fn score_starting_weights(
    v: &mut Validator,
    model: &FasterRcnn,
    ds: &Dataset,
    dir: &Path,
    state: &mut TrainState,
) -> Result<f64> {
    let (s, secs) = finetune::timed_score(v, model, ds, 0)?;
    v.log(&s, 0, None, secs, true)?;
    save_weights(&dir.join("best.safetensors"), model, state)?;
    eprintln!(
        "epoch 0 (starting weights): validation AP@0.5 {:.4}, AP@0.7 {:.4} on {} images ({secs:.1} s); saved best.safetensors",
        s.ap50,
        s.ap70,
        v.len()
    );
    state.best_val = Some(s);
    Ok(secs)
}

/// --select val-ap after an epoch with mean loss `mean`: scores and logs the weights; returns
/// (better than the best so far, seconds, the note for the epoch line).
fn score_epoch(
    v: &mut Validator,
    model: &FasterRcnn,
    ds: &Dataset,
    state: &mut TrainState,
    mean: f64,
) -> Result<(bool, f64, String)> {
    let (s, secs) = finetune::timed_score(v, model, ds, state.epoch + 1)?;
    let better = state.best_val.as_ref().is_none_or(|b| s.beats(b));
    v.log(&s, state.iteration, Some(mean), secs, better)?;
    let note = format!(
        "; validation AP@0.5 {:.4}, AP@0.7 {:.4} ({secs:.1} s)",
        s.ap50, s.ap70
    );
    if better {
        state.best_val = Some(s);
    }
    Ok((better, secs, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_model() -> FasterRcnn {
        let classes = vec!["__background__".to_string(), "a".to_string()];
        let (t, m) =
            init::he_init(&Arch::reduced(32, Some([1, 1, 1, 1])).unwrap(), &classes, 1).unwrap();
        init::build(t, m).unwrap()
    }

    fn tmpdir(tag: &str) -> PathBuf {
        crate::testutil::temp_dir(&format!("trainer-{tag}"))
    }

    /// A kill after phase 1 (all `.new` files complete) rolls forward to the new checkpoint; a
    /// kill during phase 1 (no `state.json.new`) rolls back to the old one.
    #[test]
    fn recovery_rolls_forward_or_back() {
        let dir = tmpdir("recover");
        let model = tiny_model();
        let adam = Adam::new(AdamConfig::default());
        let mut state = TrainState::new(3);
        save_checkpoint(&dir, &model, &adam, &state, true).unwrap();
        assert!(
            !recover(&dir).unwrap(),
            "a clean checkpoint needs no recovery"
        );

        // Interrupted commit: phase 1 complete, one rename done.
        state.iteration = 0;
        state.epoch = 1;
        let json = serde_json::to_string(&state).unwrap();
        std::fs::copy(
            dir.join("last.safetensors"),
            dir.join("last.safetensors.new"),
        )
        .unwrap();
        std::fs::copy(
            dir.join("optimizer.safetensors"),
            dir.join("optimizer.safetensors.new"),
        )
        .unwrap();
        std::fs::write(dir.join("state.json.new"), &json).unwrap();
        rename(
            &dir.join("optimizer.safetensors.new"),
            &dir.join("optimizer.safetensors"),
        )
        .unwrap();
        assert!(recover(&dir).unwrap());
        let back: TrainState = read_json(&dir.join("state.json")).unwrap();
        assert_eq!(back.epoch, 1);
        assert!(!dir.join("last.safetensors.new").exists());

        // Interrupted phase 1: debris removed, old state kept.
        std::fs::write(dir.join("last.safetensors.new"), b"partial").unwrap();
        std::fs::write(dir.join("best.safetensors.new.tmp"), b"partial").unwrap();
        assert!(recover(&dir).unwrap());
        assert!(!dir.join("last.safetensors.new").exists());
        assert!(!dir.join("best.safetensors.new.tmp").exists());
        let back: TrainState = read_json(&dir.join("state.json")).unwrap();
        assert_eq!(back.epoch, 1);
        FasterRcnn::load(dir.join("last.safetensors")).unwrap();
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn rng_state_roundtrips_through_json() {
        let mut s = TrainState::new(42);
        let mut rng = s.rng().unwrap();
        let _: u64 = rand::Rng::gen(&mut rng);
        s.rng_word_pos = rng.get_word_pos().to_string();
        let t: TrainState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        let a: u64 = rand::Rng::gen(&mut rng);
        let b: u64 = rand::Rng::gen(&mut t.rng().unwrap());
        assert_eq!(a, b);
    }

    #[test]
    fn csv_drops_rows_after_the_checkpoint() {
        let dir = tmpdir("csv");
        let p = dir.join("train.csv");
        std::fs::write(&p, format!("{CSV_HEADER}\n1,1,0,0,0,0,0,1e-5,0.1\n1,2,0,0,0,0,0,1e-5,0.1\n1,3,0,0,0,0,0,1e-5,0.1\n")).unwrap();
        drop(open_csv(&p, 2).unwrap());
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn alternating_schedule_halves_the_epochs() {
        let mut o = TrainOptions::new("d".into(), "o".into());
        o.schedule = Schedule::Alternating;
        o.epochs = 5;
        let phases: Vec<Phase> = (0..5).map(|e| o.phase(e)).collect();
        assert_eq!(
            phases,
            [
                Phase::RpnOnly,
                Phase::RpnOnly,
                Phase::RpnOnly,
                Phase::HeadOnly,
                Phase::HeadOnly
            ]
        );
    }

    #[test]
    fn lr_steps_follow_torch_multistep_milestones() {
        // torch: MultiStepLR(opt, milestones=[2, 4], gamma=0.1), scheduler.step() after each
        // epoch -> epochs 0,1 at lr; 2,3 at 0.1 lr; 4.. at 0.01 lr.
        let mut o = TrainOptions::new("d".into(), "o".into());
        o.lr = 1e-3;
        o.lr_steps = vec![2, 4];
        let lrs: Vec<f32> = (0..6).map(|e| o.lr_at(e)).collect();
        let want = [1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5];
        for (e, (a, b)) in lrs.iter().zip(want).enumerate() {
            assert!((a - b).abs() <= 1e-6 * b, "epoch {e}: lr {a}, want {b}");
        }
        // An options.json written before lr_steps existed still loads (constant lr).
        let mut v = serde_json::to_value(&o).unwrap();
        let m = v.as_object_mut().unwrap();
        m.remove("lr_steps");
        m.remove("lr_gamma");
        let old: TrainOptions = serde_json::from_value(v).unwrap();
        assert_eq!(old.lr_at(5), 1e-3);
        assert_eq!(old.lr_gamma, 0.1);
    }
}
