//! numpy arrays in: an image `(rows, columns)` or a volume `(z, rows, columns)` of uint8, uint16,
//! int16 or float32, in any layout (C or Fortran order, strided views, negative strides), read
//! as the core reads a file's samples: each value converted to f32 unchanged (`v as f32`), row
//! `y` and column `x` as `raw[[y, x]]` (mrcfile's `data[z, y, x]`).
//!
//! The wrong type, dtype or number of dimensions is a `TypeError` / `ValueError` that names
//! what was expected.

use ndarray::{Array2, ArrayViewD, Axis};
use numpy::{
    dtype, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// What is accepted, for messages.
const DTYPES: &str = "uint8, uint16, int16 or float32";

/// A borrowed numpy array of one of the accepted dtypes.
pub enum Pixels<'py> {
    U8(PyReadonlyArrayDyn<'py, u8>),
    U16(PyReadonlyArrayDyn<'py, u16>),
    I16(PyReadonlyArrayDyn<'py, i16>),
    F32(PyReadonlyArrayDyn<'py, f32>),
}

/// `view` (2-D) as f32 samples in a standard-layout array.
fn to_f32<T: Copy>(view: ArrayViewD<'_, T>, f: fn(T) -> f32) -> Array2<f32> {
    view.into_dimensionality::<ndarray::Ix2>()
        .expect("2-D checked by the caller")
        .mapv(f)
}

impl<'py> Pixels<'py> {
    /// `obj` as an array of `ndim` dimensions named `what` (`image`, `volume`) in messages;
    /// `layout` describes the axes, e.g. `(rows, columns)`.
    pub fn borrow(
        obj: &Bound<'py, PyAny>,
        what: &str,
        ndim: usize,
        layout: &str,
    ) -> PyResult<Self> {
        let py = obj.py();
        let arr = obj.cast::<PyUntypedArray>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{what}: expected a numpy.ndarray of {DTYPES}, got {}",
                type_name(obj)
            ))
        })?;
        if arr.ndim() != ndim {
            return Err(PyValueError::new_err(format!(
                "{what}: expected a {ndim}-D array {layout}, got a {}-D array of shape {:?}",
                arr.ndim(),
                arr.shape()
            )));
        }
        let dt = arr.dtype();
        macro_rules! as_kind {
            ($t:ty, $variant:ident) => {
                if dt.is_equiv_to(&dtype::<$t>(py)) {
                    return Ok(Pixels::$variant(arr.cast::<PyArrayDyn<$t>>()?.readonly()));
                }
            };
        }
        as_kind!(u8, U8);
        as_kind!(u16, U16);
        as_kind!(i16, I16);
        as_kind!(f32, F32);
        Err(PyTypeError::new_err(format!(
            "{what}: expected dtype {DTYPES} (native byte order), got {} (convert with .astype(numpy.float32))",
            dt
        )))
    }

    /// The array's shape.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Pixels::U8(a) => a.shape().to_vec(),
            Pixels::U16(a) => a.shape().to_vec(),
            Pixels::I16(a) => a.shape().to_vec(),
            Pixels::F32(a) => a.shape().to_vec(),
        }
    }

    /// The image (`z = None`, a 2-D array) or section `z` of the volume, as f32 samples.
    pub fn plane(&self, z: Option<usize>) -> Array2<f32> {
        fn pick<T: Copy>(a: ArrayViewD<'_, T>, z: Option<usize>) -> ArrayViewD<'_, T> {
            match z {
                Some(z) => a.index_axis_move(Axis(0), z),
                None => a,
            }
        }
        match self {
            Pixels::U8(a) => to_f32(pick(a.as_array(), z), |v| v as f32),
            Pixels::U16(a) => to_f32(pick(a.as_array(), z), |v| v as f32),
            Pixels::I16(a) => to_f32(pick(a.as_array(), z), |v| v as f32),
            Pixels::F32(a) => to_f32(pick(a.as_array(), z), |v| v),
        }
    }
}

/// `type(obj).__name__`, for messages.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".into(), |n| n.to_string())
}
