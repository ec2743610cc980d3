//! 3D: linking per-slice boxes into objects across z.
