//! `cryodet info`: describe an image or MRC file: size, type and bit depth (MRC: nx ny nz,
//! mode, voxel size, extended header), intensity min/max/mean/std and the single-image SNR
//! estimate (`preprocess::estimate_snr`, of one image or MRC section).

use crate::error::{Error, Result};
use crate::io::{image as img_io, mrc};
use crate::preprocess::estimate_snr;
use ndarray::ArrayView2;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Image (PNG/TIFF/JPEG) or MRC file (.mrc .mrcs .st .ali .rec .map .ccp4 .preali, also
    /// .gz/.bz2 compressed, or any name with an MRC header).
    pub file: PathBuf,
    /// MRC section or TIFF page for the statistics and SNR (default: the middle one).
    #[arg(long)]
    pub slice: Option<usize>,
    /// MRC mode 0: read bytes as signed (-128..127) or unsigned (0..255). Default: IMOD's
    /// flag when the file has IMOD's stamp, else signed (MRC2014).
    #[arg(long, value_name = "yes|no")]
    pub mrc_signed_bytes: Option<super::detect::YesNo>,
}

/// Min, max, mean, std (population) of the finite pixels, and the count of non-finite ones.
fn stats(img: ArrayView2<f32>) -> (f64, f64, f64, f64, usize) {
    let (mut lo, mut hi, mut s, mut s2, mut n, mut bad) =
        (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0.0, 0usize, 0usize);
    for &v in img.iter() {
        if !v.is_finite() {
            bad += 1;
            continue;
        }
        let v = v as f64;
        lo = lo.min(v);
        hi = hi.max(v);
        s += v;
        s2 += v * v;
        n += 1;
    }
    let mean = s / n.max(1) as f64;
    let var = (s2 / n.max(1) as f64 - mean * mean).max(0.0);
    (lo, hi, mean, var.sqrt(), bad)
}

pub fn run(args: Args) -> Result<()> {
    let path = &args.file;
    let (img, what) = if mrc::is_mrc_file(path) {
        let mut r = mrc::MrcReader::open(path)?;
        r.set_signed_bytes(super::detect::YesNo::flag(args.mrc_signed_bytes));
        if let Some(w) = mrc::trailing_warning(path, &r.header) {
            eprintln!("{w}");
        }
        let h = &r.header;
        println!("file       {}", path.display());
        let compressed = match h.compression {
            mrc::Compression::None => String::new(),
            c => format!(", {} compressed", c.name()),
        };
        let bytes = if h.mode != 0 {
            String::new()
        } else {
            let why = match (args.mrc_signed_bytes, h.imod_flags) {
                (Some(_), _) => "--mrc-signed-bytes".to_string(),
                (None, Some(f)) => format!("IMOD flags {f}"),
                (None, None) => "MRC2014, no IMOD stamp".to_string(),
            };
            format!(" [{why}]")
        };
        println!(
            "type       MRC (mode {} = {}{bytes}, {}-endian{compressed})",
            h.mode,
            h.mode_name(),
            if h.little_endian { "little" } else { "big" }
        );
        println!("size       nx {} ny {} nz {}", h.nx, h.ny, h.nz);
        println!(
            "voxel      {} x {} x {} A",
            h.voxel_size[0], h.voxel_size[1], h.voxel_size[2]
        );
        println!(
            "origin     {} {} {} A  start {} {} {}",
            h.origin[0], h.origin[1], h.origin[2], h.nstart[0], h.nstart[1], h.nstart[2]
        );
        let exttyp = if h.exttyp.is_empty() {
            "type unset".to_string()
        } else {
            format!("type {}", h.exttyp)
        };
        println!(
            "ispg       {}  ext header {} bytes ({exttyp})  nversion {}",
            h.ispg, h.ext_header_len, h.nversion
        );
        println!(
            "header     dmin {} dmax {} dmean {} rms {}",
            h.dmin, h.dmax, h.dmean, h.rms
        );
        for l in &h.labels {
            println!("label      {l}");
        }
        let z = args.slice.unwrap_or(h.nz / 2);
        (r.slice(z)?, format!("section {z}"))
    } else if img_io::is_image_path(path) || img_io::is_tiff_file(path) {
        let info = img_io::image_info(path)?;
        println!("file       {}", path.display());
        println!("type       {} {}", info.format, info.color);
        println!("size       {} x {} (W x H)", info.width, info.height);
        match img_io::tiff_stack_page(path, args.slice)? {
            Some((z, pages)) => {
                println!("pages      {pages} (a stack: detect reads every page as a slice)");
                (img_io::read_tiff_page(path, z)?, format!("page {z}"))
            }
            None => {
                if args.slice.is_some() {
                    return Err(Error::invalid(
                        "--slice applies to MRC files and multi-page TIFF files only",
                    ));
                }
                (img_io::read_gray(path)?, "image".to_string())
            }
        }
    } else {
        let comp = mrc::compression_of(path)?;
        let reason = if comp == mrc::Compression::None {
            "unknown file type (expected an image or an MRC file)".to_string()
        } else {
            format!(
                "{} compressed, but the content is not an MRC file (only MRC files are read \
                 compressed; decompress images first)",
                comp.name()
            )
        };
        return Err(Error::format(path, reason));
    };
    let pixel = if mrc::is_mrc_file(path) && !mrc::is_mrc_path(path) {
        // An MRC by its header only: read_pixel_size goes by the name.
        mrc::read_header(path)
            .ok()
            .and_then(|h| crate::io::pixel_size::mrc_pixel_size(h.voxel_size[0]))
    } else {
        crate::io::pixel_size::read_pixel_size(path)?
    };
    match pixel {
        Some(p) => println!("pixel      {} nm ({})", p.nm, p.source),
        None => println!("pixel      unknown (give --pixel-size to detect, eval and train)"),
    }
    let (lo, hi, mean, std, bad) = stats(img.view());
    println!("intensity  ({what}) min {lo} max {hi} mean {mean:.4} std {std:.4}");
    if bad > 0 {
        println!("non-finite {bad} pixel(s) (NaN/Inf) excluded; SNR computed with them masked");
    }
    let (clean, _) = img_io::check_finite(path, img, true)?;
    let snr = estimate_snr(clean.view());
    if snr.is_finite() {
        println!("SNR        {snr:.4} (autocorrelation estimate, Thong et al. 2001)");
    } else {
        println!(
            "SNR        not estimated: the autocorrelation finds no noise (a smooth or \
             noise-free image; Thong et al. 2001)"
        );
    }
    Ok(())
}
