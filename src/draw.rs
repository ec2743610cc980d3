//! Drawing on RGB images: lines, rectangles, a small bitmap font, and a minimal line plot;
//! used by overlays (detect, eval) and the evaluation plots.
//!
//! Coordinates: pixel `(x, y)` is column `x`, row `y`, origin top-left. Boxes are
//! `[x1, y1, x2, y2]` in continuous coordinates (pixel `i` covers `[i, i+1)`), so the outline of
//! a box covers the pixel columns `floor(x1) ..= ceil(x2) - 1`. Everything is clipped to the
//! image: drawing outside it is a no-op, never a panic.

use image::{Rgb, RgbImage};
use ndarray::ArrayView2;

/// Glyph cell of the built-in font, in font pixels (before scaling): 5x7 glyphs on rows 0..=6
/// (baseline at row 6) plus a descender row 7 for g, j, p, q, y, comma and semicolon.
pub const GLYPH_W: u32 = 5;
pub const GLYPH_H: u32 = 8;
/// Horizontal advance per character (glyph + 1 pixel gap), in font pixels.
pub const ADVANCE: u32 = GLYPH_W + 1;

/// A 5x7 bitmap font (+ descender row) for printable ASCII (0x20 ' ' ..= 0x7E '~'), drawn for cryodet.
/// `FONT[c - 0x20][row]`: row 0 is the top; bit 4 (0b10000) is the leftmost column.
#[rustfmt::skip]
const FONT: [[u8; 8]; 95] = [
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // ' '
    [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000, 0b00100, 0b00000], // '!'
    [0b01010, 0b01010, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // '"'
    [0b01010, 0b01010, 0b11111, 0b01010, 0b11111, 0b01010, 0b01010, 0b00000], // '#'
    [0b00100, 0b01111, 0b10100, 0b01110, 0b00101, 0b11110, 0b00100, 0b00000], // '$'
    [0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011, 0b00000], // '%'
    [0b01100, 0b10010, 0b10100, 0b01000, 0b10101, 0b10010, 0b01101, 0b00000], // '&'
    [0b00100, 0b00100, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // '\''
    [0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010, 0b00000], // '('
    [0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000, 0b00000], // ')'
    [0b00000, 0b00100, 0b10101, 0b01110, 0b10101, 0b00100, 0b00000, 0b00000], // '*'
    [0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000, 0b00000], // '+'
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000], // ','
    [0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000, 0b00000], // '-'
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100, 0b00000], // '.'
    [0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000, 0b00000], // '/'
    [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110, 0b00000], // '0'
    [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000], // '1'
    [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111, 0b00000], // '2'
    [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110, 0b00000], // '3'
    [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010, 0b00000], // '4'
    [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110, 0b00000], // '5'
    [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110, 0b00000], // '6'
    [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00000], // '7'
    [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110, 0b00000], // '8'
    [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100, 0b00000], // '9'
    [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000, 0b00000], // ':'
    [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b00100, 0b01000, 0b00000], // ';'
    [0b00010, 0b00100, 0b01000, 0b10000, 0b01000, 0b00100, 0b00010, 0b00000], // '<'
    [0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000], // '='
    [0b01000, 0b00100, 0b00010, 0b00001, 0b00010, 0b00100, 0b01000, 0b00000], // '>'
    [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b00000, 0b00100, 0b00000], // '?'
    [0b01110, 0b10001, 0b00001, 0b01101, 0b10101, 0b10101, 0b01110, 0b00000], // '@'
    [0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001, 0b00000], // 'A'
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110, 0b00000], // 'B'
    [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110, 0b00000], // 'C'
    [0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100, 0b00000], // 'D'
    [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111, 0b00000], // 'E'
    [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000, 0b00000], // 'F'
    [0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111, 0b00000], // 'G'
    [0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001, 0b00000], // 'H'
    [0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000], // 'I'
    [0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100, 0b00000], // 'J'
    [0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001, 0b00000], // 'K'
    [0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111, 0b00000], // 'L'
    [0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001, 0b00000], // 'M'
    [0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001, 0b00000], // 'N'
    [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110, 0b00000], // 'O'
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000, 0b00000], // 'P'
    [0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101, 0b00000], // 'Q'
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001, 0b00000], // 'R'
    [0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110, 0b00000], // 'S'
    [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000], // 'T'
    [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110, 0b00000], // 'U'
    [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00000], // 'V'
    [0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010, 0b00000], // 'W'
    [0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001, 0b00000], // 'X'
    [0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000], // 'Y'
    [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111, 0b00000], // 'Z'
    [0b01110, 0b01000, 0b01000, 0b01000, 0b01000, 0b01000, 0b01110, 0b00000], // '['
    [0b00000, 0b10000, 0b01000, 0b00100, 0b00010, 0b00001, 0b00000, 0b00000], // '\\'
    [0b01110, 0b00010, 0b00010, 0b00010, 0b00010, 0b00010, 0b01110, 0b00000], // ']'
    [0b00100, 0b01010, 0b10001, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // '^'
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111, 0b00000], // '_'
    [0b01000, 0b00100, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // '`'
    [0b00000, 0b00000, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111, 0b00000], // 'a'
    [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110, 0b00000], // 'b'
    [0b00000, 0b00000, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110, 0b00000], // 'c'
    [0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111, 0b00000], // 'd'
    [0b00000, 0b00000, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110, 0b00000], // 'e'
    [0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000, 0b00000], // 'f'
    [0b00000, 0b00000, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110], // 'g'
    [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001, 0b00000], // 'h'
    [0b00100, 0b00000, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000], // 'i'
    [0b00010, 0b00000, 0b00110, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100], // 'j'
    [0b10000, 0b10000, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b00000], // 'k'
    [0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000], // 'l'
    [0b00000, 0b00000, 0b11010, 0b10101, 0b10101, 0b10001, 0b10001, 0b00000], // 'm'
    [0b00000, 0b00000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001, 0b00000], // 'n'
    [0b00000, 0b00000, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110, 0b00000], // 'o'
    [0b00000, 0b00000, 0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000], // 'p'
    [0b00000, 0b00000, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b00001], // 'q'
    [0b00000, 0b00000, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000, 0b00000], // 'r'
    [0b00000, 0b00000, 0b01110, 0b10000, 0b01110, 0b00001, 0b11110, 0b00000], // 's'
    [0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110, 0b00000], // 't'
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101, 0b00000], // 'u'
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00000], // 'v'
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010, 0b00000], // 'w'
    [0b00000, 0b00000, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b00000], // 'x'
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110], // 'y'
    [0b00000, 0b00000, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111, 0b00000], // 'z'
    [0b00010, 0b00100, 0b00100, 0b01000, 0b00100, 0b00100, 0b00010, 0b00000], // '{'
    [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000], // '|'
    [0b01000, 0b00100, 0b00100, 0b00010, 0b00100, 0b00100, 0b01000, 0b00000], // '}'
    [0b00000, 0b00000, 0b01000, 0b10101, 0b00010, 0b00000, 0b00000, 0b00000], // '~'
];

/// Sets one pixel if it is inside the image.
#[inline]
fn put(img: &mut RgbImage, x: i64, y: i64, color: [u8; 3]) {
    if x >= 0 && y >= 0 && (x as u64) < img.width() as u64 && (y as u64) < img.height() as u64 {
        img.put_pixel(x as u32, y as u32, Rgb(color));
    }
}

/// Fills the pixel rectangle `x0 ..= x1`, `y0 ..= y1` (clipped).
pub fn fill_rect(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, color: [u8; 3]) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (xa, xb) = (x0.max(0), x1.min(w - 1));
    let (ya, yb) = (y0.max(0), y1.min(h - 1));
    for y in ya..=yb {
        for x in xa..=xb {
            img.put_pixel(x as u32, y as u32, Rgb(color));
        }
    }
}

/// Outline of the box `bbox = [x1, y1, x2, y2]` (continuous coordinates), `thickness` pixels
/// wide, drawn inward from the box's outer pixels. Inverted or non-finite boxes draw nothing.
pub fn draw_rect(img: &mut RgbImage, bbox: [f32; 4], color: [u8; 3], thickness: u32) {
    if !bbox.iter().all(|v| v.is_finite()) || bbox[2] < bbox[0] || bbox[3] < bbox[1] {
        return;
    }
    // Outer pixel indices; clamp far-away values so the i64 loops stay short.
    let lim = |v: f32| (v as f64).clamp(-1e6, 1e6);
    let x0 = lim(bbox[0]).floor() as i64;
    let y0 = lim(bbox[1]).floor() as i64;
    let x1 = (lim(bbox[2]).ceil() as i64 - 1).max(x0);
    let y1 = (lim(bbox[3]).ceil() as i64 - 1).max(y0);
    let t = thickness.max(1) as i64 - 1;
    fill_rect(img, x0, y0, x1, (y0 + t).min(y1), color); // top
    fill_rect(img, x0, (y1 - t).max(y0), x1, y1, color); // bottom
    fill_rect(img, x0, y0, (x0 + t).min(x1), y1, color); // left
    fill_rect(img, (x1 - t).max(x0), y0, x1, y1, color); // right
}

/// A straight line from `p0` to `p1` (pixel coordinates, rounded), `thickness` pixels wide
/// (Bresenham, each point stamped with a `thickness x thickness` square).
pub fn draw_line(
    img: &mut RgbImage,
    p0: (f32, f32),
    p1: (f32, f32),
    color: [u8; 3],
    thickness: u32,
) {
    let ok = |v: f32| v.is_finite() && v.abs() < 1e6;
    if !(ok(p0.0) && ok(p0.1) && ok(p1.0) && ok(p1.1)) {
        return;
    }
    let (mut x, mut y) = (p0.0.round() as i64, p0.1.round() as i64);
    let (xe, ye) = (p1.0.round() as i64, p1.1.round() as i64);
    let (dx, dy) = ((xe - x).abs(), -(ye - y).abs());
    let (sx, sy) = (if x < xe { 1 } else { -1 }, if y < ye { 1 } else { -1 });
    let mut err = dx + dy;
    let t = thickness.max(1) as i64;
    let (lo, hi) = (-(t - 1) / 2, t / 2);
    loop {
        fill_rect(img, x + lo, y + lo, x + hi, y + hi, color);
        if x == xe && y == ye {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// Width and height in pixels of `text` drawn at `scale` (one line).
pub fn text_size(text: &str, scale: u32) -> (u32, u32) {
    let n = text.chars().count() as u32;
    let w = if n == 0 { 0 } else { n * ADVANCE - 1 };
    (w * scale.max(1), GLYPH_H * scale.max(1))
}

/// `text` broken into lines of at most `max_width` pixels at `scale` ([`text_size`]): at spaces,
/// and inside a word only when the word alone is too wide (every line keeps at least one
/// character, so a `max_width` below one glyph still makes progress).
pub fn wrap_text(text: &str, scale: u32, max_width: u32) -> Vec<String> {
    let fits = |s: &str| text_size(s, scale).0 <= max_width;
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let joined = if line.is_empty() {
            word.to_string()
        } else {
            format!("{line} {word}")
        };
        if fits(&joined) {
            line = joined;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        // The word on its own line; cut where it is wider than the line.
        for ch in word.chars() {
            line.push(ch);
            if !fits(&line) && line.chars().count() > 1 {
                line.pop();
                lines.push(std::mem::replace(&mut line, ch.to_string()));
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Draws `text` with its top-left corner at `(x, y)`, each font pixel a `scale x scale` square.
/// Characters outside printable ASCII are drawn as '?'.
pub fn draw_text(img: &mut RgbImage, x: i32, y: i32, text: &str, color: [u8; 3], scale: u32) {
    let s = scale.max(1) as i64;
    for (i, ch) in text.chars().enumerate() {
        let code = if (' '..='~').contains(&ch) {
            ch as usize
        } else {
            '?' as usize
        };
        let glyph = &FONT[code - 0x20];
        let gx = x as i64 + i as i64 * ADVANCE as i64 * s;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..GLYPH_W as i64 {
                if bits & (0b10000 >> col) != 0 {
                    let px = gx + col * s;
                    let py = y as i64 + row as i64 * s;
                    fill_rect(img, px, py, px + s - 1, py + s - 1, color);
                }
            }
        }
    }
}

/// Draws `text` rotated 90° counter-clockwise (reading bottom to top), its bounding box's
/// top-left corner at `(x, y)`. Used for y-axis labels.
pub fn draw_text_vertical(
    img: &mut RgbImage,
    x: i32,
    y: i32,
    text: &str,
    color: [u8; 3],
    scale: u32,
) {
    let (w, h) = text_size(text, scale);
    if w == 0 {
        return;
    }
    // Render on a mask, then rotate: horizontal pixel (u, v) goes to (v, w - 1 - u).
    let mut mask = RgbImage::new(w, h);
    draw_text(&mut mask, 0, 0, text, [255, 255, 255], scale);
    for (u, v, p) in mask.enumerate_pixels() {
        if p.0[0] > 0 {
            put(
                img,
                x as i64 + v as i64,
                y as i64 + (w - 1 - u) as i64,
                color,
            );
        }
    }
}

/// A gray image with values in `[0, 1]` (`[H, W]`, clamped; NaN -> 0) as RGB.
pub fn gray_to_rgb(gray: ArrayView2<f32>) -> RgbImage {
    let (h, w) = gray.dim();
    let mut img = RgbImage::new(w as u32, h as u32);
    for ((y, x), &v) in gray.indexed_iter() {
        let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
        let g = (v * 255.0).round() as u8;
        img.put_pixel(x as u32, y as u32, Rgb([g, g, g]));
    }
    img
}

/// Ground truth in overlays: red, as the study's Fig. 5.
pub const GT_COLOR: [u8; 3] = [230, 30, 30];
/// Predictions in overlays: blue, as the study's Fig. 5.
pub const PRED_COLOR: [u8; 3] = [40, 90, 255];
/// Ground truth cut by the image edge (`synth --preview`): yellow.
pub const INCOMPLETE_COLOR: [u8; 3] = [255, 220, 0];

/// One box of an [`overlay`]: `bbox = [x1, y1, x2, y2]` (pixels), its colour and an optional
/// label.
pub struct Mark {
    pub bbox: [f32; 4],
    pub color: [u8; 3],
    pub label: Option<String>,
}

/// The overlay style of an image whose short side is `side` px: `(line width, text scale)` =
/// `(max(side / 300, 2), max(side / 350, 2))`, so boxes and labels grow with the image.
pub fn overlay_style(side: u32) -> (u32, u32) {
    ((side / 300).max(2), (side / 350).max(2))
}

/// Draws the `marks` in order on `base` in the [`overlay_style`] of its short side: each box's
/// outline, and its label in white on a tag of the box's colour, above the box (inside it,
/// under the top edge, when the box touches the top).
pub fn overlay(mut base: RgbImage, marks: &[Mark]) -> RgbImage {
    let (thickness, scale) = overlay_style(base.width().min(base.height()));
    for m in marks {
        draw_rect(&mut base, m.bbox, m.color, thickness);
        let Some(label) = &m.label else { continue };
        let (tw, th) = text_size(label, scale);
        let x = m.bbox[0].max(0.0) as i64;
        let above = m.bbox[1] as i64 - th as i64 - 2 * scale as i64;
        let y = if above >= 0 {
            above
        } else {
            m.bbox[1].max(0.0) as i64 + thickness as i64
        };
        let pad = 2 * scale as i64;
        fill_rect(
            &mut base,
            x,
            y,
            x + tw as i64 + pad,
            y + th as i64 + pad,
            m.color,
        );
        let (tx, ty) = ((x + scale as i64) as i32, (y + scale as i64) as i32);
        draw_text(&mut base, tx, ty, label, [255, 255, 255], scale);
    }
    base
}

/// The one palette of distinct colours (matplotlib's tab10: blue, orange, green, red, purple,
/// brown, pink, gray, olive, cyan), for plot series and for the objects of a montage.
pub const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// One curve of a [`line_plot`].
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    /// `(x, y)` in data coordinates, drawn in order.
    pub points: Vec<(f64, f64)>,
    pub color: [u8; 3],
    /// Draw a small square at every point (for short series such as AP vs IoU).
    pub markers: bool,
}

/// Axes, ticks and labels of a [`line_plot`].
#[derive(Debug, Clone)]
pub struct PlotSpec {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Data range shown on each axis.
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
    /// Tick positions (data coordinates) and their labels' decimals.
    pub x_ticks: Vec<f64>,
    pub y_ticks: Vec<f64>,
    pub tick_decimals: usize,
    pub width: u32,
    pub height: u32,
}

impl PlotSpec {
    /// A `[0, 1] x [0, 1]` plot with ticks every 0.2, 1000 x 600 pixels (legend included).
    pub fn unit(title: &str, x_label: &str, y_label: &str) -> Self {
        let ticks: Vec<f64> = (0..=5).map(|i| i as f64 * 0.2).collect();
        PlotSpec {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_range: (0.0, 1.0),
            y_range: (0.0, 1.0),
            x_ticks: ticks.clone(),
            y_ticks: ticks,
            tick_decimals: 1,
            width: 1000,
            height: 600,
        }
    }
}

/// Renders a line plot: white background, axes with ticks and tick labels, a light grid,
/// axis labels, a title, the series (clipped to the ranges) and a legend right of the plot.
pub fn line_plot(spec: &PlotSpec, series: &[Series]) -> RgbImage {
    const BLACK: [u8; 3] = [0, 0, 0];
    const GRID: [u8; 3] = [225, 225, 225];
    let (w, h) = (spec.width.max(200), spec.height.max(150));
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let s = 2; // font scale
               // The legend sits in the right margin, outside the data.
    let line_h = 22i64;
    let legend_w = series
        .iter()
        .map(|se| text_size(&se.label, s).0 as i64 + 60)
        .max()
        .unwrap_or(0);
    let (left, right, top, bottom) = (90i64, 30 + legend_w, 50i64, 70i64);
    let (pw, ph) = (
        (w as i64 - left - right).max(10),
        (h as i64 - top - bottom).max(10),
    );
    let (x0, x1) = spec.x_range;
    let (y0, y1) = spec.y_range;
    let sx = |x: f64| left as f64 + (x - x0) / (x1 - x0) * pw as f64;
    let sy = |y: f64| (top + ph) as f64 - (y - y0) / (y1 - y0) * ph as f64;

    for &t in &spec.x_ticks {
        let px = sx(t).round() as i64;
        fill_rect(&mut img, px, top, px, top + ph, GRID);
        fill_rect(&mut img, px, top + ph, px, top + ph + 6, BLACK);
        let label = format!("{:.*}", spec.tick_decimals, t);
        let (tw, _) = text_size(&label, s);
        draw_text(
            &mut img,
            (px - tw as i64 / 2) as i32,
            (top + ph + 12) as i32,
            &label,
            BLACK,
            s,
        );
    }
    for &t in &spec.y_ticks {
        let py = sy(t).round() as i64;
        fill_rect(&mut img, left, py, left + pw, py, GRID);
        fill_rect(&mut img, left - 6, py, left, py, BLACK);
        let label = format!("{:.*}", spec.tick_decimals, t);
        let (tw, th) = text_size(&label, s);
        draw_text(
            &mut img,
            (left - 12 - tw as i64) as i32,
            (py - th as i64 / 2) as i32,
            &label,
            BLACK,
            s,
        );
    }
    // Axes (drawn after the grid).
    fill_rect(&mut img, left, top + ph, left + pw, top + ph + 1, BLACK);
    fill_rect(&mut img, left - 1, top, left, top + ph, BLACK);

    let (tw, _) = text_size(&spec.x_label, s);
    draw_text(
        &mut img,
        (left + pw / 2 - tw as i64 / 2) as i32,
        (h as i64 - 24) as i32,
        &spec.x_label,
        BLACK,
        s,
    );
    let (tw, _) = text_size(&spec.y_label, s);
    draw_text_vertical(
        &mut img,
        12,
        (top + ph / 2 - tw as i64 / 2) as i32,
        &spec.y_label,
        BLACK,
        s,
    );
    let (tw, _) = text_size(&spec.title, s);
    draw_text(
        &mut img,
        (w as i64 / 2 - tw as i64 / 2) as i32,
        16,
        &spec.title,
        BLACK,
        s,
    );

    // Series, clipped to the plot area.
    let mut plot = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    for se in series {
        let pts: Vec<(f32, f32)> = se
            .points
            .iter()
            .map(|&(x, y)| (sx(x) as f32, sy(y) as f32))
            .collect();
        for win in pts.windows(2) {
            draw_line(&mut plot, win[0], win[1], se.color, 2);
        }
        if se.markers || pts.len() == 1 {
            for &(px, py) in &pts {
                let (px, py) = (px.round() as i64, py.round() as i64);
                fill_rect(&mut plot, px - 3, py - 3, px + 3, py + 3, se.color);
            }
        }
    }
    // Copy the drawn (non-white) pixels inside the plot area (+3 px for markers on the edges).
    for (x, y, p) in plot.enumerate_pixels() {
        let (xi, yi) = (x as i64, y as i64);
        let inside = xi >= left - 3 && xi <= left + pw + 3 && yi >= top - 3 && yi <= top + ph + 3;
        if inside && p.0 != [255, 255, 255] {
            img.put_pixel(x, y, *p);
        }
    }

    // Legend, right of the plot area, top-aligned, in a framed box.
    if !series.is_empty() {
        let (bw, bh) = (legend_w - 10, line_h * series.len() as i64 + 10);
        let (bx, by) = (left + pw + 20, top);
        fill_rect(&mut img, bx, by, bx + bw, by + bh, [255, 255, 255]);
        draw_rect(
            &mut img,
            [
                bx as f32,
                by as f32,
                (bx + bw + 1) as f32,
                (by + bh + 1) as f32,
            ],
            [160, 160, 160],
            1,
        );
        for (k, se) in series.iter().enumerate() {
            let yy = by + 8 + k as i64 * line_h;
            fill_rect(&mut img, bx + 8, yy + 6, bx + 32, yy + 8, se.color);
            draw_text(&mut img, (bx + 40) as i32, yy as i32, &se.label, BLACK, s);
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    const RED: [u8; 3] = [255, 0, 0];

    #[test]
    fn rect_covers_the_box_pixels_and_clips() {
        let mut img = RgbImage::new(20, 10);
        draw_rect(&mut img, [2.0, 3.0, 8.0, 7.0], RED, 1);
        // Columns 2..=7, rows 3..=6.
        assert_eq!(img.get_pixel(2, 3).0, RED);
        assert_eq!(img.get_pixel(7, 6).0, RED);
        assert_eq!(img.get_pixel(5, 5).0, [0, 0, 0], "inside stays empty");
        assert_eq!(img.get_pixel(8, 6).0, [0, 0, 0], "x2 is exclusive");
        // Partly and fully outside: no panic.
        draw_rect(&mut img, [-5.0, -5.0, 30.0, 30.0], RED, 3);
        draw_rect(&mut img, [100.0, 100.0, 200.0, 200.0], RED, 3);
        draw_rect(&mut img, [f32::NAN, 0.0, 1.0, 1.0], RED, 3);
    }

    #[test]
    fn text_and_lines() {
        let mut img = RgbImage::new(40, 12);
        draw_text(&mut img, 1, 1, "I", RED, 1);
        // 'I' = .###. / ..#.. : the top row has columns 1..=3 of the glyph set.
        assert_eq!(img.get_pixel(2, 1).0, RED);
        assert_eq!(img.get_pixel(1, 1).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(3, 2).0, RED);
        assert_eq!(text_size("ab", 2), (22, 16));
        draw_text(&mut img, 30, 5, "é~", RED, 3); // clipped, non-ASCII as '?'
        let mut img = RgbImage::new(10, 10);
        draw_line(&mut img, (0.0, 0.0), (9.0, 9.0), RED, 1);
        assert!((0..10).all(|i| img.get_pixel(i, i).0 == RED));
    }

    #[test]
    fn gray_conversion() {
        let a = ndarray::arr2(&[[0.0f32, 0.5, 1.0], [2.0, -1.0, f32::NAN]]);
        let img = gray_to_rgb(a.view());
        assert_eq!((img.width(), img.height()), (3, 2));
        assert_eq!(img.get_pixel(1, 0).0, [128, 128, 128]);
        assert_eq!(img.get_pixel(0, 1).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(2, 1).0, [0, 0, 0]);
    }
}
