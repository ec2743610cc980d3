//! Writing an [`EvalReport`]: `metrics.json` (every number), `report.md` (tables),
//! `pr_curve.png` (the pooled precision-recall curve at each IoU threshold, the study's Fig. 6b),
//! `ap_vs_iou.png` (mAP against the IoU threshold, Fig. 6a), and `overlays/<image>.png` for the
//! images with the lowest F1 (ground truth red, detections with score >= the score threshold
//! blue with their scores), when the image files can be found.

use super::{EvalReport, ImageEval, Summary};
use crate::draw::{self, line_plot, PlotSpec, Series, PALETTE};
use crate::error::{Error, Result};
use std::fmt::Write as _;
use std::path::Path;

pub use crate::draw::{GT_COLOR, PRED_COLOR};
/// How many lowest-F1 images get an overlay.
pub const N_OVERLAYS: usize = 6;

fn fmt(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.3}"))
}

fn save_png(img: &image::RgbImage, path: &Path) -> Result<()> {
    img.save(path)
        .map_err(|e| Error::format(path, format!("cannot write PNG: {e}")))
}

/// Writes every report file into `dir` (created if needed). `image_dir`, when given, is searched
/// for `<image name>.{png,tif,tiff,jpg,jpeg}` to draw overlays; images not found are skipped.
pub fn write_report(
    dir: &Path,
    report: &EvalReport,
    images: &[ImageEval],
    image_dir: Option<&Path>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let p = dir.join("metrics.json");
    std::fs::write(&p, metrics_json(report)? + "\n").map_err(|e| Error::io(&p, e))?;
    let p = dir.join("report.md");
    std::fs::write(&p, markdown(report)).map_err(|e| Error::io(&p, e))?;
    save_png(&pr_curve_plot(report), &dir.join("pr_curve.png"))?;
    save_png(&ap_vs_iou_plot(report), &dir.join("ap_vs_iou.png"))?;
    if let Some(image_dir) = image_dir {
        let odir = dir.join("overlays");
        for i in lowest_f1(report, N_OVERLAYS) {
            let im = &images[i];
            let Some(path) = super::dataset::find_image(image_dir, &im.name) else {
                continue;
            };
            std::fs::create_dir_all(&odir).map_err(|e| Error::io(&odir, e))?;
            let base = load_gray_rgb(&path)?;
            let img = overlay(base, im, report.config.score_threshold);
            save_png(&img, &odir.join(format!("{}.png", im.name)))?;
        }
    }
    Ok(())
}

/// The text of `metrics.json` (every number of the report) without its final newline.
pub fn metrics_json(report: &EvalReport) -> Result<String> {
    serde_json::to_string_pretty(report)
        .map_err(|e| Error::invalid(format!("cannot serialize the report: {e}")))
}

/// Indices of up to `n` images with F1 < 1, lowest F1 first (ties: more errors first).
pub fn lowest_f1(report: &EvalReport, n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..report.images.len())
        .filter(|&i| report.images[i].summary.f1 < 1.0)
        .collect();
    idx.sort_by(|&a, &b| {
        let (sa, sb) = (&report.images[a].summary, &report.images[b].summary);
        sa.f1
            .partial_cmp(&sb.f1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then((sb.fp + sb.fn_).cmp(&(sa.fp + sa.fn_)))
    });
    idx.truncate(n);
    idx
}

/// Loads an image file as gray (`crate::io::image::read_gray`, non-finite pixels replaced by the
/// median; a multi-page TIFF is refused), scaled to [0, 1] with the pipeline's default
/// percentiles, as RGB.
pub fn load_gray_rgb(path: &Path) -> Result<image::RgbImage> {
    crate::io::image::check_single_image(path, "eval")?;
    let (raw, _) = crate::io::image::check_finite(path, crate::io::image::read_gray(path)?, true)?;
    let unit = crate::transform::to_unit_range(raw.view(), crate::transform::Scaling::default());
    Ok(draw::gray_to_rgb(unit.view()))
}

/// Draws ground truth (red) and detections with `score >= score_threshold` (blue, labelled with
/// their score) on `base`. Line width and text size grow with the image.
pub fn overlay(base: image::RgbImage, im: &ImageEval, score_threshold: f64) -> image::RgbImage {
    let gt = im.gt.iter().map(|g| draw::Mark {
        bbox: g.bbox,
        color: GT_COLOR,
        label: None,
    });
    let pred = im.pred.iter().filter(|p| p.score as f64 >= score_threshold);
    let pred = pred.map(|p| draw::Mark {
        bbox: p.bbox,
        color: PRED_COLOR,
        label: Some(format!("{:.2}", p.score)),
    });
    let mut base = draw::overlay(base, &gt.chain(pred).collect::<Vec<_>>());
    let (_, scale) = draw::overlay_style(base.width().min(base.height()));
    // Legend bar in the bottom-left corner, wrapped to the image width (a long image name on a
    // narrow image takes several lines instead of running off the edge).
    let legend = format!("{}: GT red, det blue (>= {score_threshold})", im.name);
    let pad = 2 * scale as i64;
    let lines = draw::wrap_text(
        &legend,
        scale,
        (base.width() as i64 - 2 * pad).max(1) as u32,
    );
    let th = draw::text_size("", scale).1 as i64;
    let line_h = th + scale as i64;
    let tw = lines
        .iter()
        .map(|l| draw::text_size(l, scale).0 as i64)
        .max()
        .unwrap_or(0);
    let (bw, bh) = (
        tw + 2 * pad,
        lines.len() as i64 * line_h - scale as i64 + 2 * pad,
    );
    let h = base.height() as i64;
    let y0 = h - bh;
    draw::fill_rect(&mut base, 0, y0, bw, h, [0, 0, 0]);
    for (k, line) in lines.iter().enumerate() {
        let ty = y0 + pad + k as i64 * line_h;
        draw::draw_text(
            &mut base,
            pad as i32,
            ty as i32,
            line,
            [255, 255, 255],
            scale,
        );
    }
    base
}

/// Fig. 6b: pooled precision-recall curve per IoU threshold.
pub fn pr_curve_plot(report: &EvalReport) -> image::RgbImage {
    let series: Vec<Series> = report
        .overall
        .iter()
        .enumerate()
        .map(|(k, o)| Series {
            label: format!(
                "IoU {:.2}  AP {}",
                o.iou_threshold,
                fmt(o.pooled.ap_all_point)
            ),
            points: o
                .pooled
                .pr_curve
                .iter()
                .map(|p| (p.recall, p.precision))
                .collect(),
            color: PALETTE[k % PALETTE.len()],
            markers: false,
        })
        .collect();
    let title = format!(
        "Precision-recall ({} images, all classes pooled)",
        report.n_images
    );
    line_plot(&PlotSpec::unit(&title, "Recall", "Precision"), &series)
}

/// Fig. 6a: mAP (all-point and COCO 101-point) against the IoU threshold.
pub fn ap_vs_iou_plot(report: &EvalReport) -> image::RgbImage {
    let ious: Vec<f64> = report.overall.iter().map(|o| o.iou_threshold).collect();
    let lo = ious.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = ious.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() {
        (lo - 0.05, hi + 0.05)
    } else {
        (0.0, 1.0)
    };
    let pts = |f: fn(&super::OverallReport) -> Option<f64>| -> Vec<(f64, f64)> {
        report
            .overall
            .iter()
            .filter_map(|o| f(o).map(|v| (o.iou_threshold, v)))
            .collect()
    };
    let series = vec![
        Series {
            label: "AP (VOC all-point)".into(),
            points: pts(|o| o.map_all_point),
            color: PALETTE[0],
            markers: true,
        },
        Series {
            label: "AP (COCO 101-point)".into(),
            points: pts(|o| o.map_coco101),
            color: PALETTE[1],
            markers: true,
        },
    ];
    let mut spec = PlotSpec::unit(
        "AP vs IoU threshold (mean over classes)",
        "IoU threshold",
        "AP",
    );
    spec.x_range = (lo, hi);
    spec.x_ticks = ious;
    spec.tick_decimals = 2;
    line_plot(&spec, &series)
}

fn summary_cells(s: &Summary) -> String {
    format!(
        "{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}",
        s.n_gt,
        s.n_pred,
        fmt(s.ap_all_point),
        fmt(s.ap_11_point),
        fmt(s.ap_coco101),
        s.tp,
        s.fp,
        s.fn_,
        fmt(Some(s.precision)),
        fmt(Some(s.recall)),
        fmt(Some(s.f1)),
        fmt(s.miou),
        best_f1_cell(s)
    )
}

/// The "best F1 @ score" cell: the F1-optimal threshold, or why keeping no detection is best.
fn best_f1_cell(s: &Summary) -> String {
    let f1 = fmt(Some(s.best_f1));
    // Detections that count (not on a difficult object). Without a threshold, no cut beats
    // keeping none: with ground truth that means no true positive among them.
    let counted = s.n_pred - s.n_ignored;
    match s.best_f1_threshold {
        Some(t) => format!("{f1} @ {t:.3}"),
        None if s.n_pred == 0 => format!("{f1} (no detection)"),
        None if counted == 0 => {
            format!("{f1} (all {} detection(s) on difficult objects)", s.n_pred)
        }
        None if s.n_gt == 0 => format!("{f1} (no ground truth: all {counted} detection(s) false)"),
        None => format!("{f1} (no true positive among {counted} detection(s))"),
    }
}

const SUMMARY_HEADER: &str = "GT | Det | AP all-pt | AP 11-pt | AP COCO | TP | FP | FN | P | R | F1 | mIoU | best F1 @ score";

/// The tables of `report.md`.
pub fn markdown(r: &EvalReport) -> String {
    let c = &r.config;
    let mut s = String::new();
    let _ = writeln!(s, "# cryodet evaluation\n");
    let _ = writeln!(
        s,
        "{} images, classes: {}. Score threshold {} (P, R, F1, mIoU count detections with score >= it); \
         table IoU {}; COCO AP keeps {} detections per image and class; IoU {}.\n",
        r.n_images,
        r.classes.join(", "),
        c.score_threshold,
        c.table_iou,
        c.coco_max_dets,
        if c.voc_plus_one { "with VOC +1 pixel widths" } else { "on continuous boxes (no +1)" }
    );
    let _ = writeln!(s, "GT = non-difficult ground-truth boxes, Det = all detections. AP all-pt: VOC2010+ all-point; \
        AP 11-pt: VOC2007; AP COCO: pycocotools 101-point. mIoU: mean IoU of the true positives. \
        Overall rows pool all classes (micro average); mAP = mean over classes with ground truth.\n");

    let _ = writeln!(s, "## Overall (all classes pooled)\n");
    let _ = writeln!(
        s,
        "| IoU | mAP all-pt | mAP 11-pt | mAP COCO | {SUMMARY_HEADER} |"
    );
    let _ = writeln!(s, "|{}", "---|".repeat(17));
    for o in &r.overall {
        let _ = writeln!(
            s,
            "| {:.2} | {} | {} | {} | {} |",
            o.iou_threshold,
            fmt(o.map_all_point),
            fmt(o.map_11_point),
            fmt(o.map_coco101),
            summary_cells(&o.pooled)
        );
    }

    let _ = writeln!(s, "\n## Per class\n");
    let _ = writeln!(s, "| Class | IoU | {SUMMARY_HEADER} |");
    let _ = writeln!(s, "|{}", "---|".repeat(15));
    for cr in &r.per_class {
        for su in &cr.per_iou {
            let _ = writeln!(
                s,
                "| {} | {:.2} | {} |",
                cr.class,
                su.iou_threshold,
                summary_cells(su)
            );
        }
    }

    if !r.groups.is_empty() {
        let _ = writeln!(s, "\n## Per group (tomogram), IoU {:.2}\n", c.table_iou);
        let _ = writeln!(
            s,
            "Incomplete = ground-truth boxes marked truncated or touching the image border.\n"
        );
        let _ = writeln!(
            s,
            "| Group | Images | GT | Det | F1 | AP | mIoU | Incomplete objects | Incomplete |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        for g in &r.groups {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                g.group,
                g.n_images,
                g.summary.n_gt,
                g.summary.n_pred,
                fmt(Some(g.summary.f1)),
                fmt(g.ap),
                fmt(g.summary.miou),
                g.n_incomplete,
                if g.n_incomplete > 0 { "YES" } else { "NO" }
            );
        }
    }

    let worst = lowest_f1(r, 10);
    if !worst.is_empty() {
        let _ = writeln!(s, "\n## Lowest-F1 images, IoU {:.2}\n", c.table_iou);
        let _ = writeln!(s, "| Image | Group | GT | TP | FP | FN | F1 | mIoU |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for i in worst {
            let im = &r.images[i];
            let su = &im.summary;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                im.name,
                im.group.as_deref().unwrap_or("-"),
                su.n_gt,
                su.tp,
                su.fp,
                su.fn_,
                fmt(Some(su.f1)),
                fmt(su.miou)
            );
        }
    }
    s
}
