//! The cellular content of a synthetic cryo-ET image, each element a small physical model.
//!
//! Density convention: every element adds *projected mass density* `D >= 0` (arbitrary units:
//! density contrast against vitreous ice times path length in pixels). High density is dark in
//! the final image (see [`super::form_image`]). A body is either **projected** through the
//! whole specimen (`dz = None`: the path length is a chord through the body, [`chord`]) or
//! **sectioned** by a one-pixel-thick tomogram slice at offset `dz` from its centre
//! (`dz = Some(..)`: the fraction of the slab inside the body, a disc of the body's
//! cross-section at that height).
//!
//! Relative densities per pixel of path (ice = 0): lipid membrane 1.0, ribosome 1.1 (rRNA),
//! cytoplasm 0.22 +- texture, mitochondrial matrix = cytoplasm + 0.05..0.12, dense-core
//! (insulin) granule core 0.35..0.8, crystalline ice contamination 1.5..2.5, carbon film 6.

use super::field::smooth_field;
use super::shape::{chord, Frame, Spine, Wobble, P2};
use super::{region, SynthConfig};
use ndarray::Array2;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::f32::consts::{PI, TAU};

/// Membrane (lipid bilayer) thickness, nm.
pub(crate) const MEMBRANE_NM: f32 = 4.0;
/// Gap between the outer and inner mitochondrial membranes (intermembrane space), nm.
pub(crate) const IMS_GAP_NM: f32 = 7.5;
/// Density of a lipid membrane per pixel of path.
pub(crate) const RHO_MEMBRANE: f32 = 2.0;
/// Ribosome density per pixel of path.
pub(crate) const RHO_RIBOSOME: f32 = 1.5;
/// Mean cytoplasm density per pixel of path.
pub(crate) const RHO_CYTO: f32 = 0.22;
/// Carbon film density per pixel of path (amorphous carbon, ~2 g/cm^3, strong amplitude contrast).
const RHO_CARBON: f32 = 6.0;
/// A pixel belongs to an object's drawn outer membrane when the membrane's projected path
/// length there exceeds this (pixels of path).
pub(crate) const MEMBRANE_EPS: f32 = 1e-3;

/// Render targets, all `h x w` row-major.
pub(crate) struct Canvas {
    pub h: usize,
    pub w: usize,
    /// Projected density `D`.
    pub density: Vec<f32>,
    /// Region code per pixel ([`region`]); mitochondria are drawn last and win.
    pub region: Vec<u8>,
    /// `k + 1` where mitochondrion `k`'s outer membrane is drawn (path > [`MEMBRANE_EPS`]).
    pub membrane: Vec<u8>,
    /// Fraction of the specimen thickness occupied by mitochondria (cytoplasm is displaced).
    pub occupancy: Vec<f32>,
}

impl Canvas {
    pub fn new(h: usize, w: usize) -> Self {
        Canvas {
            h,
            w,
            density: vec![0.0; h * w],
            region: vec![region::CYTOPLASM; h * w],
            membrane: vec![0; h * w],
            occupancy: vec![0.0; h * w],
        }
    }

    /// Pixel index range `(i0..i1, j0..j1)` covering the box `[x1, y1, x2, y2]`, clipped.
    pub(crate) fn span(
        &self,
        b: [f32; 4],
    ) -> Option<(std::ops::Range<usize>, std::ops::Range<usize>)> {
        let j0 = b[0].floor().max(0.0) as usize;
        let i0 = b[1].floor().max(0.0) as usize;
        let j1 = (b[2].ceil().max(0.0) as usize).min(self.w);
        let i1 = (b[3].ceil().max(0.0) as usize).min(self.h);
        (j0 < j1 && i0 < i1).then_some((i0..i1, j0..j1))
    }

    /// [`Canvas::span`] of `b` grown by `m1` and then `m2` on every side (`b[0] - m1 - m2`, ...:
    /// two terms, so that a caller's `x - r - 1.0` keeps its rounding).
    pub(crate) fn span_grown(
        &self,
        b: [f32; 4],
        m1: f32,
        m2: f32,
    ) -> Option<(std::ops::Range<usize>, std::ops::Range<usize>)> {
        self.span([
            b[0] - m1 - m2,
            b[1] - m1 - m2,
            b[2] + m1 + m2,
            b[3] + m1 + m2,
        ])
    }

    pub(crate) fn set_region(&mut self, k: usize, code: u8) {
        if self.region[k] != region::MITOCHONDRION {
            self.region[k] = code;
        }
    }
}

/// Calls `f(cv, pixel index, distance)` for every pixel of `cv` closer than `a + 1` to `spine`
/// (a tube of half-width `a` and its anti-aliasing pixel), row by row.
pub(crate) fn near_spine(
    cv: &mut Canvas,
    spine: &Spine,
    a: f32,
    mut f: impl FnMut(&mut Canvas, usize, f32),
) {
    let Some((ri, rj)) = cv.span_grown(spine.bbox(), a, 1.0) else {
        return;
    };
    for i in ri {
        for j in rj.clone() {
            let d = spine.frame(centre(i, j)).dist;
            if d < a + 1.0 {
                let idx = i * cv.w + j;
                f(cv, idx, d);
            }
        }
    }
}

/// Pixel centre of `(row i, col j)`.
#[inline]
pub(crate) fn centre(i: usize, j: usize) -> P2 {
    [j as f32 + 0.5, i as f32 + 0.5]
}

/// Fraction of a pixel inside a boundary at signed distance `x` (positive inside).
#[inline]
pub(crate) fn cover(x: f32) -> f32 {
    (x + 0.5).clamp(0.0, 1.0)
}

/// Path length inside an ellipsoidal body (in-plane semi-axis `a`, beam semi-axis `c`) at
/// in-plane distance `rho`: projected (`dz = None`: [`chord`]) or sectioned at height `dz`
/// (the disc of radius `a sqrt(1 - (dz/c)^2)`, anti-aliased over one pixel).
#[inline]
pub(crate) fn body(rho: f32, a: f32, c: f32, dz: Option<f32>) -> f32 {
    match dz {
        None => chord(rho, a, c),
        Some(dz) => {
            if a <= 0.0 || c <= 0.0 {
                return 0.0;
            }
            let q = 1.0 - (dz / c) * (dz / c);
            if q <= 0.0 {
                0.0
            } else {
                cover(a * q.sqrt() - rho)
            }
        }
    }
}

/// A shell of thickness `t`: `body(a, c) - body(a - t, c - t)`. Projected, a membrane shell
/// covers the whole footprint (the beam crosses its top and bottom) and peaks at `rho = a - t`,
/// where the beam runs tangentially through it: the dark rim of membranes in cryo-EM
/// projections. Sectioned: a ring that thickens towards the poles (grazing cut).
#[inline]
pub(crate) fn shell_body(rho: f32, a: f32, c: f32, t: f32, dz: Option<f32>) -> f32 {
    (body(rho, a, c, dz) - body(rho, a - t, c - t, dz)).max(0.0)
}

/// One crista: a lamellar fold of the inner membrane, seen edge-on as a pair of dark lines
/// (the two membranes of the fold, `gap` apart) that starts at the inner boundary membrane on
/// side `side` (+-1) and reaches a fraction `reach` of the matrix width towards the other side.
/// In the spine frame its centre line is `u = u0 + tan(tilt) v + bend v^2 / a`.
#[derive(Clone, Debug)]
pub(crate) struct Crista {
    pub u0: f32,
    pub tilt: f32,
    pub bend: f32,
    pub side: f32,
    pub reach: f32,
    pub gap: f32,
    /// Projected: the fraction of the matrix chord the sheet spans along the beam (tilted or
    /// partial sheets project weaker than an edge-on full sheet).
    pub strength: f32,
}

/// A mitochondrion: a tube (round: short spine; elongated: a long bent spine) with an
/// ellipsoidal cross-section (in-plane semi-axis `a`, beam semi-axis `c <= a`: flattened by the
/// thin cell periphery), bounded by the outer membrane (thickness `t`), an intermembrane gap,
/// the inner membrane, and the matrix (density `RHO_CYTO + d_matrix`, granular texture)
/// folded by cristae; a few dense matrix granules (calcium phosphate, 10-20 nm).
#[derive(Clone, Debug)]
pub(crate) struct Mito {
    pub spine: Spine,
    pub a: f32,
    pub c: f32,
    pub t: f32,
    pub gap: f32,
    pub wob: Wobble,
    pub d_matrix: f32,
    pub cristae: Vec<Crista>,
    /// `(u, v_fraction, radius)` of dense matrix granules in the spine frame.
    pub granules: Vec<(f32, f32, f32)>,
    /// Centre height in a volume (pixels); unused for projections.
    pub zc: f32,
    /// Membrane density per pixel of path ([`RHO_MEMBRANE`] in the classic generator).
    pub rho_mem: f32,
    /// Bilayer profile: fraction of the membrane density missing in the core between the two
    /// leaflets (each 0.35 of the thickness); 0 draws a uniform dark line (classic).
    pub leaflet_core: f32,
    /// Matrix texture amplitude (classic 0.35).
    pub tex_amp: f32,
    /// Density of the matrix granules (classic 1.4).
    pub granule_rho: f32,
    /// `(u, v_fraction, radius)` of ring-shaped cristae (tubules seen end-on, vesicular
    /// cristae) in the spine frame.
    pub rings: Vec<(f32, f32, f32)>,
    /// Constriction (dumbbell): the radius is scaled by `1 - depth exp(-((u - u0) / width)^2)`.
    pub pinch: Option<(f32, f32, f32)>,
    /// Cup: the radius is scaled by `1 - depth exp(-(dtheta / width)^2)` around polar angle
    /// `theta0` (an indentation seen as a crescent).
    pub dent: Option<(f32, f32, f32)>,
    /// A side branch: a second tube (same cross-section) whose arc length continues after
    /// the main spine's (`u + branch_u0`).
    pub branch: Option<(Spine, f32)>,
    /// Region code written under the body ([`region::MITOCHONDRION`]; other double-membrane
    /// organelles reuse this model with their own code and label 0).
    pub code: u8,
}

impl Mito {
    /// The vertices of the spine and of the branch.
    pub fn all_pts(&self) -> impl Iterator<Item = &P2> {
        self.spine
            .pts
            .iter()
            .chain(self.branch.iter().flat_map(|(b, _)| b.pts.iter()))
    }

    /// Largest in-plane distance of the outer membrane from the spine.
    pub fn reach(&self) -> f32 {
        self.a * (1.0 + self.wob.max_amp())
    }

    /// Conservative box `[x1, y1, x2, y2]` of the whole body.
    pub fn bounds(&self) -> [f32; 4] {
        let mut b = self.spine.bbox();
        if let Some((br, _)) = &self.branch {
            let c = br.bbox();
            b = [
                b[0].min(c[0]),
                b[1].min(c[1]),
                b[2].max(c[2]),
                b[3].max(c[3]),
            ];
        }
        let r = self.reach() + 1.5;
        [b[0] - r, b[1] - r, b[2] + r, b[3] + r]
    }

    /// Draw into `cv` with label `label` (= index + 1). `dz`: see [`body`]. `tex`: a unit-variance
    /// texture field (`h x w`) modulating the matrix density.
    pub fn render(&self, cv: &mut Canvas, label: u8, dz: Option<f32>, tex: &[f32]) {
        let Some((ri, rj)) = cv.span(self.bounds()) else {
            return;
        };
        let (a, c, t, gap) = (self.a, self.c, self.t, self.gap);
        let (ai, ci) = (a - t - gap, c - t - gap); // inner membrane
        let (am, cm) = (ai - t, ci - t); // matrix
        let mid = self.spine.mid();
        let crista_k = if dz.is_none() { 1.0 } else { 0.0 };
        let crista_trig: Vec<(f32, f32)> = self
            .cristae
            .iter()
            .map(|cr| (cr.tilt.tan(), cr.tilt.cos()))
            .collect();
        for i in ri {
            for j in rj.clone() {
                let p = centre(i, j);
                let mut f = self.spine.frame(p);
                if let Some((br, u0)) = &self.branch {
                    let g = br.frame(p);
                    if g.dist < f.dist {
                        f = Frame { u: g.u + u0, ..g };
                    }
                }
                let theta = (p[1] - mid[1]).atan2(p[0] - mid[0]);
                let mut k = self.wob.factor(theta, f.u);
                if let Some((u0, width, depth)) = self.pinch {
                    k *= 1.0 - depth * (-((f.u - u0) / width).powi(2)).exp();
                }
                if let Some((t0, width, depth)) = self.dent {
                    let dt = (theta - t0 + PI).rem_euclid(TAU) - PI;
                    k *= 1.0 - depth * (-(dt / width).powi(2)).exp();
                }
                let rho = f.dist / k;
                if rho >= a + 1.0 {
                    continue;
                }
                let outer = shell_body(rho, a, c, t, dz);
                let inner = shell_body(rho, ai, ci, t, dz);
                let mat = body(rho, am, cm, dz);
                let idx = i * cv.w + j;
                let mut d = self.rho_mem * (outer + inner);
                if self.leaflet_core > 0.0 {
                    let tl = 0.35 * t;
                    let core = shell_body(rho, a - tl, c - tl, t - 2.0 * tl, dz)
                        + shell_body(rho, ai - tl, ci - tl, t - 2.0 * tl, dz);
                    d -= self.leaflet_core * self.rho_mem * core;
                }
                if mat > 0.0 {
                    d += (RHO_CYTO + self.d_matrix) * mat * (1.0 + self.tex_amp * tex[idx]);
                    let v = f.v / k;
                    for (cr, &(tan_t, cos_t)) in self.cristae.iter().zip(&crista_trig) {
                        // Distance to the crista's centre line (shaft), rounded at the tip.
                        let s = cr.side * v; // towards the attached side: am .. am (1 - 2 reach)
                        let s_tip = am * (1.0 - 2.0 * cr.reach);
                        let delta = f.u - (cr.u0 + tan_t * v + cr.bend * v * v / a);
                        let shaft = delta.abs() * cos_t;
                        let dc = if s < s_tip {
                            (shaft * shaft + (s_tip - s) * (s_tip - s)).sqrt()
                        } else {
                            shaft
                        };
                        let x = dc - cr.gap * 0.5;
                        if x.abs() < 3.0 * t {
                            let g = (-x * x / (0.5 * t * t)).exp();
                            let strength = crista_k * cr.strength + (1.0 - crista_k) * 0.8;
                            d += self.rho_mem * strength * mat * g;
                        }
                    }
                    for &(ru, rv, rr) in &self.rings {
                        let (du, dv) = (f.u - ru, v - rv * am);
                        let x = (du * du + dv * dv).sqrt() - rr;
                        if x.abs() < 3.0 * t {
                            d += self.rho_mem * 0.7 * mat.min(1.0) * (-x * x / (0.5 * t * t)).exp();
                        }
                    }
                    for &(gu, gv, gr) in &self.granules {
                        let du = f.u - gu;
                        let dv = v - gv * am;
                        let r2 = (du * du + dv * dv).sqrt();
                        d += self.granule_rho * body(r2, gr, gr, dz.map(|_| 0.0));
                    }
                }
                cv.density[idx] += d;
                if outer > MEMBRANE_EPS && label > 0 {
                    cv.membrane[idx] = label;
                }
                if body(rho, a, c, dz) > 0.5 {
                    if self.code == region::MITOCHONDRION {
                        cv.region[idx] = region::MITOCHONDRION;
                    } else {
                        cv.set_region(idx, self.code);
                    }
                }
                let occ = match dz {
                    None => chord(rho, a, c),
                    Some(_) => body(rho, a, c, dz),
                };
                cv.occupancy[idx] = cv.occupancy[idx].max(occ);
            }
        }
    }
}

/// Sample one mitochondrion's shape (not its position: `centre`), sizes in pixels.
/// Round (45 %): `a` 90-190 nm, a short spine (0-0.5 a, slightly oval). Elongated: `a` 65-130 nm,
/// The spine of an elongated body of half-width `a`: `(a, length, k0, k1, wobble)`, length
/// `a * U(1.5, len_max)`, curvature `k0 + k1 s` with `|k0| < 1 / length`, `|k1| < 1.5 / length`, and
/// a width wobble of 6 % at a wavelength of 2-4 `a` (drawn in this order).
pub(crate) fn elongated(
    rng: &mut ChaCha8Rng,
    a: f32,
    len_max: f32,
) -> (f32, f32, f32, f32, Wobble) {
    let len = a * rng.gen_range(1.5..len_max);
    let k0 = rng.gen_range(-1.0..1.0) / len;
    let k1 = rng.gen_range(-1.5..1.5) / len;
    let lambda = rng.gen_range(2.0..4.0) * a;
    (a, len, k0, k1, Wobble::random(rng, 0.0, 0.06, lambda))
}

/// spine 1.5-6 a, bent (constant + sinusoidal curvature), like the slanted strips of Fig. 7.
pub(crate) fn sample_mito(
    rng: &mut ChaCha8Rng,
    centre: P2,
    px_nm: f32,
    c_max: f32,
    scale: f32,
) -> Mito {
    let nm = |x: f32| x / px_nm;
    let round = rng.gen_bool(0.45);
    let theta = rng.gen_range(0.0..TAU);
    let (a, len, k0, k1, wob) = if round {
        let a = nm(rng.gen_range(90.0..190.0)) * scale;
        let len = a * rng.gen_range(0.05..0.5);
        (a, len, 0.0, 0.0, Wobble::random(rng, 0.07, 0.0, 1.0))
    } else {
        let a = nm(rng.gen_range(65.0..130.0)) * scale;
        elongated(rng, a, 6.0)
    };
    let spine = Spine::curved(centre, len.max(0.5), theta, k0, k1, 24);
    let t = nm(MEMBRANE_NM).max(1.0);
    let gap = nm(IMS_GAP_NM).max(1.0);
    let c = a.min(c_max);
    let am = a - 3.0 * t - gap;
    // Cristae: lamellar, roughly perpendicular to the long axis, spaced 25-60 nm.
    let mut cristae = Vec::new();
    let spacing = nm(rng.gen_range(25.0..60.0)).max(3.0 * t);
    let mut u = -am + rng.gen_range(0.0..spacing);
    let main_tilt = rng.gen_range(-0.35..0.35);
    while u < spine.len() + am {
        if rng.gen_bool(0.85) {
            cristae.push(Crista {
                u0: u,
                tilt: main_tilt + rng.gen_range(-0.25..0.25),
                bend: rng.gen_range(-0.3..0.3),
                side: if rng.gen_bool(0.5) { 1.0 } else { -1.0 },
                reach: rng.gen_range(0.3..0.95),
                gap: nm(rng.gen_range(8.0..16.0)),
                strength: rng.gen_range(0.08..0.3),
            });
        }
        u += spacing * rng.gen_range(0.7..1.3);
    }
    let granules = (0..rng.gen_range(0..4))
        .map(|_| {
            (
                rng.gen_range(0.0..spine.len().max(1.0)),
                rng.gen_range(-0.7..0.7),
                nm(rng.gen_range(5.0..10.0)),
            )
        })
        .collect();
    Mito {
        spine,
        a,
        c,
        t,
        gap,
        wob,
        d_matrix: rng.gen_range(0.05..0.12),
        cristae,
        granules,
        zc: 0.0,
        rho_mem: RHO_MEMBRANE,
        leaflet_core: 0.0,
        tex_amp: 0.35,
        granule_rho: 1.4,
        rings: Vec::new(),
        pinch: None,
        dent: None,
        branch: None,
        code: region::MITOCHONDRION,
    }
}

/// Place `n` non-overlapping mitochondria in an `h x w` image. Each is complete (fully inside
/// with a 3-pixel margin) or, with probability `p_incomplete`, cut by the border (its
/// conservative box crosses the border and 40-85 % of that box lies inside). Overlap test:
/// spine vertices of two bodies farther apart than the sum of their reaches plus 4 pixels.
/// Sizes shrink by 10 % after every 40 failed tries, so crowded images still get `n` bodies.
pub(crate) fn place_mitos(
    rng: &mut ChaCha8Rng,
    h: usize,
    w: usize,
    n: usize,
    px_nm: f32,
    c_max: f32,
    p_incomplete: f32,
) -> Vec<Mito> {
    place_mitos_with(rng, h, w, n, p_incomplete, false, |rng, centre, scale| {
        sample_mito(rng, centre, px_nm, c_max, scale)
    })
}

/// [`place_mitos`] with any shape sampler `sample(rng, centre, scale)`. With `allow_huge`, a
/// body too large to fit (its reach exceeds 40 % of the shorter side) is accepted whenever its
/// spine's midpoint lies in the image: it is then cut by the border (larger than the field of
/// view). Sizes do not shrink for huge bodies' sake when `allow_huge` (only after failures).
pub(crate) fn place_mitos_with(
    rng: &mut ChaCha8Rng,
    h: usize,
    w: usize,
    n: usize,
    p_incomplete: f32,
    allow_huge: bool,
    mut sample: impl FnMut(&mut ChaCha8Rng, P2, f32) -> Mito,
) -> Vec<Mito> {
    let (hf, wf) = (h as f32, w as f32);
    let mut out: Vec<Mito> = Vec::new();
    let mut scale = 1.0f32;
    let mut tries = 0usize;
    while out.len() < n && tries < 2000 {
        tries += 1;
        if tries.is_multiple_of(40) {
            scale *= 0.9;
        }
        let want_cut = rng.gen_bool(p_incomplete as f64);
        let centre = [rng.gen_range(0.0..wf), rng.gen_range(0.0..hf)];
        let m = sample(rng, centre, scale);
        let b = m.bounds();
        let margin = 3.0;
        let inside = b[0] >= margin && b[1] >= margin && b[2] <= wf - margin && b[3] <= hf - margin;
        let huge = allow_huge && m.reach() * 2.0 >= 0.8 * wf.min(hf);
        let ok_pos = if huge && !inside {
            let c = m.spine.mid();
            (0.0..wf).contains(&c[0]) && (0.0..hf).contains(&c[1])
        } else if want_cut {
            let ix = (b[2].min(wf) - b[0].max(0.0)).max(0.0);
            let iy = (b[3].min(hf) - b[1].max(0.0)).max(0.0);
            let frac = ix * iy / ((b[2] - b[0]) * (b[3] - b[1]));
            !inside && (0.4..=0.85).contains(&frac) && m.reach() * 2.0 < wf.min(hf)
        } else {
            inside
        };
        if !ok_pos {
            continue;
        }
        let clear = out.iter().all(|o| {
            let lim = o.reach() + m.reach() + 4.0;
            o.all_pts().all(|p| {
                m.all_pts()
                    .all(|q| (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2) > lim * lim)
            })
        });
        if clear {
            out.push(m);
        }
    }
    out
}

/// A vesicle: a spherical (slightly oval in plane) single-membrane compartment of radius `r`.
/// Clear vesicles (radius 20-70 nm, log-uniform) have a lumen lighter or slightly denser than cytoplasm;
/// dense-core (insulin secretory) granules of INS-1E beta cells (radius 110-170 nm) carry a dense
/// crystalline core (55-80 % of the radius) inside a light halo. Both overlap the mitochondria's
/// brightness range and size range, so brightness alone cannot tell them apart.
#[derive(Clone, Debug)]
pub(crate) struct Vesicle {
    pub centre: P2,
    pub r: f32,
    pub c: f32,
    pub t: f32,
    pub aspect: f32,
    pub angle: f32,
    pub lumen: f32,
    pub core: Option<(f32, f32)>,
    pub zc: f32,
    /// Membrane density per px of path ([`RHO_MEMBRANE`] in the classic generator).
    pub rho: f32,
}

impl Vesicle {
    pub fn sample(rng: &mut ChaCha8Rng, centre: P2, px_nm: f32, dense: bool, c_max: f32) -> Self {
        let nm = |x: f32| x / px_nm;
        let r = if dense {
            nm(rng.gen_range(110.0..170.0))
        } else {
            nm((rng.gen_range(20f32.ln()..70f32.ln())).exp())
        };
        let core = dense.then(|| (r * rng.gen_range(0.55..0.8), rng.gen_range(0.2..0.45)));
        Vesicle {
            centre,
            r,
            c: r.min(c_max),
            t: nm(MEMBRANE_NM).max(1.0),
            aspect: rng.gen_range(1.0..1.3),
            angle: rng.gen_range(0.0..PI),
            lumen: if dense {
                0.0
            } else {
                rng.gen_range(-0.08..0.06)
            },
            core,
            zc: 0.0,
            rho: RHO_MEMBRANE,
        }
    }

    pub fn render(&self, cv: &mut Canvas, dz: Option<f32>) {
        let rr = self.r * self.aspect + 1.0;
        let o = self.centre;
        let Some((ri, rj)) = cv.span_grown([o[0], o[1], o[0], o[1]], rr, 0.0) else {
            return;
        };
        let (s, co) = self.angle.sin_cos();
        let code = if self.core.is_some() {
            region::DENSE_GRANULE
        } else {
            region::VESICLE
        };
        for i in ri {
            for j in rj.clone() {
                let p = centre(i, j);
                let (dx, dy) = (p[0] - self.centre[0], p[1] - self.centre[1]);
                let (x, y) = (co * dx + s * dy, (-s * dx + co * dy) / self.aspect);
                let rho = (x * x + y * y).sqrt();
                if rho >= self.r + 1.0 {
                    continue;
                }
                let idx = i * cv.w + j;
                let mut d = self.rho * shell_body(rho, self.r, self.c, self.t, dz)
                    + self.lumen * body(rho, self.r - self.t, self.c - self.t, dz);
                if let Some((rc, dc)) = self.core {
                    d += dc * body(rho, rc, rc.min(self.c), dz);
                }
                cv.density[idx] += d;
                if body(rho, self.r, self.c, dz) > 0.5 {
                    cv.set_region(idx, code);
                }
            }
        }
    }
}

/// A ribosome: a dense sphere of diameter 25-30 nm (rRNA-rich, the darkest small particle).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ribosome {
    pub centre: P2,
    pub r: f32,
    pub rho: f32,
    pub zc: f32,
}

impl Ribosome {
    pub fn render(&self, cv: &mut Canvas, dz: Option<f32>) {
        let rr = self.r + 1.0;
        let o = self.centre;
        let Some((ri, rj)) = cv.span_grown([o[0], o[1], o[0], o[1]], rr, 0.0) else {
            return;
        };
        for i in ri {
            for j in rj.clone() {
                let p = centre(i, j);
                let rho =
                    ((p[0] - self.centre[0]).powi(2) + (p[1] - self.centre[1]).powi(2)).sqrt();
                cv.density[i * cv.w + j] += self.rho * body(rho, self.r, self.r, dz);
            }
        }
    }
}

/// Ribosomes: `count` particles, 30 % of them in polysome chains (3-8 ribosomes 28-36 nm apart
/// along a random walk). A particle is kept with probability `1 - occupancy
/// / thickness` there (mitochondria displace cytoplasm along the beam).
pub(crate) fn sample_ribosomes(
    rng: &mut ChaCha8Rng,
    cv: &Canvas,
    count: usize,
    px_nm: f32,
    thickness: f32,
) -> Vec<Ribosome> {
    let nm = |x: f32| x / px_nm;
    let (wf, hf) = (cv.w as f32, cv.h as f32);
    let mut out = Vec::with_capacity(count);
    let new_rib = |rng: &mut ChaCha8Rng, p: P2| Ribosome {
        centre: p,
        r: nm(rng.gen_range(12.5..15.0)),
        rho: RHO_RIBOSOME * rng.gen_range(0.8..1.1),
        zc: 0.0,
    };
    while out.len() < count {
        let mut p = [rng.gen_range(0.0..wf), rng.gen_range(0.0..hf)];
        let chain = if rng.gen_bool(0.3) {
            rng.gen_range(3..9)
        } else {
            1
        };
        let mut dir = rng.gen_range(0.0..TAU);
        for _ in 0..chain {
            let (i, j) = (p[1].floor() as isize, p[0].floor() as isize);
            let occ = if i >= 0 && j >= 0 && (i as usize) < cv.h && (j as usize) < cv.w {
                cv.occupancy[i as usize * cv.w + j as usize]
            } else {
                0.0
            };
            if rng.gen_range(0.0..1.0) >= occ / thickness {
                out.push(new_rib(rng, p));
            }
            dir += rng.gen_range(-0.8..0.8);
            let step = nm(rng.gen_range(28.0..36.0));
            p = [p[0] + step * dir.cos(), p[1] + step * dir.sin()];
        }
    }
    out.truncate(count);
    out
}

/// A microtubule: a hollow protein cylinder of outer diameter 25 nm and wall 5 nm lying in the
/// specimen plane, straight over the field; projected it shows two parallel dark walls.
pub(crate) fn render_microtubule(cv: &mut Canvas, p0: P2, dir: f32, px_nm: f32) {
    let r = 12.5 / px_nm;
    let t = (5.0 / px_nm).max(0.8);
    let (s, c) = dir.sin_cos();
    for i in 0..cv.h {
        for j in 0..cv.w {
            let p = centre(i, j);
            let d = ((p[0] - p0[0]) * -s + (p[1] - p0[1]) * c).abs();
            if d < r + 1.0 {
                let idx = i * cv.w + j;
                cv.density[idx] += 0.9 * shell_body(d, r, r, t, None);
                if d < r {
                    cv.set_region(idx, region::MICROTUBULE);
                }
            }
        }
    }
}

/// An ER sheet seen edge-on: a flattened tube along a curved spine, lumen 30-50 nm wide, sheet
/// extent along the beam 40-120 nm; projected, two parallel dark membranes joined at the ends
/// (a pair of parallel curves), lumen slightly denser than cytoplasm. Rough ER carries
/// ribosomes on its cytosolic face (returned for the caller to draw).
pub(crate) fn render_er(rng: &mut ChaCha8Rng, cv: &mut Canvas, px_nm: f32) -> Vec<Ribosome> {
    let nm = |x: f32| x / px_nm;
    let (wf, hf) = (cv.w as f32, cv.h as f32);
    let len = nm(rng.gen_range(200.0..700.0));
    let spine = Spine::curved(
        [rng.gen_range(0.0..wf), rng.gen_range(0.0..hf)],
        len,
        rng.gen_range(0.0..TAU),
        rng.gen_range(-2.0..2.0) / len,
        rng.gen_range(-4.0..4.0) / len,
        32,
    );
    let t = nm(MEMBRANE_NM).max(1.0);
    let a = nm(rng.gen_range(15.0..25.0)) + t;
    let c = nm(rng.gen_range(20.0..60.0));
    let lumen = rng.gen_range(0.0..0.1);
    near_spine(cv, &spine, a, |cv, idx, d| {
        cv.density[idx] +=
            RHO_MEMBRANE * shell_body(d, a, c, t, None) + lumen * chord(d, a - t, c - t);
        if d < a {
            cv.set_region(idx, region::ER);
        }
    });
    if rng.gen_bool(0.6) {
        rough_er_ribosomes(rng, &spine, a, px_nm)
    } else {
        Vec::new()
    }
}

/// Ribosomes on rough ER: spheres of radius 12.5-15 nm touching the membrane (outer half-width
/// `a` px) on a random side, every 30-70 nm along `spine`, the first within 40 nm of its start.
pub(crate) fn rough_er_ribosomes(
    rng: &mut ChaCha8Rng,
    spine: &Spine,
    a: f32,
    px_nm: f32,
) -> Vec<Ribosome> {
    let nm = |x: f32| x / px_nm;
    let mut ribs = Vec::new();
    let mut s = rng.gen_range(0.0..nm(40.0));
    while s < spine.len() {
        let p = spine.point_at(s);
        let q = spine.point_at(s + 1.0);
        let (tx, ty) = (q[0] - p[0], q[1] - p[1]);
        let l = (tx * tx + ty * ty).sqrt().max(1e-6);
        let side = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
        let r = nm(rng.gen_range(12.5..15.0));
        let off = a + r + 0.5;
        ribs.push(Ribosome {
            centre: [p[0] - side * ty / l * off, p[1] + side * tx / l * off],
            r,
            rho: RHO_RIBOSOME * rng.gen_range(0.8..1.1),
            zc: 0.0,
        });
        s += nm(rng.gen_range(30.0..70.0));
    }
    ribs
}

/// Ice contamination: a crystalline ice chunk on the specimen surface, 30-150 nm in radius,
/// irregular outline (polar wobble up to 30 %), as thick as 0.6-1x its width and denser than vitreous
/// ice (diffraction contrast): a very dark blob with a sharp edge.
pub(crate) fn render_ice(rng: &mut ChaCha8Rng, cv: &mut Canvas, px_nm: f32) {
    let r = rng.gen_range(30.0..150.0) / px_nm;
    let cx = [
        rng.gen_range(0.0..cv.w as f32),
        rng.gen_range(0.0..cv.h as f32),
    ];
    let wob = Wobble::random(rng, 0.3, 0.0, 1.0);
    let c = r * rng.gen_range(0.6..1.0);
    let rho_ice = rng.gen_range(1.5..2.5);
    let rr = r * (1.0 + wob.max_amp()) + 1.0;
    if let Some((ri, rj)) = cv.span_grown([cx[0], cx[1], cx[0], cx[1]], rr, 0.0) {
        for i in ri {
            for j in rj.clone() {
                let p = centre(i, j);
                let (dx, dy) = (p[0] - cx[0], p[1] - cx[1]);
                let rho = (dx * dx + dy * dy).sqrt() / wob.factor(dy.atan2(dx), 0.0);
                if rho < r + 1.0 {
                    let idx = i * cv.w + j;
                    // A flat-topped chunk: chord^0.5 scaled keeps the centre from dominating.
                    let l = chord(rho, r, c);
                    cv.density[idx] += rho_ice * (l * 2.0 * c).sqrt() * cover(r - rho).max(0.0);
                    if rho < r {
                        cv.set_region(idx, region::ICE);
                    }
                }
            }
        }
    }
}

/// A carbon-film edge: the imaged area lies in a Quantifoil hole (R2/1 or R2/2: radius 1 µm);
/// the film beyond the rim is ~20 nm of amorphous carbon (dense, with a fine texture), its edge a
/// circular arc of the hole's radius that looks almost straight over a 1 µm field. The carbon
/// covers 8-35 % of the image measured along the normal through the centre.
pub(crate) fn render_carbon(rng: &mut ChaCha8Rng, cv: &mut Canvas, px_nm: f32) {
    let (wf, hf) = (cv.w as f32, cv.h as f32);
    let r_hole = 1000.0 / px_nm;
    let ang = rng.gen_range(0.0..TAU);
    let n = [ang.cos(), ang.sin()];
    let half = 0.5 * (wf * n[0].abs() + hf * n[1].abs());
    let edge = half * (1.0 - 2.0 * rng.gen_range(0.08..0.35)); // edge distance from the centre
                                                               // Hole centre: behind the edge, opposite the carbon.
    let hc = [
        wf * 0.5 + n[0] * (edge - r_hole),
        hf * 0.5 + n[1] * (edge - r_hole),
    ];
    let thick = rng.gen_range(15.0..25.0) / px_nm;
    let tex = smooth_field(rng, cv.h, cv.w, 1.0);
    for i in 0..cv.h {
        for j in 0..cv.w {
            let p = centre(i, j);
            let dist = ((p[0] - hc[0]).powi(2) + (p[1] - hc[1]).powi(2)).sqrt() - r_hole;
            let f = cover(dist);
            if f > 0.0 {
                let idx = i * cv.w + j;
                cv.density[idx] += RHO_CARBON * thick * f * (1.0 + 0.15 * tex[[i, j]]);
                if f > 0.5 {
                    cv.set_region(idx, region::CARBON);
                }
            }
        }
    }
}

/// Cytoplasm: a crowded protein solution of thickness `T(x, y)` (a linear ramp: the cell thins
/// towards its periphery, `T = T0 (1 + g . (p - centre) / size)`) and mean density [`RHO_CYTO`],
/// textured by two correlated random fields (correlation 1.5 and 6 px: protein complexes and
/// their clustering), displaced where mitochondria occupy the thickness.
pub(crate) fn render_cytoplasm(
    rng: &mut ChaCha8Rng,
    cv: &mut Canvas,
    thickness: f32,
    gradient: [f32; 2],
    fine: &Array2<f32>,
) {
    let coarse = smooth_field(rng, cv.h, cv.w, 6.0);
    let (wf, hf) = (cv.w as f32, cv.h as f32);
    let size = wf.max(hf);
    for i in 0..cv.h {
        for j in 0..cv.w {
            let p = centre(i, j);
            let tl = thickness
                * (1.0
                    + gradient[0] * (p[0] - wf * 0.5) / size
                    + gradient[1] * (p[1] - hf * 0.5) / size);
            let idx = i * cv.w + j;
            let free = (tl - cv.occupancy[idx]).max(0.0);
            let tex = 1.0 + 0.3 * fine[[i, j]] + 0.15 * coarse[[i, j]];
            cv.density[idx] += RHO_CYTO * free * tex.max(0.0);
        }
    }
}

/// All the shapes of a projection image, drawn in order: mitochondria (they set the occupancy),
/// dense-core granules and vesicles, ER, microtubules, ribosomes, cytoplasm, ice, carbon.
/// Returns the canvas and the mitochondria (index k has membrane label k + 1).
pub(crate) fn project_scene(cfg: &SynthConfig, rng: &mut ChaCha8Rng) -> (Canvas, Vec<Mito>) {
    let (h, w) = cfg.size;
    let px = cfg.pixel_nm;
    let mut cv = Canvas::new(h, w);
    let thickness = rng.gen_range(180.0..300.0) / px; // specimen (cell) thickness, pixels
    let c_max = 0.5 * thickness * rng.gen_range(0.75..0.95);
    let n = rng.gen_range(cfg.n_mito.0..=cfg.n_mito.1);
    let mitos = place_mitos(rng, h, w, n, px, c_max, cfg.p_incomplete);
    let fine = smooth_field(rng, h, w, 1.5);
    let fine_s = fine.as_slice().expect("standard layout");
    for (k, m) in mitos.iter().enumerate() {
        m.render(&mut cv, (k + 1) as u8, None, fine_s);
    }
    let area_um2 = (h as f32 * px / 1000.0) * (w as f32 * px / 1000.0);
    let place = |rng: &mut ChaCha8Rng| [rng.gen_range(0.0..w as f32), rng.gen_range(0.0..h as f32)];
    // Dense-core granules: 0-2.5 per µm^2; clear vesicles 2-8 per µm^2.
    let n_dense = (rng.gen_range(0.0..2.5) * area_um2).round() as usize;
    let n_clear = (rng.gen_range(2.0..8.0) * area_um2).round() as usize;
    for k in 0..n_dense + n_clear {
        let p = place(rng);
        let v = Vesicle::sample(rng, p, px, k < n_dense, c_max);
        v.render(&mut cv, None);
    }
    let mut ribs = Vec::new();
    for _ in 0..rng.gen_range(0..3) {
        ribs.extend(render_er(rng, &mut cv, px));
    }
    for _ in 0..rng.gen_range(0..3) {
        let p = place(rng);
        render_microtubule(&mut cv, p, rng.gen_range(0.0..PI), px);
    }
    // Ribosomes: 1500-4000 per µm^3 of cytoplasm.
    let vol_um3 = area_um2 * thickness * px / 1000.0;
    let n_rib = (rng.gen_range(1500.0..4000.0) * vol_um3) as usize;
    ribs.extend(sample_ribosomes(rng, &cv, n_rib, px, thickness));
    for r in &ribs {
        r.render(&mut cv, None);
    }
    let g = [rng.gen_range(-0.5..0.5), rng.gen_range(-0.5..0.5)];
    render_cytoplasm(rng, &mut cv, thickness, g, &fine);
    if rng.gen_bool(0.35) {
        for _ in 0..rng.gen_range(1..3) {
            render_ice(rng, &mut cv, px);
        }
    }
    if rng.gen_bool(0.3) {
        render_carbon(rng, &mut cv, px);
    }
    (cv, mitos)
}
