//! The detection pieces of the study's Fig. 1, one concept per file.

pub mod anchors;
pub mod box_coder;
pub mod nms;
pub mod postprocess;
pub mod proposals;
pub mod roi_head;
pub mod roi_pool;
pub mod rpn_head;
