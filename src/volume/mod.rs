//! 3D: linking per-slice boxes into objects across z, and writing them out.
//!
//! The study detects organelles slice by slice; a mitochondrion then appears as a column of boxes
//! on consecutive slices. This module turns those columns into one 3D object each:
//!
//! * [`link`]: [`link_slices`] (IoU tracking along z, with gap bridging, strided detection, and
//!   deterministic split/merge rules; before it per-slice fragments are dropped
//!   ([`suppress_fragments`]), after it broken tracks are stitched and pieces of one object
//!   merged by footprint, and the 3D box is taken over median-smoothed boxes ([`smooth_track`])),
//!   [`iou3d`];
//! * [`export`]: JSON, CSV, an IMOD point file for `point2model`, a label volume;
//! * [`tilt`]: IMOD `.tlt` / `.rawtlt` tilt angles of a tilt series;
//! * [`montage`](mod@montage): every n-th slice tiled with the linked boxes coloured by object.
//!
//! Coordinates: x, y in slice pixels (pixel `i` spans `[i, i + 1)`), z = 0-based slice index;
//! 3D boxes are `(x1, y1, z1, x2, y2, z2)` with `z2` exclusive.

pub mod export;
pub mod link;
pub mod montage;
pub mod tilt;

pub use export::{
    label_volume, no_points_note, objects_json, write_imod_points, write_label_volume,
    write_objects_csv, write_objects_json,
};
pub use link::{
    iou3d, link_slices, slice_boxes, smooth_track, suppress_fragments, LinkConfig, Object3d,
    SliceBox,
};
pub use montage::{montage, object_color};
pub use tilt::{read_tilt_angles, tilt_file_for};
