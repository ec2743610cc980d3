//! nms
