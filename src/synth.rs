//! Synthetic cryo-ET images with ground truth.
