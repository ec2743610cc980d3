//! From a raw image to detections in its own pixels: the study's Fig. 1 end to end.
//!
//! ```text
//! raw [H, W] (any range: 8/16-bit, float MRC)
//!  -> to [0, 1] (percentiles 0.1 / 99.9 by default, see transform::Scaling)
//!  -> preprocess: bilateral filter, then histogram equalization (the study; optional)
//!  -> ImageNet normalization, gray replicated to 3 channels, bilinear resize so that the short
//!     side is `min_size` (600) and the long side at most `max_size` (1000), pad to 32
//!  -> FasterRcnn::forward_image -> boxes on the resized image
//!  -> boxes scaled back to the original pixels (torchvision's transform.postprocess)
//! ```

use crate::detection::postprocess::Detections;
use crate::error::{Error, Result};
use crate::io::detections::Detection;
use crate::model::FasterRcnn;
use crate::preprocess::{preprocess, PreprocessConfig};
use crate::transform::{boxes_to_original, to_unit_range, transform_image, Scaling};
use ndarray::Array2;

/// How images are prepared and which detections are reported.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The study's preprocessing; `None` skips it (`--no-preprocess`).
    pub preprocess: Option<PreprocessConfig>,
    pub scaling: Scaling,
    /// Short side after resizing (torchvision's min_size).
    pub min_size: f32,
    /// Upper bound of the long side after resizing (torchvision's max_size).
    pub max_size: f32,
    /// Detections with a lower score are not reported (the network itself keeps > 0.05).
    pub score_thresh: f32,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            preprocess: Some(PreprocessConfig::default()),
            scaling: Scaling::default(),
            min_size: 600.0,
            max_size: 1000.0,
            score_thresh: 0.5,
        }
    }
}

impl PipelineConfig {
    /// Settings for `model`: the short side and the preprocessing it was trained with and its
    /// recommended score threshold (weight-file metadata `min_size`, `preprocess`,
    /// `score_thresh`), unless overridden. Without metadata: 600 px, the study's preprocessing
    /// and a score threshold of 0.5.
    pub fn for_model(
        model: &FasterRcnn,
        size: Option<usize>,
        max_size: Option<usize>,
        no_preprocess: bool,
        score_thresh: Option<f32>,
    ) -> Self {
        let score_thresh = score_thresh
            .or_else(|| recommended_score_thresh(model))
            .unwrap_or(0.5);
        let trained_size = model
            .info
            .get("min_size")
            .and_then(|v| v.parse::<usize>().ok());
        let min_size = size.or(trained_size).unwrap_or(600) as f32;
        let max_size = max_size
            .map_or(min_size * 1000.0 / 600.0, |m| m as f32)
            .max(min_size);
        let trained_raw = model.info.get("preprocess").is_some_and(|v| v == "none");
        PipelineConfig {
            preprocess: if no_preprocess || trained_raw {
                None
            } else {
                Some(PreprocessConfig::default())
            },
            min_size,
            max_size,
            score_thresh,
            ..Default::default()
        }
    }
}

/// The score threshold recorded with the model (metadata `score_thresh`, e.g. the F1-optimal
/// threshold on its held-out split), if it is a number in [0, 1].
pub fn recommended_score_thresh(model: &FasterRcnn) -> Option<f32> {
    metadata_thresh(model, "score_thresh")
}

/// The per-slice score threshold recorded for 3D linking (metadata `score_thresh_3d`, chosen on
/// whole tomograms: a box on one slice need not be as certain as a lone 2D detection, since the
/// linker's `min_slices` rejects isolated false positives), if it is a number in [0, 1].
pub fn recommended_score_thresh_3d(model: &FasterRcnn) -> Option<f32> {
    metadata_thresh(model, "score_thresh_3d")
}

fn metadata_thresh(model: &FasterRcnn, key: &str) -> Option<f32> {
    model
        .info
        .get(key)
        .and_then(|v| v.trim().parse::<f32>().ok())
        .filter(|t| (0.0..=1.0).contains(t))
}

/// A prepared image: the [0, 1] (preprocessed) image at its original size, for overlays,
/// and the network input.
pub struct Prepared {
    pub unit: Array2<f32>,
    pub input: ndarray::Array4<f32>,
    /// Size of the resized image inside the padded input, `(h, w)`.
    pub resized: (usize, usize),
    /// Size of the original image, `(h, w)`.
    pub original: (usize, usize),
}

/// Raw intensities to the network input. Non-finite pixels must have been handled by the reader.
pub fn prepare(raw: &Array2<f32>, cfg: &PipelineConfig) -> Result<Prepared> {
    let (h, w) = raw.dim();
    if h < 2 || w < 2 {
        return Err(Error::invalid(format!(
            "image is {w}x{h} pixels; need at least 2x2"
        )));
    }
    let mut unit = to_unit_range(raw.view(), cfg.scaling);
    if let Some(p) = &cfg.preprocess {
        unit = preprocess(unit.view(), p);
    }
    let (input, resized) = transform_image(unit.view(), cfg.min_size, cfg.max_size)?;
    Ok(Prepared {
        unit,
        input,
        resized,
        original: (h, w),
    })
}

/// Runs the network on a prepared image; boxes in original pixels, scores >= `score_thresh`.
pub fn detect_prepared(model: &FasterRcnn, p: &Prepared, score_thresh: f32) -> Vec<Detection> {
    let mut dets = model.forward_image(&p.input, p.resized, None);
    boxes_to_original(&mut dets.boxes, p.resized, p.original);
    to_records(&dets, &model.classes, score_thresh)
}

/// Raw image in, detections out.
pub fn detect_raw(
    model: &FasterRcnn,
    raw: &Array2<f32>,
    cfg: &PipelineConfig,
) -> Result<(Vec<Detection>, Prepared)> {
    let p = prepare(raw, cfg)?;
    let d = detect_prepared(model, &p, cfg.score_thresh);
    Ok((d, p))
}

/// Network detections to file records, by decreasing score.
pub fn to_records(d: &Detections, classes: &[String], score_thresh: f32) -> Vec<Detection> {
    (0..d.len())
        .filter(|&i| d.scores[i] >= score_thresh)
        .map(|i| Detection {
            bbox: [
                d.boxes[[i, 0]],
                d.boxes[[i, 1]],
                d.boxes[[i, 2]],
                d.boxes[[i, 3]],
            ],
            score: d.scores[i],
            label: classes
                .get(d.labels[i])
                .cloned()
                .unwrap_or_else(|| format!("class{}", d.labels[i])),
            class_id: d.labels[i],
        })
        .collect()
}

/// The shipped default weights: `$CRYODET_WEIGHTS`, else `weights/default.safetensors` in the
/// current directory, beside the executable's project, or in the source tree it was built from.
pub fn default_weights() -> Result<std::path::PathBuf> {
    shipped_weights("CRYODET_WEIGHTS", "default.safetensors")
}

/// The shipped tomogram-slice weights that `detect --3d` uses by default:
/// `$CRYODET_SLICE_WEIGHTS`, else `weights/slices.safetensors`, searched like [`default_weights`].
/// (The projection model finds almost nothing on tomogram slices; weights/README.md.)
pub fn default_slice_weights() -> Result<std::path::PathBuf> {
    shipped_weights("CRYODET_SLICE_WEIGHTS", "slices.safetensors")
}

fn shipped_weights(var: &str, file: &str) -> Result<std::path::PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Ok(p.into());
    }
    let rel = std::path::Path::new("weights").join(file);
    let mut candidates = vec![rel.clone()];
    if let Ok(exe) = std::env::current_exe() {
        for anc in exe.ancestors().skip(1).take(4) {
            candidates.push(anc.join(&rel));
        }
    }
    candidates.push(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(&rel));
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        Error::invalid(format!(
            "no --weights given and the shipped weights/{file} was not found (set {var} or pass --weights)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::fixture_path;

    #[test]
    fn score_threshold_explicit_then_metadata_then_default() {
        let mut m = FasterRcnn::load(fixture_path("model/weights_small.safetensors")).unwrap();
        m.info.remove("score_thresh");
        let cfg = |m: &FasterRcnn, t| PipelineConfig::for_model(m, None, None, false, t);
        assert_eq!(cfg(&m, None).score_thresh, 0.5);
        m.info.insert("score_thresh".into(), "0.93".into());
        assert_eq!(cfg(&m, None).score_thresh, 0.93);
        assert_eq!(cfg(&m, Some(0.2)).score_thresh, 0.2);
        // A value that is not a probability is ignored.
        for bad in ["1.5", "-0.1", "NaN", "high"] {
            m.info.insert("score_thresh".into(), bad.into());
            assert_eq!(cfg(&m, None).score_thresh, 0.5, "metadata {bad:?}");
        }
        // The 3D threshold is its own key, validated the same way.
        assert_eq!(recommended_score_thresh_3d(&m), None);
        m.info.insert("score_thresh_3d".into(), "0.9".into());
        assert_eq!(recommended_score_thresh_3d(&m), Some(0.9));
        m.info.insert("score_thresh_3d".into(), "2".into());
        assert_eq!(recommended_score_thresh_3d(&m), None);
    }
}
