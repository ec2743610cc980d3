//! `cryodet synth`: generate synthetic cryo-ET images with LabelImg ground truth.
//!
//! Layout of `OUT`:
//! - `images/NAME.png`: 8- or 16-bit grayscale projection images (dark = dense);
//! - `annotations/NAME.xml`: LabelImg Pascal VOC, one `mitochondria` object per box,
//!   `<truncated>1</truncated>` for objects cut by the border;
//! - `manifest.csv`: `image,group` rows; a group plays the role of one tomogram (images of a group
//!   must stay on the same side of a train/test split);
//! - with `--mrc-slices Z`: `stack.mrc` (Z slices of one synthetic volume, float32) and
//!   `stack_gt.json` (per object: 3D box and per-slice 2D boxes);
//! - with `--preview`: `preview/NAME_clean.png` and `preview/NAME_boxes.png` (ground truth drawn:
//!   red complete, yellow incomplete).

use crate::synth::{self, SynthConfig, SynthImage};
use crate::{Error, Result};
use ndarray::Array2;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output directory (created if missing).
    pub out: PathBuf,
    /// Number of images.
    #[arg(long)]
    pub n: usize,
    /// Image side in pixels (square images).
    #[arg(long, default_value_t = 512)]
    pub size: usize,
    /// Signal-to-noise ratio var(signal)/var(noise); the study's images: 0.06-0.12.
    #[arg(long, default_value_t = 0.1)]
    pub snr: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per group ("tomogram") in manifest.csv.
    #[arg(long, default_value_t = 10)]
    pub groups: usize,
    /// PNG bit depth: 8 or 16.
    #[arg(long, default_value_t = 8)]
    pub bit_depth: u8,
    /// Also write stack.mrc with this many slices of one synthetic volume (and stack_gt.json).
    #[arg(long)]
    pub mrc_slices: Option<usize>,
    /// Minimum mitochondria per image.
    #[arg(long, default_value_t = 1)]
    pub min_mito: usize,
    /// Maximum mitochondria per image.
    #[arg(long, default_value_t = 5)]
    pub max_mito: usize,
    /// Pixel size in nm (default: a ~1 µm field, 1000 / size).
    #[arg(long)]
    pub pixel_nm: Option<f32>,
    /// Also write clean images and ground-truth overlays to OUT/preview/.
    #[arg(long)]
    pub preview: bool,
}

/// The file stem of image `index` in group `group`.
pub fn image_name(index: usize, group: usize) -> String {
    format!("synth_g{group:03}_{index:05}")
}

pub fn run(args: Args) -> Result<()> {
    if args.bit_depth != 8 && args.bit_depth != 16 {
        return Err(Error::invalid(format!(
            "--bit-depth {} must be 8 or 16",
            args.bit_depth
        )));
    }
    if args.groups == 0 {
        return Err(Error::invalid("--groups must be >= 1"));
    }
    let mut cfg = SynthConfig::new((args.size, args.size), args.snr, args.seed);
    cfg.n_mito = (args.min_mito, args.max_mito);
    if let Some(p) = args.pixel_nm {
        cfg.pixel_nm = p;
    }
    cfg.validate()?;
    let images = args.out.join("images");
    let anns = args.out.join("annotations");
    for d in [&images, &anns] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let preview = args.out.join("preview");
    if args.preview {
        std::fs::create_dir_all(&preview).map_err(|e| Error::io(&preview, e))?;
    }
    let results: Vec<Result<(String, usize)>> = (0..args.n)
        .into_par_iter()
        .map(|index| {
            let group = index / args.groups;
            let name = image_name(index, group);
            let s = synth::generate(&cfg, index);
            let png = images.join(format!("{name}.png"));
            write_png(&png, &s.image, args.bit_depth)?;
            write_annotation(
                &anns.join(format!("{name}.xml")),
                &format!("{name}.png"),
                &png,
                &s,
            )?;
            if args.preview {
                write_png(&preview.join(format!("{name}_clean.png")), &s.clean, 8)?;
                write_overlay(&preview.join(format!("{name}_boxes.png")), &s)?;
            }
            Ok((name, group))
        })
        .collect();
    let manifest = args.out.join("manifest.csv");
    let mut wr =
        csv::Writer::from_path(&manifest).map_err(|e| Error::format(&manifest, e.to_string()))?;
    wr.write_record(["image", "group"])
        .map_err(|e| Error::format(&manifest, e.to_string()))?;
    for r in results {
        let (name, group) = r?;
        wr.write_record([format!("{name}.png"), format!("g{group:03}")])
            .map_err(|e| Error::format(&manifest, e.to_string()))?;
    }
    wr.flush().map_err(|e| Error::io(&manifest, e))?;
    if let Some(z) = args.mrc_slices {
        write_stack(&args.out, &cfg, z)?;
    }
    Ok(())
}

/// The VOC annotation of one image.
fn write_annotation(path: &Path, filename: &str, image_path: &Path, s: &SynthImage) -> Result<()> {
    let (h, w) = s.image.dim();
    let esc = |x: &str| quick_xml::escape::escape(x).into_owned();
    let mut x = String::new();
    x.push_str("<annotation>\n\t<folder>images</folder>\n");
    x.push_str(&format!("\t<filename>{}</filename>\n", esc(filename)));
    x.push_str(&format!(
        "\t<path>{}</path>\n",
        esc(&image_path.display().to_string())
    ));
    x.push_str("\t<source>\n\t\t<database>cryodet synth</database>\n\t</source>\n");
    x.push_str(&format!(
        "\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>1</depth>\n\t</size>\n"
    ));
    x.push_str("\t<segmented>0</segmented>\n");
    for b in &s.boxes {
        x.push_str(&format!(
            "\t<object>\n\t\t<name>{}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>{}</truncated>\n\t\t<difficult>0</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{}</xmin>\n\t\t\t<ymin>{}</ymin>\n\t\t\t<xmax>{}</xmax>\n\t\t\t<ymax>{}</ymax>\n\t\t</bndbox>\n\t</object>\n",
            esc(&b.class),
            b.incomplete as u8,
            b.bbox[0], b.bbox[1], b.bbox[2], b.bbox[3]
        ));
    }
    x.push_str("</annotation>\n");
    std::fs::write(path, x).map_err(|e| Error::io(path, e))
}

/// Gray PNG from values in `[0, 1]` (to be replaced by `crate::io::image::write_png_gray*`).
fn write_png(path: &Path, img: &Array2<f32>, bits: u8) -> Result<()> {
    let (h, w) = img.dim();
    let res = if bits == 16 {
        let buf: Vec<u16> = img
            .iter()
            .map(|v| (v.clamp(0.0, 1.0) * 65535.0).round() as u16)
            .collect();
        image::ImageBuffer::<image::Luma<u16>, _>::from_raw(w as u32, h as u32, buf)
            .expect("buffer size")
            .save(path)
    } else {
        let buf: Vec<u8> = img
            .iter()
            .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect();
        image::GrayImage::from_raw(w as u32, h as u32, buf)
            .expect("buffer size")
            .save(path)
    };
    res.map_err(|e| Error::format(path, e.to_string()))
}

/// The noisy image in gray with each ground-truth box drawn (red: complete, yellow: incomplete).
fn write_overlay(path: &Path, s: &SynthImage) -> Result<()> {
    let (h, w) = s.image.dim();
    let mut rgb = image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let v = (s.image[[y as usize, x as usize]] * 255.0).round() as u8;
        image::Rgb([v, v, v])
    });
    for b in &s.boxes {
        let col = if b.incomplete {
            [255, 220, 0]
        } else {
            [255, 40, 40]
        };
        let (x1, y1) = (b.bbox[0] as u32, b.bbox[1] as u32);
        let (x2, y2) = (
            (b.bbox[2] as u32).saturating_sub(1),
            (b.bbox[3] as u32).saturating_sub(1),
        );
        for x in x1..=x2 {
            rgb.put_pixel(x, y1, image::Rgb(col));
            rgb.put_pixel(x, y2, image::Rgb(col));
        }
        for y in y1..=y2 {
            rgb.put_pixel(x1, y, image::Rgb(col));
            rgb.put_pixel(x2, y, image::Rgb(col));
        }
    }
    rgb.save(path)
        .map_err(|e| Error::format(path, e.to_string()))
}

/// `stack.mrc` + `stack_gt.json` (filled in with the volume generator).
fn write_stack(_out: &Path, _cfg: &SynthConfig, _z: usize) -> Result<()> {
    Err(Error::invalid("--mrc-slices is not implemented yet"))
}
