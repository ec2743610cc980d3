//! anchors
