//! Detection results as files: JSON (one per image or stack), CSV rows; the schema `detect` writes and `eval` reads.
//!
//! One image (`<stem>.json`):
//! ```json
//! {"image": "tomo_063.png", "width": 3708, "height": 3838,
//!  "detections": [{"box": [x1, y1, x2, y2], "score": 0.98, "label": "mitochondria", "class_id": 1}]}
//! ```
//! One MRC stack: the same header plus `"depth": D` and, instead of `detections`,
//! `"slices": [{"z": K, "detections": [...]}, ...]` (z is the 0-based slice index).
//!
//! Boxes are continuous pixel coordinates of the ORIGINAL image (before any resize):
//! `(x1, y1)` is the top-left corner, `(x2, y2)` the bottom-right corner, pixel `i` covers `[i, i+1)`,
//! so a box over pixels 10..=19 is `[10, .., 20, ..]` and its area is `(x2 - x1) * (y2 - y1)`.
//! Both carry `"precision": "f32" | "bf16"` (the network's arithmetic, `detect --precision`).
//! `class_id` follows torchvision: 0 is background, 1.. are the object classes.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One detected object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// `[x1, y1, x2, y2]`, continuous pixel coordinates of the original image.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Classifier score in `[0, 1]`.
    pub score: f32,
    /// Class name, e.g. `"mitochondria"`.
    pub label: String,
    /// Class index (1-based; 0 is background).
    pub class_id: usize,
}

/// Detections of one 2-D image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageDetections {
    /// The image file the detections were computed on (as given to `detect`).
    pub image: String,
    pub width: u32,
    pub height: u32,
    pub detections: Vec<Detection>,
    /// Arithmetic of the network that produced them (`"f32"` or `"bf16"`, `detect --precision`);
    /// absent in files of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
}

/// Detections of one slice `z` of a stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceDetections {
    pub z: usize,
    pub detections: Vec<Detection>,
}

/// Detections of every slice of an MRC stack `[depth, height, width]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackDetections {
    pub image: String,
    pub width: u32,
    pub height: u32,
    pub depth: u32,
    pub slices: Vec<SliceDetections>,
    /// Arithmetic of the network that produced them (`"f32"` or `"bf16"`, `detect --precision`);
    /// absent in files of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
}

/// Writes any of the structs above as pretty-printed JSON.
pub fn write_json<T: Serialize>(path: impl AsRef<Path>, value: &T) -> Result<()> {
    let path = path.as_ref();
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::format(path, format!("cannot serialize JSON: {e}")))?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}

/// Reads one image's detections; errors name the file and the reason (bad JSON, missing field,
/// a stack file where an image file was expected, a non-finite or inverted box).
pub fn read_image_detections(path: impl AsRef<Path>) -> Result<ImageDetections> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_image_detections(path, &text)
}

/// [`read_image_detections`] on the file's text; `path` is only used in error messages.
pub fn parse_image_detections(path: &Path, text: &str) -> Result<ImageDetections> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::format(path, format!("invalid JSON: {e}")))?;
    if value.get("slices").is_some() {
        return Err(Error::format(
            path,
            "this is a stack detection file (has \"slices\"); expected one image's detections",
        ));
    }
    let dets: ImageDetections = serde_json::from_value(value)
        .map_err(|e| Error::format(path, format!("not an image detection file: {e}")))?;
    check_detections(path, &dets.detections)?;
    Ok(dets)
}

/// Reads one stack's detections (see the module doc for the schema).
pub fn read_stack_detections(path: impl AsRef<Path>) -> Result<StackDetections> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_stack_detections(path, &text)
}

/// [`read_stack_detections`] on the file's text; `path` is only used in error messages.
pub fn parse_stack_detections(path: &Path, text: &str) -> Result<StackDetections> {
    let dets: StackDetections = serde_json::from_str(text)
        .map_err(|e| Error::format(path, format!("not a stack detection file: {e}")))?;
    for s in &dets.slices {
        if s.z >= dets.depth as usize {
            return Err(Error::format(
                path,
                format!(
                    "slice z = {} is outside the stack depth {}",
                    s.z, dets.depth
                ),
            ));
        }
        check_detections(path, &s.detections)?;
    }
    Ok(dets)
}

/// Rejects non-finite numbers and inverted boxes (x2 < x1 or y2 < y1).
fn check_detections(path: &Path, dets: &[Detection]) -> Result<()> {
    for (i, d) in dets.iter().enumerate() {
        let [x1, y1, x2, y2] = d.bbox;
        if !d.bbox.iter().all(|v| v.is_finite()) || !d.score.is_finite() {
            return Err(Error::format(
                path,
                format!("detection {i}: non-finite box or score"),
            ));
        }
        if x2 < x1 || y2 < y1 {
            return Err(Error::format(
                path,
                format!("detection {i}: inverted box [{x1}, {y1}, {x2}, {y2}]"),
            ));
        }
    }
    Ok(())
}

/// Writes CSV rows `image,z,x1,y1,x2,y2,score,label,class_id` (z empty for 2-D images).
pub fn write_csv(
    path: impl AsRef<Path>,
    rows: &[(String, Option<usize>, Detection)],
) -> Result<()> {
    let path = path.as_ref();
    let csv_err = |e: csv::Error| Error::format(path, format!("cannot write CSV: {e}"));
    let mut w = csv::Writer::from_path(path).map_err(csv_err)?;
    w.write_record([
        "image", "z", "x1", "y1", "x2", "y2", "score", "label", "class_id",
    ])
    .map_err(csv_err)?;
    for (image, z, d) in rows {
        let z = z.map(|z| z.to_string()).unwrap_or_default();
        let [x1, y1, x2, y2] = d.bbox;
        w.write_record([
            image.clone(),
            z,
            x1.to_string(),
            y1.to_string(),
            x2.to_string(),
            y2.to_string(),
            d.score.to_string(),
            d.label.clone(),
            d.class_id.to_string(),
        ])
        .map_err(csv_err)?;
    }
    w.flush().map_err(|e| Error::io(path, e))
}
