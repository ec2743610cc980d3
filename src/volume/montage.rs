//! A montage of a stack: every n-th slice tiled in a grid, with each object's box drawn in the
//! object's colour, so one picture shows which boxes were linked into which object.

use image::{Rgb, RgbImage};
use ndarray::{Array2, ArrayView2};

use super::link::Object3d;

/// Pixels between tiles (and around the border).
const GAP: u32 = 4;
/// Line thickness of a linked (detected) box; interpolated boxes are drawn 1 pixel thin.
const LINKED_THICKNESS: u32 = 2;

/// A fixed palette of well-separated colours (Kelly's, without white/black/greys).
/// Object `id` gets `PALETTE[(id - 1) % PALETTE.len()]`.
pub const PALETTE: [[u8; 3]; 12] = [
    [255, 179, 0],
    [128, 62, 117],
    [255, 104, 0],
    [166, 189, 215],
    [193, 0, 32],
    [206, 162, 98],
    [0, 125, 52],
    [246, 118, 142],
    [0, 83, 138],
    [255, 122, 92],
    [83, 55, 122],
    [179, 40, 81],
];

/// The colour of object `id` (1-based).
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
        // The slice number is written on the tile once crate::draw's text lands.
        let (r, c) = (k as u32 / cols, k as u32 % cols);
        let (x0, y0) = (GAP + c * (tile_w + GAP), GAP + r * (tile_h + GAP));
        image::imageops::replace(&mut canvas, &tile, x0 as i64, y0 as i64);
    }
    canvas
}

/// Grey `[0, 1]` (clamped; NaN -> 0) to RGB, `v -> round(255 v)`. Stand-in until `crate::draw`
/// provides `gray_to_rgb`.
fn gray_to_rgb(img: ArrayView2<f32>) -> RgbImage {
    let (h, w) = img.dim();
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let v = img[[y as usize, x as usize]];
        let g = if v.is_nan() {
            0
        } else {
            (v.clamp(0.0, 1.0) * 255.0).round() as u8
        };
        Rgb([g, g, g])
    })
}

/// Outline of box `(x1, y1, x2, y2)`: pixel columns `floor(x1) ..= ceil(x2) - 1`, the border
/// `thickness` pixels wide drawn inward, clipped to the image. Stand-in until `crate::draw`
/// provides `draw_rect`.
fn draw_rect(img: &mut RgbImage, bbox: [f32; 4], color: [u8; 3], thickness: u32) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    if w == 0 || h == 0 || bbox.iter().any(|v| !v.is_finite()) {
        return;
    }
    let x1 = bbox[0].floor() as i64;
    let y1 = bbox[1].floor() as i64;
    let x2 = bbox[2].ceil() as i64 - 1;
    let y2 = bbox[3].ceil() as i64 - 1;
    let t = thickness.max(1) as i64;
    for y in y1.max(0)..=y2.min(h - 1) {
        for x in x1.max(0)..=x2.min(w - 1) {
            let on_border = x - x1 < t || x2 - x < t || y - y1 < t || y2 - y < t;
            if on_border {
                img.put_pixel(x as u32, y as u32, Rgb(color));
            }
        }
    }
}
