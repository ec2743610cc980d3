//! `cryodet.evaluate`: `cryodet eval --gt GT_DIR --pred PRED_DIR` on Python values.
//!
//! Images are the keys of `ground_truth`, in sorted order (as `eval` takes the XML files in
//! file-name order); each has its ground truth as `read_voc` returns it
//! (`eval::dataset::gt_from_voc`: `incomplete` = truncated or touching the border) and its
//! detections (`eval::dataset::preds_from`); its group is `groups[name]`, else the name's prefix
//! before the last `_` (`eval::dataset::group_of_stem`). `eval::evaluate` computes the report,
//! returned as `metrics.json` holds it.

use cryodet::eval::{self, dataset, EvalConfig, ImageEval};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyMapping;

use crate::convert::{detections_from_py, json_to_py};
use crate::errors::{warn, IntoPy};
use crate::voc::annotation_from_py;

/// The metrics of `predictions` against `ground_truth` (see _cryodet.pyi).
#[pyfunction]
#[pyo3(signature = (predictions, ground_truth, iou=None, score_thresh=None, table_iou=None, groups=None, coco_max_dets=None, voc_plus_one=false))]
#[allow(clippy::too_many_arguments)]
pub fn evaluate<'py>(
    py: Python<'py>,
    predictions: &Bound<'py, PyMapping>,
    ground_truth: &Bound<'py, PyMapping>,
    iou: Option<Vec<f64>>,
    score_thresh: Option<f64>,
    table_iou: Option<f64>,
    groups: Option<&Bound<'py, PyMapping>>,
    coco_max_dets: Option<usize>,
    voc_plus_one: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let d = EvalConfig::default();
    let cfg = EvalConfig {
        iou_thresholds: iou.unwrap_or(d.iou_thresholds),
        score_threshold: score_thresh.unwrap_or(d.score_threshold),
        table_iou: table_iou.unwrap_or(d.table_iou),
        coco_max_dets: coco_max_dets.unwrap_or(d.coco_max_dets),
        voc_plus_one,
    }
    .checked()
    .py_err()?;
    let mut names: Vec<String> = ground_truth.keys()?.extract()?;
    names.sort();
    if names.is_empty() {
        return Err(PyValueError::new_err("ground_truth: no image"));
    }
    let mut images = Vec::with_capacity(names.len());
    for name in &names {
        let ann = annotation_from_py(
            &ground_truth.get_item(name)?,
            &format!("ground_truth['{name}']"),
        )?;
        if !predictions.contains(name)? {
            return Err(PyValueError::new_err(format!(
                "predictions: no detections for ground-truth image '{name}'"
            )));
        }
        let dets = detections_from_py(
            &predictions.get_item(name)?,
            &format!("predictions['{name}']"),
        )?;
        let group = match groups {
            Some(g) if g.contains(name)? => g.get_item(name)?.extract()?,
            Some(_) => {
                return Err(PyValueError::new_err(format!(
                    "groups: image '{name}' is not listed"
                )))
            }
            None => dataset::group_of_stem(name),
        };
        images.push(ImageEval {
            name: name.clone(),
            group: Some(group),
            gt: dataset::gt_from_voc(&ann),
            pred: dataset::preds_from(&dets),
        });
    }
    let pred_names: Vec<String> = predictions.keys()?.extract()?;
    let unmatched = pred_names.iter().filter(|n| !names.contains(n)).count();
    if unmatched > 0 {
        let msg = format!(
            "{unmatched} prediction(s) have no ground truth and were skipped (as `cryodet eval` \
             skips such detection files)"
        );
        warn(py, msg)?;
    }
    let text = py
        .detach(|| eval::metrics_json(&eval::evaluate(&images, &cfg)))
        .py_err()?;
    json_to_py(py, &text)
}
