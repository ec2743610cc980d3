//! roi_pool
