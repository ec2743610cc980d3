//! `cryodet train`: train on a LabelImg (Pascal VOC) dataset (see `crate::train::trainer` for
//! the loop, the schedules and the files written to the run directory).
//!
//! ```text
//! cryodet train --data DIR --out RUN [--epochs 10] [--lr 1e-5] [--size 600] ...
//! cryodet train --resume RUN [--epochs N] [--max-iters N]
//! ```

use crate::error::{Error, Result};
use crate::train::data::ScaleOptions;
use crate::train::trainer::{self, Schedule, TrainOptions};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Data set: a directory with images/ and annotations/, or a list file of
    /// `image_path annotation_path` lines.
    #[arg(long, required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// Run directory (created): checkpoints, train.csv, split.json.
    #[arg(long, required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Initial weights: converted ImageNet weights (backbone.* and head.layer4.*; fresh RPN and
    /// predictor), or a complete cryodet model such as weights/default.safetensors to fine-tune
    /// (its predictor is kept when the classes match). Default: He initialization.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Epochs (default 10; with --resume: the saved value unless given).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Adam learning rate (the study's 1e-5).
    #[arg(long, default_value_t = 1e-5)]
    pub lr: f32,
    /// Short side of the network input in pixels (the long side is at most 1000).
    #[arg(long, default_value_t = 600)]
    pub size: usize,
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
    /// No random flips / quarter turns.
    #[arg(long)]
    pub no_augment: bool,
    /// Stop after N iterations in total (saves a checkpoint; --resume continues).
    #[arg(long)]
    pub max_iters: Option<u64>,
    /// RoIs sampled per image for the classifier loss.
    #[arg(long, default_value_t = 512)]
    pub roi_batch: usize,
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
    /// Default: 3 with --init (torchvision's), 5 from scratch.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=5))]
    pub trainable_layers: Option<u8>,
    /// Learning-rate drops, as torchvision's detection reference (`--lr-steps 16 22`, MultiStepLR,
    /// gamma 0.1): `--lr-steps 40,55` trains epochs 1-40 at --lr, 41-55 at lr x gamma and the
    /// rest at lr x gamma^2 (milestones are 0-based epoch indices, as torch's).
    #[arg(long, value_delimiter = ',')]
    pub lr_steps: Option<Vec<usize>>,
    /// Factor of each --lr-steps drop.
    #[arg(long, default_value_t = 0.1)]
    pub lr_gamma: f32,
    /// nm per pixel of the training files that do not record one (MRC header, TIFF resolution
    /// or ImageJ description, PNG pHYs); files of unknown pixel size use --size.
    #[arg(long, value_name = "NM")]
    pub pixel_size: Option<f32>,
    /// nm per pixel of the network input: every image of known pixel size is resampled to it
    /// (recorded in the model as `pixel_size_nm`).
    #[arg(long, value_name = "NM", default_value_t = 2.5)]
    pub model_pixel_size: f32,
    /// RPN anchor sizes in network-input pixels (x ratios 0.5,1,2; recorded in the model).
    #[arg(long, value_delimiter = ',', default_value = "32,64,128,256,512")]
    pub anchor_sizes: Vec<f32>,
    /// Random log-uniform rescale LO,HI of every image at every iteration, after the
    /// pixel-size resampling and before the preprocessing (1,1: none; off with --no-augment).
    #[arg(long, value_delimiter = ',', default_value = "0.5,2")]
    pub scale_range: Vec<f32>,
    /// Random crop of each iteration's input to at most PX on each side.
    #[arg(long, value_name = "PX", default_value_t = 640)]
    pub max_input: usize,
}

pub fn run(args: Args) -> Result<()> {
    crate::nn::gemm::set_threads(args.threads.unwrap_or_else(crate::cli::trace::num_threads));
    if let Some(run) = &args.resume {
        if args.out.as_ref().is_some_and(|o| o != run) {
            return Err(Error::invalid("--out and --resume name different runs"));
        }
        return trainer::resume(run, args.epochs, args.max_iters);
    }
    let (Some(data), Some(out)) = (args.data, args.out) else {
        return Err(Error::invalid("--data and --out are required"));
    };
    let blocks = match args.blocks {
        None => None,
        Some(b) => Some(<[usize; 4]>::try_from(b.as_slice()).map_err(|_| {
            Error::invalid(format!(
                "--blocks needs 4 numbers (layer1..layer4), got {b:?}"
            ))
        })?),
    };
    if args.size < 32 {
        return Err(Error::invalid(format!(
            "--size {} is too small (>= 32)",
            args.size
        )));
    }
    if !(args.lr > 0.0 && args.lr.is_finite()) {
        return Err(Error::invalid(format!("--lr {} must be positive", args.lr)));
    }
    let mut o = TrainOptions::new(data, out);
    o.init = args.init;
    o.epochs = args.epochs.unwrap_or(o.epochs);
    o.lr = args.lr;
    o.size = args.size;
    o.seed = args.seed;
    o.width_div = args.width_div;
    o.blocks = blocks;
    o.beta = args.beta;
    o.schedule = args.schedule;
    o.preprocess = !args.no_preprocess;
    o.augment = !args.no_augment;
    o.max_iters = args.max_iters;
    o.roi_batch = args.roi_batch;
    o.rpn_batch = args.rpn_batch;
    o.classes = args.classes;
    o.manifest = args.manifest;
    o.split_by_group = args.split_by_group;
    o.trainable_layers = args.trainable_layers.map(usize::from);
    if !(args.lr_gamma > 0.0 && args.lr_gamma.is_finite()) {
        return Err(Error::invalid(format!(
            "--lr-gamma {} must be positive",
            args.lr_gamma
        )));
    }
    let mut steps = args.lr_steps.unwrap_or_default();
    steps.sort_unstable();
    o.lr_steps = steps;
    o.lr_gamma = args.lr_gamma;
    o.scale = Some(scale_options(
        args.pixel_size,
        args.model_pixel_size,
        &args.anchor_sizes,
        &args.scale_range,
        args.max_input,
    )?);
    trainer::train(o)
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
