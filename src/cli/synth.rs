//! `cryodet synth`: generate synthetic cryo-ET images with LabelImg ground truth.
//!
//! Two generators:
//! - **randomized** (default): every image draws an appearance family (`--families`,
//!   `--exclude-family`; the reserved `lamella` only when named) and its whole look, pixel size (`--pixel-nm`, `--pixel-nm-range`) and
//!   field of view (`--fov-nm-range`; `--size` fixes the side instead); see
//!   `crate::synth::appearance` for the ranges and families;
//! - **classic** (`--classic`): the original generator (one style, ~1 µm field, `--snr`, default
//!   512 px at SNR 0.1), byte-identical to earlier versions.
//!
//! Layout of `OUT`:
//! - `images/NAME.png`: 8- or 16-bit grayscale images (dark = dense, except the `inverted`
//!   family), each with a pHYs chunk giving its pixel size (unit metre,
//!   `pixels_per_metre = round(1e9 / pixel_nm)`);
//! - `annotations/NAME.xml`: LabelImg Pascal VOC, one `mitochondria` object per box,
//!   `<truncated>1</truncated>` for objects cut by the border; randomized images mark
//!   `<difficult>1</difficult>` the objects no observer could see (`synth/visibility.rs`):
//!   `train` and `eval` ignore them;
//! - `manifest.csv`: `image,group` rows; a group plays the role of one tomogram (images of a group
//!   must stay on the same side of a train/test split); randomized images add the columns
//!   `family,pixel_nm,snr`;
//! - with `--mrc-slices Z`: `stack.mrc` (Z slices of one synthetic volume of the classic model,
//!   float32, voxel size in Å in the header: `pixel_nm` in x and y, `slice_nm` in z) and
//!   `stack_gt.json` (`pixel_nm`, `slice_nm`; per object: 3D box and
//!   per-slice 2D boxes);
//! - with `--preview`: `preview/NAME_clean.png`, `preview/NAME_boxes.png` (ground truth drawn:
//!   red complete, yellow incomplete) and `preview/NAME_regions.png` (region code `r` of
//!   `crate::synth::region` as gray `r / (number of codes - 1)`).

use crate::draw;
use crate::io::mrc::{write_mrc_with, MrcGeometry};
use crate::io::voc::{write_voc, VocAnnotation, VocObject};
use crate::synth::{self, Family, RandomConfig, Ranges, SynthBox, SynthConfig, SynthImage};
use crate::{Error, Result};
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output directory (created if missing).
    pub out: PathBuf,
    /// Number of images.
    #[arg(long)]
    pub n: usize,
    /// Image side in pixels (square images). Classic default 512; randomized: follows the field
    /// of view and pixel size unless given.
    #[arg(long)]
    pub size: Option<usize>,
    /// Signal-to-noise ratio var(signal)/var(noise); the study's images: 0.06-0.12. Classic
    /// default 0.1; randomized: fixes the SNR (default: the family's range).
    #[arg(long)]
    pub snr: Option<f32>,
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
    /// Probability that a mitochondrion is placed across the image border (incomplete).
    #[arg(long, default_value_t = 0.3)]
    pub p_incomplete: f32,
    /// Pixel size in nm (classic default: a ~1 µm field, 1000 / size; randomized: fixes it).
    #[arg(long)]
    pub pixel_nm: Option<f32>,
    /// The original single-style generator (byte-identical output of earlier versions).
    #[arg(long)]
    pub classic: bool,
    /// Randomized: families to draw from, comma-separated (default: all of projection, slice,
    /// neuron, swollen, synapse, phase-plate, denoised, inverted). `lamella` (FIB-milled
    /// lamellae: curtaining, thickness wedge, Pt cap) is reserved for leave-out / fine-tuning
    /// studies (issue 15): drawn only when named here, and no shipped model was trained on it.
    #[arg(long, value_delimiter = ',')]
    pub families: Vec<String>,
    /// Randomized: leave these families out (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub exclude_family: Vec<String>,
    /// Randomized: pixel size range A,B in nm, log-uniform (default 0.8,4).
    #[arg(long)]
    pub pixel_nm_range: Option<String>,
    /// Randomized: field of view range A,B in nm, log-uniform (default 600,3000).
    #[arg(long)]
    pub fov_nm_range: Option<String>,
    /// Randomized: SNR range A,B, log-uniform (default: the family's).
    #[arg(long)]
    pub snr_range: Option<String>,
    /// Also write clean images and ground-truth overlays to OUT/preview/.
    #[arg(long)]
    pub preview: bool,
    /// With --mrc-slices: also write every slice of the stack as a training image,
    /// OUT/slices/images/stack_zNNN.png with LabelImg OUT/slices/annotations/stack_zNNN.xml
    /// (boxes of the objects' outer membranes in that slice), to train or evaluate on
    /// tomogram slices.
    #[arg(long, requires = "mrc_slices")]
    pub slice_images: bool,
    /// Continue an interrupted run with the same options: keep every image of OUT whose PNG and
    /// annotation are both complete (the PNG ends in IEND, the XML parses) and generate only the
    /// others. Generation is deterministic per image, so the result is the uninterrupted run's.
    #[arg(long, conflicts_with = "mrc_slices")]
    pub resume: bool,
}

/// Whether image `name` of an earlier run is complete in `images`/`anns` (`--resume`): the PNG
/// ends with its IEND chunk and the annotation parses as XML. A file cut short by an interrupted
/// run fails one of the two and is written again.
fn is_complete(images: &Path, anns: &Path, name: &str) -> bool {
    let png_ok = std::fs::read(images.join(format!("{name}.png")))
        .map(|b| b.len() >= 12 && &b[b.len() - 8..b.len() - 4] == b"IEND")
        .unwrap_or(false);
    png_ok
        && std::fs::read_to_string(anns.join(format!("{name}.xml")))
            .map(|t| roxmltree::Document::parse(&t).is_ok())
            .unwrap_or(false)
}

/// The file stem of image `index` in group `group`.
pub fn image_name(index: usize, group: usize) -> String {
    format!("synth_g{group:03}_{index:05}")
}

/// One manifest row: file stem, group, family (randomized), pixel size (nm), SNR.
type ManifestRow = (String, usize, Option<Family>, f32, f32);

/// A range `A,B` of two numbers (`what` names the option in the error).
fn parse_range(s: &str, what: &str) -> Result<(f32, f32)> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let nums: Vec<f32> = parts.iter().filter_map(|p| p.parse::<f32>().ok()).collect();
    if parts.len() != 2 || nums.len() != 2 || !nums.iter().all(|v| v.is_finite()) {
        return Err(Error::invalid(format!(
            "{what} {s:?}: expected two numbers A,B"
        )));
    }
    if nums[0] > nums[1] {
        return Err(Error::invalid(format!("{what} {s:?}: A must be <= B")));
    }
    Ok((nums[0], nums[1]))
}

/// The families enabled by `--families` and `--exclude-family`.
fn families(args: &Args) -> Result<Vec<Family>> {
    let parse = |names: &[String]| -> Result<Vec<Family>> {
        names
            .iter()
            .filter(|n| !n.trim().is_empty())
            .map(|n| {
                Family::parse(n).ok_or_else(|| {
                    let all: Vec<String> = Family::known()
                        .map(|f| match Family::RESERVED.contains(&f) {
                            true => format!("{} (reserved: only when named)", f.name()),
                            false => f.name().to_string(),
                        })
                        .collect();
                    Error::invalid(format!("unknown family {n:?} (known: {})", all.join(", ")))
                })
            })
            .collect()
    };
    let mut fams = parse(&args.families)?;
    if fams.is_empty() {
        fams = Family::ALL.to_vec();
    }
    let excl = parse(&args.exclude_family)?;
    fams.retain(|f| !excl.contains(f));
    fams.dedup();
    if fams.is_empty() {
        return Err(Error::invalid(
            "--families/--exclude-family leave no family to draw from",
        ));
    }
    Ok(fams)
}

/// The classic configuration of these arguments (also used for `--mrc-slices` stacks).
fn classic_config(args: &Args) -> Result<SynthConfig> {
    let size = args.size.unwrap_or(512);
    let mut cfg = SynthConfig::new((size, size), args.snr.unwrap_or(0.1), args.seed);
    cfg.n_mito = (args.min_mito, args.max_mito);
    cfg.p_incomplete = args.p_incomplete;
    if let Some(p) = args.pixel_nm {
        cfg.pixel_nm = p;
    }
    cfg.validate()?;
    Ok(cfg)
}

/// The randomized configuration of these arguments.
fn random_config(args: &Args) -> Result<RandomConfig> {
    let mut cfg = RandomConfig::new(args.seed);
    cfg.families = families(args)?;
    cfg.n_mito = (args.min_mito, args.max_mito);
    cfg.p_incomplete = args.p_incomplete;
    let mut r = Ranges::default();
    if let Some(s) = &args.pixel_nm_range {
        r.pixel_nm = parse_range(s, "--pixel-nm-range")?;
    }
    if let Some(p) = args.pixel_nm {
        r.pixel_nm = (p, p);
    }
    if let Some(s) = &args.fov_nm_range {
        r.fov_nm = parse_range(s, "--fov-nm-range")?;
    }
    if let Some(s) = &args.snr_range {
        r.snr = Some(parse_range(s, "--snr-range")?);
    }
    if let Some(v) = args.snr {
        r.snr = Some((v, v));
    }
    r.size = args.size.map(|s| (s, s));
    cfg.ranges = r;
    cfg.validate()?;
    Ok(cfg)
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
    let random_only = !args.families.is_empty()
        || !args.exclude_family.is_empty()
        || args.pixel_nm_range.is_some()
        || args.fov_nm_range.is_some()
        || args.snr_range.is_some();
    if args.classic && random_only {
        return Err(Error::invalid(
            "--classic takes none of --families, --exclude-family, --pixel-nm-range, --fov-nm-range, --snr-range",
        ));
    }
    let classic = classic_config(&args)?;
    let random = if args.classic {
        None
    } else {
        Some(random_config(&args)?)
    };
    if let Some(nz) = args.mrc_slices {
        check_stack_size(nz, classic.size.0)?;
    }
    let images = args.out.join("images");
    let anns = args.out.join("annotations");
    for d in [&images, &anns] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let preview = args.out.join("preview");
    if args.preview {
        std::fs::create_dir_all(&preview).map_err(|e| Error::io(&preview, e))?;
    }
    let results: Vec<Result<ManifestRow>> = (0..args.n)
        .into_par_iter()
        .map(|index| {
            let group = index / args.groups;
            let name = image_name(index, group);
            if args.resume && is_complete(&images, &anns, &name) {
                // the manifest row without drawing the image again
                return Ok(match &random {
                    Some(r) => {
                        let a = synth::appearance_of(r, index);
                        (name, group, Some(a.family), a.pixel_nm, a.imaging.snr)
                    }
                    None => (name, group, None, classic.pixel_nm, classic.snr),
                });
            }
            let s = match &random {
                Some(r) => synth::generate_random(r, index),
                None => synth::generate(&classic, index),
            };
            let png = images.join(format!("{name}.png"));
            write_png(&png, &s.image, args.bit_depth, s.pixel_nm)?;
            write_annotation(
                &anns.join(format!("{name}.xml")),
                &format!("{name}.png"),
                &png,
                &s,
            )?;
            if args.preview {
                write_png(
                    &preview.join(format!("{name}_clean.png")),
                    &s.clean,
                    8,
                    s.pixel_nm,
                )?;
                write_overlay(
                    &preview.join(format!("{name}_boxes.png")),
                    s.image.view(),
                    &s.boxes,
                )?;
                let regions = s
                    .region
                    .mapv(|r| r as f32 / (synth::region::NAMES.len() - 1) as f32);
                write_png(
                    &preview.join(format!("{name}_regions.png")),
                    &regions,
                    8,
                    s.pixel_nm,
                )?;
            }
            Ok((name, group, s.family, s.pixel_nm, s.snr))
        })
        .collect();
    let manifest = args.out.join("manifest.csv");
    let mut wr =
        csv::Writer::from_path(&manifest).map_err(|e| Error::format(&manifest, e.to_string()))?;
    let header: &[&str] = if random.is_some() {
        &["image", "group", "family", "pixel_nm", "snr"]
    } else {
        &["image", "group"]
    };
    wr.write_record(header)
        .map_err(|e| Error::format(&manifest, e.to_string()))?;
    for r in results {
        let (name, group, family, pixel_nm, snr) = r?;
        let mut row = vec![format!("{name}.png"), format!("g{group:03}")];
        if random.is_some() {
            row.push(family.map_or("classic", |f| f.name()).to_string());
            row.push(format!("{pixel_nm:.4}"));
            row.push(format!("{snr:.4}"));
        }
        wr.write_record(&row)
            .map_err(|e| Error::format(&manifest, e.to_string()))?;
    }
    wr.flush().map_err(|e| Error::io(&manifest, e))?;
    if let Some(z) = args.mrc_slices {
        write_stack(
            &args.out,
            &classic,
            z,
            args.preview,
            args.slice_images.then_some(args.bit_depth),
        )?;
    }
    Ok(())
}

/// The LabelImg (VOC) annotation of one image: one `mitochondria` object per box,
/// `truncated` = cut by the border.
fn write_annotation(path: &Path, filename: &str, image_path: &Path, s: &SynthImage) -> Result<()> {
    write_voc_boxes(path, filename, image_path, s.image.dim(), &s.boxes)
}

/// LabelImg (VOC) XML for an image of size `(h, w)` with `boxes`.
fn write_voc_boxes(
    path: &Path,
    filename: &str,
    image_path: &Path,
    (h, w): (usize, usize),
    boxes: &[SynthBox],
) -> Result<()> {
    let ann = VocAnnotation {
        filename: filename.to_string(),
        path: Some(image_path.display().to_string()),
        width: w as u32,
        height: h as u32,
        depth: 1,
        objects: boxes
            .iter()
            .map(|b| VocObject {
                name: b.class.clone(),
                bbox: b.bbox,
                difficult: b.difficult,
                truncated: b.incomplete,
            })
            .collect(),
    };
    write_voc(path, &ann)
}

/// Gray PNG from values in `[0, 1]` (clamped), 8 bits (`round(255 v)`) or 16 bits
/// (`round(65535 v)`), with a pHYs chunk stating the pixel size: unit metre,
/// `pixels_per_metre = round(1e9 / pixel_nm)` on both axes.
fn write_png(path: &Path, img: &Array2<f32>, bits: u8, pixel_nm: f32) -> Result<()> {
    write_png_gray_with_pixel_size(path, img.view(), bits, pixel_nm)
}

/// The synth generator's own PNG writer: gray 8/16 bits from `[0, 1]`, with the pHYs chunk
/// `pixels_per_metre = round(1e9 / pixel_nm)` (unit metre).
pub fn write_png_gray_with_pixel_size(
    path: &Path,
    img: ArrayView2<f32>,
    bits: u8,
    pixel_nm: f32,
) -> Result<()> {
    let (h, w) = img.dim();
    let (wu, hu) = match (u32::try_from(w), u32::try_from(h)) {
        (Ok(wu), Ok(hu)) if wu > 0 && hu > 0 => (wu, hu),
        _ => return Err(Error::invalid(format!("cannot write a {h}x{w} PNG"))),
    };
    if !(pixel_nm.is_finite() && pixel_nm > 0.0) {
        return Err(Error::invalid(format!(
            "{}: pixel size {pixel_nm} nm must be > 0",
            path.display()
        )));
    }
    let (depth, data): (png::BitDepth, Vec<u8>) = if bits == 16 {
        (
            png::BitDepth::Sixteen,
            img.iter()
                .flat_map(|&x| ((x.clamp(0.0, 1.0) * 65535.0).round() as u16).to_be_bytes())
                .collect(),
        )
    } else {
        (
            png::BitDepth::Eight,
            img.iter()
                .map(|&x| (x.clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect(),
        )
    };
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut enc = png::Encoder::new(BufWriter::new(file), wu, hu);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(depth);
    let ppm = (1e9 / pixel_nm as f64).round().min(u32::MAX as f64) as u32;
    enc.set_pixel_dims(Some(png::PixelDimensions {
        xppu: ppm,
        yppu: ppm,
        unit: png::Unit::Meter,
    }));
    let to_err = |e: png::EncodingError| match e {
        png::EncodingError::IoError(io) => Error::io(path, io),
        other => Error::format(path, format!("cannot encode PNG: {other}")),
    };
    let mut wr = enc.write_header().map_err(to_err)?;
    wr.write_image_data(&data).map_err(to_err)?;
    wr.finish().map_err(to_err)
}

/// `img` in gray with each box drawn (red: complete, yellow: incomplete; [`draw::overlay`]).
fn write_overlay(path: &Path, img: ArrayView2<f32>, boxes: &[SynthBox]) -> Result<()> {
    let marks: Vec<draw::Mark> = boxes
        .iter()
        .map(|b| draw::Mark {
            bbox: b.bbox,
            color: if b.incomplete {
                draw::INCOMPLETE_COLOR
            } else {
                draw::GT_COLOR
            },
            label: None,
        })
        .collect();
    draw::overlay(draw::gray_to_rgb(img), &marks)
        .save(path)
        .map_err(|e| Error::format(path, e.to_string()))
}

/// Largest stack written (voxels): the generator holds a few f32 copies of it in memory.
const MAX_STACK_VOXELS: usize = 1 << 28;

fn check_stack_size(nz: usize, side: usize) -> Result<()> {
    if nz == 0 || nz.saturating_mul(side).saturating_mul(side) > MAX_STACK_VOXELS {
        return Err(Error::invalid(format!(
            "--mrc-slices {nz}: need 1 <= slices and slices x {side}^2 <= {MAX_STACK_VOXELS} voxels"
        )));
    }
    Ok(())
}

/// `stack_gt.json`: the ground truth of `stack.mrc`.
#[derive(serde::Serialize)]
struct StackGt<'a> {
    /// `[nz, ny, nx]`.
    shape: [usize; 3],
    pixel_nm: f32,
    /// Slice spacing (the MRC header's z voxel size, in Å).
    slice_nm: f32,
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
/// few slices in `OUT/preview/stack_zNNN.png`; with `slice_bits`, every slice as a PNG of that
/// bit depth with its LabelImg annotation in `OUT/slices/`.
fn write_stack(
    out: &Path,
    cfg: &SynthConfig,
    nz: usize,
    preview: bool,
    slice_bits: Option<u8>,
) -> Result<()> {
    check_stack_size(nz, cfg.size.0.max(cfg.size.1))?;
    let st = synth::generate_stack(cfg, nz);
    let mrc = out.join("stack.mrc");
    // Mode 2 (float32), voxel size in Å: the xy pixel size, and the slice spacing along z (the
    // same numbers as stack_gt.json's pixel_nm and slice_nm).
    let geom = MrcGeometry {
        voxel_size: [cfg.pixel_nm * 10.0, cfg.pixel_nm * 10.0, st.slice_nm * 10.0],
        ..MrcGeometry::isotropic(1.0)
    };
    write_mrc_with(&mrc, st.volume.view(), 2, &geom)?;
    let gt = StackGt {
        shape: [nz, cfg.size.0, cfg.size.1],
        pixel_nm: cfg.pixel_nm,
        slice_nm: st.slice_nm,
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
    let boxes_at = |z: usize| -> Vec<SynthBox> {
        st.objects
            .iter()
            .filter_map(|o| {
                o.slices
                    .iter()
                    .find(|(zz, _)| *zz == z)
                    .map(|(_, b)| b.clone())
            })
            .collect()
    };
    if let Some(bits) = slice_bits {
        let (images, anns) = (out.join("slices/images"), out.join("slices/annotations"));
        for d in [&images, &anns] {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        }
        for z in 0..nz {
            let name = format!("stack_z{z:03}");
            let png = images.join(format!("{name}.png"));
            let slice = st.volume.index_axis(ndarray::Axis(0), z).to_owned();
            write_png(&png, &slice, bits, cfg.pixel_nm)?;
            write_voc_boxes(
                &anns.join(format!("{name}.xml")),
                &format!("{name}.png"),
                &png,
                slice.dim(),
                &boxes_at(z),
            )?;
        }
    }
    if preview {
        let step = (nz / 8).max(1);
        for z in (0..nz).step_by(step) {
            write_overlay(
                &out.join("preview").join(format!("stack_z{z:03}.png")),
                st.volume.index_axis(ndarray::Axis(0), z),
                &boxes_at(z),
            )?;
        }
    }
    Ok(())
}
