//! The one matrix product everything runs on: `matrixmultiply::sgemm` (SIMD kernels, its own
//! threads for large products, `MATMUL_NUM_THREADS`), or, with [`set_precision`]`(Bf16)` on a CPU
//! with AMX, the bf16 tile kernel of [`super::amx`] for every product of at least
//! [`BF16_MIN_DIM`] in each dimension (smaller ones stay f32: packing would cost more than it
//! saves).
//!
//! ```text
//! c[i, j] = alpha * sum_p a[i, p] * b[p, j] + beta * c[i, j]     a: [m, k], b: [k, n], c: [m, n]
//! element (i, j) of a strided matrix lives at data[i * rs + j * cs]
//! ```
//!
//! Soundness. sgemm takes raw pointers and strides; the safe API here guarantees what it needs.
//! [`Mat`] and [`MatMut`] have private fields and are built only by checked constructors: the
//! largest index `(rows-1)*rs + (cols-1)*cs` is computed with checked arithmetic and must lie
//! inside the slice, strides are non-negative (`usize`) and at most `isize::MAX`, and an output's
//! strides must map distinct `(i, j)` to distinct elements (sgemm's threads each write their own
//! blocks of `(i, j)`, so two `(i, j)` on one element could be a data race). An empty matrix (a zero
//! dimension) is never read or written and accepts any strides. No safe call can then reach out
//! of bounds.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

/// Arithmetic of the matrix products (`detect`/`eval --precision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// f32 throughout (the default, and the reference of `trace` and `grad`).
    F32,
    /// Inputs of the large products rounded to bf16, f32 accumulation, on AMX tiles.
    Bf16,
}

impl Precision {
    /// `"f32"` / `"bf16"`, as in `--precision` and the detection JSON.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

static BF16: AtomicBool = AtomicBool::new(false);

/// Smallest m, n and k that go to the bf16 kernel.
pub const BF16_MIN_DIM: usize = 32;

/// Chooses the products' arithmetic for the whole process. Returns the precision in force:
/// `Bf16` asked for on a machine without AMX (see [`super::amx::available`]) gives `F32`.
pub fn set_precision(p: Precision) -> Precision {
    let bf16 = p == Precision::Bf16 && super::amx::available();
    BF16.store(bf16, Ordering::Relaxed);
    precision()
}

/// The precision in force.
pub fn precision() -> Precision {
    if BF16.load(Ordering::Relaxed) {
        Precision::Bf16
    } else {
        Precision::F32
    }
}

/// Whether `a · b` goes to the bf16 kernel: that path is enabled and the product is worth it
/// (every dimension at least [`BF16_MIN_DIM`]).
fn wants_bf16(a: &Mat, b: &Mat) -> bool {
    BF16.load(Ordering::Relaxed) && a.rows.min(a.cols).min(b.cols) >= BF16_MIN_DIM
}

/// Why a [`Mat`] or [`MatMut`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatError {
    /// A stride does not fit in `isize` (sgemm's stride type).
    #[error("stride {0} exceeds isize::MAX")]
    Stride(usize),
    /// `(rows-1)*rs + (cols-1)*cs` overflows `usize`.
    #[error("{rows}x{cols} with strides ({rs}, {cs}): largest index overflows")]
    Overflow {
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    },
    /// The largest index is not inside the slice.
    #[error(
        "{rows}x{cols} with strides ({rs}, {cs}) reaches index {max}, slice has {len} elements"
    )]
    OutOfBounds {
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
        max: usize,
        len: usize,
    },
    /// Two output elements `(i, j)` would share one memory location.
    #[error("output {rows}x{cols} with strides ({rs}, {cs}): elements overlap")]
    Overlap {
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    },
}

/// Checks a `[rows, cols]` pattern with strides `(rs, cs)` against a slice of `len` elements.
fn check_pattern(
    len: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
) -> Result<(), MatError> {
    for s in [rs, cs] {
        if s > isize::MAX as usize {
            return Err(MatError::Stride(s));
        }
    }
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let overflow = MatError::Overflow { rows, cols, rs, cs };
    let max = (rows - 1)
        .checked_mul(rs)
        .zip((cols - 1).checked_mul(cs))
        .and_then(|(a, b)| a.checked_add(b))
        .ok_or(overflow)?;
    if max >= len {
        return Err(MatError::OutOfBounds {
            rows,
            cols,
            rs,
            cs,
            max,
            len,
        });
    }
    Ok(())
}

/// Sufficient condition for `(i, j) -> i*rs + j*cs` to be injective on `[rows, cols]`: after
/// dropping dimensions of extent 1, the smaller stride is >= 1 and the larger one steps past the
/// whole extent of the smaller, `s_big > (n_small - 1) * s_small` (row- or column-major with any
/// padding). Assumes [`check_pattern`] passed (no overflow).
fn injective(rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    let (r, c) = (
        (rows > 1).then_some((rows, rs)),
        (cols > 1).then_some((cols, cs)),
    );
    match (r, c) {
        (None, None) => true,
        (Some((_, s)), None) | (None, Some((_, s))) => s >= 1,
        (Some(x), Some(y)) => {
            let ((n_small, s_small), (_, s_big)) = if x.1 <= y.1 { (x, y) } else { (y, x) };
            s_small >= 1 && s_big > (n_small - 1) * s_small
        }
    }
}

/// A read-only matrix `[rows, cols]` in a slice, element `(i, j)` at `data[i*rs + j*cs]`, so that
/// a transposed operand costs nothing: `Mat::rows(a, m, k)` is row-major `[m, k]`,
/// `Mat::rows(a, k, m).t()` is its transpose viewed as `[m, k]`.
///
/// Invariant (kept by the constructors, the fields are private): if `rows, cols > 0`, every
/// `i*rs + j*cs` with `i < rows, j < cols` is `< data.len()`, and `rs, cs <= isize::MAX`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    /// `[rows, cols]` with strides `(rs, cs)`; refused if any element would lie outside `data`.
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Result<Self, MatError> {
        check_pattern(data.len(), rows, cols, rs, cs)?;
        Ok(Mat {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }
    /// Row-major `[rows, cols]`, contiguous. Panics if `data` holds fewer than `rows * cols`
    /// elements (a caller's shape bug, as a slice index out of range would be).
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat::new(data, rows, cols, cols, 1).unwrap_or_else(|e| panic!("Mat::rows: {e}"))
    }
    /// The transpose, without copying (the invariant is symmetric in the two dimensions).
    pub fn t(self) -> Self {
        Mat {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }
    /// Element `(i, j)` (bounds-checked by the slice index as well).
    #[inline]
    pub fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }
    /// Number of rows.
    pub fn nrows(&self) -> usize {
        self.rows
    }
    /// Number of columns.
    pub fn ncols(&self) -> usize {
        self.cols
    }
}

/// A writable, possibly uninitialized output matrix `[rows, cols]` in a slice, element `(i, j)`
/// at `data[i*rs + j*cs]` (e.g. `rs = 1, cs = rows` writes the transpose of a row-major product).
///
/// Invariant (kept by [`MatMut::new`], the fields are private): that of [`Mat`], and distinct
/// `(i, j)` are distinct elements.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [MaybeUninit<f32>],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatMut<'a> {
    /// `[rows, cols]` with strides `(rs, cs)`; refused if any element would lie outside `data`
    /// or two elements would overlap.
    pub fn new(
        data: &'a mut [MaybeUninit<f32>],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Result<Self, MatError> {
        check_pattern(data.len(), rows, cols, rs, cs)?;
        if !injective(rows, cols, rs, cs) {
            return Err(MatError::Overlap { rows, cols, rs, cs });
        }
        Ok(MatMut {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }
}

/// `c[m, n] = alpha * a[m, k] · b[k, n] + beta * c[m, n]`, `c` row-major contiguous.
/// With `beta = 0`, `c` is overwritten (its old content, even NaN, is ignored).
/// Panics if the inner dimensions differ or `c` holds fewer than `m * n` elements.
pub fn gemm(alpha: f32, a: Mat, b: Mat, beta: f32, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "gemm: inner dimensions {k} != {}", b.rows);
    assert!(
        m.checked_mul(n).is_some_and(|mn| c.len() >= mn),
        "gemm: output has {} elements < {m}x{n}",
        c.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        let c = &mut c[..m * n];
        if beta == 0.0 {
            c.fill(0.0);
        } else {
            c.iter_mut().for_each(|v| *v *= beta);
        }
        return;
    }
    if wants_bf16(&a, &b) && super::amx::gemm_bf16(alpha, &a, &b, beta, c, n, 1) {
        return;
    }
    // SAFETY: `a` and `b` are non-empty (m, k, n > 0), so their invariants put every index that
    // sgemm reads (a: i < m, p < k; b: p < k, j < n) inside their slices; `c` holds m*n elements
    // written with strides (n, 1), distinct and < c.len() by the assert above, and initialized
    // (a &mut [f32]) for beta != 0; `c` does not alias `a` or `b` (it is a unique borrow).
    unsafe { sgemm_raw(alpha, a, b, beta, c.as_mut_ptr(), n, 1) }
}

/// The one call into matrixmultiply: `c[i*rsc + j*csc] = alpha * (a · b)[i, j] + beta * c[..]`.
///
/// # Safety
/// `a.cols == b.rows`; every `i*rsc + j*csc` (i < a.rows, j < b.cols) must be inside the
/// allocation behind `c` and distinct; `c` must not alias `a` or `b`; with `beta != 0` those
/// elements must be initialized. `a` and `b` keep their own invariants (see [`Mat`]).
unsafe fn sgemm_raw(alpha: f32, a: Mat, b: Mat, beta: f32, c: *mut f32, rsc: usize, csc: usize) {
    // The `as isize` casts are lossless: Mat's strides and the output's are <= isize::MAX.
    matrixmultiply::sgemm(
        a.rows,
        a.cols,
        b.cols,
        alpha,
        a.data.as_ptr(),
        a.rs as isize,
        a.cs as isize,
        b.data.as_ptr(),
        b.rs as isize,
        b.cs as isize,
        beta,
        c,
        rsc as isize,
        csc as isize,
    );
}

/// `c = alpha * a[m, k] · b[k, n]` written into an uninitialized output `c: [m, n]`. Every
/// element of `c`'s pattern is written (beta = 0: sgemm never reads `c`), so the caller may
/// `assume_init` them afterwards.
///
/// With `c = MatMut::new(y, m, n, 1, m)` this writes the transpose of the product, which lets a
/// convolution compute `y^T = col^T · w^T` into `y`'s `[Co, cols]` memory (see `conv.rs`).
/// Panics if the inner dimensions differ or `c` is not `[m, n]`.
pub fn gemm_uninit(alpha: f32, a: Mat, b: Mat, c: MatMut) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "gemm: inner dimensions {k} != {}", b.rows);
    assert_eq!(
        (c.rows, c.cols),
        (m, n),
        "gemm: output is {}x{}, product is {m}x{n}",
        c.rows,
        c.cols
    );
    if m == 0 || n == 0 {
        return;
    }
    let (rsc, csc) = (c.rs, c.cs);
    if let Some(p) = wants_bf16(&a, &b)
        .then(|| super::amx::product_bf16(&a, &b))
        .flatten()
    {
        // the bf16 path writes each element of the pattern once (c may be uninitialized)
        for i in 0..m {
            for j in 0..n {
                c.data[i * rsc + j * csc].write(alpha * p.at(i, j));
            }
        }
        return;
    }
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                c.data[i * rsc + j * csc].write(0.0);
            }
        }
        return;
    }
    let cp = c.data.as_mut_ptr() as *mut f32;
    // SAFETY: as in `gemm` for a and b (m, k, n > 0); `c`'s invariant (MatMut::new) puts every
    // output index i*rsc + j*csc (i < m, j < n) inside `c.data` and makes them distinct; with
    // beta = 0 sgemm only writes c (never reads it), so uninitialized memory is fine, and
    // MaybeUninit<f32> has f32's layout; `c.data` is a unique borrow, so it aliases neither input.
    unsafe { sgemm_raw(alpha, a, b, 0.0, cp, rsc, csc) }
}

/// The default thread count: all cores the OS gives us (1 if it cannot tell).
pub fn num_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Sets the number of threads the GEMM kernels use. Must be called before the first product
/// (matrixmultiply reads `MATMUL_NUM_THREADS` once); also sizes rayon's global pool.
pub fn set_threads(threads: usize) {
    let threads = threads.max(1);
    if std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        std::env::set_var("MATMUL_NUM_THREADS", threads.to_string());
    }
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
    keep_freed_memory();
}

/// Makes glibc's malloc serve every allocation from its heap and never hand freed memory back
/// to the OS. A forward pass allocates and frees tens of buffers of 10-90 MB; by default each
/// one is a fresh `mmap` whose every page faults and is zeroed by the kernel, then `munmap`ed
/// (~10 % of the CPU time of a detection in `perf`). With this, a layer reuses the memory the
/// previous layer freed. Peak RSS is unchanged (it is the peak of live buffers either way).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before the big
    // allocations of a forward pass and its failure (return 0) is harmless.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_matches_naive_with_transposes() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut c = vec![f32::NAN; m * n];
        gemm(1.0, Mat::rows(&a, m, k), Mat::rows(&b, k, n), 0.0, &mut c);
        // c^T = b^T a^T through transposed views
        let mut ct = vec![0.0; n * m];
        gemm(
            1.0,
            Mat::rows(&b, k, n).t(),
            Mat::rows(&a, m, k).t(),
            0.0,
            &mut ct,
        );
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                assert!(
                    (c[i * n + j] - want).abs() < 1e-5,
                    "c[{i},{j}] = {} != {want}",
                    c[i * n + j]
                );
                assert!((ct[j * m + i] - want).abs() < 1e-5);
            }
        }
    }

    /// `c[i, j] = alpha * sum_p a[i, p] b[p, j] + beta * c0[i, j]` in f64, reading the operands
    /// through their strides: the reference for the fast kernels.
    fn naive(alpha: f32, a: &Mat, b: &Mat, beta: f32, c0: &[f32]) -> Vec<f64> {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let at = |i: usize, j: usize| a.data[i * a.rs + j * a.cs] as f64;
        let bt = |i: usize, j: usize| b.data[i * b.rs + j * b.cs] as f64;
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
                c[i * n + j] = alpha as f64 * dot + beta as f64 * c0[i * n + j] as f64;
            }
        }
        c
    }

    /// A matrix `[rows, cols]` over fresh random data, row- or column-major (`trans`), with
    /// `pad` unused elements after each row (column).
    fn rand_mat(
        rng: &mut impl rand::Rng,
        rows: usize,
        cols: usize,
        trans: bool,
        pad: usize,
    ) -> (Vec<f32>, usize, usize) {
        let (outer, inner) = if trans { (cols, rows) } else { (rows, cols) };
        let ld = inner + pad;
        let data: Vec<f32> = (0..outer * ld).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let (rs, cs) = if trans { (1, ld) } else { (ld, 1) };
        (data, rs, cs)
    }

    /// A malformed matrix is refused by its constructor: a slice too short, strides that reach
    /// past it, an overflowing largest index, a stride beyond isize, overlapping outputs.
    #[test]
    fn malformed_mat_is_refused() {
        let d = [0f32; 6];
        assert!(Mat::new(&d, 2, 3, 3, 1).is_ok());
        assert!(Mat::new(&d, 3, 2, 1, 3).is_ok());
        // 2x3 row-major needs 6 elements; a row stride of 4 reaches index 6.
        assert!(matches!(
            Mat::new(&d, 2, 3, 4, 1),
            Err(MatError::OutOfBounds { max: 6, len: 6, .. })
        ));
        assert!(matches!(
            Mat::new(&d[..5], 2, 3, 3, 1),
            Err(MatError::OutOfBounds { .. })
        ));
        // (rows-1)*rs wraps around in unchecked arithmetic.
        assert!(matches!(
            Mat::new(&d, usize::MAX, 2, isize::MAX as usize, 1),
            Err(MatError::Overflow { .. })
        ));
        assert!(matches!(
            Mat::new(&d, 1, 1, isize::MAX as usize + 1, 1),
            Err(MatError::Stride(_))
        ));
        // An empty matrix is never read: any strides are fine.
        assert!(Mat::new(&[], 0, 7, 1000, 1000).is_ok());
        let mut out = [MaybeUninit::<f32>::uninit(); 6];
        assert!(MatMut::new(&mut out, 2, 3, 3, 1).is_ok());
        assert!(MatMut::new(&mut out, 3, 2, 1, 3).is_ok());
        assert!(matches!(
            MatMut::new(&mut out, 2, 3, 1, 1),
            Err(MatError::Overlap { .. })
        ));
        assert!(matches!(
            MatMut::new(&mut out, 2, 1, 0, 1),
            Err(MatError::Overlap { .. })
        ));
        assert!(matches!(
            MatMut::new(&mut out, 2, 3, 3, 2),
            Err(MatError::OutOfBounds { .. })
        ));
    }

    #[test]
    #[should_panic(expected = "Mat::rows")]
    fn mat_rows_panics_on_short_slice() {
        let _ = Mat::rows(&[0.0; 5], 2, 3);
    }

    /// Property test: sgemm through every operand layout (row- or column-major, padded leading
    /// dimensions) and both entry points (`gemm` with beta, `gemm_uninit` into a row- or
    /// column-major output) == the f64 reference, on random odd shapes.
    #[test]
    fn gemm_matches_naive_on_random_odd_shapes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(18);
        for case in 0..60 {
            let mut odd = |hi: usize| 2 * rng.gen_range(0..hi) + 1;
            let (m, k, n) = (odd(20), odd(40), odd(20));
            let (ta, tb) = (rng.gen_bool(0.5), rng.gen_bool(0.5));
            let (pa, pb) = (rng.gen_range(0..3), rng.gen_range(0..3));
            let (ad, ars, acs) = rand_mat(&mut rng, m, k, ta, pa);
            let (bd, brs, bcs) = rand_mat(&mut rng, k, n, tb, pb);
            let a = Mat::new(&ad, m, k, ars, acs).unwrap();
            let b = Mat::new(&bd, k, n, brs, bcs).unwrap();
            let (alpha, beta) = (rng.gen_range(-2.0..2.0), rng.gen_range(-1.0..1.0));
            let c0: Vec<f32> = (0..m * n).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let tol = 1e-5 * (k as f64).sqrt() * 4.0;
            let tag = format!("case {case}: {m}x{k}x{n} ta {ta} tb {tb} pads {pa},{pb}");

            let mut c = c0.clone();
            gemm(alpha, a, b, beta, &mut c);
            let want = naive(alpha, &a, &b, beta, &c0);
            for (idx, (&g, &w)) in c.iter().zip(&want).enumerate() {
                assert!((g as f64 - w).abs() < tol, "gemm {tag} [{idx}]: {g} != {w}");
            }

            let col_major = rng.gen_bool(0.5);
            let (rsc, csc) = if col_major { (1, m) } else { (n, 1) };
            let mut cu = vec![MaybeUninit::<f32>::uninit(); m * n];
            gemm_uninit(alpha, a, b, MatMut::new(&mut cu, m, n, rsc, csc).unwrap());
            let want = naive(alpha, &a, &b, 0.0, &c0);
            for i in 0..m {
                for j in 0..n {
                    // SAFETY: gemm_uninit wrote every (i, j) of the [m, n] pattern.
                    let g = unsafe { cu[i * rsc + j * csc].assume_init() };
                    let w = want[i * n + j];
                    assert!(
                        (g as f64 - w).abs() < tol,
                        "gemm_uninit {tag} col-major {col_major} [{i},{j}]: {g} != {w}"
                    );
                }
            }
        }
    }

    /// k = 0: the product is empty, `c = beta * c`, and beta = 0 overwrites (NaN included).
    #[test]
    fn gemm_with_empty_inner_dimension() {
        let a = Mat::new(&[], 2, 0, 0, 1).unwrap();
        let b = Mat::new(&[], 0, 3, 3, 1).unwrap();
        let mut c = vec![f32::NAN; 6];
        gemm(1.0, a, b, 0.0, &mut c);
        assert_eq!(c, vec![0.0; 6]);
        let mut c = vec![2.0; 6];
        gemm(1.0, a, b, 0.5, &mut c);
        assert_eq!(c, vec![1.0; 6]);
    }
}
