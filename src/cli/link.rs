//! `cryodet link`: link the per-slice detections of a stack (`NAME.json` written by
//! `cryodet detect STACK.mrc`) into 3D objects again, with other linking parameters and without
//! running the detector: `NAME.objects.json`, `NAME.objects.csv`, `NAME.objects.txt` in `--out`
//! (no point file, with a note, when there is no object: IMOD cannot read an empty one; a point
//! file of an earlier run is then removed, so none is left stale).
//!
//! [`LinkArgs`] are the linking options shared with `cryodet detect --3d`.

use crate::error::{Error, Result};
use crate::io::detections::read_stack_detections;
use crate::volume::{self, slice_boxes, LinkConfig};
use std::path::PathBuf;

/// The 3D linking options (`crate::volume::link` documents each rule; defaults
/// [`LinkConfig::for_stacks`]).
#[derive(clap::Args, Debug, Clone)]
pub struct LinkArgs {
    /// 3D linking: minimum IoU between boxes of consecutive detected slices.
    #[arg(long, default_value_t = LinkConfig::for_stacks().iou_threshold)]
    pub link_iou: f32,
    /// 3D linking: detected slices a track may skip.
    #[arg(long, default_value_t = LinkConfig::for_stacks().max_gap)]
    pub max_gap: usize,
    /// 3D linking: objects on fewer detected slices are dropped.
    #[arg(long, default_value_t = LinkConfig::for_stacks().min_slices)]
    pub min_slices: usize,
    /// 3D linking: a box lying this much inside a larger box of its class on the same slice is a
    /// fragment and is dropped (above 1: keep all).
    #[arg(long, default_value_t = LinkConfig::for_stacks().fragment_overlap)]
    pub fragment_overlap: f32,
    /// 3D linking: running-median window along an object before its 3D box is taken (0/1: raw).
    #[arg(long, default_value_t = LinkConfig::for_stacks().smooth_window)]
    pub smooth: usize,
    /// 3D linking: pieces of one object whose xy footprints overlap this much (IoU) are merged
    /// (above 1: never).
    #[arg(long, default_value_t = LinkConfig::for_stacks().merge_iou)]
    pub merge_iou: f32,
    /// 3D linking: ... when at most this many detected slices lie between them.
    #[arg(long, default_value_t = LinkConfig::for_stacks().merge_max_gap)]
    pub merge_gap: usize,
}

impl LinkArgs {
    /// The checked configuration for detection on every `stride`-th slice.
    pub fn config(&self, stride: usize) -> Result<LinkConfig> {
        LinkConfig {
            iou_threshold: self.link_iou,
            max_gap: self.max_gap,
            min_slices: self.min_slices,
            stride,
            fragment_overlap: self.fragment_overlap,
            smooth_window: self.smooth,
            merge_iou: self.merge_iou,
            merge_max_gap: self.merge_gap,
        }
        .checked()
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A stack's per-slice detections, NAME.json from `cryodet detect STACK.mrc`.
    pub detections: PathBuf,
    /// Output directory.
    #[arg(long, default_value = "objects")]
    pub out: PathBuf,
    /// Detection ran on every K-th slice (default: the greatest common divisor of the
    /// differences between the file's slice numbers, i.e. what `detect --stride` used).
    #[arg(long)]
    pub stride: Option<usize>,
    #[command(flatten)]
    pub link: LinkArgs,
}

/// The stride `detect --stride` used: gcd of the differences between sorted slice numbers (1 when
/// there are fewer than two slices).
pub fn infer_stride(zs: &[usize]) -> usize {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let mut zs = zs.to_vec();
    zs.sort_unstable();
    zs.dedup();
    zs.windows(2).fold(0, |g, w| gcd(g, w[1] - w[0])).max(1)
}

pub fn run(args: Args) -> Result<()> {
    let stack = read_stack_detections(&args.detections)?;
    let stride = match args.stride {
        Some(s) => s,
        None => infer_stride(&stack.slices.iter().map(|s| s.z).collect::<Vec<_>>()),
    };
    let cfg = args.link.config(stride)?;
    // Class names as the detections name them (index = class_id; 0 is background). Ids beyond
    // MAX_NAMED keep the writers' fallback name `class_N` (no table of a billion names for a
    // hand-edited file).
    const MAX_NAMED: usize = 1 << 16;
    let mut classes: Vec<String> = vec!["__background__".into()];
    for d in stack.slices.iter().flat_map(|s| &s.detections) {
        if d.class_id > MAX_NAMED {
            continue;
        }
        if d.class_id >= classes.len() {
            classes.resize(d.class_id + 1, String::new());
        }
        if classes[d.class_id].is_empty() {
            classes[d.class_id] = d.label.clone();
        }
    }
    let objects = volume::link_slices(&slice_boxes(&stack), &cfg);
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let name = args
        .detections
        .file_stem()
        .map_or_else(|| "stack".into(), |s| s.to_string_lossy().into_owned());
    let out = |ext: &str| args.out.join(format!("{name}.{ext}"));
    volume::write_objects_json(&out("objects.json"), &objects, &classes)?;
    volume::write_objects_csv(&out("objects.csv"), &objects, &classes)?;
    let points = out("objects.txt");
    if objects.is_empty() {
        eprintln!("{}", volume::no_points_note(&points));
        if points.is_file() {
            std::fs::remove_file(&points).map_err(|e| Error::io(&points, e))?;
            eprintln!("  note: removed {} of an earlier run", points.display());
        }
    } else {
        volume::write_imod_points(&points, &objects)?;
    }
    println!(
        "{}: {} slice(s) (stride {stride}), {} 3D object(s) -> {}",
        args.detections.display(),
        stack.slices.len(),
        objects.len(),
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::infer_stride;

    #[test]
    fn stride_is_the_gcd_of_slice_steps() {
        assert_eq!(infer_stride(&[]), 1);
        assert_eq!(infer_stride(&[7]), 1);
        assert_eq!(infer_stride(&[0, 1, 2]), 1);
        assert_eq!(infer_stride(&[12, 0, 4, 8]), 4);
        assert_eq!(infer_stride(&[3, 9, 15, 27]), 6);
        assert_eq!(infer_stride(&[5, 5, 8]), 3);
    }
}
