"""A mitochondrion as a 3D double-membrane body with cristae, matrix and granules.

Geometry (all nm)
-----------------
* Body: one or more branches, each a tube of elliptic cross-section around a planar centre line
  (quadratic Bezier at height zc; a single point gives a round or oval body), in-plane
  semi-width a(s) and z semi-height c = kappa * a, kappa 0.6-1 (flattened, as mitochondria in thin cell
  regions and lamellae are), with rounded ends. Branched bodies are unions (min of SDFs).
  Constrictions (fission sites) modulate a(s) with a Gaussian dip. Widths 90-600 nm and lengths
  up to several um: light- and electron-microscopy reviews give 0.15-1 um diameters and
  0.5-10 um lengths for mammalian mitochondria (e.g. the cryo-ET surveys of Perkins et al. 1997,
  J Struct Biol 119:260, and the cardiomyocyte EM tomography study in Curr Issues Mol Biol
  45:6097, 2023, doi:10.3390/cimb45070385, which reports large size/shape heterogeneity).
* Outer membrane (OMM) at d_o = 0; inner boundary membrane (IBM) at d_o = -s_im,
  s_im = 12-20 nm centre to centre: the IBM is "closely apposed" to the OMM (Frey & Mannella
  2000, Trends Biochem Sci 25:319; Perkins et al. 1997).
* Cristae are invaginations of the inner membrane: the matrix compartment is
  M = {d_o + s_im < 0} minus the union of crista lumens, SDF d_m = max(d_o + s_im, -d_cristae),
  so the IBM and the crista membranes form one continuous surface, and wherever a crista lumen
  crosses the IBM there is an opening: a crista junction. Kinds, after the EM tomography
  literature (Frey & Mannella 2000; Perkins et al. 1997; Mannella 2006, BBA 1763:542):
    - lamellar: flat sheets (rounded disks) of lumen width 12-30 nm, mostly perpendicular to the
      long axis (+-25 deg), spaced 25-80 nm;
    - tubular: tubes of 16-28 nm diameter running from the IBM inward (junction ~28-30 nm,
      Perkins et al. 1997);
    - vesicular: closed inner vesicles (20-80 nm diameter) detached from the IBM;
    - sparse: 1-4 lamellae; swollen: none or 1-2 remnants and a light matrix;
    - irregular: lamellae in random orientations mixed with tubes.
* Matrix: protein-rich (up to ~500 mg/ml), denser than the cytosol (which holds ~200-300
  mg/ml): 0.25-0.6 x protein above the smooth cytosol background (0.12-0.22 when swollen),
  with a smooth random texture (24 plane waves, 15-60 nm wavelengths, +-10-30 %); the
  intermembrane space and crista lumens 0-0.1 above the cytosol background.
* Matrix granules: amorphous calcium-phosphate deposits (Wolf et al. 2017, eLife 6:e29929),
  16-40 nm across, 1.5-3 x protein density, 0-8 per body (none in half of them).
Membranes use physics.Bilayer (head groups 1.1-2.2 x protein x nm per leaflet: the inner
membrane is about 75 % protein by mass, crowded with respiratory complexes and ATP synthase); compartments use smoothed indicators (physics.smooth_inside).
"""

from __future__ import annotations

import numpy as np

from . import shapes
from .physics import V_PROTEIN, Bilayer, aa_sigma2, smooth_inside

CRISTA_KINDS = ("lamellar", "tubular", "vesicular", "sparse", "swollen", "irregular")


class Branch:
    def __init__(self, pts2d, a0, kappa, zc, cmax, constrictions=()):
        self.pts = np.asarray(pts2d, float)
        self.a0 = a0
        self.kappa = kappa
        self.zc = zc
        self.cmax = cmax
        self.constrictions = list(constrictions)  # (s0, width, depth)

    def a_of(self, s):
        a = np.full_like(s, self.a0, dtype=float) if np.ndim(s) else self.a0
        for s0, w, dep in self.constrictions:
            a = a * (1.0 - dep * np.exp(-(((s - s0) / w) ** 2)))
        return a

    def c_of(self, a):
        return np.minimum(self.kappa * a, self.cmax)

    def sdf(self, x, y, z):
        r, s = shapes.polyline_distance_2d(x, y, self.pts)
        a = self.a_of(s)
        c = self.c_of(a)
        u = r / a
        w = (z - self.zc) / c
        q = np.sqrt(u * u + w * w)
        g = np.sqrt((u / a) ** 2 + (w / c) ** 2)
        grad = np.where(q > 1e-6, g / np.maximum(q, 1e-6), 1.0 / np.maximum(a, c))
        return (q - 1.0) / grad

    def point_at(self, s):
        """Centre-line point (x, y, zc) and unit in-plane tangent at arc parameter s."""
        pts = self.pts
        if len(pts) == 1:
            return np.array([pts[0, 0], pts[0, 1], self.zc]), None
        seg = np.sqrt(((pts[1:] - pts[:-1]) ** 2).sum(1))
        cum = np.concatenate([[0], np.cumsum(seg)])
        t = s * cum[-1]
        i = int(np.clip(np.searchsorted(cum, t) - 1, 0, len(pts) - 2))
        f = (t - cum[i]) / max(seg[i], 1e-9)
        p = pts[i] + f * (pts[i + 1] - pts[i])
        tan = shapes.unit(np.append(pts[i + 1] - pts[i], 0.0))
        return np.array([p[0], p[1], self.zc]), tan

    def length(self):
        if len(self.pts) == 1:
            return 0.0
        return float(np.sqrt(((self.pts[1:] - self.pts[:-1]) ** 2).sum(1)).sum())

    def bbox(self):
        m = self.a0 * 1.05 + 5
        zc = self.c_of(self.a0) + 5
        return (self.pts[:, 0].min() - m, self.pts[:, 0].max() + m,
                self.pts[:, 1].min() - m, self.pts[:, 1].max() + m, self.zc - zc, self.zc + zc)


class Crista:
    """One crista lumen: kind 'disk' (c, n, h, R), 'tube' (A, B, r) or 'ball' (c, r)."""

    def __init__(self, kind, **kw):
        self.kind = kind
        self.__dict__.update(kw)
        if kind == "disk":
            m = self.R + self.h
            self.box = (self.c - m, self.c + m)
        elif kind == "tube":
            lo = np.minimum(self.A, self.B) - self.r
            hi = np.maximum(self.A, self.B) + self.r
            self.box = (lo, hi)
        else:
            self.box = (self.c - self.r, self.c + self.r)

    def sdf(self, x, y, z):
        if self.kind == "disk":
            return shapes.rounded_disk(x, y, z, self.c, self.n, self.h, self.R)
        if self.kind == "tube":
            return shapes.segment_distance(x, y, z, self.A, self.B) - self.r
        return shapes.sphere(x, y, z, self.c, self.r)


class Mitochondrion:
    name = "mitochondria"
    cull = 2.0

    def __init__(self, rng, branches, rho_cyto, crista_kind=None):
        self.branches = branches
        self.rho_cyto = rho_cyto
        self.kind = crista_kind or rng.choice(CRISTA_KINDS, p=[0.34, 0.16, 0.1, 0.14, 0.1, 0.16])
        self.om = Bilayer(rng, head_range=(1.1, 2.0))
        self.im = Bilayer(rng, head_range=(1.2, 2.2))
        self.s_im = rng.uniform(12.0, 20.0)
        swollen = self.kind == "swollen"
        self.rho_ims = rho_cyto + rng.uniform(0.0, 0.1) * V_PROTEIN
        self.rho_mat = rho_cyto + (rng.uniform(0.12, 0.22) if swollen else rng.uniform(0.25, 0.6)) * V_PROTEIN
        nw = 24
        lam = rng.uniform(15.0, 60.0, nw)
        dirs = np.array([shapes.unit(v) for v in rng.normal(size=(nw, 3))])
        self.wk = dirs * (2 * np.pi / lam)[:, None]
        self.wph = rng.uniform(0, 2 * np.pi, nw)
        self.wamp = rng.uniform(0.1, 0.3) / np.sqrt(nw / 2)
        self.cristae = self._make_cristae(rng)
        self.granules = self._make_granules(rng)
        bxs = np.array([b.bbox() for b in branches])
        self.box = (bxs[:, 0].min(), bxs[:, 1].max(), bxs[:, 2].min(), bxs[:, 3].max(),
                    bxs[:, 4].min(), bxs[:, 5].max())

    # ---- construction -------------------------------------------------------------------
    def _frame(self, rng, br, s):
        p, tan = br.point_at(s)
        if tan is None:
            ang = rng.uniform(0, 2 * np.pi)
            tan = np.array([np.cos(ang), np.sin(ang), 0.0])
        nrm = np.array([-tan[1], tan[0], 0.0])
        return p, tan, nrm

    def _make_cristae(self, rng):
        out = []
        k = self.kind
        h_lo, h_hi = (6.0, 15.0)
        for br in self.branches:
            a = br.a0
            L = br.length() + 2 * a
            if k in ("lamellar", "irregular"):
                spacing = rng.uniform(25.0, 80.0)
                n = max(1, int(L / spacing))
            elif k == "sparse":
                n = int(rng.integers(1, 5))
            elif k == "swollen":
                n = int(rng.integers(0, 3))
            else:
                n = 0
            for i in range(n):
                s = (i + rng.uniform(0.2, 0.8)) / n if k in ("lamellar", "irregular") else rng.uniform(0.05, 0.95)
                p, tan, nrm = self._frame(rng, br, s)
                a_loc = float(br.a_of(np.array(s)))
                c_loc = float(br.c_of(a_loc))
                if k == "irregular":
                    n_vec = shapes.unit(rng.normal(size=3))
                else:
                    ang = np.deg2rad(rng.uniform(-25, 25))
                    tilt = np.deg2rad(rng.uniform(-20, 20))
                    n_vec = shapes.unit(np.cos(ang) * tan + np.sin(ang) * nrm + np.array([0, 0, np.sin(tilt)]))
                o = shapes.unit(np.cross(n_vec, rng.normal(size=3)))
                R = rng.uniform(0.45, 1.0) * a_loc
                off = rng.uniform(0.0, 0.6) * a_loc
                c = p + o * off * np.array([1, 1, c_loc / a_loc])
                # the crista is confined along the long axis: shift the disk along the tangent
                c = c + tan * rng.uniform(-0.3, 0.3) * min(a_loc, 60.0)
                h = rng.uniform(h_lo, h_hi) * (1.6 if k == "swollen" else 1.0)
                out.append(Crista("disk", c=c, n=n_vec, h=h, R=R))
            if k in ("tubular", "irregular"):
                area = (br.length() + a) * a
                n_t = int(np.clip(area / rng.uniform(1500.0, 5000.0), 3, 60))
                if k == "irregular":
                    n_t = n_t // 3
                for _ in range(n_t):
                    s = rng.uniform(0.0, 1.0)
                    p, tan, nrm = self._frame(rng, br, s)
                    a_loc = float(br.a_of(np.array(s)))
                    c_loc = float(br.c_of(a_loc))
                    phi = rng.uniform(0, 2 * np.pi)
                    radial = np.cos(phi) * nrm * a_loc + np.sin(phi) * np.array([0, 0, c_loc])
                    r = rng.uniform(8.0, 14.0)
                    A = p + radial * (1.0 - (self.s_im - r) / max(a_loc, 1.0))
                    depth = rng.uniform(0.3, 0.9)
                    B = p + radial * (1.0 - depth) + tan * rng.uniform(-0.4, 0.4) * a_loc
                    out.append(Crista("tube", A=A, B=B, r=r))
            if k == "vesicular":
                n_v = int(np.clip((br.length() + a) * a / rng.uniform(2000.0, 6000.0), 3, 40))
                for _ in range(n_v):
                    ball = self._inner_ball(rng, br, (10.0, 40.0), 6.0)
                    if ball is not None:
                        out.append(Crista("ball", c=ball[0], r=ball[1]))
        return out

    def _inner_ball(self, rng, br, r_range, margin):
        """A ball (centre, radius uniform in r_range) at a random place of branch br, at least
        margin nm inside the inner membrane; None where the branch is too thin there."""
        s = rng.uniform(0.0, 1.0)
        p, tan, nrm = self._frame(rng, br, s)
        a_loc = float(br.a_of(np.array(s)))
        c_loc = float(br.c_of(a_loc))
        r = rng.uniform(*r_range)
        room = 1.0 - (r + self.s_im + margin) / max(min(a_loc, c_loc), 1.0)
        if room <= 0.05:
            return None
        phi = rng.uniform(0, 2 * np.pi)
        f = rng.uniform(0, room)
        c = p + f * (np.cos(phi) * nrm * a_loc + np.sin(phi) * np.array([0, 0, c_loc]))
        return c, r

    def _make_granules(self, rng):
        n = int(rng.choice([0, 0, 0, 0, 1, 2, 3, 5, 8]))
        out = []
        for _ in range(n):
            br = self.branches[int(rng.integers(len(self.branches)))]
            ball = self._inner_ball(rng, br, (8.0, 20.0), 8.0)
            if ball is not None:
                out.append((ball[0], ball[1], rng.uniform(1.5, 3.0) * V_PROTEIN))
        return out

    # ---- evaluation ---------------------------------------------------------------------
    def sdf_outer(self, x, y, z):
        d = None
        for br in self.branches:
            db = br.sdf(x, y, z)
            d = db if d is None else np.minimum(d, db)
        return d

    def sdf_points(self, P):
        """Outer-membrane SDF at points P (N,3)."""
        x, y, z = P[:, 0], P[:, 1], P[:, 2]
        return self.sdf_outer(x, y, z)

    def gt_threshold(self):
        return self.om.outer

    def _texture(self, x, y, z, shape):
        """Matrix texture 1 + sum of plane waves, evaluated every ~2.5 nm (nearest-neighbour
        upsampled; the waves are >= 15 nm long)."""
        def step(a):
            a = a.ravel()
            return max(1, int(2.5 / max(float(abs(a[1] - a[0])), 1e-3))) if a.size > 1 else 1

        sx, sz = step(x), step(z)
        xc, yc, zc = x[..., ::sx], y[:, ::sx, :], z[::sz]
        acc = 0.0
        for k, ph in zip(self.wk, self.wph):
            acc = acc + np.cos(k[0] * xc + k[1] * yc + k[2] * zc + ph)
        acc = np.broadcast_to(acc, (zc.shape[0], yc.shape[1], xc.shape[2]))
        if sx > 1:
            acc = np.repeat(np.repeat(acc, sx, axis=1), sx, axis=2)
        if sz > 1:
            acc = np.repeat(acc, sz, axis=0)
        return 1.0 + self.wamp * acc[: shape[0], : shape[1], : shape[2]]

    def density(self, x, y, z, p, dz):
        """(potential relative to the cytosol (V), GT mask d_o <= outer head group) on a tile."""
        d_o = self.sdf_outer(x, y, z)
        if d_o.min() > 8.0:
            return None, None
        gz = np.gradient(d_o, dz, axis=0) if d_o.shape[0] > 1 else None
        e2 = aa_sigma2(p, dz, gz)
        d_i = d_o + self.s_im
        lo = np.array([x.min(), y.min(), z.min()])
        hi = np.array([x.max(), y.max(), z.max()])
        d_c = None
        ctr = 0.5 * (lo + hi)
        hd = 0.5 * float(np.linalg.norm(hi - lo))
        for cr in self.cristae:
            if np.any(cr.box[1] < lo) or np.any(cr.box[0] > hi):
                continue
            if cr.kind == "disk" and abs(float(cr.n @ (ctr - cr.c))) > hd + cr.h + 2.0:
                continue
            dc = cr.sdf(x, y, z)
            d_c = dc if d_c is None else np.minimum(d_c, dc)
        d_m = d_i if d_c is None else np.maximum(d_i, -d_c)
        if d_c is not None and d_m.shape[0] > 1:
            e2m = aa_sigma2(p, dz, np.gradient(d_m, dz, axis=0))
        else:
            e2m = e2
        tex = self._texture(x, y, z, d_o.shape)
        rho = self.om(d_o, e2) + self.im(d_m, e2m)
        rho = rho + smooth_inside(d_o, e2) * (self.rho_ims - self.rho_cyto)
        rho = rho + smooth_inside(d_m, e2m) * (self.rho_mat * tex - self.rho_ims)
        for c, r, amp in self.granules:
            if np.any(c + r + 3 < lo) or np.any(c - r - 3 > hi):
                continue
            dg = shapes.sphere(x, y, z, c, r)
            rho = rho + smooth_inside(dg, e2, s0=2.0) * (amp - self.rho_mat)
        mask = d_o <= self.gt_threshold()
        return rho.astype(np.float32), mask
