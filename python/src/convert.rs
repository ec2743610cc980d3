//! Python values <-> the core's records.
//!
//! A detection is the dict of `cryodet detect`'s JSON, `{"box": (x1, y1, x2, y2), "score",
//! "label", "class_id"}` (continuous pixel coordinates, pixel `i` spans `[i, i + 1)`); the box is
//! a tuple. Whole reports (`metrics.json`, `NAME.objects.json`) come back as the core writes
//! them, through `json.loads` of the core's own JSON text, so that the dict is what the file
//! holds.

use cryodet::io::detections::Detection;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::arrays::type_name;

/// One detection as a dict.
pub fn detection_to_py<'py>(py: Python<'py>, d: &Detection) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("box", PyTuple::new(py, d.bbox.map(f64::from))?)?;
    out.set_item("score", f64::from(d.score))?;
    out.set_item("label", &d.label)?;
    out.set_item("class_id", d.class_id)?;
    Ok(out)
}

/// Detections as a list of dicts.
pub fn detections_to_py<'py>(py: Python<'py>, dets: &[Detection]) -> PyResult<Bound<'py, PyList>> {
    let items = dets
        .iter()
        .map(|d| detection_to_py(py, d))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

/// `json.loads(text)`.
pub fn json_to_py<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

/// `obj[key]` of a dict, extracted; `what` names `obj` in messages (`predictions['a'][0]`).
pub fn field<'py, T: FromPyObjectOwned<'py>>(
    obj: &Bound<'py, PyAny>,
    key: &str,
    what: &str,
) -> PyResult<T> {
    optional_field(obj, key, what)?
        .ok_or_else(|| PyValueError::new_err(format!("{what}: missing key '{key}'")))
}

/// `obj[key]` when present (and not None), extracted.
pub fn optional_field<'py, T: FromPyObjectOwned<'py>>(
    obj: &Bound<'py, PyAny>,
    key: &str,
    what: &str,
) -> PyResult<Option<T>> {
    let dict = obj.cast::<PyDict>().map_err(|_| {
        PyTypeError::new_err(format!("{what}: expected a dict, got {}", type_name(obj)))
    })?;
    match dict.get_item(key)? {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => v.extract::<T>().map(Some).map_err(|e| {
            let e: PyErr = e.into();
            PyTypeError::new_err(format!("{what}['{key}']: {}", e.value(obj.py())))
        }),
    }
}

/// A box `(x1, y1, x2, y2)`: four finite numbers with `x1 <= x2`, `y1 <= y2`.
pub fn bbox_from_py(obj: &Bound<'_, PyAny>, key: &str, what: &str) -> PyResult<[f32; 4]> {
    let v: Vec<f64> = field(obj, key, what)?;
    let b: [f64; 4] = v.try_into().map_err(|v: Vec<f64>| {
        PyValueError::new_err(format!(
            "{what}['{key}']: expected 4 numbers (x1, y1, x2, y2), got {}",
            v.len()
        ))
    })?;
    if b.iter().any(|c| !c.is_finite()) || b[2] < b[0] || b[3] < b[1] {
        return Err(PyValueError::new_err(format!(
            "{what}['{key}']: expected finite (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2, got {b:?}"
        )));
    }
    Ok(b.map(|c| c as f32))
}

/// One detection dict (`class_id` may be absent: 0).
pub fn detection_from_py(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Detection> {
    let score: f64 = field(obj, "score", what)?;
    if !score.is_finite() {
        return Err(PyValueError::new_err(format!(
            "{what}['score']: expected a finite number, got {score}"
        )));
    }
    Ok(Detection {
        bbox: bbox_from_py(obj, "box", what)?,
        score: score as f32,
        label: field(obj, "label", what)?,
        class_id: optional_field(obj, "class_id", what)?.unwrap_or(0),
    })
}

/// A list of detection dicts (as `Model.detect` returns), or a dict holding one under
/// `"detections"` (as `NAME.json` of an image does).
pub fn detections_from_py(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<Detection>> {
    let list = if obj.is_instance_of::<PyDict>() {
        field::<Bound<'_, PyAny>>(obj, "detections", what)?
    } else {
        obj.clone()
    };
    let items = list.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what}: expected a list of detection dicts, got {}",
            type_name(&list)
        ))
    })?;
    items
        .enumerate()
        .map(|(i, d)| detection_from_py(&d?, &format!("{what}[{i}]")))
        .collect()
}
