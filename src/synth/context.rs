//! Cellular context of the randomized generator: organelles and structures around the
//! mitochondria, several of them hard negatives (double membranes, round organelles). Each is a
//! small geometric model drawn as projected density (`dz = None`) or as a thin section at
//! offset `dz` from its centre (`dz = Some(..)`), with the conventions of [`super::scene`].
//! Sizes (nm) and their sources are tabulated in [`super::appearance`]; each function states its
//! model.

use super::field::smooth_field_any;
use super::region;
use super::scene::{
    body, centre, cover, near_spine, rough_er_ribosomes, shell_body, Canvas, Crista, Mito,
    Ribosome, Vesicle, RHO_CYTO, RHO_RIBOSOME,
};
use super::shape::{chord, Spine, Wobble, P2};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::f32::consts::{PI, TAU};

/// A random point in the image.
pub(crate) fn anywhere(rng: &mut ChaCha8Rng, cv: &Canvas) -> P2 {
    [
        rng.gen_range(0.0..cv.w as f32),
        rng.gen_range(0.0..cv.h as f32),
    ]
}

/// The first of 20 uniform points ([`anywhere`]) whose disc of radius `r` is free of
/// mitochondria ([`free_of_mitos`]), if any.
pub(crate) fn free_place(rng: &mut ChaCha8Rng, cv: &Canvas, r: f32) -> Option<P2> {
    (0..20)
        .map(|_| anywhere(rng, cv))
        .find(|&p| free_of_mitos(cv, p, r))
}

/// True when a disc of radius `r` at `p` overlaps no mitochondrion (tested on a 9 x 9 grid of
/// the disc's box against the region map).
pub(crate) fn free_of_mitos(cv: &Canvas, p: P2, r: f32) -> bool {
    for a in 0..9 {
        for b in 0..9 {
            let x = p[0] + r * (a as f32 / 4.0 - 1.0);
            let y = p[1] + r * (b as f32 / 4.0 - 1.0);
            if x >= 0.0 && y >= 0.0 && (x as usize) < cv.w && (y as usize) < cv.h {
                let k = y as usize * cv.w + x as usize;
                if cv.region[k] == region::MITOCHONDRION || cv.membrane[k] != 0 {
                    return false;
                }
            }
        }
    }
    true
}

/// A section offset for a body of beam semi-axis `c`: `None` for projections, else uniform in
/// `+-0.8 c`.
pub(crate) fn section(rng: &mut ChaCha8Rng, slice: bool, c: f32) -> Option<f32> {
    slice.then(|| rng.gen_range(-0.8..0.8) * c)
}

/// A clear vesicle of radius `r` px (no dense core), membrane density `rho`.
pub(crate) fn clear_vesicle(rng: &mut ChaCha8Rng, p: P2, r: f32, t: f32, rho: f32) -> Vesicle {
    Vesicle {
        centre: p,
        r,
        c: r,
        t,
        aspect: rng.gen_range(1.0..1.15),
        angle: rng.gen_range(0.0..PI),
        lumen: rng.gen_range(-0.05..0.05),
        core: None,
        zc: 0.0,
        rho,
    }
}

/// A synaptic vesicle field: a cluster (radius 150-600 nm) of 60-600 clear vesicles of
/// 35-45 nm diameter, non-overlapping (rejection sampling), outside mitochondria.
pub(crate) fn vesicle_field(
    rng: &mut ChaCha8Rng,
    cv: &mut Canvas,
    px: f32,
    t: f32,
    rho: f32,
    slice: bool,
) {
    let nm = |x: f32| x / px;
    let c0 = anywhere(rng, cv);
    let rad = nm(rng.gen_range(150.0..600.0));
    let n = ((rad * px / 300.0).powi(2) * rng.gen_range(60.0..160.0)) as usize;
    let mut placed: Vec<(P2, f32)> = Vec::new();
    for _ in 0..n * 4 {
        if placed.len() >= n {
            break;
        }
        let (ang, d) = (
            rng.gen_range(0.0..TAU),
            rad * rng.gen_range(0.0f32..1.0).sqrt(),
        );
        let p = [c0[0] + d * ang.cos(), c0[1] + d * ang.sin()];
        let r = nm(rng.gen_range(17.5..22.5));
        if placed
            .iter()
            .any(|(q, rq)| (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2) < (r + rq + 1.0).powi(2))
            || !free_of_mitos(cv, p, r + 2.0)
        {
            continue;
        }
        placed.push((p, r));
        let v = clear_vesicle(rng, p, r, t, rho);
        let dz = section(rng, slice, r);
        v.render(cv, dz);
    }
}

/// A lipid droplet: a sphere of radius 80-500 nm with a uniform neutral-lipid core (denser than
/// cytoplasm, 0.3-0.7, or lighter, 0.05-0.15, per px of path) and a phospholipid monolayer (a
/// thin dense rim, no bilayer).
pub(crate) fn lipid_droplet(
    rng: &mut ChaCha8Rng,
    cv: &mut Canvas,
    px: f32,
    c_max: f32,
    slice: bool,
) {
    let r = rng.gen_range(80.0..500.0) / px;
    let Some(p) = free_place(rng, cv, r) else {
        return;
    };
    let c = r.min(c_max);
    let rho = if rng.gen_bool(0.7) {
        rng.gen_range(0.3..0.7)
    } else {
        rng.gen_range(0.05..0.15)
    };
    let t = (2.5 / px).max(0.7);
    let dz = section(rng, slice, c);
    let Some((ri, rj)) = cv.span_grown([p[0], p[1], p[0], p[1]], r, 1.0) else {
        return;
    };
    for i in ri {
        for j in rj.clone() {
            let q = centre(i, j);
            let d = ((q[0] - p[0]).powi(2) + (q[1] - p[1]).powi(2)).sqrt();
            if d >= r + 1.0 {
                continue;
            }
            let idx = i * cv.w + j;
            cv.density[idx] += rho * body(d, r, c, dz) + 1.2 * shell_body(d, r, c, t, dz);
            cv.occupancy[idx] = cv.occupancy[idx].max(match dz {
                None => chord(d, r, c),
                Some(_) => body(d, r, c, dz),
            });
            if body(d, r, c, dz) > 0.5 {
                cv.set_region(idx, region::LIPID_DROPLET);
            }
        }
    }
}

/// A multivesicular body: a single-membrane sphere of radius 125-300 nm, lumen slightly denser
/// than cytoplasm, holding 5-40 intraluminal vesicles of radius 20-45 nm.
pub(crate) fn mvb(
    rng: &mut ChaCha8Rng,
    cv: &mut Canvas,
    px: f32,
    t: f32,
    rho: f32,
    c_max: f32,
    slice: bool,
) {
    let r = rng.gen_range(125.0..300.0) / px;
    let Some(p) = free_place(rng, cv, r) else {
        return;
    };
    let mut outer = clear_vesicle(rng, p, r, t, rho);
    outer.c = r.min(c_max);
    outer.lumen = rng.gen_range(0.0..0.1);
    let dz = section(rng, slice, outer.c);
    outer.render(cv, dz);
    let n = rng.gen_range(5..40);
    for _ in 0..n {
        let ri = rng.gen_range(20.0..45.0) / px;
        if ri + t >= 0.9 * r {
            continue;
        }
        let (ang, d) = (
            rng.gen_range(0.0..TAU),
            (r - ri - t) * rng.gen_range(0.0f32..1.0).sqrt(),
        );
        let v = clear_vesicle(
            rng,
            [p[0] + d * ang.cos(), p[1] + d * ang.sin()],
            ri,
            t,
            rho,
        );
        let dzi = section(rng, slice, ri);
        v.render(cv, dzi);
    }
    let code = region::MVB;
    let rr = r as isize;
    for di in -rr..=rr {
        for dj in -rr..=rr {
            let (i, j) = (p[1] as isize + di, p[0] as isize + dj);
            if i >= 0
                && j >= 0
                && (i as usize) < cv.h
                && (j as usize) < cv.w
                && di * di + dj * dj < rr * rr
            {
                cv.set_region(i as usize * cv.w + j as usize, code);
            }
        }
    }
}

/// An autophagosome (or another double-membrane organelle): the mitochondrion's double-membrane
/// model without cristae, 300-900 nm across, membranes 14-30 nm apart (wider than the
/// mitochondrial 6-12 nm), content like cytoplasm (+-0.05) with texture and engulfed ribosomes;
/// drawn with label 0 (never a ground-truth box). A hard negative.
#[allow(clippy::too_many_arguments)]
pub(crate) fn autophagosome(
    rng: &mut ChaCha8Rng,
    cv: &mut Canvas,
    px: f32,
    t: f32,
    rho: f32,
    c_max: f32,
    tex: &[f32],
    slice: bool,
) {
    let a = rng.gen_range(150.0..450.0) / px;
    let Some(p) = free_place(rng, cv, a * 1.3) else {
        return;
    };
    let len = a * rng.gen_range(0.0..0.6);
    let spine = Spine::curved(p, len.max(0.5), rng.gen_range(0.0..TAU), 0.0, 0.0, 8);
    let c = a.min(c_max);
    let m = Mito {
        spine,
        a,
        c,
        t,
        gap: rng.gen_range(14.0..30.0) / px,
        wob: Wobble::random(rng, 0.12, 0.0, 1.0),
        d_matrix: rng.gen_range(-0.05..0.05),
        cristae: Vec::<Crista>::new(),
        granules: Vec::new(),
        zc: 0.0,
        rho_mem: rho,
        leaflet_core: 0.0,
        tex_amp: rng.gen_range(0.3..0.8),
        granule_rho: 0.0,
        rings: Vec::new(),
        pinch: None,
        dent: None,
        branch: None,
        code: region::AUTOPHAGOSOME,
    };
    let dz = section(rng, slice, c);
    m.render(cv, 0, dz, tex);
    // Engulfed cytoplasm: ribosomes inside the inner membrane (what a mitochondrion's matrix
    // never holds), 400-1500 per µm^2 of section or projected area.
    let inner = (a - 2.0 * t - m.gap).max(1.0);
    let area_um2 = std::f32::consts::PI * (inner * px / 1000.0).powi(2);
    let n = (rng.gen_range(400.0..1500.0) * area_um2) as usize;
    for _ in 0..n {
        let (ang, d) = (
            rng.gen_range(0.0..TAU),
            inner * 0.85 * rng.gen_range(0.0f32..1.0).sqrt(),
        );
        let r = rng.gen_range(12.5..15.0) / px;
        let rib = Ribosome {
            centre: [p[0] + d * ang.cos(), p[1] + d * ang.sin()],
            r,
            rho: RHO_RIBOSOME * rng.gen_range(0.8..1.1),
            zc: 0.0,
        };
        let dzr = slice.then(|| rng.gen_range(-0.9..0.9) * r);
        rib.render(cv, dzr);
    }
}

/// Membrane-bounded tube or flattened sheet along a curved spine (ER): lumen half-width `a`
/// (membrane included), extent along the beam `c`, lumen density `lumen`.
#[allow(clippy::too_many_arguments)]
fn tube(
    cv: &mut Canvas,
    spine: &Spine,
    a: f32,
    c: f32,
    t: f32,
    rho: f32,
    lumen: f32,
    dz: Option<f32>,
    code: u8,
) {
    near_spine(cv, spine, a, |cv, idx, d| {
        cv.density[idx] += rho * shell_body(d, a, c, t, dz) + lumen * body(d, a - t, c - t, dz);
        if body(d, a, c, dz) > 0.5 {
            cv.set_region(idx, code);
        }
    });
}

/// ER: a sheet seen edge-on (lumen 30-50 nm, extent along the beam 40-150 nm, 200-900 nm long,
/// rough with ribosomes in 60 % of sheets) or a tube (diameter 30-70 nm, 150-600 nm long,
/// curved). Returns the ribosomes of rough ER for the caller to draw.
pub(crate) fn er(
    rng: &mut ChaCha8Rng,
    cv: &mut Canvas,
    px: f32,
    t: f32,
    rho: f32,
    sheet: bool,
    slice: bool,
) -> Vec<Ribosome> {
    let nm = |x: f32| x / px;
    let (len, a, c) = if sheet {
        (
            nm(rng.gen_range(200.0..900.0)),
            nm(rng.gen_range(15.0..25.0)) + t,
            nm(rng.gen_range(20.0..75.0)),
        )
    } else {
        let a = nm(rng.gen_range(15.0..35.0));
        (nm(rng.gen_range(150.0..600.0)), a, a)
    };
    let spine = Spine::curved(
        anywhere(rng, cv),
        len,
        rng.gen_range(0.0..TAU),
        rng.gen_range(-2.5..2.5) / len,
        rng.gen_range(-4.0..4.0) / len,
        24,
    );
    let dz = section(rng, slice, c);
    tube(
        cv,
        &spine,
        a,
        c,
        t,
        rho,
        rng.gen_range(0.0..0.12),
        dz,
        region::ER,
    );
    if sheet && rng.gen_bool(0.6) {
        rough_er_ribosomes(rng, &spine, a, px)
    } else {
        Vec::new()
    }
}

/// A microtubule (outer diameter 25 nm, wall 5 nm, 0.3-3 µm long, gently curved) or an actin
/// bundle (5-20 filaments of 7 nm, 10-14 nm apart, parallel, 0.3-2 µm long).
pub(crate) fn filament(rng: &mut ChaCha8Rng, cv: &mut Canvas, px: f32, actin: bool, slice: bool) {
    let nm = |x: f32| x / px;
    let len = nm(rng.gen_range(300.0..3000.0));
    let theta = rng.gen_range(0.0..TAU);
    let p0 = anywhere(rng, cv);
    let k0 = rng.gen_range(-0.5..0.5) / len;
    if !actin {
        let spine = Spine::curved(p0, len, theta, k0, 0.0, 16);
        let r = nm(12.5);
        let t = nm(5.0).max(0.8);
        let dz = section(rng, slice, r * 0.6);
        tube(cv, &spine, r, r, t, 0.9, 0.0, dz, region::MICROTUBULE);
        return;
    }
    let n = rng.gen_range(5..20);
    let pitch = nm(rng.gen_range(10.0..14.0));
    let (nx, ny) = (-(theta.sin()), theta.cos());
    let r = nm(3.5).max(0.6);
    for k in 0..n {
        let off = (k as f32 - n as f32 * 0.5) * pitch + rng.gen_range(-0.2..0.2) * pitch;
        let p = [p0[0] + nx * off, p0[1] + ny * off];
        let spine = Spine::curved(p, len * rng.gen_range(0.7..1.0), theta, k0, 0.0, 8);
        let b = spine.bbox();
        let Some((ri, rj)) = cv.span_grown(b, r, 1.0) else {
            continue;
        };
        let dz = section(rng, slice, r);
        for i in ri {
            for j in rj.clone() {
                let f = spine.frame(centre(i, j));
                if f.dist < r + 1.0 {
                    let idx = i * cv.w + j;
                    cv.density[idx] += 1.3 * body(f.dist, r, r, dz);
                    if f.dist < r {
                        cv.set_region(idx, region::ACTIN);
                    }
                }
            }
        }
    }
}

/// The nuclear envelope: two membranes 20-50 nm apart along a circle of radius 2-8 µm crossing
/// the image (a long gentle arc), interrupted by nuclear pores (the membranes join around a
/// 60-100 nm gap every 400-1200 nm of arc); the nucleus side carries chromatin (denser texture,
/// +0.05..0.15).
pub(crate) fn nuclear_envelope(
    rng: &mut ChaCha8Rng,
    cv: &mut Canvas,
    px: f32,
    t: f32,
    rho: f32,
    thickness: f32,
    slice: bool,
) {
    let nm = |x: f32| x / px;
    let rr = nm(rng.gen_range(2000.0..8000.0));
    let ang = rng.gen_range(0.0..TAU);
    let (wf, hf) = (cv.w as f32, cv.h as f32);
    // The arc passes 10-45 % of the side from the centre; the nucleus on the far side.
    let off = rng.gen_range(0.1..0.45) * wf.min(hf);
    let cx = [
        wf * 0.5 + ang.cos() * (off + rr),
        hf * 0.5 + ang.sin() * (off + rr),
    ];
    let gap = nm(rng.gen_range(20.0..50.0));
    let pore_every = nm(rng.gen_range(400.0..1200.0));
    let pore_half = nm(rng.gen_range(30.0..50.0));
    let chrom = rng.gen_range(0.05..0.15);
    let tex = smooth_field_any(rng, cv.h, cv.w, nm(8.0).max(1.0));
    // Membrane "depth" along the beam: a sheet through the whole specimen (projection) or a
    // one-pixel section.
    let depth = if slice { 1.0 } else { thickness };
    // A membrane sheet mask of thickness t at signed distance x (positive: inside the ring).
    let sheet = |x: f32| cover(x) - cover(x - t);
    for i in 0..cv.h {
        for j in 0..cv.w {
            let p = centre(i, j);
            let d = rr - ((p[0] - cx[0]).powi(2) + (p[1] - cx[1]).powi(2)).sqrt(); // >0 inside
            let idx = i * cv.w + j;
            if d > -2.0 && d < gap + 2.0 * t + 2.0 {
                let arc = ((p[1] - cx[1]).atan2(p[0] - cx[0]) * rr).rem_euclid(pore_every);
                let in_pore = (arc - pore_every * 0.5).abs() < pore_half;
                let m = if in_pore {
                    // Pore: the two membranes join (a short bridge) around an open channel.
                    let e = (arc - pore_every * 0.5).abs() - pore_half;
                    cover(e + t) - cover(e)
                } else {
                    sheet(d) + sheet(d - gap - t)
                };
                let m = if in_pore && (d < 0.0 || d > gap + 2.0 * t) {
                    0.0
                } else {
                    m
                };
                cv.density[idx] += rho * m.max(0.0) * depth.min(nm(150.0));
                if d > 0.0 && d < gap + 2.0 * t {
                    cv.set_region(idx, region::NUCLEUS);
                }
            }
            if d >= gap + 2.0 * t && cv.region[idx] != region::MITOCHONDRION {
                cv.density[idx] +=
                    RHO_CYTO * chrom / 0.22 * depth * (1.0 + 0.6 * tex[[i, j]]).max(0.0);
                cv.set_region(idx, region::NUCLEUS);
                cv.occupancy[idx] = cv.occupancy[idx].max(depth * 0.5);
            }
        }
    }
}

/// The cell boundary: a plasma membrane (a single bilayer along a gentle arc of radius 1-6 µm)
/// with extracellular vitreous ice beyond it, or a lamella edge (beyond it no specimen: density
/// `-outside_rho` relative to ice). Placed so that no mitochondrion lies outside (up to 10
/// tries); returns the outside mask (true = outside) or None.
pub(crate) fn cell_boundary(rng: &mut ChaCha8Rng, cv: &Canvas, px: f32) -> Option<Vec<bool>> {
    let (wf, hf) = (cv.w as f32, cv.h as f32);
    for _ in 0..10 {
        let rr = rng.gen_range(1000.0..6000.0) / px;
        let ang = rng.gen_range(0.0..TAU);
        let off = rng.gen_range(0.15..0.45) * wf.min(hf);
        // Cell centre on the far side: the boundary passes `off` from the image centre.
        let cx = [
            wf * 0.5 - ang.cos() * (rr - off),
            hf * 0.5 - ang.sin() * (rr - off),
        ];
        let mut mask = vec![false; cv.h * cv.w];
        let mut ok = true;
        for i in 0..cv.h {
            for j in 0..cv.w {
                let p = centre(i, j);
                let out = ((p[0] - cx[0]).powi(2) + (p[1] - cx[1]).powi(2)).sqrt() > rr;
                if out {
                    let k = i * cv.w + j;
                    if cv.membrane[k] != 0 || cv.region[k] == region::MITOCHONDRION {
                        ok = false;
                    }
                    mask[k] = true;
                }
            }
            if !ok {
                break;
            }
        }
        if ok {
            return Some(mask);
        }
    }
    None
}

/// Apply a cell boundary: outside pixels lose every organelle's density and get `outside`
/// (per pixel); with `membrane_rho > 0` a bilayer of thickness `t` is drawn along the boundary.
pub(crate) fn apply_boundary(
    cv: &mut Canvas,
    mask: &[bool],
    outside: f32,
    membrane_rho: f32,
    t: f32,
) {
    let (h, w) = (cv.h, cv.w);
    for i in 0..h {
        for j in 0..w {
            let k = i * w + j;
            if mask[k] {
                cv.density[k] = outside;
                cv.region[k] = region::OUTSIDE;
            } else if membrane_rho > 0.0 {
                // Inside pixels within t of an outside pixel (4-neighbourhood, up to t px).
                let tt = t.ceil().max(1.0) as isize;
                let mut near = false;
                for d in 1..=tt {
                    for (di, dj) in [(-d, 0), (d, 0), (0, -d), (0, d)] {
                        let (ii, jj) = (i as isize + di, j as isize + dj);
                        if ii >= 0
                            && jj >= 0
                            && (ii as usize) < h
                            && (jj as usize) < w
                            && mask[ii as usize * w + jj as usize]
                        {
                            near = true;
                        }
                    }
                }
                if near {
                    cv.density[k] += membrane_rho;
                }
            }
        }
    }
}

/// Crystalline ice: a patch (radius 150-600 nm, smooth outline) of strong mottled diffraction
/// contrast (a random field of correlation 3-10 nm, amplitude `amp` x the local density scale).
pub(crate) fn crystalline_ice(rng: &mut ChaCha8Rng, cv: &mut Canvas, px: f32, amp: f32) {
    let r = rng.gen_range(150.0..600.0) / px;
    let p = anywhere(rng, cv);
    let corr = (rng.gen_range(3.0..10.0) / px).max(0.7);
    let tex = smooth_field_any(rng, cv.h, cv.w, corr);
    let wob = Wobble::random(rng, 0.25, 0.0, 1.0);
    for i in 0..cv.h {
        for j in 0..cv.w {
            let q = centre(i, j);
            let (dx, dy) = (q[0] - p[0], q[1] - p[1]);
            let d = (dx * dx + dy * dy).sqrt() / wob.factor(dy.atan2(dx), 0.0);
            if d < r {
                let f = ((r - d) / (0.2 * r)).min(1.0);
                let k = i * cv.w + j;
                cv.density[k] += amp * f * tex[[i, j]].abs();
                cv.set_region(k, region::ICE);
            }
        }
    }
}

/// Dense-core granule or clear vesicle of the classic model with this image's membrane density.
pub(crate) fn vesicle(
    rng: &mut ChaCha8Rng,
    cv: &mut Canvas,
    px: f32,
    dense: bool,
    c_max: f32,
    rho: f32,
    slice: bool,
) {
    let p = anywhere(rng, cv);
    let mut v = Vesicle::sample(rng, p, px, dense, c_max);
    v.rho = rho;
    let dz = section(rng, slice, v.c);
    if free_of_mitos(cv, p, v.r) {
        v.render(cv, dz);
    }
}

/// Ribosomes for a thin section: `n` particles, each cut at a random height within its radius.
pub(crate) fn section_ribosomes(rng: &mut ChaCha8Rng, cv: &mut Canvas, px: f32, n: usize) {
    for _ in 0..n {
        let p = anywhere(rng, cv);
        let (i, j) = (p[1] as usize, p[0] as usize);
        if cv.occupancy[i.min(cv.h - 1) * cv.w + j.min(cv.w - 1)] > 0.5 {
            continue;
        }
        let r = rng.gen_range(12.5..15.0) / px;
        let rib = Ribosome {
            centre: p,
            r,
            rho: RHO_RIBOSOME * rng.gen_range(0.8..1.1),
            zc: 0.0,
        };
        rib.render(cv, Some(rng.gen_range(-0.9..0.9) * r));
    }
}
