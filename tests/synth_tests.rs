//! Synthetic image generator: determinism, tight ground-truth boxes, SNR, incompleteness,
//! object counts. Small non-square images keep this fast (< 2 s in release).

use cryodet::synth::{generate, region, SynthConfig, SynthImage, MITO_CLASS};

/// Allowed relative SNR error (the brief: within 10 %; the generator rescales the noise exactly,
/// so only f32 rounding and the [0,1] mapping remain).
const SNR_REL_TOL: f32 = 0.10;
/// A box edge must lie within this many pixels of a membrane pixel of its object.
const EDGE_TOL_PX: f32 = 1.0;
/// Non-square, so that a swapped (h, w) shows.
const SIZE: (usize, usize) = (160, 224);

fn cfg(seed: u64) -> SynthConfig {
    SynthConfig::new(SIZE, 0.1, seed)
}

/// Extent `(jmin, imin, jmax, imax)` of the pixels labelled `label`, or None.
fn extent(s: &SynthImage, label: u8) -> Option<(usize, usize, usize, usize)> {
    let mut e: Option<(usize, usize, usize, usize)> = None;
    for ((i, j), &l) in s.outer_membrane.indexed_iter() {
        if l == label {
            e = Some(match e {
                None => (j, i, j, i),
                Some((j0, i0, j1, i1)) => (j0.min(j), i0.min(i), j1.max(j), i1.max(i)),
            });
        }
    }
    e
}

#[test]
fn deterministic_given_seed_and_index() {
    let c = cfg(7);
    let a = generate(&c, 3);
    let b = generate(&c, 3);
    assert_eq!(a.image, b.image);
    assert_eq!(a.clean, b.clean);
    assert_eq!(a.boxes, b.boxes);
    let other_index = generate(&c, 4);
    assert_ne!(a.image, other_index.image, "index must change the image");
    let other_seed = generate(&cfg(8), 3);
    assert_ne!(a.image, other_seed.image, "seed must change the image");
    assert_eq!(a.image.dim(), SIZE);
    assert!(a
        .image
        .iter()
        .chain(a.clean.iter())
        .all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn boxes_are_tight_on_the_outer_membrane() {
    let c = cfg(11);
    let mut checked = 0;
    for index in 0..6 {
        let s = generate(&c, index);
        for (k, b) in s.boxes.iter().enumerate() {
            assert_eq!(b.class, MITO_CLASS);
            let label = (k + 1) as u8;
            let (j0, i0, j1, i1) = extent(&s, label).expect("every box has membrane pixels");
            // No membrane pixel outside the box (pixel (i, j) spans [j, j+1) x [i, i+1)).
            assert!(
                j0 as f32 >= b.bbox[0] && i0 as f32 >= b.bbox[1],
                "image {index} box {k}: membrane pixel ({j0}, {i0}) left/above box {:?}",
                b.bbox
            );
            assert!(
                (j1 + 1) as f32 <= b.bbox[2] && (i1 + 1) as f32 <= b.bbox[3],
                "image {index} box {k}: membrane pixel ({j1}, {i1}) right/below box {:?}",
                b.bbox
            );
            // Every edge touches a membrane pixel.
            let gaps = [
                j0 as f32 - b.bbox[0],
                i0 as f32 - b.bbox[1],
                b.bbox[2] - (j1 + 1) as f32,
                b.bbox[3] - (i1 + 1) as f32,
            ];
            assert!(
                gaps.iter().all(|g| g.abs() <= EDGE_TOL_PX),
                "image {index} box {k}: edge gaps {gaps:?} px"
            );
            // The membrane belongs to a mitochondrion: most of its pixels are in that region.
            let n_lab = s.outer_membrane.iter().filter(|&&l| l == label).count();
            let n_mito = s
                .outer_membrane
                .iter()
                .zip(s.region.iter())
                .filter(|(&l, &r)| l == label && r == region::MITOCHONDRION)
                .count();
            assert!(
                n_mito * 10 >= n_lab * 9,
                "image {index} box {k}: {n_mito}/{n_lab} in region"
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} boxes checked");
}

/// Mean of `clean` over the mask's inner rim (mask pixels within `r_in` px, Chebyshev, of a
/// non-mask pixel) and over a ring outside it (non-mask pixels within `r_out` px of the mask).
fn rim_means(s: &SynthImage, label: u8, r_in: isize, r_out: isize) -> (f32, f32) {
    let (h, w) = s.clean.dim();
    let near = |i: usize, j: usize, r: isize, want: bool| {
        for di in -r..=r {
            for dj in -r..=r {
                let (ii, jj) = (i as isize + di, j as isize + dj);
                if ii >= 0
                    && jj >= 0
                    && (ii as usize) < h
                    && (jj as usize) < w
                    && (s.outer_membrane[[ii as usize, jj as usize]] == label) == want
                {
                    return true;
                }
            }
        }
        false
    };
    let (mut si, mut ni, mut so, mut no) = (0.0f32, 0usize, 0.0f32, 0usize);
    for ((i, j), &l) in s.outer_membrane.indexed_iter() {
        if l == label && near(i, j, r_in, false) {
            si += s.clean[[i, j]];
            ni += 1;
        } else if l == 0 && near(i, j, r_out, true) {
            so += s.clean[[i, j]];
            no += 1;
        }
    }
    (si / ni.max(1) as f32, so / no.max(1) as f32)
}

/// `(dark, total)`: of all objects of `images`, how many are darker just inside their mask's
/// edge than just outside ([`rim_means`] with `r_in`, `r_out`).
fn dark_rims(
    images: impl Iterator<Item = SynthImage>,
    r_in: isize,
    r_out: isize,
) -> (usize, usize) {
    let (mut dark, mut total) = (0, 0);
    for s in images {
        for k in 0..s.boxes.len() {
            let (inner, outer) = rim_means(&s, (k + 1) as u8, r_in, r_out);
            total += 1;
            if inner < outer {
                dark += 1;
            }
        }
    }
    (dark, total)
}

/// The mask is what is drawn: the image is darker just inside the mask's edge (the membrane
/// rim, dense = dark) than just outside it, for nearly every object.
#[test]
fn outer_membrane_is_drawn_dark() {
    let c = cfg(13);
    let (dark, total) = dark_rims((0..6).map(|i| generate(&c, i)), 3, 4);
    assert!(
        total >= 6 && dark * 10 >= total * 9,
        "dark rim in {dark}/{total} objects"
    );
}

#[test]
fn measured_snr_matches_the_request() {
    for (k, snr) in [0.05f32, 0.1, 0.15].into_iter().enumerate() {
        let mut c = cfg(21 + k as u64);
        c.snr = snr;
        for index in 0..2 {
            let s = generate(&c, index);
            // Independent of the library's helper: var(clean) / var(image - clean).
            let n = s.image.len() as f64;
            let mean = |it: &mut dyn Iterator<Item = f64>| it.sum::<f64>() / n;
            let ms = mean(&mut s.clean.iter().map(|&v| v as f64));
            let vs = mean(&mut s.clean.iter().map(|&v| (v as f64 - ms).powi(2)));
            let diff: Vec<f64> = s
                .image
                .iter()
                .zip(s.clean.iter())
                .map(|(&a, &b)| (a - b) as f64)
                .collect();
            let md = diff.iter().sum::<f64>() / n;
            let vn = diff.iter().map(|d| (d - md).powi(2)).sum::<f64>() / n;
            let measured = (vs / vn) as f32;
            let rel = (measured - snr).abs() / snr;
            println!("snr asked {snr}, measured {measured:.6} (rel err {rel:.2e})");
            assert!(
                rel <= SNR_REL_TOL,
                "asked {snr}, measured {measured} (rel err {rel:.4})"
            );
            assert!((s.measured_snr() - measured).abs() / snr < 1e-3);
        }
    }
}

#[test]
fn incomplete_iff_cut_by_the_border() {
    let (h, w) = SIZE;
    let touches = |b: &[f32; 4]| b[0] <= 0.0 || b[1] <= 0.0 || b[2] >= w as f32 || b[3] >= h as f32;
    let mut c = cfg(31);
    c.p_incomplete = 0.6;
    let (mut n_cut, mut n_whole) = (0, 0);
    for index in 0..6 {
        let s = generate(&c, index);
        for b in &s.boxes {
            assert!(
                b.bbox[0] >= 0.0
                    && b.bbox[1] >= 0.0
                    && b.bbox[2] <= w as f32
                    && b.bbox[3] <= h as f32
            );
            assert_eq!(b.incomplete, touches(&b.bbox), "box {:?}", b.bbox);
            if b.incomplete {
                n_cut += 1;
            } else {
                n_whole += 1;
            }
        }
    }
    assert!(n_cut > 0 && n_whole > 0, "cut {n_cut}, whole {n_whole}");
    // Never cut when not asked for.
    c.p_incomplete = 0.0;
    for index in 0..4 {
        assert!(generate(&c, index).boxes.iter().all(|b| !b.incomplete));
    }
}

#[test]
fn one_to_five_mitochondria() {
    let c = cfg(41);
    let mut seen = [false; 6];
    for index in 0..12 {
        let n = generate(&c, index).boxes.len();
        assert!((1..=5).contains(&n), "image {index}: {n} mitochondria");
        seen[n] = true;
    }
    assert!(
        seen.iter().filter(|&&s| s).count() >= 3,
        "counts seen: {seen:?}"
    );
    let mut c = cfg(42);
    c.n_mito = (3, 3);
    for index in 0..3 {
        assert_eq!(generate(&c, index).boxes.len(), 3);
    }
}

/// 4-connected components of `mask`, each as its list of pixel indices (row-major).
fn components(mask: &[bool], h: usize, w: usize) -> Vec<Vec<usize>> {
    let mut seen = vec![false; h * w];
    let mut out = Vec::new();
    for start in 0..h * w {
        if !mask[start] || seen[start] {
            continue;
        }
        let mut comp = Vec::new();
        let mut stack = vec![start];
        seen[start] = true;
        while let Some(k) = stack.pop() {
            comp.push(k);
            let (i, j) = (k / w, k % w);
            let mut push = |q: usize| {
                if mask[q] && !seen[q] {
                    seen[q] = true;
                    stack.push(q);
                }
            };
            if i > 0 {
                push(k - w);
            }
            if i + 1 < h {
                push(k + w);
            }
            if j > 0 {
                push(k - 1);
            }
            if j + 1 < w {
                push(k + 1);
            }
        }
        out.push(comp);
    }
    out
}

/// Probability that a random mitochondrion is brighter than a random distractor (Mann-Whitney
/// AUC; 0.5 = indistinguishable, 0 or 1 = perfectly separable by a threshold).
fn auc(pos: &[f32], neg: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for p in pos {
        for n in neg {
            s += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    s / (pos.len() * neg.len()) as f32
}

/// Mitochondria are not separable from the other organelles by brightness alone: the mean
/// intensity of each mitochondrion's footprint, compared with that of every vesicle, dense-core
/// granule and ice blob (>= 200 px) and of cytoplasm patches of the median mitochondrion's size,
/// gives an AUC well away from 0 and 1 (measured on the noise-free `clean` image, the hardest
/// case for the claim; noise only pushes the AUC towards 0.5).
#[test]
fn mitochondria_not_separable_by_brightness() {
    let c = SynthConfig::new((384, 384), 0.1, 51);
    let (h, w) = c.size;
    let (mut mito, mut other) = (Vec::new(), Vec::new());
    let mut per_class = vec![Vec::new(); region::NAMES.len()];
    for index in 0..10 {
        let s = generate(&c, index);
        let clean = s.clean.as_slice().unwrap();
        let reg = s.region.as_slice().unwrap();
        let lab = s.outer_membrane.as_slice().unwrap();
        let mean = |px: &[usize]| px.iter().map(|&k| clean[k]).sum::<f32>() / px.len() as f32;
        for k in 0..s.boxes.len() {
            let px: Vec<usize> = (0..h * w).filter(|&q| lab[q] == (k + 1) as u8).collect();
            mito.push(mean(&px));
            per_class[region::MITOCHONDRION as usize].push(mean(&px));
        }
        for code in [region::VESICLE, region::DENSE_GRANULE, region::ICE] {
            let mask: Vec<bool> = reg.iter().map(|&r| r == code).collect();
            for comp in components(&mask, h, w)
                .into_iter()
                .filter(|c| c.len() >= 200)
            {
                other.push(mean(&comp));
                per_class[code as usize].push(mean(&comp));
            }
        }
        // Cytoplasm patches: 40x40 windows free of any organelle.
        for bi in 0..h / 40 {
            for bj in 0..w / 40 {
                let px: Vec<usize> = (bi * 40..bi * 40 + 40)
                    .flat_map(|i| (bj * 40..bj * 40 + 40).map(move |j| i * w + j))
                    .collect();
                if px.iter().all(|&q| reg[q] == region::CYTOPLASM) {
                    other.push(mean(&px));
                    per_class[region::CYTOPLASM as usize].push(mean(&px));
                }
            }
        }
    }
    for (code, v) in per_class.iter().enumerate() {
        if !v.is_empty() {
            let m = v.iter().sum::<f32>() / v.len() as f32;
            let (lo, hi) = v
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            println!(
                "{:>14}: n={:4} mean={m:.3} range=[{lo:.3}, {hi:.3}]",
                region::NAMES[code],
                v.len()
            );
        }
    }
    let a = auc(&mito, &other);
    println!(
        "AUC(mitochondria brighter than distractors) = {a:.3} ({} vs {})",
        mito.len(),
        other.len()
    );
    assert!(mito.len() >= 10 && other.len() >= 20);
    assert!(
        (0.15..=0.85).contains(&a),
        "brightness separates mitochondria: AUC {a:.3}"
    );
}

/// The volume: objects are 3D (present on a run of consecutive slices, starting and ending
/// inside the stack), their per-slice boxes change smoothly, and the 3D box is the union.
#[test]
fn stack_objects_are_smooth_in_z() {
    use cryodet::synth::generate_stack;
    let mut c = SynthConfig::new((128, 160), 0.1, 61);
    c.n_mito = (2, 3);
    let nz = 24;
    let st = generate_stack(&c, nz);
    assert_eq!(st.volume.dim(), (nz, 128, 160));
    assert!(st.volume.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(!st.objects.is_empty());
    for (k, o) in st.objects.iter().enumerate() {
        let zs: Vec<usize> = o.slices.iter().map(|(z, _)| *z).collect();
        assert!(
            zs.windows(2).all(|p| p[1] == p[0] + 1),
            "object {k}: slices {zs:?} not consecutive"
        );
        assert!(
            zs.len() >= 3 && zs[0] > 0 && *zs.last().unwrap() < nz - 1,
            "object {k}: {zs:?}"
        );
        let mut u = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
        for (_, b) in &o.slices {
            u = [
                u[0].min(b.bbox[0]),
                u[1].min(b.bbox[1]),
                u[2].max(b.bbox[2]),
                u[3].max(b.bbox[3]),
            ];
        }
        assert_eq!(
            o.bbox3d,
            [
                u[0],
                u[1],
                zs[0] as f32,
                u[2],
                u[3],
                (zs[zs.len() - 1] + 1) as f32
            ]
        );
        // Smooth: consecutive boxes differ by a few pixels per side, not by jumps.
        for p in o.slices.windows(2) {
            let d = (0..4)
                .map(|i| (p[0].1.bbox[i] - p[1].1.bbox[i]).abs())
                .fold(0.0, f32::max);
            assert!(
                d <= 12.0,
                "object {k}: box jumps {d} px between slices {} and {}",
                p[0].0,
                p[1].0
            );
        }
    }
    let again = generate_stack(&c, nz);
    assert_eq!(again.volume, st.volume);
}

/// `cryodet synth` writes what `generate` makes: PNGs, VOC boxes (read back with the io
/// reader, truncated flags), the manifest's groups, and the MRC stack with its JSON.
#[test]
fn cli_writes_a_readable_dataset() {
    use cryodet::cli::synth::{image_name, run, Args};
    use cryodet::io::voc::read_voc;
    let out = cryodet::testutil::temp_dir("synth-cli");
    let args = Args {
        size: Some(96),
        snr: Some(0.1),
        seed: 5,
        bit_depth: 16,
        mrc_slices: Some(8),
        p_incomplete: 0.3,
        slice_images: true,
        classic: true,
        ..self::args(&out, 5)
    };
    run(args).expect("synth run");
    let mut cfg = SynthConfig::new((96, 96), 0.1, 5);
    cfg.n_mito = (1, 3);
    let manifest = std::fs::read_to_string(out.join("manifest.csv")).unwrap();
    let rows: Vec<&str> = manifest.lines().collect();
    assert_eq!(rows[0], "image,group");
    assert_eq!(rows.len(), 6);
    for index in 0..5 {
        let name = image_name(index, index / 2);
        assert_eq!(rows[index + 1], format!("{name}.png,g{:03}", index / 2));
        assert!(out.join("images").join(format!("{name}.png")).is_file());
        let ann = read_voc(&out.join("annotations").join(format!("{name}.xml"))).unwrap();
        let s = generate(&cfg, index);
        assert_eq!((ann.width, ann.height), (96, 96));
        assert_eq!(ann.objects.len(), s.boxes.len());
        for (o, b) in ann.objects.iter().zip(&s.boxes) {
            assert_eq!(o.name, MITO_CLASS);
            assert_eq!(o.bbox, b.bbox);
            assert_eq!(o.truncated, b.incomplete);
        }
    }
    let mrc = std::fs::metadata(out.join("stack.mrc")).unwrap();
    assert_eq!(mrc.len() as usize, 1024 + 4 * 8 * 96 * 96);
    let gt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("stack_gt.json")).unwrap()).unwrap();
    assert_eq!(gt["shape"], serde_json::json!([8, 96, 96]));
    let objects = gt["objects"].as_array().unwrap();
    // --slice-images: slice z's annotation holds exactly the objects' boxes at z in stack_gt.json.
    let mut n_boxes = 0;
    for z in 0..8 {
        let name = format!("stack_z{z:03}");
        assert!(out
            .join("slices/images")
            .join(format!("{name}.png"))
            .is_file());
        let ann = read_voc(&out.join("slices/annotations").join(format!("{name}.xml"))).unwrap();
        let want: Vec<[f32; 4]> = objects
            .iter()
            .flat_map(|o| o["slices"].as_array().unwrap().iter())
            .filter(|s| s["z"] == z)
            .map(|s| std::array::from_fn(|k| s["bbox"][k].as_f64().unwrap() as f32))
            .collect();
        let got: Vec<[f32; 4]> = ann.objects.iter().map(|o| o.bbox).collect();
        assert_eq!(got, want, "slice {z}");
        n_boxes += got.len();
    }
    assert!(n_boxes > 0, "no object in any slice");
    let _ = std::fs::remove_dir_all(&out);
}

// ---------------------------------------------------------------------------------------------
// Randomized generator (domain randomization, `cryodet synth` default).

use cryodet::synth::{appearance_of, generate_random, Family, RandomConfig};

/// A fast randomized configuration: small fixed size, the given families.
fn rcfg(seed: u64, families: &[Family]) -> RandomConfig {
    let mut c = RandomConfig::new(seed);
    c.families = families.to_vec();
    c.ranges.size = Some(SIZE);
    c
}

/// Box checks shared by the tests: inside the image, tight on the object's membrane pixels,
/// `incomplete` iff it touches the border.
fn check_boxes(s: &SynthImage, what: &str) -> usize {
    let (h, w) = s.image.dim();
    for (k, b) in s.boxes.iter().enumerate() {
        assert!(
            b.bbox[0] >= 0.0 && b.bbox[1] >= 0.0 && b.bbox[2] <= w as f32 && b.bbox[3] <= h as f32,
            "{what} box {k} {:?} outside {w}x{h}",
            b.bbox
        );
        let (j0, i0, j1, i1) = extent(s, (k + 1) as u8).expect("every box has membrane pixels");
        assert_eq!(
            b.bbox,
            [j0 as f32, i0 as f32, (j1 + 1) as f32, (i1 + 1) as f32],
            "{what} box {k} not tight on its membrane"
        );
        let touches =
            b.bbox[0] <= 0.0 || b.bbox[1] <= 0.0 || b.bbox[2] >= w as f32 || b.bbox[3] >= h as f32;
        assert_eq!(b.incomplete, touches, "{what} box {k}");
    }
    s.boxes.len()
}

#[test]
fn every_family_renders_with_tight_boxes() {
    for (fi, f) in Family::known().enumerate() {
        let c = rcfg(70 + fi as u64, &[f]);
        let mut n_boxes = 0;
        for index in 0..2 {
            let s = generate_random(&c, index);
            assert_eq!(s.family, Some(f));
            assert_eq!(s.image.dim(), SIZE);
            assert!(
                s.image
                    .iter()
                    .chain(s.clean.iter())
                    .all(|v| (0.0..=1.0).contains(v)),
                "{}: values outside [0, 1]",
                f.name()
            );
            let (lo, hi) = s
                .image
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            assert!(hi - lo > 0.5, "{}: flat image [{lo}, {hi}]", f.name());
            assert!(s.pixel_nm > 0.0 && s.snr > 0.0);
            n_boxes += check_boxes(&s, f.name());
        }
        assert!(n_boxes >= 1, "{}: no mitochondrion in 2 images", f.name());
    }
}

#[test]
fn randomized_is_deterministic_per_seed_and_index() {
    let c = rcfg(81, &Family::ALL);
    let a = generate_random(&c, 5);
    let b = generate_random(&c, 5);
    assert_eq!(a.image, b.image);
    assert_eq!(a.boxes, b.boxes);
    assert_eq!((a.family, a.pixel_nm, a.snr), (b.family, b.pixel_nm, b.snr));
    assert_eq!(appearance_of(&c, 5).family, a.family.unwrap());
    assert_ne!(a.image, generate_random(&c, 6).image);
    assert_ne!(a.image, generate_random(&rcfg(82, &Family::ALL), 5).image);
}

/// The default ranges: pixel size in 0.8-4 nm, side in 256..=1600 following the field of view
/// (0.6-3 µm) unless clamped; families drawn uniformly (each of 8 seen in 64 draws).
#[test]
fn scale_and_families_follow_the_ranges() {
    let c = RandomConfig::new(91);
    let mut seen = std::collections::HashSet::new();
    for index in 0..64 {
        let a = appearance_of(&c, index);
        seen.insert(a.family);
        assert!((0.8..=4.0).contains(&a.pixel_nm), "pixel {}", a.pixel_nm);
        let (h, w) = a.size;
        assert_eq!(h, w);
        assert!((256..=1600).contains(&h), "side {h}");
        let fov = h as f32 * a.pixel_nm;
        if h > 256 && h < 1600 {
            assert!(
                (599.0..=3001.0).contains(&fov),
                "field {fov} nm at side {h}"
            );
        }
    }
    assert_eq!(seen.len(), 8, "families seen: {seen:?}");
    // A fixed side: the pixel size keeps the field within 0.6-3 µm where it can.
    let mut c = RandomConfig::new(92);
    c.ranges.size = Some((1000, 1000));
    for index in 0..16 {
        let a = appearance_of(&c, index);
        assert_eq!(a.size, (1000, 1000));
        assert!((0.8..=3.0).contains(&a.pixel_nm), "pixel {}", a.pixel_nm);
    }
}

/// A temporary output directory removed on drop.
struct TmpDir(std::path::PathBuf);
impl TmpDir {
    fn new(tag: &str) -> Self {
        TmpDir(cryodet::testutil::temp_dir(&format!("synth-{tag}")))
    }
}
impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn args(out: &std::path::Path, n: usize) -> cryodet::cli::synth::Args {
    cryodet::cli::synth::Args {
        out: out.to_path_buf(),
        n,
        size: Some(128),
        snr: None,
        seed: 3,
        groups: 2,
        bit_depth: 8,
        mrc_slices: None,
        min_mito: 1,
        max_mito: 3,
        p_incomplete: 0.3,
        pixel_nm: None,
        preview: false,
        slice_images: false,
        classic: false,
        families: vec![],
        exclude_family: vec![],
        pixel_nm_range: None,
        fov_nm_range: None,
        snr_range: None,
        resume: false,
    }
}

/// The randomized configuration `args()` runs with, restricted to `family`.
fn args_config(family: Family) -> RandomConfig {
    let mut c = RandomConfig::new(3);
    c.families = vec![family];
    c.ranges.size = Some((128, 128));
    c.n_mito = (1, 3);
    c
}

/// The rows of `dir/manifest.csv`, split at commas.
fn manifest_rows(dir: &std::path::Path) -> Vec<Vec<String>> {
    let m = std::fs::read_to_string(dir.join("manifest.csv")).unwrap();
    m.lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// Run the CLI on `n` images of `args()` changed by `set`: the output directory and its
/// manifest rows.
fn run_cli(
    tag: &str,
    n: usize,
    set: impl FnOnce(&mut cryodet::cli::synth::Args),
) -> (TmpDir, Vec<Vec<String>>) {
    let tmp = TmpDir::new(tag);
    let mut a = args(&tmp.0, n);
    set(&mut a);
    cryodet::cli::synth::run(a).expect(tag);
    let rows = manifest_rows(&tmp.0);
    (tmp, rows)
}

/// The pHYs chunk of a PNG, read back with the png crate: pixel size in nm.
fn png_pixel_nm(path: &std::path::Path) -> f64 {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let rd = dec.read_info().unwrap();
    let d = rd.info().pixel_dims.expect("pHYs chunk");
    assert_eq!(d.unit, png::Unit::Meter);
    assert_eq!(d.xppu, d.yppu);
    1e9 / d.xppu as f64
}

/// The CLI: manifest columns `image,group,family,pixel_nm,snr`, every PNG with its pixel size
/// in pHYs, annotations equal to `generate_random`, `--families` and `--exclude-family` select.
#[test]
fn cli_randomized_dataset_with_families_and_pixel_size() {
    use cryodet::cli::synth::{image_name, run};
    use cryodet::io::voc::read_voc;
    let tmp = TmpDir::new("rand");
    let mut a = args(&tmp.0, 4);
    a.families = vec!["slice".into(), "neuron".into()];
    a.exclude_family = vec!["neuron".into()];
    run(a).expect("synth run");
    let rows = manifest_rows(&tmp.0);
    assert_eq!(rows[0], ["image", "group", "family", "pixel_nm", "snr"]);
    assert_eq!(rows.len(), 5);
    let c = args_config(Family::Slice);
    for index in 0..4 {
        let name = image_name(index, index / 2);
        let r = &rows[index + 1];
        assert_eq!(r[0], format!("{name}.png"));
        assert_eq!(r[1], format!("g{:03}", index / 2));
        assert_eq!(r[2], "slice");
        let s = generate_random(&c, index);
        let px: f64 = r[3].parse().unwrap();
        assert!((px - s.pixel_nm as f64).abs() < 1e-3);
        assert!((r[4].parse::<f64>().unwrap() - s.snr as f64).abs() < 1e-3 * s.snr as f64 + 1e-4);
        let png_px = png_pixel_nm(&tmp.0.join("images").join(format!("{name}.png")));
        // pixels_per_metre = round(1e9 / pixel_nm): relative rounding error < 1e-4 here.
        assert!(
            (png_px - px).abs() / px < 1e-3,
            "pHYs {png_px} nm vs {px} nm"
        );
        let ann = read_voc(&tmp.0.join("annotations").join(format!("{name}.xml"))).unwrap();
        let got: Vec<[f32; 4]> = ann.objects.iter().map(|o| o.bbox).collect();
        let want: Vec<[f32; 4]> = s.boxes.iter().map(|b| b.bbox).collect();
        assert_eq!(got, want);
    }
}

/// `--classic` keeps the old manifest (two columns) and writes pHYs with the classic pixel size.
#[test]
fn cli_classic_writes_pixel_size_too() {
    let tmp = TmpDir::new("classic");
    let mut a = args(&tmp.0, 1);
    a.classic = true;
    cryodet::cli::synth::run(a).unwrap();
    let m = std::fs::read_to_string(tmp.0.join("manifest.csv")).unwrap();
    assert_eq!(m.lines().next(), Some("image,group"));
    let px = png_pixel_nm(&tmp.0.join("images/synth_g000_00000.png"));
    let want = cryodet::synth::default_pixel_nm((128, 128)) as f64;
    assert!((px - want).abs() / want < 1e-3, "{px} vs {want}");
}

/// Bad ranges and family names fail with a one-line error naming the problem.
#[test]
fn cli_rejects_bad_ranges_and_families() {
    let tmp = TmpDir::new("bad");
    type SetArg = Box<dyn Fn(&mut cryodet::cli::synth::Args)>;
    let cases: Vec<(SetArg, &str)> = vec![
        (
            Box::new(|a| a.families = vec!["nope".into()]),
            "unknown family",
        ),
        // The reserved family is listed among the valid names.
        (
            Box::new(|a| a.exclude_family = vec!["lamellae".into()]),
            "inverted, lamella (reserved",
        ),
        (
            Box::new(|a| {
                a.exclude_family = cryodet::synth::Family::ALL
                    .iter()
                    .map(|f| f.name().to_string())
                    .collect()
            }),
            "no family",
        ),
        (
            Box::new(|a| a.pixel_nm_range = Some("4,1".into())),
            "A must be <= B",
        ),
        (
            Box::new(|a| a.pixel_nm_range = Some("1".into())),
            "two numbers",
        ),
        (
            Box::new(|a| a.pixel_nm_range = Some("0.01,1".into())),
            "pixel size range",
        ),
        (
            Box::new(|a| a.fov_nm_range = Some("10,20".into())),
            "field of view",
        ),
        (Box::new(|a| a.snr_range = Some("0,1".into())), "snr range"),
        (
            Box::new(|a| {
                a.classic = true;
                a.families = vec!["slice".into()];
            }),
            "--classic",
        ),
    ];
    for (k, (set, want)) in cases.iter().enumerate() {
        let mut a = args(&tmp.0.join(format!("c{k}")), 1);
        set(&mut a);
        let e = cryodet::cli::synth::run(a).expect_err(want).to_string();
        assert!(e.contains(want), "case {k}: {e:?} lacks {want:?}");
        assert!(!e.contains('\n'), "case {k}: multi-line error {e:?}");
    }
}

/// The membrane is drawn: in the noise-free image of non-inverted families the outer membrane's
/// rim is darker than the ring just outside it for most objects (CTF fringes and neighbours
/// allow a few exceptions).
#[test]
fn randomized_outer_membrane_is_dark() {
    let fams: Vec<Family> = Family::ALL
        .into_iter()
        .filter(|f| *f != Family::Inverted)
        .collect();
    let c = rcfg(95, &fams);
    let (dark, total) = dark_rims((0..14).map(|i| generate_random(&c, i)), 2, 3);
    println!("dark rim in {dark}/{total}");
    assert!(
        total >= 10 && dark * 10 >= total * 7,
        "dark rim in {dark}/{total}"
    );
}

/// The default family set is the eight of before `lamella` existed, so default seeds keep their
/// images: `RandomConfig::new` and the CLI without `--families` draw from `Family::ALL`, which
/// lacks the reserved `lamella`; 400 default draws never give it (were it among 9 uniformly
/// drawn families, all 400 would miss it with probability (8/9)^400 < 1e-20), and none of them
/// carries a milling.
#[test]
fn default_families_exclude_the_reserved_lamella() {
    let names: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
    assert_eq!(
        names,
        [
            "projection",
            "slice",
            "neuron",
            "swollen",
            "synapse",
            "phase-plate",
            "denoised",
            "inverted"
        ]
    );
    assert_eq!(Family::RESERVED, [Family::Lamella]);
    assert_eq!(Family::parse(" lamella"), Some(Family::Lamella));
    let c = RandomConfig::new(17);
    assert_eq!(c.families, Family::ALL.to_vec());
    for index in 0..400 {
        let a = appearance_of(&c, index);
        assert_ne!(a.family, Family::Lamella, "image {index}");
        assert!(
            a.milling.is_none(),
            "image {index} milled as {:?}",
            a.family
        );
    }
    // The CLI's default set: the same files as the eight named explicitly.
    let (t1, rows1) = run_cli("fam-default", 3, |_| {});
    let (t2, rows2) = run_cli("fam-named", 3, |a| {
        a.families = names.iter().map(|n| n.to_string()).collect()
    });
    assert_eq!(rows1, rows2);
    let read = |d: &std::path::Path, f: &str| std::fs::read(d.join(f)).unwrap();
    for k in 0..3 {
        let f = format!("images/{}.png", cryodet::cli::synth::image_name(k, k / 2));
        assert_eq!(read(&t1.0, &f), read(&t2.0, &f), "{f}");
    }
}

/// Profile of `x` across the milling direction `m`: over the square
/// `|(p - c) . m|, |(p - c) . n| < min(h, w) / (2 sqrt 2)` (`n` = `m` turned by 90 degrees, `c`
/// the image centre; inside the image at every angle, so every bin averages the same stretch
/// along `m`), the mean of `x` in 1-px bins of `(p - c) . n`, over specimen pixels (not outside
/// the cell, ice or the cap). Bins of fewer than 16 pixels are dropped, then the
/// least-squares line through the bin means is removed (a ramp is not a stripe).
fn across_profile(x: &ndarray::Array2<f32>, reg: &ndarray::Array2<u8>, angle: f32) -> Vec<f64> {
    let (h, w) = x.dim();
    let (m, n) = ([angle.cos(), angle.sin()], [-angle.sin(), angle.cos()]);
    let l = h.min(w) as f32 / (2.0 * std::f32::consts::SQRT_2);
    let nb = 2 * l.ceil() as usize + 2;
    let (mut sum, mut cnt) = (vec![0f64; nb], vec![0usize; nb]);
    for ((i, j), &v) in x.indexed_iter() {
        let r = reg[[i, j]];
        if r == region::OUTSIDE || r == region::CARBON || r == region::ICE {
            continue;
        }
        let (px, py) = (
            j as f32 + 0.5 - 0.5 * w as f32,
            i as f32 + 0.5 - 0.5 * h as f32,
        );
        let (along, across) = (px * m[0] + py * m[1], px * n[0] + py * n[1]);
        if along.abs() < l && across.abs() < l {
            let b = (across + l).floor() as usize;
            sum[b] += v as f64;
            cnt[b] += 1;
        }
    }
    let pts: Vec<(f64, f64)> = (0..nb)
        .filter(|&b| cnt[b] >= 16)
        .map(|b| (b as f64, sum[b] / cnt[b] as f64))
        .collect();
    let k = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / k;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / k;
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    pts.iter()
        .map(|p| p.1 - my - sxy / sxx * (p.0 - mx))
        .collect()
}

/// Pearson correlation of two equally long series (0 if either is constant).
fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    if va > 0.0 && vb > 0.0 {
        cov / (va * vb).sqrt()
    } else {
        0.0
    }
}

/// Curtaining: the clean `lamella` image's profile across its milling direction follows the
/// profile of its curtain factor `f` (grooves, `f < 1`, are thinner, so brighter: a negative
/// correlation), through the CTF, the scene and the display map; a `projection` image of the
/// same seed, profiled in the same frame against the same `f` (not drawn into it), does not.
/// Fails if the curtains are not drawn, drawn too weakly to show, or drawn in another
/// direction. Measured (seed 121, 8 images each, 256 px at 2 nm/px; printout): see the
/// bounds. The cap (region `carbon`: a lamella has no support film) never covers a
/// mitochondrion's outer membrane, and the boxes stay tight.
#[test]
fn lamella_images_show_curtains_along_the_milling_direction() {
    let cfg = |f: Family| {
        let mut c = RandomConfig::new(121);
        c.families = vec![f];
        c.ranges.size = Some((256, 256));
        c.ranges.pixel_nm = (2.0, 2.0);
        c
    };
    let (lam, proj) = (cfg(Family::Lamella), cfg(Family::Projection));
    let (mut sum_lam, mut sum_proj, mut caps) = (0f64, 0f64, 0);
    let n = 8;
    for index in 0..n {
        let app = appearance_of(&lam, index);
        let ml = app.milling.expect("lamella images are milled");
        let f = ml.curtain_factor(256, 256, app.pixel_nm);
        let sl = generate_random(&lam, index);
        assert_eq!(sl.family, Some(Family::Lamella));
        let sp = generate_random(&proj, index);
        let rl = correlation(
            &across_profile(&sl.clean, &sl.region, ml.angle),
            &across_profile(&f, &sl.region, ml.angle),
        );
        let rp = correlation(
            &across_profile(&sp.clean, &sp.region, ml.angle),
            &across_profile(&f, &sp.region, ml.angle),
        );
        println!(
            "image {index}: corr(image, curtains) across: lamella {rl:.2}, projection {rp:.2}"
        );
        sum_lam += rl;
        sum_proj += rp;
        if sl.region.iter().any(|&r| r == region::CARBON) {
            caps += 1;
        }
        for (r, &o) in sl.region.iter().zip(sl.outer_membrane.iter()) {
            assert!(
                !(*r == region::CARBON && o != 0),
                "image {index}: cap over a mitochondrion"
            );
        }
        check_boxes(&sl, "lamella");
    }
    let (ml, mp) = (sum_lam / n as f64, sum_proj / n as f64);
    println!("mean correlation: lamella {ml:.2}, projection {mp:.2}; caps in {caps}/{n}");
    assert!(ml <= -0.6, "lamella: image profile vs curtains {ml:.2}");
    assert!(
        mp.abs() <= 0.4,
        "projection: image profile vs curtains {mp:.2}"
    );
}

/// `--families lamella` writes lamella images: the manifest's family column says `lamella`
/// and the annotations are those of `generate_random`; `--exclude-family lamella` is accepted
/// (and changes nothing: the default set lacks it).
#[test]
fn cli_lamella_family_in_manifest() {
    use cryodet::cli::synth::image_name;
    let (tmp, rows) = run_cli("lamella", 2, |a| a.families = vec!["lamella".into()]);
    assert_eq!(rows.len(), 3);
    let c = args_config(Family::Lamella);
    for index in 0..2 {
        assert_eq!(rows[index + 1][2], "lamella");
        let name = image_name(index, index / 2);
        let ann =
            cryodet::io::voc::read_voc(&tmp.0.join(format!("annotations/{name}.xml"))).unwrap();
        let got: Vec<[f32; 4]> = ann.objects.iter().map(|o| o.bbox).collect();
        let want: Vec<[f32; 4]> = generate_random(&c, index)
            .boxes
            .iter()
            .map(|b| b.bbox)
            .collect();
        assert_eq!(got, want);
    }
    let (_t2, rows) = run_cli("lamella-excl", 2, |a| {
        a.exclude_family = vec!["lamella".into()]
    });
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r[2] != "lamella"), "{rows:?}");
}
