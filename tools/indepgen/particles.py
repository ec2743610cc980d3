"""Macromolecular context: ribosomes and gold beads (stamped kernels) and a point field
(soluble proteins, actin filaments, microtubules) blurred by a Gaussian.

* Ribosomes: the 80S ribosome is ~25-30 nm across, a large (60S) and a small (40S) subunit,
  ~60 % RNA, hence denser than protein (1.4-1.6 x protein here). Cytosolic concentrations of
  the order of 10^3 per um^3 are seen in cryo-ET of mammalian cells (e.g. Mahamid et al.
  2016, Science 351:969); we draw 300-4000 per um^3. Some are drawn as polysomes (chains with ~30 nm spacing) or bound to
  the rough ER surface.
* Soluble proteins: the cytosol holds ~200-300 mg/ml of protein (macromolecular crowding,
  Ellis 2001, Trends Biochem Sci 26:597); we draw globular proteins of 2.5-6 nm radius as small
  point clusters, a mass fraction of 1-6 % of the volume (most of the
  crowding is in the smooth background; only the larger complexes stand out at 1-2 nm pixels) beyond a smooth cytosol background.
* Actin: filaments 7 nm across (helical F-actin), drawn as lines of points, in parallel
  bundles (filopodia/stress fibres, 10-13 nm spacing) or as a random cortical meshwork.
* Microtubules: 13 protofilaments on a 25 nm outer diameter (wall centre radius ~11.5 nm,
  15 nm lumen), one tubulin dimer (110 kDa, ~133 nm^3) per 8 nm per protofilament.
* Gold fiducials: 10 nm colloidal gold, used to align tilt series; potential ~10 x protein.
A point of weight w (V nm^3) blurred by a unit-volume 3D Gaussian of sigma SIGMA_POINT gives a
blob whose projection is the 2D Gaussian of the same sigma, so projections and volumes are
rendered consistently.
"""

from __future__ import annotations

import numpy as np

from . import shapes
from .physics import V_PROTEIN, smooth_inside

SIGMA_POINT = 2.2  # nm


def _kernel_grid(half, p, dz):
    """Coordinates (x, y, z broadcastable, nm) of a kernel reaching half nm from its centre on a
    (p, dz) grid, and the grid's anti-aliasing variance e2."""
    nx = int(np.ceil(half / p))
    nz = int(np.ceil(half / dz))
    x = (np.arange(-nx, nx + 1) * p)[None, None, :]
    y = (np.arange(-nx, nx + 1) * p)[None, :, None]
    z = (np.arange(-nz, nz + 1) * dz)[:, None, None]
    return x, y, z, (p * p + dz * dz) / 24.0


def ribosome_kernels(rng, p, dz, rho_cyto, n=8):
    """n randomly oriented ribosome densities (V, relative to the cytosol) on a (p, dz) grid."""
    half = 17.0
    x, y, z, e2 = _kernel_grid(half, p, dz)
    out = []
    for _ in range(n):
        rot = shapes.random_rotation(rng)
        amp = rng.uniform(1.4, 1.6) * V_PROTEIN - rho_cyto
        lsu = shapes.ellipsoid(x, y, z, np.zeros(3), (11.5, 10.5, 10.0), rot)
        ssu_c = rot @ np.array([0.0, 0.0, 11.0])
        ssu = shapes.ellipsoid(x, y, z, ssu_c, (10.5, 6.5, 5.0), rot)
        body = np.maximum(smooth_inside(lsu, e2, 1.0), smooth_inside(ssu, e2, 1.0))
        # internal RNA/protein texture and the exit-tunnel-like hollows
        for _ in range(3):
            hc = rot @ rng.uniform(-6, 6, 3)
            body = body * (1.0 - 0.5 * smooth_inside(shapes.sphere(x, y, z, hc, rng.uniform(2.0, 4.0)), e2, 1.0))
        out.append((amp * body).astype(np.float32))
    return out


def gold_kernel(p, dz, r=5.0):
    half = r + 3.0
    x, y, z, e2 = _kernel_grid(half, p, dz)
    return (10.0 * V_PROTEIN * smooth_inside(shapes.sphere(x, y, z, np.zeros(3), r), e2, 0.5)).astype(np.float32)


def protein_points(rng, n, lo, hi):
    """n globular proteins as clusters of 1-5 points; returns (P (M,3), w (M,))."""
    c = rng.uniform(lo, hi, size=(n, 3))
    r = rng.uniform(2.5, 6.0, n)
    mass = V_PROTEIN * 4.0 / 3.0 * np.pi * r ** 3
    k = np.clip((r / 2.0).astype(int), 1, 5)
    P, W = [], []
    for j in range(1, 6):
        sel = np.nonzero(k == j)[0]
        if len(sel) == 0:
            continue
        off = rng.normal(size=(len(sel), j, 3)) * (0.5 * r[sel])[:, None, None]
        P.append((c[sel][:, None, :] + off).reshape(-1, 3))
        W.append(np.repeat(mass[sel] / j, j))
    if not P:
        return np.zeros((0, 3)), np.zeros(0)
    return np.concatenate(P), np.concatenate(W)


def filament_points(path, step=1.5, lin_mass=None):
    """Points every `step` nm along a polyline path (M,3); weight lin_mass*step each."""
    path = np.asarray(path, float)
    seg = path[1:] - path[:-1]
    L = np.sqrt((seg ** 2).sum(1))
    P = []
    for a, s, l in zip(path[:-1], seg, L):
        n = max(1, int(l / step))
        t = (np.arange(n) + 0.5) / n
        P.append(a + t[:, None] * s)
    P = np.concatenate(P)
    lm = lin_mass if lin_mass is not None else V_PROTEIN * 30.0
    return P, np.full(len(P), lm * step)


def actin_bundle(rng, path, n_fil):
    """Parallel filaments around a centre path, hexagonal-ish spacing 10-13 nm."""
    path = np.asarray(path, float)
    t = shapes.unit(path[-1] - path[0])
    e1 = shapes.unit(np.cross(t, [0.0, 0.0, 1.0]) if abs(t[2]) < 0.9 else np.cross(t, [1.0, 0, 0]))
    e2 = np.cross(t, e1)
    sp = rng.uniform(10.0, 13.0)
    P, W = [], []
    offs = []
    ring = 0
    while len(offs) < n_fil:
        if ring == 0:
            offs.append((0.0, 0.0))
        else:
            for k in range(6 * ring):
                ang = 2 * np.pi * k / (6 * ring)
                offs.append((ring * sp * np.cos(ang), ring * sp * np.sin(ang)))
        ring += 1
    for u, v in offs[:n_fil]:
        jit = rng.normal(0, 1.0, 3)
        pp, ww = filament_points(path + u * e1 + v * e2 + jit, lin_mass=V_PROTEIN * 27.0)
        P.append(pp)
        W.append(ww)
    return np.concatenate(P), np.concatenate(W)


def microtubule(rng, path):
    path = np.asarray(path, float)
    P, W = [], []
    t = shapes.unit(path[-1] - path[0])
    e1 = shapes.unit(np.cross(t, [0.0, 0.0, 1.0]) if abs(t[2]) < 0.9 else np.cross(t, [1.0, 0, 0]))
    e2 = np.cross(t, e1)
    ph = rng.uniform(0, 2 * np.pi)
    for k in range(13):
        ang = ph + 2 * np.pi * k / 13
        off = 11.5 * (np.cos(ang) * e1 + np.sin(ang) * e2)
        pp, ww = filament_points(path + off, lin_mass=V_PROTEIN * 133.0 / 8.0)
        P.append(pp)
        W.append(ww)
    return np.concatenate(P), np.concatenate(W)
