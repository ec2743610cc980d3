//! cryodet: a hand-written, CPU-only Faster R-CNN (ResNet-50 C4) for organelles in cryo-ET.
//!
//! Modules follow the data (the study's Fig. 1):
//! io -> preprocess -> nn/backbone -> detection (rpn) -> detection (roi head) -> postprocess;
//! train (targets, losses, optimizer); eval.
//!
//! Tensor layout. Feature maps are `ndarray::Array4<f32>` in **CNHW** order: `[C, N, H, W]`.
//! For one image (N = 1) this is the same memory as PyTorch's NCHW. For a batch of RoIs it puts
//! all RoIs side by side in the columns of one matrix `[C, N*H*W]`, so every convolution of the
//! RoI head (layer4 over 300 RoIs) is ONE large GEMM instead of 300 small ones.

pub mod error;

pub mod io;
pub mod preprocess;
pub mod transform;

pub mod arch;
pub mod backbone;
pub mod detection;
pub mod model;
pub mod nn;
pub mod params;
pub mod pipeline;

pub mod draw;
pub mod eval;
pub mod synth;
pub mod train;
pub mod volume;

pub mod cli;
/// Test helpers: compiled for the unit tests and, through the `testutil` feature that the
/// dev-dependency on this crate turns on, for the integration tests; not in a release build.
#[cfg(any(test, feature = "testutil"))]
pub mod testutil;

pub use error::{Error, Result};
