"""Layers on the specimen surfaces, as 2D maps of projected potential and of extra attenuation:
the edge of a holey carbon film and crystalline-ice contamination.

* Carbon: holey carbon supports (Quantifoil R2/1, R2/2, as in the study: 2 um holes) are
  10-20 nm of amorphous carbon, mean inner potential ~10 V, i.e. ~2.5 x protein relative to ice
  (Himes & Grigorieff 2021), with a fine granular texture.
* Ice contamination: hexagonal-ice crystals (50-300 nm) deposited on the surface during
  transfer; their Bragg scattering removes electrons outside the objective aperture, so they
  appear much darker than their phase alone explains; modelled as projected thickness with a
  3x attenuation factor. Projections only: in a tomogram they would dominate every slice with
  streaks (real data sets with them are usually discarded).
A layer at height z_s seen at tilt angle t about the axis x = xc (the tilt axis of tomo.py)
reaches the detector at u = xc + (x - xc) cos t + z_s sin t; ``maps`` inverts this for each
detector pixel and scales the layer's thickness by 1 / cos t.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .physics import V_PROTEIN


class Surfaces:
    def __init__(self, rng, scene, tomogram=False):
        self.carbon = None
        self.contam = []
        W, H, T = scene.W, scene.H, scene.T
        if rng.random() < 0.15:
            R = rng.uniform(600.0, 1000.0)
            ang = rng.uniform(0, 2 * np.pi)
            d = R + rng.uniform(-0.35, 0.1) * min(W, H)
            c = np.array([W / 2, H / 2]) + d * np.array([np.cos(ang), np.sin(ang)])
            self.carbon = dict(c=c, R=R, t=rng.uniform(10.0, 20.0), z=T / 2 + 10.0,
                               amp=rng.uniform(2.0, 3.0) * V_PROTEIN, seed=int(rng.integers(1 << 30)))
        contam = rng.random() < 0.15 and not tomogram
        if contam:
            for _ in range(int(rng.integers(1, 4))):
                self.contam.append(dict(c=np.array([rng.uniform(0, W), rng.uniform(0, H)]),
                                        r=rng.uniform(25.0, 150.0), t=rng.uniform(40.0, 200.0),
                                        z=rng.choice([-1, 1]) * (T / 2 + 40.0)))

    def maps(self, xs, ys, tilt_deg=0.0, xc=0.0):
        """(projected potential V nm, extra attenuation thickness nm) on pixel centres xs (nx,)
        (detector coordinates) and ys (ny,), for a tilt about the axis parallel to y at x = xc."""
        t = np.deg2rad(tilt_deg)
        ct, st = np.cos(t), np.sin(t)
        pot = np.zeros((len(ys), len(xs)))
        att = np.zeros_like(pot)
        Y = ys[:, None]
        if self.carbon is not None:
            cb = self.carbon
            X = xc + (xs[None, :] - xc - cb["z"] * st) / ct
            r = np.sqrt((X - cb["c"][0]) ** 2 + (Y - cb["c"][1]) ** 2)
            film = 1.0 / (1.0 + np.exp(-(r - cb["R"]) / 1.5))
            rng = np.random.default_rng(cb["seed"])
            grain = ndimage.gaussian_filter(rng.normal(size=pot.shape), 1.5)
            grain /= grain.std() + 1e-12
            thick = cb["t"] * film * (1 + 0.15 * grain) / ct
            pot += cb["amp"] * thick
            att += 0.8 * thick
        for ic in self.contam:
            X = xc + (xs[None, :] - xc - ic["z"] * st) / ct
            r = np.sqrt((X - ic["c"][0]) ** 2 + (Y - ic["c"][1]) ** 2)
            prof = np.sqrt(np.clip(1 - (r / ic["r"]) ** 2, 0, 1))
            thick = ic["t"] * prof / ct
            pot += 0.3 * V_PROTEIN * thick
            att += 3.0 * thick
        return pot, att
