//! Core errors as Python exceptions, carrying the message the CLI prints after `error: `.
//!
//! `Error::Io` -> `OSError` (`FileNotFoundError`, `PermissionError`, `FileExistsError` by the
//! OS's reason); every other kind (a malformed file, a weight file that does not fit, a bad
//! argument) -> `ValueError`.

use cryodet::Error;
use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyOSError, PyPermissionError, PyValueError,
};
use pyo3::PyErr;
use std::io::ErrorKind;

/// The Python exception of a core error; its message is the error's one line.
pub fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match &e {
        Error::Io { source, .. } => match source.kind() {
            ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
            ErrorKind::PermissionDenied => PyPermissionError::new_err(msg),
            ErrorKind::AlreadyExists => PyFileExistsError::new_err(msg),
            _ => PyOSError::new_err(msg),
        },
        Error::Format { .. } | Error::Weights { .. } | Error::Invalid(_) => {
            PyValueError::new_err(msg)
        }
    }
}

/// `Result` of the core into `PyResult`.
pub trait IntoPy<T> {
    fn py_err(self) -> pyo3::PyResult<T>;
}

impl<T> IntoPy<T> for cryodet::Result<T> {
    fn py_err(self) -> pyo3::PyResult<T> {
        self.map_err(to_py)
    }
}

/// `warnings.warn(msg)` (a `UserWarning`), as the CLI's `warning:` / `note:` lines.
pub fn warn(py: pyo3::Python<'_>, msg: String) -> pyo3::PyResult<()> {
    use pyo3::exceptions::PyUserWarning;
    use pyo3::PyTypeInfo;
    PyErr::warn(
        py,
        &PyUserWarning::type_object(py),
        &std::ffi::CString::new(msg)?,
        1,
    )
}
