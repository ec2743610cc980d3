//! 2-D convolution (torch.nn.Conv2d, groups = 1, dilation = 1).
//!
//! ```text
//! y[co, n, oh, ow] = b[co] + sum_{ci, ky, kx} w[co, ci, ky, kx] * x[ci, n, oh*s - p + ky, ow*s - p + kx]
//!   x: [Ci, N, H, W] (CNHW), w: [Co, Ci, kh, kw] (PyTorch's layout), y: [Co, N, OH, OW]
//!   OH = (H + 2p - kh) / s + 1 (floor), taps outside the image read 0.
//! ```
//!
//! Fast path: im2col + one sgemm for the whole batch,
//! `y[Co, N*OH*OW] = w[Co, Ci*kh*kw] · col[Ci*kh*kw, N*OH*OW]`,
//! where `col[(ci*kh + ky)*kw + kx, (n*OH + oh)*OW + ow] = x[ci, n, oh*s - p + ky, ow*s - p + kx]`.
//! A 1x1 convolution with stride 1 needs no im2col (x already is `[Ci, N*H*W]`); with stride 2
//! it needs only a strided subsample. Bias, residual addition and ReLU are fused into one pass
//! over the output ([`Conv2d::forward_fused`]), which is how ResNet's bottleneck ends.
//! [`conv2d_naive`] is the seven-loop definition the tests check the fast path against.

use super::gemm::{gemm, gemm_uninit, Mat, MatMut};
use std::cell::RefCell;

thread_local! {
    /// im2col buffer reused across layers (grow-only; one per calling thread).
    static COL_SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}
use ndarray::{Array1, Array4, ArrayView4};
use rayon::prelude::*;

#[derive(Debug, Clone)]
pub struct Conv2d {
    /// `[Co, Ci, kh, kw]`
    pub weight: Array4<f32>,
    /// `[Co]`
    pub bias: Option<Array1<f32>>,
    pub stride: usize,
    pub padding: usize,
}

/// Output size of a convolution or pooling window: `(i + 2p - k) / s + 1`, 0 if the window
/// does not fit.
pub fn out_size(i: usize, k: usize, s: usize, p: usize) -> usize {
    if i + 2 * p < k {
        0
    } else {
        (i + 2 * p - k) / s + 1
    }
}

impl Conv2d {
    pub fn new(
        weight: Array4<f32>,
        bias: Option<Array1<f32>>,
        stride: usize,
        padding: usize,
    ) -> Self {
        let weight = weight.as_standard_layout().into_owned();
        Conv2d {
            weight,
            bias,
            stride,
            padding,
        }
    }

    pub fn out_channels(&self) -> usize {
        self.weight.dim().0
    }
    pub fn in_channels(&self) -> usize {
        self.weight.dim().1
    }

    /// `y = conv(x) + b`, x: `[Ci, N, H, W]` -> `[Co, N, OH, OW]`.
    pub fn forward(&self, x: &Array4<f32>) -> Array4<f32> {
        self.forward_fused(x, None, false)
    }

    /// `y = act(conv(x) + b + residual)` with `act` = ReLU or identity, in one pass over y.
    pub fn forward_fused(
        &self,
        x: &Array4<f32>,
        residual: Option<&Array4<f32>>,
        relu: bool,
    ) -> Array4<f32> {
        let (ci, n, h, w) = x.dim();
        let (co, wci, kh, kw) = self.weight.dim();
        assert_eq!(
            ci, wci,
            "conv: input has {ci} channels, weight expects {wci}"
        );
        let (s, p) = (self.stride, self.padding);
        let (oh, ow) = (out_size(h, kh, s, p), out_size(w, kw, s, p));
        let cols = n * oh * ow;
        let krows = ci * kh * kw;
        if cols == 0 || krows == 0 || co == 0 {
            let mut y = Array4::<f32>::zeros((co, n, oh, ow));
            epilogue(&mut y, self.bias.as_ref(), residual, relu);
            return y;
        }
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        // The product is computed transposed, y^T[cols, Co] = col^T[cols, K] · w^T[K, Co], and
        // written through strides straight into y's [Co, cols] memory. matrixmultiply packs its
        // left operand in parallel and its right operand on one thread, once per 256-deep slice;
        // the (large) column matrix on the left keeps both threads busy while packing, and the
        // (small) weight is what is packed serially.
        let wmat = Mat::rows(self.weight.as_slice().expect("standard layout"), co, krows);
        let mut y = Array4::<f32>::uninit((co, n, oh, ow));
        let yu = y.as_slice_mut().expect("standard layout");
        if kh == 1 && kw == 1 && p == 0 && s == 1 {
            gemm_uninit(
                1.0,
                Mat::rows(xs, ci, cols).t(),
                wmat.t(),
                y_transposed(yu, co, cols),
            );
        } else if use_winograd(ci, kh, kw, s, p) {
            winograd_3x3(xs, (ci, n, h, w), &self.weight, yu);
        } else {
            COL_SCRATCH.with(|buf| {
                let mut buf = buf.borrow_mut();
                if buf.len() < krows * cols {
                    // Grow-only scratch: no fresh (page-faulting) allocation per layer.
                    *buf = Vec::new();
                    buf.resize(krows * cols, 0.0);
                }
                let col = &mut buf[..krows * cols];
                im2col_into(x.view(), kh, kw, s, p, col);
                gemm_uninit(
                    1.0,
                    Mat::rows(col, krows, cols).t(),
                    wmat.t(),
                    y_transposed(yu, co, cols),
                );
            });
        }
        // SAFETY: every element of y was written. The GEMM branches: gemm_uninit wrote every
        // element (j, o) of the [cols, Co] pattern with strides (1, cols), i.e. all Co * cols
        // elements. The Winograd branch (3x3, s = 1, p = 1, so OH = H and OW = W):
        // winograd_3x3's last loop writes y[o, n, oy, ox] for every o < Co, n < N and, through
        // the 2x2 tiles ty < ceil(H/2), tx < ceil(W/2), every oy < H, ox < W.
        let mut y = unsafe { y.assume_init() };
        epilogue(&mut y, self.bias.as_ref(), residual, relu);
        y
    }
}

/// `y^T [cols, Co]` viewed in `y`'s `[Co, cols]` memory: element `(j, o)` at `j + o * cols`.
fn y_transposed(y: &mut [std::mem::MaybeUninit<f32>], co: usize, cols: usize) -> MatMut<'_> {
    MatMut::new(y, cols, co, 1, cols).expect("y holds Co * cols elements")
}

/// Winograd F(2x2, 3x3) is used for 3x3 stride-1 pad-1 convolutions with at least this many
/// input channels (narrower ones have too short a GEMM depth for the 16 small products to pay).
const WINOGRAD_MIN_CHANNELS: usize = 128;

fn use_winograd(ci: usize, kh: usize, kw: usize, s: usize, p: usize) -> bool {
    kh == 3 && kw == 3 && s == 1 && p == 1 && ci >= WINOGRAD_MIN_CHANNELS
}

/// 3x3 / stride 1 / pad 1 convolution by Winograd's minimal filtering F(2x2, 3x3)
/// (Lavin & Gray 2016): 16 multiplications per 2x2 output tile and input channel instead of 36.
///
/// ```text
/// per input channel and 4x4 input tile d (rows 2ty-1 .. 2ty+2, cols 2tx-1 .. 2tx+2, 0 outside):
///   V = B^T d B,  U = G g G^T (per output/input channel pair),  M[xi] = sum_ci U[xi] V[xi]
///   y tile (2x2) = A^T M A
/// B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
/// A^T = [1 1 1 0; 0 1 -1 -1]
/// ```
/// The 16 channel sums are 16 GEMMs `M[xi]^T[T, Co] = V[xi]^T[T, Ci] · U[xi]^T[Ci, Co]` over
/// all T = N * ceil(H/2) * ceil(W/2) tiles. Layouts: `V[ci][xi][t]`, `U[xi][co][ci]`,
/// `M[co][xi][t]`, so the transforms run in parallel over channels. `y` receives `[Co, N, H, W]`
/// without bias (the caller's epilogue adds it).
fn winograd_3x3(
    xs: &[f32],
    (ci, n, h, w): (usize, usize, usize, usize),
    weight: &Array4<f32>,
    y: &mut [std::mem::MaybeUninit<f32>],
) {
    let co = weight.dim().0;
    let tiles = n * h.div_ceil(2) * w.div_ceil(2);
    let u = winograd_filters(weight, ci);
    let v = winograd_inputs(xs, (ci, n, h, w));
    let m = winograd_products(&u, &v, co, ci, tiles);
    winograd_outputs(&m, (n, h, w), y);
}

/// `U = G g G^T` for every (co, ci): `U[xi][co][ci]`, `[16, Co, Ci]`.
fn winograd_filters(weight: &Array4<f32>, ci: usize) -> Vec<f32> {
    let co = weight.dim().0;
    let ws = weight.as_slice().expect("standard layout");
    let mut u = vec![0f32; 16 * co * ci];
    u.par_chunks_mut(ci).enumerate().for_each(|(xi_co, row)| {
        let (xi, o) = (xi_co / co, xi_co % co);
        let (a, b) = (xi / 4, xi % 4);
        for (c, out) in row.iter_mut().enumerate() {
            let g = &ws[(o * ci + c) * 9..][..9];
            // (G g)[a][col] then (. G^T)[a][b]
            let gr = |r: usize| -> [f32; 3] {
                let row = |i: usize| [g[i * 3], g[i * 3 + 1], g[i * 3 + 2]];
                match r {
                    0 => row(0),
                    1 => {
                        let (r0, r1, r2) = (row(0), row(1), row(2));
                        [0, 1, 2].map(|j| 0.5 * (r0[j] + r1[j] + r2[j]))
                    }
                    2 => {
                        let (r0, r1, r2) = (row(0), row(1), row(2));
                        [0, 1, 2].map(|j| 0.5 * (r0[j] - r1[j] + r2[j]))
                    }
                    _ => row(2),
                }
            };
            let t = gr(a);
            *out = match b {
                0 => t[0],
                1 => 0.5 * (t[0] + t[1] + t[2]),
                2 => 0.5 * (t[0] - t[1] + t[2]),
                _ => t[2],
            };
        }
    });
    u
}

/// `V = B^T d B` for every (ci, tile): `V[ci][xi][t]`, `[Ci, 16, T]`.
fn winograd_inputs(xs: &[f32], (ci, n, h, w): (usize, usize, usize, usize)) -> Vec<f32> {
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    let tiles = n * th * tw;
    let mut v = vec![0f32; ci * 16 * tiles];
    v.par_chunks_mut(16 * tiles)
        .enumerate()
        .for_each(|(c, vc)| {
            for nn in 0..n {
                let plane = &xs[(c * n + nn) * h * w..][..h * w];
                for ty in 0..th {
                    for tx in 0..tw {
                        let mut d = [[0f32; 4]; 4];
                        for (r, dr) in d.iter_mut().enumerate() {
                            let iy = (2 * ty + r) as isize - 1;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            let src = &plane[iy as usize * w..][..w];
                            for (cc, dv) in dr.iter_mut().enumerate() {
                                let ix = (2 * tx + cc) as isize - 1;
                                if ix >= 0 && ix < w as isize {
                                    *dv = src[ix as usize];
                                }
                            }
                        }
                        // rows: B^T d
                        let e = [
                            [0, 1, 2, 3].map(|j| d[0][j] - d[2][j]),
                            [0, 1, 2, 3].map(|j| d[1][j] + d[2][j]),
                            [0, 1, 2, 3].map(|j| d[2][j] - d[1][j]),
                            [0, 1, 2, 3].map(|j| d[1][j] - d[3][j]),
                        ];
                        let t = (nn * th + ty) * tw + tx;
                        for (a, r) in e.iter().enumerate() {
                            let vals = [r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3]];
                            for (b, &val) in vals.iter().enumerate() {
                                vc[(a * 4 + b) * tiles + t] = val;
                            }
                        }
                    }
                }
            }
        });
    v
}

/// The 16 GEMMs `M[xi]^T [T, Co] = V[xi]^T [T, Ci] · U[xi]^T [Ci, Co]`: `M[co][xi][t]`,
/// `[Co, 16, T]`.
fn winograd_products(u: &[f32], v: &[f32], co: usize, ci: usize, tiles: usize) -> Vec<f32> {
    let mut m: Vec<std::mem::MaybeUninit<f32>> = Vec::with_capacity(co * 16 * tiles);
    // SAFETY: MaybeUninit needs no initialization; every element is written by the GEMMs below.
    unsafe { m.set_len(co * 16 * tiles) };
    for xi in 0..16 {
        // V[xi]^T [T, Ci]: element (t, c) at V[c][xi][t]; M[xi]^T [T, Co]: (t, o) at M[o][xi][t].
        let a = Mat::new(&v[xi * tiles..], tiles, ci, 1, 16 * tiles).expect("V is [Ci, 16, T]");
        let b = Mat::rows(&u[xi * co * ci..(xi + 1) * co * ci], co, ci).t();
        let c =
            MatMut::new(&mut m[xi * tiles..], tiles, co, 1, 16 * tiles).expect("M is [Co, 16, T]");
        gemm_uninit(1.0, a, b, c);
    }
    // SAFETY: the 16 GEMMs wrote every (co, xi, t) element (strides (1, 16T), offsets xi*T).
    let m: Vec<f32> = unsafe {
        let mut m = std::mem::ManuallyDrop::new(m);
        Vec::from_raw_parts(m.as_mut_ptr() as *mut f32, m.len(), m.capacity())
    };
    m
}

/// `y tile = A^T M A` into `y` `[Co, N, H, W]` (every element written).
fn winograd_outputs(
    m: &[f32],
    (n, h, w): (usize, usize, usize),
    y: &mut [std::mem::MaybeUninit<f32>],
) {
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    let tiles = n * th * tw;
    y.par_chunks_mut(n * h * w).enumerate().for_each(|(o, yc)| {
        let mo = &m[o * 16 * tiles..][..16 * tiles];
        for nn in 0..n {
            for ty in 0..th {
                for tx in 0..tw {
                    let t = (nn * th + ty) * tw + tx;
                    let q = |xi: usize| mo[xi * tiles + t];
                    // rows: A^T M  (2 x 4)
                    let s0 = [0, 1, 2, 3].map(|j| q(j) + q(4 + j) + q(8 + j));
                    let s1 = [0, 1, 2, 3].map(|j| q(4 + j) - q(8 + j) - q(12 + j));
                    for (i, sr) in [s0, s1].iter().enumerate() {
                        let oy = 2 * ty + i;
                        if oy >= h {
                            continue;
                        }
                        let out = [sr[0] + sr[1] + sr[2], sr[1] - sr[2] - sr[3]];
                        for (j, &val) in out.iter().enumerate() {
                            let ox = 2 * tx + j;
                            if ox < w {
                                yc[(nn * h + oy) * w + ox].write(val);
                            }
                        }
                    }
                }
            }
        }
    });
}

/// Gradients of a [`Conv2d`] for one `dy`: `dx` (when asked for), `dw` `[Co, Ci, kh, kw]`,
/// `db` `[Co]`.
pub struct ConvGrads {
    pub dx: Option<Array4<f32>>,
    pub dw: Array4<f32>,
    pub db: Array1<f32>,
}

impl Conv2d {
    /// Backward pass of `y = conv(x) + b` given `dy = dL/dy` `[Co, N, OH, OW]`:
    ///
    /// ```text
    /// dW[Co, K]       = dY[Co, N*OH*OW] · col[K, N*OH*OW]^T      (K = Ci*kh*kw)
    /// db[co]          = sum_{n, oh, ow} dy[co, n, oh, ow]
    /// dcol[K, cols]   = W[Co, K]^T · dY[Co, cols],   dx = col2im(dcol)
    /// ```
    /// A 1x1 stride-1 convolution uses x itself as `col` and needs no col2im. `dx` is computed
    /// only with `need_dx` (the first trainable layer skips it).
    pub fn backward(&self, x: &Array4<f32>, dy: &Array4<f32>, need_dx: bool) -> ConvGrads {
        let (ci, n, h, w) = x.dim();
        let (co, _, kh, kw) = self.weight.dim();
        let (s, p) = (self.stride, self.padding);
        let (oh, ow) = (out_size(h, kh, s, p), out_size(w, kw, s, p));
        assert_eq!(
            dy.dim(),
            (co, n, oh, ow),
            "conv backward: dy shape does not match the forward output"
        );
        let cols = n * oh * ow;
        let krows = ci * kh * kw;
        let dy = dy.as_standard_layout();
        let dys = dy.as_slice().expect("standard layout");
        let db: Array1<f32> = if cols == 0 {
            Array1::zeros(co)
        } else {
            Array1::from(
                dys.par_chunks(cols)
                    .map(|r| r.iter().map(|&v| v as f64).sum::<f64>() as f32)
                    .collect::<Vec<f32>>(),
            )
        };
        let mut dw = Array4::<f32>::zeros((co, ci, kh, kw));
        if cols == 0 {
            return ConvGrads {
                dx: need_dx.then(|| Array4::zeros((ci, n, h, w))),
                dw,
                db,
            };
        }
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let dymat = Mat::rows(dys, co, cols);
        let wmat = Mat::rows(self.weight.as_slice().expect("standard layout"), co, krows);
        let dws = dw.as_slice_mut().expect("standard layout");
        if kh == 1 && kw == 1 && p == 0 && s == 1 {
            gemm(1.0, dymat, Mat::rows(xs, ci, cols).t(), 0.0, dws);
            let dx = need_dx.then(|| {
                let mut dx = Array4::<f32>::zeros((ci, n, h, w));
                gemm(
                    1.0,
                    wmat.t(),
                    dymat,
                    0.0,
                    dx.as_slice_mut().expect("standard layout"),
                );
                dx
            });
            return ConvGrads { dx, dw, db };
        }
        // col and then dcol live in the forward pass's grow-only scratch (no fresh, zeroed
        // allocation per layer); each is completely overwritten (im2col_into, beta = 0).
        let dx = COL_SCRATCH.with(|buf| {
            let mut buf = buf.borrow_mut();
            if buf.len() < krows * cols {
                *buf = Vec::new();
                buf.resize(krows * cols, 0.0);
            }
            let col = &mut buf[..krows * cols];
            im2col_into(x.view(), kh, kw, s, p, col);
            gemm(1.0, dymat, Mat::rows(col, krows, cols).t(), 0.0, dws);
            need_dx.then(|| {
                let dcol = col;
                gemm(1.0, wmat.t(), dymat, 0.0, dcol);
                col2im(dcol, (ci, n, h, w), kh, kw, s, p)
            })
        });
        ConvGrads { dx, dw, db }
    }
}

/// The adjoint of [`im2col`]: `dx[ci, n, iy, ix] = sum of dcol[(ci*kh + ky)*kw + kx, (n*OH + oy)*OW + ox]`
/// over the taps with `iy = oy*s - p + ky`, `ix = ox*s - p + kx`. Parallel over input channels
/// (each owns its `kh*kw` rows of `dcol` and its plane of `dx`, so no two threads write one value).
pub fn col2im(
    dcol: &[f32],
    (ci, n, h, w): (usize, usize, usize, usize),
    kh: usize,
    kw: usize,
    s: usize,
    p: usize,
) -> Array4<f32> {
    let (oh, ow) = (out_size(h, kh, s, p), out_size(w, kw, s, p));
    let cols = n * oh * ow;
    assert_eq!(dcol.len(), ci * kh * kw * cols, "col2im: dcol size");
    let mut dx = Array4::<f32>::zeros((ci, n, h, w));
    let plane = n * h * w;
    if plane == 0 || cols == 0 {
        return dx;
    }
    dx.as_slice_mut()
        .expect("standard layout")
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(c, dxc)| {
            for ky in 0..kh {
                for kx in 0..kw {
                    let r = (c * kh + ky) * kw + kx;
                    let row = &dcol[r * cols..(r + 1) * cols];
                    let ox_lo = if kx >= p { 0 } else { (p - kx).div_ceil(s) };
                    let ox_hi = if w + p > kx {
                        ((w + p - kx - 1) / s + 1).min(ow)
                    } else {
                        0
                    };
                    if ox_lo >= ox_hi {
                        continue;
                    }
                    for nn in 0..n {
                        for oy in 0..oh {
                            let iy = (oy * s + ky) as isize - p as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            let src = &row[(nn * oh + oy) * ow..(nn * oh + oy + 1) * ow];
                            let dst = &mut dxc[(nn * h + iy as usize) * w..][..w];
                            if s == 1 {
                                let ix0 = ox_lo + kx - p;
                                for (d, v) in dst[ix0..ix0 + (ox_hi - ox_lo)]
                                    .iter_mut()
                                    .zip(&src[ox_lo..ox_hi])
                                {
                                    *d += v;
                                }
                            } else {
                                for ox in ox_lo..ox_hi {
                                    dst[ox * s + kx - p] += src[ox];
                                }
                            }
                        }
                    }
                }
            }
        });
    dx
}

/// In place over `y: [Co, N, OH, OW]`: `y = act(y + b[co] + residual)`, parallel over channels.
pub fn epilogue(
    y: &mut Array4<f32>,
    bias: Option<&Array1<f32>>,
    residual: Option<&Array4<f32>>,
    relu: bool,
) {
    let co = y.dim().0;
    let plane = y.len() / co.max(1);
    if plane == 0 {
        return;
    }
    let res = residual.map(|r| {
        assert_eq!(
            r.dim(),
            y.dim(),
            "residual shape {:?} != output {:?}",
            r.dim(),
            y.dim()
        );
        r.as_standard_layout()
    });
    let res_s = res.as_ref().map(|r| r.as_slice().expect("standard layout"));
    let ys = y.as_slice_mut().expect("standard layout");
    ys.par_chunks_mut(plane).enumerate().for_each(|(c, row)| {
        let b = bias.map_or(0.0, |b| b[c]);
        match res_s {
            Some(r) => {
                let r = &r[c * plane..(c + 1) * plane];
                for (v, rv) in row.iter_mut().zip(r) {
                    *v += b + rv;
                }
            }
            None if b != 0.0 => row.iter_mut().for_each(|v| *v += b),
            None => {}
        }
        if relu {
            row.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    });
}

/// Unfolds `x: [Ci, N, H, W]` into `col: [Ci*kh*kw, N*OH*OW]` (row-major), zero outside the
/// image. Rows are independent and filled in parallel.
pub fn im2col(x: ArrayView4<f32>, kh: usize, kw: usize, s: usize, p: usize) -> Vec<f32> {
    let (ci, n, h, w) = x.dim();
    let (oh, ow) = (out_size(h, kh, s, p), out_size(w, kw, s, p));
    let mut col = vec![0f32; ci * kh * kw * n * oh * ow];
    im2col_into(x, kh, kw, s, p, &mut col);
    col
}

/// [`im2col`] into a caller's buffer of exactly `Ci*kh*kw * N*OH*OW` elements; every element
/// is written (padding taps get 0), so the buffer may hold anything before.
pub fn im2col_into(x: ArrayView4<f32>, kh: usize, kw: usize, s: usize, p: usize, col: &mut [f32]) {
    let (ci, n, h, w) = x.dim();
    let (oh, ow) = (out_size(h, kh, s, p), out_size(w, kw, s, p));
    let cols = n * oh * ow;
    assert_eq!(col.len(), ci * kh * kw * cols, "im2col: buffer size");
    if cols == 0 {
        return;
    }
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    col.par_chunks_mut(cols).enumerate().for_each(|(r, row)| {
        let (c, ky, kx) = (r / (kh * kw), (r / kw) % kh, r % kw);
        // valid output columns: 0 <= ox*s + kx - p < w
        let ox_lo = if kx >= p { 0 } else { (p - kx).div_ceil(s) }.min(ow);
        let ox_hi = if w + p > kx {
            ((w + p - kx - 1) / s + 1).min(ow)
        } else {
            0
        }
        .max(ox_lo);
        for nn in 0..n {
            for oy in 0..oh {
                let iy = (oy * s + ky) as isize - p as isize;
                let dst = &mut row[(nn * oh + oy) * ow..(nn * oh + oy + 1) * ow];
                if iy < 0 || iy >= h as isize || ox_lo >= ox_hi {
                    dst.fill(0.0);
                    continue;
                }
                dst[..ox_lo].fill(0.0);
                dst[ox_hi..].fill(0.0);
                let src = &xs[((c * n + nn) * h + iy as usize) * w..][..w];
                if s == 1 {
                    let ix0 = ox_lo + kx - p;
                    dst[ox_lo..ox_hi].copy_from_slice(&src[ix0..ix0 + (ox_hi - ox_lo)]);
                } else {
                    for (ox, d) in (ox_lo..ox_hi).zip(dst[ox_lo..ox_hi].iter_mut()) {
                        *d = src[ox * s + kx - p];
                    }
                }
            }
        }
    });
}

/// The definition, seven loops, no tricks: the reference for the tests.
pub fn conv2d_naive(
    x: ArrayView4<f32>,
    w: ArrayView4<f32>,
    b: Option<&Array1<f32>>,
    s: usize,
    p: usize,
) -> Array4<f32> {
    let (ci, n, h, wd) = x.dim();
    let (co, _, kh, kw) = w.dim();
    let (oh, ow) = (out_size(h, kh, s, p), out_size(wd, kw, s, p));
    let mut y = Array4::<f32>::zeros((co, n, oh, ow));
    for o in 0..co {
        for nn in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = b.map_or(0.0, |b| b[o]) as f64;
                    for c in 0..ci {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * s + ky) as isize - p as isize;
                                let ix = (ox * s + kx) as isize - p as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    acc += (w[[o, c, ky, kx]]
                                        * x[[c, nn, iy as usize, ix as usize]])
                                        as f64;
                                }
                            }
                        }
                    }
                    y[[o, nn, oy, ox]] = acc as f32;
                }
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, FORWARD};
    use rand::{Rng, SeedableRng};

    fn rand4(shape: (usize, usize, usize, usize), seed: u64) -> Array4<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Array4::from_shape_fn(shape, |_| rng.gen_range(-1.0..1.0))
    }

    /// `im2col_into` overwrites every element of a dirty buffer (padding taps included).
    #[test]
    fn im2col_into_overwrites_buffer() {
        let x = rand4((3, 2, 5, 4), 4);
        for &(k, s, p) in &[(3, 1, 1), (3, 2, 1), (1, 2, 0), (7, 2, 3), (5, 3, 4)] {
            let want = im2col(x.view(), k, k, s, p);
            let mut got = vec![f32::NAN; want.len()];
            im2col_into(x.view(), k, k, s, p, &mut got);
            assert!(
                got.iter().zip(&want).all(|(a, b)| a == b),
                "im2col_into k{k} s{s} p{p} differs from im2col"
            );
            assert!(
                p == 0 || want.contains(&0.0),
                "k{k} s{s} p{p}: no padding tap tested"
            );
        }
    }

    /// Fast path == definition for the shapes ResNet uses, with C != H != W, odd sizes,
    /// stride 2, a batch, and a residual + ReLU epilogue.
    #[test]
    fn conv_fast_matches_naive() {
        for &(ci, co, k, s, p, n, h, w) in &[
            (3, 5, 7, 2, 3, 1, 17, 23), // stem
            (6, 4, 3, 1, 1, 2, 9, 11),  // 3x3 stride 1, batch 2
            (6, 4, 3, 2, 1, 3, 9, 12),  // 3x3 stride 2, odd
            (8, 5, 1, 1, 0, 2, 5, 7),   // 1x1, no im2col
            (8, 5, 1, 2, 0, 1, 7, 10),  // 1x1 stride 2 (downsample)
            (2, 3, 3, 1, 1, 1, 1, 1),   // 1x1 image, all taps but the centre padded
            (2, 3, 5, 3, 2, 1, 6, 13),  // stride 3, wide padding
            (130, 7, 3, 1, 1, 2, 5, 8), // 3x3 stride 1, >= 128 channels: Winograd, even
            (128, 9, 3, 1, 1, 3, 7, 3), // Winograd, odd sizes (partial tiles), batch 3
            (128, 4, 3, 1, 1, 1, 1, 1), // Winograd, 1x1 image
        ] {
            let x = rand4((ci, n, h, w), 1);
            let wt = rand4((co, ci, k, k), 2);
            let b = Array1::from_shape_fn(co, |i| i as f32 * 0.1 - 0.2);
            let conv = Conv2d::new(wt.clone(), Some(b.clone()), s, p);
            let want = conv2d_naive(x.view(), wt.view(), Some(&b), s, p);
            let got = conv.forward(&x);
            assert_close(
                &format!("conv k{k} s{s} p{p} {h}x{w}"),
                got.view().into_dyn(),
                want.view().into_dyn(),
                FORWARD,
            );
            let res = rand4(want.dim(), 3);
            let got = conv.forward_fused(&x, Some(&res), true);
            let want = (want + &res).mapv(|v| v.max(0.0));
            assert_close(
                "conv fused",
                got.view().into_dyn(),
                want.view().into_dyn(),
                FORWARD,
            );
        }
    }

    /// Property test: every fast path (1x1 without im2col, 1x1 strided, im2col + GEMM,
    /// Winograd for >= 128 channels) == the definition on random odd image sizes, batches and
    /// channel counts.
    #[test]
    fn conv_fast_matches_naive_on_random_odd_shapes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(18);
        for case in 0..24 {
            let mut odd = |hi: usize| 2 * rng.gen_range(0..hi) + 1;
            let (h, w, co) = (odd(8), odd(8), odd(4));
            let (k, s, p, ci) = match case % 4 {
                0 => (1, 1, 0, odd(5)),
                1 => (1, 2, 0, odd(5)),
                2 => (odd(3), 1 + case % 3, case % 3, odd(4)),
                _ => (3, 1, 1, WINOGRAD_MIN_CHANNELS + odd(3)),
            };
            let n = rng.gen_range(1..3);
            let x = rand4((ci, n, h, w), 100 + case as u64);
            let wt = rand4((co, ci, k, k), 200 + case as u64);
            let b = Array1::from_shape_fn(co, |i| 0.05 * i as f32);
            let got = Conv2d::new(wt.clone(), Some(b.clone()), s, p).forward(&x);
            let want = conv2d_naive(x.view(), wt.view(), Some(&b), s, p);
            assert_close(
                &format!("case {case}: ci {ci} co {co} k{k} s{s} p{p} n{n} {h}x{w}"),
                got.view().into_dyn(),
                want.view().into_dyn(),
                FORWARD,
            );
        }
    }

    /// Conv backward == finite differences of `L = <r, conv(x)>` for dx, dw and db.
    #[test]
    fn conv_backward_matches_finite_differences() {
        use crate::nn::gradcheck::{check, dot64};
        for &(ci, co, k, s, p, n, h, w) in &[
            (3, 4, 3, 2, 1, 2, 7, 9),  // 3x3 stride 2, odd sizes, batch 2
            (5, 3, 3, 1, 1, 1, 6, 5),  // 3x3 stride 1
            (4, 6, 1, 1, 0, 2, 5, 3),  // 1x1 fast path
            (4, 3, 1, 2, 0, 1, 7, 6),  // 1x1 stride 2 (downsample)
            (3, 2, 7, 2, 3, 1, 11, 8), // stem-like 7x7
        ] {
            let x = rand4((ci, n, h, w), 11);
            let wt = rand4((co, ci, k, k), 12);
            let b = Array1::from_shape_fn(co, |i| 0.1 * i as f32 - 0.1);
            let conv = Conv2d::new(wt.clone(), Some(b.clone()), s, p);
            let y = conv.forward(&x);
            let r = rand4(y.dim(), 13);
            let g = conv.backward(&x, &r, true);
            let tag = format!("k{k} s{s} {h}x{w}");
            let loss = |x: &Array4<f32>, wt: &Array4<f32>, b: &Array1<f32>| {
                dot64(
                    r.view(),
                    conv2d_naive(x.view(), wt.view(), Some(b), s, p).view(),
                )
            };
            check(
                &format!("conv dx {tag}"),
                x.as_slice().unwrap(),
                g.dx.as_ref().unwrap().as_slice().unwrap(),
                1e-2,
                |v| {
                    loss(
                        &Array4::from_shape_vec(x.dim(), v.to_vec()).unwrap(),
                        &wt,
                        &b,
                    )
                },
            );
            check(
                &format!("conv dw {tag}"),
                wt.as_slice().unwrap(),
                g.dw.as_slice().unwrap(),
                1e-2,
                |v| {
                    loss(
                        &x,
                        &Array4::from_shape_vec(wt.dim(), v.to_vec()).unwrap(),
                        &b,
                    )
                },
            );
            check(
                &format!("conv db {tag}"),
                b.as_slice().unwrap(),
                g.db.as_slice().unwrap(),
                1e-2,
                |v| loss(&x, &wt, &Array1::from(v.to_vec())),
            );
            assert!(conv.backward(&x, &r, false).dx.is_none());
        }
    }
}
