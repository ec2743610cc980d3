"""Random cell-region scenes: mitochondria plus context, in nm, independent of any pixel size.

The field of view is x in [0, W], y in [0, H]; the specimen slab z in [-T/2, T/2]. Context is
drawn in the field plus a margin (tilted rays of a tilt series see beyond the field). All
ranges below are choices guided by the sources cited in mitochondrion.py, organelles.py and
particles.py; they are drawn per scene so that appearance varies widely.
"""

from __future__ import annotations

import numpy as np

from . import shapes
from .mitochondrion import Branch, Mitochondrion
from .organelles import ERSheet, ERTube, LipidDroplet, MVB, DoubleMembraneBody, PlasmaMembrane, Vesicle
from .particles import (V_PROTEIN, actin_bundle, filament_points, gold_kernel, microtubule,
                        protein_points, ribosome_kernels)

SHAPES = ("round", "oval", "elongated", "bent", "constricted", "branched")


class Scene:
    def __init__(self, rng, W, H, T, margin=150.0, width_range=(90.0, 600.0), n_mito=None,
                 max_len=None):
        self.rng = rng
        self.W, self.H, self.T = W, H, T
        self.margin = margin
        self.rho_cyto = rng.uniform(0.04, 0.15) * V_PROTEIN
        self.bodies = []
        self.pm = None
        self._kcache = {}
        self.ribo_seed = int(rng.integers(1 << 30))
        lo = np.array([-margin, -margin, -T / 2])
        hi = np.array([W + margin, H + margin, T / 2])
        self.lo, self.hi = lo, hi
        if rng.random() < 0.25:
            self._plasma_membrane()
        self.mitochondria = []
        if n_mito is None:
            n_mito = int(rng.choice([0, 1, 1, 2, 2, 2, 3, 3, 4], p=[0.04, 0.16, 0.16, 0.14, 0.14, 0.12, 0.1, 0.08, 0.06]))
        self.max_len = max_len or 1.6 * max(W, H)
        tries = 0
        while len(self.mitochondria) < n_mito and tries < 60:
            tries += 1
            m = self._mitochondrion(width_range)
            if m is not None:
                self.mitochondria.append(m)
                self.bodies.append(m)
        self._context()
        self._particles()

    # ---- helpers ----------------------------------------------------------------------
    def _free(self, P, r, margin=6.0, bodies=None):
        P = np.atleast_2d(P)
        r = np.broadcast_to(np.asarray(r, float), (len(P),))
        if np.any(P[:, 2] - r < -self.T / 2 + 2) or np.any(P[:, 2] + r > self.T / 2 - 2):
            return False
        if self.pm is not None and not np.all(self.pm.inside_cell(P, margin=r.max() + 10)):
            return False
        for b in (self.bodies if bodies is None else bodies):
            if np.any(b.sdf_points(P) < r + margin):
                return False
        return True

    def _keep_free(self, P, margin):
        """Mask of points outside every body (and inside the cell) by `margin`."""
        keep = np.ones(len(P), bool)
        for b in self.bodies:
            keep &= b.sdf_points(P) > margin
        if self.pm is not None:
            keep &= self.pm.inside_cell(P, margin=margin)
        keep &= (P[:, 2] > -self.T / 2 + margin * 0.5) & (P[:, 2] < self.T / 2 - margin * 0.5)
        return keep

    def _plasma_membrane(self):
        rng = self.rng
        R = rng.uniform(2000.0, 15000.0)
        ang = rng.uniform(0, 2 * np.pi)
        d = R - rng.uniform(0.15, 0.45) * min(self.W, self.H)
        mid = np.array([self.W / 2, self.H / 2])
        c2 = mid + d * np.array([np.cos(ang), np.sin(ang)])
        box = (self.lo[0], self.hi[0], self.lo[1], self.hi[1], self.lo[2], self.hi[2])
        self.pm = PlasmaMembrane(rng, c2, R, self.rho_cyto, box)
        self.bodies.append(self.pm)

    # ---- mitochondria -----------------------------------------------------------------
    def _mitochondrion(self, width_range):
        rng = self.rng
        T = self.T
        width = float(np.exp(rng.uniform(np.log(width_range[0]), np.log(width_range[1]))))
        a = width / 2
        shape = rng.choice(SHAPES, p=[0.14, 0.2, 0.22, 0.16, 0.14, 0.14])
        kappa = rng.uniform(0.6, 1.0)
        cmax = T / 2 - 8.0
        c = min(kappa * a, cmax)
        room = T / 2 - c - 4.0
        zc = rng.uniform(-room, room) if room > 0 else 0.0
        ang = rng.uniform(0, np.pi)
        d = np.array([np.cos(ang), np.sin(ang)])
        nrm = np.array([-d[1], d[0]])
        if rng.random() < 0.85:
            ctr = np.array([rng.uniform(0.1, 0.9) * self.W, rng.uniform(0.1, 0.9) * self.H])
        else:
            ctr = np.array([rng.uniform(-0.1, 1.1) * self.W, rng.uniform(-0.1, 1.1) * self.H])
        L = {"round": 0.0, "oval": rng.uniform(0.2, 1.0) * a}.get(shape, rng.uniform(1.5, 6.0) * a)
        L = min(L, self.max_len)
        p0, p2 = ctr - 0.5 * L * d, ctr + 0.5 * L * d
        if shape == "bent":
            p1 = ctr + nrm * rng.uniform(0.2, 0.6) * L * rng.choice([-1, 1])
        else:
            p1 = ctr + nrm * rng.normal(0, 0.08) * L
        pts = shapes.bezier(p0, p1, p2, 24) if L > 0 else ctr[None, :]
        cons = []
        if shape == "constricted":
            for _ in range(int(rng.integers(1, 3))):
                cons.append((rng.uniform(0.25, 0.75), rng.uniform(0.04, 0.12), rng.uniform(0.3, 0.6)))
        branches = [Branch(pts, a, kappa, zc, cmax, cons)]
        if shape == "branched" and L > 0:
            for _ in range(int(rng.integers(1, 3))):
                s = rng.uniform(0.2, 0.8)
                base = pts[int(s * (len(pts) - 1))]
                bang = ang + rng.choice([-1, 1]) * rng.uniform(np.pi / 6, np.pi / 2)
                bl = rng.uniform(1.0, 3.0) * a
                tip = base + bl * np.array([np.cos(bang), np.sin(bang)])
                mid = 0.5 * (base + tip) + rng.normal(0, 0.1 * bl, 2)
                ab = a * rng.uniform(0.6, 1.0)
                branches.append(Branch(shapes.bezier(base, mid, tip, 12), ab, kappa, zc, cmax))
        # reject overlaps (in xy: projections must keep mitochondria apart)
        new = np.concatenate([np.c_[b.pts, np.full(len(b.pts), zc)] for b in branches])
        for m in self.mitochondria:
            for b in m.branches:
                dd = np.sqrt(((new[:, None, :2] - b.pts[None, :, :2]) ** 2).sum(-1))
                if dd.min() < a + b.a0 + 25.0:
                    return None
        for b in self.bodies:
            if b.name != "mitochondria" and b.name != "plasma_membrane":
                continue
            if b.name == "plasma_membrane" and not np.all(b.inside_cell(new, margin=a + 20)):
                return None
        return Mitochondrion(rng, branches, self.rho_cyto)

    # ---- context -----------------------------------------------------------------------
    def _rand_point(self, r):
        rng = self.rng
        return np.array([rng.uniform(self.lo[0], self.hi[0]), rng.uniform(self.lo[1], self.hi[1]),
                         rng.uniform(-self.T / 2 + r + 3, self.T / 2 - r - 3) if self.T / 2 - r - 3 > -self.T / 2 + r + 3 else 0.0])

    def _place_sphere(self, rmin, rmax, tries=20):
        rmax = min(rmax, self.T / 2 - 5)
        if rmax <= rmin:
            return None
        for _ in range(tries):
            r = self.rng.uniform(rmin, rmax)
            c = self._rand_point(r)
            if self._free(c, r):
                return c, r
        return None

    def _context(self):
        rng = self.rng
        area = (self.hi[0] - self.lo[0]) * (self.hi[1] - self.lo[1]) / 1e6  # um^2
        # lipid droplets, MVBs, autophagosome-like double-membrane bodies (big first)
        for _ in range(int(rng.random() < 0.25) * int(rng.integers(1, 3))):
            got = self._place_sphere(50.0, 400.0)
            if got:
                c, r = got
                ax = (r, r * rng.uniform(0.8, 1.0), min(r * rng.uniform(0.8, 1.0), self.T / 2 - 5))
                self.bodies.append(LipidDroplet(rng, c, ax, self.rho_cyto))
        for _ in range(int(rng.random() < 0.3) * int(rng.integers(1, 3))):
            got = self._place_sphere(125.0, 300.0)
            if got:
                self.bodies.append(MVB(rng, got[0], got[1], self.rho_cyto))
        if rng.random() < 0.15:
            got = self._place_sphere(150.0, 450.0)
            if got:
                c, r = got
                ax = (r, r * rng.uniform(0.6, 1.0), min(r * rng.uniform(0.6, 1.0), self.T / 2 - 5))
                self.bodies.append(DoubleMembraneBody(rng, c, ax, self.rho_cyto))
        # ER sheets (near-vertical disks, seen as paired membranes) and tubules
        self.rough = []
        for _ in range(int(rng.integers(0, 4)) if rng.random() < 0.5 else 0):
            for _t in range(10):
                h = rng.uniform(15.0, 30.0)
                R = rng.uniform(150.0, 500.0)
                c = self._rand_point(h)
                n = shapes.unit(np.r_[rng.normal(size=2), rng.normal(0, 0.3)])
                # sample the disk for the overlap test
                e1 = shapes.unit(np.cross(n, rng.normal(size=3)))
                e2 = np.cross(n, e1)
                g = np.linspace(-1, 1, 7)
                pts = np.array([c + R * (u * e1 + v * e2) for u in g for v in g if u * u + v * v <= 1])
                inside = np.abs(pts[:, 2]) < self.T / 2 - h
                pts = pts[inside]
                if len(pts) and self._free(pts, h + 5):
                    sh = ERSheet(rng, c, n, h, R, self.rho_cyto)
                    self.bodies.append(sh)
                    if rng.random() < 0.6:
                        self.rough.append(sh)
                    break
        for _ in range(int(rng.integers(0, 7))):
            for _t in range(10):
                r = rng.uniform(15.0, 30.0)
                p0 = self._rand_point(r)
                L = rng.uniform(200.0, 900.0)
                d3 = shapes.unit(np.r_[rng.normal(size=2), rng.normal(0, 0.2)])
                p2 = p0 + L * d3
                p1 = 0.5 * (p0 + p2) + rng.normal(0, 0.2 * L, 3) * np.array([1, 1, 0.2])
                pts = shapes.bezier(p0, p1, p2, 12)
                pts[:, 2] = np.clip(pts[:, 2], -self.T / 2 + r + 3, self.T / 2 - r - 3)
                if self._free(pts, r):
                    self.bodies.append(ERTube(rng, pts, r, self.rho_cyto))
                    break
        # vesicles: scattered, coated, and sometimes a synapse-like cluster
        nves = int(rng.integers(0, 25) * area)
        for _ in range(nves):
            got = self._place_sphere(20.0, 120.0 if rng.random() < 0.8 else 200.0, tries=5)
            if got:
                self.bodies.append(Vesicle(rng, got[0], got[1], self.rho_cyto))
        for _ in range(int(rng.integers(0, 3))):
            got = self._place_sphere(30.0, 50.0, tries=5)
            if got:
                self.bodies.append(Vesicle(rng, got[0], got[1], self.rho_cyto, coated=True))
        if rng.random() < 0.12:
            cc = self._rand_point(20.0)
            rad = rng.uniform(150.0, 350.0)
            for _ in range(int(rng.integers(40, 200))):
                r = rng.uniform(17.0, 25.0)
                c = cc + rng.normal(0, rad / 2, 3) * np.array([1, 1, 0.5])
                if self._free(c, r, margin=2.0):
                    self.bodies.append(Vesicle(rng, c, r, self.rho_cyto))

    # ---- particles -------------------------------------------------------------------
    def _particles(self):
        rng = self.rng
        vol_um3 = np.prod(self.hi - self.lo) / 1e9
        n_ribo = int(rng.uniform(300, 4000) * vol_um3)
        P = np.c_[rng.uniform(self.lo[0], self.hi[0], n_ribo), rng.uniform(self.lo[1], self.hi[1], n_ribo),
                  rng.uniform(-self.T / 2, self.T / 2, n_ribo)]
        # polysomes: chains of 3-10 ribosomes ~30 nm apart
        chains = []
        for _ in range(int(n_ribo * rng.uniform(0, 0.04))):
            c = rng.uniform(self.lo, self.hi)
            d = shapes.unit(rng.normal(size=3))
            for k in range(int(rng.integers(3, 10))):
                d = shapes.unit(d + rng.normal(0, 0.4, 3))
                c = c + 30.0 * d
                chains.append(c.copy())
        if chains:
            P = np.vstack([P, np.array(chains)])
        # rough ER: ribosomes on the cytosolic face of ER sheets
        for sh in self.rough:
            n = int(sh.R * sh.R * np.pi / rng.uniform(1500.0, 4000.0))
            e1 = shapes.unit(np.cross(sh.n, rng.normal(size=3)))
            e2 = np.cross(sh.n, e1)
            rr = sh.R * np.sqrt(rng.uniform(0, 1, n))
            th = rng.uniform(0, 2 * np.pi, n)
            side = rng.choice([-1.0, 1.0], n)
            Q = sh.c + (rr * np.cos(th))[:, None] * e1 + (rr * np.sin(th))[:, None] * e2 + \
                (side * (sh.h + 16.0))[:, None] * sh.n
            P = np.vstack([P, Q])
        P = P[self._keep_free(P, 14.0)]
        self.n_ribo = len(P)
        kinds = rng.integers(0, 8, len(P))
        # gold fiducials on the slab surfaces
        if rng.random() < 0.35:
            n = int(rng.integers(2, 12))
            G = np.c_[rng.uniform(0, self.W, n), rng.uniform(0, self.H, n),
                      rng.choice([-1, 1], n) * (self.T / 2 - 7.0)]
            P = np.vstack([P, G])
            kinds = np.r_[kinds, np.full(n, 8)]
        self.ribosomes = (P, kinds)
        # point field: soluble proteins, actin, microtubules
        frac = rng.uniform(0.01, 0.06)
        vol_nm3 = np.prod(self.hi - self.lo)
        n_prot = int(frac * vol_nm3 / 376.0)
        PP, WW = protein_points(rng, n_prot, self.lo, self.hi)
        parts = [(PP, WW)]
        for _ in range(int(rng.integers(1, 6)) if rng.random() < 0.5 else 0):
            parts.append(microtubule(rng, self._filament_path(12.5)))
        for _ in range(int(rng.integers(1, 3)) if rng.random() < 0.3 else 0):
            parts.append(actin_bundle(rng, self._filament_path(30.0), int(rng.integers(6, 30))))
        if rng.random() < 0.3:
            for _ in range(int(rng.integers(20, 120))):
                path = self._filament_path(4.0, length=rng.uniform(80, 400))
                parts.append(filament_points(path, lin_mass=V_PROTEIN * 27.0))
        P = np.concatenate([p for p, w in parts])
        W = np.concatenate([w for p, w in parts])
        keep = self._keep_free(P, 4.0)
        self.points, self.point_w = P[keep], W[keep]

    def _filament_path(self, r, length=None):
        rng = self.rng
        p0 = self._rand_point(r)
        L = length or rng.uniform(600.0, 2500.0)
        d3 = shapes.unit(np.r_[rng.normal(size=2), rng.normal(0, 0.15)])
        p2 = p0 + L * d3
        p1 = 0.5 * (p0 + p2) + rng.normal(0, 0.1 * L, 3) * np.array([1, 1, 0.1])
        pts = shapes.bezier(p0, p1, p2, max(4, int(L / 40)))
        pts[:, 2] = np.clip(pts[:, 2], -self.T / 2 + r + 2, self.T / 2 - r - 2)
        return pts

    def kernels(self, grid):
        key = (round(grid.p, 6), round(grid.dz, 6))
        if key not in self._kcache:
            rng = np.random.default_rng(self.ribo_seed)
            ks = ribosome_kernels(rng, grid.p, grid.dz, self.rho_cyto)
            ks.append(gold_kernel(grid.p, grid.dz))
            self._kcache[key] = ks
        return self._kcache[key]
