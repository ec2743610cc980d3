//! Geometry of the synthetic scene: curved spines (centre lines), their local frames, and the
//! projected path lengths through ellipsoidal bodies and shells.
//!
//! Every elongated body (mitochondrion, ER sheet, microtubule) is a tube around a spine: a
//! polyline in the image plane. At a pixel `p` the spine gives the local frame
//! `(dist, u, v)`: `dist` the distance to the nearest spine point, `u` the arc length of that point
//! (extended linearly past both ends, so `u < 0` before the start), and `v` the signed offset
//! perpendicular to the nearest segment. A round body is a tube with a very short spine.

use rand::Rng;

/// A point `(x, y)` in pixels; pixel `(row i, col j)` has its centre at `(j + 0.5, i + 0.5)`.
pub(crate) type P2 = [f32; 2];

/// Path length along the beam (z) through an ellipse with in-plane semi-axis `a` and beam
/// semi-axis `c`, at in-plane distance `rho` from its axis: `2 c sqrt(1 - (rho / a)^2)`, 0 outside.
/// A sphere is `c = a`; a body flattened by the thin cell periphery has `c < a`.
#[inline]
pub(crate) fn chord(rho: f32, a: f32, c: f32) -> f32 {
    if a <= 0.0 || c <= 0.0 {
        return 0.0;
    }
    let q = 1.0 - (rho / a) * (rho / a);
    if q <= 0.0 {
        0.0
    } else {
        2.0 * c * q.sqrt()
    }
}

/// Local frame of a pixel relative to a spine; see the module doc.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frame {
    pub dist: f32,
    pub u: f32,
    pub v: f32,
}

/// A polyline centre line with cumulative arc lengths `cum[k]` at vertex `k`.
#[derive(Clone, Debug)]
pub(crate) struct Spine {
    pub pts: Vec<P2>,
    cum: Vec<f32>,
}

impl Spine {
    /// A spine through `pts` (at least 2 distinct points).
    pub fn new(pts: Vec<P2>) -> Self {
        let mut cum = vec![0.0f32; pts.len()];
        for k in 1..pts.len() {
            let d = [pts[k][0] - pts[k - 1][0], pts[k][1] - pts[k - 1][1]];
            cum[k] = cum[k - 1] + (d[0] * d[0] + d[1] * d[1]).sqrt();
        }
        Spine { pts, cum }
    }

    /// A smooth curve of length `len` centred (at its arc midpoint) on `centre`, starting in
    /// direction `theta`, with curvature `kappa(s) = k0 + k1 sin(pi s / len)` (s = arc length),
    /// sampled with `n` segments. `k0 = k1 = 0` is a straight segment.
    pub fn curved(centre: P2, len: f32, theta: f32, k0: f32, k1: f32, n: usize) -> Self {
        let n = n.max(1);
        let ds = len.max(1e-3) / n as f32;
        let mut pts = Vec::with_capacity(n + 1);
        let (mut x, mut y, mut th) = (0.0f32, 0.0f32, theta);
        pts.push([x, y]);
        for k in 0..n {
            let s = (k as f32 + 0.5) * ds;
            let kappa = k0 + k1 * (std::f32::consts::PI * s / len.max(1e-3)).sin();
            th += kappa * ds * 0.5;
            x += th.cos() * ds;
            y += th.sin() * ds;
            th += kappa * ds * 0.5;
            pts.push([x, y]);
        }
        let mid = Spine::new(pts.clone()).point_at(len * 0.5);
        let pts = pts
            .into_iter()
            .map(|p| [p[0] - mid[0] + centre[0], p[1] - mid[1] + centre[1]])
            .collect();
        Spine::new(pts)
    }

    pub fn len(&self) -> f32 {
        *self.cum.last().unwrap_or(&0.0)
    }

    /// The point at arc length `s` (clamped to the spine).
    pub fn point_at(&self, s: f32) -> P2 {
        let s = s.clamp(0.0, self.len());
        for k in 1..self.pts.len() {
            if s <= self.cum[k] || k == self.pts.len() - 1 {
                let seg = (self.cum[k] - self.cum[k - 1]).max(1e-9);
                let t = ((s - self.cum[k - 1]) / seg).clamp(0.0, 1.0);
                let (a, b) = (self.pts[k - 1], self.pts[k]);
                return [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])];
            }
        }
        self.pts[0]
    }

    /// The arc midpoint.
    pub fn mid(&self) -> P2 {
        self.point_at(self.len() * 0.5)
    }

    /// `(xmin, ymin, xmax, ymax)` of the vertices.
    pub fn bbox(&self) -> [f32; 4] {
        let mut b = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
        for p in &self.pts {
            b[0] = b[0].min(p[0]);
            b[1] = b[1].min(p[1]);
            b[2] = b[2].max(p[0]);
            b[3] = b[3].max(p[1]);
        }
        b
    }

    /// The local frame of `p` (module doc). Ties go to the first segment.
    pub fn frame(&self, p: P2) -> Frame {
        let nseg = self.pts.len() - 1;
        let (mut best_d2, mut best_k, mut best_t) = (f32::MAX, 0usize, 0.0f32);
        for k in 0..nseg {
            let (a, b) = (self.pts[k], self.pts[k + 1]);
            let d = [b[0] - a[0], b[1] - a[1]];
            let l2 = (d[0] * d[0] + d[1] * d[1]).max(1e-12);
            let t_raw = ((p[0] - a[0]) * d[0] + (p[1] - a[1]) * d[1]) / l2;
            let t = t_raw.clamp(0.0, 1.0);
            let q = [a[0] + t * d[0] - p[0], a[1] + t * d[1] - p[1]];
            let d2 = q[0] * q[0] + q[1] * q[1];
            if d2 < best_d2 {
                best_d2 = d2;
                best_k = k;
                best_t = t_raw;
            }
        }
        let (a, b) = (self.pts[best_k], self.pts[best_k + 1]);
        let d = [b[0] - a[0], b[1] - a[1]];
        let l = (d[0] * d[0] + d[1] * d[1]).sqrt().max(1e-9);
        // Extend linearly past the ends, clamp in between.
        let t = if (best_k == 0 && best_t < 0.0) || (best_k == nseg - 1 && best_t > 1.0) {
            best_t
        } else {
            best_t.clamp(0.0, 1.0)
        };
        let u = self.cum[best_k] + t * l;
        let v = (d[0] * (p[1] - a[1]) - d[1] * (p[0] - a[0])) / l;
        Frame {
            dist: best_d2.sqrt(),
            u,
            v,
        }
    }
}

/// Low-order radial modulation of a body's outline: `r(theta, u) = r0 (1 + w)` with
/// `w = sum_k amp_k sin(m_k theta + phase_k) + amp_u sin(2 pi u / lambda + phase_u)`.
/// `theta` is the polar angle around the body's centre (round bodies), `u` the arc length
/// (elongated bodies); a few percent keeps outlines organic but convex-looking.
#[derive(Clone, Debug, Default)]
pub(crate) struct Wobble {
    pub polar: Vec<(f32, f32, f32)>,
    pub along: (f32, f32, f32),
}

impl Wobble {
    pub fn random<R: Rng>(rng: &mut R, polar_amp: f32, along_amp: f32, along_lambda: f32) -> Self {
        let polar = (2..=4)
            .map(|m| {
                let amp = polar_amp * rng.gen_range(0.2..1.0) / (m as f32 - 1.0);
                (amp, m as f32, rng.gen_range(0.0..std::f32::consts::TAU))
            })
            .collect();
        let along = (
            along_amp * rng.gen_range(0.0..1.0),
            along_lambda.max(1.0),
            rng.gen_range(0.0..std::f32::consts::TAU),
        );
        Wobble { polar, along }
    }

    /// The largest possible `|w|`.
    pub fn max_amp(&self) -> f32 {
        self.polar.iter().map(|p| p.0.abs()).sum::<f32>() + self.along.0.abs()
    }

    /// `1 + w(theta, u)`.
    #[inline]
    pub fn factor(&self, theta: f32, u: f32) -> f32 {
        let mut w = 1.0;
        for &(amp, m, ph) in &self.polar {
            w += amp * (m * theta + ph).sin();
        }
        let (amp, lambda, ph) = self.along;
        if amp != 0.0 {
            w += amp * (std::f32::consts::TAU * u / lambda + ph).sin();
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_of_straight_spine() {
        let s = Spine::new(vec![[0.0, 0.0], [10.0, 0.0]]);
        let f = s.frame([4.0, 3.0]);
        assert!(
            (f.dist - 3.0).abs() < 1e-5 && (f.u - 4.0).abs() < 1e-5 && (f.v - 3.0).abs() < 1e-5
        );
        let f = s.frame([-2.0, -1.0]);
        assert!((f.u + 2.0).abs() < 1e-5 && (f.v + 1.0).abs() < 1e-5);
        assert!((f.dist - 5f32.sqrt()).abs() < 1e-5);
    }

    #[test]
    fn curved_spine_has_its_length_and_centre() {
        let s = Spine::curved([50.0, 40.0], 80.0, 0.3, 0.01, 0.005, 16);
        assert!((s.len() - 80.0).abs() < 1e-2, "{}", s.len());
        let m = s.mid();
        assert!((m[0] - 50.0).abs() < 1e-3 && (m[1] - 40.0).abs() < 1e-3);
    }

    #[test]
    fn shell_peaks_at_the_inner_radius() {
        let shell = |rho: f32, a: f32, c: f32, t: f32| chord(rho, a, c) - chord(rho, a - t, c - t);
        let (a, c, t) = (50.0, 30.0, 2.0);
        let peak = shell(a - t, a, c, t);
        assert!(peak > shell(0.0, a, c, t) * 3.0);
        assert!(peak > shell(a - 0.5, a, c, t));
        assert_eq!(shell(a + 0.1, a, c, t), 0.0);
    }
}
