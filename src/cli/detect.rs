//! `cryodet detect`: organelles in images (PNG, TIFF, JPEG; 8/16-bit), stacks (MRC files, also
//! `.gz`/`.bz2` compressed or recognized by their header whatever their name, and multi-page
//! TIFF files; slice by slice, optionally linked into 3D objects) and directories of them.
//!
//! Writes, per input `NAME`, into `--out`: `NAME.json` (always), `NAME.csv` and `NAME.xml`
//! (LabelImg VOC; for stacks one per slice, `NAME_z0007.xml` with `<filename>NAME_z0007.png`)
//! by `--format`, `NAME.overlay.png` by
//! `--overlay` (predictions blue, ground truth from `--gt` red, as the study's Fig. 5), and for
//! `--3d`: `NAME.objects.json`, `NAME.objects.csv`, `NAME.objects.txt` (IMOD point2model input;
//! not written, with a note, when there is no object: IMOD cannot read an empty point file),
//! `NAME.montage.png`, and `NAME.labels.mrc` with `--label-volume` (the input's voxel size per
//! axis, origin and start indices).
//!
//! Output names ([`output_names`]): `NAME` is the file stem (`.gz`/`.bz2` removed first). When
//! several inputs of one run have the same stem (`a/x.png b/x.png`, or `x.tif x.png`), the first
//! keeps `NAME` and each later one gets the first free `NAME_1`, `NAME_2`, ..., with a note on
//! stderr; the names are fixed over the whole input list before `--shard` splits it. Files from
//! an earlier run with the same names are replaced (the normal rerun).
//!
//! All-or-nothing: an input's outputs are written into a temporary directory inside `--out`
//! and renamed into place when the input is done; a failing input leaves no output of its own.
//! A failing input is reported on one line and skipped; the exit code is non-zero if any failed.

use crate::draw::{self, gray_to_rgb, Mark, GT_COLOR, PRED_COLOR};
use crate::error::{Error, Result};
use crate::io::detections::{
    write_csv, write_json, Detection, ImageDetections, SliceDetections, StackDetections,
};
use crate::io::pixel_size::PixelSize;
use crate::io::{image, mrc, voc};
use crate::model::FasterRcnn;
use crate::pipeline::{
    default_slice_weights, default_weights, detect_clipped, DetectOptions, PipelineConfig,
};
use crate::volume;
use ndarray::Array2;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Images, stacks (MRC: .mrc .st .ali .rec .mrcs .map .ccp4 .preali, .gz/.bz2, or any name
    /// with an MRC header; multi-page TIFF) or directories of them.
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
    #[command(flatten)]
    pub scale: super::InputScaleArgs,
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
    /// 3D: every n-th processed slice goes into the montage (at least; a deep stack takes a
    /// larger step so that the montage holds at most 16 tiles).
    #[arg(long, default_value_t = 5)]
    pub montage_every: usize,
    /// Replace NaN/Inf pixels by the median (with a warning) instead of failing.
    #[arg(long)]
    pub mask_nonfinite: bool,
    /// Process every N-th input starting at I (`I/N`, 0-based), e.g. `$SLURM_ARRAY_TASK_ID/16`.
    #[arg(long)]
    pub shard: Option<String>,
    /// MRC mode 0: read bytes as signed (-128..127) or unsigned (0..255). Default: IMOD's
    /// flag when the file has IMOD's stamp, else signed (MRC2014).
    #[arg(long, value_name = "yes|no")]
    pub mrc_signed_bytes: Option<YesNo>,
    /// Threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Arithmetic of the network: f32 (the reference) or bf16 (inputs of the large matrix
    /// products rounded to bfloat16, f32 sums, on Intel AMX tiles; f32 with a note where the CPU
    /// or OS lacks AMX). Recorded in the JSON as "precision".
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
}

/// `--precision` of detect and eval.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrecisionArg {
    F32,
    Bf16,
}

/// Puts `--precision` in force for the process; says so in one line when bf16 is not available.
pub fn apply_precision(p: PrecisionArg) {
    use crate::nn::gemm::{set_precision, Precision};
    let want = match p {
        PrecisionArg::F32 => Precision::F32,
        PrecisionArg::Bf16 => Precision::Bf16,
    };
    if set_precision(want) != want {
        eprintln!(
            "note: --precision bf16 needs Intel AMX (amx_bf16, amx_tile) and OS support; using f32"
        );
    }
}

/// A yes/no option value.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum YesNo {
    Yes,
    No,
}

impl YesNo {
    /// `Some(true)` for yes; `None` when the option was not given.
    pub fn flag(v: Option<YesNo>) -> Option<bool> {
        v.map(|v| v == YesNo::Yes)
    }
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

/// Files named on the command line, directories expanded (sorted; images and MRC files only:
/// an image extension, an MRC extension, or an MRC header).
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::io(p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && (image::is_image_path(f) || mrc::is_mrc_file(f)))
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

/// File stem, after removing a `.gz` / `.bz2` suffix (`emd_1.map.gz` -> `emd_1`).
fn stem(p: &Path) -> String {
    let mut p = p.to_path_buf();
    if p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("gz") || e.eq_ignore_ascii_case("bz2"))
    {
        p = PathBuf::from(p.file_stem().unwrap_or_default());
    }
    p.file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned())
}

/// Output base names of `inputs`, unique within the run (compared case-insensitively, as on
/// macOS and Windows file systems): the stem, or for a stem already used by an earlier input
/// the first `STEM_k` (k = 1, 2, ...) that is neither another input's stem nor already given.
pub fn output_names(inputs: &[PathBuf]) -> Vec<String> {
    let stems: Vec<String> = inputs.iter().map(|p| stem(p)).collect();
    let reserved: std::collections::HashSet<String> =
        stems.iter().map(|s| s.to_lowercase()).collect();
    let mut given = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(stems.len());
    for s in &stems {
        if given.insert(s.to_lowercase()) {
            out.push(s.clone());
            continue;
        }
        let mut k = 1;
        loop {
            let c = format!("{s}_{k}");
            let key = c.to_lowercase();
            if !reserved.contains(&key) && given.insert(key) {
                out.push(c);
                break;
            }
            k += 1;
        }
    }
    out
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

/// The outputs of one input, written under a temporary directory inside the output directory
/// and renamed into place by [`Staging::commit`]; dropped without a commit, they are deleted.
struct Staging {
    out: PathBuf,
    tmp: PathBuf,
    files: Vec<String>,
    /// Files of an earlier run that this input's outputs make stale (deleted at the commit).
    stale: Vec<String>,
    committed: bool,
}

impl Staging {
    /// `name` is the input's unique output name (unique across `--shard` jobs too).
    fn new(out: &Path, name: &str) -> Result<Staging> {
        let tmp = out.join(format!(".cryodet-partial-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(Staging {
            out: out.to_path_buf(),
            tmp,
            files: Vec::new(),
            stale: Vec::new(),
            committed: false,
        })
    }
    /// Temporary path of the output file `name`.
    fn file(&mut self, name: String) -> PathBuf {
        let p = self.tmp.join(&name);
        self.files.push(name);
        p
    }
    /// Final path of the output file `name` (for messages).
    fn final_path(&self, name: &str) -> PathBuf {
        self.out.join(name)
    }
    fn commit(mut self) -> Result<()> {
        for name in &self.stale {
            let p = self.out.join(name);
            if p.is_file() {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                eprintln!("  note: removed {} of an earlier run", p.display());
            }
        }
        for name in &self.files {
            let to = self.out.join(name);
            std::fs::rename(self.tmp.join(name), &to).map_err(|e| Error::io(&to, e))?;
        }
        self.committed = true;
        std::fs::remove_dir_all(&self.tmp).map_err(|e| Error::io(&self.tmp, e))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    crate::nn::gemm::set_threads(args.threads.unwrap_or_else(crate::nn::gemm::num_threads));
    apply_precision(args.precision);
    let formats = parse_formats(&args.format)?;
    let shard = args.shard.as_deref().map(parse_shard).transpose()?;
    let weights = match &args.weights {
        Some(w) => w.clone(),
        None if args.three_d => default_slice_weights()?,
        None => default_weights()?,
    };
    let model = FasterRcnn::load(&weights)?;
    if args.weights.is_none() {
        eprintln!("weights: {}", weights.display());
    }
    let cfg = PipelineConfig::for_detect(
        &model,
        &DetectOptions {
            size: args.scale.size,
            max_size: args.scale.max_size,
            preprocess: args.scale.no_preprocess.then_some(false),
            score_thresh: args.score_thresh,
            pixel_size: args.scale.pixel_size,
            max_input: Some(args.scale.max_input),
            three_d: args.three_d,
        },
    )?;
    let inputs = expand_inputs(&args.inputs)?;
    if inputs.is_empty() {
        return Err(Error::invalid(
            "no input files: the given directories hold no images or MRC files",
        ));
    }
    // Names over the whole list, so that shards of one list never collide.
    let names = output_names(&inputs);
    let mut jobs: Vec<(PathBuf, String)> = inputs.into_iter().zip(names).collect();
    if let Some((i, n)) = shard {
        jobs = jobs.into_iter().skip(i).step_by(n).collect();
    }
    for (input, name) in &jobs {
        if *name != stem(input) {
            eprintln!(
                "note: {}: another input has the name {:?}; its outputs are named {name}.*",
                input.display(),
                stem(input)
            );
        }
    }
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let run = Run {
        model: &model,
        args: &args,
        cfg: &cfg,
        formats: &formats,
    };
    let n = jobs.len();
    let mut failures: Vec<String> = Vec::new();
    let t_all = Instant::now();
    for (k, (input, name)) in jobs.iter().enumerate() {
        let t0 = Instant::now();
        let result = Staging::new(&args.out, name).and_then(|mut stage| {
            let summary = match open_stack(input, &args)? {
                Some(stack) => detect_stack(&run, input, &stack, name, &mut stage)?,
                None => detect_image(&run, input, name, &mut stage)?,
            };
            stage.commit()?;
            Ok(summary)
        });
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

/// A stack of 2-D sections: an MRC file or a multi-page TIFF file.
pub enum Stack {
    Mrc(mrc::MrcReader),
    Tiff {
        path: PathBuf,
        pages: usize,
        height: usize,
        width: usize,
    },
}

impl Stack {
    /// `(nz, ny, nx)`.
    pub fn dims(&self) -> (usize, usize, usize) {
        match self {
            Stack::Mrc(r) => (r.header.nz, r.header.ny, r.header.nx),
            Stack::Tiff {
                pages,
                height,
                width,
                ..
            } => (*pages, *height, *width),
        }
    }
    /// Section `z` as `[ny, nx]` raw intensities.
    pub fn slice(&self, z: usize) -> Result<Array2<f32>> {
        match self {
            Stack::Mrc(r) => r.slice(z),
            Stack::Tiff {
                path,
                height,
                width,
                ..
            } => {
                let img = image::read_tiff_page(path, z)?;
                if img.dim() != (*height, *width) {
                    return Err(Error::format(
                        path,
                        format!(
                            "TIFF page {z} is {}x{} (W x H), page 0 is {width}x{height}: not a stack",
                            img.dim().1,
                            img.dim().0
                        ),
                    ));
                }
                Ok(img)
            }
        }
    }
    /// Geometry for the label volume: an MRC's own header; for TIFF the pixel size (Å) on
    /// every axis, origin 0.
    pub fn geometry(&self, pixel: Option<PixelSize>) -> mrc::MrcGeometry {
        match self {
            Stack::Mrc(r) => mrc::MrcGeometry::of_header(&r.header),
            Stack::Tiff { .. } => mrc::MrcGeometry::isotropic(pixel.map_or(1.0, |p| p.nm * 10.0)),
        }
    }
}

/// The input as a stack (MRC by name or header; TIFF with more than one page), `None` for a
/// single image. Prints the trailing-bytes warning of an MRC file.
pub fn open_stack(input: &Path, args: &Args) -> Result<Option<Stack>> {
    if mrc::is_mrc_file(input) {
        let mut r = mrc::MrcReader::open(input)?;
        r.set_signed_bytes(YesNo::flag(args.mrc_signed_bytes));
        if let Some(w) = mrc::trailing_warning(input, &r.header) {
            eprintln!("{w}");
        }
        return Ok(Some(Stack::Mrc(r)));
    }
    if image::is_tiff_file(input) {
        let pages = image::tiff_page_count(input)?;
        if pages > 1 {
            let info = image::image_info(input)?;
            return Ok(Some(Stack::Tiff {
                path: input.to_path_buf(),
                pages,
                height: info.height as usize,
                width: info.width as usize,
            }));
        }
    }
    Ok(None)
}

/// Non-finite pixels: the error names the slice (stacks) and `--mask-nonfinite`.
fn read_checked(
    path: &Path,
    raw: Array2<f32>,
    mask: bool,
    z: Option<usize>,
) -> Result<Array2<f32>> {
    let (img, masked) = image::check_finite_in(
        path,
        raw,
        mask,
        z,
        "use --mask-nonfinite to replace them by the median",
    )?;
    if masked > 0 {
        let at = z.map_or(String::new(), |z| format!("slice {z}: "));
        eprintln!(
            "warning: {}: {at}{masked} NaN/Inf pixel(s) replaced by the median",
            path.display()
        );
    }
    Ok(img)
}

/// What every input of one run shares: the model, the options, the pipeline, the formats.
#[derive(Clone, Copy)]
struct Run<'a> {
    model: &'a FasterRcnn,
    args: &'a Args,
    cfg: &'a PipelineConfig,
    formats: &'a Formats,
}

fn detect_image(run: &Run, input: &Path, name: &str, stage: &mut Staging) -> Result<String> {
    let (model, args, cfg, formats) = (run.model, run.args, run.cfg, run.formats);
    if !image::is_image_path(input) && !image::is_tiff_file(input) {
        if let Ok(c) = mrc::compression_of(input) {
            if c != mrc::Compression::None {
                return Err(Error::format(
                    input,
                    format!(
                        "{} compressed, but not an MRC file: decompress it first (images are \
                         read uncompressed)",
                        c.name()
                    ),
                ));
            }
        }
    }
    let raw = read_checked(input, image::read_gray(input)?, args.mask_nonfinite, None)?;
    let (h, w) = raw.dim();
    let pixel = cfg.pixel_size_of(input)?;
    let (dets, prepared) = detect_clipped(model, &raw, cfg, pixel)?;
    write_json(
        stage.file(format!("{name}.json")),
        &ImageDetections {
            precision: Some(crate::nn::gemm::precision().name().into()),
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
        write_csv(stage.file(format!("{name}.csv")), &rows)?;
    }
    if formats.voc {
        let file = input
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        write_voc_file(
            &stage.file(format!("{name}.xml")),
            input,
            file,
            (h, w),
            &dets,
        )?;
    }
    if args.overlay {
        let gt = read_gt(args.gt.as_deref(), &stem(input))?;
        let img = overlay(&prepared.unit, &dets, &gt);
        save_png(&stage.file(format!("{name}.overlay.png")), &img)?;
    }
    Ok(format!(
        "{}; {} detection(s)",
        prepared.scale.note,
        dets.len()
    ))
}

/// LabelImg XML of one image's detections: `<filename>` is `filename`, `<path>` the input file.
fn write_voc_file(
    path: &Path,
    image_path: &Path,
    filename: String,
    size: (usize, usize),
    dets: &[Detection],
) -> Result<()> {
    let path_text = Some(image_path.display().to_string());
    voc::write_voc(
        path,
        &voc::VocAnnotation::of_detections(filename, path_text, size, dets),
    )
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

/// The image with ground truth (red) and predictions (blue, with label and score) drawn
/// ([`crate::draw::overlay`]).
pub fn overlay(unit: &Array2<f32>, dets: &[Detection], gt: &[[f32; 4]]) -> ::image::RgbImage {
    let gt = gt.iter().map(|&bbox| Mark {
        bbox,
        color: GT_COLOR,
        label: None,
    });
    let dets = dets.iter().map(|d| Mark {
        bbox: d.bbox,
        color: PRED_COLOR,
        label: Some(format!("{} {:.2}", d.label, d.score)),
    });
    draw::overlay(
        gray_to_rgb(unit.view()),
        &gt.chain(dets).collect::<Vec<_>>(),
    )
}

fn save_png(path: &Path, img: &::image::RgbImage) -> Result<()> {
    img.save_with_format(path, ::image::ImageFormat::Png)
        .map_err(|e| Error::format(path, format!("cannot write PNG: {e}")))
}

/// Largest side of a montage tile in pixels: 4 tiles per row keep the montage about 4096 px wide.
pub const MONTAGE_TILE: usize = 1024;

/// Most tiles in a montage (4 x 4 of [`MONTAGE_TILE`]): the montage, and the tiles held in memory
/// until it is drawn, stay the same size however deep the stack (peak RSS independent of depth).
pub const MONTAGE_MAX_TILES: usize = 16;

/// A montage tile: the slice downscaled by `scale` (anti-aliased; `scale` 1 keeps it).
fn montage_tile(unit: Array2<f32>, scale: f32) -> Array2<f32> {
    if scale >= 1.0 {
        return unit;
    }
    let (h, w) = unit.dim();
    let (th, tw) = (
        ((h as f32 * scale).round() as usize).max(1),
        ((w as f32 * scale).round() as usize).max(1),
    );
    crate::transform::resample_antialiased(unit.view(), th, tw)
}

/// The objects with their slice boxes scaled by `scale` (for the downscaled montage tiles).
fn scaled_objects(objects: &[volume::Object3d], scale: f32) -> Vec<volume::Object3d> {
    let mut out = objects.to_vec();
    if scale < 1.0 {
        for o in &mut out {
            for (_, b) in &mut o.slices {
                b.bbox = b.bbox.map(|v| v * scale);
            }
        }
    }
    out
}

fn detect_stack(
    run: &Run,
    input: &Path,
    stack: &Stack,
    name: &str,
    stage: &mut Staging,
) -> Result<String> {
    let (model, args, cfg, formats) = (run.model, run.args, run.cfg, run.formats);
    let (nz, ny, nx) = stack.dims();
    let pixel = stack_pixel_size(cfg, stack, input)?;
    let range = match &args.slices {
        Some(s) => parse_slices(s, nz)?,
        None => 0..nz,
    };
    let tilts = tilt_angles(input, nz)?;
    let mut slices = Vec::new();
    let mut units: Vec<(usize, Array2<f32>)> = Vec::new();
    let zs: Vec<usize> = range.clone().step_by(args.stride.max(1)).collect();
    let gt_all = read_gt(args.gt.as_deref(), &stem(input))?;
    let t_stack = Instant::now();
    let montage_scale = (MONTAGE_TILE as f32 / ny.max(nx) as f32).min(1.0);
    let montage_every = args
        .montage_every
        .max(1)
        .max(zs.len().div_ceil(MONTAGE_MAX_TILES));
    for (i, &z) in zs.iter().enumerate() {
        let t0 = Instant::now();
        let raw = read_checked(input, stack.slice(z)?, args.mask_nonfinite, Some(z))?;
        let (dets, prepared) = detect_clipped(model, &raw, cfg, pixel)?;
        if i == 0 {
            eprintln!("  {}", prepared.scale.note);
        }
        let angle = tilts
            .as_ref()
            .map_or(String::new(), |a| format!(", tilt {:+.1} deg", a[z]));
        // ETA: the mean time per slice so far times the slices left.
        let left = zs.len() - i - 1;
        let eta = t_stack.elapsed().as_secs_f64() / (i + 1) as f64 * left as f64;
        eprintln!(
            "  slice {z} ({}/{}): {} detection(s){angle}, {:.2} s{}",
            i + 1,
            zs.len(),
            dets.len(),
            t0.elapsed().as_secs_f64(),
            if left > 0 {
                format!(", ETA {eta:.0} s")
            } else {
                String::new()
            }
        );
        if formats.voc {
            // Each slice is its own image: `<filename>` names it as `train` would pair it with
            // this XML (`images/NAME_zZZZZ.png`), `<path>` the stack.
            write_voc_file(
                &stage.file(format!("{name}_z{z:04}.xml")),
                input,
                format!("{name}_z{z:04}.png"),
                (ny, nx),
                &dets,
            )?;
        }
        if args.overlay && !args.three_d {
            save_png(
                &stage.file(format!("{name}_z{z:04}.overlay.png")),
                &overlay(&prepared.unit, &dets, &gt_all),
            )?;
        }
        // Only the slices the montage shows are kept (every montage_every-th processed one, at
        // most MONTAGE_MAX_TILES), downscaled to at most MONTAGE_TILE px.
        if args.three_d && i % montage_every == 0 {
            units.push((z, montage_tile(prepared.unit, montage_scale)));
        }
        slices.push(SliceDetections {
            z,
            detections: dets,
        });
    }
    let stack_dets = StackDetections {
        precision: Some(crate::nn::gemm::precision().name().into()),
        image: input.display().to_string(),
        width: nx as u32,
        height: ny as u32,
        depth: nz as u32,
        slices,
    };
    write_stack_tables(stage, name, input, &stack_dets, formats, tilts.as_deref())?;
    let total: usize = stack_dets.slices.iter().map(|s| s.detections.len()).sum();
    if !args.three_d {
        return Ok(format!(
            "{} slice(s), {total} detection(s)",
            stack_dets.slices.len()
        ));
    }
    let objects = write_objects(run, stage, name, &stack_dets, &units, montage_scale)?;
    if args.label_volume {
        volume::write_label_volume(
            &stage.file(format!("{name}.labels.mrc")),
            &objects,
            (nz, ny, nx),
            &stack.geometry(pixel),
        )?;
    }
    Ok(format!(
        "{} slice(s), {total} detection(s), {} 3D object(s)",
        stack_dets.slices.len(),
        objects.len()
    ))
}

/// The pixel size of a stack: `--pixel-size`, else the MRC header's, else the TIFF's tags.
fn stack_pixel_size(
    cfg: &PipelineConfig,
    stack: &Stack,
    input: &Path,
) -> Result<Option<PixelSize>> {
    Ok(match (cfg.pixel_size, stack) {
        (Some(nm), _) => Some(PixelSize {
            nm,
            source: "--pixel-size",
        }),
        (None, Stack::Mrc(r)) => crate::io::pixel_size::mrc_pixel_size(r.header.voxel_size[0]),
        (None, Stack::Tiff { .. }) => cfg.pixel_size_of(input)?,
    })
}

/// The tilt angles of the IMOD `.tlt` / `.rawtlt` file beside `input`, if there is one with
/// `nz` angles (one with another count is ignored, with a warning).
fn tilt_angles(input: &Path, nz: usize) -> Result<Option<Vec<f32>>> {
    let Some(t) = volume::tilt_file_for(input) else {
        return Ok(None);
    };
    let a = volume::read_tilt_angles(&t)?;
    if a.len() != nz {
        eprintln!(
            "warning: {}: {} tilt angles for {} images; ignored",
            t.display(),
            a.len(),
            nz
        );
        return Ok(None);
    }
    Ok(Some(a))
}

/// `NAME.json`, `NAME.csv` (by `formats`) and, with tilt angles, `NAME.tilts.csv` of a stack.
fn write_stack_tables(
    stage: &mut Staging,
    name: &str,
    input: &Path,
    stack_dets: &StackDetections,
    formats: &Formats,
    tilts: Option<&[f32]>,
) -> Result<()> {
    write_json(stage.file(format!("{name}.json")), stack_dets)?;
    if formats.csv {
        let rows: Vec<_> = stack_dets
            .slices
            .iter()
            .flat_map(|s| {
                s.detections
                    .iter()
                    .map(move |d| (input.display().to_string(), Some(s.z), d.clone()))
            })
            .collect();
        write_csv(stage.file(format!("{name}.csv")), &rows)?;
    }
    if let Some(a) = tilts {
        let mut text = String::from("z,tilt_angle,detections\n");
        for s in &stack_dets.slices {
            text.push_str(&format!("{},{},{}\n", s.z, a[s.z], s.detections.len()));
        }
        let p = stage.file(format!("{name}.tilts.csv"));
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))?;
    }
    Ok(())
}

/// --3d: links the slices' boxes into objects and writes `NAME.objects.{json,csv,txt}` and
/// `NAME.montage.png` (the tiles `units`, downscaled by `montage_scale`); returns the objects.
fn write_objects(
    run: &Run,
    stage: &mut Staging,
    name: &str,
    stack_dets: &StackDetections,
    units: &[(usize, Array2<f32>)],
    montage_scale: f32,
) -> Result<Vec<volume::Object3d>> {
    let Run { model, args, .. } = *run;
    let link = args.link.config(args.stride)?;
    let objects = volume::link_slices(&volume::slice_boxes(stack_dets), &link);
    volume::write_objects_json(
        &stage.file(format!("{name}.objects.json")),
        &objects,
        &model.classes,
    )?;
    volume::write_objects_csv(
        &stage.file(format!("{name}.objects.csv")),
        &objects,
        &model.classes,
    )?;
    let points = format!("{name}.objects.txt");
    if objects.is_empty() {
        eprintln!("{}", volume::no_points_note(&stage.final_path(&points)));
        stage.stale.push(points);
    } else {
        volume::write_imod_points(&stage.file(points), &objects)?;
    }
    save_png(
        &stage.file(format!("{name}.montage.png")),
        &volume::montage(units, &scaled_objects(&objects, montage_scale), 1, 4),
    )?;
    Ok(objects)
}
