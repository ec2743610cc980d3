//! `cryodet train`: train on a LabelImg (Pascal VOC) dataset (see `crate::train::trainer` for
//! the loop, the schedules and the files written to the run directory).
//!
//! ```text
//! cryodet train --data DIR --out RUN [--epochs 10] [--lr 1e-5] [--size 600] ...
//! cryodet train --data DIR --init MODEL --out RUN      (MODEL complete: the fine-tuning recipe)
//! cryodet train --resume RUN [--epochs N] [--max-iters N]
//! ```
//! When `--init` is a complete cryodet model (RPN and predictor), the fine-tuning recipe of
//! `crate::train::finetune` chooses every option that is not given; the options whose choice
//! depends on it are `Option`s here, so that "not given" is known. Otherwise the defaults in
//! the option help apply.

use crate::error::{Error, Result};
use crate::train::data::ScaleOptions;
use crate::train::finetune::{self, BaseModel, Given, Select};
use crate::train::trainer::{self, BnMode, Schedule, TrainOptions};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Data set: a directory with images/ and annotations/, or a list file of
    /// `image_path annotation_path` lines. Objects marked `<difficult>1` are ignored: anchors
    /// and RoIs on them are neither foreground nor background.
    #[arg(long, required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// Run directory (created): checkpoints, train.csv, split.json.
    #[arg(long, required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Initial weights: converted ImageNet weights (backbone.* and head.layer4.*; fresh RPN and
    /// predictor), or a complete cryodet model such as weights/default.safetensors to fine-tune
    /// with the fine-tuning recipe, which chooses every option not given (its predictor is kept
    /// when the classes match). Default: He initialization.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Epochs (default 10; fine-tuning: clamp(round(800 / training images), 8, 60); with
    /// --resume: the saved value unless given).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Adam learning rate (default the study's 1e-5; fine-tuning 1e-4).
    #[arg(long)]
    pub lr: Option<f32>,
    /// Short side of the network input in pixels for files of unknown pixel size (the long side
    /// is at most 1000; default 600; fine-tuning: the model's `min_size`).
    #[arg(long)]
    pub size: Option<usize>,
    /// Seed of the split, the initialization, the image order, augmentation and sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Divide every width of the He-initialized network by D (1 = ResNet-50).
    #[arg(long, default_value_t = 1)]
    pub width_div: usize,
    /// Blocks of layer1..layer4, e.g. 1,1,1,1 (default 3,4,6,3).
    #[arg(long, value_delimiter = ',')]
    pub blocks: Option<Vec<usize>>,
    /// Smooth-L1 beta (torchvision's 1/9; the study's Eq. 4 is beta = 1).
    #[arg(long, default_value_t = 1.0 / 9.0)]
    pub beta: f32,
    /// joint (all losses together) or alternating (the study's: RPN first, then classifier).
    #[arg(long, value_enum, default_value_t = Schedule::Joint)]
    pub schedule: Schedule,
    /// Continue the run in RUN from its last checkpoint (all other options come from
    /// RUN/options.json, except --epochs, --max-iters and --threads).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Skip the study's preprocessing (bilateral filter + histogram equalization).
    #[arg(long)]
    pub no_preprocess: bool,
    /// No augmentation (random flips, quarter turns, rescale, blur, noise).
    #[arg(long)]
    pub no_augment: bool,
    /// Stop after N iterations in total (saves a checkpoint; --resume continues).
    #[arg(long)]
    pub max_iters: Option<u64>,
    /// RoIs sampled per image for the classifier loss (default 512; fine-tuning 128).
    #[arg(long)]
    pub roi_batch: Option<usize>,
    /// Anchors sampled per image for the RPN loss.
    #[arg(long, default_value_t = 256)]
    pub rpn_batch: usize,
    /// Class names (comma-separated, without the background); default: from the annotations.
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
    /// Group manifest CSV (image,group); default DATA/manifest.csv if present.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Split by group (tomogram) instead of by image.
    #[arg(long)]
    pub split_by_group: bool,
    /// Backbone stages trained, from the top: layer4, layer3, layer2, layer1, conv1 (0..=5).
    /// Default: 3 with --init (torchvision's), 5 from scratch; fine-tuning: 3 (stem and layer1
    /// frozen) below 50 training images, else 4.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=5))]
    pub trainable_layers: Option<u8>,
    /// Learning-rate drops, as torchvision's detection reference (`--lr-steps 16 22`, MultiStepLR,
    /// gamma 0.1): `--lr-steps 40,55` trains epochs 1-40 at --lr, 41-55 at lr x gamma and the
    /// rest at lr x gamma^2 (milestones are 0-based epoch indices, as torch's). Default none;
    /// fine-tuning: one drop for the last round(epochs / 4) epochs.
    #[arg(long, value_delimiter = ',')]
    pub lr_steps: Option<Vec<usize>>,
    /// Factor of each --lr-steps drop (default 0.1).
    #[arg(long)]
    pub lr_gamma: Option<f32>,
    /// nm per pixel of the training files that do not record one (MRC header, TIFF resolution
    /// or ImageJ description, PNG pHYs); files of unknown pixel size use --size.
    #[arg(long, value_name = "NM")]
    pub pixel_size: Option<f32>,
    /// nm per pixel of the network input: every image of known pixel size is resampled to it
    /// (recorded in the model as `pixel_size_nm`; default 2.5; fine-tuning: the model's).
    #[arg(long, value_name = "NM")]
    pub model_pixel_size: Option<f32>,
    /// RPN anchor sizes in network-input pixels (x ratios 0.5,1,2; recorded in the model;
    /// default 32,64,128,256,512; fine-tuning: the model's).
    #[arg(long, value_delimiter = ',')]
    pub anchor_sizes: Option<Vec<f32>>,
    /// Random log-uniform rescale LO,HI of every image at every iteration, after the
    /// pixel-size resampling and before the preprocessing (1,1: none; off with --no-augment;
    /// default 0.5,2; fine-tuning 0.8,1.25).
    #[arg(long, value_delimiter = ',')]
    pub scale_range: Option<Vec<f32>>,
    /// Random crop of each iteration's input to at most PX on each side (default 640).
    #[arg(long, value_name = "PX")]
    pub max_input: Option<usize>,
    /// How best.safetensors is chosen: loss (lowest mean training loss, the study's; default)
    /// or val-ap (best AP at IoU 0.5 on the validation split after every epoch, the starting
    /// weights counting as epoch 0; the fine-tuning default). Scores go to RUN/val.csv.
    #[arg(long, value_enum)]
    pub select: Option<Select>,
    /// Batch norms: frozen (torchvision's FrozenBatchNorm2d; default) or affine (their gamma and
    /// beta train with the stages they belong to; the statistics stay fixed). A network
    /// He-initialized by `train` has no other bias in its backbone and layer4.
    #[arg(long, value_enum)]
    pub bn: Option<BnMode>,
}

pub fn run(args: Args) -> Result<()> {
    crate::nn::gemm::set_threads(args.threads.unwrap_or_else(crate::nn::gemm::num_threads));
    if let Some(run) = &args.resume {
        if args.out.as_ref().is_some_and(|o| o != run) {
            return Err(Error::invalid("--out and --resume name different runs"));
        }
        return trainer::resume(run, args.epochs, args.max_iters);
    }
    let (Some(data), Some(out)) = (args.data.clone(), args.out.clone()) else {
        return Err(Error::invalid("--data and --out are required"));
    };
    let blocks = match &args.blocks {
        None => None,
        Some(b) => Some(<[usize; 4]>::try_from(b.as_slice()).map_err(|_| {
            Error::invalid(format!(
                "--blocks needs 4 numbers (layer1..layer4), got {b:?}"
            ))
        })?),
    };
    let given = given(&args)?;
    let mut o = TrainOptions::new(data, out);
    o.init = args.init;
    o.seed = args.seed;
    o.width_div = args.width_div;
    o.blocks = blocks;
    o.beta = args.beta;
    o.schedule = args.schedule;
    o.max_iters = args.max_iters;
    o.rpn_batch = args.rpn_batch;
    o.classes = args.classes;
    o.manifest = args.manifest;
    o.split_by_group = args.split_by_group;
    let base = match &o.init {
        Some(p) => BaseModel::read(p)?,
        None => None,
    };
    if let Some(base) = base {
        return finetune::train(o, &base, &given);
    }
    // From scratch or from ImageNet weights: the defaults of the option help.
    o.epochs = given.epochs.unwrap_or(o.epochs);
    o.lr = given.lr.unwrap_or(o.lr);
    o.size = given.size.unwrap_or(o.size);
    o.preprocess = !given.no_preprocess;
    o.augment = !given.no_augment;
    o.roi_batch = given.roi_batch.unwrap_or(o.roi_batch);
    o.trainable_layers = given.trainable_layers;
    o.lr_steps = given.lr_steps.unwrap_or_default();
    o.lr_gamma = given.lr_gamma.unwrap_or(o.lr_gamma);
    let d = ScaleOptions::default();
    o.scale = Some(ScaleOptions {
        model_pixel_size: given.model_pixel_size.unwrap_or(d.model_pixel_size),
        pixel_size: given.pixel_size,
        anchor_sizes: given.anchor_sizes.unwrap_or(d.anchor_sizes),
        scale_range: given.scale_range.unwrap_or(d.scale_range),
        max_input: given.max_input.unwrap_or(d.max_input),
    });
    o.select = given.select.unwrap_or(Select::Loss);
    o.bn = given.bn.unwrap_or_default();
    trainer::train(o)
}

/// The options the user gave, checked (one-line errors naming the option).
fn given(args: &Args) -> Result<Given> {
    if let Some(size) = args.size.filter(|&s| s < 32) {
        return Err(Error::invalid(format!(
            "--size {size} is too small (>= 32)"
        )));
    }
    if let Some(lr) = args.lr.filter(|lr| !(*lr > 0.0 && lr.is_finite())) {
        return Err(Error::invalid(format!("--lr {lr} must be positive")));
    }
    if let Some(g) = args.lr_gamma.filter(|g| !(*g > 0.0 && g.is_finite())) {
        return Err(Error::invalid(format!("--lr-gamma {g} must be positive")));
    }
    if args.epochs == Some(0) {
        return Err(Error::invalid("--epochs must be at least 1"));
    }
    let d = ScaleOptions::default();
    // Checks the given values (the defaults are valid).
    let sc = scale_options(
        args.pixel_size,
        args.model_pixel_size.unwrap_or(d.model_pixel_size),
        args.anchor_sizes.as_deref().unwrap_or(&d.anchor_sizes),
        args.scale_range.as_deref().unwrap_or(&d.scale_range),
        args.max_input.unwrap_or(d.max_input),
    )?;
    let lr_steps = args.lr_steps.clone().map(|mut s| {
        s.sort_unstable();
        s
    });
    Ok(Given {
        epochs: args.epochs,
        lr: args.lr,
        lr_steps,
        lr_gamma: args.lr_gamma,
        trainable_layers: args.trainable_layers.map(usize::from),
        size: args.size,
        roi_batch: args.roi_batch,
        pixel_size: sc.pixel_size,
        model_pixel_size: args.model_pixel_size,
        anchor_sizes: args.anchor_sizes.clone(),
        scale_range: args.scale_range.as_ref().map(|_| sc.scale_range),
        max_input: args.max_input,
        no_augment: args.no_augment,
        no_preprocess: args.no_preprocess,
        select: args.select,
        bn: args.bn,
    })
}

/// Checks the physical-scale options (one-line errors naming the option).
pub fn scale_options(
    pixel_size: Option<f32>,
    model_pixel_size: f32,
    anchor_sizes: &[f32],
    scale_range: &[f32],
    max_input: usize,
) -> Result<ScaleOptions> {
    let pixel_size = crate::pipeline::check_pixel_size(pixel_size)?;
    crate::pipeline::check_pixel_size(Some(model_pixel_size)).map_err(|_| {
        Error::invalid(format!(
            "--model-pixel-size {model_pixel_size}: expected nm per pixel in 0.01..=10000"
        ))
    })?;
    if anchor_sizes.is_empty() || anchor_sizes.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(Error::invalid(format!(
            "--anchor-sizes {anchor_sizes:?}: give positive sizes in pixels, e.g. 32,64,128,256,512"
        )));
    }
    let range: [f32; 2] = match scale_range {
        [lo, hi] if lo.is_finite() && hi.is_finite() && *lo > 0.0 && lo <= hi => [*lo, *hi],
        _ => {
            return Err(Error::invalid(format!(
                "--scale-range {scale_range:?}: expected LO,HI with 0 < LO <= HI, e.g. 0.5,2"
            )))
        }
    };
    if max_input < 32 {
        return Err(Error::invalid(format!(
            "--max-input {max_input}: must be at least 32 px"
        )));
    }
    Ok(ScaleOptions {
        model_pixel_size,
        pixel_size,
        anchor_sizes: anchor_sizes.to_vec(),
        scale_range: range,
        max_input,
    })
}
