//! `cryodet eval`: AP at IoU 0.5..0.9, precision, recall, F1, mIoU, per-tomogram tables and plots.
//!
//! ```text
//! cryodet eval --gt GT_DIR --pred PRED_DIR [--images IMG_DIR] [--iou 0.5,0.6,0.7,0.8,0.9]
//!              [--groups MANIFEST] [--score-thresh 0.5] [--table-iou 0.7] [--out DIR]
//! ```
//! GT_DIR holds LabelImg (Pascal VOC) XML files, PRED_DIR the JSON files `cryodet detect` writes,
//! matched by file stem (`GT_DIR/x.xml` <-> `PRED_DIR/x.json`). Groups (tomograms) come from the
//! manifest (`image,group` lines) or, without one, from the file-name prefix before the last `_`.
//! See `crate::eval` for every definition and `crate::eval::dataset` for the file rules.

use crate::error::{Error, Result};
use crate::eval::{self, dataset, EvalConfig};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["pred", "weights"])))]
pub struct Args {
    /// Directory of LabelImg / Pascal VOC XML ground truth (one file per image).
    #[arg(long, value_name = "GT_DIR")]
    pub gt: PathBuf,
    /// Directory of detection JSON files from `cryodet detect` (`<image stem>.json`).
    #[arg(long, value_name = "PRED_DIR")]
    pub pred: Option<PathBuf>,
    /// Run the detector with these weights first (instead of --pred).
    #[arg(long, value_name = "WEIGHTS")]
    pub weights: Option<PathBuf>,
    /// Directory of the images (`<stem>.png|tif|tiff|jpg|jpeg`): enables overlays of the
    /// lowest-F1 images (and is where --weights mode reads its input).
    #[arg(long, value_name = "IMG_DIR")]
    pub images: Option<PathBuf>,
    /// IoU thresholds for AP and the precision-recall curves, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.6,0.7,0.8,0.9")]
    pub iou: Vec<f64>,
    /// Image -> group manifest: `image,group` (or tab-separated) lines; default: the file-name
    /// prefix before the last `_` (e.g. `Unstim_20k_mito1_063` -> `Unstim_20k_mito1`).
    #[arg(long, value_name = "MANIFEST")]
    pub groups: Option<PathBuf>,
    /// Detections with score >= this count for precision, recall, F1 and mIoU.
    #[arg(long, default_value_t = 0.5)]
    pub score_thresh: f64,
    /// IoU threshold of the per-group (tomogram) and per-image tables (the study uses 0.7).
    #[arg(long, default_value_t = 0.7)]
    pub table_iou: f64,
    /// Detections kept per image and class for the COCO 101-point AP (pycocotools maxDets).
    #[arg(long, default_value_t = 100)]
    pub coco_max_dets: usize,
    /// Compute IoU with the VOC devkit's +1 pixel widths (for inclusive integer boxes).
    #[arg(long)]
    pub voc_plus_one: bool,
    /// Output directory for metrics.json, report.md, pr_curve.png, ap_vs_iou.png, overlays/.
    #[arg(long, default_value = "eval_out")]
    pub out: PathBuf,
}

fn check_config(args: &Args) -> Result<EvalConfig> {
    if args.iou.is_empty() {
        return Err(Error::invalid("--iou: give at least one threshold"));
    }
    for &t in args.iou.iter().chain([args.table_iou].iter()) {
        if !(t > 0.0 && t <= 1.0) {
            return Err(Error::invalid(format!(
                "IoU threshold {t} is not in (0, 1]"
            )));
        }
    }
    if !args.score_thresh.is_finite() {
        return Err(Error::invalid("--score-thresh must be a finite number"));
    }
    if args.coco_max_dets == 0 {
        return Err(Error::invalid("--coco-max-dets must be at least 1"));
    }
    Ok(EvalConfig {
        iou_thresholds: args.iou.clone(),
        score_threshold: args.score_thresh,
        table_iou: args.table_iou,
        coco_max_dets: args.coco_max_dets,
        voc_plus_one: args.voc_plus_one,
    })
}

pub fn run(args: Args) -> Result<()> {
    let cfg = check_config(&args)?;
    let pred_dir = match (&args.pred, &args.weights) {
        (Some(p), _) => p.clone(),
        // INTEGRATION POINT: run the detector on every `--images` file here (write one
        // `<stem>.json` per image with `crate::io::detections::write_json` into
        // `args.out.join("detections")`), then evaluate that directory like --pred.
        (None, Some(w)) => {
            return Err(Error::invalid(format!(
                "--weights {} : running the detector from `eval` is not wired yet; \
                 run `cryodet detect` and pass its output directory with --pred",
                w.display()
            )))
        }
        (None, None) => return Err(Error::invalid("give --pred PRED_DIR or --weights W")),
    };
    let (images, notes) = dataset::load_dataset(&args.gt, &pred_dir, args.groups.as_deref())?;
    if !notes.unmatched_predictions.is_empty() {
        eprintln!(
            "note: {} detection file(s) in {} have no ground truth and were skipped (first: {})",
            notes.unmatched_predictions.len(),
            pred_dir.display(),
            notes.unmatched_predictions[0].display()
        );
    }
    let report = eval::evaluate(&images, &cfg);
    eval::write_report(&args.out, &report, &images, args.images.as_deref())?;

    println!(
        "{} images, classes: {}",
        report.n_images,
        report.classes.join(", ")
    );
    println!(
        "IoU   mAP(all-pt)  mAP(COCO)  P      R      F1     mIoU   (score >= {})",
        cfg.score_threshold
    );
    let f = |v: Option<f64>| v.map_or("  -  ".to_string(), |v| format!("{v:.3}"));
    for o in &report.overall {
        let p = &o.pooled;
        println!(
            "{:.2}  {}        {}      {:.3}  {:.3}  {:.3}  {}",
            o.iou_threshold,
            f(o.map_all_point),
            f(o.map_coco101),
            p.precision,
            p.recall,
            p.f1,
            f(p.miou)
        );
    }
    println!("report: {}", args.out.join("report.md").display());
    Ok(())
}
