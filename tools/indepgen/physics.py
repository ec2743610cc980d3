"""Physical constants and models of the specimen and the microscope (units: nm, V, e-/A^2).

Specimen potential
------------------
Everything is expressed as the electrostatic potential *relative to vitreous ice*, in volts.
Commonly quoted mean inner potentials: vitreous ice about 3.6 V, protein about 6-7 V, lipid head
groups somewhat above protein, hydrocarbon chains slightly below ice, amorphous carbon about 10 V
(see the discussion of specimen potential and amplitude contrast in Himes & Grigorieff 2021,
"Cryo-TEM simulations of amorphous radiation-sensitive samples using multislice wave propagation",
IUCrJ 8:943, doi:10.1107/S2052252521008538, and the TEM-simulator manual of Rullgard &
Ofverstedt, v1.3, 2011). We use ``V_PROTEIN`` = 2.6 V for pure protein relative to ice and
express other materials as multiples of it.

Lipid bilayer
-------------
X-ray electron-density profiles of fluid bilayers show two head-group peaks separated by
D_HH ~ 3.6-4.4 nm (DPPC: 3.96 nm) around a methyl trough at the midplane (Nagle &
Tristram-Nagle, "Structure of lipid bilayers", lipid.phys.cmu.edu/xraystruct; Torbet & Wilkins
1976). We model a bilayer seen along its normal coordinate ``d`` (signed distance to the mid
surface) as two Gaussians of unit area (head groups, areal potential ``head`` V*nm each) at
+-D_HH/2 and one negative Gaussian (chains, ``tail`` V*nm) at 0. Biological membranes carry
about as much protein as lipid, which adds positive density; this is folded into ``head``.
Antialiasing: a Gaussian of width ``extra_sigma`` (pixel and z-sampling footprint, see
``aa_sigma2``) is added in quadrature; the profile keeps its integral, so projections do not
depend on the sampling.

Image formation
---------------
Weak-phase approximation with amplitude contrast (e.g. Frank, "Three-dimensional electron
microscopy of macromolecular assemblies", 2006, ch. 2; the CTF evaluated as in CTFFIND):
    phase  phi(x) = sigma_e * integral dV dz,   sigma_e(300 kV) = 6.53e-4 rad/(V nm)
    chi(k) = pi*lambda*df*k^2 - pi/2*Cs*lambda^3*k^4           (df > 0: underfocus)
    CTF(k) = -(sqrt(1-A^2) sin chi + A cos chi) * exp(-B k^2 / 4)
    I(x)   = exp(-t_eff(x) / lambda_in) * (1 + 2 (CTF * phi)(x))
with lambda(300 kV) = 1.9687e-3 nm, Cs = 2.7 mm, A = 0.07-0.1, a zero-loss energy filter
(inelastic electrons removed; lambda_in ~ 350 nm in vitreous ice at 300 kV, Rice et al. 2018,
J Struct Biol 204:38) and t_eff the ice thickness plus a mass-thickness term. Shot noise is
Poisson with the dose per pixel; a counting detector's MTF sinc(pi f / 2) (f in cycles/pixel)
is applied to the signal.

SNR is the per-pixel ratio var(noise-free image) / var(noise), the usual definition in
cryo-EM (Frank 2006), measured over the cellular area (no carbon, contamination or ice outside
the cell) with the noise-free image clipped to its 1-99 % percentiles there (a few gold beads
or a carbon edge would otherwise set the noise for the whole image); for projections the dose is chosen so that a drawn target SNR
is met.
"""

from __future__ import annotations

import numpy as np

V_PROTEIN = 2.6  # V, protein relative to vitreous ice
SIGMA_E_300 = 6.526e-4  # rad / (V nm), interaction constant at 300 kV
LAMBDA_300 = 1.9687e-3  # nm, relativistic electron wavelength at 300 kV
CS_NM = 2.7e6  # 2.7 mm
LAMBDA_INELASTIC = 350.0  # nm, inelastic mean free path in vitreous ice at 300 kV

SQRT2PI = np.float32(np.sqrt(2 * np.pi))


def gauss(x, s):
    """Unit-area Gaussian."""
    return np.exp(-0.5 * (x / s) ** 2) / (s * SQRT2PI)


def aa_sigma2(p_xy: float, dz: float, gz=None):
    """Squared antialiasing width (nm^2) of a surface feature sampled at pixel p_xy and z step dz.

    A box of width w has the variance w^2/12; a surface whose normal has z component gz is cut
    by the z sampling at an effective width |gz|*dz, and by the pixel at sqrt(1-gz^2)*p_xy."""
    if gz is None:
        return (p_xy ** 2) / 12.0 + (dz ** 2) / 12.0 * 0.5
    g2 = np.minimum(gz * gz, 1.0)
    return (p_xy ** 2) / 12.0 * (1.0 - g2) + (dz ** 2) / 12.0 * g2


class Bilayer:
    """A lipid bilayer profile (see module doc)."""

    def __init__(self, rng, head_range=(0.9, 1.6), dhh_range=(3.6, 4.4), tail_range=(0.3, 0.7)):
        self.dhh = rng.uniform(*dhh_range)
        self.head = rng.uniform(*head_range) * V_PROTEIN  # V nm per leaflet
        self.tail = -rng.uniform(*tail_range) * V_PROTEIN  # V nm
        self.s_head = rng.uniform(0.45, 0.7)
        self.s_tail = rng.uniform(0.8, 1.2)

    def __call__(self, d, extra2):
        """Profile at d (nm) with extra Gaussian width^2 extra2; evaluated only in the band
        |d| < 8 nm + 4 sigma (zero outside, to < 1e-3 of the peak)."""
        d = np.asarray(d, np.float32)
        e2 = np.broadcast_to(np.asarray(extra2, np.float32), d.shape)
        lim = 0.5 * self.dhh + 4.0 * np.sqrt(max(self.s_head, self.s_tail) ** 2 + float(e2.max()))
        band = np.abs(d) < lim
        out = np.zeros(d.shape, np.float32)
        if band.any():
            out[band] = self._profile(d[band], e2[band])
        return out

    def _profile(self, d, extra2):
        sh = np.sqrt(self.s_head ** 2 + extra2)
        st = np.sqrt(self.s_tail ** 2 + extra2)
        h = 0.5 * self.dhh
        return self.head * (gauss(d - h, sh) + gauss(d + h, sh)) + self.tail * gauss(d, st)

    @property
    def outer(self) -> float:
        """Distance from the mid surface to the outer edge of the head group (nm)."""
        return 0.5 * self.dhh + 1.5 * self.s_head


class Monolayer(Bilayer):
    """A phospholipid monolayer (the boundary of a lipid droplet): one head group on the outside."""

    def _profile(self, d, extra2):
        sh = np.sqrt(self.s_head ** 2 + extra2)
        st = np.sqrt(self.s_tail ** 2 + extra2)
        return self.head * gauss(d - 1.0, sh) + 0.5 * self.tail * gauss(d + 0.5, st)


def smooth_inside(d, extra2, s0=0.6):
    """Smoothed indicator of d < 0: a linear ramp with the slope of the erf edge of width
    s = sqrt(s0^2 + extra2) (cheaper than erf, same antialiasing footprint)."""
    s = np.sqrt(np.float32(s0 * s0) + extra2)
    return np.clip(0.5 - d / (SQRT2PI * s), 0.0, 1.0).astype(np.float32)


def freq_grid(ny: int, nx: int, p: float):
    """|k| (1/nm) and cycles/pixel components for an rfft2 of an ny x nx image at pixel p nm."""
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    return np.sqrt(kx * kx + ky * ky) / p, kx, ky


def ctf(k, defocus_nm: float, amp: float, bfactor_nm2: float, cs_nm: float = CS_NM,
        lam: float = LAMBDA_300):
    """CTF(k) with envelope (module doc); k in 1/nm, defocus > 0 underfocus."""
    chi = np.pi * lam * defocus_nm * k * k - 0.5 * np.pi * cs_nm * lam ** 3 * k ** 4
    return -(np.sqrt(1 - amp * amp) * np.sin(chi) + amp * np.cos(chi)) * np.exp(-bfactor_nm2 * k * k / 4.0)


def detector_mtf(kx, ky):
    """Counting-detector MTF sinc(pi f/2) per axis, f in cycles/pixel (np.sinc(x) = sin(pi x)/(pi x))."""
    return np.sinc(kx / 2.0) * np.sinc(ky / 2.0)


def image_intensity(proj_v_nm, t_eff_nm, p: float, optics: dict):
    """Noise-free intensity (relative to the unscattered beam) of a projected potential map.

    proj_v_nm: integral of the potential along the beam (V nm), 2D; t_eff_nm: effective thickness
    for inelastic attenuation (nm), 2D or scalar."""
    ny, nx = proj_v_nm.shape
    phase = SIGMA_E_300 * proj_v_nm
    phase = phase - phase.mean()
    k, kx, ky = freq_grid(ny, nx, p)
    tf = ctf(k, optics["defocus_nm"], optics["amp"], optics["bfactor_nm2"])
    tf = tf * detector_mtf(kx, ky)
    contrast = np.fft.irfft2(np.fft.rfft2(phase) * tf, s=(ny, nx))
    att = np.exp(-np.asarray(t_eff_nm) / LAMBDA_INELASTIC)
    att_f = np.fft.irfft2(np.fft.rfft2(att * np.ones((ny, nx))) * detector_mtf(kx, ky), s=(ny, nx))
    return (att_f * (1.0 + 2.0 * contrast)).astype(np.float64)


def shot_noise(intensity, counts_per_pixel: float, rng):
    """Poisson counts for an intensity map (1 = unscattered beam) at a mean dose per pixel."""
    lam = np.clip(intensity, 1e-6, None) * counts_per_pixel
    return rng.poisson(lam).astype(np.float64)


def signal_variance(img, mask=None) -> float:
    """Variance of a noise-free image over the specimen area `mask` (the cell, without carbon
    film or ice contamination; default all pixels) after clipping it to its 1st-99th
    percentiles there, so that a few gold beads, a carbon edge or the cell edge do not set the
    noise level of the whole image."""
    v = img if mask is None or not mask.any() else img[mask]
    lo, hi = np.percentile(v, [1.0, 99.0])
    return float(np.var(np.clip(v, lo, hi)))


def counts_for_snr(intensity, snr: float, mask=None) -> float:
    """Counts per pixel (unscattered beam) giving signal_variance/var(Poisson noise) = snr."""
    var = signal_variance(intensity, mask)
    v = intensity if mask is None or not mask.any() else intensity[mask]
    mean = float(np.mean(v))
    return snr * mean / max(var, 1e-12)
