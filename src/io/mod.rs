//! Reading and writing files: images, MRC stacks, LabelImg XML, weights.

pub mod detections;
pub mod image;
pub mod mrc;
pub mod pixel_size;
pub mod voc;
pub mod weights;
