"""Tilt series and weighted back projection (WBP), single-axis tilt about y.

Geometry: each y row of the volume is an independent x-z plane. A pixel-driven linear
projector (each voxel's mass rho*dz spread linearly onto the two nearest detector bins at
u = (x - xc) cos t + z sin t + xc) gives the line integrals at every tilt t; its transpose is
the back projector (Kak & Slaney, "Principles of Computerized Tomographic Imaging", 1988,
ch. 3). The simulated volume extends beyond the field by T/2 tan(60 deg) on both sides, so the
high tilts see material outside the reconstructed field, as in a real specimen.

Tilt scheme: +-60 deg in 2 or 3 deg steps (the study: +-60 in 1.5 deg), total dose
60-140 e-/A^2 split evenly. Each tilt is imaged as a projection (imaging.py, physics.py: CTF
with the scene's defocus +-0.1 um, inelastic attenuation over T/cos t, Poisson noise).
Reconstruction: contrast c = 1 - I/<I> (dense = positive), optionally CTF phase flipping
(as IMOD ctfphaseflip does), R-weighting |f| with a Gaussian roll-off beyond a cutoff of
0.3-0.5 cycles/pixel (the IMOD `tilt` RADIAL option), in 30 % of the tomograms with a
low-frequency floor of 0.005-0.02 cycles/pixel (the effect of IMOD's SIRT-like filter,
FakeSIRTiterations: large uniform regions keep their contrast), then back projection. The result shows
the missing-wedge elongation along z and the X-shaped streaks of a real WBP tomogram.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from .imaging import effective_thickness, thickness_map
from .physics import ctf, freq_grid, image_intensity, shot_noise


def draw_tilts(rng):
    step = float(rng.choice([2.0, 3.0]))
    n = int(round(120 / step)) + 1
    floor = float(rng.uniform(0.005, 0.02)) if rng.random() < 0.3 else 0.0
    return np.linspace(-60.0, 60.0, n), dict(step=step, dose_total=rng.uniform(60.0, 140.0),
                                             phaseflip=bool(rng.random() < 0.5),
                                             cutoff=rng.uniform(0.3, 0.5), falloff=0.05, floor=floor)


def projector(grid, xc, zc, det_x0, ndet, angles):
    """CSR matrix (n_tilts*ndet, nz*nx) of the pixel-driven projector for one x-z plane."""
    nx, nz, p, dz = grid.nx, grid.nz, grid.p, grid.dz
    X = grid.xs()[None, :] - xc
    Z = grid.zs()[:, None] - zc
    cols = (np.arange(nz)[:, None] * nx + np.arange(nx)[None, :]).ravel()
    rows, colz, vals = [], [], []
    for t, ang in enumerate(np.deg2rad(angles)):
        u = (X * np.cos(ang) + Z * np.sin(ang)).ravel() + xc
        f = (u - det_x0) / p - 0.5
        i0 = np.floor(f).astype(np.int64)
        w = (f - i0).astype(np.float32)
        for off, ww in ((0, 1.0 - w), (1, w)):
            j = i0 + off
            ok = (j >= 0) & (j < ndet)
            rows.append(t * ndet + j[ok])
            colz.append(cols[ok])
            vals.append(ww[ok] * dz)
    A = sparse.coo_matrix((np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(colz))),
                          shape=(len(angles) * ndet, nz * nx))
    return A.tocsr()


def tilt_series(vol, grid, scene, surfaces, optics, angles, scheme, fov_x0, ndet, rng):
    """Noisy and noise-free tilt images (n_t, ny, ndet) and the projector used."""
    A = projector(grid, scene.W / 2, 0.0, fov_x0, ndet, angles)
    ny = grid.ny
    V = np.ascontiguousarray(vol.transpose(1, 0, 2).reshape(ny, grid.nz * grid.nx).T)
    P = (A @ V).reshape(len(angles), ndet, ny).transpose(0, 2, 1)
    del V
    xs = fov_x0 + (np.arange(ndet) + 0.5) * grid.p
    ys = grid.ys()
    dose_tilt = scheme["dose_total"] / len(angles)
    counts = dose_tilt * (grid.p * 10.0) ** 2
    noisy = np.empty(P.shape, np.float32)
    clean = np.empty(P.shape, np.float32)
    defoci = []
    for t, ang in enumerate(angles):
        pot_s, att = surfaces.maps(xs, ys, ang, xc=scene.W / 2)
        pot = P[t] + pot_s
        Tm = thickness_map(xs, ys, scene.T, scene.W, optics, ang)
        o = dict(optics)
        o["defocus_nm"] = optics["defocus_nm"] + rng.normal(0, 100.0)
        defoci.append(o["defocus_nm"])
        I = image_intensity(pot, effective_thickness(pot, Tm, att), grid.p, o)
        clean[t] = I
        noisy[t] = shot_noise(I, counts, rng)
    return noisy, clean, A, defoci, counts


def weight(images, p, scheme, defoci, optics):
    """Contrast, optional phase flip, and the R-weighting of every tilt image."""
    n_t, ny, nx = images.shape
    k, kx, ky = freq_grid(ny, nx, p)
    f = np.abs(kx)  # cycles/pixel along the tilt direction
    w = np.maximum(f, max(0.5 / nx, scheme.get("floor", 0.0)))
    cut = scheme["cutoff"]
    w = w * np.where(f > cut, np.exp(-((f - cut) / scheme["falloff"]) ** 2), 1.0)
    out = np.empty(images.shape, np.float32)
    for t in range(n_t):
        c = 1.0 - images[t] / images[t].mean()
        F = np.fft.rfft2(c)
        if scheme["phaseflip"]:
            F = F * np.sign(-ctf(k, defoci[t], optics["amp"], 0.0))  # c ~ -CTF * phi
        out[t] = np.fft.irfft2(F * w, s=(ny, nx))
    return out


def back_project(A, weighted, grid, cols_ix, rows_iz):
    """Back projection onto the voxels (rows_iz x cols_ix) of every y row: (len(iz), ny, len(ix))."""
    n_t, ny, ndet = weighted.shape
    Pf = np.ascontiguousarray(weighted.transpose(0, 2, 1).reshape(n_t * ndet, ny))
    cols = (np.asarray(rows_iz)[:, None] * grid.nx + np.asarray(cols_ix)[None, :]).ravel()
    As = A.tocsc()[:, cols]
    rec = (As.T @ Pf)  # (n_cols, ny)
    return np.ascontiguousarray(rec.reshape(len(rows_iz), len(cols_ix), ny).transpose(0, 2, 1)) * (np.pi / n_t)
