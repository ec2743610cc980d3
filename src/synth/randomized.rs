//! Domain-randomized synthetic images: every image draws a family and its whole appearance
//! ([`super::appearance`]), builds a scene at that physical scale (mitochondria from
//! `synth/mito_style.rs`, context from `synth/context.rs`) as a thick projection or a thin
//! section, and forms the image with a real CTF, noise and display conversions
//! ([`super::imaging`]).
//!
//! Scene order: mitochondria (they set the occupancy), double-membrane and round negatives
//! (autophagosomes, MVBs, lipid droplets, placed clear of mitochondria), vesicle fields, clear
//! vesicles and dense-core granules, ER sheets and tubes, nuclear envelope, microtubules and
//! actin, ribosomes, cytoplasm, cell boundary (plasma membrane / lamella edge), ice and carbon.
//!
//! In a section, the context is drawn only where the cut is free of mitochondria
//! (`density = mito + context (1 - occupancy_mito)`), so nothing crosses a mitochondrion.
//!
//! Projection: every body is integrated through the specimen of thickness `T` (bodies flattened
//! to `c <= 0.5 T (0.75..0.95)`), cytoplasm fills the rest of `T`. Section (tomogram slice):
//! every body is cut at a random height within `+-0.8 c` of its centre (mitochondria within
//! `+-0.7 c`, so each shows its double membrane as a ring), cytoplasm is one pixel of density.
//!
//! Ground truth as for the classic generator: the box of each mitochondrion's rasterised outer
//! membrane (in a section: the ring of the cut), `incomplete` when it touches the border.
//!
//! Determinism: image `index` of seed `seed` draws from `ChaCha8Rng::seed_from_u64(seed)` on
//! stream `index` (the same streams as the classic generator; the two are different series).

use super::appearance::{Appearance, Family, Mode, Ranges};
use super::field::smooth_field_any;
use super::scene::{place_mitos_with, Canvas, Mito, RHO_CYTO};
use super::{boxes_from_membranes, SynthImage};
use super::{context as ctx, imaging, lamella, mito_style, region, visibility};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What to generate (randomized).
#[derive(Clone, Debug)]
pub struct RandomConfig {
    pub seed: u64,
    /// Families drawn from, uniformly (non-empty).
    pub families: Vec<Family>,
    pub ranges: Ranges,
    /// Mitochondria per image, `min..=max` (default 1..=5).
    pub n_mito: (usize, usize),
    /// Probability that a mitochondrion is placed across the border (default 0.3); bodies
    /// larger than the field of view (shape `Huge`) are cut whatever this is.
    pub p_incomplete: f32,
}

impl RandomConfig {
    /// All families, default ranges.
    pub fn new(seed: u64) -> Self {
        RandomConfig {
            seed,
            families: Family::ALL.to_vec(),
            ranges: Ranges::default(),
            n_mito: (1, 5),
            p_incomplete: 0.3,
        }
    }

    pub fn validate(&self) -> crate::Result<()> {
        if self.families.is_empty() {
            return Err(crate::Error::invalid("synth: no appearance family enabled"));
        }
        if self.n_mito.0 > self.n_mito.1 || self.n_mito.1 > 50 {
            return Err(crate::Error::invalid(format!(
                "synth: mitochondria per image {}..={} must be ordered and <= 50",
                self.n_mito.0, self.n_mito.1
            )));
        }
        if !(0.0..=1.0).contains(&self.p_incomplete) {
            return Err(crate::Error::invalid(
                "synth: p_incomplete must be in [0, 1]",
            ));
        }
        self.ranges.validate()
    }
}

/// The RNG of image `index`.
fn rng_for(seed: u64, index: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64);
    rng
}

/// The appearance image `index` is drawn with (the first draws of its RNG).
pub fn appearance_of(cfg: &RandomConfig, index: usize) -> Appearance {
    let mut rng = rng_for(cfg.seed, index);
    draw_appearance(cfg, &mut rng)
}

fn draw_appearance(cfg: &RandomConfig, rng: &mut ChaCha8Rng) -> Appearance {
    let family = cfg.families[rng.gen_range(0..cfg.families.len())];
    Appearance::draw(family, &cfg.ranges, rng)
}

/// Generate randomized image `index` (deterministic in `(cfg, index)`).
///
/// # Panics
/// If `cfg.validate()` fails.
pub fn generate_random(cfg: &RandomConfig, index: usize) -> SynthImage {
    if let Err(e) = cfg.validate() {
        panic!("{e}");
    }
    let mut rng = rng_for(cfg.seed, index);
    let app = draw_appearance(cfg, &mut rng);
    let (h, w) = app.size;
    let curtains = app
        .milling
        .as_ref()
        .map(|m| m.curtain_factor(h, w, app.pixel_nm));
    let (cv, n_mito) = build_scene(cfg, &app, curtains.as_ref(), &mut rng);
    let density = Array2::from_shape_vec((h, w), cv.density).expect("h*w");
    let s = imaging::transfer(&density, app.pixel_nm, &app.imaging);
    let specimen: Vec<bool> = cv
        .region
        .iter()
        .map(|&r| r != region::ICE && r != region::CARBON)
        .collect();
    let shading = app
        .milling
        .as_ref()
        .zip(curtains.as_ref())
        .map(|(m, c)| m.shading(c, &cv.region, app.imaging.snr));
    let (image, clean) = imaging::form(s, &specimen, &app.imaging, shading.as_ref(), &mut rng);
    let (mut boxes, outer_membrane) = boxes_from_membranes(&cv.membrane, h, w, n_mito);
    let region = Array2::from_shape_vec((h, w), cv.region).expect("h*w");
    visibility::mark_difficult(
        &mut boxes,
        &image,
        &clean,
        &region,
        &outer_membrane,
        app.pixel_nm,
    );
    SynthImage {
        image,
        clean,
        boxes,
        outer_membrane,
        region,
        family: Some(app.family),
        pixel_nm: app.pixel_nm,
        snr: app.imaging.snr,
    }
}

/// The scene of the module doc (a lamella's `curtains`: its curtain factor,
/// `synth/lamella.rs`). Returns the canvas and the number of mitochondria placed.
fn build_scene(
    cfg: &RandomConfig,
    app: &Appearance,
    curtains: Option<&Array2<f32>>,
    rng: &mut ChaCha8Rng,
) -> (Canvas, usize) {
    let (h, w) = app.size;
    let px = app.pixel_nm;
    let nm = |x: f32| x / px;
    let slice = app.imaging.mode == Mode::Slice;
    let cx = &app.context;
    let mut cv = Canvas::new(h, w);
    let thickness = nm(cx.thickness_nm);
    let c_max = 0.5 * thickness * rng.gen_range(0.75..0.95);
    let n = rng.gen_range(cfg.n_mito.0..=cfg.n_mito.1);
    let half_field = 0.5 * h.min(w) as f32;
    let st = &app.mito;
    let mut mitos: Vec<Mito> = place_mitos_with(rng, h, w, n, cfg.p_incomplete, true, |r, c, s| {
        mito_style::sample_styled(r, c, px, c_max, s, st, half_field, app.imaging.mode)
    });
    if slice {
        for m in &mut mitos {
            m.zc = rng.gen_range(-0.7..0.7) * m.c;
        }
    }
    let fine = smooth_field_any(rng, h, w, (nm(3.0)).max(1.0));
    let fine_s = fine.as_slice().expect("standard layout");
    for (k, m) in mitos.iter().enumerate() {
        m.render(&mut cv, (k + 1) as u8, slice.then_some(m.zc), fine_s);
    }
    // In a section nothing else can be inside a mitochondrion: keep the mitochondria's density
    // apart and let the context show only where the section is free of them.
    let mito_density = std::mem::replace(&mut cv.density, vec![0.0; h * w]);
    let mito_occ = cv.occupancy.clone();
    let t = nm(st.membrane_nm).max(1.0);
    let rho = st.rho_mem;
    for _ in 0..cx.autophagosomes {
        ctx::autophagosome(rng, &mut cv, px, t, rho, c_max, fine_s, slice);
    }
    for _ in 0..cx.mvbs {
        ctx::mvb(rng, &mut cv, px, t, rho, c_max, slice);
    }
    for _ in 0..cx.lipid_droplets {
        ctx::lipid_droplet(rng, &mut cv, px, c_max, slice);
    }
    for _ in 0..cx.vesicle_fields {
        ctx::vesicle_field(rng, &mut cv, px, t, rho, slice);
    }
    let area_um2 = (h as f32 * px / 1000.0) * (w as f32 * px / 1000.0);
    let n_dense = (cx.dense_granules_per_um2 * area_um2).round() as usize;
    let n_clear = (cx.clear_vesicles_per_um2 * area_um2).round() as usize;
    for k in 0..n_dense + n_clear {
        ctx::vesicle(rng, &mut cv, px, k < n_dense, c_max, rho, slice);
    }
    let mut ribs = Vec::new();
    for _ in 0..cx.er_sheets {
        ribs.extend(ctx::er(rng, &mut cv, px, t, rho, true, slice));
    }
    for _ in 0..cx.er_tubes {
        ribs.extend(ctx::er(rng, &mut cv, px, t, rho, false, slice));
    }
    if cx.nuclear_envelope {
        ctx::nuclear_envelope(rng, &mut cv, px, t, rho, thickness, slice);
    }
    for _ in 0..cx.microtubules {
        ctx::filament(rng, &mut cv, px, false, slice);
    }
    for _ in 0..cx.actin_bundles {
        ctx::filament(rng, &mut cv, px, true, slice);
    }
    // Ribosomes: projections keep the classic model (n per µm^3 of the slab); sections see
    // those within a radius of the cut: n per µm^3 x (slice + diameter).
    if slice {
        let n_rib = (cx.ribosomes_per_um3 * area_um2 * 0.03) as usize;
        ctx::section_ribosomes(rng, &mut cv, px, n_rib);
    } else {
        let vol_um3 = area_um2 * cx.thickness_nm / 1000.0;
        let n_rib = (cx.ribosomes_per_um3 * vol_um3) as usize;
        ribs.extend(super::scene::sample_ribosomes(
            rng, &cv, n_rib, px, thickness,
        ));
    }
    for r in &ribs {
        let dz = slice.then(|| rng.gen_range(-0.9..0.9) * r.r);
        r.render(&mut cv, dz);
    }
    // Cytoplasm: textured, displaced by the bodies (occupancy), on a thickness ramp.
    let coarse = smooth_field_any(rng, h, w, nm(20.0).max(2.0));
    let depth = if slice { 1.0 } else { thickness };
    let g = [rng.gen_range(-0.5..0.5), rng.gen_range(-0.5..0.5)];
    let size = h.max(w) as f32;
    let mill = app.milling.as_ref().map(|m| (m, m.frame(h, w)));
    for i in 0..h {
        for j in 0..w {
            let k = i * w + j;
            let wedge = mill.map_or(1.0, |(m, f)| m.wedge_factor(&f, i, j));
            let tl = depth
                * (1.0
                    + g[0] * (j as f32 + 0.5 - 0.5 * w as f32) / size
                    + g[1] * (i as f32 + 0.5 - 0.5 * h as f32) / size)
                * wedge;
            let free = if slice {
                (1.0 - cv.occupancy[k]).max(0.0)
            } else {
                (tl - cv.occupancy[k]).max(0.0)
            };
            let tex = 1.0 + cx.cyto_tex * fine[[i, j]] + 0.5 * cx.cyto_tex * coarse[[i, j]];
            cv.density[k] += RHO_CYTO * free * tex.max(0.0);
        }
    }
    for (k, d) in cv.density.iter_mut().enumerate() {
        let keep = if slice {
            1.0 - mito_occ[k].min(1.0)
        } else {
            1.0
        };
        *d = mito_density[k] + *d * keep;
    }
    // Cell boundary.
    if cx.plasma_membrane || cx.lamella_edge {
        if let Some(mask) = ctx::cell_boundary(rng, &cv, px) {
            let (outside, mem) = if cx.lamella_edge && !cx.plasma_membrane {
                (-0.3 * RHO_CYTO * depth, 0.0)
            } else {
                let mem = rho * if slice { 1.0 } else { nm(120.0).min(depth) };
                (rng.gen_range(0.0..0.4) * RHO_CYTO * depth, mem)
            };
            ctx::apply_boundary(&mut cv, &mask, outside, mem, t);
        }
    }
    // A lamella's curtains thin or thicken everything milled (not the ice on its surface).
    if let Some(c) = curtains {
        lamella::apply_curtains(&mut cv, c);
    }
    // Ice contamination sits on the surface: projected through (classic model), or in a
    // section cut at 0.1-0.5 of its projected density (a slice near the surface; its full
    // projection shows only through the streaks).
    for _ in 0..cx.ice {
        if slice {
            let mut tmp = Canvas::new(h, w);
            super::scene::render_ice(rng, &mut tmp, px);
            let k = rng.gen_range(0.1..0.5) * nm(1.0).min(1.0);
            let (_, peak) = super::min_max(tmp.density.iter().copied());
            let scale = k * (4.0 * RHO_CYTO * 10.0 / peak.max(1e-6)).min(1.0);
            for (q, d) in tmp.density.iter().enumerate() {
                if *d > 0.0 {
                    cv.density[q] += d * scale;
                    cv.set_region(q, tmp.region[q]);
                }
            }
        } else {
            super::scene::render_ice(rng, &mut cv, px);
        }
    }
    if cx.crystalline_ice {
        let amp = RHO_CYTO * depth * rng.gen_range(0.3..1.0);
        ctx::crystalline_ice(rng, &mut cv, px, amp);
    }
    if cx.carbon {
        super::scene::render_carbon(rng, &mut cv, px);
    }
    if let Some(m) = &app.milling {
        m.draw_cap(rng, &mut cv, px, RHO_CYTO * depth);
    }
    (cv, mitos.len())
}
