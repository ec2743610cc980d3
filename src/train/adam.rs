//! adam
