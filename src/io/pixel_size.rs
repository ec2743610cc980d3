//! The physical pixel size of an input file (nm per pixel), from what the file itself records.
//!
//! | format | source | conversion |
//! |---|---|---|
//! | MRC | header voxel size `cella.x / mx` (Å) | nm = Å / 10; 0 Å or 1 Å (the default of writers that do not know it) = unknown |
//! | TIFF (ImageJ) | `ImageDescription` starting `ImageJ=` with `unit=nm`, `unit=micron` / `um` / `µm` (also ImageJ's escaped `\u00B5m`), `unit=A`; `XResolution` = pixels per unit | nm = (nm per unit) / XResolution |
//! | TIFF | `XResolution` with `ResolutionUnit` 2 (inch) or 3 (cm); the tag must be present (its TIFF default, inch, is not assumed) | nm = 2.54e7 / XResolution (inch), 1e7 / XResolution (cm) |
//! | PNG | `pHYs` chunk with unit metre | nm = 1e9 / pixels_per_metre |
//! | JPEG, other | none | unknown |
//!
//! Only the x axis is read (detection assumes square pixels). A value outside
//! [`PLAUSIBLE_NM`] is treated as unknown: a TIFF at 72 or 300 dpi or a PNG at 2835 pixels/m
//! (72 dpi) carries a display resolution, not a microscope's (72 dpi = 352,778 nm per pixel).
//!
//! The `--pixel-size NM` option of detect/eval/train overrides (detect, eval) or supplements
//! (train: for files without one) what is read here.

use crate::error::{Error, Result};
use crate::io::mrc;
use std::path::Path;

/// nm per pixel accepted as a microscope's pixel size (0.01 nm .. 10 µm).
pub const PLAUSIBLE_NM: std::ops::RangeInclusive<f32> = 0.01..=10_000.0;

/// A pixel size and where it came from (for the line `detect` prints per input).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PixelSize {
    /// nm per pixel of the file.
    pub nm: f32,
    /// "MRC header", "TIFF resolution", "ImageJ description", "PNG pHYs", "--pixel-size".
    pub source: &'static str,
}

fn plausible(nm: f64, source: &'static str) -> Option<PixelSize> {
    let nm = nm as f32;
    (nm.is_finite() && PLAUSIBLE_NM.contains(&nm)).then_some(PixelSize { nm, source })
}

/// The pixel size recorded in the file at `path` (see the module doc), `None` when the format
/// does not record one or the recorded one means "unknown". Errors only when the file cannot be
/// opened or its header is corrupt.
pub fn read_pixel_size(path: &Path) -> Result<Option<PixelSize>> {
    if mrc::is_mrc_path(path) {
        let h = mrc::read_header(path)?;
        return Ok(mrc_pixel_size(h.voxel_size[0]));
    }
    let mut magic = [0u8; 8];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let n = f.read(&mut magic).map_err(|e| Error::io(path, e))?;
        if n < 4 {
            return Ok(None);
        }
    }
    if magic.starts_with(b"\x89PNG") {
        return png_pixel_size(path);
    }
    if magic.starts_with(b"II*\0") || magic.starts_with(b"MM\0*") {
        return tiff_pixel_size(path);
    }
    Ok(None)
}

/// [`read_pixel_size`] as nm only; unreadable files give `None` (the reader reports them).
pub fn pixel_size_nm(path: &Path) -> Option<f32> {
    read_pixel_size(path).ok().flatten().map(|p| p.nm)
}

/// MRC voxel size in Å to nm; 0 and 1 Å mean unknown.
pub fn mrc_pixel_size(angstrom: f32) -> Option<PixelSize> {
    if !angstrom.is_finite() || angstrom <= 0.0 || (angstrom - 1.0).abs() < 1e-6 {
        return None;
    }
    plausible(angstrom as f64 / 10.0, "MRC header")
}

fn png_pixel_size(path: &Path) -> Result<Option<PixelSize>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .map_err(|e| Error::format(path, format!("cannot decode PNG header: {e}")))?;
    Ok(match reader.info().pixel_dims {
        Some(d) if d.unit == png::Unit::Meter && d.xppu > 0 => {
            plausible(1e9 / d.xppu as f64, "PNG pHYs")
        }
        _ => None,
    })
}

/// nm per unit of an ImageJ `unit=` value.
fn imagej_unit_nm(unit: &str) -> Option<f64> {
    match unit.trim().trim_matches('"') {
        "nm" | "nanometer" | "nanometers" => Some(1.0),
        "micron" | "microns" | "um" | "µm" | "μm" | "\\u00B5m" | "\\u00b5m" => Some(1000.0),
        "A" | "Å" | "angstrom" | "\\u00C5" => Some(0.1),
        "mm" => Some(1e6),
        _ => None,
    }
}

fn rational(v: &tiff::decoder::ifd::Value) -> Option<f64> {
    use tiff::decoder::ifd::Value;
    match *v {
        Value::Rational(n, d) if d != 0 => Some(n as f64 / d as f64),
        Value::Float(f) => Some(f as f64),
        Value::Double(f) => Some(f),
        Value::Short(s) => Some(s as f64),
        Value::Unsigned(u) => Some(u as f64),
        _ => None,
    }
}

fn tiff_pixel_size(path: &Path) -> Result<Option<PixelSize>> {
    use tiff::tags::Tag;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let bad = |e: tiff::TiffError| Error::format(path, format!("cannot decode TIFF: {e}"));
    let mut dec = tiff::decoder::Decoder::new(std::io::BufReader::new(file)).map_err(bad)?;
    let xres = dec
        .find_tag(Tag::XResolution)
        .ok()
        .flatten()
        .and_then(|v| rational(&v))
        .filter(|r| r.is_finite() && *r > 0.0);
    let Some(xres) = xres else {
        return Ok(None);
    };
    let description = match dec.find_tag(Tag::ImageDescription).ok().flatten() {
        Some(tiff::decoder::ifd::Value::Ascii(s)) => Some(s),
        _ => None,
    };
    if let Some(d) = description.filter(|d| d.starts_with("ImageJ=")) {
        let unit = d
            .lines()
            .find_map(|l| l.trim().strip_prefix("unit="))
            .and_then(imagej_unit_nm);
        if let Some(per_unit) = unit {
            return Ok(plausible(per_unit / xres, "ImageJ description"));
        }
    }
    let unit: Option<u16> = dec.find_tag_unsigned(Tag::ResolutionUnit).ok().flatten();
    Ok(match unit {
        Some(2) => plausible(2.54e7 / xres, "TIFF resolution"),
        Some(3) => plausible(1e7 / xres, "TIFF resolution"),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mrc_zero_and_one_angstrom_are_unknown() {
        assert_eq!(mrc_pixel_size(0.0), None);
        assert_eq!(mrc_pixel_size(1.0), None);
        assert_eq!(mrc_pixel_size(f32::NAN), None);
        assert_eq!(mrc_pixel_size(2.6).map(|p| p.nm), Some(0.26));
    }

    #[test]
    fn imagej_units() {
        assert_eq!(imagej_unit_nm("micron"), Some(1000.0));
        assert_eq!(imagej_unit_nm("\\u00B5m"), Some(1000.0));
        assert_eq!(imagej_unit_nm("nm"), Some(1.0));
        assert_eq!(imagej_unit_nm("pixel"), None);
    }
}
