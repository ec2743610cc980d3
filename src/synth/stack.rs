//! A synthetic tomogram: `nz` consecutive slices of one volume, with per-object 3D ground truth,
//! so that the 3D linker (`crate::volume`) has real objects whose cross-sections change
//! smoothly with z.
//!
//! Volume model: the slices span a cell periphery [`STACK_THICKNESS_NM`] thick, so the slice
//! spacing is [`slice_nm`] = `250 nm / nz` (at least `cfg.pixel_nm`); each slice is a section
//! through its centre height (a thin tomogram slice):
//! - mitochondria: the same tubes as the projections (bent spine in the xy plane, double
//!   membrane, cristae as sheets spanning z), with an ellipsoidal cross-section of beam
//!   semi-axis `c` (0.25-0.4 of the depth, at most `a`), centred at a height `zc` that keeps it
//!   inside the volume with one slice to spare (it starts and ends inside the stack). The slice at
//!   height `z` cuts the body at `dz = z + 0.5 - zc`: its outline shrinks as
//!   `a sqrt(1 - (dz / c)^2)` and the membranes appear as rings (thicker near the poles, where
//!   the cut is grazing), so an object appears, grows, shrinks and vanishes over z;
//! - clear vesicles and dense-core granules: spheres (rings and discs in a slice);
//! - ribosomes: 25-30 nm spheres anywhere in the volume;
//! - cytoplasm: density `RHO_CYTO` with a texture `cos(phi z) A + sin(phi z) B` of two
//!   independent unit fields (unit variance at every z, correlated over ~10 nm in z), displaced
//!   inside mitochondria.
//!
//! Image formation per slice is that of the projections (DoG transfer, white noise), with the
//! noise scaled over the whole volume so that `var(S) / var(noise) = snr` exactly for the stack,
//! and one linear mapping to `[0, 1]` for the whole stack.
//!
//! Ground truth per object: per slice, the box of the rasterised outer-membrane ring (as for
//! projections); `bbox3d = (x1, y1, z1, x2, y2, z2)` is their union with `z2` exclusive (last slice
//! + 1), the layout of `crate::volume`.
//!
//! Randomness: `ChaCha8Rng::seed_from_u64(seed)` on stream `u64::MAX` (never an image index) for
//! the scene, and stream `u64::MAX - 1 - z` for slice `z`'s noise.

use super::field::{self, smooth_field};
use super::scene::{place_mitos, Canvas, Mito, Ribosome, Vesicle, RHO_CYTO};
use super::{form_parts, SynthBox, SynthConfig, MITO_CLASS};
use ndarray::{Array2, Array3, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// One object of the volume.
#[derive(Clone, Debug)]
pub struct StackObject {
    pub class: String,
    /// `(x1, y1, z1, x2, y2, z2)`, `z2` exclusive.
    pub bbox3d: [f32; 6],
    /// `(z, box)` for every slice where the outer membrane is drawn, z increasing;
    /// `box.incomplete`: cut by the xy border in that slice.
    pub slices: Vec<(usize, SynthBox)>,
}

/// A synthetic tomogram.
#[derive(Clone, Debug)]
pub struct SynthStack {
    /// Noisy slices `[nz, ny, nx]` in `[0, 1]`, dark = dense.
    pub volume: Array3<f32>,
    /// The same without noise (same mapping).
    pub clean: Array3<f32>,
    pub objects: Vec<StackObject>,
    /// Slice spacing, nm ([`slice_nm`]); the xy pixel size is `cfg.pixel_nm`.
    pub slice_nm: f32,
}

/// The cell thickness a stack spans (nm), whatever its number of slices.
pub const STACK_THICKNESS_NM: f32 = 250.0;

/// Slice spacing of an `nz`-slice stack: `STACK_THICKNESS_NM / nz`, at least one pixel.
pub fn slice_nm(cfg: &SynthConfig, nz: usize) -> f32 {
    (STACK_THICKNESS_NM / nz.max(1) as f32).max(cfg.pixel_nm)
}

/// Generate an `nz`-slice volume of `cfg.size` (module doc).
///
/// # Panics
/// If `cfg.validate()` fails or `nz == 0`.
pub fn generate_stack(cfg: &SynthConfig, nz: usize) -> SynthStack {
    if let Err(e) = cfg.validate() {
        panic!("{e}");
    }
    assert!(nz > 0, "synth: a stack needs at least one slice");
    let (h, w) = cfg.size;
    let px = cfg.pixel_nm;
    let nm = |x: f32| x / px;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng.set_stream(u64::MAX);
    let slice_px = slice_nm(cfg, nz) / px;
    let nzf = nz as f32 * slice_px; // volume depth in (xy) pixels
    let n = rng.gen_range(cfg.n_mito.0..=cfg.n_mito.1);
    let mut mitos = place_mitos(&mut rng, h, w, n, px, f32::MAX, cfg.p_incomplete);
    for m in &mut mitos {
        m.c = m.a.min(nzf * rng.gen_range(0.25..0.4)).max(1.0);
        let margin = m.c + slice_px;
        m.zc = if nzf > 2.0 * margin {
            rng.gen_range(margin..nzf - margin)
        } else {
            0.5 * nzf
        };
    }
    let area_um2 = (h as f32 * px / 1000.0) * (w as f32 * px / 1000.0);
    let depth_um = nzf * px / 1000.0;
    // Vesicles per µm^3: a 250 nm thick projection has 0-2.5 dense + 2-8 clear per µm^2.
    let n_dense = (rng.gen_range(0.0..10.0) * area_um2 * depth_um).round() as usize;
    let n_clear = (rng.gen_range(8.0..32.0) * area_um2 * depth_um).round() as usize;
    let vesicles: Vec<Vesicle> = (0..n_dense + n_clear)
        .map(|k| {
            let p = [rng.gen_range(0.0..w as f32), rng.gen_range(0.0..h as f32)];
            let mut v = Vesicle::sample(&mut rng, p, px, k < n_dense, f32::MAX);
            v.zc = rng.gen_range(-v.r..nzf + v.r);
            v
        })
        .collect();
    let n_rib = (rng.gen_range(1500.0..4000.0) * area_um2 * depth_um) as usize;
    let ribosomes: Vec<Ribosome> = (0..n_rib)
        .map(|_| Ribosome {
            centre: [rng.gen_range(0.0..w as f32), rng.gen_range(0.0..h as f32)],
            r: nm(rng.gen_range(12.5..15.0)),
            rho: 1.5 * rng.gen_range(0.8..1.1),
            zc: rng.gen_range(0.0..nzf),
        })
        .collect();
    let tex_a = smooth_field(&mut rng, h, w, 1.5);
    let tex_b = smooth_field(&mut rng, h, w, 1.5);
    let phi = std::f32::consts::FRAC_PI_2 / nm(10.0).max(1.0);

    // Render every slice: density and the outer-membrane labels.
    let slices: Vec<(Array2<f32>, Vec<u8>)> = (0..nz)
        .into_par_iter()
        .map(|z| {
            let zm = (z as f32 + 0.5) * slice_px;
            let (s, c) = (phi * zm).sin_cos();
            let tex = &tex_a * c + &tex_b * s;
            let tex_s = tex.as_slice().expect("standard layout");
            let mut cv = Canvas::new(h, w);
            for (k, m) in mitos.iter().enumerate() {
                render_mito_slice(m, &mut cv, (k + 1) as u8, zm, tex_s);
            }
            for v in &vesicles {
                if (zm - v.zc).abs() < v.c {
                    v.render(&mut cv, Some(zm - v.zc));
                }
            }
            for r in &ribosomes {
                if (zm - r.zc).abs() < r.r && cv_free(&cv, r.centre) {
                    r.render(&mut cv, Some(zm - r.zc));
                }
            }
            for (k, d) in cv.density.iter_mut().enumerate() {
                *d += RHO_CYTO * (1.0 - cv.occupancy[k]).max(0.0) * (1.0 + 0.3 * tex_s[k]).max(0.0);
            }
            let dens = Array2::from_shape_vec((h, w), cv.density).expect("h*w");
            (super::transfer(&dens, px), cv.membrane)
        })
        .collect();

    // Noise over the whole stack, exact SNR; one mapping.
    let (_, vs) = field::mean_var(slices.iter().flat_map(|(s, _)| s.iter().copied()));
    let noise: Vec<Array2<f32>> = (0..nz)
        .into_par_iter()
        .map(|z| {
            let mut r = ChaCha8Rng::seed_from_u64(cfg.seed);
            r.set_stream(u64::MAX - 1 - z as u64);
            field::white_noise(&mut r, h, w)
        })
        .collect();
    let (mn, vn) = field::mean_var(noise.iter().flat_map(|n| n.iter().copied()));
    let scale = (vs / cfg.snr).sqrt() / vn.sqrt().max(1e-12);
    let mut clean = Array3::<f32>::zeros((nz, h, w));
    let mut noisy = Array3::<f32>::zeros((nz, h, w));
    for (z, ((s, _), n)) in slices.iter().zip(&noise).enumerate() {
        clean.index_axis_mut(Axis(0), z).assign(s);
        noisy
            .index_axis_mut(Axis(0), z)
            .assign(&(s + &n.mapv(|x| (x - mn) * scale)));
    }
    let (volume, clean) = form_parts(noisy, clean);

    // Ground truth.
    let mut objects = Vec::new();
    for k in 0..mitos.len() {
        let label = (k + 1) as u8;
        let mut per_slice = Vec::new();
        for (z, (_, lab)) in slices.iter().enumerate() {
            let (boxes, _) = super::boxes_from_membranes(
                &lab.iter()
                    .map(|&l| u8::from(l == label))
                    .collect::<Vec<_>>(),
                h,
                w,
                1,
            );
            if let Some(b) = boxes.into_iter().next() {
                per_slice.push((z, b));
            }
        }
        if per_slice.is_empty() {
            continue;
        }
        let mut b3 = [
            f32::MAX,
            f32::MAX,
            per_slice[0].0 as f32,
            f32::MIN,
            f32::MIN,
            0.0,
        ];
        for (z, b) in &per_slice {
            b3[0] = b3[0].min(b.bbox[0]);
            b3[1] = b3[1].min(b.bbox[1]);
            b3[3] = b3[3].max(b.bbox[2]);
            b3[4] = b3[4].max(b.bbox[3]);
            b3[5] = (*z + 1) as f32;
        }
        objects.push(StackObject {
            class: MITO_CLASS.to_string(),
            bbox3d: b3,
            slices: per_slice,
        });
    }
    SynthStack {
        volume,
        clean,
        objects,
        slice_nm: slice_px * px,
    }
}

/// A mitochondrion in slice `zm` (slice centre height), if the slice cuts it.
fn render_mito_slice(m: &Mito, cv: &mut Canvas, label: u8, zm: f32, tex: &[f32]) {
    let dz = zm - m.zc;
    if dz.abs() < m.c {
        m.render(cv, label, Some(dz), tex);
    }
}

/// Ribosomes are not drawn inside mitochondria (cytosolic ribosomes live in the cytosol).
fn cv_free(cv: &Canvas, p: [f32; 2]) -> bool {
    let (i, j) = (p[1].floor() as isize, p[0].floor() as isize);
    if i < 0 || j < 0 || i as usize >= cv.h || j as usize >= cv.w {
        return true;
    }
    cv.occupancy[i as usize * cv.w + j as usize] < 0.5
}
