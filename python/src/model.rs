//! `cryodet.load_model` and `Model`: `cryodet detect` on numpy arrays.
//!
//! `Model.detect(image)` is `cryodet detect IMAGE` for one 2-D array: the same
//! `PipelineConfig::for_detect`, non-finite check (`io::image::check_finite_in`) and
//! `pipeline::detect_clipped`, so the detections equal the CLI's `NAME.json` on the same pixels.
//! `Model.detect_volume(volume)` is `cryodet detect STACK --3d`: every `stride`-th section
//! detected the same way (with the 3D score threshold), then `volume::link_slices` with
//! `LinkConfig::for_stacks` and the given options, the objects as `NAME.objects.json` holds them.

use std::path::{Path, PathBuf};

use cryodet::io::detections::{Detection, SliceDetections, StackDetections};
use cryodet::io::image::check_finite_in;
use cryodet::io::pixel_size::PixelSize;
use cryodet::io::weights::WeightFile;
use cryodet::model::FasterRcnn;
use cryodet::pipeline::{self, detect_clipped, DetectOptions, PipelineConfig};
use cryodet::volume::{self, LinkConfig};
use ndarray::Array2;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::arrays::Pixels;
use crate::convert::{detections_to_py, json_to_py};
use crate::errors::{warn, IntoPy};
use crate::threads::Threads;

/// The shipped models (weights/), built into the module so that `load_model()` works wherever
/// the package is installed.
const SHIPPED_DEFAULT: &[u8] = include_bytes!("../../weights/default.safetensors");
const SHIPPED_SLICES: &[u8] = include_bytes!("../../weights/slices.safetensors");

/// The end of the non-finite error: the Python spelling of `--mask-nonfinite`.
const MASK_HINT: &str = "pass mask_nonfinite=True to replace them by the median";

/// A loaded detector (immutable; one model may serve several threads).
#[pyclass(frozen, module = "cryodet")]
pub struct Model {
    model: FasterRcnn,
    path: String,
}

/// Loads weights: `None` the shipped default model, `"slices"` the shipped slice model (each
/// the file named by the CLI's environment variable when set, else the copy built into the
/// module), else a safetensors file.
#[pyfunction]
#[pyo3(signature = (path=None))]
pub fn load_model(py: Python<'_>, path: Option<PathBuf>) -> PyResult<Model> {
    let shipped = |var: &str, name: &str, bytes: &'static [u8]| match std::env::var_os(var) {
        Some(p) => (PathBuf::from(p), None),
        None => (
            PathBuf::from(format!("<built-in weights/{name}>")),
            Some(bytes),
        ),
    };
    let (path, bytes) = match path {
        None => shipped(
            pipeline::WEIGHTS_ENV,
            "default.safetensors",
            SHIPPED_DEFAULT,
        ),
        Some(p) if p == Path::new("slices") => shipped(
            pipeline::SLICE_WEIGHTS_ENV,
            "slices.safetensors",
            SHIPPED_SLICES,
        ),
        Some(p) => (p, None),
    };
    let model = py
        .detach(|| match bytes {
            Some(b) => WeightFile::from_bytes(&path, b).and_then(FasterRcnn::from_weights),
            None => FasterRcnn::load(&path),
        })
        .py_err()?;
    Ok(Model {
        model,
        path: path.display().to_string(),
    })
}

impl Model {
    /// `cryodet detect`'s configuration with these options (`three_d`: `--3d`).
    fn config(
        &self,
        pixel_size: Option<f32>,
        score_thresh: Option<f32>,
        preprocess: Option<bool>,
        three_d: bool,
    ) -> PyResult<(PipelineConfig, Option<PixelSize>)> {
        let cfg = PipelineConfig::for_detect(
            &self.model,
            &DetectOptions {
                preprocess,
                score_thresh,
                pixel_size,
                three_d,
                ..Default::default()
            },
        )
        .py_err()?;
        let pixel = cfg.pixel_size.map(|nm| PixelSize {
            nm,
            source: "pixel_size",
        });
        Ok((cfg, pixel))
    }

    /// One image, or section `z` of a volume, as `detect` treats one file's pixels: the
    /// non-finite check (errors begin with `what`), then `detect_clipped`. Returns the
    /// detections and the number of masked pixels.
    fn detect_plane(
        &self,
        what: &str,
        z: Option<usize>,
        raw: Array2<f32>,
        mask_nonfinite: bool,
        cfg: &PipelineConfig,
        pixel: Option<PixelSize>,
    ) -> cryodet::Result<(Vec<Detection>, usize)> {
        let (raw, masked) = check_finite_in(Path::new(what), raw, mask_nonfinite, z, MASK_HINT)?;
        detect_clipped(&self.model, &raw, cfg, pixel).map(|(d, _)| (d, masked))
    }
}

/// The CLI's warning for pixels replaced by the median.
fn warn_masked(py: Python<'_>, what: &str, masked: usize) -> PyResult<()> {
    if masked == 0 {
        return Ok(());
    }
    warn(
        py,
        format!("{what}: {masked} NaN/Inf pixel(s) replaced by the median"),
    )
}

/// The linking configuration: [`LinkConfig::for_stacks`] with the keyword options, spelled as
/// `detect --3d`'s (`link_iou`, `max_gap`, `min_slices`, `fragment_overlap`, `smooth`,
/// `merge_iou`, `merge_gap`), then checked.
fn link_config(stride: usize, opts: Option<&Bound<'_, PyDict>>) -> PyResult<LinkConfig> {
    let mut c = LinkConfig {
        stride,
        ..LinkConfig::for_stacks()
    };
    for (k, v) in opts.into_iter().flat_map(|d| d.iter()) {
        let k: String = k.extract()?;
        match k.as_str() {
            "link_iou" => c.iou_threshold = v.extract()?,
            "max_gap" => c.max_gap = v.extract()?,
            "min_slices" => c.min_slices = v.extract()?,
            "fragment_overlap" => c.fragment_overlap = v.extract()?,
            "smooth" => c.smooth_window = v.extract()?,
            "merge_iou" => c.merge_iou = v.extract()?,
            "merge_gap" => c.merge_max_gap = v.extract()?,
            other => {
                return Err(PyTypeError::new_err(format!(
                    "detect_volume() got an unexpected keyword argument '{other}' (linking \
                     options: link_iou, max_gap, min_slices, fragment_overlap, smooth, merge_iou, \
                     merge_gap)"
                )))
            }
        }
    }
    c.checked().py_err()
}

#[pymethods]
impl Model {
    /// Detections on one 2-D image (see _cryodet.pyi).
    #[pyo3(signature = (image, pixel_size=None, score_thresh=None, preprocess=None, threads=None, mask_nonfinite=false))]
    #[allow(clippy::too_many_arguments)]
    fn detect<'py>(
        &self,
        py: Python<'py>,
        image: &Bound<'py, PyAny>,
        pixel_size: Option<f32>,
        score_thresh: Option<f32>,
        preprocess: Option<bool>,
        threads: Option<usize>,
        mask_nonfinite: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let (cfg, pixel) = self.config(pixel_size, score_thresh, preprocess, false)?;
        let raw = Pixels::borrow(image, "image", 2, "(rows, columns)")?.plane(None);
        let pool = Threads::new(threads)?;
        let (dets, masked) = pool
            .run(py, || {
                self.detect_plane("image", None, raw, mask_nonfinite, &cfg, pixel)
            })
            .py_err()?;
        warn_masked(py, "image", masked)?;
        detections_to_py(py, &dets)
    }

    /// Per-section detections and 3D objects of a volume `(z, rows, columns)` (see _cryodet.pyi).
    #[pyo3(signature = (volume, pixel_size=None, stride=1, link=true, score_thresh=None, preprocess=None, threads=None, mask_nonfinite=false, **link_options))]
    #[allow(clippy::too_many_arguments)]
    fn detect_volume<'py>(
        &self,
        py: Python<'py>,
        volume: &Bound<'py, PyAny>,
        pixel_size: Option<f32>,
        stride: usize,
        link: bool,
        score_thresh: Option<f32>,
        preprocess: Option<bool>,
        threads: Option<usize>,
        mask_nonfinite: bool,
        link_options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        if stride == 0 {
            return Err(PyValueError::new_err("stride must be at least 1"));
        }
        let link_cfg = link_config(stride, link_options)?;
        let (cfg, pixel) = self.config(pixel_size, score_thresh, preprocess, true)?;
        let vol = Pixels::borrow(volume, "volume", 3, "(z, rows, columns)")?;
        let (nz, ny, nx) = match vol.shape()[..] {
            [z, y, x] => (z, y, x),
            _ => unreachable!("3-D checked by Pixels::borrow"),
        };
        let pool = Threads::new(threads)?;
        let mut slices = Vec::new();
        for z in (0..nz).step_by(stride) {
            // The section is copied with the GIL held, detected without it.
            let raw = vol.plane(Some(z));
            let (detections, masked) = pool
                .run(py, || {
                    self.detect_plane("volume", Some(z), raw, mask_nonfinite, &cfg, pixel)
                })
                .py_err()?;
            warn_masked(py, &format!("volume: slice {z}"), masked)?;
            slices.push(SliceDetections { z, detections });
        }
        let stack = StackDetections {
            image: "<numpy array>".into(),
            width: nx as u32,
            height: ny as u32,
            depth: nz as u32,
            slices,
            precision: None,
        };
        let out = PyDict::new(py);
        out.set_item("width", nx)?;
        out.set_item("height", ny)?;
        out.set_item("depth", nz)?;
        let py_slices = PyList::empty(py);
        for s in &stack.slices {
            let d = PyDict::new(py);
            d.set_item("z", s.z)?;
            d.set_item("detections", detections_to_py(py, &s.detections)?)?;
            py_slices.append(d)?;
        }
        out.set_item("slices", py_slices)?;
        if link {
            let text = pool.run(py, || {
                let objects = volume::link_slices(&volume::slice_boxes(&stack), &link_cfg);
                volume::objects_json(&objects, &self.model.classes)
            });
            let text = text.map_err(|e| PyValueError::new_err(format!("objects: {e}")))?;
            out.set_item("objects", json_to_py(py, &text)?.get_item("objects")?)?;
        } else {
            out.set_item("objects", py.None())?;
        }
        Ok(out)
    }

    /// Class names, index = `class_id` (0 is the background).
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.model.classes.clone()
    }

    /// The weight file the model was loaded from.
    #[getter]
    fn path(&self) -> String {
        self.path.clone()
    }

    /// The weight file's metadata (e.g. `min_size`, `score_thresh`, `pixel_size_nm`).
    #[getter]
    fn metadata(&self) -> std::collections::BTreeMap<String, String> {
        self.model.info.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "cryodet.Model({:?}, classes={:?})",
            self.path,
            &self.model.classes[1.min(self.model.classes.len())..]
        )
    }
}
