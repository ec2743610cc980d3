//! The one matrix product everything runs on: `matrixmultiply::sgemm` (SIMD kernels, its own
//! threads for large products, `MATMUL_NUM_THREADS`), or, with [`set_precision`]`(Bf16)` on a CPU
//! with AMX, the bf16 tile kernel of [`super::amx`] for every product of at least
//! [`BF16_MIN_DIM`] in each dimension (smaller ones stay f32: packing would cost more than it
//! saves).

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

/// The bf16 product `a · b` when that path is enabled and worth it (every dimension at least
/// [`BF16_MIN_DIM`], non-negative strides); `None` leaves the work to sgemm.
fn try_bf16(a: &Mat, b: &Mat) -> Option<super::amx::Product> {
    fn view<'a>(x: &Mat<'a>) -> Option<super::amx::View<'a>> {
        let (rs, cs) = (usize::try_from(x.rs).ok()?, usize::try_from(x.cs).ok()?);
        super::amx::View::new(x.data, x.rows, x.cols, rs, cs)
    }
    if !BF16.load(Ordering::Relaxed) || a.rows.min(a.cols).min(b.cols) < BF16_MIN_DIM {
        return None;
    }
    super::amx::product_bf16(&view(a)?, &view(b)?)
}

/// A matrix stored in a slice with arbitrary row and column strides (in elements), so that a
/// transposed operand costs nothing: `Mat::rows(a, m, k)` is row-major `[m, k]`,
/// `Mat::rows(a, k, m).t()` is its transpose viewed as `[m, k]`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: isize,
    pub cs: isize,
}

impl<'a> Mat<'a> {
    /// Row-major `[rows, cols]`, contiguous.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert!(
            data.len() >= rows * cols,
            "Mat: {} elements < {rows}x{cols}",
            data.len()
        );
        Mat {
            data,
            rows,
            cols,
            rs: cols as isize,
            cs: 1,
        }
    }
    /// The transpose, without copying.
    pub fn t(self) -> Self {
        Mat {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

/// `c[m, n] = alpha * a[m, k] · b[k, n] + beta * c[m, n]`, `c` row-major contiguous.
/// With `beta = 0`, `c` is overwritten (its old content, even NaN, is ignored).
pub fn gemm(alpha: f32, a: Mat, b: Mat, beta: f32, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "gemm: inner dimensions {k} != {}", b.rows);
    assert!(
        c.len() >= m * n,
        "gemm: output has {} elements < {m}x{n}",
        c.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c[..m * n].iter_mut().for_each(|v| *v *= beta);
        return;
    }
    if let Some(p) = try_bf16(&a, &b) {
        for i in 0..m {
            for j in 0..n {
                let v = &mut c[i * n + j];
                *v = if beta == 0.0 {
                    alpha * p.at(i, j)
                } else {
                    alpha * p.at(i, j) + beta * *v
                };
            }
        }
        return;
    }
    // SAFETY: the asserts above and the `Mat` constructors guarantee that every index
    // `i*rs + j*cs` that sgemm reads (i < rows, j < cols) lies inside `data`, and that `c` holds
    // m*n elements written with row stride n; `c` does not alias `a` or `b` (&mut borrow).
    unsafe { sgemm_raw(alpha, a, b, beta, c.as_mut_ptr(), n, 1) }
}

/// The one call into matrixmultiply: `c[i*rsc + j*csc] = alpha * (a · b)[i, j] + beta * c[..]`.
///
/// # Safety
/// Every `i*rsc + j*csc` (i < a.rows, j < b.cols) must be inside the allocation behind `c`,
/// `c` must not alias `a` or `b`, and with `beta != 0` those elements must be initialized.
unsafe fn sgemm_raw(alpha: f32, a: Mat, b: Mat, beta: f32, c: *mut f32, rsc: usize, csc: usize) {
    matrixmultiply::sgemm(
        a.rows,
        a.cols,
        b.cols,
        alpha,
        a.data.as_ptr(),
        a.rs,
        a.cs,
        b.data.as_ptr(),
        b.rs,
        b.cs,
        beta,
        c,
        rsc as isize,
        csc as isize,
    );
}

/// `c = alpha * a[m, k] · b[k, n]` written into an uninitialized `c` with element `(i, j)` at
/// `i * rsc + j * csc` (both strides positive). Every element of that `[m, n]` pattern is written
/// (beta = 0: sgemm never reads `c`), so the caller may `assume_init` them afterwards.
///
/// With `rsc = 1, csc = m` this writes the transpose of the product, which lets a convolution
/// compute `y^T = col^T · w^T` into `y`'s `[Co, cols]` memory (see `conv.rs`).
pub fn gemm_uninit(
    alpha: f32,
    a: Mat,
    b: Mat,
    c: &mut [std::mem::MaybeUninit<f32>],
    rsc: usize,
    csc: usize,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "gemm: inner dimensions {k} != {}", b.rows);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * rsc + (n - 1) * csc < c.len(),
        "gemm: output has {} elements, too few for {m}x{n} with strides ({rsc}, {csc})",
        c.len()
    );
    if let Some(p) = try_bf16(&a, &b) {
        for i in 0..m {
            for j in 0..n {
                c[i * rsc + j * csc].write(alpha * p.at(i, j));
            }
        }
        return;
    }
    let cp = c.as_mut_ptr() as *mut f32;
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                c[i * rsc + j * csc].write(0.0);
            }
        }
        return;
    }
    // SAFETY: as in `gemm` for a and b; every output index i*rsc + j*csc (i < m, j < n) is
    // < c.len() by the assert above (strides are positive); with beta = 0 sgemm only writes c
    // (never reads it), so uninitialized memory is fine; `c` is a unique borrow.
    unsafe { sgemm_raw(alpha, a, b, 0.0, cp, rsc, csc) }
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
}
