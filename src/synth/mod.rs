//! Synthetic cryo-ET images of mammalian cells, with exact ground truth.
//!
//! Two generators share the scene models of `synth/scene.rs`:
//! - the **randomized** generator ([`generate_random`], `synth/randomized.rs`; `cryodet synth`'s
//!   default): every image draws one of eight appearance families (a ninth, `lamella`, is
//!   reserved: drawn only when named, seen by no shipped model) and, within it, its pixel
//!   size (0.8-4 nm), field of view (0.6-3 µm), membrane model, mitochondrial shapes, cristae
//!   and matrix, cellular context (hard negatives included), thick projection or thin tomogram
//!   slice, CTF or phase plate, noise, gradients and display conversions. Every range and its
//!   source is tabulated in `synth/appearance.rs`; image formation in `synth/imaging.rs`;
//! - the **classic** generator ([`generate`], `cryodet synth --classic`), documented below:
//!   one rendering style at one scale, what the first shipped models were trained on. Its
//!   output is unchanged (byte-identical) by the randomized generator's additions.
//!
//! The rest of this page describes the classic generator.
//!
//! The study's tomograms (INS-1E cells, 3708 x 3838 px at 2.6 Å/px, i.e. a ~1 µm field) are
//! not public. This module draws look-alikes so that detection, training and evaluation can be
//! run and tested without them: 1-5 mitochondria per image (round and elongated, double
//! membrane, cristae, some cut by the border) among the distractors of a real cell periphery.
//!
//! # Scale
//! The field of view is ~1 µm as in the study: the default pixel size is
//! `1000 nm / max(h, w)`, clamped to `1..8` nm (512 px -> 1.95 nm/px, the study's 2.6 Å/px
//! binned 7.5x). All sizes below are physical (nm) and converted with `pixel_nm`.
//!
//! # Scene (models in `synth/scene.rs`, each documented there)
//! Drawn as projected mass density through a cell periphery 180-300 nm thick:
//! - **mitochondria** (1-5): tubes around a spine, round (45 %: radius 90-190 nm, slightly oval,
//!   polar wobble) or elongated (radius 65-130 nm, length 1.5-6 radii, bent); ellipsoidal
//!   cross-section flattened to the cell thickness; outer and inner membranes (4 nm bilayers,
//!   7.5 nm apart), matrix slightly denser than cytoplasm (+0.05..0.12), lamellar cristae (pairs
//!   of lines across the matrix from the inner membrane, 25-60 nm apart), a few matrix granules;
//!   never overlapping each other; ~30 % placed across the border (incomplete);
//! - **ribosomes**: 25-30 nm dense spheres, 1500-4000 per µm^3, 30 % in polysome chains;
//! - **vesicles**: clear (radius 20-70 nm, single membrane, lumen lighter or denser than
//!   cytoplasm) and dense-core insulin granules (radius 110-170 nm, dense core in a halo);
//! - **ER** sheets seen edge-on (pairs of parallel curved membranes 30-50 nm apart, closed
//!   ends, rough ER with ribosomes), **microtubules** (25 nm tubes with two walls, straight);
//! - **cytoplasm**: correlated random texture (1.5 px and 6 px correlation lengths) on a
//!   **thickness gradient** (linear ramp, +-25 % per axis from the centre to the edge), displaced by
//!   mitochondria;
//! - **ice contamination** (35 % of images: 1-2 very dense irregular blobs, 30-150 nm) and a
//!   **carbon film edge** (30 %: the rim of a 2 µm Quantifoil hole, a nearly straight arc, dense
//!   textured film beyond it).
//!
//! Measured (tests/synth_tests.rs, `mitochondria_not_separable_by_brightness`, 384 px, seed 51,
//! 10 images, clean images): the mean intensity of a mitochondrion's footprint lies in
//! [0.42, 0.54], of vesicles [0.46, 0.56], dense granules [0.45, 0.54], ice [0.40, 0.44],
//! organelle-free cytoplasm windows [0.46, 0.57]; the probability that a mitochondrion is
//! brighter than a distractor is 0.38 (0.5 = indistinguishable): brightness alone does not find
//! them.
//!
//! # Contrast convention
//! Projected mass density `D` is high where there is more matter; in cryo-EM projections (and in
//! the study's figures) **high density is dark**: membranes, ribosomes, ice and carbon are dark
//! on a lighter background. The output `image` is in `[0, 1]` with 0 = darkest.
//!
//! # Image formation (`form_image`)
//! 1. Scene -> projected density `D` (see `synth/scene.rs` for each element's model).
//! 2. CTF-like transfer: `S = -(G_{s0} * D - (1 - alpha) G_{s1} * D)`, a difference of Gaussians.
//!    `G_{s0}` (`s0` = 1.5 nm) is the envelope (partial coherence, detector MTF); subtracting
//!    `(1 - alpha)` of the wide blur `G_{s1}` (`s1` = 30 nm) removes the low frequencies that phase
//!    contrast does not transfer (at ~5-10 µm under-focus the CTF rises from ~alpha at zero
//!    frequency to its first maximum near (20-30 nm)^-1), keeping `alpha` = 0.3 of them
//!    (amplitude contrast plus energy-filter/inelastic loss: thickness ramps stay visible). Dense
//!    objects get the light halo of under-focus fringes. The sign makes dense = dark.
//! 3. Noise: white Gaussian `n`, centred and rescaled so that **`var(S) / var(n) = snr`
//!    exactly** for the realisation (the study measured single-image SNRs of 0.06-0.12).
//! 4. Display mapping (linear, shared by `image` and `clean`):
//!    `v = (x - lo) / (hi - lo)` with `lo`, `hi` the min and max over both `S + n` and `S`; so
//!    `image = map(S + n)`, `clean = map(S)`, both in `[0, 1]` without clipping, and
//!    `var(clean) / var(image - clean) = snr` up to f32 rounding.
//!
//! # Ground truth
//! Each mitochondrion's box is computed from its **rasterised outer membrane**: the pixels where
//! that membrane's projected path length exceeds 1e-3 px ([`SynthImage::outer_membrane`]).
//! In projection the membrane shell covers the whole footprint (the beam crosses its top and
//! bottom) and is darkest at the rim, so the box is tight on the drawn dark rim. Pixel `(i, j)`
//! spans `[j, j + 1) x [i, i + 1)`: `bbox = (min j, min i, max j + 1, max i + 1)`, which is inside
//! the image (clipped by construction). `incomplete` <=> a membrane pixel lies on the image's
//! first/last row/column: the body continues beyond the border (complete bodies are placed with a
//! 3-pixel margin, so a complete body never touches the border).
//!
//! Determinism: image `index` of seed `seed` draws from `ChaCha8Rng::seed_from_u64(seed)` on
//! stream `index`, independent of every other image (generate them in parallel in any order).

pub mod appearance;
mod context;
mod fft;
mod field;
pub mod imaging;
pub mod lamella;
mod mito_style;
pub mod randomized;
mod scene;
mod shape;
pub mod stack;
pub mod visibility;

pub use appearance::{Appearance, Family, Ranges};
pub use randomized::{appearance_of, generate_random, RandomConfig};
pub use stack::{generate_stack, slice_nm, StackObject, SynthStack, STACK_THICKNESS_NM};

use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The class name written to annotations (as in the study's LabelImg files).
pub const MITO_CLASS: &str = "mitochondria";

/// Region codes of [`SynthImage::region`] (what occupies the pixel's centre; mitochondria win).
pub mod region {
    pub const CYTOPLASM: u8 = 0;
    pub const MITOCHONDRION: u8 = 1;
    /// Clear (single-membrane) vesicle.
    pub const VESICLE: u8 = 2;
    /// Dense-core (insulin secretory) granule.
    pub const DENSE_GRANULE: u8 = 3;
    pub const ER: u8 = 4;
    pub const MICROTUBULE: u8 = 5;
    pub const ICE: u8 = 6;
    pub const CARBON: u8 = 7;
    pub const LIPID_DROPLET: u8 = 8;
    /// Autophagosome (double membrane, a hard negative).
    pub const AUTOPHAGOSOME: u8 = 9;
    /// Multivesicular body.
    pub const MVB: u8 = 10;
    /// Nucleus (inside the nuclear envelope).
    pub const NUCLEUS: u8 = 11;
    pub const ACTIN: u8 = 12;
    /// Outside the cell (extracellular ice beyond the plasma membrane, or beyond a lamella edge).
    pub const OUTSIDE: u8 = 13;
    /// Names indexed by code.
    pub const NAMES: [&str; 14] = [
        "cytoplasm",
        "mitochondrion",
        "vesicle",
        "dense_granule",
        "er",
        "microtubule",
        "ice",
        "carbon",
        "lipid_droplet",
        "autophagosome",
        "mvb",
        "nucleus",
        "actin",
        "outside",
    ];
}

/// Envelope blur of the CTF-like transfer, nm (see the module doc).
pub const ENVELOPE_NM: f32 = 1.5;
/// Phase-contrast cut-on blur, nm.
pub const CUT_ON_NM: f32 = 30.0;
/// Fraction of low frequencies kept (amplitude-contrast-like).
pub const AMPLITUDE_FRACTION: f32 = 0.3;

/// What to generate.
#[derive(Clone, Debug)]
pub struct SynthConfig {
    /// Image size `(h, w)` in pixels (each at least 32).
    pub size: (usize, usize),
    /// Signal-to-noise ratio `var(signal) / var(noise)` (> 0; the study: 0.06-0.12).
    pub snr: f32,
    /// Mitochondria per image, `min..=max` (default 1..=5).
    pub n_mito: (usize, usize),
    pub seed: u64,
    /// Pixel size, nm (default [`default_pixel_nm`]).
    pub pixel_nm: f32,
    /// Probability that a mitochondrion is placed across the border (default 0.3).
    pub p_incomplete: f32,
}

/// `1000 nm / max(h, w)` clamped to `[1, 8]`: a ~1 µm field as in the study.
pub fn default_pixel_nm(size: (usize, usize)) -> f32 {
    (1000.0 / size.0.max(size.1).max(1) as f32).clamp(1.0, 8.0)
}

impl SynthConfig {
    /// Defaults for everything but size, SNR and seed.
    pub fn new(size: (usize, usize), snr: f32, seed: u64) -> Self {
        SynthConfig {
            size,
            snr,
            n_mito: (1, 5),
            seed,
            pixel_nm: default_pixel_nm(size),
            p_incomplete: 0.3,
        }
    }

    /// Check the ranges documented on the fields.
    pub fn validate(&self) -> crate::Result<()> {
        let (h, w) = self.size;
        if h < 32 || w < 32 || h > 16384 || w > 16384 {
            return Err(crate::Error::invalid(format!(
                "synth: size {h}x{w} outside 32..=16384"
            )));
        }
        if !(self.snr.is_finite() && self.snr > 0.0) {
            return Err(crate::Error::invalid(format!(
                "synth: snr {} must be > 0",
                self.snr
            )));
        }
        if self.n_mito.0 > self.n_mito.1 || self.n_mito.1 > 50 {
            return Err(crate::Error::invalid(format!(
                "synth: mitochondria per image {}..={} must be ordered and <= 50",
                self.n_mito.0, self.n_mito.1
            )));
        }
        if !(self.pixel_nm.is_finite() && self.pixel_nm > 0.1 && self.pixel_nm < 100.0) {
            return Err(crate::Error::invalid(format!(
                "synth: pixel size {} nm out of range",
                self.pixel_nm
            )));
        }
        if !(0.0..=1.0).contains(&self.p_incomplete) {
            return Err(crate::Error::invalid(
                "synth: p_incomplete must be in [0, 1]",
            ));
        }
        Ok(())
    }
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig::new((512, 512), 0.1, 0)
    }
}

/// One ground-truth object.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthBox {
    /// `(x1, y1, x2, y2)` in continuous pixel coordinates, tight on the drawn outer membrane and
    /// inside the image.
    pub bbox: [f32; 4],
    /// Always [`MITO_CLASS`].
    pub class: String,
    /// The object is cut by the image border (VOC `<truncated>1</truncated>`).
    pub incomplete: bool,
    /// No observer could see it (VOC `<difficult>1</difficult>`; randomized images only, the
    /// rule of [`visibility`]): ignored by `train` and `eval`.
    pub difficult: bool,
}

/// One generated image and its ground truth.
#[derive(Clone, Debug)]
pub struct SynthImage {
    /// Noisy image `[h, w]` in `[0, 1]` (module doc: mapping), dark = dense.
    pub image: Array2<f32>,
    /// The same without noise, same mapping.
    pub clean: Array2<f32>,
    pub boxes: Vec<SynthBox>,
    /// `k + 1` where `boxes[k]`'s outer membrane is drawn, 0 elsewhere.
    pub outer_membrane: Array2<u8>,
    /// Region codes ([`region`]) of every pixel.
    pub region: Array2<u8>,
    /// The appearance family (randomized images; `None` for the classic generator).
    pub family: Option<Family>,
    /// Pixel size, nm.
    pub pixel_nm: f32,
    /// The SNR the noise was scaled to (`var(S) / var(n)` before gradients and display).
    pub snr: f32,
}

impl SynthImage {
    /// `var(clean) / var(image - clean)`, the SNR the image was made with.
    pub fn measured_snr(&self) -> f32 {
        let (_, vs) = field::mean_var(self.clean.iter().copied());
        let (_, vn) = field::mean_var(self.image.iter().zip(self.clean.iter()).map(|(a, b)| a - b));
        vs / vn
    }
}

/// Generate image `index` of the series `cfg` (deterministic in `(cfg, index)`).
///
/// # Panics
/// If `cfg.validate()` fails (callers taking user input validate first).
pub fn generate(cfg: &SynthConfig, index: usize) -> SynthImage {
    if let Err(e) = cfg.validate() {
        panic!("{e}");
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng.set_stream(index as u64);
    let (cv, mitos) = scene::project_scene(cfg, &mut rng);
    let (h, w) = cfg.size;
    let density = Array2::from_shape_vec((h, w), cv.density).expect("h*w");
    let (image, clean) = form_image(&density, cfg.snr, cfg.pixel_nm, &mut rng);
    let (boxes, outer_membrane) = boxes_from_membranes(&cv.membrane, h, w, mitos.len());
    SynthImage {
        image,
        clean,
        boxes,
        outer_membrane,
        region: Array2::from_shape_vec((h, w), cv.region).expect("h*w"),
        family: None,
        pixel_nm: cfg.pixel_nm,
        snr: cfg.snr,
    }
}

/// The CTF-like transfer of the module doc: `S = -(G_{s0} * D - (1 - alpha) G_{s1} * D)`,
/// centred to zero mean.
pub(crate) fn transfer(density: &Array2<f32>, pixel_nm: f32) -> Array2<f32> {
    let s0 = (ENVELOPE_NM / pixel_nm).max(0.5);
    let s1 = (CUT_ON_NM / pixel_nm).max(2.0 * s0);
    let near = field::gaussian_blur(density, s0);
    let wide = field::gaussian_blur(density, s1);
    let mut s = &wide * (1.0 - AMPLITUDE_FRACTION) - &near;
    let (m, _) = field::mean_var(s.iter().copied());
    s.mapv_inplace(|x| x - m);
    s
}

/// White Gaussian noise centred and scaled so that `var(signal) / var(noise) = snr` exactly.
pub(crate) fn noise_for(
    signal_var: f32,
    snr: f32,
    h: usize,
    w: usize,
    rng: &mut ChaCha8Rng,
) -> Array2<f32> {
    let mut n = field::white_noise(rng, h, w);
    field::standardize(&mut n);
    let s = (signal_var / snr).sqrt();
    n.mapv_inplace(|x| x * s);
    n
}

/// Density -> (noisy image, clean image), both in `[0, 1]` (module doc, steps 2-4).
pub(crate) fn form_image(
    density: &Array2<f32>,
    snr: f32,
    pixel_nm: f32,
    rng: &mut ChaCha8Rng,
) -> (Array2<f32>, Array2<f32>) {
    let s = transfer(density, pixel_nm);
    let (_, vs) = field::mean_var(s.iter().copied());
    let (h, w) = s.dim();
    let noisy = &s + &noise_for(vs, snr, h, w, rng);
    form_parts(noisy, s)
}

/// Step 4 of the module doc for arrays of any dimension: map `noisy` and `clean` with the one
/// linear map that sends the min over both to 0 and the max to 1.
pub(crate) fn form_parts<D: ndarray::Dimension>(
    mut noisy: ndarray::Array<f32, D>,
    mut clean: ndarray::Array<f32, D>,
) -> (ndarray::Array<f32, D>, ndarray::Array<f32, D>) {
    let (lo, hi) = min_max(noisy.iter().chain(clean.iter()).copied());
    let span = hi - lo;
    for a in [&mut noisy, &mut clean] {
        if span > 0.0 {
            a.mapv_inplace(|v| ((v - lo) / span).clamp(0.0, 1.0));
        } else {
            a.fill(0.5);
        }
    }
    (noisy, clean)
}

pub(crate) fn min_max(it: impl Iterator<Item = f32>) -> (f32, f32) {
    it.fold((f32::MAX, f32::MIN), |(a, b), x| (a.min(x), b.max(x)))
}

/// Boxes from a membrane label map (`k + 1` for object `k`); objects without any pixel are
/// dropped and the labels renumbered so that `boxes[k]` has label `k + 1`.
pub(crate) fn boxes_from_membranes(
    labels: &[u8],
    h: usize,
    w: usize,
    n: usize,
) -> (Vec<SynthBox>, Array2<u8>) {
    // (imin, jmin, imax, jmax) per label.
    let mut ext = vec![(usize::MAX, usize::MAX, 0usize, 0usize); n];
    for i in 0..h {
        for j in 0..w {
            let l = labels[i * w + j] as usize;
            if l > 0 && l <= n {
                let e = &mut ext[l - 1];
                e.0 = e.0.min(i);
                e.1 = e.1.min(j);
                e.2 = e.2.max(i);
                e.3 = e.3.max(j);
            }
        }
    }
    let mut remap = vec![0u8; n + 1];
    let mut boxes = Vec::new();
    for (k, &(i0, j0, i1, j1)) in ext.iter().enumerate() {
        if i0 == usize::MAX {
            continue;
        }
        boxes.push(SynthBox {
            bbox: [j0 as f32, i0 as f32, (j1 + 1) as f32, (i1 + 1) as f32],
            class: MITO_CLASS.to_string(),
            incomplete: i0 == 0 || j0 == 0 || i1 == h - 1 || j1 == w - 1,
            difficult: false,
        });
        remap[k + 1] = boxes.len() as u8;
    }
    let map = Array2::from_shape_fn((h, w), |(i, j)| {
        let l = labels[i * w + j] as usize;
        if l <= n {
            remap[l]
        } else {
            0
        }
    });
    (boxes, map)
}
