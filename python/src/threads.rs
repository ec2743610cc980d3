//! Computing without the GIL, on `threads=` threads.
//!
//! The core's thread setup (`cryodet::nn::gemm::set_threads`: rayon's global pool and the
//! matrix products' `MATMUL_NUM_THREADS`) is process-wide and takes effect once; the first call
//! that computes makes it, with its `threads` (default: all cores), as `cryodet detect
//! --threads` does. A later call with `threads=N` runs inside a rayon pool of N threads, so the
//! core's parallel loops use N; the matrix products keep the count of the first call (or of
//! `MATMUL_NUM_THREADS` when set before).

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::sync::Once;

static SETUP: Once = Once::new();

/// Where a call computes: the core's global threads, or a pool of `threads=` threads.
pub struct Threads(Option<rayon::ThreadPool>);

impl Threads {
    /// Checks `threads` (at least 1), makes the process-wide setup on the first call.
    pub fn new(threads: Option<usize>) -> PyResult<Threads> {
        if threads == Some(0) {
            return Err(PyValueError::new_err("threads must be at least 1"));
        }
        SETUP.call_once(|| {
            cryodet::nn::gemm::set_threads(threads.unwrap_or_else(cryodet::nn::gemm::num_threads))
        });
        let Some(n) = threads else {
            return Ok(Threads(None));
        };
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map(|p| Threads(Some(p)))
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start {n} threads: {e}")))
    }

    /// Runs `f` with the GIL released (other Python threads run meanwhile).
    pub fn run<T: Send>(&self, py: Python<'_>, f: impl FnOnce() -> T + Send) -> T {
        match &self.0 {
            None => py.detach(f),
            Some(pool) => py.detach(|| pool.install(f)),
        }
    }
}
