//! From a raw image to detections in its own pixels: the study's Fig. 1 end to end.
//!
//! The scale of the network input comes first (see [`choose_scale`]):
//! - **physical scale**, when the file's pixel size is known (`--pixel-size`, else the file's
//!   own: `crate::io::pixel_size`) and the model records the pixel size of its network input
//!   (metadata `pixel_size_nm`): the image is resampled by `s = file_nm / model_nm`, so the
//!   network sees every file at the pixel size it was trained at. The long side is capped at
//!   [`MAX_INPUT`] px (then `s` is lowered, with a note);
//! - otherwise the `--size` rule of today: `s = min(min_size / short side, max_size / long side)`.
//!
//! Then, by the model's metadata `preprocess_order`:
//! ```text
//! "resample-first" (models trained since issue 14):
//!   raw -> to [0, 1] (percentiles 0.1 / 99.9, transform::Scaling)
//!       -> anti-aliased resample by s (transform::resample_antialiased)
//!       -> preprocess at the network resolution: bilateral filter + histogram equalization
//!       -> ImageNet normalization, gray to 3 channels, pad to 32
//! absent (older models, the study's order):
//!   raw -> to [0, 1] -> preprocess at full resolution
//!       -> ImageNet normalization, resize by s (torch's bilinear for the --size rule, exactly as
//!          before; anti-aliased for a physical scale), pad to 32
//! both: -> FasterRcnn::forward_image -> boxes on the network input
//!       -> boxes scaled back to the original pixels (torchvision's transform.postprocess)
//! ```

use crate::detection::postprocess::Detections;
use crate::error::{Error, Result};
use crate::io::detections::Detection;
use crate::io::pixel_size::PixelSize;
use crate::model::FasterRcnn;
use crate::preprocess::{preprocess, PreprocessConfig};
use crate::transform::{
    boxes_to_original, input_without_resize, resample_antialiased, resize_scale, resized_size,
    to_unit_range, transform_image, Scaling,
};
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
    /// nm per pixel of the network input (model metadata `pixel_size_nm`); `None`: the
    /// `--size` rule for every file.
    pub model_pixel_nm: Option<f32>,
    /// Resample before the preprocessing (metadata `preprocess_order = "resample-first"`).
    pub resample_first: bool,
    /// Upper bound of the long side of the network input at a physical scale.
    pub max_input: usize,
    /// `--pixel-size`: nm per pixel of every input file, overriding what the files record.
    pub pixel_size: Option<f32>,
}

/// Default cap of the network input's long side at a physical scale (px).
pub const MAX_INPUT: usize = 2000;
/// Metadata key: nm per pixel of the network input.
pub const PIXEL_SIZE_KEY: &str = "pixel_size_nm";
/// Metadata key of the preprocessing order; [`RESAMPLE_FIRST`] or absent (the study's order).
pub const ORDER_KEY: &str = "preprocess_order";
/// Value of [`ORDER_KEY`]: resample to the network resolution, then preprocess.
pub const RESAMPLE_FIRST: &str = "resample-first";

/// The model's `pixel_size_nm` metadata, if it is a positive finite number.
pub fn model_pixel_size(model: &FasterRcnn) -> Option<f32> {
    model
        .info
        .get(PIXEL_SIZE_KEY)
        .and_then(|v| v.trim().parse::<f32>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
}

/// True when the model's metadata asks for resampling before the preprocessing.
pub fn model_resamples_first(model: &FasterRcnn) -> bool {
    model
        .info
        .get(ORDER_KEY)
        .is_some_and(|v| v == RESAMPLE_FIRST)
}

/// The scale at which one image enters the network, and how it was chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleChoice {
    /// Network-input size `(h, w)` before padding.
    pub out: (usize, usize),
    /// Nominal factor (network px per file px).
    pub factor: f64,
    /// True when a physical pixel size set the factor.
    pub physical: bool,
    /// One line for humans: `pixel 0.26 nm (MRC header) -> 2.50 nm, x0.104` or
    /// `pixel size unknown: short side 600`.
    pub note: String,
}

/// The scale of an `h x w` image with pixel size `pixel` (`None`: unknown) under `cfg`: the
/// physical one when both the file's and the model's pixel sizes are known, else the `--size`
/// rule (module doc). The network input is at least 1 px per side and its long side at most
/// `cfg.max_input` px at a physical scale.
pub fn choose_scale(
    h: usize,
    w: usize,
    cfg: &PipelineConfig,
    pixel: Option<PixelSize>,
) -> ScaleChoice {
    let size_rule = |why: String| {
        let factor = resize_scale(h, w, cfg.min_size, cfg.max_size);
        ScaleChoice {
            out: resized_size(h, w, factor),
            factor,
            physical: false,
            note: format!("{why}: short side {}", cfg.min_size),
        }
    };
    let Some(p) = pixel else {
        return size_rule("pixel size unknown".into());
    };
    let Some(model_nm) = cfg.model_pixel_nm else {
        return size_rule(format!(
            "pixel {:.3} nm ({}), the model records no pixel size",
            p.nm, p.source
        ));
    };
    let mut factor = p.nm as f64 / model_nm as f64;
    let mut note = format!(
        "pixel {:.3} nm ({}) -> {:.2} nm, x{:.3}",
        p.nm, p.source, model_nm, factor
    );
    let long = h.max(w) as f64;
    if long * factor > cfg.max_input as f64 {
        factor = cfg.max_input as f64 / long;
        note.push_str(&format!(
            ", capped at long side {} (x{factor:.3}, {:.2} nm)",
            cfg.max_input,
            p.nm as f64 / factor
        ));
    }
    let side = |n: usize| ((n as f64 * factor).round() as usize).max(1);
    ScaleChoice {
        out: (side(h), side(w)),
        factor,
        physical: true,
        note,
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            preprocess: Some(PreprocessConfig::default()),
            scaling: Scaling::default(),
            min_size: 600.0,
            max_size: 1000.0,
            score_thresh: 0.5,
            model_pixel_nm: None,
            resample_first: false,
            max_input: MAX_INPUT,
            pixel_size: None,
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
            model_pixel_nm: model_pixel_size(model),
            resample_first: model_resamples_first(model),
            ..Default::default()
        }
    }

    /// The pixel size of the file at `path`: `--pixel-size` when given, else the file's own
    /// (`crate::io::pixel_size`), else unknown.
    pub fn pixel_size_of(&self, path: &std::path::Path) -> Result<Option<PixelSize>> {
        if let Some(nm) = self.pixel_size {
            return Ok(Some(PixelSize {
                nm,
                source: "--pixel-size",
            }));
        }
        crate::io::pixel_size::read_pixel_size(path)
    }
}

/// The options of `cryodet detect` that shape the pipeline (the Python package's `Model.detect`
/// and `Model.detect_volume` take the same ones); [`PipelineConfig::for_detect`] checks them.
#[derive(Debug, Clone, Default)]
pub struct DetectOptions {
    /// `--size`: short side of the network input (default: the model's `min_size`, else 600).
    pub size: Option<usize>,
    /// `--max-size`: upper bound of the long side (default 1000/600 of the short side).
    pub max_size: Option<usize>,
    /// `Some(false)`: skip the study's preprocessing (`--no-preprocess`); `Some(true)`: apply it
    /// even to a model trained without it; `None`: as the model's metadata says.
    pub preprocess: Option<bool>,
    /// `--score-thresh` (default: the model's `score_thresh`, with `three_d` its
    /// `score_thresh_3d` when recorded, else 0.5).
    pub score_thresh: Option<f32>,
    /// `--pixel-size`: nm per pixel of the input, overriding what the file records.
    pub pixel_size: Option<f32>,
    /// `--max-input` (default [`MAX_INPUT`]).
    pub max_input: Option<usize>,
    /// `--3d`: slices of a tomogram to be linked (chooses the 3D score threshold).
    pub three_d: bool,
}

impl PipelineConfig {
    /// The checked configuration of `cryodet detect` with `opts` for `model`: a finite score
    /// threshold (else the model's, see [`DetectOptions::score_thresh`]), [`Self::for_model`],
    /// then [`check_pixel_size`] and [`check_max_input`].
    pub fn for_detect(model: &FasterRcnn, opts: &DetectOptions) -> Result<Self> {
        if let Some(t) = opts.score_thresh.filter(|t| !t.is_finite()) {
            return Err(Error::invalid(format!(
                "--score-thresh {t} must be a finite number"
            )));
        }
        let score_thresh = opts.score_thresh.or_else(|| {
            opts.three_d
                .then(|| recommended_score_thresh_3d(model))
                .flatten()
        });
        let mut cfg = PipelineConfig::for_model(
            model,
            opts.size,
            opts.max_size,
            opts.preprocess == Some(false),
            score_thresh,
        );
        if opts.preprocess == Some(true) {
            cfg.preprocess = Some(PreprocessConfig::default());
        }
        cfg.pixel_size = check_pixel_size(opts.pixel_size)?;
        cfg.max_input = check_max_input(opts.max_input.unwrap_or(MAX_INPUT))?;
        Ok(cfg)
    }
}

/// Validates `--pixel-size`: a positive finite number of nm (within `io::pixel_size::PLAUSIBLE_NM`).
pub fn check_pixel_size(nm: Option<f32>) -> Result<Option<f32>> {
    match nm {
        Some(v) if !crate::io::pixel_size::PLAUSIBLE_NM.contains(&v) => Err(Error::invalid(
            format!("--pixel-size {v}: expected nm per pixel in 0.01..=10000"),
        )),
        other => Ok(other),
    }
}

/// Validates `--max-input` (at least 32 px).
pub fn check_max_input(px: usize) -> Result<usize> {
    if px < 32 {
        return Err(Error::invalid(format!(
            "--max-input {px}: must be at least 32 px"
        )));
    }
    Ok(px)
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

/// A prepared image: the [0, 1] image at its original size, for overlays (preprocessed in the
/// study's order; not preprocessed when resampling comes first, since the preprocessing then
/// runs at the network resolution only), and the network input.
pub struct Prepared {
    pub unit: Array2<f32>,
    pub input: ndarray::Array4<f32>,
    /// Size of the resized image inside the padded input, `(h, w)`.
    pub resized: (usize, usize),
    /// Size of the original image, `(h, w)`.
    pub original: (usize, usize),
    /// The scale used and how it was chosen.
    pub scale: ScaleChoice,
}

/// Raw intensities to the network input at the `--size` rule's scale (pixel size unknown).
/// Non-finite pixels must have been handled by the reader.
pub fn prepare(raw: &Array2<f32>, cfg: &PipelineConfig) -> Result<Prepared> {
    prepare_at(raw, cfg, None)
}

/// Raw intensities to the network input for a file of pixel size `pixel` (module doc).
pub fn prepare_at(
    raw: &Array2<f32>,
    cfg: &PipelineConfig,
    pixel: Option<PixelSize>,
) -> Result<Prepared> {
    let (h, w) = raw.dim();
    if h < 2 || w < 2 {
        return Err(Error::invalid(format!(
            "image is {w}x{h} pixels; need at least 2x2"
        )));
    }
    let scale = choose_scale(h, w, cfg, pixel);
    let mut unit = to_unit_range(raw.view(), cfg.scaling);
    if cfg.resample_first {
        let (oh, ow) = scale.out;
        let mut small = resample_antialiased(unit.view(), oh, ow);
        if let Some(p) = &cfg.preprocess {
            small = preprocess(small.view(), p);
        }
        return Ok(Prepared {
            unit,
            input: input_without_resize(small.view()),
            resized: (oh, ow),
            original: (h, w),
            scale,
        });
    }
    if let Some(p) = &cfg.preprocess {
        unit = preprocess(unit.view(), p);
    }
    let (input, resized) = if scale.physical {
        let (oh, ow) = scale.out;
        let small = resample_antialiased(unit.view(), oh, ow);
        (input_without_resize(small.view()), (oh, ow))
    } else {
        transform_image(unit.view(), cfg.min_size, cfg.max_size)?
    };
    Ok(Prepared {
        unit,
        input,
        resized,
        original: (h, w),
        scale,
    })
}

/// Runs the network on a prepared image; boxes in original pixels, scores >= `score_thresh`.
pub fn detect_prepared(model: &FasterRcnn, p: &Prepared, score_thresh: f32) -> Vec<Detection> {
    let mut dets = model.forward_image(&p.input, p.resized, None);
    boxes_to_original(&mut dets.boxes, p.resized, p.original);
    to_records(&dets, &model.classes, score_thresh)
}

/// Raw image in, detections out (pixel size unknown: the `--size` rule).
pub fn detect_raw(
    model: &FasterRcnn,
    raw: &Array2<f32>,
    cfg: &PipelineConfig,
) -> Result<(Vec<Detection>, Prepared)> {
    detect_raw_at(model, raw, cfg, None)
}

/// Raw image of pixel size `pixel` in, detections out (`Prepared::scale` says which scale).
pub fn detect_raw_at(
    model: &FasterRcnn,
    raw: &Array2<f32>,
    cfg: &PipelineConfig,
    pixel: Option<PixelSize>,
) -> Result<(Vec<Detection>, Prepared)> {
    let p = prepare_at(raw, cfg, pixel)?;
    let d = detect_prepared(model, &p, cfg.score_thresh);
    Ok((d, p))
}

/// Detections of a raw image as `cryodet detect` reports them: [`detect_raw_at`], then boxes
/// clipped to the image ([`clip_to_image`]).
pub fn detect_clipped(
    model: &FasterRcnn,
    raw: &Array2<f32>,
    cfg: &PipelineConfig,
    pixel: Option<PixelSize>,
) -> Result<(Vec<Detection>, Prepared)> {
    let (mut dets, p) = detect_raw_at(model, raw, cfg, pixel)?;
    let (h, w) = raw.dim();
    clip_to_image(&mut dets, h, w);
    Ok((dets, p))
}

/// Clip boxes to the image `[0, w] x [0, h]` after the mapping back to original pixels (the
/// f32 ratio can overshoot the border: 640.00006 on a 640-pixel side); boxes left empty are
/// dropped.
pub fn clip_to_image(dets: &mut Vec<Detection>, h: usize, w: usize) {
    let (wf, hf) = (w as f32, h as f32);
    for d in dets.iter_mut() {
        let b = &mut d.bbox;
        b[0] = b[0].clamp(0.0, wf);
        b[2] = b[2].clamp(0.0, wf);
        b[1] = b[1].clamp(0.0, hf);
        b[3] = b[3].clamp(0.0, hf);
    }
    dets.retain(|d| d.bbox[0] < d.bbox[2] && d.bbox[1] < d.bbox[3]);
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

/// Environment variable naming the default weights ([`default_weights`]).
pub const WEIGHTS_ENV: &str = "CRYODET_WEIGHTS";
/// Environment variable naming the slice weights ([`default_slice_weights`]).
pub const SLICE_WEIGHTS_ENV: &str = "CRYODET_SLICE_WEIGHTS";

/// The shipped default weights: `$CRYODET_WEIGHTS`, else `weights/default.safetensors` in the
/// current directory, beside the executable's project, or in the source tree it was built from.
pub fn default_weights() -> Result<std::path::PathBuf> {
    shipped_weights(WEIGHTS_ENV, "default.safetensors")
}

/// The shipped tomogram-slice weights that `detect --3d` uses by default:
/// `$CRYODET_SLICE_WEIGHTS`, else `weights/slices.safetensors`, searched like [`default_weights`].
/// (The projection model finds almost nothing on tomogram slices; weights/README.md.)
pub fn default_slice_weights() -> Result<std::path::PathBuf> {
    shipped_weights(SLICE_WEIGHTS_ENV, "slices.safetensors")
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

    #[test]
    fn detect_options_choose_threshold_preprocessing_and_are_checked() {
        let mut m = FasterRcnn::load(fixture_path("model/weights_small.safetensors")).unwrap();
        m.info.insert("score_thresh".into(), "0.8".into());
        m.info.insert("score_thresh_3d".into(), "0.6".into());
        let cfg = |m: &FasterRcnn, o: DetectOptions| PipelineConfig::for_detect(m, &o);
        let three_d = DetectOptions {
            three_d: true,
            ..Default::default()
        };
        assert_eq!(cfg(&m, DetectOptions::default()).unwrap().score_thresh, 0.8);
        assert_eq!(cfg(&m, three_d.clone()).unwrap().score_thresh, 0.6);
        let given = DetectOptions {
            score_thresh: Some(0.3),
            ..three_d
        };
        assert_eq!(cfg(&m, given).unwrap().score_thresh, 0.3);
        // Preprocessing: the model's (its metadata), skipped, or forced on a raw-trained model.
        let pre = |m: &FasterRcnn, p: Option<bool>| {
            let o = DetectOptions {
                preprocess: p,
                ..Default::default()
            };
            cfg(m, o).unwrap().preprocess.is_some()
        };
        m.info.remove("preprocess");
        assert!(pre(&m, None) && pre(&m, Some(true)) && !pre(&m, Some(false)));
        m.info.insert("preprocess".into(), "none".into());
        assert!(!pre(&m, None) && pre(&m, Some(true)) && !pre(&m, Some(false)));
        // Checked values.
        let bad = [
            DetectOptions {
                score_thresh: Some(f32::NAN),
                ..Default::default()
            },
            DetectOptions {
                pixel_size: Some(0.0),
                ..Default::default()
            },
            DetectOptions {
                max_input: Some(8),
                ..Default::default()
            },
        ];
        for o in bad {
            assert!(cfg(&m, o.clone()).is_err(), "{o:?}");
        }
        assert_eq!(
            cfg(&m, DetectOptions::default()).unwrap().max_input,
            MAX_INPUT
        );
    }
}
