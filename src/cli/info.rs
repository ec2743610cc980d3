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
    /// Image (PNG/TIFF/JPEG) or MRC file (.mrc .mrcs .st .ali .rec .map).
    pub file: PathBuf,
    /// MRC section for the statistics and SNR (default: the middle one).
    #[arg(long)]
    pub slice: Option<usize>,
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
    let (img, what) = if mrc::is_mrc_path(path) {
        let h = mrc::read_header(path)?;
        println!("file       {}", path.display());
        println!(
            "type       MRC (mode {} = {}, {}-endian)",
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
            "ispg       {}  ext header {} bytes {:?}  nversion {}",
            h.ispg, h.ext_header_len, h.exttyp, h.nversion
        );
        println!(
            "header     dmin {} dmax {} dmean {} rms {}",
            h.dmin, h.dmax, h.dmean, h.rms
        );
        for l in &h.labels {
            println!("label      {l}");
        }
        let z = args.slice.unwrap_or(h.nz / 2);
        (mrc::read_slice(path, &h, z)?, format!("section {z}"))
    } else if img_io::is_image_path(path) {
        if args.slice.is_some() {
            return Err(Error::invalid("--slice applies to MRC files only"));
        }
        let info = img_io::image_info(path)?;
        println!("file       {}", path.display());
        println!("type       {} {}", info.format, info.color);
        println!("size       {} x {} (W x H)", info.width, info.height);
        (img_io::read_gray(path)?, "image".to_string())
    } else {
        return Err(Error::format(
            path,
            "unknown file type (expected an image or an MRC file)",
        ));
    };
    match crate::io::pixel_size::read_pixel_size(path)? {
        Some(p) => println!("pixel      {} nm ({})", p.nm, p.source),
        None => println!("pixel      unknown (give --pixel-size to detect, eval and train)"),
    }
    let (lo, hi, mean, std, bad) = stats(img.view());
    println!("intensity  ({what}) min {lo} max {hi} mean {mean:.4} std {std:.4}");
    if bad > 0 {
        println!("non-finite {bad} pixel(s) (NaN/Inf) excluded; SNR computed with them masked");
    }
    let (clean, _) = img_io::check_finite(path, img, true)?;
    println!(
        "SNR        {:.4} (autocorrelation estimate, Thong et al. 2001)",
        estimate_snr(clean.view())
    );
    Ok(())
}
