"""Membrane-bounded context bodies (not labelled): vesicles, MVBs, lipid droplets, ER, other
double-membrane organelles, plasma membrane. Each returns its potential relative to the cytosol.

Sizes and densities (nm; densities as multiples of protein, physics.V_PROTEIN):
* Vesicles: synaptic vesicles ~40 nm across (Takamori et al. 2006, Cell 127:831), other
  transport/secretory vesicles 50-300 nm; clathrin coats ~18 nm thick outside the membrane
  (cages 60-120 nm across).
Lumen and core densities are drawn relative to the smooth cytosol background (which carries
another ~0.03-0.1 x protein of explicit particles): -0.03..+0.15 x protein for vesicle, MVB, ER
lumens, -0.1..+0.06 for lipid-droplet cores, 0..+0.12 for engulfed content.
* Multivesicular bodies: 250-600 nm limiting membrane with 5-30 intraluminal vesicles of
  40-80 nm (endosome EM literature, e.g. Klumperman & Raposo 2014, CSH Perspect Biol 6:a016857).
* Lipid droplets: 100-800 nm, bounded by a phospholipid monolayer, a homogeneous neutral-lipid
  core -- they look smooth and textureless in cryo-ET.
* Endoplasmic reticulum: tubules 30-60 nm across and sheets with a 30-60 nm lumen (the
  sheet/tubule review of Shibata, Voeltz & Rapoport 2006, "Rough sheets and smooth tubules",
  Cell 126:435); rough
  ER carries ribosomes (placed by particles.py).
* Double-membrane organelles that are not mitochondria (autophagosomes, ~300-900 nm, two
  membranes 10-25 nm apart, engulfed cytosol inside): hard negatives for the detector.
* Plasma membrane: a large curved bilayer (radius 2-20 um) crossing the field; outside the
  cell there is only vitreous ice.
"""

from __future__ import annotations

import numpy as np

from . import shapes
from .physics import V_PROTEIN, Bilayer, Monolayer, aa_sigma2, gauss, smooth_inside


def _e2(d, p, dz):
    gz = np.gradient(d, dz, axis=0) if d.shape[0] > 1 else None
    return aa_sigma2(p, dz, gz)


def _cube(c, m):
    """The box (x0, x1, y0, y1, z0, z1) reaching m from the centre c."""
    return (c[0] - m, c[0] + m, c[1] - m, c[1] + m, c[2] - m, c[2] + m)


def _walled(mem, d, p, dz, lumen):
    """The membrane mem on the surface d = 0 around a lumen of density lumen: (rho, e2)."""
    e2 = _e2(d, p, dz)
    return mem(d, e2) + smooth_inside(d, e2) * lumen, e2


class _Sphere:
    """A membrane-bounded sphere: centre self.c, radius self.R, membrane self.mem, lumen density
    self.lumen."""

    def sdf_points(self, P):
        return shapes.sphere(P[:, 0], P[:, 1], P[:, 2], self.c, self.R)

    def _walled_sphere(self, x, y, z, p, dz):
        """(d, rho, e2): the signed distance and the membrane + lumen potential."""
        d = shapes.sphere(x, y, z, self.c, self.R)
        rho, e2 = _walled(self.mem, d, p, dz, self.lumen)
        return d, rho, e2


class Vesicle(_Sphere):
    name = "vesicle"
    cull = 1.0

    def __init__(self, rng, c, R, rho_cyto, coated=False):
        self.c, self.R = np.asarray(c, float), R
        self.mem = Bilayer(rng)
        self.lumen = rng.uniform(-0.03, 0.15) * V_PROTEIN
        self.coat = rng.uniform(0.4, 0.8) * V_PROTEIN * 8.0 if coated else 0.0
        m = R + (22 if coated else 5)
        self.box = _cube(c, m)

    def density(self, x, y, z, p, dz):
        d, rho, e2 = self._walled_sphere(x, y, z, p, dz)
        if self.coat:
            rho = rho + self.coat * gauss(d - 12.0, np.sqrt(16.0 + e2))
        return rho.astype(np.float32), None


class MVB(_Sphere):
    name = "mvb"
    cull = 1.0

    def __init__(self, rng, c, R, rho_cyto):
        self.c, self.R = np.asarray(c, float), R
        self.mem = Bilayer(rng)
        self.rho_cyto = rho_cyto
        self.lumen = rng.uniform(-0.02, 0.15) * V_PROTEIN
        self.inner = []
        for _ in range(int(rng.integers(5, 30))):
            r = rng.uniform(20.0, 40.0)
            v = shapes.unit(rng.normal(size=3)) * rng.uniform(0, max(R - r - 10, 1)) * rng.uniform(0.3, 1) ** 0.3
            self.inner.append((self.c + v, r, Bilayer(rng), rho_cyto + rng.uniform(-0.03, 0.15) * V_PROTEIN))
        m = R + 5
        self.box = _cube(c, m)

    def density(self, x, y, z, p, dz):
        d, rho, e2 = self._walled_sphere(x, y, z, p, dz)
        for c, r, mem, lum in self.inner:
            di = shapes.sphere(x, y, z, c, r)
            # intraluminal vesicle: its lumen replaces the MVB lumen
            rho = rho + mem(di, e2) + smooth_inside(di, e2) * (lum - self.rho_cyto - self.lumen)
        return rho.astype(np.float32), None


class _Ellipsoid:
    """A body bounded by a randomly rotated ellipsoid: centre self.c, semi-axes self.axes."""

    def _place(self, rng, c, axes):
        """Centre c, semi-axes axes, a random rotation (one draw of rng), the bounding box."""
        self.c, self.axes = np.asarray(c, float), tuple(axes)
        self.rot = shapes.random_rotation(rng)
        self.box = _cube(c, max(axes) + 5)

    def sdf_points(self, P):
        return self._distance(P[:, 0], P[:, 1], P[:, 2])

    def _distance(self, x, y, z):
        return shapes.ellipsoid(x, y, z, self.c, self.axes, self.rot)


class LipidDroplet(_Ellipsoid):
    name = "lipid_droplet"
    cull = 2.0

    def __init__(self, rng, c, axes, rho_cyto):
        self._place(rng, c, axes)
        self.mem = Monolayer(rng)
        self.core = rng.uniform(-0.1, 0.06) * V_PROTEIN

    def density(self, x, y, z, p, dz):
        d = self._distance(x, y, z)
        rho, e2 = _walled(self.mem, d, p, dz, self.core)
        return rho.astype(np.float32), None


class DoubleMembraneBody(_Ellipsoid):
    """Autophagosome-like double-membrane organelle (not a mitochondrion: no cristae, engulfed
    cytosol-like content, wider and more variable membrane spacing)."""

    name = "autophagosome"
    cull = 2.0

    def __init__(self, rng, c, axes, rho_cyto):
        self._place(rng, c, axes)
        self.m1, self.m2 = Bilayer(rng), Bilayer(rng)
        self.gap = rng.uniform(10.0, 25.0)
        self.between = rng.uniform(-0.03, 0.08) * V_PROTEIN
        self.inside = rng.uniform(0.0, 0.12) * V_PROTEIN

    def density(self, x, y, z, p, dz):
        d = self._distance(x, y, z)
        e2 = _e2(d, p, dz)
        d2 = d + self.gap
        rho = self.m1(d, e2) + self.m2(d2, e2) + smooth_inside(d, e2) * self.between
        rho = rho + smooth_inside(d2, e2) * (self.inside - self.between)
        return rho.astype(np.float32), None


class ERTube:
    name = "er_tube"
    cull = 1.0

    def __init__(self, rng, pts, r, rho_cyto):
        self.pts = np.asarray(pts, float)
        self.r = r
        self.mem = Bilayer(rng)
        self.lumen = rng.uniform(-0.03, 0.15) * V_PROTEIN
        m = r + 5
        lo, hi = self.pts.min(0) - m, self.pts.max(0) + m
        self.box = (lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])

    def sdf_points(self, P):
        return shapes.polyline_distance(P[:, 0], P[:, 1], P[:, 2], self.pts) - self.r

    def density(self, x, y, z, p, dz):
        ctr = np.array([x.mean(), y.mean(), z.mean()])
        half = 0.5 * np.sqrt((x.max() - x.min()) ** 2 + (y.max() - y.min()) ** 2 + (z.max() - z.min()) ** 2)
        ids = [i for i in range(len(self.pts) - 1)
               if shapes.segment_distance(*ctr, self.pts[i], self.pts[i + 1]) < half + self.r + 10]
        if not ids:
            return None, None
        d = shapes.polyline_distance(x, y, z, self.pts, ids) - self.r
        if d.min() > 8:
            return None, None
        rho, e2 = _walled(self.mem, d, p, dz, self.lumen)
        return rho.astype(np.float32), None


class ERSheet:
    name = "er_sheet"
    cull = 1.0

    def __init__(self, rng, c, n, h, R, rho_cyto):
        self.c, self.n, self.h, self.R = np.asarray(c, float), shapes.unit(n), h, R
        self.mem = Bilayer(rng)
        self.lumen = rng.uniform(-0.03, 0.15) * V_PROTEIN
        m = R + h + 5
        self.box = _cube(c, m)

    def sdf_points(self, P):
        return shapes.rounded_disk(P[:, 0], P[:, 1], P[:, 2], self.c, self.n, self.h, self.R)

    def density(self, x, y, z, p, dz):
        d = shapes.rounded_disk(x, y, z, self.c, self.n, self.h, self.R)
        if d.min() > 8:
            return None, None
        rho, e2 = _walled(self.mem, d, p, dz, self.lumen)
        return rho.astype(np.float32), None


class PlasmaMembrane:
    """A vertical cylinder of large radius: the cell is inside; outside, vitreous ice only."""

    name = "plasma_membrane"

    def __init__(self, rng, c2, R, rho_cyto, box):
        self.c2, self.R = np.asarray(c2, float), R
        self.mem = Bilayer(rng, head_range=(1.2, 2.0))
        self.outside = -rho_cyto
        self.box = box

    def sdf_points(self, P):
        return self.R - np.sqrt((P[:, 0] - self.c2[0]) ** 2 + (P[:, 1] - self.c2[1]) ** 2)

    def inside_cell(self, P, margin=0.0):
        return np.sqrt((P[:, 0] - self.c2[0]) ** 2 + (P[:, 1] - self.c2[1]) ** 2) < self.R - margin

    def density(self, x, y, z, p, dz):
        d = np.sqrt((x - self.c2[0]) ** 2 + (y - self.c2[1]) ** 2) - self.R + 0.0 * z
        if np.abs(d).min() > 8 and d.max() < 0:
            return None, None
        e2 = aa_sigma2(p, dz, None)
        rho = self.mem(d, e2) + (1.0 - smooth_inside(d, e2)) * self.outside
        return rho.astype(np.float32), None
