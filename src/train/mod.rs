//! Training: targets, losses, Adam, data, the training loop.
