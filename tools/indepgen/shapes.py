"""Signed-distance primitives (numpy, broadcasting), all lengths in nm.

Surfaces are implicit: d(x) < 0 inside, d = 0 on the surface, |grad d| ~ 1 near it. Primitives
are exact SDFs (sphere, segment capsule, rounded disk) or first-order approximations
d ~ F/|grad F| (ellipsoid, elliptic tube), which are accurate close to the surface, where
membranes are drawn. Compartments are combined with min (union) and max (intersection) as in
constructive solid geometry (e.g. Hart 1996, "Sphere tracing", The Visual Computer 12:527).
Coordinates are passed as broadcastable arrays x (1,1,nx), y (1,ny,1), z (nz,1,1), or as
point arrays of the same shape.
"""

from __future__ import annotations

import numpy as np


def sphere(x, y, z, c, r):
    return np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) - r


def ellipsoid(x, y, z, c, axes, rot=None):
    """Approximate SDF of an ellipsoid with semi-axes `axes`, rotated by the 3x3 matrix rot
    (columns = body axes in world coordinates)."""
    dx, dy, dz = x - c[0], y - c[1], z - c[2]
    if rot is not None:
        u = dx * rot[0, 0] + dy * rot[1, 0] + dz * rot[2, 0]
        v = dx * rot[0, 1] + dy * rot[1, 1] + dz * rot[2, 1]
        w = dx * rot[0, 2] + dy * rot[1, 2] + dz * rot[2, 2]
    else:
        u, v, w = dx, dy, dz
    a, b, cc = axes
    q = np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / cc) ** 2)
    g = np.sqrt((u / a ** 2) ** 2 + (v / b ** 2) ** 2 + (w / cc ** 2) ** 2)
    qs = np.maximum(q, 1e-6)
    grad = np.where(q > 1e-6, g / qs, 1.0 / max(axes))
    return (q - 1.0) / grad


def segment_distance(x, y, z, a, b):
    """Distance to the segment a-b (3-vectors)."""
    ab = np.asarray(b, float) - np.asarray(a, float)
    L2 = float(ab @ ab) + 1e-12
    px, py, pz = x - a[0], y - a[1], z - a[2]
    t = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / L2, 0.0, 1.0)
    return np.sqrt((px - t * ab[0]) ** 2 + (py - t * ab[1]) ** 2 + (pz - t * ab[2]) ** 2)


def polyline_distance(x, y, z, pts, seg_ids=None):
    """Distance to a 3D polyline (pts: (M,3)); optionally only the segments seg_ids."""
    ids = range(len(pts) - 1) if seg_ids is None else seg_ids
    out = None
    for i in ids:
        d = segment_distance(x, y, z, pts[i], pts[i + 1])
        out = d if out is None else np.minimum(out, d)
    return out


def polyline_distance_2d(x, y, pts):
    """In-plane distance r and arc parameter s in [0,1] of the nearest point, to a 2D polyline
    pts (M,2). x: (1,nx) or any, y broadcastable."""
    M = len(pts)
    if M == 1:
        r = np.sqrt((x - pts[0, 0]) ** 2 + (y - pts[0, 1]) ** 2)
        return r, np.zeros_like(r)
    seglen = np.sqrt(((pts[1:] - pts[:-1]) ** 2).sum(1))
    cum = np.concatenate([[0.0], np.cumsum(seglen)])
    total = max(cum[-1], 1e-9)
    best = None
    best_s = None
    for i in range(M - 1):
        a, b = pts[i], pts[i + 1]
        ab = b - a
        L2 = float(ab @ ab) + 1e-12
        px, py = x - a[0], y - a[1]
        t = np.clip((px * ab[0] + py * ab[1]) / L2, 0.0, 1.0)
        d = np.sqrt((px - t * ab[0]) ** 2 + (py - t * ab[1]) ** 2)
        s = (cum[i] + t * seglen[i]) / total
        if best is None:
            best, best_s = d, s
        else:
            m = d < best
            best = np.where(m, d, best)
            best_s = np.where(m, s, best_s)
    return best, best_s


def rounded_disk(x, y, z, c, n, half_thick, radius):
    """Exact SDF of a disk of half-thickness h and radius R with rims rounded at radius h
    (a lamellar crista or an ER sheet), centre c, unit normal n."""
    dx, dy, dz = x - c[0], y - c[1], z - c[2]
    u = dx * n[0] + dy * n[1] + dz * n[2]
    rx, ry, rz = dx - u * n[0], dy - u * n[1], dz - u * n[2]
    rho = np.sqrt(rx * rx + ry * ry + rz * rz)
    a = np.abs(u)
    b = rho - (radius - half_thick)
    inside = np.minimum(np.maximum(a, b), 0.0)
    outside = np.sqrt(np.maximum(a, 0.0) ** 2 + np.maximum(b, 0.0) ** 2)
    return inside + outside - half_thick


def bezier(p0, p1, p2, n=24):
    """Quadratic Bezier curve sampled at n points (rows)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t * t * p2


def random_rotation(rng):
    """Uniform random rotation matrix (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def unit(v):
    v = np.asarray(v, float)
    return v / (np.linalg.norm(v) + 1e-12)
