//! `cryodet._cryodet`, the extension module of the `cryodet` Python package (python/cryodet/).
//!
//! Bindings only: every computation is the core crate's (`cryodet::pipeline` for detection,
//! `cryodet::volume` for 3D linking, `cryodet::eval` for metrics, `cryodet::io::voc` for LabelImg
//! files), called as `cryodet detect`, `detect --3d`, `eval` and `--format voc` call it. This
//! crate converts numpy arrays and Python values into the core's types and back
//! ([`arrays`], [`convert`]), turns core errors into Python exceptions with the same one-line
//! message ([`errors`]), and releases the GIL while the core computes ([`threads`]).
//! The Python signatures, with shapes and defaults, are in python/cryodet/_cryodet.pyi.

use pyo3::prelude::*;

mod arrays;
mod convert;
mod errors;
mod eval;
mod model;
mod threads;
mod voc;

#[pymodule]
fn _cryodet(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<model::Model>()?;
    m.add_function(wrap_pyfunction!(model::load_model, m)?)?;
    m.add_function(wrap_pyfunction!(eval::evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(voc::read_voc, m)?)?;
    m.add_function(wrap_pyfunction!(voc::write_voc, m)?)?;
    Ok(())
}
