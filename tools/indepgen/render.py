"""Sampling a scene's potential on a grid: a 3D volume (for tilt series) or its projection along z
(for single projection images), and the mitochondria's ground truth from the same samples.

Grid: voxel centres x0 + (i + 1/2) p, y0 + (j + 1/2) p, z0 + (k + 1/2) dz (nm); arrays are
indexed [z, y, x]. Membrane bodies are evaluated tile by tile (48 x 48 pixels, the body's z
range), skipping tiles that cannot contain them; their antialiasing follows physics.aa_sigma2.
Ground truth of a mitochondrion = the voxels with d_outer <= outer head-group edge of its outer
membrane: its xy footprint (projection) and its cross-section on every z row (slices), as pixel
index ranges; boxes are their bounding rectangles (continuous pixel coordinates, x2 = last + 1).
Tiles are also split in z (48 rows); a body with a ``cull`` factor f skips tiles whose centre
lies farther outside than f x the tile half-diagonal (f = 1 for exact SDFs, 2 for the
first-order approximations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .particles import SIGMA_POINT

TILE = 48


@dataclass
class Grid:
    x0: float
    y0: float
    nx: int
    ny: int
    p: float
    z0: float
    nz: int
    dz: float

    def xs(self, i0=0, i1=None):
        i1 = self.nx if i1 is None else i1
        return self.x0 + (np.arange(i0, i1) + 0.5) * self.p

    def ys(self, j0=0, j1=None):
        j1 = self.ny if j1 is None else j1
        return self.y0 + (np.arange(j0, j1) + 0.5) * self.p

    def zs(self, k0=0, k1=None):
        k1 = self.nz if k1 is None else k1
        return self.z0 + (np.arange(k0, k1) + 0.5) * self.dz

    def index_range(self, lo, hi, axis):
        o, n, s = {0: (self.x0, self.nx, self.p), 1: (self.y0, self.ny, self.p), 2: (self.z0, self.nz, self.dz)}[axis]
        i0 = int(np.floor((lo - o) / s))
        i1 = int(np.ceil((hi - o) / s))
        return max(i0, 0), min(i1, n)


class GT:
    """Per-mitochondrion footprint bbox (pixel indices) and per-z-row cross-section bboxes."""

    def __init__(self):
        self.xy = None
        self.rows = {}

    @staticmethod
    def _merge(a, b):
        if a is None:
            return b
        return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))

    def add(self, mask, i0, j0, k0, per_row):
        fp = mask.any(axis=0)
        if not fp.any():
            return
        cols = np.nonzero(fp.any(axis=0))[0]
        rows = np.nonzero(fp.any(axis=1))[0]
        self.xy = self._merge(self.xy, (i0 + cols[0], i0 + cols[-1], j0 + rows[0], j0 + rows[-1]))
        if per_row:
            for k in np.nonzero(mask.any(axis=(1, 2)))[0]:
                m = mask[k]
                c = np.nonzero(m.any(axis=0))[0]
                r = np.nonzero(m.any(axis=1))[0]
                b = (i0 + c[0], i0 + c[-1], j0 + r[0], j0 + r[-1])
                self.rows[k0 + k] = self._merge(self.rows.get(k0 + k), b)


def render(scene, grid: Grid, mode: str, rng):
    """mode 'volume': (nz, ny, nx) float32 potential relative to ice (V); mode 'projection':
    (ny, nx) float64 integral along z (V nm). Returns (array, [GT per scene.mitochondria])."""
    vol = mode == "volume"
    if vol:
        out = np.full((grid.nz, grid.ny, grid.nx), scene.rho_cyto, np.float32)
    else:
        out = np.full((grid.ny, grid.nx), scene.rho_cyto * grid.nz * grid.dz, np.float64)
    gts = []
    for body in scene.bodies:
        is_mito = body.name == "mitochondria"
        gt = GT() if is_mito else None
        b = body.box
        i0, i1 = grid.index_range(b[0], b[1], 0)
        j0, j1 = grid.index_range(b[2], b[3], 1)
        k0, k1 = grid.index_range(b[4], b[5], 2)
        if i1 > i0 and j1 > j0 and k1 > k0:
            cull = getattr(body, "cull", None)
            for kk in range(k0, k1, TILE):
                ke = min(kk + TILE, k1)
                z = grid.zs(kk, ke)[:, None, None]
                for jj in range(j0, j1, TILE):
                    je = min(jj + TILE, j1)
                    y = grid.ys(jj, je)[None, :, None]
                    for ii in range(i0, i1, TILE):
                        ie = min(ii + TILE, i1)
                        x = grid.xs(ii, ie)[None, None, :]
                        if cull is not None:
                            hd = 0.5 * np.sqrt(((ie - ii) * grid.p) ** 2 + ((je - jj) * grid.p) ** 2
                                               + ((ke - kk) * grid.dz) ** 2)
                            ctr = np.array([[x.mean(), y.mean(), z.mean()]])
                            if body.sdf_points(ctr)[0] > cull * hd + 10.0:
                                continue
                        rho, mask = body.density(x, y, z, grid.p, grid.dz)
                        if rho is None:
                            continue
                        rho = np.broadcast_to(rho, (ke - kk, je - jj, ie - ii))
                        if vol:
                            out[kk:ke, jj:je, ii:ie] += rho
                        else:
                            out[jj:je, ii:ie] += rho.sum(axis=0) * grid.dz
                        if is_mito and mask is not None:
                            gt.add(np.broadcast_to(mask, rho.shape), ii, jj, kk, vol)
        if is_mito:
            gts.append(gt)
    _stamp(out, grid, scene.ribosomes, scene.kernels(grid), vol)
    _points(out, grid, scene.points, scene.point_w, vol)
    return out, gts


def _stamp(out, grid, parts, kernels, vol):
    """Adds kernel[kind] at each particle position (P (N,3), kind (N,))."""
    P, kind = parts
    if len(P) == 0:
        return
    ix = np.floor((P[:, 0] - grid.x0) / grid.p).astype(int)
    iy = np.floor((P[:, 1] - grid.y0) / grid.p).astype(int)
    iz = np.floor((P[:, 2] - grid.z0) / grid.dz).astype(int)
    k2d = [k.sum(axis=0) * grid.dz for k in kernels] if not vol else None
    for x, y, z, kd in zip(ix, iy, iz, kind):
        ker = kernels[kd] if vol else k2d[kd]
        if vol:
            hz, hy, hx = (s // 2 for s in ker.shape)
            zs, ze = z - hz, z + hz + 1
        else:
            hy, hx = (s // 2 for s in ker.shape)
        ys, ye, xs, xe = y - hy, y + hy + 1, x - hx, x + hx + 1
        cys, cye = max(0, -ys), ker.shape[-2] - max(0, ye - grid.ny)
        cxs, cxe = max(0, -xs), ker.shape[-1] - max(0, xe - grid.nx)
        if cye <= cys or cxe <= cxs:
            continue
        if vol:
            czs, cze = max(0, -zs), ker.shape[0] - max(0, ze - grid.nz)
            if cze <= czs:
                continue
            out[max(zs, 0):min(ze, grid.nz), max(ys, 0):min(ye, grid.ny), max(xs, 0):min(xe, grid.nx)] += \
                ker[czs:cze, cys:cye, cxs:cxe]
        else:
            out[max(ys, 0):min(ye, grid.ny), max(xs, 0):min(xe, grid.nx)] += ker[cys:cye, cxs:cxe]


def _points(out, grid, P, W, vol):
    """Point masses W (V nm^3) at P, blurred by a Gaussian of SIGMA_POINT nm."""
    if len(P) == 0:
        return
    ix = np.floor((P[:, 0] - grid.x0) / grid.p).astype(int)
    iy = np.floor((P[:, 1] - grid.y0) / grid.p).astype(int)
    iz = np.floor((P[:, 2] - grid.z0) / grid.dz).astype(int)
    ok = (ix >= 0) & (ix < grid.nx) & (iy >= 0) & (iy < grid.ny) & (iz >= 0) & (iz < grid.nz)
    if vol:
        acc = np.zeros(out.shape, np.float32)
        np.add.at(acc, (iz[ok], iy[ok], ix[ok]), (W[ok] / (grid.p * grid.p * grid.dz)).astype(np.float32))
        s = SIGMA_POINT
        out += ndimage.gaussian_filter(acc, (s / grid.dz, s / grid.p, s / grid.p), mode="constant")
    else:
        acc = np.zeros(out.shape, np.float64)
        np.add.at(acc, (iy[ok], ix[ok]), W[ok] / (grid.p * grid.p))
        out += ndimage.gaussian_filter(acc, SIGMA_POINT / grid.p, mode="constant")
