//! box_coder
