//! `cryodet preprocess`: bilateral filter + histogram equalization of one image (the study's
//! preprocessing), written as an 8- or 16-bit PNG.
//!
//! Pipeline: read (image, or one section of an MRC stack or page of a multi-page TIFF) ->
//! non-finite check -> intensities
//! to [0, 1] (`transform::to_unit_range`, percentiles 0.1/99.9 by default) ->
//! `preprocess::preprocess` -> PNG.

use crate::error::{Error, Result};
use crate::io::{image as img_io, mrc};
use crate::preprocess::{self, Filter, PreprocessConfig};
use crate::transform::{self, Scaling};
use ndarray::Array2;
use std::path::{Path, PathBuf};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKind {
    Bilateral,
    Gaussian,
    None,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Filter, then equalize (the study's choice).
    FilterFirst,
    /// Equalize, then filter (the study's rejected alternative).
    EqualizeFirst,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalingKind {
    /// Percentiles 0.1 / 99.9, clipped.
    Percentile,
    /// Min / max.
    Minmax,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Input image (PNG/TIFF/JPEG) or MRC file (.mrc .mrcs .st .ali .rec .map).
    pub input: PathBuf,
    /// Output PNG.
    pub output: PathBuf,
    /// Denoising filter.
    #[arg(long, value_enum, default_value = "bilateral")]
    pub filter: FilterKind,
    /// Spatial sigma in pixels (bilateral and Gaussian filters). Study: 1.2.
    #[arg(long, default_value_t = preprocess::STUDY_SIGMA_SPATIAL)]
    pub sigma_spatial: f32,
    /// Bilateral range sigma in 8-bit gray levels. Study: 100.
    #[arg(long, default_value_t = preprocess::STUDY_SIGMA_RANGE)]
    pub sigma_range: f32,
    /// Order of filtering and histogram equalization.
    #[arg(long, value_enum, default_value = "filter-first")]
    pub order: Order,
    /// Skip histogram equalization.
    #[arg(long)]
    pub no_equalize: bool,
    /// MRC section or TIFF page to use (default: the middle one).
    #[arg(long)]
    pub slice: Option<usize>,
    /// How raw intensities are mapped to [0, 1] before preprocessing.
    #[arg(long, value_enum, default_value = "percentile")]
    pub scaling: ScalingKind,
    /// Replace NaN/Inf pixels by the median instead of failing.
    #[arg(long)]
    pub mask_nonfinite: bool,
    /// Write a 16-bit PNG instead of 8-bit.
    #[arg(long = "16bit")]
    pub sixteen_bit: bool,
}

/// Read one gray image `[H, W]` (raw intensities) from an image file or one MRC section
/// or multi-page TIFF page (`slice`, default the middle one). Returns the image and a description of its source.
pub fn read_input(path: &Path, slice: Option<usize>) -> Result<(Array2<f32>, String)> {
    if mrc::is_mrc_path(path) {
        let h = mrc::read_header(path)?;
        let z = slice.unwrap_or(h.nz / 2);
        Ok((
            mrc::read_slice(path, &h, z)?,
            format!("section {z} of {}", h.nz),
        ))
    } else if img_io::is_image_path(path) {
        if let Some((z, pages)) = img_io::tiff_stack_page(path, slice)? {
            return Ok((
                img_io::read_tiff_page(path, z)?,
                format!("page {z} of {pages}"),
            ));
        }
        if slice.is_some() {
            return Err(Error::invalid(
                "--slice applies to MRC files and multi-page TIFF files only",
            ));
        }
        Ok((img_io::read_gray(path)?, "image".into()))
    } else {
        Err(Error::format(
            path,
            "unknown file type (expected an image or an MRC file)",
        ))
    }
}

pub fn run(args: Args) -> Result<()> {
    let (raw, what) = read_input(&args.input, args.slice)?;
    let (raw, masked) = img_io::check_finite(&args.input, raw, args.mask_nonfinite)?;
    if masked > 0 {
        eprintln!(
            "warning: {}: replaced {masked} non-finite pixel(s) by the median",
            args.input.display()
        );
    }
    let scaling = match args.scaling {
        ScalingKind::Percentile => Scaling::default(),
        ScalingKind::Minmax => Scaling::MinMax,
    };
    let unit = transform::to_unit_range(raw.view(), scaling);
    let cfg = PreprocessConfig {
        filter: match args.filter {
            FilterKind::Bilateral => Filter::Bilateral {
                sigma_spatial: args.sigma_spatial,
                sigma_range: args.sigma_range,
            },
            FilterKind::Gaussian => Filter::Gaussian {
                sigma: args.sigma_spatial,
            },
            FilterKind::None => Filter::None,
        },
        equalize: !args.no_equalize,
        equalize_first: args.order == Order::EqualizeFirst,
    };
    let t = std::time::Instant::now();
    let out = preprocess::preprocess(unit.view(), &cfg);
    let secs = t.elapsed().as_secs_f64();
    if args.sixteen_bit {
        img_io::write_png_gray16(&args.output, out.view())?;
    } else {
        img_io::write_png_gray8(&args.output, out.view())?;
    }
    let (h, w) = out.dim();
    println!(
        "{} ({what}, {w}x{h}) -> {}: {:?}, equalize {} ({}), {secs:.2} s; SNR estimate {:.3} -> {:.3}",
        args.input.display(),
        args.output.display(),
        cfg.filter,
        cfg.equalize,
        if cfg.equalize_first { "first" } else { "after filtering" },
        preprocess::estimate_snr(unit.view()),
        preprocess::estimate_snr(out.view()),
    );
    Ok(())
}
