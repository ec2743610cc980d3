//! Layers. Each file holds one layer: its forward pass (fast path), its backward pass, and a
//! naive reference that the tests check the fast path against.
//!
//! Layout: feature maps are `Array4<f32>` in CNHW order `[C, N, H, W]` (see the crate docs): a
//! convolution is then `y[Co, N*OH*OW] = W[Co, Ci*kh*kw] · col[Ci*kh*kw, N*OH*OW]`, one GEMM for
//! the whole batch, and for N = 1 the memory is PyTorch's NCHW.

pub mod amx;
pub mod batchnorm;
pub mod conv;
pub mod gemm;
#[cfg(test)]
pub(crate) mod gradcheck;
pub mod grads;
pub mod linear;
pub mod maxpool;
pub mod mean;
pub mod relu;

pub use batchnorm::FrozenBatchNorm2d;
pub use conv::Conv2d;
pub use grads::Grads;
pub use linear::Linear;
pub use maxpool::MaxPool2d;
