//! A montage of a stack: every n-th slice tiled in a grid, with each object's box drawn in the
//! object's colour, so one picture shows which boxes were linked into which object.

use crate::draw::{draw_rect, draw_text, gray_to_rgb, PALETTE};
use image::RgbImage;
use ndarray::Array2;

use super::link::Object3d;

/// Pixels between tiles (and around the border).
const GAP: u32 = 4;
/// Line thickness of a linked (detected) box; interpolated boxes are drawn 1 pixel thin.
const LINKED_THICKNESS: u32 = 2;

/// The colour of object `id` (1-based): `PALETTE[(id - 1) % PALETTE.len()]`.
pub fn object_color(id: usize) -> [u8; 3] {
    PALETTE[id.saturating_sub(1) % PALETTE.len()]
}

/// Tiles `slices[0], slices[every], slices[2 * every], ...` (positions in the given list, each
/// `(z, image in [0, 1])`, row-major, `cols` tiles per row) with `GAP` pixels between tiles.
/// On each tile every object with a box on that `z` is outlined in its colour: 2 px for a linked
/// box, 1 px for a box interpolated across a bridged gap or a strided slice.
/// Tiles are as large as the largest slice; smaller slices sit at the tile's top left.
/// `every` and `cols` of 0 are treated as 1. No slices: a 0 x 0 image.
pub fn montage(
    slices: &[(usize, Array2<f32>)],
    objects: &[Object3d],
    every: usize,
    cols: usize,
) -> RgbImage {
    let chosen: Vec<&(usize, Array2<f32>)> = slices.iter().step_by(every.max(1)).collect();
    if chosen.is_empty() {
        return RgbImage::new(0, 0);
    }
    let cols = cols.max(1).min(chosen.len()) as u32;
    let rows = chosen.len().div_ceil(cols as usize) as u32;
    let tile_h = chosen.iter().map(|(_, s)| s.nrows()).max().unwrap_or(0) as u32;
    let tile_w = chosen.iter().map(|(_, s)| s.ncols()).max().unwrap_or(0) as u32;
    let mut canvas = RgbImage::new(cols * (tile_w + GAP) + GAP, rows * (tile_h + GAP) + GAP);

    for (k, (z, slice)) in chosen.iter().enumerate() {
        let mut tile = gray_to_rgb(slice.view());
        for o in objects {
            if let Some(b) = o.box_at(*z) {
                let t = if o.is_linked_slice(*z) {
                    LINKED_THICKNESS
                } else {
                    1
                };
                draw_rect(&mut tile, b, object_color(o.id), t);
            }
        }
        let scale = (tile_w / 300).max(1);
        // slice number in the tile's bottom-left corner, under the boxes
        let ty = slice.nrows() as i32 - 8 * scale as i32 - 2;
        draw_text(
            &mut tile,
            3,
            ty.max(0),
            &format!("z {z}"),
            [255, 255, 0],
            scale,
        );
        let (r, c) = (k as u32 / cols, k as u32 % cols);
        let (x0, y0) = (GAP + c * (tile_w + GAP), GAP + r * (tile_h + GAP));
        image::imageops::replace(&mut canvas, &tile, x0 as i64, y0 as i64);
    }
    canvas
}
