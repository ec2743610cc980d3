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
        write_stack(&args.out, &cfg, z, args.preview)?;
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

/// `stack_gt.json`: the ground truth of `stack.mrc`.
#[derive(serde::Serialize)]
struct StackGt<'a> {
    /// `[nz, ny, nx]`.
    shape: [usize; 3],
    pixel_nm: f32,
    bbox3d_layout: &'static str,
    objects: Vec<StackGtObject<'a>>,
}

#[derive(serde::Serialize)]
struct StackGtObject<'a> {
    id: usize,
    class: &'a str,
    bbox3d: [f32; 6],
    slices: Vec<StackGtSlice>,
}

#[derive(serde::Serialize)]
struct StackGtSlice {
    z: usize,
    bbox: [f32; 4],
    truncated: bool,
}

/// `stack.mrc` (float32 slices in [0, 1]) and `stack_gt.json`; with `preview`, overlays of a
/// few slices in `OUT/preview/stack_zNNN.png`.
fn write_stack(out: &Path, cfg: &SynthConfig, nz: usize, preview: bool) -> Result<()> {
    if nz == 0 || nz > 4096 {
        return Err(Error::invalid(format!(
            "--mrc-slices {nz} must be in 1..=4096"
        )));
    }
    let st = synth::generate_stack(cfg, nz);
    let mrc = out.join("stack.mrc");
    write_mrc_f32(&mrc, &st.volume, cfg.pixel_nm * 10.0)?;
    let gt = StackGt {
        shape: [nz, cfg.size.0, cfg.size.1],
        pixel_nm: cfg.pixel_nm,
        bbox3d_layout: "x1,y1,z1,x2,y2,z2 in pixels/slices; z2 exclusive (last slice + 1)",
        objects: st
            .objects
            .iter()
            .enumerate()
            .map(|(id, o)| StackGtObject {
                id,
                class: &o.class,
                bbox3d: o.bbox3d,
                slices: o
                    .slices
                    .iter()
                    .map(|(z, b)| StackGtSlice {
                        z: *z,
                        bbox: b.bbox,
                        truncated: b.incomplete,
                    })
                    .collect(),
            })
            .collect(),
    };
    let path = out.join("stack_gt.json");
    let text =
        serde_json::to_string_pretty(&gt).map_err(|e| Error::format(&path, e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    if preview {
        let step = (nz / 8).max(1);
        for z in (0..nz).step_by(step) {
            let img = st.volume.index_axis(ndarray::Axis(0), z).to_owned();
            let boxes = st
                .objects
                .iter()
                .filter_map(|o| {
                    o.slices
                        .iter()
                        .find(|(zz, _)| *zz == z)
                        .map(|(_, b)| b.clone())
                })
                .collect();
            let s = SynthImage {
                clean: img.clone(),
                image: img,
                boxes,
                outer_membrane: Array2::zeros((1, 1)),
                region: Array2::zeros((1, 1)),
            };
            write_overlay(&out.join("preview").join(format!("stack_z{z:03}.png")), &s)?;
        }
    }
    Ok(())
}

/// A float32 (mode 2) MRC2014 file of `vol: [nz, ny, nx]` with voxel size `voxel_a` Å
/// (to be replaced by `crate::io::mrc::write_mrc`).
fn write_mrc_f32(path: &Path, vol: &ndarray::Array3<f32>, voxel_a: f32) -> Result<()> {
    let (nz, ny, nx) = vol.dim();
    let mut hdr = [0u8; 1024];
    let mut put_i =
        |word: usize, v: i32| hdr[4 * word..4 * word + 4].copy_from_slice(&v.to_le_bytes());
    for (k, v) in [nx, ny, nz].iter().enumerate() {
        put_i(k, *v as i32); // NX NY NZ
        put_i(7 + k, *v as i32); // MX MY MZ
    }
    put_i(3, 2); // MODE 2: float32
    put_i(16, 1); // MAPC MAPR MAPS
    put_i(17, 2);
    put_i(18, 3);
    put_i(27, 20140); // NVERSION
    let (lo, hi) = synth_min_max(vol);
    let mean = vol.mean().unwrap_or(0.0);
    let rms =
        (vol.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / vol.len().max(1) as f32).sqrt();
    let mut put_f =
        |word: usize, v: f32| hdr[4 * word..4 * word + 4].copy_from_slice(&v.to_le_bytes());
    for (k, n) in [nx, ny, nz].iter().enumerate() {
        put_f(10 + k, *n as f32 * voxel_a); // CELLA
        put_f(13 + k, 90.0); // CELLB
    }
    put_f(19, lo);
    put_f(20, hi);
    put_f(21, mean);
    put_f(54, rms);
    hdr[208..212].copy_from_slice(b"MAP ");
    hdr[212..216].copy_from_slice(&[0x44, 0x44, 0, 0]); // little-endian stamp
    let mut bytes = Vec::with_capacity(1024 + 4 * vol.len());
    bytes.extend_from_slice(&hdr);
    for v in vol.iter() {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

fn synth_min_max(v: &ndarray::Array3<f32>) -> (f32, f32) {
    v.iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)))
}
