//! Building [`ImageEval`]s from files: LabelImg XML ground truth, `detect`'s JSON detections,
//! and the image -> group (tomogram) assignment.
//!
//! * Ground truth: every `*.xml` in the GT directory is one image; its file stem is the image's
//!   name. The set of evaluated images is the set of XML files (an image with no object still
//!   needs its XML file; LabelImg writes one when the image is saved empty).
//! * Detections: `<PRED_DIR>/<stem>.json` (see `crate::io::detections`). A missing file is an
//!   error (a silently empty prediction would lower the scores without notice); JSON files
//!   without a matching XML are skipped and counted. Stack files (MRC, with `slices`) are not
//!   evaluated: ground truth is per 2-D image, so detect the slices as images.
//! * Groups: either a manifest, one `image,group` (or `image<TAB>group`) line per image, `image`
//!   being a file name or stem (its stem is used), `#` comments and blank lines allowed, an
//!   optional `image,group` header; every evaluated image must be listed. Without a manifest the
//!   group is the stem's prefix before its last `_` (`Unstim_20k_mito1_063` ->
//!   `Unstim_20k_mito1`); a stem without `_` is its own group.

use super::{GtBox, ImageEval, PredBox};
use crate::error::{Error, Result};
use crate::io::detections::{read_image_detections, Detection, ImageDetections};
use crate::io::voc::{read_voc, VocAnnotation};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A box whose edge is within this many pixels of the image border counts as touching it.
/// (LabelImg's 1-based `xmin = 1` becomes `x1 = 0`; one pixel of slack absorbs annotators who
/// stop one pixel short of the border.)
pub const BORDER_TOLERANCE_PX: f32 = 1.0;

/// Whether `bbox` touches the border of a `width x height` image (see [`BORDER_TOLERANCE_PX`]).
/// Unknown sizes (0) only test the top and left borders.
pub fn touches_border(bbox: [f32; 4], width: u32, height: u32) -> bool {
    let t = BORDER_TOLERANCE_PX;
    let [x1, y1, x2, y2] = bbox;
    x1 <= t
        || y1 <= t
        || (width > 0 && x2 >= width as f32 - t)
        || (height > 0 && y2 >= height as f32 - t)
}

/// Ground-truth boxes of one annotation; `incomplete = truncated || touches_border`.
pub fn gt_from_voc(ann: &VocAnnotation) -> Vec<GtBox> {
    ann.objects
        .iter()
        .map(|o| GtBox {
            bbox: o.bbox,
            class: o.name.clone(),
            difficult: o.difficult,
            incomplete: o.truncated || touches_border(o.bbox, ann.width, ann.height),
        })
        .collect()
}

/// Detections of one image as [`PredBox`]es (class = label).
pub fn preds_from_detections(d: &ImageDetections) -> Vec<PredBox> {
    preds_from(&d.detections)
}

/// Detections as [`PredBox`]es (class = label).
pub fn preds_from(dets: &[Detection]) -> Vec<PredBox> {
    dets.iter()
        .map(|x| PredBox {
            bbox: x.bbox,
            class: x.label.clone(),
            score: x.score,
        })
        .collect()
}

/// The default group of an image: its stem before the last `_`.
pub fn group_of_stem(stem: &str) -> String {
    match stem.rfind('_') {
        Some(i) if i > 0 => stem[..i].to_string(),
        _ => stem.to_string(),
    }
}

fn stem_of(name: &str) -> String {
    Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string())
}

/// Reads a group manifest (see the module doc) into `stem -> group`.
pub fn read_group_manifest(path: &Path) -> Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut map = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sep = if line.contains('\t') { '\t' } else { ',' };
        let mut parts = line.splitn(2, sep).map(str::trim);
        let (image, group) = match (parts.next(), parts.next()) {
            (Some(i), Some(g)) if !i.is_empty() && !g.is_empty() => (i, g),
            _ => {
                return Err(Error::format(
                    path,
                    format!("line {}: expected `image,group`, got {line:?}", n + 1),
                ))
            }
        };
        if n == 0 && image.eq_ignore_ascii_case("image") && group.eq_ignore_ascii_case("group") {
            continue;
        }
        map.insert(stem_of(image), group.to_string());
    }
    Ok(map)
}

fn sorted_files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    for entry in rd {
        let p = entry.map_err(|e| Error::io(dir, e))?.path();
        if p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext)) {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// The stems of every `*.xml` in `gt_dir`, sorted (the evaluated images).
pub fn gt_stems(gt_dir: &Path) -> Result<Vec<String>> {
    Ok(sorted_files(gt_dir, "xml")?
        .iter()
        .map(|p| stem_of(&p.to_string_lossy()))
        .collect())
}

/// What [`load_dataset`] found besides the images.
#[derive(Debug, Clone, Default)]
pub struct LoadNotes {
    /// Detection files with no ground truth (skipped).
    pub unmatched_predictions: Vec<PathBuf>,
}

/// Loads every `GT_DIR/*.xml` with its `PRED_DIR/<stem>.json`, in file-name order.
pub fn load_dataset(
    gt_dir: &Path,
    pred_dir: &Path,
    manifest: Option<&Path>,
) -> Result<(Vec<ImageEval>, LoadNotes)> {
    let groups = manifest.map(read_group_manifest).transpose()?;
    let xmls = sorted_files(gt_dir, "xml")?;
    if xmls.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no .xml annotation files",
            gt_dir.display()
        )));
    }
    let mut images = Vec::with_capacity(xmls.len());
    for xml in &xmls {
        let stem = stem_of(&xml.to_string_lossy());
        let ann = read_voc(xml)?;
        let pred_path = pred_dir.join(format!("{stem}.json"));
        if !pred_path.is_file() {
            return Err(Error::format(
                &pred_path,
                format!("missing detection file for ground truth {}", xml.display()),
            ));
        }
        let dets = read_image_detections(&pred_path)?;
        if ann.width > 0 && ann.height > 0 && (dets.width != ann.width || dets.height != ann.height)
        {
            return Err(Error::format(
                &pred_path,
                format!(
                    "image size {}x{} differs from the annotation's {}x{} ({})",
                    dets.width,
                    dets.height,
                    ann.width,
                    ann.height,
                    xml.display()
                ),
            ));
        }
        let group = match &groups {
            Some(m) => Some(m.get(&stem).cloned().ok_or_else(|| {
                Error::format(
                    manifest.unwrap_or(gt_dir),
                    format!("image {stem} is not listed"),
                )
            })?),
            None => Some(group_of_stem(&stem)),
        };
        images.push(ImageEval {
            name: stem,
            group,
            gt: gt_from_voc(&ann),
            pred: preds_from_detections(&dets),
        });
    }
    let known: std::collections::HashSet<&str> = images.iter().map(|i| i.name.as_str()).collect();
    let unmatched_predictions = sorted_files(pred_dir, "json")?
        .into_iter()
        .filter(|p| !known.contains(stem_of(&p.to_string_lossy()).as_str()))
        .collect();
    Ok((
        images,
        LoadNotes {
            unmatched_predictions,
        },
    ))
}

/// The image file for `stem` in `dir` (png, tif, tiff, jpg, jpeg, in that order), if any.
pub fn find_image(dir: &Path, stem: &str) -> Option<PathBuf> {
    [
        "png", "tif", "tiff", "jpg", "jpeg", "PNG", "TIF", "TIFF", "JPG", "JPEG",
    ]
    .iter()
    .map(|e| dir.join(format!("{stem}.{e}")))
    .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_groups() {
        assert_eq!(group_of_stem("Unstim_20k_mito1_063"), "Unstim_20k_mito1");
        assert_eq!(group_of_stem("tomo"), "tomo");
        assert_eq!(group_of_stem("_x"), "_x");
    }

    #[test]
    fn border_touching() {
        assert!(touches_border([0.0, 10.0, 20.0, 20.0], 100, 100));
        assert!(touches_border([10.0, 10.0, 99.5, 20.0], 100, 100));
        assert!(!touches_border([10.0, 10.0, 90.0, 90.0], 100, 100));
    }
}
