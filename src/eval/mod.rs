//! Evaluation: VOC matching, AP (all-point, 11-point, COCO 101-point), F1, mIoU, reports.
//!
//! The study (Fig. 6, Table 2) reports AP at IoU thresholds 0.5..0.9, the precision-recall curve
//! at IoU 0.7, and per tomogram F1, AP and mIoU at IoU 0.7 with a flag for incomplete
//! mitochondria. This module computes all of them, per class, pooled over classes, per group
//! (tomogram) and per image.
//!
//! Pipeline, for each IoU threshold `t`:
//! 1. per image and class, detections are matched to ground truth ([`matching`]): each is a TP
//!    (with the IoU of its pair), an FP, or ignored (it hit a *difficult* object);
//! 2. the matched detections of a set of images and classes are ranked by score, highest
//!    first (stable: equal scores stay in image order, then in each image's input order) and
//!    summarized (`summarize`):
//!    * AP: all-point (VOC2010+), 11-point (VOC2007), 101-point (COCO) — see [`ap`]. The COCO
//!      value keeps only the 100 highest-scoring detections per image and class
//!      (pycocotools' `maxDets = 100`, `areaRng = 'all'`, no crowd), so it equals pycocotools'
//!      per-class AP; the two VOC values keep every detection;
//!    * at the score threshold `s` (default 0.5; detections with `score >= s`):
//!      `P = TP / (TP + FP)`, `R = TP / n_gt`, `F1 = 2PR / (P + R)`, with the convention
//!      `0/0 := 1` for P and R (no detection and nothing to detect is perfect; `F1 = 0` if
//!      `P + R = 0`), and `mIoU` = mean IoU of the TP pairs (None without TP);
//!    * the F1-optimal score threshold: the score cut (at the end of a run of equal scores)
//!      with the highest F1, the highest such score on ties; None when no cut beats keeping
//!      no detection at all.
//!
//! Levels: **per class** (a class's detections against that class's ground truth);
//! **overall** = the detections and ground truth of all classes *pooled* into one ranking
//! (micro average: TP/FP/FN summed over classes; matching still within each class), reported
//! next to the **mAP** = mean over classes with ground truth of the per-class AP; for one class
//! (mitochondria) the two coincide. **Per group** (tomogram, Table 2) and **per image**: the
//! pooled summary restricted to those images at the table IoU (default 0.7); a group's `ap` is
//! the mAP over the classes with ground truth in the group.
//!
//! `n_gt` counts non-difficult ground truth. An object is *incomplete* when its annotation says
//! `truncated = 1` or its box touches the image border (within [`dataset::BORDER_TOLERANCE_PX`]),
//! see [`dataset::gt_from_voc`]; groups and images report how many they have.
//!
//! Boxes use continuous coordinates, area `(x2 - x1) * (y2 - y1)` (no `+1`); the VOC devkit's
//! `+1` pixel areas are available as `EvalConfig::voc_plus_one` (see [`iou`]).

pub mod ap;
pub mod dataset;
pub mod iou;
pub mod matching;
pub mod report;

pub use matching::Match;
pub use report::{metrics_json, write_report};

use serde::Serialize;
use std::collections::BTreeSet;

/// One ground-truth object.
#[derive(Debug, Clone, PartialEq)]
pub struct GtBox {
    /// `[x1, y1, x2, y2]`, continuous pixel coordinates.
    pub bbox: [f32; 4],
    pub class: String,
    /// VOC "difficult": detections on it are ignored and it is not counted as missed.
    pub difficult: bool,
    /// Truncated or touching the image border (counted, not used in matching).
    pub incomplete: bool,
}

/// One detection.
#[derive(Debug, Clone, PartialEq)]
pub struct PredBox {
    /// `[x1, y1, x2, y2]`, continuous pixel coordinates.
    pub bbox: [f32; 4],
    pub class: String,
    pub score: f32,
}

/// Ground truth and detections of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageEval {
    pub name: String,
    /// Tomogram (or other group) the image belongs to.
    pub group: Option<String>,
    pub gt: Vec<GtBox>,
    pub pred: Vec<PredBox>,
}

/// What to compute.
#[derive(Debug, Clone, Serialize)]
pub struct EvalConfig {
    /// IoU thresholds of AP and of the precision-recall curves (default 0.5, 0.6, 0.7, 0.8, 0.9).
    pub iou_thresholds: Vec<f64>,
    /// Detections with `score >= score_threshold` count for precision, recall, F1 and mIoU.
    pub score_threshold: f64,
    /// IoU threshold of the per-group and per-image tables (the study's Table 2 uses 0.7).
    pub table_iou: f64,
    /// Detections kept per image and class for the COCO 101-point AP (pycocotools' maxDets).
    pub coco_max_dets: usize,
    /// Use the VOC devkit's `+1` pixel widths in IoU (for inclusive integer boxes).
    pub voc_plus_one: bool,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            iou_thresholds: vec![0.5, 0.6, 0.7, 0.8, 0.9],
            score_threshold: 0.5,
            table_iou: 0.7,
            coco_max_dets: 100,
            voc_plus_one: false,
        }
    }
}

impl EvalConfig {
    /// The configuration with its values checked: at least one IoU threshold, every IoU
    /// threshold (and `table_iou`) in (0, 1], a finite score threshold, `coco_max_dets >= 1`.
    /// Errors name `cryodet eval`'s options.
    pub fn checked(self) -> crate::Result<Self> {
        use crate::Error;
        if self.iou_thresholds.is_empty() {
            return Err(Error::invalid("--iou: give at least one threshold"));
        }
        for &t in self.iou_thresholds.iter().chain([self.table_iou].iter()) {
            if !(t > 0.0 && t <= 1.0) {
                return Err(Error::invalid(format!(
                    "IoU threshold {t} is not in (0, 1]"
                )));
            }
        }
        if !self.score_threshold.is_finite() {
            return Err(Error::invalid("--score-thresh must be a finite number"));
        }
        if self.coco_max_dets == 0 {
            return Err(Error::invalid("--coco-max-dets must be at least 1"));
        }
        Ok(self)
    }
}

/// One point of a precision-recall curve: after all detections with score >= `score`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PrPoint {
    pub score: f64,
    pub recall: f64,
    pub precision: f64,
}

/// Metrics of a set of matched detections at one IoU threshold (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub iou_threshold: f64,
    /// Non-difficult ground-truth boxes.
    pub n_gt: usize,
    /// All detections (any score).
    pub n_pred: usize,
    /// Detections that hit a difficult object (any score).
    pub n_ignored: usize,
    pub ap_all_point: Option<f64>,
    pub ap_11_point: Option<f64>,
    pub ap_coco101: Option<f64>,
    /// Counts at the score threshold.
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Mean IoU of the TP pairs at the score threshold.
    pub miou: Option<f64>,
    pub best_f1: f64,
    /// The score threshold that gives `best_f1`; None when keeping no detection is best.
    pub best_f1_threshold: Option<f64>,
    /// Every point of the curve, in rank order (ignored detections left out).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pr_curve: Vec<PrPoint>,
}

/// All classes pooled at one IoU threshold, with the class-mean APs.
#[derive(Debug, Clone, Serialize)]
pub struct OverallReport {
    pub iou_threshold: f64,
    /// Mean over classes with ground truth of the per-class AP.
    pub map_all_point: Option<f64>,
    pub map_11_point: Option<f64>,
    pub map_coco101: Option<f64>,
    /// All classes pooled into one ranking (micro average).
    pub pooled: Summary,
}

/// One class at every IoU threshold.
#[derive(Debug, Clone, Serialize)]
pub struct ClassReport {
    pub class: String,
    pub per_iou: Vec<Summary>,
}

/// One row of the per-group table (the study's Table 2), at `iou_threshold = table_iou`.
#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub group: String,
    pub n_images: usize,
    /// Ground-truth boxes flagged incomplete (truncated or at the border), difficult ones included.
    pub n_incomplete: usize,
    /// Mean over classes with ground truth in the group of the all-point AP.
    pub ap: Option<f64>,
    /// Pooled over classes.
    pub summary: Summary,
}

/// One image at `table_iou` (pooled over classes).
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    pub name: String,
    pub group: Option<String>,
    pub n_incomplete: usize,
    pub summary: Summary,
}

/// Everything [`evaluate`] computes.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub config: EvalConfig,
    pub n_images: usize,
    /// Every class seen in the ground truth or the detections, sorted.
    pub classes: Vec<String>,
    pub overall: Vec<OverallReport>,
    pub per_class: Vec<ClassReport>,
    pub groups: Vec<GroupReport>,
    pub images: Vec<ImageReport>,
}

/// One matched detection.
#[derive(Debug, Clone, Copy)]
struct Row {
    class: usize,
    /// Index of the detection in its image's `pred` list.
    input: usize,
    score: f64,
    /// Rank of the detection among its image's detections of its class (0 = best).
    rank: usize,
    m: Match,
}

/// Matching results of every image at one IoU threshold: `rows[image]`.
struct Matched {
    rows: Vec<Vec<Row>>,
}

/// Non-difficult ground truth per image and class: `npos[image][class]`.
fn count_npos(images: &[ImageEval], classes: &[String]) -> Vec<Vec<usize>> {
    images
        .iter()
        .map(|im| {
            classes
                .iter()
                .map(|c| {
                    im.gt
                        .iter()
                        .filter(|g| &g.class == c && !g.difficult)
                        .count()
                })
                .collect()
        })
        .collect()
}

fn match_all(images: &[ImageEval], classes: &[String], thr: f64, plus_one: bool) -> Matched {
    let rows = images
        .iter()
        .map(|im| {
            let mut rows = Vec::new();
            for (ci, c) in classes.iter().enumerate() {
                let gts: Vec<&GtBox> = im.gt.iter().filter(|g| &g.class == c).collect();
                let preds: Vec<(usize, &PredBox)> = im
                    .pred
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| &p.class == c)
                    .collect();
                if preds.is_empty() {
                    continue;
                }
                let scores: Vec<f64> = preds.iter().map(|(_, p)| p.score as f64).collect();
                let order = matching::sort_by_score(&scores);
                let gt_boxes: Vec<[f64; 4]> = gts.iter().map(|g| iou::to_f64(g.bbox)).collect();
                let difficult: Vec<bool> = gts.iter().map(|g| g.difficult).collect();
                let pred_boxes: Vec<[f64; 4]> = order
                    .iter()
                    .map(|&i| iou::to_f64(preds[i].1.bbox))
                    .collect();
                let ms =
                    matching::match_detections(&gt_boxes, &difficult, &pred_boxes, thr, plus_one);
                for (rank, (&i, m)) in order.iter().zip(ms).enumerate() {
                    rows.push(Row {
                        class: ci,
                        input: preds[i].0,
                        score: scores[i],
                        rank,
                        m,
                    });
                }
            }
            // Input order, so that a stable sort by score breaks ties by input order.
            rows.sort_by_key(|r| r.input);
            rows
        })
        .collect();
    Matched { rows }
}

/// 0/0 := 1 (see the module doc).
fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        1.0
    } else {
        num as f64 / den as f64
    }
}

fn f1_of(p: f64, r: f64) -> f64 {
    if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    }
}

/// Summarizes matched rows (from any set of images and classes) against `npos` ground truth.
fn summarize(rows: &[Row], npos: usize, thr: f64, cfg: &EvalConfig, curve: bool) -> Summary {
    let scores: Vec<f64> = rows.iter().map(|r| r.score).collect();
    let order = matching::sort_by_score(&scores);
    let ranked: Vec<&Row> = order
        .iter()
        .map(|&i| &rows[i])
        .filter(|r| r.m != Match::Ignored)
        .collect();
    let tp_seq: Vec<bool> = ranked
        .iter()
        .map(|r| matches!(r.m, Match::Tp { .. }))
        .collect();
    let coco_seq: Vec<bool> = ranked
        .iter()
        .filter(|r| r.rank < cfg.coco_max_dets)
        .map(|r| matches!(r.m, Match::Tp { .. }))
        .collect();

    // At the score threshold.
    let (mut tp, mut fp, mut iou_sum) = (0usize, 0usize, 0.0f64);
    for r in ranked.iter().filter(|r| r.score >= cfg.score_threshold) {
        match r.m {
            Match::Tp { iou, .. } => {
                tp += 1;
                iou_sum += iou;
            }
            _ => fp += 1,
        }
    }
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, npos);

    // Best F1 over score cuts at the end of each run of equal scores.
    let mut best_f1 = f1_of(ratio(0, 0), ratio(0, npos));
    let mut best_thr = None;
    let (mut ctp, mut cfp) = (0usize, 0usize);
    let mut pr_curve = Vec::new();
    for (k, r) in ranked.iter().enumerate() {
        if matches!(r.m, Match::Tp { .. }) {
            ctp += 1;
        } else {
            cfp += 1;
        }
        let (p, rc) = (ratio(ctp, ctp + cfp), ratio(ctp, npos));
        if curve {
            pr_curve.push(PrPoint {
                score: r.score,
                recall: rc,
                precision: p,
            });
        }
        let end_of_run = ranked.get(k + 1).is_none_or(|n| n.score != r.score);
        if end_of_run {
            let f = f1_of(p, rc);
            if f > best_f1 {
                best_f1 = f;
                best_thr = Some(r.score);
            }
        }
    }

    Summary {
        iou_threshold: thr,
        n_gt: npos,
        n_pred: rows.len(),
        n_ignored: rows.len() - ranked.len(),
        ap_all_point: ap::ap_all_point(&tp_seq, npos),
        ap_11_point: ap::ap_11_point(&tp_seq, npos),
        ap_coco101: ap::ap_coco101(&coco_seq, npos),
        tp,
        fp,
        fn_: npos.saturating_sub(tp),
        precision,
        recall,
        f1: f1_of(precision, recall),
        miou: (tp > 0).then(|| iou_sum / tp as f64),
        best_f1,
        best_f1_threshold: best_thr,
        pr_curve,
    }
}

fn mean_defined(v: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let vals: Vec<f64> = v.flatten().collect();
    (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
}

/// Per-class summaries over the images `sel` (indices), then their class means.
fn class_summaries(
    m: &Matched,
    npos: &[Vec<usize>],
    sel: &[usize],
    nclass: usize,
    thr: f64,
    cfg: &EvalConfig,
    curve: bool,
) -> Vec<Summary> {
    (0..nclass)
        .map(|c| {
            let rows: Vec<Row> = sel
                .iter()
                .flat_map(|&i| m.rows[i].iter().filter(|r| r.class == c).copied())
                .collect();
            let n: usize = sel.iter().map(|&i| npos[i][c]).sum();
            summarize(&rows, n, thr, cfg, curve)
        })
        .collect()
}

fn pooled_summary(
    m: &Matched,
    npos: &[Vec<usize>],
    sel: &[usize],
    thr: f64,
    cfg: &EvalConfig,
    curve: bool,
) -> Summary {
    let rows: Vec<Row> = sel
        .iter()
        .flat_map(|&i| m.rows[i].iter().copied())
        .collect();
    let n: usize = sel.iter().map(|&i| npos[i].iter().sum::<usize>()).sum();
    summarize(&rows, n, thr, cfg, curve)
}

/// Evaluates detections against ground truth; see the module doc for every definition.
pub fn evaluate(images: &[ImageEval], cfg: &EvalConfig) -> EvalReport {
    let classes: Vec<String> = images
        .iter()
        .flat_map(|im| {
            im.gt
                .iter()
                .map(|g| g.class.clone())
                .chain(im.pred.iter().map(|p| p.class.clone()))
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let npos = count_npos(images, &classes);
    let all: Vec<usize> = (0..images.len()).collect();

    let mut overall = Vec::new();
    let mut per_class: Vec<ClassReport> = classes
        .iter()
        .map(|c| ClassReport {
            class: c.clone(),
            per_iou: Vec::new(),
        })
        .collect();
    for &thr in &cfg.iou_thresholds {
        let m = match_all(images, &classes, thr, cfg.voc_plus_one);
        let cs = class_summaries(&m, &npos, &all, classes.len(), thr, cfg, true);
        overall.push(OverallReport {
            iou_threshold: thr,
            map_all_point: mean_defined(cs.iter().map(|s| s.ap_all_point)),
            map_11_point: mean_defined(cs.iter().map(|s| s.ap_11_point)),
            map_coco101: mean_defined(cs.iter().map(|s| s.ap_coco101)),
            pooled: pooled_summary(&m, &npos, &all, thr, cfg, true),
        });
        for (cr, s) in per_class.iter_mut().zip(cs) {
            cr.per_iou.push(s);
        }
    }

    // Tables at the table IoU: per group (in order of first appearance) and per image.
    let m = match_all(images, &classes, cfg.table_iou, cfg.voc_plus_one);
    let incomplete = |i: usize| images[i].gt.iter().filter(|g| g.incomplete).count();
    let mut group_names: Vec<String> = Vec::new();
    for im in images {
        if let Some(g) = &im.group {
            if !group_names.contains(g) {
                group_names.push(g.clone());
            }
        }
    }
    let groups = group_names
        .into_iter()
        .map(|g| {
            let sel: Vec<usize> = (0..images.len())
                .filter(|&i| images[i].group.as_ref() == Some(&g))
                .collect();
            let cs = class_summaries(&m, &npos, &sel, classes.len(), cfg.table_iou, cfg, false);
            GroupReport {
                n_images: sel.len(),
                n_incomplete: sel.iter().map(|&i| incomplete(i)).sum(),
                ap: mean_defined(cs.iter().map(|s| s.ap_all_point)),
                summary: pooled_summary(&m, &npos, &sel, cfg.table_iou, cfg, false),
                group: g,
            }
        })
        .collect();
    let image_reports = (0..images.len())
        .map(|i| ImageReport {
            name: images[i].name.clone(),
            group: images[i].group.clone(),
            n_incomplete: incomplete(i),
            summary: pooled_summary(&m, &npos, &[i], cfg.table_iou, cfg, false),
        })
        .collect();

    EvalReport {
        config: cfg.clone(),
        n_images: images.len(),
        classes,
        overall,
        per_class,
        groups,
        images: image_reports,
    }
}
