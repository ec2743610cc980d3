//! Training: targets (anchor and RoI matching, sampling), losses, gradients of the whole
//! network, Adam, data sets and augmentation, and the training loop with safe checkpoints.

pub mod adam;
pub mod augment;
pub mod data;
pub mod grad;
pub mod init;
pub mod losses;
pub mod targets;
pub mod trainer;
