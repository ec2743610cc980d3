//! Gradients of a network's parameters, keyed by weight name.
//!
//! ```text
//! grads[name] = dL/d(weight name)   same shape as the weight, torchvision's names (crate::params)
//! ```
//! The backward passes (backbone, RPN and RoI heads) fill it, the optimizer (`train::adam`) and
//! the gradient checks read it.

use ndarray::ArrayD;
use std::collections::BTreeMap;

/// Gradients by torchvision weight name (as in `FasterRcnn::export`).
pub type Grads = BTreeMap<String, ArrayD<f32>>;
