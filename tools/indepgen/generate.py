#!/usr/bin/env python3
"""Independent synthetic cryo-ET test set for cryodet (a final test only: never train on it,
never choose anything on it).

    python3 -m tools.indepgen.generate OUT_DIR [--seed 2026] [--n-proj 50] [--n-tomo 10]
        [--slices-per-tomo 5] [--n-scale 30] [--n-stacks 4] [--parts test2d,scale,stacks]

Writes
  OUT/test2d/{images,annotations}/, manifest.csv (image,group,kind,pixel_nm,snr), groups.csv
      projections (kind=projection, SNR 0.05-0.15) and tomogram slices (kind=slice);
      800 px at 1.25 nm/px by default;
  OUT/scale/px{0.60,1.25,2.50,5.00}/{images,annotations}/, manifest.csv: the same scenes
      (1600 nm fields, mitochondria 100-800 nm wide and up to ~1.5 um long) projected at four
      pixel sizes with one dose per scene (SNR 0.05-0.15 at 1.25 nm/px);
  OUT/stacks/stackN.mrc (8 by default, 2-5 mitochondria each; float32, voxel size in the header) + stackN_gt.json (3D ground truth,
      the format of tools/eval_3d.py) + stackN_slices/ (LabelImg XML per slice).
Everything is drawn from --seed; the same seed gives the same files. The models and their
sources are in the module docstrings of physics, mitochondrion, organelles, particles,
surfaces, imaging and tomo.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import numpy as np
from scipy import ndimage

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from indepgen import imaging, output, tomo  # noqa: E402
from indepgen.render import Grid, render  # noqa: E402
from indepgen.scene import Scene  # noqa: E402
from indepgen.physics import counts_for_snr, shot_noise, signal_variance  # noqa: E402
from indepgen.surfaces import Surfaces  # noqa: E402

MIN_BOX_PX = 15


def rng_for(seed, part, idx):
    return np.random.default_rng([seed, part, idx])


def box_from_indices(b, grid_x0, grid_y0, p_grid, x_off_nm, p_out, w_out, h_out):
    """Pixel-index bbox (i0, i1, j0, j1) on a grid -> continuous box on an output image whose
    origin is at x_off_nm (x) and 0 (y); clipped; (x1, y1, x2, y2, truncated) or None."""
    x1 = (grid_x0 + b[0] * p_grid - x_off_nm) / p_out
    x2 = (grid_x0 + (b[1] + 1) * p_grid - x_off_nm) / p_out
    y1 = (grid_y0 + b[2] * p_grid) / p_out
    y2 = (grid_y0 + (b[3] + 1) * p_grid) / p_out
    cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, w_out), min(y2, h_out)
    if cx2 - cx1 < MIN_BOX_PX or cy2 - cy1 < MIN_BOX_PX:
        return None
    tr = cx1 <= 0.5 or cy1 <= 0.5 or cx2 >= w_out - 0.5 or cy2 >= h_out - 0.5
    return (cx1, cy1, cx2, cy2, tr)


def union(boxes):
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    a = np.array(boxes)
    return (a[:, 0].min(), a[:, 1].max(), a[:, 2].min(), a[:, 3].max())


# ---- projections ---------------------------------------------------------------------------
def projection_scene(rng, fov_nm, p, dz, T_range, width_range, max_len=None, n_mito=None):
    T = rng.uniform(*T_range)
    sc = Scene(rng, fov_nm, fov_nm, T, margin=20.0, width_range=width_range, max_len=max_len, n_mito=n_mito)
    n = int(round(fov_nm / p))
    g = Grid(0.0, 0.0, n, n, p, -T / 2, int(np.ceil(T / dz)), T / int(np.ceil(T / dz)))
    proj, gts = render(sc, g, "projection", rng)
    return sc, g, proj, gts


def projection_image(rng, sc, p, pot, optics, counts=None, snr=None):
    n = pot.shape[0]
    xs = (np.arange(n) + 0.5) * p
    surf = Surfaces(np.random.default_rng(sc.ribo_seed + 7), sc)
    pot_s, att = surf.maps(xs, xs)
    Tm = imaging.thickness_map(xs, xs, sc.T, sc.W, optics)
    pot = pot + pot_s
    clean = imaging.image_intensity(pot, imaging.effective_thickness(pot, Tm, att), p, optics)
    mask = specimen_mask(sc, xs, pot_s, p)
    if counts is None:
        counts = counts_for_snr(clean, snr, mask)
    noisy = shot_noise(clean, counts, rng)
    m = clean[mask] if mask.any() else clean
    snr_meas = signal_variance(clean, mask) * counts / max(float(np.mean(m)), 1e-12)
    return noisy, counts, snr_meas


def specimen_mask(sc, xs, pot_s, p):
    """Pixels of cellular specimen: not under carbon or contamination, inside the cell, at
    least 25 nm from those edges (their Fresnel fringes)."""
    bad = pot_s > 1e-3
    if sc.pm is not None:
        X, Y = np.meshgrid(xs, xs)
        P = np.c_[X.ravel(), Y.ravel(), np.zeros(X.size)]
        bad |= ~sc.pm.inside_cell(P).reshape(X.shape)
    if bad.any():
        bad = ndimage.binary_dilation(bad, iterations=max(1, int(25.0 / p)))
    return ~bad


def gen_test2d(args, root, manifest, groups):
    t0 = time.time()
    p = args.pixel_nm
    fov = args.size * p
    for i in range(args.n_proj):
        rng = rng_for(args.seed, 1, i)
        sc, g, proj, gts = projection_scene(rng, fov, p, 5.0, (150.0, 350.0), (90.0, 600.0))
        optics = imaging.draw_optics(rng)
        snr = rng.uniform(0.05, 0.15)
        noisy, counts, snr_m = projection_image(rng, sc, p, proj, optics, snr=snr)
        img, _ = imaging.to_display(noisy, rng)
        boxes = [box_from_indices(gt.xy, 0, 0, p, 0.0, p, args.size, args.size) for gt in gts if gt.xy]
        stem = f"proj{i:03d}"
        output.write_annotated(root, stem, img, p, [b for b in boxes if b])
        manifest.append((stem + ".tif", stem, "projection", p, round(snr_m, 4)))
        groups.append((stem + ".tif", stem))
        print(f"test2d {stem}: {len([b for b in boxes if b])} mitochondria, SNR {snr_m:.3f}, "
              f"dose {counts / (10 * p) ** 2:.2f} e/A2, {time.time() - t0:.0f} s", flush=True)
    for i in range(args.n_tomo):
        rng = rng_for(args.seed, 2, i)
        T = rng.uniform(120.0, 250.0)
        rec, clean_rec, vgrid, sc, gts, info = tomogram(rng, args.size, p, 2.5, T, (90.0, 600.0))
        nz = rec.shape[0]
        ks = np.linspace(0.15, 0.85, args.slices_per_tomo) * nz
        ks = np.clip((ks + rng.uniform(-0.04, 0.04, len(ks)) * nz).astype(int), 0, nz - 1)
        for k in ks:
            navg = int(rng.choice([1, 2, 4]))
            rows = list(range(max(0, k - navg // 2), min(nz, k - navg // 2 + navg)))
            sl = -rec[rows].mean(0)
            cl = -clean_rec[rows].mean(0)
            if rng.random() < 0.5:  # a viewer's smoothing (3dmod / users low-pass slices)
                s = rng.uniform(0.7, 1.5)
                sl, cl = ndimage.gaussian_filter(sl, s), ndimage.gaussian_filter(cl, s)
            snr_m = signal_variance(cl) / max(float(np.var(sl - cl)), 1e-12)
            img, _ = imaging.to_display(sl, rng)
            boxes = []
            for gt in gts:
                b = union([gt.rows.get(r) for r in rows])
                if b is None:
                    continue
                bb = box_from_indices(b, vgrid.x0, vgrid.y0, p, 0.0, p, args.size, args.size)
                if bb:
                    boxes.append(bb)
            stem = f"tomo{i:02d}_z{k:03d}"
            output.write_annotated(root, stem, img, p, boxes)
            manifest.append((stem + ".tif", f"tomo{i:02d}", "slice", p, round(snr_m, 4)))
            groups.append((stem + ".tif", f"tomo{i:02d}"))
        print(f"test2d tomo{i:02d}: T {T:.0f} nm, {info}, {time.time() - t0:.0f} s", flush=True)


# ---- tomograms -------------------------------------------------------------------------------
def tomogram(rng, n, p, dz, T, width_range, n_mito=None):
    """Simulates a tilt series of a scene (field n x n px at p) and its WBP reconstruction on
    the scene's z grid. Returns (rec, clean rec, volume grid, scene, GTs, info string)."""
    fov = n * p
    margin = T / 2 * np.tan(np.deg2rad(60.0)) + 10.0
    sc = Scene(rng, fov, fov, T, margin=margin + 20.0, width_range=width_range, n_mito=n_mito)
    mx = int(np.ceil(margin / p))
    nz = int(np.ceil(T / dz))
    g = Grid(-mx * p, 0.0, n + 2 * mx, n, p, -T / 2, nz, T / nz)
    vol, gts = render(sc, g, "volume", rng)
    optics = imaging.draw_optics(rng)
    angles, scheme = tomo.draw_tilts(rng)
    surf = Surfaces(np.random.default_rng(sc.ribo_seed + 7), sc, tomogram=True)
    noisy, clean, A, defoci, counts = tomo.tilt_series(vol, g, sc, surf, optics, angles, scheme, 0.0, n, rng)
    del vol
    wn = tomo.weight(noisy, p, scheme, defoci, optics)
    wc = tomo.weight(clean, p, scheme, defoci, optics)
    ix = np.arange(mx, mx + n)
    iz = np.arange(nz)
    rec = tomo.back_project(A, wn, g, ix, iz)
    rec_c = tomo.back_project(A, wc, g, ix, iz)
    # GT indices refer to the volume grid; shift them to the field (x index - mx)
    for gt in gts:
        if gt.xy is not None:
            gt.xy = (gt.xy[0] - mx, gt.xy[1] - mx, gt.xy[2], gt.xy[3])
        gt.rows = {k: (b[0] - mx, b[1] - mx, b[2], b[3]) for k, b in gt.rows.items()}
    fg = Grid(0.0, 0.0, n, n, p, g.z0, nz, g.dz)
    info = (f"{len(angles)} tilts, {scheme['dose_total']:.0f} e/A2, defocus {optics['defocus_nm'] / 1000:.1f} um, "
            f"phaseflip {scheme['phaseflip']}, {len(sc.mitochondria)} mitochondria")
    return rec, rec_c, fg, sc, gts, info


def gen_stacks(args, root):
    t0 = time.time()
    os.makedirs(root, exist_ok=True)
    p = args.stack_pixel_nm
    n = args.stack_size
    for i in range(args.n_stacks):
        rng = rng_for(args.seed, 3, i)
        T = rng.uniform(100.0, 180.0)
        rec, rec_c, g, sc, gts, info = tomogram(rng, n, p, p, T, (90.0, 600.0), n_mito=int(rng.integers(2, 6)))
        vol = -rec  # dense = dark, as a tomogram is displayed
        vol = (vol - vol.mean()) / (vol.std() + 1e-12)
        stem = f"stack{i}"
        output.write_mrc(os.path.join(root, stem + ".mrc"), vol.astype(np.float32), p)
        nz = rec.shape[0]
        objs = []
        sdir = os.path.join(root, stem + "_slices")
        per_slice = {k: [] for k in range(nz)}
        for gt in gts:
            sl = []
            for k in sorted(gt.rows):
                bb = box_from_indices(gt.rows[k], 0.0, 0.0, p, 0.0, p, n, n)
                if bb:
                    sl.append({"z": int(k), "bbox": [round(v, 2) for v in bb[:4]]})
                    per_slice[k].append(bb)
            if not sl:
                continue
            a = np.array([s["bbox"] for s in sl])
            zs = [s["z"] for s in sl]
            objs.append({"id": len(objs) + 1, "class": "mitochondria",
                         "bbox3d": [float(a[:, 0].min()), float(a[:, 1].min()), float(min(zs)),
                                    float(a[:, 2].max()), float(a[:, 3].max()), float(max(zs) + 1)],
                         "slices": sl, "touches_top": bool(min(zs) == 0), "touches_bottom": bool(max(zs) == nz - 1)})
        output.write_json(os.path.join(root, stem + "_gt.json"),
                          {"objects": objs, "voxel_size_nm": p, "shape": [int(nz), n, n],
                           "generator": "tools/indepgen", "seed": args.seed})
        for k in range(nz):
            img, _ = imaging.to_display(vol[k], rng, force_bits=16)
            output.write_annotated(sdir, f"{stem}_z{k:03d}", img, p, per_slice[k])
        print(f"stacks {stem}: {n}x{n}x{nz} at {p} nm, {len(objs)} objects, {info}, {time.time() - t0:.0f} s",
              flush=True)


# ---- scale -----------------------------------------------------------------------------------
def resample(pot, factor):
    """Projected potential at pixel p -> p*factor: block mean (integer factor >= 1) or cubic
    interpolation (finer pixels; no detail below the simulation pixel is invented)."""
    if factor >= 1 and abs(factor - round(factor)) < 1e-9:
        f = int(round(factor))
        n = pot.shape[0] // f
        return pot[: n * f, : n * f].reshape(n, f, n, f).mean(axis=(1, 3))
    n = int(round(pot.shape[0] / factor))
    return ndimage.zoom(pot, n / pot.shape[0], order=3)


def gen_scale(args, root):
    t0 = time.time()
    p_sim = 1.25
    fov = args.scale_fov_nm
    pix = [float(v) for v in args.scale_pixels.split(",")]
    man = {q: [] for q in pix}
    for i in range(args.n_scale):
        rng = rng_for(args.seed, 4, i)
        sc, g, proj, gts = projection_scene(rng, fov, p_sim, 5.0, (200.0, 400.0), (100.0, 800.0), max_len=1100.0,
                                            n_mito=int(rng.integers(1, 5)))
        optics = imaging.draw_optics(rng)
        snr = rng.uniform(0.05, 0.15)
        _, counts_sim, _ = projection_image(np.random.default_rng(0), sc, p_sim, proj, optics, snr=snr)
        dose = counts_sim / (10 * p_sim) ** 2
        for q in pix:
            pot = resample(proj, q / p_sim)
            n = pot.shape[0]
            noisy, counts, snr_m = projection_image(rng, sc, q, pot, optics, counts=dose * (10 * q) ** 2)
            img, _ = imaging.to_display(noisy, rng)
            boxes = [box_from_indices(gt.xy, 0, 0, p_sim, 0.0, q, n, n) for gt in gts if gt.xy]
            stem = f"scale{i:03d}"
            sub = os.path.join(root, f"px{q:.2f}")
            output.write_annotated(sub, stem, img, q, [b for b in boxes if b])
            man[q].append((stem + ".tif", stem, "projection", q, round(snr_m, 4)))
        print(f"scale scale{i:03d}: {len(sc.mitochondria)} mitochondria, dose {dose:.2f} e/A2, "
              f"{time.time() - t0:.0f} s", flush=True)
    for q in pix:
        sub = os.path.join(root, f"px{q:.2f}")
        write_manifest(sub, man[q])


def write_manifest(root, rows, groups=None):
    with open(os.path.join(root, "manifest.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "group", "kind", "pixel_nm", "snr"])
        w.writerows(rows)
    with open(os.path.join(root, "groups.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "group"])
        w.writerows(groups if groups is not None else [(r[0], r[1]) for r in rows])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--parts", default="test2d,scale,stacks")
    ap.add_argument("--n-proj", type=int, default=50)
    ap.add_argument("--n-tomo", type=int, default=10)
    ap.add_argument("--slices-per-tomo", type=int, default=5)
    ap.add_argument("--size", type=int, default=800, help="test2d image size (px)")
    ap.add_argument("--pixel-nm", type=float, default=1.25, help="test2d pixel size (nm)")
    ap.add_argument("--n-scale", type=int, default=30)
    ap.add_argument("--scale-fov-nm", type=float, default=1600.0)
    ap.add_argument("--scale-pixels", default="0.6,1.25,2.5,5.0")
    ap.add_argument("--n-stacks", type=int, default=8)
    ap.add_argument("--stack-size", type=int, default=512)
    ap.add_argument("--stack-pixel-nm", type=float, default=2.5)
    a = ap.parse_args(argv)
    parts = set(a.parts.split(","))
    bad = parts - {"test2d", "scale", "stacks"}
    if bad:
        print(f"indepgen: unknown part(s) {sorted(bad)}", file=sys.stderr)
        return 2
    for part in parts:
        d = os.path.join(a.out, part)
        if os.path.exists(d) and os.listdir(d):
            print(f"indepgen: {d} exists and is not empty; refusing to overwrite", file=sys.stderr)
            return 2
    t0 = time.time()
    if "test2d" in parts:
        root = os.path.join(a.out, "test2d")
        manifest, groups = [], []
        gen_test2d(a, root, manifest, groups)
        write_manifest(root, manifest, groups)
    if "scale" in parts:
        gen_scale(a, os.path.join(a.out, "scale"))
    if "stacks" in parts:
        gen_stacks(a, os.path.join(a.out, "stacks"))
    print(f"indepgen: done in {time.time() - t0:.0f} s -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
