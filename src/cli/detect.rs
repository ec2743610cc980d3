//! `cryodet detect`: organelles in images (PNG, TIFF, JPEG; 8/16-bit), MRC stacks (slice by
//! slice, optionally linked into 3D objects) and directories of them.
//!
//! Writes, per input `NAME`, into `--out`: `NAME.json` (always), `NAME.csv` and `NAME.xml`
//! (LabelImg VOC, per slice `NAME_z0007.xml` for stacks) by `--format`, `NAME.overlay.png` by
//! `--overlay` (predictions blue, ground truth from `--gt` red, as the study's Fig. 5), and for
//! `--3d`: `NAME.objects.json`, `NAME.objects.csv`, `NAME.objects.txt` (IMOD point2model input),
//! `NAME.montage.png`, and `NAME.labels.mrc` with `--label-volume`.
//! A failing input is reported on one line and skipped; the exit code is non-zero if any failed.

use crate::draw::{draw_rect, draw_text, gray_to_rgb};
use crate::error::{Error, Result};
use crate::io::detections::{
    write_csv, write_json, Detection, ImageDetections, SliceDetections, StackDetections,
};
use crate::io::{image, mrc, voc};
use crate::model::FasterRcnn;
use crate::pipeline::{default_slice_weights, default_weights, detect_raw_at, PipelineConfig};
use crate::volume;
use ndarray::Array2;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Images, MRC stacks (.mrc .st .ali .rec .mrcs) or directories of them.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Weight file; default: the shipped weights/default.safetensors (projections and images),
    /// with --3d weights/slices.safetensors (fine-tuned on tomogram slices).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "detections")]
    pub out: PathBuf,
    /// Report detections with at least this score (default: the threshold recorded in the
    /// weights' metadata `score_thresh`, e.g. the shipped model's F1-optimal one; with --3d
    /// `score_thresh_3d` when recorded; else 0.5).
    #[arg(long)]
    pub score_thresh: Option<f32>,
    /// Short side of the network input in pixels (default: the size the model was trained at,
    /// from its metadata, else 600).
    #[arg(long)]
    pub size: Option<usize>,
    /// Upper bound of the long side (default 1000/600 of the short side).
    #[arg(long)]
    pub max_size: Option<usize>,
    /// nm per pixel of the input files, overriding what they record (MRC header voxel size,
    /// TIFF resolution tags or ImageJ description, PNG pHYs). With a known pixel size and a
    /// model that records its own (`pixel_size_nm`), the image is resampled to the model's pixel
    /// size; otherwise --size applies.
    #[arg(long, value_name = "NM")]
    pub pixel_size: Option<f32>,
    /// Cap of the network input's long side when the pixel size sets the scale.
    #[arg(long, value_name = "PX", default_value_t = crate::pipeline::MAX_INPUT)]
    pub max_input: usize,
    /// Skip the study's bilateral filter + histogram equalization (models trained without it
    /// skip it by default, from their metadata).
    #[arg(long)]
    pub no_preprocess: bool,
    /// Output formats besides JSON: any of json,csv,voc (comma-separated).
    #[arg(long, default_value = "json,csv")]
    pub format: String,
    /// Write NAME.overlay.png with the boxes drawn.
    #[arg(long)]
    pub overlay: bool,
    /// Directory of LabelImg XML ground truth (NAME.xml) drawn in red on overlays.
    #[arg(long)]
    pub gt: Option<PathBuf>,
    /// MRC slices to process, `A:B` (B exclusive) or `Z`; default all.
    #[arg(long)]
    pub slices: Option<String>,
    /// MRC: link per-slice boxes into 3D objects.
    #[arg(long = "3d")]
    pub three_d: bool,
    /// MRC: detect on every K-th slice.
    #[arg(long, default_value_t = 1)]
    pub stride: usize,
    #[command(flatten)]
    pub link: super::link::LinkArgs,
    /// 3D: also write NAME.labels.mrc, a label volume of the objects.
    #[arg(long)]
    pub label_volume: bool,
    /// 3D: every n-th processed slice goes into the montage.
    #[arg(long, default_value_t = 5)]
    pub montage_every: usize,
    /// Replace NaN/Inf pixels by the median (with a warning) instead of failing.
    #[arg(long)]
    pub mask_nonfinite: bool,
    /// Process every N-th input starting at I (`I/N`, 0-based), e.g. `$SLURM_ARRAY_TASK_ID/16`.
    #[arg(long)]
    pub shard: Option<String>,
    /// Threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Parses `I/N`.
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::invalid(format!("--shard {s:?}: expected I/N with 0 <= I < N"));
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// Parses `A:B` (B exclusive, either side may be empty) or `Z` against a stack of `nz` slices.
pub fn parse_slices(s: &str, nz: usize) -> Result<std::ops::Range<usize>> {
    let bad = || Error::invalid(format!("--slices {s:?}: expected A:B or Z within 0..{nz}"));
    let num = |t: &str, d: usize| -> Result<usize> {
        if t.trim().is_empty() {
            Ok(d)
        } else {
            t.trim().parse().map_err(|_| bad())
        }
    };
    let r = match s.split_once(':') {
        Some((a, b)) => num(a, 0)?..num(b, nz)?,
        None => {
            let z = num(s, usize::MAX)?;
            z..z.saturating_add(1)
        }
    };
    if r.start >= r.end || r.end > nz {
        return Err(bad());
    }
    Ok(r)
}

/// Files named on the command line, directories expanded (sorted; images and MRC files only).
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::io(p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && (image::is_image_path(f) || mrc::is_mrc_path(f)))
                .collect();
            v.sort();
            if v.is_empty() {
                eprintln!(
                    "warning: {}: no images or MRC files in this directory",
                    p.display()
                );
            }
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned())
}

struct Formats {
    csv: bool,
    voc: bool,
}

fn parse_formats(s: &str) -> Result<Formats> {
    let mut f = Formats {
        csv: false,
        voc: false,
    };
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "json" => {}
            "csv" => f.csv = true,
            "voc" | "xml" => f.voc = true,
            other => {
                return Err(Error::invalid(format!(
                    "--format: unknown format {other:?} (json, csv, voc)"
                )))
            }
        }
    }
    Ok(f)
}

pub fn run(args: Args) -> Result<()> {
    crate::nn::gemm::set_threads(args.threads.unwrap_or_else(super::trace::num_threads));
    let formats = parse_formats(&args.format)?;
    let shard = args.shard.as_deref().map(parse_shard).transpose()?;
    if let Some(t) = args.score_thresh.filter(|t| !t.is_finite()) {
        return Err(Error::invalid(format!(
            "--score-thresh {t} must be a finite number"
        )));
    }
    let weights = match &args.weights {
        Some(w) => w.clone(),
        None if args.three_d => default_slice_weights()?,
        None => default_weights()?,
    };
    let model = FasterRcnn::load(&weights)?;
    if args.weights.is_none() {
        eprintln!("weights: {}", weights.display());
    }
    let mut inputs = expand_inputs(&args.inputs)?;
    if inputs.is_empty() {
        return Err(Error::invalid(
            "no input files: the given directories hold no images or MRC files",
        ));
    }
    if let Some((i, n)) = shard {
        inputs = inputs.into_iter().skip(i).step_by(n).collect();
    }
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    // --3d: the model's 3D threshold (metadata score_thresh_3d) unless --score-thresh is given.
    let score_thresh = args.score_thresh.or_else(|| {
        args.three_d
            .then(|| crate::pipeline::recommended_score_thresh_3d(&model))
            .flatten()
    });
    let mut cfg = PipelineConfig::for_model(
        &model,
        args.size,
        args.max_size,
        args.no_preprocess,
        score_thresh,
    );
    cfg.pixel_size = crate::pipeline::check_pixel_size(args.pixel_size)?;
    cfg.max_input = crate::pipeline::check_max_input(args.max_input)?;
    let n = inputs.len();
    let mut failures: Vec<String> = Vec::new();
    let t_all = Instant::now();
    for (k, input) in inputs.iter().enumerate() {
        let t0 = Instant::now();
        let result = if mrc::is_mrc_path(input) {
            detect_stack(&model, input, &args, &cfg, &formats)
        } else {
            detect_image(&model, input, &args, &cfg, &formats)
        };
        match result {
            Ok(summary) => eprintln!(
                "[{}/{}] {}: {summary} ({:.2} s)",
                k + 1,
                n,
                input.display(),
                t0.elapsed().as_secs_f64()
            ),
            Err(e) => {
                let line = match e {
                    Error::Io { .. } | Error::Format { .. } | Error::Weights { .. } => {
                        e.to_string()
                    }
                    Error::Invalid(r) => format!("{}: {r}", input.display()),
                };
                eprintln!("[{}/{}] error: {line}", k + 1, n);
                failures.push(line);
            }
        }
    }
    eprintln!(
        "{} input(s) in {:.1} s, output in {}",
        n,
        t_all.elapsed().as_secs_f64(),
        args.out.display()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        eprintln!("{} of {} input(s) failed:", failures.len(), n);
        for f in &failures {
            eprintln!("  {f}");
        }
        Err(Error::invalid(format!(
            "{} of {n} input(s) failed",
            failures.len()
        )))
    }
}

fn read_checked(path: &Path, raw: Array2<f32>, mask: bool) -> Result<Array2<f32>> {
    let (img, masked) = image::check_finite(path, raw, mask)?;
    if masked > 0 {
        eprintln!(
            "warning: {}: {masked} NaN/Inf pixel(s) replaced by the median",
            path.display()
        );
    }
    Ok(img)
}

fn detect_image(
    model: &FasterRcnn,
    input: &Path,
    args: &Args,
    cfg: &PipelineConfig,
    formats: &Formats,
) -> Result<String> {
    let raw = read_checked(input, image::read_gray(input)?, args.mask_nonfinite)?;
    let (h, w) = raw.dim();
    let pixel = cfg.pixel_size_of(input)?;
    let (dets, prepared) = detect_raw_at(model, &raw, cfg, pixel)?;
    let name = stem(input);
    let out = &args.out;
    write_json(
        out.join(format!("{name}.json")),
        &ImageDetections {
            image: input.display().to_string(),
            width: w as u32,
            height: h as u32,
            detections: dets.clone(),
        },
    )?;
    if formats.csv {
        let rows: Vec<_> = dets
            .iter()
            .map(|d| (input.display().to_string(), None, d.clone()))
            .collect();
        write_csv(out.join(format!("{name}.csv")), &rows)?;
    }
    if formats.voc {
        write_voc_file(&out.join(format!("{name}.xml")), input, (h, w), &dets)?;
    }
    if args.overlay {
        let gt = read_gt(args.gt.as_deref(), &name)?;
        let img = overlay(&prepared.unit, &dets, &gt);
        save_png(&out.join(format!("{name}.overlay.png")), &img)?;
    }
    Ok(format!(
        "{}; {} detection(s)",
        prepared.scale.note,
        dets.len()
    ))
}

fn write_voc_file(
    path: &Path,
    image_path: &Path,
    (h, w): (usize, usize),
    dets: &[Detection],
) -> Result<()> {
    let ann = voc::VocAnnotation {
        filename: image_path
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
        path: Some(image_path.display().to_string()),
        width: w as u32,
        height: h as u32,
        depth: 1,
        objects: dets
            .iter()
            .map(|d| voc::VocObject {
                name: d.label.clone(),
                bbox: d.bbox,
                difficult: false,
                truncated: false,
            })
            .collect(),
    };
    voc::write_voc(path, &ann)
}

fn read_gt(dir: Option<&Path>, name: &str) -> Result<Vec<[f32; 4]>> {
    let Some(dir) = dir else {
        return Ok(Vec::new());
    };
    let p = dir.join(format!("{name}.xml"));
    if !p.is_file() {
        eprintln!("warning: no ground truth {}", p.display());
        return Ok(Vec::new());
    }
    Ok(voc::read_voc(&p)?
        .objects
        .into_iter()
        .map(|o| o.bbox)
        .collect())
}

/// The image with ground truth (red) and predictions (blue, with label and score) drawn.
pub fn overlay(unit: &Array2<f32>, dets: &[Detection], gt: &[[f32; 4]]) -> ::image::RgbImage {
    let mut img = gray_to_rgb(unit.view());
    let (h, w) = unit.dim();
    let thick = ((h.max(w) / 400) as u32).max(2);
    let scale = ((h.max(w) / 500) as u32).max(1);
    for b in gt {
        draw_rect(&mut img, *b, [230, 30, 30], thick);
    }
    for d in dets {
        draw_rect(&mut img, d.bbox, [40, 110, 255], thick);
        let text = format!("{} {:.2}", d.label, d.score);
        let ty = (d.bbox[1] as i32 - 9 * scale as i32 - 2).max(0);
        draw_text(
            &mut img,
            d.bbox[0] as i32 + 2,
            ty,
            &text,
            [40, 110, 255],
            scale,
        );
    }
    img
}

fn save_png(path: &Path, img: &::image::RgbImage) -> Result<()> {
    img.save(path)
        .map_err(|e| Error::format(path, format!("cannot write PNG: {e}")))
}

fn detect_stack(
    model: &FasterRcnn,
    input: &Path,
    args: &Args,
    cfg: &PipelineConfig,
    formats: &Formats,
) -> Result<String> {
    let header = mrc::read_header(input)?;
    let pixel = cfg.pixel_size_of(input)?;
    let range = match &args.slices {
        Some(s) => parse_slices(s, header.nz)?,
        None => 0..header.nz,
    };
    let tilts = match volume::tilt_file_for(input) {
        Some(t) => {
            let a = volume::read_tilt_angles(&t)?;
            if a.len() != header.nz {
                eprintln!(
                    "warning: {}: {} tilt angles for {} images; ignored",
                    t.display(),
                    a.len(),
                    header.nz
                );
                None
            } else {
                Some(a)
            }
        }
        None => None,
    };
    let name = stem(input);
    let out = &args.out;
    let mut slices = Vec::new();
    let mut units: Vec<(usize, Array2<f32>)> = Vec::new();
    let zs: Vec<usize> = range.clone().step_by(args.stride.max(1)).collect();
    let gt_all = read_gt(args.gt.as_deref(), &name)?;
    for (i, &z) in zs.iter().enumerate() {
        let t0 = Instant::now();
        let raw = read_checked(
            input,
            mrc::read_slice(input, &header, z)?,
            args.mask_nonfinite,
        )?;
        let (dets, prepared) = detect_raw_at(model, &raw, cfg, pixel)?;
        if i == 0 {
            eprintln!("  {}", prepared.scale.note);
        }
        let angle = tilts
            .as_ref()
            .map_or(String::new(), |a| format!(", tilt {:+.1} deg", a[z]));
        eprintln!(
            "  slice {z} ({}/{}): {} detection(s){angle}, {:.2} s",
            i + 1,
            zs.len(),
            dets.len(),
            t0.elapsed().as_secs_f64()
        );
        if formats.voc {
            write_voc_file(
                &out.join(format!("{name}_z{z:04}.xml")),
                input,
                (header.ny, header.nx),
                &dets,
            )?;
        }
        if args.overlay && !args.three_d {
            save_png(
                &out.join(format!("{name}_z{z:04}.overlay.png")),
                &overlay(&prepared.unit, &dets, &gt_all),
            )?;
        }
        if args.three_d {
            units.push((z, prepared.unit));
        }
        slices.push(SliceDetections {
            z,
            detections: dets,
        });
    }
    let stack = StackDetections {
        image: input.display().to_string(),
        width: header.nx as u32,
        height: header.ny as u32,
        depth: header.nz as u32,
        slices,
    };
    write_json(out.join(format!("{name}.json")), &stack)?;
    if formats.csv {
        let rows: Vec<_> = stack
            .slices
            .iter()
            .flat_map(|s| {
                s.detections
                    .iter()
                    .map(move |d| (input.display().to_string(), Some(s.z), d.clone()))
            })
            .collect();
        write_csv(out.join(format!("{name}.csv")), &rows)?;
    }
    if let Some(a) = &tilts {
        let mut text = String::from("z,tilt_angle,detections\n");
        for s in &stack.slices {
            text.push_str(&format!("{},{},{}\n", s.z, a[s.z], s.detections.len()));
        }
        std::fs::write(out.join(format!("{name}.tilts.csv")), text)
            .map_err(|e| Error::io(out, e))?;
    }
    let total: usize = stack.slices.iter().map(|s| s.detections.len()).sum();
    if !args.three_d {
        return Ok(format!(
            "{} slice(s), {total} detection(s)",
            stack.slices.len()
        ));
    }
    let link = args.link.config(args.stride)?;
    let objects = volume::link_slices(&super::link::slice_boxes(&stack), &link);
    volume::write_objects_json(
        &out.join(format!("{name}.objects.json")),
        &objects,
        &model.classes,
    )?;
    volume::write_objects_csv(
        &out.join(format!("{name}.objects.csv")),
        &objects,
        &model.classes,
    )?;
    volume::write_imod_points(&out.join(format!("{name}.objects.txt")), &objects)?;
    save_png(
        &out.join(format!("{name}.montage.png")),
        &volume::montage(&units, &objects, args.montage_every, 4),
    )?;
    if args.label_volume {
        volume::write_label_volume(
            &out.join(format!("{name}.labels.mrc")),
            &objects,
            (header.nz, header.ny, header.nx),
            header.voxel_size[0],
        )?;
    }
    Ok(format!(
        "{} slice(s), {total} detection(s), {} 3D object(s)",
        stack.slices.len(),
        objects.len()
    ))
}
