//! Training data: LabelImg (Pascal VOC) data sets, class lists, groups, the train/test split,
//! and the per-image loading pipeline.
//!
//! A data set is either
//! - a directory with `images/` (PNG, TIFF or JPEG) and `annotations/` (one `.xml` per image,
//!   matched by file stem; an annotation whose image has another format, e.g. `x.bmp`, is an
//!   error naming it, and so is a multi-page TIFF: annotations are per image), or
//! - a list file whose lines are `image_path annotation_path` (relative paths are relative to the
//!   list file; blank lines and lines starting with `#` are skipped).
//!
//! Classes are the sorted names found in the annotations, background first, or the `--classes`
//! list (then an unknown name is an error naming the known ones). Boxes are clipped to the
//! image (with a warning); an image without objects is a negative example.
//!
//! Groups (one tomogram = one group, so its slices stay on one side of the split) come from a
//! manifest CSV `image,group` (the data directory's `manifest.csv`, or `--manifest`), else from
//! the file stem up to its last `_` (`tomo3_0042` -> `tomo3`).
//!
//! Loading one image (the detection pipeline's, so training and inference see the same input):
//! ```text
//! read_gray -> to_unit_range -> preprocess (study's bilateral + equalization; optional)
//!   -> normalize_imagenet, bilinear resize by s = min(size / short side, max_size / long side)
//!      (transform::transform_image, as crate::pipeline::prepare does for detection)
//!   -> x [3, 1, h', w'];  boxes: x * w'/w, y * h'/h
//! ```
//! The network input is then augmented ([`crate::train::augment`]) and zero-padded to a multiple
//! of 32 (torchvision's `batch_images`). That is the study's order, kept for runs whose
//! options.json predates physical scale (`TrainOptions::scale` absent).
//!
//! Runs with physical scale ([`ScaleOptions`], every new run) load a [`Base`] instead:
//! ```text
//! read_gray -> to_unit_range -> anti-aliased resample to the model's pixel size
//!   (s = file_nm / model_nm, file_nm from the file or --pixel-size; unknown: the --size rule;
//!    long side <= pipeline::MAX_INPUT)
//!   -> Base { unit [h, w] in [0, 1], boxes * s }            (what the Loader caches: 4 B/px)
//! ```
//! and every iteration draws a new rescale, crop, preprocessing and symmetry from it
//! ([`crate::train::augment::augment_example`]), so the per-iteration work runs on at most
//! `max_input` x `max_input` pixels.

use crate::error::{Error, Result};
use ndarray::{Array2, Array4};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::io::image::{check_single_image, image_info, is_image_path, read_gray};
use crate::io::pixel_size::{read_pixel_size, PixelSize};
use crate::io::voc::{read_voc, VocObject};
use crate::pipeline::{choose_scale, PipelineConfig, ScaleChoice, MAX_INPUT};
use crate::preprocess::{preprocess, PreprocessConfig};
use crate::transform::resample_antialiased;
use crate::transform::{resize_scale, resized_size, to_unit_range, transform_image, Scaling};

/// Image size `(h, w)` from the file header; a multi-page TIFF is refused (annotations are per
/// image).
fn image_size(path: &Path) -> Result<(usize, usize)> {
    check_single_image(path, "train")?;
    let info = image_info(path)?;
    Ok((info.height as usize, info.width as usize))
}

/// Name of class 0.
pub const BACKGROUND: &str = "__background__";

/// One annotated image.
#[derive(Debug, Clone)]
pub struct Sample {
    pub image: PathBuf,
    pub annotation: PathBuf,
    /// Group (tomogram) of the image, see the module doc.
    pub group: String,
    /// Image size `(h, w)` in pixels.
    pub size: (usize, usize),
    /// Objects, clipped to the image.
    pub objects: Vec<VocObject>,
    /// Pixel size recorded in the image file (`crate::io::pixel_size`), if any.
    pub pixel: Option<PixelSize>,
}

impl Sample {
    /// The file name of the image (used in split.json and messages).
    pub fn name(&self) -> String {
        self.image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// A data set: its samples and classes (background first).
#[derive(Debug, Clone)]
pub struct Dataset {
    pub samples: Vec<Sample>,
    pub classes: Vec<String>,
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    Ok(v)
}

/// `(image, annotation)` pairs of a data directory or list file.
pub fn find_pairs(data: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    if data.is_dir() {
        let (img_dir, ann_dir) = (data.join("images"), data.join("annotations"));
        if !img_dir.is_dir() || !ann_dir.is_dir() {
            return Err(Error::invalid(format!(
                "{}: a data directory needs images/ and annotations/ subdirectories",
                data.display()
            )));
        }
        let anns: HashMap<String, PathBuf> = list_dir(&ann_dir)?
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("xml")))
            .map(|p| (stem(&p), p))
            .collect();
        let mut pairs = Vec::new();
        let mut matched = BTreeSet::new();
        let files = list_dir(&img_dir)?;
        for img in files.iter().filter(|p| is_image_path(p)).cloned() {
            match anns.get(&stem(&img)) {
                Some(a) => {
                    if !matched.insert(stem(&img)) {
                        return Err(Error::invalid(format!(
                            "{}: two images share the stem of annotation {}",
                            img.display(),
                            a.display()
                        )));
                    }
                    pairs.push((img, a.clone()));
                }
                None => eprintln!(
                    "warning: {}: no annotation {}.xml, image skipped",
                    img.display(),
                    stem(&img)
                ),
            }
        }
        let mut unmatched: Vec<(&String, &PathBuf)> =
            anns.iter().filter(|(s, _)| !matched.contains(*s)).collect();
        unmatched.sort();
        for (s, a) in unmatched {
            // A file of this stem that is not a format we read (e.g. x.bmp): say so, not "no
            // image".
            if let Some(other) = files.iter().find(|p| stem(p) == *s) {
                return Err(Error::format(
                    other,
                    format!(
                        "unsupported image format for annotation {} (train reads {})",
                        a.display(),
                        crate::io::image::IMAGE_EXTENSIONS.join(", ")
                    ),
                ));
            }
            eprintln!("warning: {}: no image with this stem, skipped", a.display());
        }
        Ok(pairs)
    } else {
        let text = std::fs::read_to_string(data).map_err(|e| Error::io(data, e))?;
        let base = data.parent().unwrap_or(Path::new("."));
        let mut pairs = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() != 2 {
                return Err(Error::format(
                    data,
                    format!(
                        "line {}: expected `image_path annotation_path`, got {line:?}",
                        i + 1
                    ),
                ));
            }
            pairs.push((base.join(parts[0]), base.join(parts[1])));
        }
        Ok(pairs)
    }
}

/// Groups from a manifest CSV with header `image,group` (image = file name or stem).
pub fn read_manifest(path: &Path) -> Result<HashMap<String, String>> {
    let mut rd = csv::Reader::from_path(path).map_err(|e| Error::format(path, e.to_string()))?;
    let mut map = HashMap::new();
    for (i, rec) in rd.records().enumerate() {
        let rec = rec.map_err(|e| Error::format(path, e.to_string()))?;
        if rec.len() < 2 {
            return Err(Error::format(
                path,
                format!("row {}: expected image,group", i + 2),
            ));
        }
        let img = rec[0].trim();
        map.insert(stem(Path::new(img)), rec[1].trim().to_string());
    }
    Ok(map)
}

/// The group of an image without a manifest: its stem up to the last `_` (or the whole stem).
pub fn group_from_name(image: &Path) -> String {
    let s = stem(image);
    match s.rfind('_') {
        Some(i) if i > 0 => s[..i].to_string(),
        _ => s,
    }
}

impl Dataset {
    /// Opens a data set (see the module doc). `classes`: the `--classes` list (without the
    /// background); `manifest`: an explicit group manifest.
    pub fn open(data: &Path, classes: Option<&[String]>, manifest: Option<&Path>) -> Result<Self> {
        let pairs = find_pairs(data)?;
        if pairs.is_empty() {
            return Err(Error::invalid(format!(
                "{}: no annotated images found",
                data.display()
            )));
        }
        let default_manifest = data.join("manifest.csv");
        let manifest = match manifest {
            Some(m) => Some(read_manifest(m)?),
            None if data.is_dir() && default_manifest.is_file() => {
                Some(read_manifest(&default_manifest)?)
            }
            None => None,
        };
        let mut samples = Vec::with_capacity(pairs.len());
        for (image, annotation) in pairs {
            let mut ann = read_voc(&annotation)?;
            let (h, w) = image_size(&image)?;
            if (ann.width, ann.height) != (w as u32, h as u32) {
                if ann.width != 0 && ann.height != 0 {
                    eprintln!(
                        "warning: {}: annotation says {}x{}, the image is {w}x{h}; using the image's size",
                        annotation.display(),
                        ann.width,
                        ann.height
                    );
                }
                ann.width = w as u32;
                ann.height = h as u32;
            }
            for warning in ann.clip_to_image() {
                eprintln!("warning: {}: {warning}", annotation.display());
            }
            let group = match &manifest {
                Some(m) => m.get(&stem(&image)).cloned().ok_or_else(|| {
                    Error::invalid(format!(
                        "{}: not listed in the group manifest",
                        image.display()
                    ))
                })?,
                None => group_from_name(&image),
            };
            let pixel = read_pixel_size(&image)?;
            samples.push(Sample {
                image,
                annotation,
                group,
                size: (h, w),
                objects: ann.objects,
                pixel,
            });
        }
        let found: BTreeSet<&str> = samples
            .iter()
            .flat_map(|s| s.objects.iter().map(|o| o.name.as_str()))
            .collect();
        let classes: Vec<String> = match classes {
            Some(given) => {
                for s in &samples {
                    for o in &s.objects {
                        if !given.contains(&o.name) {
                            return Err(Error::format(
                                &s.annotation,
                                format!(
                                    "unknown class {:?}; the known classes (--classes) are: {}",
                                    o.name,
                                    given.join(", ")
                                ),
                            ));
                        }
                    }
                }
                given.to_vec()
            }
            None => found.iter().map(|s| s.to_string()).collect(),
        };
        if classes.is_empty() {
            return Err(Error::invalid(format!(
                "{}: no objects in any annotation and no --classes given",
                data.display()
            )));
        }
        Ok(Dataset {
            samples,
            classes: std::iter::once(BACKGROUND.to_string())
                .chain(classes)
                .collect(),
        })
    }

    /// A list file (`image_path annotation_path` lines, absolute paths when they can be
    /// made) of the samples `indices`, readable by [`find_pairs`]. Symbolic links are kept, not
    /// resolved: a data set that links images under other names (`classic_x.png -> x.png`)
    /// keeps those names, which its group manifest uses and which need not be unique among
    /// the link targets.
    pub fn list_file(&self, indices: &[usize]) -> String {
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        indices
            .iter()
            .map(|&i| {
                let s = &self.samples[i];
                format!(
                    "{} {}\n",
                    abs(&s.image).display(),
                    abs(&s.annotation).display()
                )
            })
            .collect()
    }

    /// Label (index into `classes`) of a class name.
    pub fn label(&self, name: &str) -> Option<usize> {
        self.classes.iter().position(|c| c == name)
    }
}

/// A train/test split: indices into `Dataset::samples`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Split {
    pub seed: u64,
    pub by_group: bool,
    pub train: Vec<usize>,
    pub test: Vec<usize>,
    /// Image file names of the two sets (for humans and `cryodet eval`).
    pub train_images: Vec<String>,
    pub test_images: Vec<String>,
}

/// Study's train:test ratio, 5:1 (402 and 80 of 482 slices).
pub const TRAIN_PARTS: usize = 5;

impl Split {
    /// Shuffles images (or groups) with `seed` and gives the first 5/6 to training, at least one
    /// unit to each side when there are two or more.
    pub fn new(ds: &Dataset, seed: u64, by_group: bool) -> Self {
        let mut units: Vec<Vec<usize>> = if by_group {
            let mut g: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for (i, s) in ds.samples.iter().enumerate() {
                g.entry(&s.group).or_default().push(i);
            }
            g.into_values().collect()
        } else {
            (0..ds.samples.len()).map(|i| vec![i]).collect()
        };
        units.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let n = units.len();
        let n_train = if n < 2 {
            n
        } else {
            ((n * TRAIN_PARTS) as f64 / (TRAIN_PARTS + 1) as f64).round() as usize
        }
        .clamp(n.min(1), n.saturating_sub(1).max(1));
        let mut train: Vec<usize> = units[..n_train].concat();
        let mut test: Vec<usize> = units[n_train..].concat();
        train.sort_unstable();
        test.sort_unstable();
        let names = |v: &[usize]| v.iter().map(|&i| ds.samples[i].name()).collect();
        Split {
            seed,
            by_group,
            train_images: names(&train),
            test_images: names(&test),
            train,
            test,
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::invalid(e.to_string()))?;
        crate::io::weights::write_atomic(path, text.as_bytes())
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))
    }
}

/// Physical-scale options of a run (`cryodet train --model-pixel-size --pixel-size
/// --anchor-sizes --scale-range --max-input`), saved in options.json.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScaleOptions {
    /// nm per pixel of the network input (recorded as the model's `pixel_size_nm`).
    pub model_pixel_size: f32,
    /// nm per pixel of the training files that do not record one (None: those use --size).
    pub pixel_size: Option<f32>,
    /// RPN anchor sizes in network-input pixels (recorded as `anchor_sizes`; ratios 0.5,1,2).
    pub anchor_sizes: Vec<f32>,
    /// Random log-uniform rescale `[lo, hi]` of every image at every iteration.
    pub scale_range: [f32; 2],
    /// Long side of the random crop of each iteration's input (px).
    pub max_input: usize,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        ScaleOptions {
            model_pixel_size: 2.5,
            pixel_size: None,
            anchor_sizes: crate::detection::anchors::NEW_MODEL_SIZES.to_vec(),
            scale_range: [0.5, 2.0],
            max_input: 640,
        }
    }
}

/// How images are turned into network inputs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Target short side (torchvision's min_size; the study's 600).
    pub size: usize,
    /// Upper bound on the long side (torchvision's max_size, 1000).
    pub max_size: usize,
    /// `None`: no preprocessing (`--no-preprocess`).
    pub preprocess: Option<PreprocessConfig>,
    /// Physical scale (see the module doc); `None`: the study's order ([`load_example`]).
    pub scale: Option<ScaleOptions>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            size: 600,
            max_size: 1000,
            preprocess: Some(PreprocessConfig::default()),
            scale: None,
        }
    }
}

impl LoadConfig {
    /// The detection pipeline's scale rule for training files: the model's pixel size, the
    /// --size rule for files of unknown pixel size, the long side capped at [`MAX_INPUT`].
    fn pipeline(&self, sc: &ScaleOptions) -> PipelineConfig {
        PipelineConfig {
            preprocess: None,
            min_size: self.size as f32,
            max_size: self.max_size as f32,
            model_pixel_nm: Some(sc.model_pixel_size),
            resample_first: true,
            max_input: MAX_INPUT,
            ..PipelineConfig::default()
        }
    }

    /// The scale of sample `s` (its file's pixel size, else --pixel-size, else the --size rule).
    pub fn scale_of(&self, s: &Sample, sc: &ScaleOptions) -> ScaleChoice {
        let pixel = s.pixel.or(sc.pixel_size.map(|nm| PixelSize {
            nm,
            source: "--pixel-size",
        }));
        choose_scale(s.size.0, s.size.1, &self.pipeline(sc), pixel)
    }
}

/// A training image at the model's pixel size, before any per-iteration work.
#[derive(Debug, Clone)]
pub struct Base {
    /// `[h, w]` in [0, 1], not preprocessed.
    pub unit: Array2<f32>,
    /// Boxes `[N, 4]` in `unit`'s pixels.
    pub boxes: Array2<f32>,
    /// Labels, one per box ([`DIFFICULT`] for difficult objects).
    pub labels: Vec<usize>,
}

/// Label of a difficult object (VOC `<difficult>1`) in [`Base`] and [`Example`]: its box is
/// carried through augmentation like any other, and the losses neither reward nor penalize
/// detections on it (`train/grad.rs`).
pub const DIFFICULT: usize = 0;

/// Labels of a sample's objects ([`DIFFICULT`] for difficult ones) and its boxes scaled by
/// `(sx, sy)`.
fn scaled_targets(
    ds: &Dataset,
    s: &Sample,
    (sx, sy): (f32, f32),
) -> Result<(Array2<f32>, Vec<usize>)> {
    let mut boxes = Array2::zeros((s.objects.len(), 4));
    let mut labels = Vec::with_capacity(s.objects.len());
    for (i, o) in s.objects.iter().enumerate() {
        let b = o.bbox;
        boxes.row_mut(i).assign(&ndarray::arr1(&[
            b[0] * sx,
            b[1] * sy,
            b[2] * sx,
            b[3] * sy,
        ]));
        let label = ds
            .label(&o.name)
            .ok_or_else(|| Error::format(&s.annotation, format!("unknown class {:?}", o.name)))?;
        // Difficult objects keep their box with label 0 (`DIFFICULT`): ignored by the losses.
        labels.push(if o.difficult { DIFFICULT } else { label });
    }
    Ok((boxes, labels))
}

fn read_checked_size(s: &Sample) -> Result<Array2<f32>> {
    let raw = read_gray(&s.image)?;
    let (h, w) = raw.dim();
    if (h, w) != s.size {
        return Err(Error::format(
            &s.image,
            format!("image changed size since the data set was opened: {w}x{h}"),
        ));
    }
    Ok(raw)
}

/// The physical-scale loading of the module doc for one sample.
pub fn load_base(ds: &Dataset, s: &Sample, cfg: &LoadConfig, sc: &ScaleOptions) -> Result<Base> {
    let raw = read_checked_size(s)?;
    let (h, w) = raw.dim();
    let unit = to_unit_range(raw.view(), Scaling::default());
    let (oh, ow) = cfg.scale_of(s, sc).out;
    let unit = resample_antialiased(unit.view(), oh, ow);
    let (boxes, labels) = scaled_targets(ds, s, (ow as f32 / w as f32, oh as f32 / h as f32))?;
    Ok(Base {
        unit,
        boxes,
        labels,
    })
}

/// One network input with its targets.
#[derive(Debug, Clone)]
pub struct Example {
    /// Normalized input `[3, 1, h', w']` (not padded).
    pub x: Array4<f32>,
    /// Boxes `[N, 4]` as (x1, y1, x2, y2) in x's pixels.
    pub boxes: Array2<f32>,
    /// Labels (indices into the class list, >= 1; [`DIFFICULT`] for difficult objects), one
    /// per box.
    pub labels: Vec<usize>,
}

/// The loading pipeline of the module doc for one sample.
pub fn load_example(ds: &Dataset, s: &Sample, cfg: &LoadConfig) -> Result<Example> {
    let raw = read_checked_size(s)?;
    let (h, w) = raw.dim();
    let mut img = to_unit_range(raw.view(), Scaling::default());
    if let Some(p) = &cfg.preprocess {
        img = preprocess(img.view(), p);
    }
    // The detection pipeline's transform (crate::pipeline::prepare), without its padding: the
    // padding is added after augmentation so that it stays at the bottom and right.
    let (padded, (oh, ow)) = transform_image(img.view(), cfg.size as f32, cfg.max_size as f32)
        .map_err(|e| Error::format(&s.image, e.to_string()))?;
    let x = padded.slice(ndarray::s![.., .., ..oh, ..ow]).to_owned();
    let (boxes, labels) = scaled_targets(ds, s, (ow as f32 / w as f32, oh as f32 / h as f32))?;
    Ok(Example { x, boxes, labels })
}

/// Largest total size of cached inputs (bytes; 4 GiB, a sixth of this 24 GiB machine); larger
/// sets are reloaded every epoch.
pub const CACHE_BYTES: usize = 4 << 30;

/// Loads examples ([`Loader::get`], the study's order) or bases ([`Loader::get_base`],
/// physical scale), keeping them in memory when the whole set fits in [`CACHE_BYTES`].
pub struct Loader {
    pub config: LoadConfig,
    cache: Option<HashMap<usize, Example>>,
    bases: Option<HashMap<usize, Base>>,
}

impl Loader {
    pub fn new(ds: &Dataset, indices: &[usize], config: LoadConfig) -> Self {
        let bytes: usize = indices
            .iter()
            .map(|&i| {
                let s = &ds.samples[i];
                let (h, w) = s.size;
                match &config.scale {
                    // One [0, 1] plane at the model's pixel size.
                    Some(sc) => {
                        let (oh, ow) = config.scale_of(s, sc).out;
                        oh * ow * std::mem::size_of::<f32>()
                    }
                    None => {
                        let scale = resize_scale(h, w, config.size as f32, config.max_size as f32);
                        let (oh, ow) = resized_size(h, w, scale);
                        oh * ow * 3 * std::mem::size_of::<f32>()
                    }
                }
            })
            .sum();
        let fits = bytes <= CACHE_BYTES;
        Loader {
            cache: (fits && config.scale.is_none()).then(HashMap::new),
            bases: (fits && config.scale.is_some()).then(HashMap::new),
            config,
        }
    }

    pub fn caches(&self) -> bool {
        self.cache.is_some() || self.bases.is_some()
    }

    /// The example of sample `i` (the study's order).
    pub fn get(&mut self, ds: &Dataset, i: usize) -> Result<Example> {
        match &mut self.cache {
            Some(c) => {
                if let Some(e) = c.get(&i) {
                    return Ok(e.clone());
                }
                let e = load_example(ds, &ds.samples[i], &self.config)?;
                c.insert(i, e.clone());
                Ok(e)
            }
            None => load_example(ds, &ds.samples[i], &self.config),
        }
    }

    /// The base of sample `i` (physical scale; `config.scale` must be set).
    pub fn get_base(&mut self, ds: &Dataset, i: usize) -> Result<Base> {
        let sc = self
            .config
            .scale
            .clone()
            .ok_or_else(|| Error::invalid("Loader::get_base needs LoadConfig::scale"))?;
        match &mut self.bases {
            Some(c) => {
                if let Some(b) = c.get(&i) {
                    return Ok(b.clone());
                }
                let b = load_base(ds, &ds.samples[i], &self.config, &sc)?;
                c.insert(i, b.clone());
                Ok(b)
            }
            None => load_base(ds, &ds.samples[i], &self.config, &sc),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::image::write_png_gray8;
    use crate::io::voc::{write_voc, VocAnnotation};

    fn obj(name: &str, bbox: [f32; 4]) -> VocObject {
        VocObject {
            name: name.into(),
            bbox,
            difficult: false,
            truncated: false,
        }
    }

    /// `DIR/images/<stem>.png` (`h` x `w`, a gradient) and `DIR/annotations/<stem>.xml`.
    fn write_sample(dir: &Path, stem: &str, (h, w): (usize, usize), objects: Vec<VocObject>) {
        std::fs::create_dir_all(dir.join("images")).unwrap();
        std::fs::create_dir_all(dir.join("annotations")).unwrap();
        let img = Array2::from_shape_fn((h, w), |(y, x)| ((x + 2 * y) % 17) as f32 / 16.0);
        write_png_gray8(&dir.join("images").join(format!("{stem}.png")), img.view()).unwrap();
        let ann = VocAnnotation::gray(format!("{stem}.png"), (h, w), objects);
        write_voc(&dir.join("annotations").join(format!("{stem}.xml")), &ann).unwrap();
    }

    fn tmpdir(tag: &str) -> PathBuf {
        crate::testutil::temp_dir(&format!("data-{tag}"))
    }

    #[test]
    fn classes_groups_clipping_and_negatives() {
        let d = tmpdir("classes");
        write_sample(
            &d,
            "tomoB_001",
            (40, 60),
            vec![obj("mito", [2.0, 3.0, 20.0, 30.0])],
        );
        // A box sticking out of the 40 x 60 image is clipped.
        write_sample(
            &d,
            "tomoA_002",
            (40, 60),
            vec![obj("vesicle", [50.0, 30.0, 70.0, 45.0])],
        );
        write_sample(&d, "tomoA_003", (40, 60), vec![]);
        let ds = Dataset::open(&d, None, None).unwrap();
        assert_eq!(ds.classes, ["__background__", "mito", "vesicle"]);
        let groups: Vec<&str> = ds.samples.iter().map(|s| s.group.as_str()).collect();
        assert_eq!(groups, ["tomoA", "tomoA", "tomoB"]);
        assert_eq!(ds.samples[0].objects[0].bbox, [50.0, 30.0, 60.0, 40.0]);
        assert!(ds.samples[1].objects.is_empty());

        // --classes: order kept; an unknown name is an error naming the known ones.
        let given = vec!["vesicle".to_string(), "mito".to_string(), "er".to_string()];
        let ds2 = Dataset::open(&d, Some(&given), None).unwrap();
        assert_eq!(ds2.label("mito"), Some(2));
        let err = Dataset::open(&d, Some(&given[..1]), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"mito\"") && err.contains("vesicle"), "{err}");

        // A manifest overrides the name prefix.
        std::fs::write(
            d.join("manifest.csv"),
            "image,group\ntomoB_001.png,g1\ntomoA_002.png,g2\ntomoA_003.png,g1\n",
        )
        .unwrap();
        let ds3 = Dataset::open(&d, None, None).unwrap();
        let groups: Vec<&str> = ds3.samples.iter().map(|s| s.group.as_str()).collect();
        assert_eq!(groups, ["g2", "g1", "g1"]);

        // The list-file form reads the same samples.
        let list = d.join("all.txt");
        std::fs::write(&list, ds.list_file(&[0, 1, 2])).unwrap();
        let ds4 = Dataset::open(&list, None, None).unwrap();
        assert_eq!(ds4.samples.len(), 3);
        assert_eq!(ds4.classes, ds.classes);
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn split_is_five_to_one_seeded_and_respects_groups() {
        let d = tmpdir("split");
        for g in 0..4 {
            for i in 0..3 {
                write_sample(
                    &d,
                    &format!("t{g}_{i}"),
                    (8, 8),
                    vec![obj("m", [1.0, 1.0, 4.0, 4.0])],
                );
            }
        }
        let ds = Dataset::open(&d, None, None).unwrap();
        let s = Split::new(&ds, 3, false);
        assert_eq!((s.train.len(), s.test.len()), (10, 2));
        assert_eq!(s, Split::new(&ds, 3, false));
        assert_ne!(s.test, Split::new(&ds, 4, false).test);
        let g = Split::new(&ds, 3, true);
        assert_eq!((g.train.len(), g.test.len()), (9, 3));
        let test_groups: BTreeSet<&str> = g
            .test
            .iter()
            .map(|&i| ds.samples[i].group.as_str())
            .collect();
        assert_eq!(test_groups.len(), 1);
        let p = d.join("split.json");
        g.save(&p).unwrap();
        assert_eq!(Split::load(&p).unwrap(), g);
        std::fs::remove_dir_all(&d).ok();
    }

    /// Boxes are scaled by the same factors as the image (here 40 x 60 -> 32 x 48, C != H != W).
    #[test]
    fn loading_scales_boxes_with_the_image() {
        let d = tmpdir("load");
        write_sample(&d, "a_1", (40, 60), vec![obj("m", [10.0, 5.0, 30.0, 25.0])]);
        let ds = Dataset::open(&d, None, None).unwrap();
        let cfg = LoadConfig {
            size: 32,
            max_size: 1000,
            preprocess: None,
            scale: None,
        };
        let ex = load_example(&ds, &ds.samples[0], &cfg).unwrap();
        assert_eq!(ex.x.dim(), (3, 1, 32, 48));
        let b = ex.boxes.row(0).to_vec();
        assert_eq!(b, vec![8.0, 4.0, 24.0, 20.0]);
        assert_eq!(ex.labels, vec![1]);
        let mut loader = Loader::new(&ds, &[0], cfg);
        assert!(loader.caches());
        assert_eq!(loader.get(&ds, 0).unwrap().x, ex.x);
        std::fs::remove_dir_all(&d).ok();
    }
}
