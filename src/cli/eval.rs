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
//!
//! With `--weights W --images IMG_DIR` instead of `--pred`, the detector runs first on the image
//! of every ground-truth file (`crate::pipeline`, keeping scores >= `--keep-thresh`, 0.05) and
//! writes its JSON files to `OUT/detections/`, which are then evaluated.

use crate::error::{Error, Result};
use crate::eval::{self, dataset, EvalConfig};
use crate::io::detections::{write_json, ImageDetections};
use crate::io::image;
use crate::model::FasterRcnn;
use crate::pipeline::{self, PipelineConfig};
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    /// Output directory for metrics.json, report.md, pr_curve.png, ap_vs_iou.png, overlays/
    /// (and detections/ in --weights mode).
    #[arg(long, default_value = "eval_out")]
    pub out: PathBuf,
    // --weights mode: how the images become the network input, as in `detect`.
    #[command(flatten)]
    pub scale: super::InputScaleArgs,
    /// --weights mode: detections with a lower score are not kept (low, so AP sees the whole
    /// precision-recall curve; torchvision's box_score_thresh is 0.05).
    #[arg(long, default_value_t = 0.05)]
    pub keep_thresh: f32,
    /// --weights mode: the network's arithmetic, as `detect --precision`.
    #[arg(long, value_enum, default_value_t = super::detect::PrecisionArg::F32)]
    pub precision: super::detect::PrecisionArg,
}

fn check_config(args: &Args) -> Result<EvalConfig> {
    EvalConfig {
        iou_thresholds: args.iou.clone(),
        score_threshold: args.score_thresh,
        table_iou: args.table_iou,
        coco_max_dets: args.coco_max_dets,
        voc_plus_one: args.voc_plus_one,
    }
    .checked()
}

/// --weights mode: runs the detector (`crate::pipeline`) on the image of every ground-truth
/// file and writes `<det_dir>/<stem>.json`, as `cryodet detect` would.
fn detect_all(weights: &Path, args: &Args, img_dir: &Path, det_dir: &Path) -> Result<()> {
    crate::nn::gemm::set_threads(crate::nn::gemm::num_threads());
    super::detect::apply_precision(args.precision);
    let model = FasterRcnn::load(weights)?;
    let mut cfg = PipelineConfig::for_model(
        &model,
        args.scale.size,
        args.scale.max_size,
        args.scale.no_preprocess,
        Some(args.keep_thresh),
    );
    cfg.pixel_size = crate::pipeline::check_pixel_size(args.scale.pixel_size)?;
    cfg.max_input = crate::pipeline::check_max_input(args.scale.max_input)?;
    std::fs::create_dir_all(det_dir).map_err(|e| Error::io(det_dir, e))?;
    let stems = dataset::gt_stems(&args.gt)?;
    let t0 = Instant::now();
    for (k, stem) in stems.iter().enumerate() {
        let path = dataset::find_image(img_dir, stem).ok_or_else(|| {
            Error::invalid(format!(
                "{}: no image {stem}.png/.tif/.tiff/.jpg/.jpeg for ground truth {stem}.xml",
                img_dir.display()
            ))
        })?;
        image::check_single_image(&path, "eval")?;
        let (raw, _) = image::check_finite(&path, image::read_gray(&path)?, false)?;
        let (h, w) = raw.dim();
        let pixel = cfg.pixel_size_of(&path)?;
        let (dets, prepared) = pipeline::detect_raw_at(&model, &raw, &cfg, pixel)?;
        eprintln!(
            "[{}/{}] {}: {}; {} detection(s)",
            k + 1,
            stems.len(),
            path.display(),
            prepared.scale.note,
            dets.len()
        );
        let record = ImageDetections {
            precision: Some(crate::nn::gemm::precision().name().into()),
            image: path.display().to_string(),
            width: w as u32,
            height: h as u32,
            detections: dets,
        };
        write_json(det_dir.join(format!("{stem}.json")), &record)?;
    }
    eprintln!(
        "detected {} image(s) in {:.1} s",
        stems.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    let cfg = check_config(&args)?;
    let pred_dir = match (&args.pred, &args.weights) {
        (Some(p), _) => p.clone(),
        (None, Some(w)) => {
            let img_dir = args.images.as_deref().ok_or_else(|| {
                Error::invalid("--weights needs --images IMG_DIR (the images to detect on)")
            })?;
            let det_dir = args.out.join("detections");
            detect_all(w, &args, img_dir, &det_dir)?;
            det_dir
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
