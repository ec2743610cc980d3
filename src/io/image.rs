//! Images (PNG, TIFF, JPEG; 8/16-bit gray or colour; 32-bit float TIFF) to f32 gray arrays,
//! and back to 8- or 16-bit gray PNG.
//!
//! Layout: every image is an `Array2<f32>` of shape `[H, W]` (row-major, row 0 at the top),
//! holding the file's raw intensities as f32 (0..255 for 8-bit, 0..65535 for 16-bit, the stored
//! values for float TIFF). No scaling happens here; see `transform::to_unit_range`.
//!
//! Colour is converted to gray with the Rec.601 luma weights
//! `Y = 0.299 R + 0.587 G + 0.114 B` (the weights of OpenCV's `cvtColor(BGR2GRAY)` and PIL's
//! `convert("L")`, but without their rounding to integers). Alpha channels are ignored.
//!
//! Decoding goes through the `image` crate for PNG and JPEG and through the `tiff` crate for
//! TIFF (it also decodes float and signed-integer samples, which `image` does not). TIFF colour
//! may be chunky (RGBRGB...) or planar (`PlanarConfiguration` 2: all R, then all G, then all B,
//! the default of `tifffile.imwrite` for a `(3, H, W)` array); both become the same gray image.
//! A multi-page TIFF is a stack: [`tiff_page_count`] counts its pages and [`read_tiff_page`]
//! reads one; [`read_gray`] reads page 1, and [`check_single_image`] refuses a stack where a
//! command takes one image per file. Both are
//! given memory limits ([`MAX_DECODE_BYTES`], [`MAX_SIDE`]) so that a corrupt header claiming
//! a gigantic image is refused instead of allocated.

use crate::error::{Error, Result};
use ndarray::{Array2, ArrayView2};
use std::io::BufWriter;
use std::path::Path;

/// Largest decoded image we accept, in bytes of decoder output (2 GiB: a 16-bit 32k x 32k image).
pub const MAX_DECODE_BYTES: u64 = 2 << 30;
/// Largest image side we accept, in pixels.
pub const MAX_SIDE: u32 = 65_536;
/// Largest ratio of decoded bytes to file bytes for PNG and JPEG. Deflate cannot expand more
/// than 1032:1 (PNG adds one filter byte per row); a baseline JPEG needs at least ~2 bits per
/// 8x8 block and component (256 gray pixels per byte). A header claiming more than this (plus
/// [`DECODE_SLACK`]) cannot be backed by the file's data and is refused before the decoder
/// allocates its output (found by `cryodet-fuzz --target image`: a 1.2 KB JPEG asked for 900 MB).
pub const MAX_RATIO: u64 = 1100;
/// The same bound for TIFF: LZW strings reach 4096 bytes per 12-bit code (ratio < 2731:1).
pub const MAX_RATIO_TIFF: u64 = 4096;
/// Decoded bytes always allowed, whatever the file size (small test images, headers).
pub const DECODE_SLACK: u64 = 1 << 20;

/// Bytes a decoder may allocate for a file of `file_len` bytes compressed at most `ratio`:1.
fn decode_budget(file_len: usize, ratio: u64) -> u64 {
    (file_len as u64)
        .saturating_mul(ratio)
        .saturating_add(DECODE_SLACK)
        .min(MAX_DECODE_BYTES)
}

/// Rec.601 luma weights (R, G, B).
pub const LUMA_601: [f32; 3] = [0.299, 0.587, 0.114];

/// Extensions (lower case) that [`read_gray`] reads.
pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "tif", "tiff", "jpg", "jpeg"];

/// True when the path ends with an image extension we read (case-insensitive).
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

/// Read one image as gray f32 `[H, W]` with raw intensities (see module doc).
/// TIFF files with several pages: the first page is read (see [`read_tiff_page`]).
pub fn read_gray(path: &Path) -> Result<Array2<f32>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_gray(path, &bytes)
}

/// [`read_gray`] on the file's bytes. `path` gives the extension (TIFF is chosen by a `.tif` /
/// `.tiff` extension or by content; other formats by content, else by extension) and names the
/// file in error messages.
pub fn decode_gray(path: &Path, bytes: &[u8]) -> Result<Array2<f32>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    if ext == "tif" || ext == "tiff" {
        return decode_tiff_gray(path, bytes);
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes));
    if let Ok(f) = image::ImageFormat::from_path(path) {
        reader.set_format(f);
    }
    let mut reader = reader
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    if reader.format() == Some(image::ImageFormat::Tiff) {
        return decode_tiff_gray(path, bytes);
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(decode_budget(bytes.len(), MAX_RATIO));
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| Error::format(path, format!("cannot decode image: {e}")))?;
    Ok(dynamic_to_gray(img))
}

/// Convert a decoded `image::DynamicImage` to gray f32 with raw intensities.
fn dynamic_to_gray(img: image::DynamicImage) -> Array2<f32> {
    use image::DynamicImage as D;
    let (w, h) = (img.width() as usize, img.height() as usize);
    match img {
        D::ImageLuma8(b) => from_samples(h, w, 1, b.as_raw(), |v| v as f32),
        D::ImageLumaA8(b) => from_samples(h, w, 2, b.as_raw(), |v| v as f32),
        D::ImageRgb8(b) => from_samples(h, w, 3, b.as_raw(), |v| v as f32),
        D::ImageRgba8(b) => from_samples(h, w, 4, b.as_raw(), |v| v as f32),
        D::ImageLuma16(b) => from_samples(h, w, 1, b.as_raw(), |v| v as f32),
        D::ImageLumaA16(b) => from_samples(h, w, 2, b.as_raw(), |v| v as f32),
        D::ImageRgb16(b) => from_samples(h, w, 3, b.as_raw(), |v| v as f32),
        D::ImageRgba16(b) => from_samples(h, w, 4, b.as_raw(), |v| v as f32),
        D::ImageRgb32F(b) => from_samples(h, w, 3, b.as_raw(), |v| v),
        D::ImageRgba32F(b) => from_samples(h, w, 4, b.as_raw(), |v| v),
        other => {
            // Future variants: go through 32-bit float RGB (keeps 16-bit precision).
            let b = other.to_rgb32f();
            from_samples(h, w, 3, b.as_raw(), |v| v)
        }
    }
}

/// Interleaved samples (`channels` per pixel: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) to gray.
fn from_samples<T: Copy>(
    h: usize,
    w: usize,
    channels: usize,
    data: &[T],
    to_f32: impl Fn(T) -> f32,
) -> Array2<f32> {
    to_gray(h, w, (channels, 1), channels, data, to_f32)
}

/// Gray from `channels` samples per pixel (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), pixel `i`'s
/// channel `c` at `data[i * step.0 + c * step.1]` (interleaved: `(channels, 1)`, planar:
/// `(1, h * w)`): the gray sample, or `LUMA_601 · (R, G, B)`. `data` holds all of them.
fn to_gray<T: Copy>(
    h: usize,
    w: usize,
    step: (usize, usize),
    channels: usize,
    data: &[T],
    to_f32: impl Fn(T) -> f32,
) -> Array2<f32> {
    let (ps, cs) = step;
    let mut out = Array2::<f32>::zeros((h, w));
    for (i, o) in out.iter_mut().enumerate() {
        let j = i * ps;
        *o = if channels <= 2 {
            to_f32(data[j])
        } else {
            LUMA_601[0] * to_f32(data[j])
                + LUMA_601[1] * to_f32(data[j + cs])
                + LUMA_601[2] * to_f32(data[j + 2 * cs])
        };
    }
    out
}

/// TIFF bytes through the `tiff` crate: gray or RGB(A), any integer or float sample type.
fn decode_tiff_gray(path: &Path, bytes: &[u8]) -> Result<Array2<f32>> {
    decode_tiff_page(path, std::io::Cursor::new(bytes), bytes.len(), 0)
}

/// True when the file starts with a TIFF signature (`II*\0`, `MM\0*`, or BigTIFF's).
pub fn is_tiff_file(path: &Path) -> bool {
    use std::io::Read;
    let mut m = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut m))
        .is_ok()
        && matches!(&m, b"II*\0" | b"MM\0*" | b"II+\0" | b"MM\0+")
}

/// Number of pages (image file directories) of a TIFF file.
pub fn tiff_page_count(path: &Path) -> Result<usize> {
    let bad = |e: tiff::TiffError| Error::format(path, format!("cannot decode TIFF: {e}"));
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut dec = tiff::decoder::Decoder::new(std::io::BufReader::new(file)).map_err(bad)?;
    let mut n = 1;
    while dec.more_images() {
        dec.next_image().map_err(bad)?;
        n += 1;
        if n > 1_000_000 {
            return Err(Error::format(path, "more than 10^6 TIFF pages (a loop?)"));
        }
    }
    Ok(n)
}

/// For a multi-page TIFF, the page to read for `slice` (default: the middle one) and the page
/// count; `None` for any other file. A `slice` beyond the last page is an error.
pub fn tiff_stack_page(path: &Path, slice: Option<usize>) -> Result<Option<(usize, usize)>> {
    if !is_tiff_file(path) {
        return Ok(None);
    }
    let pages = tiff_page_count(path)?;
    if pages < 2 {
        return Ok(None);
    }
    let z = slice.unwrap_or(pages / 2);
    if z >= pages {
        return Err(Error::invalid(format!(
            "{}: --slice {z} out of range (the TIFF has {pages} pages)",
            path.display()
        )));
    }
    Ok(Some((z, pages)))
}

/// Refuses a multi-page TIFF where a command takes one image per file (`train`, `eval`:
/// their annotations are per image), instead of [`read_gray`] silently using page 1.
pub fn check_single_image(path: &Path, command: &str) -> Result<()> {
    if is_tiff_file(path) {
        let pages = tiff_page_count(path)?;
        if pages > 1 {
            return Err(Error::format(
                path,
                format!(
                    "a multi-page TIFF ({pages} pages): {command} takes one image per file and \
                     would see page 1 only; save each page as its own image (`detect` reads \
                     the pages as slices)"
                ),
            ));
        }
    }
    Ok(())
}

/// Page `page` (0-based) of a TIFF file as gray f32 `[H, W]` (see [`read_gray`]).
pub fn read_tiff_page(path: &Path, page: usize) -> Result<Array2<f32>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len() as usize;
    decode_tiff_page(path, std::io::BufReader::new(file), len, page)
}

/// Page `page` of a TIFF stream through the `tiff` crate.
fn decode_tiff_page<R: std::io::Read + std::io::Seek>(
    path: &Path,
    reader: R,
    file_len: usize,
    page: usize,
) -> Result<Array2<f32>> {
    use tiff::decoder::{Decoder, DecodingResult, Limits};
    use tiff::ColorType;
    let bad = |e: tiff::TiffError| Error::format(path, format!("cannot decode TIFF: {e}"));
    let mut limits = Limits::default();
    limits.decoding_buffer_size = decode_budget(file_len, MAX_RATIO_TIFF) as usize;
    let mut dec = Decoder::new(reader).map_err(bad)?.with_limits(limits);
    if page > 0 {
        dec.seek_to_image(page)
            .map_err(|e| Error::format(path, format!("cannot decode TIFF page {page}: {e}")))?;
    }
    let (w, h) = dec.dimensions().map_err(bad)?;
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(Error::format(
            path,
            format!("unsupported TIFF size {w}x{h}"),
        ));
    }
    let channels = match dec.colortype().map_err(bad)? {
        ColorType::Gray(_) => 1,
        ColorType::GrayA(_) => 2,
        ColorType::RGB(_) => 3,
        ColorType::RGBA(_) => 4,
        other => {
            return Err(Error::format(
                path,
                format!("unsupported TIFF colour type {other:?}"),
            ))
        }
    };
    let (h, w) = (h as usize, w as usize);
    // read_image_to_buffer reads every plane of a planar image (read_image only the first).
    let mut result = DecodingResult::U8(Vec::new());
    let layout = dec.read_image_to_buffer(&mut result).map_err(bad)?;
    let p = layout.planes > 1; // planar
    match result {
        DecodingResult::U8(v) => gray_from(path, h, w, channels, p, &v, |x| x as f32),
        DecodingResult::U16(v) => gray_from(path, h, w, channels, p, &v, |x| x as f32),
        DecodingResult::U32(v) => gray_from(path, h, w, channels, p, &v, |x| x as f32),
        DecodingResult::I8(v) => gray_from(path, h, w, channels, p, &v, |x| x as f32),
        DecodingResult::I16(v) => gray_from(path, h, w, channels, p, &v, |x| x as f32),
        DecodingResult::I32(v) => gray_from(path, h, w, channels, p, &v, |x| x as f32),
        DecodingResult::F16(v) => gray_from(path, h, w, channels, p, &v, |x| x.to_f32()),
        DecodingResult::F32(v) => gray_from(path, h, w, channels, p, &v, |x| x),
        DecodingResult::F64(v) => gray_from(path, h, w, channels, p, &v, |x| x as f32),
        _ => Err(Error::format(
            path,
            "unsupported TIFF sample type (64-bit integer)",
        )),
    }
}

/// [`to_gray`] on chunky or planar samples after checking that the decoder
/// returned exactly `h * w * channels` samples.
fn gray_from<T: Copy>(
    path: &Path,
    h: usize,
    w: usize,
    channels: usize,
    planar: bool,
    v: &[T],
    to_f32: impl Fn(T) -> f32,
) -> Result<Array2<f32>> {
    if v.len() != h * w * channels {
        return Err(Error::format(
            path,
            format!(
                "TIFF decoded {} samples, expected {h}x{w}x{channels}{}",
                v.len(),
                if planar { " (planar)" } else { "" }
            ),
        ));
    }
    let step = if planar { (1, h * w) } else { (channels, 1) };
    Ok(to_gray(h, w, step, channels, v, to_f32))
}

/// Write `img` (values in [0, 1], clamped) as an 8-bit gray PNG: `v = round(255 x)`.
pub fn write_png_gray8(path: &Path, img: ArrayView2<f32>) -> Result<()> {
    let data: Vec<u8> = img
        .iter()
        .map(|&x| (x.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    write_png(path, img.dim(), png::BitDepth::Eight, &data)
}

/// Write `img` (values in [0, 1], clamped) as a 16-bit gray PNG: `v = round(65535 x)`.
pub fn write_png_gray16(path: &Path, img: ArrayView2<f32>) -> Result<()> {
    // PNG stores 16-bit samples big-endian.
    let data: Vec<u8> = img
        .iter()
        .flat_map(|&x| ((x.clamp(0.0, 1.0) * 65535.0).round() as u16).to_be_bytes())
        .collect();
    write_png(path, img.dim(), png::BitDepth::Sixteen, &data)
}

/// [`write_png_gray8`] that also records the pixel size in a `pHYs` chunk (unit metre,
/// `pixels_per_metre = round(1e9 / nm)`, read back by `io::pixel_size`), or writes no `pHYs`
/// chunk for `None`. Sizes below 0.233 nm (more than 2^32 pixels per metre) are an error.
pub fn write_png_gray8_with_pixel_size(
    path: &Path,
    img: ArrayView2<f32>,
    pixel_size_nm: Option<f32>,
) -> Result<()> {
    let dims = match pixel_size_nm {
        None => None,
        Some(nm) => {
            let ppm = (1e9 / nm as f64).round();
            if !(nm > 0.0 && ppm >= 1.0 && ppm <= u32::MAX as f64) {
                return Err(Error::invalid(format!(
                    "pixel size {nm} nm cannot be stored in a PNG pHYs chunk"
                )));
            }
            Some(png::PixelDimensions {
                xppu: ppm as u32,
                yppu: ppm as u32,
                unit: png::Unit::Meter,
            })
        }
    };
    let data: Vec<u8> = img
        .iter()
        .map(|&x| (x.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    write_png_dims(path, img.dim(), png::BitDepth::Eight, &data, dims)
}

fn write_png(path: &Path, (h, w): (usize, usize), depth: png::BitDepth, data: &[u8]) -> Result<()> {
    write_png_dims(path, (h, w), depth, data, None)
}

fn write_png_dims(
    path: &Path,
    (h, w): (usize, usize),
    depth: png::BitDepth,
    data: &[u8],
    dims: Option<png::PixelDimensions>,
) -> Result<()> {
    let (wu, hu) = match (u32::try_from(w), u32::try_from(h)) {
        (Ok(wu), Ok(hu)) if wu > 0 && hu > 0 => (wu, hu),
        _ => return Err(Error::invalid(format!("cannot write a {h}x{w} PNG"))),
    };
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut enc = png::Encoder::new(BufWriter::new(file), wu, hu);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(depth);
    enc.set_pixel_dims(dims);
    let to_err = |e: png::EncodingError| match e {
        png::EncodingError::IoError(io) => Error::io(path, io),
        other => Error::format(path, format!("cannot encode PNG: {other}")),
    };
    let mut writer = enc.write_header().map_err(to_err)?;
    writer.write_image_data(data).map_err(to_err)?;
    writer.finish().map_err(to_err)
}

/// Check that every pixel is finite. With `mask = false` a NaN or infinity is an error naming
/// the file, the count and the first bad pixel; with `mask = true` each non-finite pixel is
/// replaced by the median of the finite pixels (lower median for an even count) and the number
/// of replaced pixels is returned. An image with no finite pixel at all is always an error.
pub fn check_finite(path: &Path, img: Array2<f32>, mask: bool) -> Result<(Array2<f32>, usize)> {
    check_finite_in(path, img, mask, None, "use masking to replace them")
}

/// [`check_finite`] for section `slice` of a stack (`None`: a 2-D image), whose errors begin
/// with `slice Z: ` and whose non-finite error ends with `hint` (the caller's option, e.g.
/// `--mask-nonfinite` or `mask_nonfinite=True`).
pub fn check_finite_in(
    path: &Path,
    img: Array2<f32>,
    mask: bool,
    slice: Option<usize>,
    hint: &str,
) -> Result<(Array2<f32>, usize)> {
    let at = slice.map_or(String::new(), |z| format!("slice {z}: "));
    let bad = img.iter().filter(|v| !v.is_finite()).count();
    if bad == 0 {
        return Ok((img, 0));
    }
    let first = img
        .indexed_iter()
        .find(|(_, v)| !v.is_finite())
        .map(|((y, x), v)| format!("first at (y={y}, x={x}) = {v}"))
        .unwrap_or_default();
    if !mask {
        return Err(Error::format(
            path,
            format!("{at}{bad} non-finite pixel(s) (NaN/Inf), {first}; {hint}"),
        ));
    }
    let mut finite: Vec<f32> = img.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return Err(Error::format(
            path,
            format!("{at}no finite pixel in the image"),
        ));
    }
    let mid = (finite.len() - 1) / 2;
    let (_, median, _) = finite.select_nth_unstable_by(mid, f32::total_cmp);
    let median = *median;
    let mut img = img;
    img.mapv_inplace(|v| if v.is_finite() { v } else { median });
    Ok((img, bad))
}

/// What a file header says about an image, without decoding the pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageInfo {
    /// "PNG", "JPEG", "TIFF".
    pub format: String,
    pub width: u32,
    pub height: u32,
    /// Colour type and bit depth, e.g. "gray 16-bit", "RGB 8-bit", "gray 32-bit float".
    pub color: String,
}

/// Read the header of an image file (format, size, colour type and bit depth).
pub fn image_info(path: &Path) -> Result<ImageInfo> {
    let reader = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    let format = reader.format();
    if format == Some(image::ImageFormat::Tiff) {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let bad = |e: tiff::TiffError| Error::format(path, format!("cannot decode TIFF: {e}"));
        let mut dec = tiff::decoder::Decoder::new(std::io::BufReader::new(file)).map_err(bad)?;
        let (width, height) = dec.dimensions().map_err(bad)?;
        let sample = match dec.find_tag_unsigned::<u16>(tiff::tags::Tag::SampleFormat) {
            Ok(Some(3)) => " float",
            Ok(Some(2)) => " signed",
            _ => "",
        };
        let color = match dec.colortype().map_err(bad)? {
            tiff::ColorType::Gray(b) => format!("gray {b}-bit{sample}"),
            tiff::ColorType::GrayA(b) => format!("gray+alpha {b}-bit{sample}"),
            tiff::ColorType::RGB(b) => format!("RGB {b}-bit{sample}"),
            tiff::ColorType::RGBA(b) => format!("RGBA {b}-bit{sample}"),
            other => format!("{other:?}"),
        };
        return Ok(ImageInfo {
            format: "TIFF".into(),
            width,
            height,
            color,
        });
    }
    let name = format
        .map(|f| format!("{f:?}").to_uppercase())
        .unwrap_or_else(|| "unknown".into());
    let dec = reader
        .into_decoder()
        .map_err(|e| Error::format(path, format!("cannot decode image header: {e}")))?;
    use image::ImageDecoder;
    let (width, height) = dec.dimensions();
    let ct = dec.color_type();
    let bits = ct.bits_per_pixel() / ct.channel_count() as u16;
    let kind = match ct.channel_count() {
        1 => "gray",
        2 => "gray+alpha",
        3 => "RGB",
        _ => "RGBA",
    };
    let float = if matches!(ct, image::ColorType::Rgb32F | image::ColorType::Rgba32F) {
        " float"
    } else {
        ""
    };
    Ok(ImageInfo {
        format: name,
        width,
        height,
        color: format!("{kind} {bits}-bit{float}"),
    })
}
