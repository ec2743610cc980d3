//! bf16 matrix product on Intel AMX tiles (`--precision bf16`).
//!
//! ```text
//! c[i, j] = alpha * sum_k bf16(a[i, k]) * bf16(b[k, j])        (f32 accumulation)
//! ```
//! `bf16(x)` rounds an f32 to the nearest bfloat16 (8 exponent bits, 7 mantissa bits; ties to
//! even), which costs about 2^-9 = 2e-3 relative error per input; products and sums are f32.
//!
//! # Tiles
//! AMX has eight tile registers of up to 16 rows x 64 bytes. `TDPBF16PS C, A, B` computes a
//! 16 x 16 f32 block `C += A · B` from `A` = 16 rows x 32 bf16 (k) and `B` = 16 rows x 16 pairs,
//! the "VNNI" layout in which row `r` of the tile holds `(b[2r, j], b[2r+1, j])` for `j = 0..16`
//! (Intel SDM vol. 2, TDPBF16PS; Intel Optimization Manual, ch. 20 "AMX").
//!
//! The kernel computes a 32 x 32 block of `c` with four accumulators (tmm0..3), two A strips
//! (tmm4, tmm5) and two B strips (tmm6, tmm7), looping over k in steps of 32:
//! ```text
//! tmm0 += A[0:16]  · B[:, 0:16]     tmm1 += A[0:16]  · B[:, 16:32]
//! tmm2 += A[16:32] · B[:, 0:16]     tmm3 += A[16:32] · B[:, 16:32]
//! ```
//! Packing (`pack_a`, `pack_b`) converts the f32 operands, with any strides, to zero-padded bf16
//! buffers once per product: `A` row-major `[mp, kp]`, `B` in VNNI pairs `[kp / 2, 2 np]`, with
//! `mp`, `np` multiples of 32 and `kp` of 32, so tails cost zeros and no special cases. Each
//! 32-row block of `c` is one rayon task, written to a row-major scratch `[mp, np]`, then scattered
//! into the caller's strided output.
//!
//! # Availability
//! [`available`] checks, once per process: CPUID leaf 7 EDX bits 22 (AMX-BF16) and 24
//! (AMX-TILE), OSXSAVE and XCR0 bits 17-18 (the OS saves tile state), and asks Linux for the tile
//! data permission (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`). Without all of them
//! the bf16 path is not used ([`crate::nn::gemm`] falls back to f32).
//!
//! The naive reference [`gemm_bf16_naive`] (same rounding, plain loops) is what the tests compare
//! the kernel against.

use super::gemm::Mat;
use rayon::prelude::*;
use std::sync::OnceLock;

/// Rows/columns of one kernel block of `c`, and the k step of one tile pass.
const MB: usize = 32;
const NB: usize = 32;
const KB: usize = 32;

/// f32 -> bf16, round to nearest even; NaN stays a (quiet) NaN.
#[inline]
pub fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) as u16) | 0x0040;
    }
    let round = 0x7fff + ((b >> 16) & 1);
    (b.wrapping_add(round) >> 16) as u16
}

/// bf16 -> f32 (exact).
#[inline]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `x` rounded to bf16 and back.
#[inline]
pub fn round_bf16(x: f32) -> f32 {
    bf16_to_f32(bf16_bits(x))
}

/// Whether the AMX bf16 kernel can run in this process (checked once; see the module doc).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(detect)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> bool {
    use std::arch::x86_64::__cpuid_count;
    let (leaf1, leaf7) = (__cpuid_count(1, 0), __cpuid_count(7, 0));
    let amx_bf16 = leaf7.edx & (1 << 22) != 0;
    let amx_tile = leaf7.edx & (1 << 24) != 0;
    let osxsave = leaf1.ecx & (1 << 27) != 0;
    if !(amx_bf16 && amx_tile && osxsave) {
        return false;
    }
    let (lo, _hi): (u32, u32);
    // SAFETY: XGETBV with ECX = 0 reads XCR0; it is legal because CPUID reported OSXSAVE.
    unsafe {
        std::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") _hi,
            options(nomem, nostack, preserves_flags));
    }
    if lo & (0b11 << 17) != 0b11 << 17 {
        return false;
    }
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM) only asks the kernel to enable a state component
    // for this process; it takes two integers and touches no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    r == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> bool {
    false
}

fn round_up(x: usize, m: usize) -> usize {
    x.div_ceil(m) * m
}

/// `a [m, k]` -> bf16 row-major `[mp, kp]`, zero-padded.
fn pack_a(a: &Mat, mp: usize, kp: usize) -> Vec<u16> {
    let mut p = vec![0u16; mp * kp];
    p.par_chunks_mut(kp)
        .take(a.nrows())
        .enumerate()
        .for_each(|(i, row)| {
            for (kk, v) in row.iter_mut().take(a.ncols()).enumerate() {
                *v = bf16_bits(a.at(i, kk));
            }
        });
    p
}

/// `b [k, n]` -> bf16 VNNI pairs `[kp / 2, 2 np]`: element `(r, 2 j + t)` = `b[2 r + t, j]`.
fn pack_b(b: &Mat, kp: usize, np: usize) -> Vec<u16> {
    let mut p = vec![0u16; kp * np];
    p.par_chunks_mut(2 * np).enumerate().for_each(|(r, row)| {
        for t in 0..2 {
            let kk = 2 * r + t;
            if kk >= b.nrows() {
                break;
            }
            for j in 0..b.ncols() {
                row[2 * j + t] = bf16_bits(b.at(kk, j));
            }
        }
    });
    p
}

/// The 64-byte tile configuration (palette 1): tiles 0..8 of 16 rows x 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn new() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1; // palette
        for t in 0..8 {
            c[16 + 2 * t..18 + 2 * t].copy_from_slice(&64u16.to_le_bytes()); // colsb
            c[48 + t] = 16; // rows
        }
        TileConfig(c)
    }
}

/// One 32 x 32 block: `out[32 x 32] (row stride 32) = A[32 rows at a, kp] · B[kp, 32 cols at b]`.
///
/// # Safety
/// AMX must be [`available`]; `a` must point at 32 rows of `kp` bf16 (row stride `kp`), `b` at
/// `kp / 2` rows of 64 bf16 with row stride `2 np` (both inside their packed buffers), `kp` a
/// positive multiple of 32, and `out` must hold 1024 f32.
#[cfg(target_arch = "x86_64")]
unsafe fn kernel_32x32(a: *const u16, kp: usize, b: *const u16, np: usize, out: *mut f32) {
    let cfg = TileConfig::new();
    let sa = kp * 2; // bytes per A row
    let sb = np * 4; // bytes per VNNI B row (2 np bf16)
    let a1 = a.add(16 * kp);
    let b1 = b.add(32); // 16 columns = 32 bf16 further in a VNNI row
    let b_step = 16 * sb; // 16 VNNI rows = 32 values of k
    let steps = kp / KB;
    // SAFETY (asm): the tile loads read 16 rows of 64 bytes at the given strides, inside the
    // packed buffers by the caller's contract; the stores write 4 blocks of 16 x 64 bytes into
    // `out` (row stride 128 bytes = 32 f32); tiles are released before the block ends.
    std::arch::asm!(
        "ldtilecfg [{cfg}]",
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        "2:",
        "tileloadd tmm4, [{a0} + {sa}*1]",
        "tileloadd tmm5, [{a1} + {sa}*1]",
        "tileloadd tmm6, [{b0} + {sb}*1]",
        "tileloadd tmm7, [{b1} + {sb}*1]",
        "tdpbf16ps tmm0, tmm4, tmm6",
        "tdpbf16ps tmm1, tmm4, tmm7",
        "tdpbf16ps tmm2, tmm5, tmm6",
        "tdpbf16ps tmm3, tmm5, tmm7",
        "add {a0}, 64",
        "add {a1}, 64",
        "add {b0}, {bstep}",
        "add {b1}, {bstep}",
        "dec {n}",
        "jnz 2b",
        "mov {sa}, 128", // the output's row stride: 32 f32
        "tilestored [{o} + {sa}*1], tmm0",
        "lea {a0}, [{o} + 64]",
        "tilestored [{a0} + {sa}*1], tmm1",
        "lea {a0}, [{o} + 2048]",
        "tilestored [{a0} + {sa}*1], tmm2",
        "lea {a0}, [{o} + 2112]",
        "tilestored [{a0} + {sa}*1], tmm3",
        "tilerelease",
        cfg = in(reg) cfg.0.as_ptr(),
        a0 = inout(reg) a => _,
        a1 = inout(reg) a1 => _,
        b0 = inout(reg) b => _,
        b1 = inout(reg) b1 => _,
        sa = inout(reg) sa => _,
        sb = in(reg) sb,
        bstep = in(reg) b_step,
        n = inout(reg) steps => _,
        o = in(reg) out,
        options(nostack),
    );
}

/// `bf16(a) · bf16(b)` for `a [m, k]`, `b [k, n]` on AMX, as a row-major `[m, n]` product with
/// row stride [`Product::stride`]; `None` when AMX is not [`available`].
///
/// # Panics
/// When `b.nrows() != a.ncols()`.
pub fn product_bf16(a: &Mat, b: &Mat) -> Option<Product> {
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    assert_eq!(
        b.nrows(),
        k,
        "product_bf16: inner dimensions {k} != {}",
        b.nrows()
    );
    if !available() {
        return None;
    }
    let (mp, np, kp) = (round_up(m, MB), round_up(n, NB), round_up(k.max(1), KB));
    let mut prod = vec![0f32; mp * np];
    if m == 0 || n == 0 {
        return Some(Product {
            data: prod,
            stride: np,
        });
    }
    let pa = pack_a(a, mp, kp);
    let pb = pack_b(b, kp, np);
    prod.par_chunks_mut(MB * np)
        .enumerate()
        .for_each(|(ib, rows)| {
            let mut blk = [0f32; MB * NB];
            for jb in 0..np / NB {
                // SAFETY: AMX is available (checked above); the A strip starts at row ib*32 of the
                // [mp, kp] buffer (32 rows inside it), the B strip at column jb*32 of the
                // [kp/2, 2np] VNNI buffer (64 bf16 of every row inside it); kp is a positive
                // multiple of 32 and blk holds 32*32 f32.
                unsafe {
                    kernel_32x32(
                        pa.as_ptr().add(ib * MB * kp),
                        kp,
                        pb.as_ptr().add(jb * NB * 2),
                        np,
                        blk.as_mut_ptr(),
                    )
                };
                for r in 0..MB {
                    rows[r * np + jb * NB..r * np + (jb + 1) * NB]
                        .copy_from_slice(&blk[r * NB..(r + 1) * NB]);
                }
            }
        });
    Some(Product {
        data: prod,
        stride: np,
    })
}

/// A product `[m, n]` (zero-padded to `[mp, stride]`).
pub struct Product {
    data: Vec<f32>,
    /// Row stride of `data`.
    stride: usize,
}

impl Product {
    /// Element `(i, j)`.
    #[inline]
    pub fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.stride + j]
    }
}

/// `c[i * rsc + j * csc] = alpha * bf16(a) · bf16(b) + beta * c[..]` for `i < m, j < n` on AMX
/// (with `beta = 0`, `c`'s old values are ignored, even NaN). Returns `false`, touching
/// nothing, when AMX is not [`available`].
///
/// # Panics
/// When `b.nrows() != a.ncols()` or the output pattern does not fit in `c`.
pub fn gemm_bf16(
    alpha: f32,
    a: &Mat,
    b: &Mat,
    beta: f32,
    c: &mut [f32],
    rsc: usize,
    csc: usize,
) -> bool {
    let (m, n) = (a.nrows(), b.ncols());
    assert!(
        Mat::new(c, m, n, rsc, csc).is_ok(),
        "gemm_bf16: output has {} elements, too few for {m}x{n} with strides ({rsc}, {csc})",
        c.len()
    );
    let Some(p) = product_bf16(a, b) else {
        return false;
    };
    store(c, (m, n), (rsc, csc), alpha, beta, |i, j| p.at(i, j));
    true
}

/// `c[i * rsc + j * csc] = alpha * x(i, j) + beta * c[..]` for `i < m, j < n`, row by row (the
/// caller has checked that the pattern fits in `c`).
fn store(
    c: &mut [f32],
    (m, n): (usize, usize),
    (rsc, csc): (usize, usize),
    alpha: f32,
    beta: f32,
    mut x: impl FnMut(usize, usize) -> f32,
) {
    for i in 0..m {
        for j in 0..n {
            scale_into(&mut c[i * rsc + j * csc], alpha, x(i, j), beta);
        }
    }
}

/// `*v = alpha * x + beta * *v`, where `beta = 0` ignores the old `*v` (even NaN), as sgemm does.
#[inline]
fn scale_into(v: &mut f32, alpha: f32, x: f32, beta: f32) {
    *v = if beta == 0.0 {
        alpha * x
    } else {
        alpha * x + beta * *v
    };
}

/// The reference: the same rounding of the inputs, plain loops, f32 accumulation in k order.
pub fn gemm_bf16_naive(
    alpha: f32,
    a: &Mat,
    b: &Mat,
    beta: f32,
    c: &mut [f32],
    rsc: usize,
    csc: usize,
) {
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    assert_eq!(b.nrows(), k);
    store(c, (m, n), (rsc, csc), alpha, beta, |i, j| {
        let mut s = 0f32;
        for kk in 0..k {
            s += round_bf16(a.at(i, kk)) * round_bf16(b.at(kk, j));
        }
        s
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn bf16_rounding_is_nearest_even() {
        // torch: torch.tensor([1.0 + 2**-8, 1.0 + 3 * 2**-8, -2.5]).bfloat16().float()
        //        -> [1.0, 1.015625, -2.5]  (ties to even)
        assert_eq!(round_bf16(1.0 + 2f32.powi(-8)), 1.0);
        assert_eq!(round_bf16(1.0 + 3.0 * 2f32.powi(-8)), 1.015625);
        assert_eq!(round_bf16(-2.5), -2.5);
        assert!(round_bf16(f32::NAN).is_nan());
        assert_eq!(round_bf16(f32::INFINITY), f32::INFINITY);
    }

    /// The AMX kernel against the naive reference on random odd shapes, strides and transposed
    /// operands (tails in m, n and k), alpha/beta included.
    #[test]
    fn amx_matches_naive_on_odd_shapes() {
        if !available() {
            eprintln!("SKIPPED amx_matches_naive_on_odd_shapes: no AMX bf16 on this machine/OS");
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for case in 0..12 {
            let m = rng.gen_range(1..100);
            let k = rng.gen_range(1..130);
            let n = rng.gen_range(1..90);
            let ta = case % 2 == 1; // a stored as [k, m]
            let tc = case % 3 == 0; // c written transposed
            let av: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let bv: Vec<f32> = (0..k * n).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let a = if ta {
                Mat::new(&av, m, k, 1, m)
            } else {
                Mat::new(&av, m, k, k, 1)
            }
            .unwrap();
            let b = Mat::new(&bv, k, n, n, 1).unwrap();
            let (rsc, csc) = if tc { (1, m) } else { (n, 1) };
            let beta = if case % 4 == 2 { 0.5 } else { 0.0 };
            let init: Vec<f32> = (0..m * n).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let (mut got, mut want) = (init.clone(), init);
            assert!(gemm_bf16(1.5, &a, &b, beta, &mut got, rsc, csc));
            gemm_bf16_naive(1.5, &a, &b, beta, &mut want, rsc, csc);
            for (g, w) in got.iter().zip(&want) {
                // f32 sums of k products of |.| <= 1 in another order
                assert!(
                    (g - w).abs() <= 1e-5 * k as f32 + 1e-6,
                    "case {case} ({m}x{k}x{n}): {g} vs {w}"
                );
            }
        }
    }

    /// bf16 against the f32 product: within the bf16 input rounding (2^-8 relative per factor).
    #[test]
    fn amx_is_close_to_f32() {
        if !available() {
            eprintln!("SKIPPED amx_is_close_to_f32: no AMX bf16 on this machine/OS");
            return;
        }
        let (m, k, n) = (64, 256, 48);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let av: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let bv: Vec<f32> = (0..k * n).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let a = Mat::new(&av, m, k, k, 1).unwrap();
        let b = Mat::new(&bv, k, n, n, 1).unwrap();
        let mut c = vec![0f32; m * n];
        assert!(gemm_bf16(1.0, &a, &b, 0.0, &mut c, n, 1));
        for i in 0..m {
            for j in 0..n {
                let exact: f32 = (0..k).map(|kk| av[i * k + kk] * bv[kk * n + j]).sum();
                let scale: f32 = (0..k)
                    .map(|kk| (av[i * k + kk] * bv[kk * n + j]).abs())
                    .sum();
                assert!((c[i * n + j] - exact).abs() <= 2.0 * 2f32.powi(-8) * scale);
            }
        }
    }
}
