//! `cryodet grad`: losses and gradients of one image, to compare with torch autograd
//! (`tools/torch_grad.py --compare`).
//!
//! Input: a safetensors file with `input` `[1, 3, H, W]` (normalized), `boxes` `[G, 4]`
//! (x1, y1, x2, y2 in input pixels) and `labels` `[G]` (1..K-1).
//! Output: scalars `loss_objectness`, `loss_rpn_box_reg`, `loss_classifier`, `loss_box_reg`
//! (shape `[1]`) and `grad.<weight name>` for every trained weight.

use crate::error::{Error, Result};
use crate::io::weights::WeightFile;
use crate::train::grad::{loss_and_grads, Losses, Phase, Sampling, TrainConfig};
use ndarray::{Array1, Array2, ArrayD, Ix2};
use rand::SeedableRng;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {
    // --weights, --input (`input`, `boxes`, `labels`), --out (losses and gradients), --threads.
    #[command(flatten)]
    pub run: super::trace::ReferenceArgs,
    /// `all`: every labelled anchor / RoI (deterministic, as tools/torch_grad.py); `random`:
    /// torchvision's sampler (256 anchors, 512 RoIs).
    #[arg(long, default_value = "all")]
    pub sampling: String,
    /// Seed of the sampler (random sampling).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// smooth-L1 beta (torchvision 1/9; the study's Eq. 4: 1).
    #[arg(long, default_value_t = 1.0 / 9.0)]
    pub beta: f32,
    /// torchvision's trainable_backbone_layers (0..=5).
    #[arg(long, default_value_t = 3)]
    pub trainable_layers: usize,
    /// RPN proposals kept before NMS (training default 12000).
    #[arg(long, default_value_t = 12000)]
    pub pre_nms_top_n: usize,
    /// RPN proposals kept after NMS (training default 2000).
    #[arg(long, default_value_t = 2000)]
    pub post_nms_top_n: usize,
}

/// Reads `boxes` `[G, 4]` and `labels` `[G]` (values 1..K-1) from the input file.
pub fn read_targets(path: &Path, num_classes: usize) -> Result<(Array2<f32>, Vec<usize>)> {
    let mut wf = WeightFile::load(path)?;
    let boxes = wf
        .take("boxes", 2)
        .map_err(|_| Error::format(path, "expected a tensor `boxes` of shape [G, 4]"))?
        .into_dimensionality::<Ix2>()
        .expect("checked");
    if boxes.ncols() != 4 {
        return Err(Error::format(
            path,
            format!("`boxes` has shape {:?}, expected [G, 4]", boxes.shape()),
        ));
    }
    if boxes.iter().any(|v| !v.is_finite()) {
        return Err(Error::format(path, "`boxes` holds a non-finite value"));
    }
    if let Some(i) = boxes
        .outer_iter()
        .position(|b| b[2] <= b[0] || b[3] <= b[1])
    {
        return Err(Error::format(
            path,
            format!(
                "box {i} {:?} has no area (need x2 > x1 and y2 > y1)",
                boxes.row(i).to_vec()
            ),
        ));
    }
    let labels = wf
        .take("labels", 1)
        .map_err(|_| Error::format(path, "expected a tensor `labels` of shape [G]"))?;
    if labels.len() != boxes.nrows() {
        return Err(Error::format(
            path,
            format!("{} labels for {} boxes", labels.len(), boxes.nrows()),
        ));
    }
    let labels = labels
        .iter()
        .map(|&l| {
            if l >= 1.0 && (l as usize) < num_classes && l.fract() == 0.0 {
                Ok(l as usize)
            } else {
                Err(Error::format(
                    path,
                    format!("label {l} is not a class in 1..{}", num_classes - 1),
                ))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((boxes, labels))
}

pub fn run(args: Args) -> Result<()> {
    let (model, x) = args.run.start()?;
    let (boxes, labels) = read_targets(&args.run.input, model.num_classes())?;
    let sampling = match args.sampling.as_str() {
        "all" => Sampling::All,
        "random" => Sampling::Random,
        s => {
            return Err(Error::invalid(format!(
                "--sampling {s:?}: expected `all` or `random`"
            )))
        }
    };
    if args.trainable_layers > 5 {
        return Err(Error::invalid("--trainable-layers must be in 0..=5"));
    }
    let mut cfg = TrainConfig {
        sampling,
        beta: args.beta,
        trainable_layers: args.trainable_layers,
        phase: Phase::Joint,
        ..TrainConfig::default()
    };
    cfg.proposals.pre_nms_top_n = args.pre_nms_top_n;
    cfg.proposals.post_nms_top_n = args.post_nms_top_n;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    let t0 = std::time::Instant::now();
    let (losses, grads) = loss_and_grads(&model, &x, boxes.view(), &labels, &cfg, &mut rng);
    eprintln!(
        "grad: objectness {:.6} rpn_box_reg {:.6} classifier {:.6} box_reg {:.6}; {} gradients; {:.2} s",
        losses.objectness,
        losses.rpn_box_reg,
        losses.classifier,
        losses.box_reg,
        grads.len(),
        t0.elapsed().as_secs_f64()
    );
    let mut out: Vec<(String, ArrayD<f32>)> = Losses::NAMES
        .iter()
        .zip(losses.values())
        .map(|(n, v)| (n.to_string(), Array1::from(vec![v]).into_dyn()))
        .collect();
    out.extend(grads.into_iter().map(|(n, g)| (format!("grad.{n}"), g)));
    args.run.write(&out)
}
