//! Randomized mitochondria: one body drawn from an image's [`MitoStyle`] (shape, size,
//! membranes, cristae, matrix, granules), rendered by the shared model of
//! [`super::scene::Mito`].
//!
//! Shapes (`MitoStyle::shape_w`):
//! - **round**: short spine (0-0.5 a), slightly oval, polar wobble up to 7 %;
//! - **elongated**: spine 1.5-8 a (up to ~3 µm), bent (constant + sinusoidal curvature);
//! - **branched**: an elongated body with a side tube leaving its middle at 35-80 degrees,
//!   length 1-3 a, same cross-section;
//! - **constricted** (dumbbell, dividing): elongated, the radius pinched by 35-65 % over
//!   0.3-0.6 a around the middle;
//! - **cup**: round with an indentation of depth 35-60 % over +-0.5-0.9 rad (a crescent);
//! - **huge**: semi-axis 0.6-1.2x the field's half-width, elongated: larger than the field of
//!   view, always cut by the border.
//!
//! Cristae (`MitoStyle::cristae_w`), spacing and geometry in nm:
//! - **lamellar**: sheets across the matrix, spacing 25-60 nm, near-parallel (tilt +-0.08 rad
//!   around a common direction, bend +-0.12: neighbours do not cross);
//! - **tubular**: ring cross-sections (radius 8-18 nm, tubules seen end-on) every ~40-90 nm
//!   plus short lamellar segments (reach 0.15-0.4);
//! - **vesicular**: rings of radius 15-45 nm (swollen, vesiculated cristae);
//! - **sparse**: lamellar at 80-220 nm spacing;
//! - **none**: empty matrix;
//! - **irregular**: segments at any angle (tilt up to +-75 degrees), strongly bent, any reach.

use super::appearance::{log_uniform, pick, uniform, Cristae, MitoStyle, Mode, Shape};
use super::region;
use super::scene::{elongated, Crista, Mito};
use super::shape::{Spine, Wobble, P2};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::f32::consts::TAU;

/// Draw one mitochondrion centred at `centre`; sizes shrink by `scale` (placement retries).
/// `half_field`: half the shorter image side, px (for huge bodies).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sample_styled(
    rng: &mut ChaCha8Rng,
    centre: P2,
    px_nm: f32,
    c_max: f32,
    scale: f32,
    st: &MitoStyle,
    half_field: f32,
    mode: Mode,
) -> Mito {
    let nm = |x: f32| x / px_nm;
    let shape = match pick(rng, &st.shape_w) {
        0 => Shape::Round,
        1 => Shape::Elongated,
        2 => Shape::Branched,
        3 => Shape::Constricted,
        4 => Shape::Cup,
        _ => Shape::Huge,
    };
    let theta = rng.gen_range(0.0..TAU);
    let base_a = nm(log_uniform(rng, st.radius_nm));
    let (a, len, k0, k1, wob) = match shape {
        Shape::Round | Shape::Cup => {
            let a = base_a * rng.gen_range(1.0..1.3) * scale;
            (
                a,
                a * rng.gen_range(0.05..0.5),
                0.0,
                0.0,
                Wobble::random(rng, 0.07, 0.0, 1.0),
            )
        }
        Shape::Huge => {
            let a = half_field * rng.gen_range(0.6..1.2);
            let len = a * rng.gen_range(0.5..3.0);
            let k0 = rng.gen_range(-0.6..0.6) / len;
            (a, len, k0, 0.0, Wobble::random(rng, 0.0, 0.05, 3.0 * a))
        }
        _ => elongated(rng, base_a * scale, 8.0),
    };
    let spine = Spine::curved(centre, len.max(0.5), theta, k0, k1, 24);
    let t = nm(st.membrane_nm).max(1.0);
    let gap = nm(st.gap_nm).max(1.0);
    let c = a.min(c_max);
    let am = (a - 3.0 * t - gap).max(1.0);
    let branch = (shape == Shape::Branched).then(|| {
        let mid = spine.mid();
        let q = spine.point_at(spine.len() * 0.5 + 1.0);
        let dir = (q[1] - mid[1]).atan2(q[0] - mid[0]);
        let side = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
        let ang = dir + side * rng.gen_range(0.6..1.4);
        let blen = a * rng.gen_range(1.0..3.0);
        let bc = [
            mid[0] + ang.cos() * blen * 0.5,
            mid[1] + ang.sin() * blen * 0.5,
        ];
        let b = Spine::curved(bc, blen, ang, rng.gen_range(-0.5..0.5) / blen, 0.0, 12);
        (b, spine.len() + 2.0 * a)
    });
    let u_end = spine.len() + am + branch.as_ref().map_or(0.0, |(b, _)| b.len() + 2.0 * a);
    let kind = match pick(rng, &st.cristae_w) {
        0 => Cristae::Lamellar,
        1 => Cristae::Tubular,
        2 => Cristae::Vesicular,
        3 => Cristae::Sparse,
        4 => Cristae::None,
        _ => Cristae::Irregular,
    };
    let mut cristae = Vec::new();
    let mut rings = Vec::new();
    let sheet = |rng: &mut ChaCha8Rng, u: f32, tilt: f32, reach: (f32, f32), bend: f32| Crista {
        u0: u,
        tilt,
        bend: rng.gen_range(-bend..bend),
        side: if rng.gen_bool(0.5) { 1.0 } else { -1.0 },
        reach: rng.gen_range(reach.0..reach.1),
        gap: nm(rng.gen_range(8.0..16.0)),
        strength: if mode == Mode::Slice {
            0.8
        } else {
            rng.gen_range(0.08..0.3)
        },
    };
    match kind {
        Cristae::Lamellar | Cristae::Sparse => {
            let sp = if kind == Cristae::Lamellar {
                (25.0, 60.0)
            } else {
                (80.0, 220.0)
            };
            let spacing = nm(rng.gen_range(sp.0..sp.1)).max(3.0 * t);
            let main_tilt = rng.gen_range(-0.35..0.35);
            let mut u = -am + rng.gen_range(0.0..spacing);
            while u < u_end {
                if rng.gen_bool(0.85) {
                    // Near-parallel: neighbouring lamellae (25-60 nm apart) must not cross.
                    let tilt = main_tilt + rng.gen_range(-0.08..0.08);
                    cristae.push(sheet(rng, u, tilt, (0.3, 0.95), 0.12));
                }
                u += spacing * rng.gen_range(0.7..1.3);
            }
        }
        Cristae::Irregular => {
            let spacing = nm(rng.gen_range(30.0..90.0)).max(3.0 * t);
            let mut u = -am + rng.gen_range(0.0..spacing);
            while u < u_end {
                let tilt = rng.gen_range(-1.3..1.3);
                cristae.push(sheet(rng, u, tilt, (0.15, 0.9), 1.2));
                u += spacing * rng.gen_range(0.5..1.5);
            }
        }
        Cristae::Tubular | Cristae::Vesicular => {
            let (sp, rr) = if kind == Cristae::Tubular {
                ((40.0, 90.0), (8.0, 18.0))
            } else {
                ((60.0, 140.0), (15.0, 45.0))
            };
            let spacing = nm(rng.gen_range(sp.0..sp.1)).max(3.0 * t);
            let mut u = -am + rng.gen_range(0.0..spacing);
            while u < u_end {
                // Two to four rings across the matrix at this u.
                for _ in 0..rng.gen_range(1..4) {
                    let r = nm(uniform(rng, rr)).max(1.5 * t);
                    let vmax = ((am - r - t) / am).max(0.0);
                    let vf = if vmax > 0.0 {
                        rng.gen_range(-vmax..=vmax)
                    } else {
                        0.0
                    };
                    rings.push((u + rng.gen_range(-0.3..0.3) * spacing, vf, r));
                }
                if kind == Cristae::Tubular && rng.gen_bool(0.4) {
                    let tilt = rng.gen_range(-0.8..0.8);
                    cristae.push(sheet(rng, u, tilt, (0.15, 0.4), 0.5));
                }
                u += spacing * rng.gen_range(0.7..1.3);
            }
        }
        Cristae::None => {}
    }
    let n_gran = if st.granules.1 == 0 {
        0
    } else {
        rng.gen_range(st.granules.0..=st.granules.1)
    };
    // Granules scale with the body's length (counts are for a ~300 nm body).
    let n_gran = ((n_gran as f32) * (u_end / nm(300.0)).clamp(0.3, 4.0)).round() as usize;
    let granules = (0..n_gran)
        .map(|_| {
            let r = 0.5 * nm(uniform(rng, st.granule_nm));
            let vmax = ((am - r - t) / am).clamp(0.0, 0.8);
            (
                rng.gen_range(0.0..spine.len().max(1.0)),
                if vmax > 0.0 {
                    rng.gen_range(-vmax..=vmax)
                } else {
                    0.0
                },
                r,
            )
        })
        .collect();
    let pinch = (shape == Shape::Constricted).then(|| {
        (
            spine.len() * rng.gen_range(0.35..0.65),
            a * rng.gen_range(0.3..0.6),
            rng.gen_range(0.35..0.65),
        )
    });
    let dent = (shape == Shape::Cup).then(|| {
        (
            rng.gen_range(0.0..TAU),
            rng.gen_range(0.5..0.9),
            rng.gen_range(0.35..0.6),
        )
    });
    Mito {
        spine,
        a,
        c,
        t,
        gap,
        wob,
        d_matrix: uniform(rng, st.matrix),
        cristae,
        granules,
        zc: 0.0,
        rho_mem: st.rho_mem,
        leaflet_core: st.leaflet_core,
        tex_amp: uniform(rng, st.matrix_tex),
        granule_rho: st.granule_rho,
        rings,
        pinch,
        dent,
        branch,
        code: region::MITOCHONDRION,
    }
}
