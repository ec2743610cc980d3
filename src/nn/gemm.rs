//! The one matrix product everything runs on: `matrixmultiply::sgemm` (SIMD kernels, its own
//! threads for large products, `MATMUL_NUM_THREADS`).

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
    // SAFETY: the asserts above and the `Mat` constructors guarantee that every index
    // `i*rs + j*cs` that sgemm reads (i < rows, j < cols) lies inside `data`, and that `c` holds
    // m*n elements written with row stride n; `c` does not alias `a` or `b` (&mut borrow).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs,
            a.cs,
            b.data.as_ptr(),
            b.rs,
            b.cs,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
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
