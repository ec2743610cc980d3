//! Training: targets (anchor and RoI matching, sampling), losses, gradients of the whole
//! network, Adam, data sets and augmentation, the training loop with safe checkpoints, and the
//! fine-tuning recipe.

pub mod adam;
pub mod augment;
pub mod data;
pub mod finetune;
pub mod grad;
pub mod init;
pub mod losses;
pub mod targets;
pub mod trainer;
