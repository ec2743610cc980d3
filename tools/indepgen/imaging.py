"""Microscope settings per scene and the projection image of a projected potential map.

Settings drawn per scene: 300 kV, Cs 2.7 mm, defocus 2-6 um underfocus (typical cellular
cryo-ET: a few um, e.g. the tilt series of the study, Polara F30 at 300 kV), amplitude contrast
0.07-0.10, envelope B-factor 3-15 nm^2 (300-1500 A^2: partial coherence, drift, chromatic
blur in thick specimens and the accumulated-dose damage of a tilt series), ice-thickness gradient up to 30 % across the field.
Projection images: a target SNR (per pixel, physics module) drawn in [0.05, 0.15] fixes the dose.
"""

from __future__ import annotations

import numpy as np

from .physics import V_PROTEIN, counts_for_snr, image_intensity, shot_noise


def draw_optics(rng):
    ang = rng.uniform(0, 2 * np.pi)
    return dict(defocus_nm=rng.uniform(2000.0, 6000.0), amp=rng.uniform(0.07, 0.10),
                bfactor_nm2=rng.uniform(3.0, 15.0), grad=rng.uniform(0.0, 0.3),
                grad_dir=(np.cos(ang), np.sin(ang)))


def thickness_map(xs, ys, T, W, optics, tilt_deg=0.0):
    gx, gy = optics["grad_dir"]
    X = (xs[None, :] - W / 2) / W
    Y = (ys[:, None] - W / 2) / W
    return T * (1.0 + optics["grad"] * (gx * X + gy * Y)) / np.cos(np.deg2rad(tilt_deg))


def effective_thickness(pot, T_map, att):
    """Ice thickness plus a mass-thickness term (protein-equivalent nm x 0.3) plus layers."""
    return T_map + 0.3 * (pot - pot.mean()) / V_PROTEIN + att


def projection_image(pot, att, T_map, p, optics, snr, rng):
    """Noisy counts, noise-free intensity, counts per pixel of the unscattered beam."""
    clean = image_intensity(pot, effective_thickness(pot, T_map, att), p, optics)
    n = counts_for_snr(clean, snr)
    return shot_noise(clean, n, rng), clean, n


def to_display(img, rng, force_bits=None):
    """Display conversion as exported by common tools: 16-bit linear, or 8-bit with percentile
    clipping and a mild gamma. Returns (array, bits)."""
    bits = force_bits or (16 if rng.random() < 0.5 else 8)
    lo, hi = np.percentile(img, [rng.uniform(0.05, 1.0), 100 - rng.uniform(0.05, 1.0)])
    x = np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1)
    if bits == 8:
        g = rng.uniform(0.8, 1.25)
        return (np.round(255 * x ** g)).astype(np.uint8), 8
    return (np.round(x * 60000 + 2000)).astype(np.uint16), 16
