//! Domain randomization: the appearance families and every range an image draws its look from.
//!
//! Every randomized image ([`super::randomized`]) first draws one [`Family`] uniformly over the
//! enabled ones (by default the eight of [`Family::ALL`]; the reserved `lamella` only when
//! named), then an [`Appearance`] from that family's sub-range: physical scale, membrane
//! model, mitochondrial style (shape, cristae, matrix), cellular context and image formation.
//! All lengths are physical (nm) and converted with the image's pixel size.
//!
//! # Ranges and their sources
//! | quantity | range | source |
//! |---|---|---|
//! | pixel size | 0.8-4 nm/px, log-uniform (`--pixel-nm`, `--pixel-nm-range`) | issue 14: files come at 0.2-3 nm/px; binned tomograms for segmentation are typically 1-2 nm/px, the study's 2.6 Å/px binned 4-8x |
//! | field of view | 0.6-3 µm, log-uniform; side clamped to 256..1600 px | the study's ~1 µm field (3708 px at 2.6 Å), cryo-ET montages/lamellae a few µm |
//! | mitochondrion minor semi-axis | 75-500 nm, log-uniform (neurons/synapses 75-250 nm); elongated up to 3 µm; ~8 % larger than the field | issue 14: 0.15-2 µm across; axonal/synaptic mitochondria 0.1-0.3 µm (cryo-ET of neurons) |
//! | membrane (bilayer) | 4-8 nm total: two dark leaflets of 2-4 nm each around a lighter core (core density drop 0.3-0.7); a single dark line when the leaflets are below ~1.2 px | lipid bilayers in cryo-EM: ~4-5 nm headgroup-to-headgroup, two dark lines ~ 2 nm each |
//! | inner-outer spacing (intermembrane space) | 6-12 nm | brief / cryo-ET of mitochondria (IMS ~ 8 nm) |
//! | membrane contrast | 1.2-3.2 (density per px of path; cytoplasm 0.22) | chosen so that membranes range from barely visible (thick cells, low dose) to dominant (thin lamellae) |
//! | cristae | lamellar, tubular (round cross-sections + short segments), vesicular, sparse, none, irregular | cryo-ET of cell lines (lamellar), neurons (tubular), swollen/damaged mitochondria (none/vesicular) |
//! | matrix density | -0.15 (lighter than cytoplasm, swollen) to +0.6 (much darker) relative to cytoplasm 0.22 | cryo-ET: matrix ranges from pale (swollen) to very dense (condensed) |
//! | matrix granules | `neuron`: 4-25 per ~300 nm of body length, 20-50 nm diameter; other families 0-4, 10-30 nm (`swollen`: none); density 1.5-3 | calcium phosphate granules in neuronal mitochondria (Wolf et al. 2017, PNAS) |
//! | cell thickness (projections) | 150-400 nm | cell periphery / FIB lamellae 100-300 nm |
//! | ribosomes | 500-9000 per µm^3 | crowded cytoplasm (HeLa ~ 10^6-10^7 ribosomes per cell) |
//! | synaptic vesicles | 35-45 nm diameter, 100-600 per field cluster | Takamori et al. 2006 (Cell): 42 nm mean diameter |
//! | ER | sheets (lumen 30-50 nm), tubes (diameter 30-70 nm) | Shibata et al. 2006 |
//! | MVB | 250-600 nm, with 40-90 nm intraluminal vesicles | EM of endosomes |
//! | autophagosome | 300-900 nm, double membrane 14-30 nm apart, cytoplasm-like content with ribosomes | hard negative: the other double-membrane organelle |
//! | lipid droplet | 80-500 nm radius, uniform (dense or light), no bilayer (monolayer) | cryo-ET of lipid droplets |
//! | nuclear envelope | double membrane 20-50 nm apart, pores ~ 100 nm every 150-400 nm | perinuclear space and NPC diameter |
//! | microtubules / actin | 25 nm tubes / bundles of 7 nm filaments 10-14 nm apart | textbook |
//! | defocus | 1-8 µm under-focus (phase plate: 0.3-1.5 µm) | brief; typical cryo-ET 2-6 µm |
//! | CTF | `sin(pi lambda df k^2 - pi/2 Cs lambda^3 k^4 + phase_shift)` mixed with amplitude contrast 0.07-0.1, 300 kV (lambda = 1.97 pm), Cs = 2.7 mm, B 10-150 nm^2 (slices 40-300 nm^2: tomograms resolve ~3-7 nm) | standard weak-phase CTF |
//! | phase plate | phase shift 0.4-0.6 pi (Volta: ~pi/2) | Danev et al. 2014 (PNAS) |
//! | SNR | 0.03-0.5 (projections), 0.3-3 (reconstructed, filtered slices), log-uniform | the study: 0.06-0.12 for single projections |
//! | noise | white + correlated (Gaussian sigma 0.7-2.5 px, 0-70 % of the variance) | reconstruction and binning correlate noise |
//! | gradients | illumination/thickness ramps and bumps, up to +-40 % of the contrast | lamella wedges, ice thickness |
//! | curtaining (`lamella` only) | 4-12 stripes per µm across the milling direction (a random in-plane angle), each 20-200 nm wide (log-uniform), edges 15-50 % of the width, thickness change 30-100 % of a per-image 20-50 % (70 % grooves, 30 % ridges); 60 % run through the field, the rest start inside it | FIB curtaining: uneven sputtering leaves striations along the ion beam (Giannuzzi & Stevie 1999, Micron 30:197); in cryo-lamellae, reduced but not removed by the GIS layer (Schaffer et al. 2017, J Struct Biol 197:73; Wagner et al. 2020, Nat Protoc 15:2041) |
//! | lamella thickness (`lamella` only) | 100-300 nm, a wedge of +-(20-45) % across the field along the milling direction (thicker downstream), thickness contrast 2-4 std(S) per unit of relative thickness | FIB lamellae are milled to 100-300 nm and are often wedge-shaped (Wagner et al. 2020); zero-loss intensity `exp(-t / lambda_in)` |
//! | protective cap (`lamella` only) | 70 % (where the mitochondria leave room): the organometallic Pt (GIS) layer at the upstream border, 4-15 % of the field, rough edge (5-20 nm over 20-80 nm), dense and dark, no organelles | GIS Pt deposition before milling (Schaffer et al. 2017; Wagner et al. 2020) |
//! | display | 8-bit clipping at percentiles 0-2 % / 98-100 % (else 0.05-0.3 % / 99.7-99.95 %), gamma 0.6-1.6, denoised looks (Gaussian, median, bilateral-like), inverted contrast, binning low-pass | how viewers (IMOD, Fiji) and users export slices |
//!
//! # Families
//! Each a coherent sub-range (what the others draw with probability < 1 is *always* on or
//! *never* on here), so that leave-one-family-out measures generalization to a new look:
//! - `projection`: thick projections (the study's input), lamellar/irregular cristae, moderate
//!   matrix, CTF defocus 2-8 µm, SNR 0.03-0.5, no smoothing;
//! - `slice`: thin tomogram slices (sections through the scene, crisp rings), missing-wedge
//!   anisotropy and streaks, SNR 0.3-3, phase-flipped CTF, light smoothing;
//! - `neuron`: small mitochondria (75-250 nm semi-axis), dark matrix, tubular/irregular cristae,
//!   dark matrix granules, microtubules and actin; slices or projections;
//! - `swollen`: light matrix, no/sparse/vesicular cristae, large round bodies; lipid droplets;
//! - `synapse`: vesicle fields (many 40 nm clear vesicles), small mitochondria, plasma membrane;
//! - `phase-plate`: Volta phase plate (phase shift ~pi/2, defocus 0.3-1.5 µm): strong
//!   low-frequency contrast;
//! - `denoised`: strong Gaussian/median/bilateral-like smoothing, higher SNR, hard 8-bit
//!   clipping and gamma (what a user exports after denoising);
//! - `inverted`: white membranes (inverted contrast), otherwise like `projection`/`slice`.
//!
//! Contrast inversion and strong denoising appear *only* in their families.
//!
//! # Reserved family
//! `lamella` is **not** in [`Family::ALL`], the default set: `cryodet synth` draws it only when
//! named (`--families lamella`, alone or with others), so every default seed gives the images it
//! gave before it existed, and **no shipped model was trained on it**. It is kept for
//! leave-out and fine-tuning studies (issue 15: fine-tune the shipped model on a few labelled
//! images of a look it never saw):
//! - `lamella`: FIB-milled cryo-lamellae (`synth/lamella.rs`): curtaining (stripes of
//!   thickness change along the milling direction) always, a strong thickness wedge along it
//!   always, a dark protective Pt/GIS cap at the upstream border often; never a carbon film.
//!   Thickness 100-300 nm; everything else (mode, mitochondria, cristae, context, CTF, noise,
//!   display) is drawn from the shared ranges as for `slice`/`projection` (slices or
//!   projections, half each). No other family ever draws curtains, the wedge or the cap.

use super::lamella::Milling;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A named appearance family (module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Projection,
    Slice,
    Neuron,
    Swollen,
    Synapse,
    PhasePlate,
    Denoised,
    Inverted,
    /// Reserved (module doc): FIB-milled lamellae, drawn only when named.
    Lamella,
}

impl Family {
    /// The default families: what `cryodet synth` draws from unless `--families` names others,
    /// and what the shipped models were trained on.
    pub const ALL: [Family; 8] = [
        Family::Projection,
        Family::Slice,
        Family::Neuron,
        Family::Swollen,
        Family::Synapse,
        Family::PhasePlate,
        Family::Denoised,
        Family::Inverted,
    ];

    /// Reserved families: never drawn by default (so every default seed gives the images it
    /// gave before they existed) and seen by no shipped model; drawn only when named
    /// (`--families lamella`), for leave-out and fine-tuning studies (issue 15).
    pub const RESERVED: [Family; 1] = [Family::Lamella];

    /// Every family: the default ones, then the reserved ones.
    pub fn known() -> impl Iterator<Item = Family> {
        Family::ALL.into_iter().chain(Family::RESERVED)
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Projection => "projection",
            Family::Slice => "slice",
            Family::Neuron => "neuron",
            Family::Swollen => "swollen",
            Family::Synapse => "synapse",
            Family::PhasePlate => "phase-plate",
            Family::Denoised => "denoised",
            Family::Inverted => "inverted",
            Family::Lamella => "lamella",
        }
    }

    /// The family called `s` (as [`Family::name`], reserved ones included), or None.
    pub fn parse(s: &str) -> Option<Family> {
        Family::known().find(|f| f.name() == s.trim())
    }
}

/// Thick projection through the cell, or a thin section (tomogram slice).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Projection,
    Slice,
}

/// Cristae morphology of one mitochondrion.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cristae {
    Lamellar,
    Tubular,
    Vesicular,
    Sparse,
    None,
    Irregular,
}

/// Shape of one mitochondrion.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    Round,
    Elongated,
    Branched,
    Constricted,
    Cup,
    /// Larger than the field of view (always cut by the border).
    Huge,
}

/// How one image draws its mitochondria (per-object draws within these ranges).
#[derive(Clone, Debug)]
pub struct MitoStyle {
    /// Total bilayer thickness, nm.
    pub membrane_nm: f32,
    /// Fraction of the membrane density missing in the bilayer's core (0: a single dark line).
    pub leaflet_core: f32,
    /// Outer-inner membrane spacing (intermembrane space), nm.
    pub gap_nm: f32,
    /// Membrane density per px of path.
    pub rho_mem: f32,
    /// Weights of [`Cristae`] in the order Lamellar, Tubular, Vesicular, Sparse, None, Irregular.
    pub cristae_w: [f32; 6],
    /// Matrix density relative to cytoplasm, range.
    pub matrix: (f32, f32),
    /// Matrix texture amplitude (relative), range.
    pub matrix_tex: (f32, f32),
    /// Dense matrix granules per mitochondrion, range, and their diameter range, nm.
    pub granules: (usize, usize),
    pub granule_nm: (f32, f32),
    pub granule_rho: f32,
    /// Weights of [`Shape`] in the order Round, Elongated, Branched, Constricted, Cup, Huge.
    pub shape_w: [f32; 6],
    /// Minor semi-axis range, nm (log-uniform).
    pub radius_nm: (f32, f32),
}

/// Cellular context of one image (counts per image or per area/volume).
#[derive(Clone, Debug)]
pub struct Context {
    /// Specimen (cell or lamella) thickness, nm (projections).
    pub thickness_nm: f32,
    pub ribosomes_per_um3: f32,
    pub clear_vesicles_per_um2: f32,
    pub dense_granules_per_um2: f32,
    pub vesicle_fields: usize,
    pub er_sheets: usize,
    pub er_tubes: usize,
    pub mvbs: usize,
    pub autophagosomes: usize,
    pub lipid_droplets: usize,
    pub nuclear_envelope: bool,
    pub microtubules: usize,
    pub actin_bundles: usize,
    pub plasma_membrane: bool,
    pub lamella_edge: bool,
    pub ice: usize,
    pub crystalline_ice: bool,
    pub carbon: bool,
    /// Cytoplasm texture amplitude (relative).
    pub cyto_tex: f32,
}

/// A display-side smoothing ("denoised look").
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Smooth {
    None,
    /// Gaussian of this sigma, px.
    Gaussian(f32),
    /// Median of a `(2r+1)^2` window.
    Median(usize),
    /// Bilateral-like: spatial sigma px, range sigma (in units of the image's std).
    Bilateral(f32, f32),
}

/// Image formation of one image.
#[derive(Clone, Debug)]
pub struct Imaging {
    pub mode: Mode,
    /// Under-focus, nm.
    pub defocus_nm: f32,
    pub amp_contrast: f32,
    /// Low-frequency amplitude contrast of energy filtering (imaging module doc).
    pub lowfreq: f32,
    /// Phase-plate shift, rad (0 without).
    pub phase_shift: f32,
    /// B-factor of the envelope `exp(-B k^2 / 4)`, nm^2.
    pub b_nm2: f32,
    /// Tomogram slices: the CTF was phase-flipped during reconstruction (`|CTF|`).
    pub ctf_flip: bool,
    /// Missing wedge (slices): `(axis angle rad, half-angle rad, residual 0..1)`.
    pub wedge: Option<(f32, f32, f32)>,
    /// Streak strength (slices): back-projection rays of dense objects along the wedge axis.
    pub streaks: f32,
    pub snr: f32,
    /// Correlated part of the noise: Gaussian sigma (px) and its fraction of the variance.
    pub noise_sigma: f32,
    pub noise_mix: f32,
    /// Linear ramp (per axis, relative to the contrast std) and a smooth bump amplitude.
    pub gradient: [f32; 2],
    pub bump: f32,
    /// Binning low-pass: Gaussian sigma, px (0: none).
    pub bin_sigma: f32,
    /// Display: clipping percentiles (lo, hi) in %, gamma, smoothing, inversion.
    pub clip: (f32, f32),
    pub gamma: f32,
    pub smooth: Smooth,
    pub invert: bool,
}

/// Everything an image is drawn with.
#[derive(Clone, Debug)]
pub struct Appearance {
    pub family: Family,
    pub pixel_nm: f32,
    pub size: (usize, usize),
    pub mito: MitoStyle,
    pub context: Context,
    pub imaging: Imaging,
    /// FIB milling (family `lamella` only; `synth/lamella.rs`).
    pub milling: Option<Milling>,
}

/// User-set ranges (CLI), validated by [`Ranges::validate`].
#[derive(Clone, Debug)]
pub struct Ranges {
    /// Pixel size range, nm (`a == b`: fixed); log-uniform.
    pub pixel_nm: (f32, f32),
    /// Field of view range, nm; log-uniform.
    pub fov_nm: (f32, f32),
    /// Image side clamp, px.
    pub side: (usize, usize),
    /// Fixed `(h, w)`: the side no longer follows the field of view (the pixel size then
    /// follows it within `pixel_nm`, [`Ranges::pixel_range`]).
    pub size: Option<(usize, usize)>,
    /// Fixed SNR range (overrides the family's).
    pub snr: Option<(f32, f32)>,
}

impl Default for Ranges {
    fn default() -> Self {
        Ranges {
            pixel_nm: (0.8, 4.0),
            fov_nm: (600.0, 3000.0),
            side: (256, 1600),
            size: None,
            snr: None,
        }
    }
}

impl Ranges {
    /// The pixel sizes drawn from. With a fixed `size`, the pixel range is narrowed to the
    /// sizes that give a field of view within `fov_nm` (`fov / side`); when the two do not
    /// overlap, the bound of `pixel_nm` nearest to them.
    pub fn pixel_range(&self) -> (f32, f32) {
        let (a, b) = self.pixel_nm;
        let Some((h, w)) = self.size else {
            return (a, b);
        };
        let side = h.max(w) as f32;
        let (lo, hi) = (self.fov_nm.0 / side, self.fov_nm.1 / side);
        if lo.max(a) <= hi.min(b) {
            (lo.max(a), hi.min(b))
        } else if lo > b {
            (b, b)
        } else {
            (a, a)
        }
    }

    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::invalid(m));
        let (a, b) = self.pixel_nm;
        if !(a.is_finite() && b.is_finite() && a >= 0.1 && b <= 100.0 && a <= b) {
            return bad(format!(
                "synth: pixel size range {a},{b} nm must be ordered within 0.1..=100"
            ));
        }
        let (a, b) = self.fov_nm;
        if !(a.is_finite() && b.is_finite() && a >= 50.0 && a <= b && b <= 1e5) {
            return bad(format!(
                "synth: field of view {a},{b} nm must be ordered within 50..=100000"
            ));
        }
        let (a, b) = self.side;
        if a < 32 || a > b || b > 16384 {
            return bad(format!("synth: side clamp {a},{b} px outside 32..=16384"));
        }
        if let Some((h, w)) = self.size {
            if h < 32 || w < 32 || h > 16384 || w > 16384 {
                return bad(format!("synth: size {h}x{w} outside 32..=16384"));
            }
        }
        if let Some((a, b)) = self.snr {
            if !(a.is_finite() && b.is_finite() && a > 0.0 && a <= b && b <= 1e4) {
                return bad(format!("synth: snr range {a},{b} must be ordered and > 0"));
            }
        }
        Ok(())
    }
}

/// Log-uniform draw in `[a, b]` (`a == b`: `a`).
pub(crate) fn log_uniform(rng: &mut ChaCha8Rng, (a, b): (f32, f32)) -> f32 {
    if b <= a {
        return a;
    }
    rng.gen_range(a.ln()..b.ln()).exp()
}

/// Uniform draw in `[a, b]` (`a == b`: `a`).
pub(crate) fn uniform(rng: &mut ChaCha8Rng, (a, b): (f32, f32)) -> f32 {
    if b <= a {
        return a;
    }
    rng.gen_range(a..b)
}

/// Index drawn with probability proportional to `w`.
pub(crate) fn pick(rng: &mut ChaCha8Rng, w: &[f32]) -> usize {
    let total: f32 = w.iter().sum();
    let mut x = rng.gen_range(0.0..total.max(1e-9));
    for (k, &v) in w.iter().enumerate() {
        if x < v {
            return k;
        }
        x -= v;
    }
    w.len() - 1
}

fn count(rng: &mut ChaCha8Rng, p: f64, max: usize) -> usize {
    if max == 0 || !rng.gen_bool(p) {
        0
    } else {
        rng.gen_range(1..=max)
    }
}

impl Appearance {
    /// Draw the appearance of one image of `family` within `ranges` (module doc).
    pub fn draw(family: Family, ranges: &Ranges, rng: &mut ChaCha8Rng) -> Appearance {
        use Family as F;
        // Scale: pixel size, then the side from the field of view (or fixed).
        let pixel_nm = log_uniform(rng, ranges.pixel_range());
        let fov = log_uniform(rng, ranges.fov_nm);
        let size = ranges.size.unwrap_or_else(|| {
            let s = ((fov / pixel_nm).round() as usize).clamp(ranges.side.0, ranges.side.1);
            (s, s)
        });

        // Mode.
        let mode = match family {
            F::Projection | F::PhasePlate => Mode::Projection,
            F::Slice => Mode::Slice,
            F::Synapse => {
                if rng.gen_bool(0.75) {
                    Mode::Slice
                } else {
                    Mode::Projection
                }
            }
            _ => {
                if rng.gen_bool(0.5) {
                    Mode::Slice
                } else {
                    Mode::Projection
                }
            }
        };
        let slice = mode == Mode::Slice;

        // Membranes: leaflets resolved only when each is >= ~1.2 px.
        let membrane_nm = rng.gen_range(4.0..8.0);
        let leaflet_px = 0.5 * membrane_nm / pixel_nm;
        let leaflet_core = if leaflet_px >= 1.2 {
            rng.gen_range(0.3..0.7)
        } else {
            0.0
        };
        // Cristae weights: Lamellar, Tubular, Vesicular, Sparse, None, Irregular.
        let cristae_w = match family {
            F::Neuron => [0.15, 0.45, 0.05, 0.1, 0.0, 0.25],
            F::Swollen => [0.0, 0.0, 0.3, 0.35, 0.35, 0.0],
            F::Synapse => [0.3, 0.3, 0.1, 0.1, 0.0, 0.2],
            F::Projection => [0.6, 0.1, 0.05, 0.1, 0.0, 0.15],
            _ => [0.4, 0.15, 0.08, 0.12, 0.05, 0.2],
        };
        let matrix = match family {
            F::Swollen => (-0.15, 0.0),
            F::Neuron => (0.1, 0.6),
            F::Projection => (0.0, 0.25),
            _ => (-0.05, 0.4),
        };
        let (granules, granule_nm) = match family {
            F::Neuron => ((4, 25), (20.0, 50.0)),
            F::Swollen => ((0, 0), (20.0, 30.0)),
            _ => ((0, 4), (10.0, 30.0)),
        };
        // Shape weights: Round, Elongated, Branched, Constricted, Cup, Huge.
        let shape_w = match family {
            F::Swollen => [0.6, 0.1, 0.0, 0.05, 0.1, 0.15],
            F::Neuron | F::Synapse => [0.35, 0.4, 0.05, 0.15, 0.05, 0.0],
            _ => [0.3, 0.3, 0.08, 0.12, 0.08, 0.08],
        };
        let radius_nm = match family {
            F::Neuron | F::Synapse => (75.0, 250.0),
            F::Swollen => (150.0, 600.0),
            _ => (75.0, 500.0),
        };
        let mito = MitoStyle {
            membrane_nm,
            leaflet_core,
            gap_nm: rng.gen_range(6.0..12.0),
            rho_mem: rng.gen_range(1.2..3.2),
            cristae_w,
            matrix,
            matrix_tex: (0.1, 0.6),
            granules,
            granule_nm,
            granule_rho: rng.gen_range(1.5..3.0),
            shape_w,
            radius_nm,
        };

        // Context.
        let syn = family == F::Synapse;
        let neuron = family == F::Neuron;
        let lamella = family == F::Lamella;
        let context = Context {
            thickness_nm: if lamella {
                rng.gen_range(100.0..300.0)
            } else {
                rng.gen_range(150.0..400.0)
            },
            ribosomes_per_um3: log_uniform(rng, (500.0, 9000.0)) * if syn { 0.3 } else { 1.0 },
            clear_vesicles_per_um2: rng.gen_range(0.0..8.0),
            dense_granules_per_um2: if rng.gen_bool(0.4) {
                rng.gen_range(0.0..2.5)
            } else {
                0.0
            },
            vesicle_fields: if syn {
                rng.gen_range(1..=3)
            } else {
                count(rng, 0.1, 1)
            },
            er_sheets: count(rng, 0.6, 3),
            er_tubes: count(rng, 0.5, 6),
            mvbs: count(rng, 0.3, 2),
            autophagosomes: count(rng, 0.3, 2),
            lipid_droplets: count(rng, if family == F::Swollen { 0.6 } else { 0.2 }, 3),
            nuclear_envelope: rng.gen_bool(0.15),
            microtubules: if neuron {
                rng.gen_range(2..8)
            } else {
                count(rng, 0.5, 4)
            },
            actin_bundles: count(rng, if neuron || syn { 0.6 } else { 0.25 }, 2),
            plasma_membrane: rng.gen_bool(if syn { 0.7 } else { 0.2 }),
            lamella_edge: rng.gen_bool(0.15),
            ice: count(rng, 0.25, 2),
            crystalline_ice: rng.gen_bool(0.1),
            // A lamella hangs free of the support film.
            carbon: rng.gen_bool(if slice { 0.05 } else { 0.2 }) && !lamella,
            cyto_tex: rng.gen_range(0.15..0.5),
        };

        // Imaging.
        let pp = family == F::PhasePlate;
        let snr_range = ranges.snr.unwrap_or(match family {
            F::Denoised => (0.1, 3.0),
            _ if slice => (0.3, 3.0),
            _ => (0.03, 0.5),
        });
        let smooth = match family {
            F::Denoised => match rng.gen_range(0..3) {
                0 => Smooth::Gaussian(rng.gen_range(1.5..4.0)),
                1 => Smooth::Median(rng.gen_range(1..=3)),
                _ => Smooth::Bilateral(rng.gen_range(1.5..4.0), rng.gen_range(0.3..1.0)),
            },
            F::Slice if rng.gen_bool(0.3) => Smooth::Gaussian(rng.gen_range(0.5..1.2)),
            _ => Smooth::None,
        };
        let imaging = Imaging {
            mode,
            defocus_nm: if pp {
                rng.gen_range(300.0..1500.0)
            } else if family == F::Projection {
                rng.gen_range(2000.0..8000.0)
            } else {
                rng.gen_range(1000.0..8000.0)
            },
            amp_contrast: rng.gen_range(0.07..0.1),
            lowfreq: if slice {
                rng.gen_range(0.0..0.15)
            } else {
                rng.gen_range(0.05..0.3)
            },
            phase_shift: if pp {
                std::f32::consts::PI * rng.gen_range(0.4..0.6)
            } else {
                0.0
            },
            // Tomograms resolve less than single projections (alignment, dose, missing wedge):
            // envelope 1/e at ~3-7 nm in slices, ~1.5-4 nm in projections.
            b_nm2: if slice {
                rng.gen_range(40.0..300.0)
            } else {
                rng.gen_range(10.0..150.0)
            },
            ctf_flip: slice && rng.gen_bool(0.7),
            wedge: slice.then(|| {
                (
                    rng.gen_range(0.0..std::f32::consts::PI),
                    rng.gen_range(0.3..0.6),
                    rng.gen_range(0.1..0.5),
                )
            }),
            streaks: if slice { rng.gen_range(0.0..0.15) } else { 0.0 },
            snr: log_uniform(rng, snr_range),
            noise_sigma: rng.gen_range(0.7..2.5),
            noise_mix: if slice || rng.gen_bool(0.3) {
                rng.gen_range(0.0..0.7)
            } else {
                0.0
            },
            gradient: [rng.gen_range(-0.4..0.4), rng.gen_range(-0.4..0.4)],
            bump: rng.gen_range(0.0..0.4),
            bin_sigma: if rng.gen_bool(0.3) {
                rng.gen_range(0.5..1.5)
            } else {
                0.0
            },
            clip: if family == F::Denoised || rng.gen_bool(0.5) {
                (rng.gen_range(0.0..2.0), rng.gen_range(98.0..100.0))
            } else {
                (rng.gen_range(0.05..0.3), rng.gen_range(99.7..99.95))
            },
            gamma: if family == F::Denoised || rng.gen_bool(0.4) {
                log_uniform(rng, (0.6, 1.6))
            } else {
                1.0
            },
            smooth,
            invert: family == F::Inverted,
        };
        // Drawn last, so that the other families' draws are those of before `lamella` existed.
        let milling = lamella.then(|| Milling::draw(rng, pixel_nm, size));
        Appearance {
            family,
            pixel_nm,
            size,
            mito,
            context,
            imaging,
            milling,
        }
    }
}
