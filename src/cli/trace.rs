//! `cryodet trace`: run one forward pass on a given, already normalized input tensor and dump
//! every intermediate tensor under torchvision-comparable names (see `tools/compare_trace.py`).
//!
//! Input: a safetensors file with one f32 tensor `input` `[1, 3, H, W]` (any H, W; no resizing).
//! Output: `backbone.stem`, `backbone.layer1..3`, `rpn.cls_logits`, `rpn.bbox_pred`,
//! `rpn.proposals`, `roi_pool`, `head.pooled`, `head.cls_score`, `head.bbox_pred`,
//! `detections.boxes`, `detections.scores`, `detections.labels` (f32).

use crate::error::{Error, Result};
use crate::io::weights::{save, Precision, WeightFile};
use crate::model::{FasterRcnn, Trace};
use ndarray::{Array4, ArrayD, Ix4};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub run: ReferenceArgs,
}

/// The options of the commands that compare one pass with torchvision (`trace`, `grad`).
#[derive(clap::Args, Debug)]
pub struct ReferenceArgs {
    /// Weight file (safetensors, torchvision names).
    #[arg(long)]
    pub weights: PathBuf,
    /// safetensors file holding `input` [1, 3, H, W] (for `grad` also `boxes` [G, 4] and
    /// `labels` [G]).
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the tensors (safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Threads for GEMM and rayon (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl ReferenceArgs {
    /// Sets the threads, loads the model and the input `[3, 1, H, W]`.
    pub fn start(&self) -> Result<(FasterRcnn, Array4<f32>)> {
        crate::nn::gemm::set_threads(self.threads.unwrap_or_else(crate::nn::gemm::num_threads));
        Ok((FasterRcnn::load(&self.weights)?, read_input(&self.input)?))
    }

    /// Writes `tensors` under their names to `--out` (f32, no metadata).
    pub fn write(&self, tensors: &[(String, ArrayD<f32>)]) -> Result<()> {
        let views: Vec<_> = tensors.iter().map(|(n, t)| (n.clone(), t.view())).collect();
        save(&self.out, &views, &HashMap::new(), Precision::F32)
    }
}

/// Reads `input` `[1, 3, H, W]` and returns it as CNHW `[3, 1, H, W]` (same memory).
pub fn read_input(path: &std::path::Path) -> Result<Array4<f32>> {
    let mut wf = WeightFile::load(path)?;
    let t = wf
        .take("input", 4)
        .map_err(|_| Error::format(path, "expected a tensor `input` of shape [1, 3, H, W]"))?;
    let t = t.into_dimensionality::<Ix4>().expect("checked");
    let (n, c, h, w) = t.dim();
    if n != 1 || c != 3 || h == 0 || w == 0 {
        return Err(Error::format(
            path,
            format!(
                "tensor `input` has shape {:?}, expected [1, 3, H, W]",
                t.shape()
            ),
        ));
    }
    Ok(t.into_shape_with_order((3, 1, h, w)).expect("contiguous"))
}

pub fn run(args: Args) -> Result<()> {
    let (model, x) = args.run.start()?;
    let mut trace = Trace::default();
    let t0 = std::time::Instant::now();
    let dets = model.forward(&x, Some(&mut trace));
    eprintln!(
        "trace: {} tensors, {} proposals, {} detections, {:.2} s",
        trace.tensors.len(),
        trace
            .tensors
            .iter()
            .find(|(n, _)| n == "rpn.proposals")
            .map_or(0, |(_, t)| t.shape()[0]),
        dets.len(),
        t0.elapsed().as_secs_f64()
    );
    args.run.write(&trace.tensors)
}
