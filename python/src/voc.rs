//! `cryodet.read_voc` and `cryodet.write_voc`: LabelImg (Pascal VOC) XML through
//! `cryodet::io::voc`, as `cryodet train` / `eval` read it and `detect --format voc` writes it.
//!
//! An annotation is the dict `{"filename", "path", "width", "height", "depth", "objects":
//! [{"name", "box": (x1, y1, x2, y2), "difficult", "truncated"}]}` with continuous boxes
//! (`x1 = xmin - 1`, `x2 = xmax`; `io::voc` documents the rounding on writing).

use std::path::PathBuf;

use cryodet::io::voc::{self, VocAnnotation, VocObject};
use pyo3::exceptions::{PyFileExistsError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::arrays::type_name;
use crate::convert::{bbox_from_py, detections_from_py, field, optional_field};
use crate::errors::IntoPy;

/// An annotation as a dict.
fn annotation_to_py<'py>(py: Python<'py>, a: &VocAnnotation) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("filename", &a.filename)?;
    out.set_item("path", &a.path)?;
    out.set_item("width", a.width)?;
    out.set_item("height", a.height)?;
    out.set_item("depth", a.depth)?;
    let objects = a
        .objects
        .iter()
        .map(|o| {
            let d = PyDict::new(py);
            d.set_item("name", &o.name)?;
            d.set_item("box", PyTuple::new(py, o.bbox.map(f64::from))?)?;
            d.set_item("difficult", o.difficult)?;
            d.set_item("truncated", o.truncated)?;
            Ok(d)
        })
        .collect::<PyResult<Vec<_>>>()?;
    out.set_item("objects", objects)?;
    Ok(out)
}

/// An annotation dict (as [`read_voc`] returns it; only `objects` with each object's `name` and
/// `box` are required: `width`/`height` 0 mean unknown, flags default to false).
pub fn annotation_from_py(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<VocAnnotation> {
    let objects: Bound<'_, PyAny> = field(obj, "objects", what)?;
    let items = objects.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what}['objects']: expected a list of object dicts, got {}",
            type_name(&objects)
        ))
    })?;
    let objects = items
        .enumerate()
        .map(|(i, o)| {
            let o = o?;
            let at = format!("{what}['objects'][{i}]");
            Ok(VocObject {
                name: field(&o, "name", &at)?,
                bbox: bbox_from_py(&o, "box", &at)?,
                difficult: optional_field(&o, "difficult", &at)?.unwrap_or(false),
                truncated: optional_field(&o, "truncated", &at)?.unwrap_or(false),
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    Ok(VocAnnotation {
        filename: optional_field(obj, "filename", what)?.unwrap_or_default(),
        path: optional_field(obj, "path", what)?,
        width: optional_field(obj, "width", what)?.unwrap_or(0),
        height: optional_field(obj, "height", what)?.unwrap_or(0),
        depth: optional_field(obj, "depth", what)?.unwrap_or(1),
        objects,
    })
}

/// Reads one LabelImg XML file (see _cryodet.pyi).
#[pyfunction]
pub fn read_voc(py: Python<'_>, path: PathBuf) -> PyResult<Bound<'_, PyDict>> {
    let ann = voc::read_voc(&path).py_err()?;
    annotation_to_py(py, &ann)
}

/// Writes detections as LabelImg XML, as `detect --format voc` does (see _cryodet.pyi).
#[pyfunction]
#[pyo3(signature = (path, detections, image_shape, filename=None, image_path=None, overwrite=false))]
pub fn write_voc(
    path: PathBuf,
    detections: &Bound<'_, PyAny>,
    image_shape: Vec<usize>,
    filename: Option<String>,
    image_path: Option<String>,
    overwrite: bool,
) -> PyResult<()> {
    let [h, w] = image_shape[..] else {
        return Err(PyValueError::new_err(format!(
            "image_shape: expected (rows, columns), got {image_shape:?}"
        )));
    };
    let dets = detections_from_py(detections, "detections")?;
    if !overwrite && path.exists() {
        return Err(PyFileExistsError::new_err(format!(
            "{}: exists; pass overwrite=True to replace it",
            path.display()
        )));
    }
    let filename = filename.unwrap_or_else(|| {
        path.file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
    });
    let ann = VocAnnotation::of_detections(filename, image_path, (h, w), &dets);
    voc::write_voc(&path, &ann).py_err()
}
