//! FIB-milled cryo-lamellae (the reserved family `lamella`): what focused-ion-beam milling adds
//! to an image, drawn on top of the shared scene.
//!
//! Frame: milling direction `m = (cos a, sin a)` (the ion beam's in-plane direction, a random
//! angle), across it `n = (-sin a, cos a)`. For a pixel centre `p`, `along = (p - c) . m` and
//! `across = (p - c) . n` (px), `c` the image centre, `side = max(h, w)`.
//!
//! 1. **Curtaining** (always): stripes of thickness change running along `m` (uneven sputtering
//!    behind dense or rough features; Giannuzzi & Stevie 1999, Micron; Schaffer et al. 2017,
//!    J Struct Biol). Curtain `k` has centre `o_k` across, width `w_k`, edge softness `e_k`,
//!    relative thickness change `a_k` (grooves < 0, ridges > 0) and optionally a start `s_k`
//!    along `m` (tapering in over `2 w_k`):
//!    `f(p) = clamp(1 + sum_k a_k S((w_k/2 - |across - o_k|) / e_k + 1/2) R_k(along), 0.3, 2)`,
//!    `S(x) = x^2 (3 - 2x)` on `[0, 1]`, `R_k = clamp((along - s_k side) / (2 w_k), 0, 1)`
//!    (1 without a start). The specimen's density is multiplied by `f` (a groove thins every
//!    body through it).
//! 2. **Wedge** (always): the lamella thickens downstream, `T(p) = T (1 + wedge along / side)`
//!    (clamped >= 0.2 T) for the cytoplasm of projections.
//! 3. **Thickness contrast** (always): zero-loss intensity falls with thickness,
//!    `I ~ exp(-t / lambda_in)`, linearised: the map `-gain ((f - 1) + wedge along / side)`
//!    (units of std(S)) is added with the image gradients (`imaging::form`); 0 beyond a
//!    lamella edge (region `outside`: no specimen), `-3 gain / min(sqrt(snr), 1)` on the cap
//!    (step 4: nearly opaque, dark at every dose).
//! 4. **Protective cap** (drawn for 70 %, where the mitochondria leave room): the organometallic
//!    Pt (GIS) layer at the upstream border (Schaffer et al. 2017; Wagner et al. 2020, Nat
//!    Protoc): a band of `q` of the field's extent
//!    along `m`, rough edge (a 1-D smooth field across, correlation 20-80 nm, amplitude
//!    5-20 nm), density 4-8 x the cytoplasm column with a granular texture, no organelles
//!    (region `carbon`: dense non-specimen, excluded from the SNR and display range). The band
//!    stops 10 nm + 3 x the edge amplitude short of every mitochondrion (ground truth stays
//!    visible); a band under 2 % of the extent is not drawn.

use super::appearance::log_uniform;
use super::field::{smooth_field, smooth_field_any};
use super::region;
use super::scene::{centre, cover, Canvas};
use super::shape::P2;
use ndarray::Array2;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::f32::consts::TAU;

/// Relative thickness of the protective cap in the thickness contrast (step 3): micrometres of
/// Pt scatter nearly every electron out of the zero-loss beam; the linearised contrast is held
/// at a few lamella thicknesses: `-3 gain` in units of std(S) or of the noise's std when that
/// is larger (`std(S) / sqrt(snr)`), so the cap is dark at every dose.
const CAP_THICKNESS: f32 = 3.0;

/// One curtain (module doc, step 1); lengths in nm.
#[derive(Clone, Debug)]
pub struct Curtain {
    /// Centre across the milling direction, from the image centre.
    pub offset_nm: f32,
    pub width_nm: f32,
    pub edge_nm: f32,
    /// Relative thickness change (grooves < 0).
    pub amp: f32,
    /// Start along the milling direction, fraction of the side from the centre (None: the
    /// curtain runs through the whole field).
    pub start: Option<f32>,
}

/// How one lamella was milled (module doc).
#[derive(Clone, Debug)]
pub struct Milling {
    /// Milling direction, rad.
    pub angle: f32,
    pub curtains: Vec<Curtain>,
    /// Relative thickness change per side length along the milling direction.
    pub wedge: f32,
    /// Thickness contrast: intensity per unit relative thickness, in units of std(S).
    pub gain: f32,
    /// Protective cap depth, fraction of the field's extent along the milling direction.
    pub cap: Option<f32>,
}

impl Milling {
    /// Draw the milling of an image of `size` px at `px` nm/px (ranges in `synth/appearance.rs`).
    pub(crate) fn draw(rng: &mut ChaCha8Rng, px: f32, (h, w): (usize, usize)) -> Milling {
        let angle = rng.gen_range(0.0..TAU);
        // Curtains cover the field's diagonal across `m`.
        let half_nm = 0.5 * ((h * h + w * w) as f32).sqrt() * px;
        let per_um = rng.gen_range(4.0..12.0);
        let n = ((per_um * 2.0 * half_nm / 1000.0).round() as usize).max(2);
        let amp = rng.gen_range(0.2..0.5);
        let curtains = (0..n)
            .map(|_| {
                let width_nm = log_uniform(rng, (20.0, 200.0));
                Curtain {
                    offset_nm: rng.gen_range(-half_nm..half_nm),
                    width_nm,
                    edge_nm: width_nm * rng.gen_range(0.15..0.5),
                    amp: amp * rng.gen_range(0.3..1.0) * if rng.gen_bool(0.7) { -1.0 } else { 1.0 },
                    start: (!rng.gen_bool(0.6)).then(|| rng.gen_range(-0.5..0.4)),
                }
            })
            .collect();
        Milling {
            angle,
            curtains,
            wedge: rng.gen_range(0.4..0.9),
            gain: rng.gen_range(2.0..4.0),
            cap: rng.gen_bool(0.7).then(|| rng.gen_range(0.04..0.15)),
        }
    }

    /// The frame of the module doc for an `h x w` image.
    pub fn frame(&self, h: usize, w: usize) -> MillFrame {
        MillFrame {
            c: [0.5 * w as f32, 0.5 * h as f32],
            m: [self.angle.cos(), self.angle.sin()],
            side: h.max(w) as f32,
        }
    }

    /// Cytoplasm thickness factor of step 2 at pixel `(i, j)`.
    pub fn wedge_factor(&self, f: &MillFrame, i: usize, j: usize) -> f32 {
        (1.0 + self.wedge * f.along(centre(i, j)) / f.side).max(0.2)
    }

    /// The curtain factor `f` of step 1, `h x w`.
    pub fn curtain_factor(&self, h: usize, w: usize, px: f32) -> Array2<f32> {
        let fr = self.frame(h, w);
        // Per curtain, in px: centre, half width, edge, amplitude, (start, taper length).
        type Px = (f32, f32, f32, f32, Option<(f32, f32)>);
        let cs: Vec<Px> = self
            .curtains
            .iter()
            .map(|c| {
                let wp = c.width_nm / px;
                let st = c.start.map(|s| (s * fr.side, 2.0 * wp));
                (
                    c.offset_nm / px,
                    0.5 * wp,
                    (c.edge_nm / px).max(0.5),
                    c.amp,
                    st,
                )
            })
            .collect();
        Array2::from_shape_fn((h, w), |(i, j)| {
            let p = centre(i, j);
            let (al, ac) = (fr.along(p), fr.across(p));
            let mut f = 1.0;
            for &(o, hw, e, a, st) in &cs {
                let d = hw - (ac - o).abs();
                if d <= -0.5 * e {
                    continue;
                }
                let x = (d / e + 0.5).clamp(0.0, 1.0);
                let mut v = a * x * x * (3.0 - 2.0 * x);
                if let Some((s0, len)) = st {
                    v *= ((al - s0) / len).clamp(0.0, 1.0);
                }
                f += v;
            }
            f.clamp(0.3, 2.0)
        })
    }

    /// The thickness-contrast map of step 3 (units of std(S)), from the curtain factor; the
    /// image's `snr` sets the cap's darkness (below).
    pub fn shading(&self, curtain: &Array2<f32>, region_of: &[u8], snr: f32) -> Array2<f32> {
        let cap = -CAP_THICKNESS * self.gain / snr.sqrt().min(1.0);
        let (h, w) = curtain.dim();
        let fr = self.frame(h, w);
        Array2::from_shape_fn((h, w), |(i, j)| {
            match region_of[i * w + j] {
                region::OUTSIDE => return 0.0,
                region::CARBON => return cap,
                _ => {}
            }
            let d = (curtain[[i, j]] - 1.0) + self.wedge * fr.along(centre(i, j)) / fr.side;
            -self.gain * d
        })
    }

    /// Step 4: draw the protective cap, if any, on `cv` (`column`: the cytoplasm column's
    /// density per pixel, `RHO_CYTO x depth`).
    pub(crate) fn draw_cap(&self, rng: &mut ChaCha8Rng, cv: &mut Canvas, px: f32, column: f32) {
        let Some(q) = self.cap else {
            return;
        };
        let (h, w) = (cv.h, cv.w);
        let fr = self.frame(h, w);
        let half = 0.5 * (w as f32 * fr.m[0].abs() + h as f32 * fr.m[1].abs());
        let rough = rng.gen_range(5.0..20.0) / px;
        let corr = (rng.gen_range(20.0..80.0) / px).max(1.0);
        let rho = column * rng.gen_range(4.0..8.0);
        // Upstream of every mitochondrion pixel, with a margin.
        let margin = 10.0 / px + 3.0 * rough;
        let mut limit = f32::INFINITY;
        for i in 0..h {
            for j in 0..w {
                let k = i * w + j;
                if cv.membrane[k] != 0 || cv.region[k] == region::MITOCHONDRION {
                    limit = limit.min(fr.along(centre(i, j)) - margin);
                }
            }
        }
        let edge = (-half + 2.0 * half * q).min(limit);
        if edge < -half + 0.04 * half {
            return;
        }
        // The edge's roughness: a 1-D field across (one row, over the diagonal).
        let n_across = (((h * h + w * w) as f32).sqrt().ceil() as usize + 2).max(2);
        let wob = smooth_field_any(rng, 1, n_across, corr);
        let tex = smooth_field(rng, h, w, 1.0);
        for i in 0..h {
            for j in 0..w {
                let p = centre(i, j);
                let t = ((fr.across(p) + 0.5 * n_across as f32) as usize).min(n_across - 1);
                let f = cover(edge + rough * wob[[0, t]] - fr.along(p));
                if f > 0.0 {
                    let k = i * w + j;
                    let cap = rho * (1.0 + 0.3 * tex[[i, j]]).max(0.0);
                    cv.density[k] = (1.0 - f) * cv.density[k] + f * cap;
                    if f > 0.5 {
                        cv.region[k] = region::CARBON;
                    }
                }
            }
        }
    }
}

/// The milling frame of one image (module doc).
#[derive(Clone, Copy, Debug)]
pub struct MillFrame {
    c: P2,
    m: [f32; 2],
    side: f32,
}

impl MillFrame {
    fn along(&self, p: P2) -> f32 {
        (p[0] - self.c[0]) * self.m[0] + (p[1] - self.c[1]) * self.m[1]
    }
    fn across(&self, p: P2) -> f32 {
        -(p[0] - self.c[0]) * self.m[1] + (p[1] - self.c[1]) * self.m[0]
    }
}

/// Multiply the specimen's density (not the region beyond a lamella edge) by the curtain
/// factor (step 1).
pub(crate) fn apply_curtains(cv: &mut Canvas, curtain: &Array2<f32>) {
    for ((d, r), f) in cv.density.iter_mut().zip(&cv.region).zip(curtain.iter()) {
        if *r != region::OUTSIDE {
            *d *= f;
        }
    }
}
