//! The fine-tuning recipe: what `cryodet train --data DIR --init MODEL --out RUN` does when
//! MODEL is a complete cryodet model (it has an RPN and a predictor), and the per-epoch
//! validation that picks `RUN/best.safetensors`.
//!
//! # The recipe ([`plan`])
//! For `n` annotated images, every choice unless the option was given ([`Given`]):
//! ```text
//! split        5:1 by image (or by group), as from scratch; n < 10 (or no image left to
//!              validate on): all n train, and the validation runs on the same n (said so)
//! epochs       E = clamp(round(800 / n_train), 8, 60)        (~600-1000 iterations of 1 image)
//! lr           Adam 1e-4 for the first E - round(E / 4) epochs, x0.1 for the last round(E / 4)
//! layers       n_train < 50: stem + layer1 frozen (--trainable-layers 3); else only the stem
//!              (--trainable-layers 4)
//! scale        the model's own pixel_size_nm, anchor sizes and min_size (metadata); files
//!              without a pixel size: --pixel-size; a model without pixel_size_nm: 2.5 nm
//! augment      flips, quarter turns, random rescale x0.8-x1.25 (one microscope: narrower than
//!              the base model's x0.5-x2), crops of <= 640 px, blur and noise
//!              (crate::train::augment; contrast and gamma are absorbed by the equalization)
//! RoIs         128 sampled per image (as the shipped models were trained; 512 costs 4x in layer4)
//! preprocess   as the model was trained (metadata `preprocess`)
//! batch norm   frozen (torchvision's FrozenBatchNorm2d; `--bn affine` trains gamma and beta)
//! selection    validation AP (below)
//! ```
//! The constants are choices, not measured optima: 1e-4 is half the shipped model's
//! from-scratch rate (2e-4, weights/README.md) so that a few images do not wipe out what it
//! knows; 600-1000 iterations because issue 15's first trial (500 iterations at 1e-4, no drop)
//! left the training loss near 1.0; the drop for the last quarter follows torchvision's
//! detection reference (lr x0.1 near the end).
//!
//! # Validation and "never worse" ([`Select::ValAp`])
//! After every epoch the current weights detect on the validation images exactly as
//! `cryodet detect` / `cryodet eval --weights` would (`crate::pipeline`, the model's metadata,
//! detections with score >= 0.05) and `crate::eval` scores them: all-point AP at IoU 0.5 and 0.7
//! (mAP over classes). Before the first iteration the starting network (the `--init` model with
//! the run's metadata; its predictor is fresh if the classes differ) is scored the same way as
//! **epoch 0** and saved as `best.safetensors`. An epoch replaces the best when its
//! (AP@0.5, AP@0.7) is lexicographically *strictly* greater: a tie keeps the earlier epoch, so a
//! model that only equals the starting one never replaces it, and when no epoch beats the start
//! `best.safetensors` stays the starting model (the run ends with a note saying so).
//! Every score goes to `RUN/val.csv` ([`VAL_HEADER`]).

use crate::detection::anchors::AnchorGenerator;
use crate::error::{Error, Result};
use crate::eval::{evaluate, EvalConfig, GtBox, ImageEval, PredBox};
use crate::io::image::{check_finite, read_gray};
use crate::io::pixel_size::PixelSize;
use crate::io::weights::{write_atomic, WeightFile};
use crate::model::FasterRcnn;
use crate::pipeline::{detect_prepared, prepare_at, PipelineConfig, Prepared};
use crate::train::data::{Dataset, ScaleOptions, Split};
use crate::train::trainer::{BnMode, TrainOptions};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Adam learning rate of the recipe.
pub const LR: f32 = 1e-4;
/// Iterations (images) the recipe aims at: epochs = round(TARGET_ITERS / n_train), clamped.
pub const TARGET_ITERS: f64 = 800.0;
/// Bounds of the recipe's epochs.
pub const EPOCHS: [usize; 2] = [8, 60];
/// Below this many images every image trains and the validation runs on them.
pub const MIN_SPLIT_IMAGES: usize = 10;
/// Below this many training images the stem and layer1 stay frozen (3 trainable stages).
pub const FEW_IMAGES: usize = 50;
/// Random rescale range of the recipe.
pub const SCALE_RANGE: [f32; 2] = [0.8, 1.25];
/// RoIs sampled per image.
pub const ROI_BATCH: usize = 128;
/// Batch norms of the recipe: frozen, as the shipped models' own training.
pub const BN: BnMode = BnMode::Frozen;
/// Network pixel size (nm) for a model that records none.
pub const FALLBACK_PIXEL_NM: f32 = 2.5;
/// Detections kept for the validation AP (as `cryodet eval --keep-thresh`).
pub const KEEP_THRESH: f32 = 0.05;

/// How `best.safetensors` is chosen (`cryodet train --select`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Select {
    /// The study's: the epoch with the lowest mean training loss (within a phase).
    #[default]
    Loss,
    /// The epoch with the best validation AP at IoU 0.5 (then 0.7), the starting weights being
    /// epoch 0 (the fine-tuning recipe's; module doc).
    ValAp,
}

/// What a complete cryodet model (the `--init` file) records about how it was trained.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseModel {
    /// `pixel_size_nm`: nm per pixel of its network input.
    pub pixel_size_nm: Option<f32>,
    /// Its anchor sizes (`anchor_sizes`; the default 128,256,512 for older files).
    pub anchor_sizes: Vec<f32>,
    /// `min_size`: short side of the network input for files of unknown pixel size.
    pub min_size: Option<usize>,
    /// False when its metadata says `preprocess = none`.
    pub preprocess: bool,
}

impl BaseModel {
    /// The metadata of `path` if it is a complete model (`rpn.conv.weight` present, as
    /// `crate::train::init::from_file` decides); `None` for ImageNet weights.
    pub fn read(path: &Path) -> Result<Option<BaseModel>> {
        let wf = WeightFile::load(path)?;
        if !wf.contains("rpn.conv.weight") {
            return Ok(None);
        }
        let m = &wf.metadata;
        let anchors = AnchorGenerator::from_metadata(m)
            .map_err(|r| Error::weights(path, r))?
            .unwrap_or_default();
        Ok(Some(BaseModel {
            pixel_size_nm: m
                .get(crate::pipeline::PIXEL_SIZE_KEY)
                .and_then(|v| v.trim().parse::<f32>().ok())
                .filter(|v| v.is_finite() && *v > 0.0),
            anchor_sizes: anchors.sizes,
            min_size: m
                .get("min_size")
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|&s| s >= 32),
            preprocess: m.get("preprocess").is_none_or(|v| v != "none"),
        }))
    }
}

/// The options the user gave (None / false: not given). Values are already validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Given {
    pub epochs: Option<usize>,
    pub lr: Option<f32>,
    pub lr_steps: Option<Vec<usize>>,
    pub lr_gamma: Option<f32>,
    pub trainable_layers: Option<usize>,
    pub size: Option<usize>,
    pub roi_batch: Option<usize>,
    pub pixel_size: Option<f32>,
    pub model_pixel_size: Option<f32>,
    pub anchor_sizes: Option<Vec<f32>>,
    pub scale_range: Option<[f32; 2]>,
    pub max_input: Option<usize>,
    pub no_augment: bool,
    pub no_preprocess: bool,
    pub select: Option<Select>,
    pub bn: Option<BnMode>,
}

/// Everything the recipe decided for one data set (see the module doc).
#[derive(Debug, Clone)]
pub struct Plan {
    pub split: Split,
    /// The validation images are the training images (fewer than [`MIN_SPLIT_IMAGES`]).
    pub val_on_train: bool,
    pub epochs: usize,
    pub lr: f32,
    /// 0-based epochs of the x0.1 drops (`TrainOptions::lr_steps`).
    pub lr_steps: Vec<usize>,
    /// Factor of each drop.
    pub lr_gamma: f32,
    pub trainable_layers: usize,
    pub size: usize,
    pub preprocess: bool,
    pub roi_batch: usize,
    pub augment: bool,
    pub scale: ScaleOptions,
    pub select: Select,
    pub bn: BnMode,
    /// Options given on the command line that replaced a choice of the recipe.
    pub given: Vec<&'static str>,
    /// Lines for the user (`note: ...`).
    pub notes: Vec<String>,
}

/// The recipe's epochs for `n_train` training images: clamp(round(800 / n), 8, 60).
pub fn recipe_epochs(n_train: usize) -> usize {
    ((TARGET_ITERS / n_train.max(1) as f64).round() as usize).clamp(EPOCHS[0], EPOCHS[1])
}

/// The epoch (0-based) from which the recipe's lr is x0.1: the last round(E / 4) epochs.
pub fn recipe_drop(epochs: usize) -> usize {
    epochs - (epochs as f64 / 4.0).round() as usize
}

/// The recipe's trainable backbone stages for `n_train` images (module doc).
pub fn recipe_trainable_layers(n_train: usize) -> usize {
    if n_train < FEW_IMAGES {
        3
    } else {
        4
    }
}

/// The split of the recipe: the 5:1 split of [`Split::new`], or all images on both sides when
/// there are fewer than [`MIN_SPLIT_IMAGES`] or the split leaves nothing to validate on.
fn recipe_split(ds: &Dataset, seed: u64, by_group: bool) -> (Split, bool) {
    let split = Split::new(ds, seed, by_group);
    if ds.samples.len() >= MIN_SPLIT_IMAGES && !split.test.is_empty() {
        return (split, false);
    }
    let all: Vec<usize> = (0..ds.samples.len()).collect();
    let names: Vec<String> = ds.samples.iter().map(|s| s.name()).collect();
    (
        Split {
            seed,
            by_group,
            train: all.clone(),
            test: all,
            train_images: names.clone(),
            test_images: names,
        },
        true,
    )
}

/// `given` if the user gave it (its option name is recorded in `used`), else the recipe's.
fn choose<T>(
    given: Option<T>,
    name: &'static str,
    used: &mut Vec<&'static str>,
    recipe: impl FnOnce() -> T,
) -> T {
    match given {
        Some(v) => {
            used.push(name);
            v
        }
        None => recipe(),
    }
}

/// The recipe for data set `ds` and base model `base`, every given option overriding its choice.
/// Pure: reads no file.
pub fn plan(
    ds: &Dataset,
    base: &BaseModel,
    given: &Given,
    seed: u64,
    by_group: bool,
) -> Result<Plan> {
    let mut used = Vec::new();
    let mut notes = Vec::new();
    let select = choose(given.select, "--select", &mut used, || Select::ValAp);
    let (split, val_on_train) = if select == Select::ValAp {
        recipe_split(ds, seed, by_group)
    } else {
        (Split::new(ds, seed, by_group), false)
    };
    if split.train.is_empty() {
        return Err(Error::invalid("the training split is empty"));
    }
    let n_train = split.train.len();
    let epochs = choose(given.epochs, "--epochs", &mut used, || {
        recipe_epochs(n_train)
    });
    let lr = choose(given.lr, "--lr", &mut used, || LR);
    let lr_steps = choose(given.lr_steps.clone(), "--lr-steps", &mut used, || {
        vec![recipe_drop(epochs)]
    });
    let lr_gamma = choose(given.lr_gamma, "--lr-gamma", &mut used, || 0.1);
    let trainable_layers = choose(
        given.trainable_layers,
        "--trainable-layers",
        &mut used,
        || recipe_trainable_layers(n_train),
    );
    let size = choose(given.size, "--size", &mut used, || {
        base.min_size.unwrap_or(600)
    });
    let roi_batch = choose(given.roi_batch, "--roi-batch", &mut used, || ROI_BATCH);
    let model_pixel_size = choose(
        given.model_pixel_size,
        "--model-pixel-size",
        &mut used,
        || {
            base.pixel_size_nm.unwrap_or_else(|| {
                notes.push(format!(
                    "the --init model records no pixel size: files of known pixel size are resampled to {FALLBACK_PIXEL_NM} nm (--model-pixel-size)"
                ));
                FALLBACK_PIXEL_NM
            })
        },
    );
    let anchor_sizes = choose(
        given.anchor_sizes.clone(),
        "--anchor-sizes",
        &mut used,
        || base.anchor_sizes.clone(),
    );
    let scale_range = choose(given.scale_range, "--scale-range", &mut used, || {
        SCALE_RANGE
    });
    let max_input = choose(given.max_input, "--max-input", &mut used, || {
        ScaleOptions::default().max_input
    });
    let bn = choose(given.bn, "--bn", &mut used, || BN);
    if given.no_augment {
        used.push("--no-augment");
    }
    if given.no_preprocess {
        used.push("--no-preprocess");
    }
    if val_on_train {
        let n = ds.samples.len();
        let why = if n < MIN_SPLIT_IMAGES {
            format!("{n} image(s), fewer than {MIN_SPLIT_IMAGES}")
        } else {
            "the split leaves no image to validate on".to_string()
        };
        notes.push(format!(
            "{why}: all train, and the validation AP that picks best.safetensors is measured on these training images"
        ));
    }
    Ok(Plan {
        split,
        val_on_train,
        epochs,
        lr,
        lr_steps,
        lr_gamma,
        trainable_layers,
        size,
        preprocess: base.preprocess && !given.no_preprocess,
        roi_batch,
        augment: !given.no_augment,
        scale: ScaleOptions {
            model_pixel_size,
            pixel_size: given.pixel_size,
            anchor_sizes,
            scale_range,
            max_input,
        },
        select,
        bn,
        given: used,
        notes,
    })
}

fn frozen_name(trainable: usize) -> &'static str {
    match trainable {
        0 => "stem+layer1..layer4 frozen",
        1 => "stem+layer1..layer3 frozen",
        2 => "stem+layer1+layer2 frozen",
        3 => "stem+layer1 frozen",
        4 => "stem frozen",
        _ => "nothing frozen",
    }
}

fn list(v: &[f32]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl Plan {
    /// Writes the plan into the run's options.
    pub fn apply(&self, o: &mut TrainOptions) {
        o.epochs = self.epochs;
        o.lr = self.lr;
        o.lr_steps = self.lr_steps.clone();
        o.lr_gamma = self.lr_gamma;
        o.trainable_layers = Some(self.trainable_layers);
        o.size = self.size;
        o.preprocess = self.preprocess;
        o.roi_batch = self.roi_batch;
        o.augment = self.augment;
        o.scale = Some(self.scale.clone());
        o.select = self.select;
        o.bn = self.bn;
    }

    /// The one line printed at the start, e.g. `fine-tuning recipe: 20 images (17 train, 3 val),
    /// 47 epochs, lr 1e-4 (x0.1 from epoch 36), stem+layer1 frozen, 2.5 nm/px, ...`.
    pub fn summary(&self) -> String {
        let n = self
            .split
            .train_images
            .len()
            .max(self.split.test_images.len());
        let images = if self.val_on_train {
            format!("{n} images (all train and validate)")
        } else {
            let total = self.split.train.len() + self.split.test.len();
            let side = if self.select == Select::ValAp {
                "val"
            } else {
                "test"
            };
            format!(
                "{total} images ({} train, {} {side})",
                self.split.train.len(),
                self.split.test.len()
            )
        };
        let steps = if self.lr_steps.is_empty() {
            String::new()
        } else {
            format!(
                " (x{} from epoch {})",
                self.lr_gamma,
                self.lr_steps
                    .iter()
                    .map(|s| (s + 1).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let mut line = format!(
            "fine-tuning recipe: {images}, {} epochs, lr {:e}{steps}, {}, {} nm/px{}, anchors {}, rescale x{}-x{}, {} RoIs/image, augmentation {}{}, best.safetensors by {}",
            self.epochs,
            self.lr,
            frozen_name(self.trainable_layers),
            self.scale.model_pixel_size,
            self.scale
                .pixel_size
                .map_or(String::new(), |p| format!(" (files without one: {p} nm)")),
            list(&self.scale.anchor_sizes),
            self.scale.scale_range[0],
            self.scale.scale_range[1],
            self.roi_batch,
            if self.augment { "on" } else { "off" },
            match self.bn {
                BnMode::Frozen => "",
                BnMode::Affine => ", batch-norm affine trained",
            },
            match self.select {
                Select::ValAp => "validation AP@0.5 (start model = epoch 0)",
                Select::Loss => "training loss",
            }
        );
        if !self.given.is_empty() {
            line.push_str(&format!("; given: {}", self.given.join(" ")));
        }
        line
    }
}

/// Starts a run with the recipe for base model `base` (the CLI's path when `--init` is a
/// complete model): opens the data set, plans, prints the plan and trains.
pub fn train(mut o: TrainOptions, base: &BaseModel, given: &Given) -> Result<()> {
    crate::train::trainer::check_new_run(&o)?;
    let ds = Dataset::open(&o.data, o.classes.as_deref(), o.manifest.as_deref())?;
    let p = plan(&ds, base, given, o.seed, o.split_by_group)?;
    p.apply(&mut o);
    eprintln!("{}", p.summary());
    for n in &p.notes {
        eprintln!("note: {n}");
    }
    crate::train::trainer::start(o, ds, p.split)
}

/// A validation score: all-point AP (mAP over classes) at IoU 0.5 and 0.7.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValScore {
    /// Epochs completed when it was measured (0: the starting weights).
    pub epoch: usize,
    pub ap50: f64,
    pub ap70: f64,
}

impl ValScore {
    /// True when `self` is strictly better than `best`: higher AP@0.5, or equal AP@0.5 and
    /// higher AP@0.7 (module doc: a tie keeps the earlier epoch).
    pub fn beats(&self, best: &ValScore) -> bool {
        self.ap50 > best.ap50 || (self.ap50 == best.ap50 && self.ap70 > best.ap70)
    }
}

/// Columns of `RUN/val.csv` (one row per validation; epoch 0 = the starting weights;
/// `best` = 1 when that epoch became best.safetensors).
pub const VAL_HEADER: &str =
    "epoch,iteration,mean_train_loss,val_ap50,val_ap70,val_images,seconds,best";

/// Largest total size of cached validation inputs (bytes); larger sets are prepared again
/// every epoch.
const CACHE_BYTES: usize = 1 << 30;

/// Scores the weights on the validation images after every epoch and writes `RUN/val.csv`.
pub struct Validator {
    indices: Vec<usize>,
    /// `--pixel-size` for files without one.
    pixel_size: Option<f32>,
    /// Prepared network inputs (the preprocessing does not depend on the weights).
    cache: Option<Vec<Prepared>>,
    csv: std::fs::File,
    path: PathBuf,
}

impl Validator {
    /// Opens `dir/val.csv` keeping the rows of epochs `<= completed` (rows written after the
    /// last checkpoint of a killed run are dropped; a new run has `completed = 0` and no file).
    pub fn open(
        dir: &Path,
        indices: &[usize],
        scale: Option<&ScaleOptions>,
        completed: usize,
    ) -> Result<Self> {
        let path = dir.join("val.csv");
        let mut kept = format!("{VAL_HEADER}\n");
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            for line in text.lines().skip(1) {
                let e = line.split(',').next().and_then(|v| v.parse::<usize>().ok());
                if e.is_some_and(|e| e <= completed) {
                    kept.push_str(line);
                    kept.push('\n');
                }
            }
        }
        write_atomic(&path, kept.as_bytes())?;
        let csv = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(Validator {
            indices: indices.to_vec(),
            pixel_size: scale.and_then(|s| s.pixel_size),
            cache: None,
            csv,
            path,
        })
    }

    /// Number of validation images.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The pixel size of a sample as training uses it: its file's, else `--pixel-size`.
    fn pixel_of(&self, s: &crate::train::data::Sample) -> Option<PixelSize> {
        s.pixel.or(self.pixel_size.map(|nm| PixelSize {
            nm,
            source: "--pixel-size",
        }))
    }

    fn prepare(&self, ds: &Dataset, cfg: &PipelineConfig, i: usize) -> Result<Prepared> {
        let s = &ds.samples[i];
        let (raw, _) = check_finite(&s.image, read_gray(&s.image)?, false)?;
        let mut p = prepare_at(&raw, cfg, self.pixel_of(s)).map_err(|e| match e {
            Error::Invalid(r) => Error::format(&s.image, r),
            other => other,
        })?;
        // Only the network input is needed again.
        p.unit = ndarray::Array2::zeros((0, 0));
        Ok(p)
    }

    /// The score of `model` on the validation images after `epoch` completed epochs
    /// (as `cryodet eval --weights` would compute it; module doc).
    pub fn score(&mut self, model: &FasterRcnn, ds: &Dataset, epoch: usize) -> Result<ValScore> {
        let cfg = PipelineConfig::for_model(model, None, None, false, Some(KEEP_THRESH));
        if self.cache.is_none() {
            let bytes: usize = self
                .indices
                .iter()
                .map(|&i| {
                    let s = &ds.samples[i];
                    let c =
                        crate::pipeline::choose_scale(s.size.0, s.size.1, &cfg, self.pixel_of(s));
                    c.out.0 * c.out.1 * 3 * 4
                })
                .sum();
            if bytes <= CACHE_BYTES {
                let prepared = self
                    .indices
                    .iter()
                    .map(|&i| self.prepare(ds, &cfg, i))
                    .collect::<Result<Vec<_>>>()?;
                self.cache = Some(prepared);
            }
        }
        let mut images = Vec::with_capacity(self.indices.len());
        for (k, &i) in self.indices.iter().enumerate() {
            let s = &ds.samples[i];
            let fresh;
            let p = match &self.cache {
                Some(c) => &c[k],
                None => {
                    fresh = self.prepare(ds, &cfg, i)?;
                    &fresh
                }
            };
            let dets = detect_prepared(model, p, KEEP_THRESH);
            images.push(ImageEval {
                name: s.name(),
                group: None,
                gt: s
                    .objects
                    .iter()
                    .map(|o| GtBox {
                        bbox: o.bbox,
                        class: o.name.clone(),
                        difficult: o.difficult,
                        incomplete: o.truncated,
                    })
                    .collect(),
                pred: dets
                    .iter()
                    .map(|d| PredBox {
                        bbox: d.bbox,
                        class: d.label.clone(),
                        score: d.score,
                    })
                    .collect(),
            });
        }
        let report = evaluate(
            &images,
            &EvalConfig {
                iou_thresholds: vec![0.5, 0.7],
                ..EvalConfig::default()
            },
        );
        let ap = |k: usize| report.overall[k].map_all_point.unwrap_or(0.0);
        Ok(ValScore {
            epoch,
            ap50: ap(0),
            ap70: ap(1),
        })
    }

    /// Appends one row to val.csv.
    pub fn log(
        &mut self,
        s: &ValScore,
        iteration: u64,
        mean_loss: Option<f64>,
        seconds: f64,
        best: bool,
    ) -> Result<()> {
        writeln!(
            self.csv,
            "{},{},{},{:.6},{:.6},{},{:.3},{}",
            s.epoch,
            iteration,
            mean_loss.map_or(String::new(), |l| format!("{l:.6}")),
            s.ap50,
            s.ap70,
            self.indices.len(),
            seconds,
            u8::from(best)
        )
        .map_err(|e| Error::io(&self.path, e))
    }
}

/// Scores `model` and times it: `(score, seconds)`.
pub fn timed_score(
    v: &mut Validator,
    model: &FasterRcnn,
    ds: &Dataset,
    epoch: usize,
) -> Result<(ValScore, f64)> {
    let t0 = Instant::now();
    let s = v.score(model, ds, epoch)?;
    Ok((s, t0.elapsed().as_secs_f64()))
}
