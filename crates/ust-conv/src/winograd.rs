//! Winograd minimal filtering F(m×m, r×r) (Lavin & Gray, 2016) for the forward convolution
//! when no gradient will be asked of it: dense extraction with frozen networks (scoring test
//! images, the teacher's targets, descriptors for the baselines).
//!
//! Why: dense extraction is compute-bound in the matrix products (74 % of an evaluation's time
//! in gemm's microkernel, in a profile of `ust evaluate` at p = 33), and the direct kernels
//! already run those products near the speed of PyTorch's convolution. Winograd changes the
//! arithmetic instead: an m×m block of outputs of an r×r kernel costs n² = (m + r − 1)²
//! multiply-adds per input channel instead of m²·r², i.e. 2.8× fewer at m = 2, r = 5.
//!
//! The transforms are not tabulated: they are built from interpolation points (0, ±1, ±½, …
//! and ∞) in f64, through the transposition of the Toom–Cook polynomial product (see
//! [`Transform::new`]), so every kernel size shares one derivation, which a test checks against
//! the direct correlation in f64. Per chunk of tiles the work is: input tiles into the
//! transform domain (`Bᵀ D B`), n² products `U_ξ (Cout×Cin) · V_ξ (Cin×tiles)` through gemm,
//! and back (`Aᵀ M A`), plus the bias. Results agree with the direct kernels to float rounding
//! (the transforms' constants are not exact in binary for every point set; tests bound the
//! error), and are bit-identical for any thread count (chunks depend on the shapes alone).

use rayon::prelude::*;

use crate::kernels::{Geom, SharedMut, matmul, with_scratch};

/// Output tile side m of F(m×m, r×r). m = 2 keeps the points at 0, ±1, ±½, 2 and ∞ for every
/// kernel of the patch networks (r ≤ 6), where f32 rounding stays near the direct kernels'
/// (measured in the tests); larger tiles save more products but amplify rounding.
pub(crate) const TILE: usize = 2;

/// Bytes of one chunk's transformed inputs and products: large enough that gemm's packing of
/// each U_ξ serves a few hundred tiles (on p = 17's 5×5 256→256 layer 4 MiB chunks took
/// 0.50 s, 16 and 32 MiB 0.44–0.45 s).
const CHUNK_BYTES: usize = 32 << 20;

/// Whether the forward of `g` takes the Winograd path: square kernels of 2 to 6 taps on wide
/// layers (the RGB input layer and the 1×1 descriptor layer stay direct: there is nothing to
/// save), at any dilation (see [`forward`]).
pub(crate) fn applies(g: &Geom) -> bool {
    g.kh == g.kw
        && (2..=6).contains(&g.kh)
        && g.cin >= 16
        && g.cout >= 16
        && g.ho() >= g.d * TILE
        && g.wo() >= g.d * TILE
}

/// The finite interpolation points of an F(m, r) with `count` of them (∞ is the last point).
fn points(count: usize) -> Vec<f64> {
    const POINTS: [f64; 9] = [0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 0.25, -0.25];
    assert!(count <= POINTS.len(), "no interpolation points for {count}");
    POINTS[..count].to_vec()
}

/// Rows `[1, a, a², …, a^(cols−1)]` for the finite points and `e_(cols−1)` for ∞ (the
/// "evaluation at infinity" of a polynomial is its leading coefficient).
fn vandermonde(pts: &[f64], cols: usize) -> Vec<f64> {
    let n = pts.len() + 1;
    let mut v = vec![0.0; n * cols];
    for (i, &a) in pts.iter().enumerate() {
        let mut p = 1.0;
        for j in 0..cols {
            v[i * cols + j] = p;
            p *= a;
        }
    }
    v[(n - 1) * cols + cols - 1] = 1.0;
    v
}

/// The inverse of an n×n matrix by Gauss–Jordan elimination with partial pivoting (f64; the
/// matrices here are at most 9×9 and well conditioned).
fn invert(a: &[f64], n: usize) -> Vec<f64> {
    let mut m = a.to_vec();
    let mut inv = vec![0.0; n * n];
    for i in 0..n {
        inv[i * n + i] = 1.0;
    }
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&p, &q| m[p * n + col].abs().total_cmp(&m[q * n + col].abs()))
            .expect("a non-empty column");
        assert!(
            m[pivot * n + col].abs() > 1e-12,
            "singular Vandermonde matrix"
        );
        for j in 0..n {
            m.swap(col * n + j, pivot * n + j);
            inv.swap(col * n + j, pivot * n + j);
        }
        let d = m[col * n + col];
        for j in 0..n {
            m[col * n + j] /= d;
            inv[col * n + j] /= d;
        }
        for row in 0..n {
            if row != col {
                let f = m[row * n + col];
                for j in 0..n {
                    m[row * n + j] -= f * m[col * n + j];
                    inv[row * n + j] -= f * inv[col * n + j];
                }
            }
        }
    }
    inv
}

/// The three matrices of F(m, r), n = m + r − 1, in f64.
///
/// Toom–Cook multiplies polynomials h (m coefficients) and g (r) as
/// `s = C [(A h) ⊙ (G g)]`, with A, G evaluating at the points and C = V⁻¹ interpolating
/// from them (V evaluates a polynomial of n coefficients). The product with g fixed is the
/// Toeplitz map `s = T(g) h`, `T(g)_{j,i} = g_{j−i}`, whose transpose is the correlation
/// `y_i = Σ_k g_k d_{i+k}` that a convolution layer computes; so
/// `y = Aᵀ [(G g) ⊙ (Cᵀ d)]`, and Bᵀ = Cᵀ.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Transform {
    pub m: usize,
    pub r: usize,
    pub n: usize,
    /// Aᵀ, m×n.
    pub at: Vec<f64>,
    /// Bᵀ, n×n.
    pub bt: Vec<f64>,
    /// G, n×r.
    pub g: Vec<f64>,
}

impl Transform {
    pub fn new(m: usize, r: usize) -> Self {
        let n = m + r - 1;
        let pts = points(n - 1);
        let c = invert(&vandermonde(&pts, n), n);
        let a = vandermonde(&pts, m);
        let transpose = |x: &[f64], rows: usize, cols: usize| {
            let mut t = vec![0.0; rows * cols];
            for i in 0..rows {
                for j in 0..cols {
                    t[j * rows + i] = x[i * cols + j];
                }
            }
            t
        };
        Transform {
            m,
            r,
            n,
            at: transpose(&a, n, m),
            bt: transpose(&c, n, n),
            g: vandermonde(&pts, r),
        }
    }
}

/// The forward convolution through F(TILE×TILE, k×k) (`applies(g)` must hold). Same contract
/// as [`crate::kernels::forward`].
///
/// A convolution at dilation d only combines pixels of the same phase `(y mod d, x mod d)`:
/// it is d² undilated convolutions of the phase sub-images, which are stacked into the batch
/// (one call, large chunks) and whose outputs are interleaved back.
pub(crate) fn forward(g: &Geom, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    assert!(applies(g), "winograd::forward on {g:?}");
    assert_eq!(x.len(), g.input_len());
    assert_eq!(w.len(), g.weight_len());
    assert_eq!(y.len(), g.output_len());
    let d = g.d;
    if d == 1 {
        return undilated(g, x, w, bias, y);
    }
    let (h, wd, ho, wo, cin, cout) = (g.h, g.w, g.ho(), g.wo(), g.cin, g.cout);
    let (hs, ws) = (h.div_ceil(d), wd.div_ceil(d));
    let sub = Geom {
        b: g.b * d * d,
        h: hs,
        w: ws,
        d: 1,
        ..*g
    };
    // Phase (py, px) of image b is sub-image b·d² + py·d + px; phases with fewer rows or
    // columns are padded with zeros, whose outputs are never read back.
    let mut xs = crate::kernels::zeroed(sub.input_len());
    xs.par_chunks_mut(hs * ws)
        .enumerate()
        .for_each(|(plane, dst)| {
            let (bp, ci) = (plane / cin, plane % cin);
            let (b, phase) = (bp / (d * d), bp % (d * d));
            let (py, px) = (phase / d, phase % d);
            let src = &x[(b * cin + ci) * h * wd..][..h * wd];
            for (yy, row) in dst.chunks_exact_mut(ws).enumerate() {
                let sy = py + d * yy;
                if sy >= h {
                    break;
                }
                let line = &src[sy * wd..][..wd];
                for (v, &s) in row.iter_mut().zip(line.iter().skip(px).step_by(d)) {
                    *v = s;
                }
            }
        });
    let mut ys = crate::kernels::zeroed(sub.output_len());
    undilated(&sub, &xs, w, bias, &mut ys);
    let (hos, wos) = (sub.ho(), sub.wo());
    y.par_chunks_mut(ho * wo)
        .enumerate()
        .for_each(|(plane, dst)| {
            let (b, co) = (plane / cout, plane % cout);
            for (oy, row) in dst.chunks_exact_mut(wo).enumerate() {
                let py = oy % d;
                for (ox, v) in row.iter_mut().enumerate() {
                    let bp = b * d * d + py * d + ox % d;
                    *v = ys[((bp * cout + co) * hos + oy / d) * wos + ox / d];
                }
            }
        });
}

/// [`forward`] at dilation 1: n = TILE + r − 1 as a constant, so the transforms unroll.
fn undilated(g: &Geom, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    match g.kh {
        2 => run::<3>(g, x, w, bias, y),
        3 => run::<4>(g, x, w, bias, y),
        4 => run::<5>(g, x, w, bias, y),
        5 => run::<6>(g, x, w, bias, y),
        6 => run::<7>(g, x, w, bias, y),
        k => unreachable!("applies() admits kernels of 2 to 6 taps, not {k}"),
    }
}

/// `dst[i] += c · src[i]` (a loop the compiler vectorises).
#[inline(always)]
fn axpy(dst: &mut [f32], c: f32, src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += c * s;
    }
}

fn run<const N: usize>(g: &Geom, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    const M: usize = TILE;
    let r = g.kh;
    let tr = Transform::new(M, r);
    debug_assert_eq!(tr.n, N);
    let at: Vec<f32> = tr.at.iter().map(|&v| v as f32).collect();
    let bt: Vec<f32> = tr.bt.iter().map(|&v| v as f32).collect();
    let (cin, cout, h, wd, ho, wo) = (g.cin, g.cout, g.h, g.w, g.ho(), g.wo());
    let nn = N * N;

    // U = G K Gᵀ per (co, ci), laid out [co][ξ][ci]: U_ξ is a Cout×Cin matrix with row stride
    // n²·Cin, and each co is one parallel task.
    let gm: Vec<f32> = tr.g.iter().map(|&v| v as f32).collect();
    let mut u = vec![0.0f32; cout * nn * cin];
    u.par_chunks_mut(nn * cin).enumerate().for_each(|(co, uc)| {
        let mut gk = [0.0f32; 64];
        for ci in 0..cin {
            let kernel = &w[(co * cin + ci) * r * r..][..r * r];
            // gk = G · K (N×r)
            for i in 0..N {
                for j in 0..r {
                    let mut s = 0.0;
                    for l in 0..r {
                        s += gm[i * r + l] * kernel[l * r + j];
                    }
                    gk[i * r + j] = s;
                }
            }
            // U = gk · Gᵀ (N×N)
            for i in 0..N {
                for j in 0..N {
                    let mut s = 0.0;
                    for l in 0..r {
                        s += gk[i * r + l] * gm[j * r + l];
                    }
                    uc[(i * N + j) * cin + ci] = s;
                }
            }
        }
    });

    // Chunks of whole tile rows of one image, so that every transform runs along a tile row
    // (contiguous, vectorised) instead of tile by tile.
    let (th, tw) = (ho.div_ceil(M), wo.div_ceil(M));
    let chunk_tiles = CHUNK_BYTES / (4 * nn * (cin + cout));
    let rows_per_chunk = (chunk_tiles / tw).clamp(1, th);
    let chunks_per_image = th.div_ceil(rows_per_chunk);
    // Input columns M·tx + j for j < N, split by phase: `phase[p][t] = row[M·t + p]`.
    let phase_len = tw + N.div_ceil(M);
    let y_ptr = SharedMut(y.as_mut_ptr());
    let hw = h * wd;
    (0..g.b * chunks_per_image)
        .into_par_iter()
        .for_each(|task| {
            let (b, ty0) = (
                task / chunks_per_image,
                (task % chunks_per_image) * rows_per_chunk,
            );
            let rows = rows_per_chunk.min(th - ty0);
            let nt = rows * tw;
            let scratch = nn * (cin + cout) * nt + M * phase_len + N * N * tw;
            with_scratch(scratch, |buf| {
                let (v, rest) = buf.split_at_mut(nn * cin * nt);
                let (prod, rest) = rest.split_at_mut(nn * cout * nt);
                let (phase, rowt) = rest.split_at_mut(M * phase_len);
                // V_ξ[ci][t] = (Bᵀ D B)_ξ of tile t: the row transform of the N input rows of a
                // tile row (`rowt[i][j'][tx]`), then the column transform into V.
                for ci in 0..cin {
                    let plane = &x[(b * cin + ci) * hw..][..hw];
                    for lr in 0..rows {
                        let oy = (ty0 + lr) * M;
                        rowt.fill(0.0);
                        for i in 0..N.min(h - oy) {
                            let src = &plane[(oy + i) * wd..][..wd];
                            phase.fill(0.0);
                            for (c, &v) in src.iter().enumerate() {
                                phase[(c % M) * phase_len + c / M] = v;
                            }
                            for jp in 0..N {
                                let dst = &mut rowt[(i * N + jp) * tw..][..tw];
                                for j in 0..N {
                                    let c = bt[jp * N + j];
                                    if c != 0.0 {
                                        axpy(dst, c, &phase[(j % M) * phase_len + j / M..][..tw]);
                                    }
                                }
                            }
                        }
                        for ip in 0..N {
                            for jp in 0..N {
                                let dst = &mut v[((ip * N + jp) * cin + ci) * nt + lr * tw..][..tw];
                                dst.fill(0.0);
                                for i in 0..N {
                                    let c = bt[ip * N + i];
                                    if c != 0.0 {
                                        axpy(dst, c, &rowt[(i * N + jp) * tw..][..tw]);
                                    }
                                }
                            }
                        }
                    }
                }
                for xi in 0..nn {
                    // SAFETY: U_ξ is Cout×Cin at row stride n²·Cin inside `u`; V_ξ is Cin×nt and
                    // the product Cout×nt, both contiguous inside the scratch.
                    unsafe {
                        matmul(
                            cout,
                            nt,
                            cin,
                            prod[xi * cout * nt..].as_mut_ptr(),
                            nt,
                            1,
                            false,
                            u[xi * cin..].as_ptr(),
                            nn * cin,
                            1,
                            v[xi * cin * nt..].as_ptr(),
                            nt,
                            1,
                        );
                    }
                }
                // Y = Aᵀ P A per tile row and co (`rowt` reused for Aᵀ P, M×N×tw), plus the bias.
                for co in 0..cout {
                    let bv = bias.map_or(0.0, |b| b[co]);
                    for lr in 0..rows {
                        let oy = (ty0 + lr) * M;
                        let q = &mut rowt[..M * N * tw];
                        q.fill(0.0);
                        for i in 0..M {
                            for jp in 0..N {
                                let dst = &mut q[(i * N + jp) * tw..][..tw];
                                for l in 0..N {
                                    let c = at[i * N + l];
                                    if c != 0.0 {
                                        axpy(
                                            dst,
                                            c,
                                            &prod[((l * N + jp) * cout + co) * nt + lr * tw..]
                                                [..tw],
                                        );
                                    }
                                }
                            }
                        }
                        let z = &mut phase[..tw];
                        for i in 0..M.min(ho - oy) {
                            let base = ((b * cout + co) * ho + oy + i) * wo;
                            for j in 0..M {
                                z.fill(bv);
                                for l in 0..N {
                                    let c = at[j * N + l];
                                    if c != 0.0 {
                                        axpy(z, c, &q[(i * N + l) * tw..][..tw]);
                                    }
                                }
                                for (tx, &value) in z.iter().enumerate() {
                                    let col = tx * M + j;
                                    if col < wo {
                                        // SAFETY: output (b, co, oy + i, col) lies in this chunk's
                                        // tile rows, which only this task writes.
                                        unsafe { *y_ptr.get().add(base + col) = value };
                                    }
                                }
                            }
                        }
                    }
                }
            });
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;

    /// The transforms give the correlation exactly (in f64) for every kernel size used.
    #[test]
    fn one_dimensional_transform_is_the_correlation() {
        let mut rng = Rng::new(3);
        for m in 2..=4 {
            for r in 2..=6 {
                let t = Transform::new(m, r);
                let n = t.n;
                let d: Vec<f64> = (0..n).map(|_| rng.uniform() as f64).collect();
                let k: Vec<f64> = (0..r).map(|_| rng.uniform() as f64).collect();
                let gk: Vec<f64> = (0..n)
                    .map(|i| (0..r).map(|j| t.g[i * r + j] * k[j]).sum())
                    .collect();
                let bd: Vec<f64> = (0..n)
                    .map(|i| (0..n).map(|j| t.bt[i * n + j] * d[j]).sum())
                    .collect();
                for i in 0..m {
                    let got: f64 = (0..n).map(|l| t.at[i * n + l] * gk[l] * bd[l]).sum();
                    let want: f64 = (0..r).map(|j| k[j] * d[i + j]).sum();
                    assert!(
                        (got - want).abs() < 1e-10,
                        "F({m},{r}) output {i}: {got} against {want}"
                    );
                }
            }
        }
    }

    /// The tiled forward against the direct kernels on shapes whose outputs are not multiples
    /// of the tile, several images, dilations 1, 2 and 4, with and without bias.
    #[test]
    fn forward_matches_the_direct_kernels() {
        let mut rng = Rng::new(11);
        for (b, cin, cout, h, w, k, d) in [
            (1, 16, 24, 9, 11, 2, 1),
            (2, 32, 16, 13, 10, 3, 1),
            (1, 16, 32, 15, 17, 4, 1),
            (3, 24, 20, 12, 13, 5, 1),
            (1, 16, 16, 14, 9, 6, 1),
            (1, 128, 64, 40, 37, 5, 1),
            (2, 16, 16, 23, 21, 2, 2),
            (1, 32, 16, 30, 33, 2, 4),
            (1, 16, 24, 41, 38, 4, 4),
            (1, 16, 16, 29, 31, 5, 2),
        ] {
            let g = Geom {
                b,
                cin,
                h,
                w,
                cout,
                kh: k,
                kw: k,
                d,
            };
            assert!(applies(&g));
            let x: Vec<f32> = (0..g.input_len()).map(|_| rng.uniform()).collect();
            let wt: Vec<f32> = (0..g.weight_len()).map(|_| rng.uniform()).collect();
            let bias: Vec<f32> = (0..cout).map(|_| rng.uniform()).collect();
            for bias in [None, Some(bias.as_slice())] {
                let mut want = vec![0.0f32; g.output_len()];
                crate::kernels::forward(&g, &x, &wt, bias, &mut want);
                let mut got = vec![f32::NAN; g.output_len()];
                forward(&g, &x, &wt, bias, &mut got);
                let scale = want.iter().fold(1.0f32, |s, v| s.max(v.abs()));
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                // Sums of cin·k² terms of size ≤ 1: the direct kernels' own rounding is of
                // this order too.
                assert!(
                    worst <= 2e-5 * scale,
                    "{g:?} bias {}: max error {worst} (scale {scale})",
                    bias.is_some()
                );
            }
        }
    }
}
