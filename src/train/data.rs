//! Training data: LabelImg (Pascal VOC) data sets, class lists, groups, the train/test split,
//! and the per-image loading pipeline.
//!
//! A data set is either
//! - a directory with `images/` (PNG, TIFF or JPEG) and `annotations/` (one `.xml` per image,
//!   matched by file stem), or
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
//!   -> bilinear resize by s = min(size / short side, max_size / long side)
//!   -> normalize_imagenet -> x [3, 1, h', w'];  boxes: x * w'/w, y * h'/h
//! ```
//! The network input is then augmented ([`crate::train::augment`]) and zero-padded to a multiple
//! of 32 (torchvision's `batch_images`).

use crate::error::{Error, Result};
use ndarray::{Array2, Array4};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

// The image, VOC, preprocessing and transform functions of branch `io`.
use pending_io::{
    image_size, normalize_imagenet, preprocess, read_gray, read_voc, resize_bilinear,
    to_unit_range, PreprocessConfig, Scaling, VocObject,
};

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

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("png" | "tif" | "tiff" | "jpg" | "jpeg")
    )
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
        for img in list_dir(&img_dir)?.into_iter().filter(|p| is_image(p)) {
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
        for (s, a) in &anns {
            if !matched.contains(s) {
                eprintln!("warning: {}: no image with this stem, skipped", a.display());
            }
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
            samples.push(Sample {
                image,
                annotation,
                group,
                size: (h, w),
                objects: ann.objects,
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

/// How images are turned into network inputs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Target short side (torchvision's min_size; the study's 600).
    pub size: usize,
    /// Upper bound on the long side (torchvision's max_size, 1000).
    pub max_size: usize,
    /// `None`: no preprocessing (`--no-preprocess`).
    pub preprocess: Option<PreprocessConfig>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            size: 600,
            max_size: 1000,
            preprocess: Some(PreprocessConfig::default()),
        }
    }
}

/// One network input with its targets.
#[derive(Debug, Clone)]
pub struct Example {
    /// Normalized input `[3, 1, h', w']` (not padded).
    pub x: Array4<f32>,
    /// Boxes `[N, 4]` as (x1, y1, x2, y2) in x's pixels.
    pub boxes: Array2<f32>,
    /// Labels (indices into the class list, >= 1), one per box.
    pub labels: Vec<usize>,
}

/// The loading pipeline of the module doc for one sample.
pub fn load_example(ds: &Dataset, s: &Sample, cfg: &LoadConfig) -> Result<Example> {
    let raw = read_gray(&s.image)?;
    let (h, w) = raw.dim();
    if (h, w) != s.size {
        return Err(Error::format(
            &s.image,
            format!("image changed size since the data set was opened: {w}x{h}"),
        ));
    }
    let mut img = to_unit_range(raw.view(), Scaling::default());
    if let Some(p) = &cfg.preprocess {
        img = preprocess(img.view(), p);
    }
    let scale = (cfg.size as f64 / h.min(w) as f64).min(cfg.max_size as f64 / h.max(w) as f64);
    let (oh, ow) = (
        ((h as f64 * scale).floor() as usize).max(1),
        ((w as f64 * scale).floor() as usize).max(1),
    );
    let resized = resize_bilinear(img.view(), oh, ow);
    let x = normalize_imagenet(resized.view());
    let (sx, sy) = (ow as f32 / w as f32, oh as f32 / h as f32);
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
        labels.push(
            ds.label(&o.name).ok_or_else(|| {
                Error::format(&s.annotation, format!("unknown class {:?}", o.name))
            })?,
        );
    }
    Ok(Example { x, boxes, labels })
}

/// Largest total size of cached inputs (bytes); larger sets are reloaded every epoch.
pub const CACHE_BYTES: usize = 1 << 30;

/// Loads examples, keeping them in memory when the whole set fits in [`CACHE_BYTES`].
pub struct Loader {
    pub config: LoadConfig,
    cache: Option<HashMap<usize, Example>>,
}

impl Loader {
    pub fn new(ds: &Dataset, indices: &[usize], config: LoadConfig) -> Self {
        let bytes: usize = indices
            .iter()
            .map(|&i| {
                let (h, w) = ds.samples[i].size;
                let s = (config.size as f64 / h.min(w) as f64)
                    .min(config.max_size as f64 / h.max(w) as f64);
                (h as f64 * s * w as f64 * s) as usize * 3 * 4
            })
            .sum();
        Loader {
            config,
            cache: (bytes <= CACHE_BYTES).then(HashMap::new),
        }
    }

    pub fn caches(&self) -> bool {
        self.cache.is_some()
    }

    /// The example of sample `i`.
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
}

/// TEMPORARY fallback for branch `io` (crate::io::image, crate::io::voc, crate::preprocess,
/// crate::transform), with the same signatures. Delete this module and import from the crate
/// when `io` lands on main. `preprocess` here is the identity (it warns once).
mod pending_io {
    use crate::error::{Error, Result};
    use ndarray::{s, Array2, Array4, ArrayView2};
    use std::path::Path;

    #[derive(Clone, Copy, Debug, PartialEq, Default)]
    pub struct PreprocessConfig;

    pub fn preprocess(img: ArrayView2<f32>, _cfg: &PreprocessConfig) -> Array2<f32> {
        static WARN: std::sync::Once = std::sync::Once::new();
        WARN.call_once(|| {
            eprintln!("warning: preprocessing not available in this build (identity)")
        });
        img.to_owned()
    }

    #[derive(Clone, Copy, Debug, PartialEq, Default)]
    pub enum Scaling {
        #[default]
        MinMax,
    }

    pub fn to_unit_range(img: ArrayView2<f32>, _s: Scaling) -> Array2<f32> {
        let lo = img.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = img.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if !(hi > lo) {
            return Array2::zeros(img.dim());
        }
        img.mapv(|v| (v - lo) / (hi - lo))
    }

    pub fn read_gray(path: &Path) -> Result<Array2<f32>> {
        let img = image::open(path)
            .map_err(|e| Error::format(path, e.to_string()))?
            .to_luma32f();
        let (w, h) = img.dimensions();
        Array2::from_shape_vec((h as usize, w as usize), img.into_raw())
            .map_err(|e| Error::format(path, e.to_string()))
    }

    pub fn image_size(path: &Path) -> Result<(usize, usize)> {
        let (w, h) =
            image::image_dimensions(path).map_err(|e| Error::format(path, e.to_string()))?;
        Ok((h as usize, w as usize))
    }

    pub fn resize_bilinear(img: ArrayView2<f32>, oh: usize, ow: usize) -> Array2<f32> {
        let (h, w) = img.dim();
        let tap = |n_in: usize, n_out: usize, d: usize| {
            let src = ((d as f32 + 0.5) * n_in as f32 / n_out as f32 - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(n_in - 1);
            let i1 = (i0 + 1).min(n_in - 1);
            let l = (src - i0 as f32).clamp(0.0, 1.0);
            (i0, i1, l)
        };
        Array2::from_shape_fn((oh, ow), |(y, x)| {
            let (y0, y1, ly) = tap(h, oh, y);
            let (x0, x1, lx) = tap(w, ow, x);
            let top = img[[y0, x0]] * (1.0 - lx) + img[[y0, x1]] * lx;
            let bot = img[[y1, x0]] * (1.0 - lx) + img[[y1, x1]] * lx;
            top * (1.0 - ly) + bot * ly
        })
    }

    pub fn normalize_imagenet(img: ArrayView2<f32>) -> Array4<f32> {
        const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
        const STD: [f32; 3] = [0.229, 0.224, 0.225];
        let (h, w) = img.dim();
        let mut out = Array4::zeros((3, 1, h, w));
        for c in 0..3 {
            out.slice_mut(s![c, 0, .., ..])
                .zip_mut_with(&img, |o, &v| *o = (v - MEAN[c]) / STD[c]);
        }
        out
    }

    #[derive(Clone, Debug, PartialEq)]
    pub struct VocObject {
        pub name: String,
        pub bbox: [f32; 4],
        pub difficult: bool,
        pub truncated: bool,
    }

    pub struct VocAnnotation {
        pub width: u32,
        pub height: u32,
        pub objects: Vec<VocObject>,
    }

    impl VocAnnotation {
        pub fn clip_to_image(&mut self) -> Vec<String> {
            let (w, h) = (self.width as f32, self.height as f32);
            let mut warnings = Vec::new();
            self.objects.retain_mut(|o| {
                let b = o.bbox;
                let c = [
                    b[0].clamp(0.0, w),
                    b[1].clamp(0.0, h),
                    b[2].clamp(0.0, w),
                    b[3].clamp(0.0, h),
                ];
                if c[2] <= c[0] || c[3] <= c[1] {
                    warnings.push(format!(
                        "dropped box {b:?} ({}): empty inside the image",
                        o.name
                    ));
                    return false;
                }
                if c != b {
                    warnings.push(format!("clipped box {b:?} ({}) to {c:?}", o.name));
                    o.bbox = c;
                }
                true
            });
            warnings
        }
    }

    pub fn read_voc(path: &Path) -> Result<VocAnnotation> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let fail = |r: String| Error::format(path, r);
        let doc = roxmltree::Document::parse(&text).map_err(|e| fail(e.to_string()))?;
        let root = doc.root_element();
        let find = |n: roxmltree::Node, tag: &str| {
            n.children()
                .find(|c| c.has_tag_name(tag))
                .and_then(|c| c.text())
                .map(|t| t.trim().to_string())
        };
        let size = root.children().find(|c| c.has_tag_name("size"));
        let dim = |tag: &str| {
            size.and_then(|s| find(s, tag))
                .and_then(|t| t.parse::<u32>().ok())
                .unwrap_or(0)
        };
        let mut objects = Vec::new();
        for o in root.children().filter(|c| c.has_tag_name("object")) {
            let name = find(o, "name").ok_or_else(|| fail("object without <name>".into()))?;
            let bb = o
                .children()
                .find(|c| c.has_tag_name("bndbox"))
                .ok_or_else(|| fail("object without <bndbox>".into()))?;
            let c = |tag: &str| -> Result<f32> {
                find(bb, tag)
                    .and_then(|t| t.parse::<f32>().ok())
                    .ok_or_else(|| fail(format!("bad <{tag}>")))
            };
            objects.push(VocObject {
                name,
                bbox: [c("xmin")? - 1.0, c("ymin")? - 1.0, c("xmax")?, c("ymax")?],
                difficult: find(o, "difficult").as_deref() == Some("1"),
                truncated: find(o, "truncated").as_deref() == Some("1"),
            });
        }
        Ok(VocAnnotation {
            width: dim("width"),
            height: dim("height"),
            objects,
        })
    }
}
