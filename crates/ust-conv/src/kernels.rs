//! f32 CPU kernels of the convolution on plain contiguous NCHW slices: forward, weight gradient
//! and input gradient, each as matrix products through the `gemm` crate (which picks the CPU's
//! SIMD level at run time) on tiles processed in parallel with rayon.
//!
//! Two schemes, chosen per call from the shapes (see [`Geom::scheme`]):
//!
//! - **Shifted views** (wide layers on large maps): with the output computed on the input's full
//!   row width (the last `d·(KW−1)` columns of each row are wrap-around garbage, dropped when the
//!   tile is copied out), tap `(kh, kw)` of the kernel reads the input channel planes at the
//!   constant offset `d·(kh·W + kw)`, i.e. a strided matrix view of the input itself. The
//!   convolution becomes KH·KW accumulating products `W_tap (Cout×Cin) · X_shift (Cin×n)` with
//!   no im2col copy at all.
//! - **im2col** (narrow inputs such as RGB, small maps, batches of patches): the output positions
//!   of all images form one column space; a tile of output rows is expanded into a
//!   `(Cin·KH·KW) × cols` matrix by row-segment copies and multiplied in one product.
//!
//! The weight gradient uses the same two schemes with per-thread accumulators. The input
//! gradient (see [`Geom::input_grad_path`]) runs the shifted-views products backwards, adding
//! into strided views of `dx` (tiles in two parity phases so that parallel tiles never add
//! into the same rows); or, for narrow layers, it is a forward convolution of the zero-padded
//! output gradient with the flipped, transposed kernel (large maps), or `Wᵀ · G` followed by a
//! col2im scatter-add over whole images (small maps, where the padded formulation would mostly
//! multiply zeros).
//!
//! The products themselves are the `gemm` crate's; what it cannot avoid is repacking the large
//! operand for every tap (about an eighth of the forward's time in a profile of the 5×5
//! 128→128 layer), which only a convolution-specific microkernel reading the input in place
//! would remove.

use std::cell::RefCell;

use gemm::Parallelism;
use rayon::prelude::*;

/// Shape of one convolution: input (b, cin, h, w), kernel (cout, cin, kh, kw), dilation d.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geom {
    pub b: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub d: usize,
}

/// How a convolution is lowered to matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    ShiftedViews,
    Im2col,
}

/// How the input gradient is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputGradPath {
    /// The shifted-views products run backwards, adding into strided views of `dx`.
    Shifted,
    /// A forward convolution of the zero-padded output gradient with the flipped kernel.
    Padded,
    /// `Wᵀ · G` per group of whole images, then col2im.
    Scatter,
}

/// Output columns per tile of the shifted-views scheme: the `Cout × cols` accumulator tile stays
/// in the L2 cache while all taps are added into it.
const SHIFTED_TILE_COLS: usize = 512;
/// Columns per tile of the weight gradient in the shifted-views scheme (the product's inner
/// dimension; longer is better for the `Cout × Cin` accumulator).
const SHIFTED_WGRAD_TILE_COLS: usize = 2048;
/// Bytes of the im2col matrix per tile.
const IM2COL_TILE_BYTES: usize = 1 << 20;
/// The shifted-views scheme needs enough input channels for the per-tap products to be
/// efficient.
const SHIFTED_MIN_CIN: usize = 16;

impl Geom {
    pub fn ho(&self) -> usize {
        self.h - self.d * (self.kh - 1)
    }
    pub fn wo(&self) -> usize {
        self.w - self.d * (self.kw - 1)
    }
    /// Rows of the im2col matrix.
    fn k(&self) -> usize {
        self.cin * self.kh * self.kw
    }
    fn taps(&self) -> usize {
        self.kh * self.kw
    }
    pub fn input_len(&self) -> usize {
        self.b * self.cin * self.h * self.w
    }
    pub fn weight_len(&self) -> usize {
        self.cout * self.k()
    }
    pub fn output_len(&self) -> usize {
        self.b * self.cout * self.ho() * self.wo()
    }

    /// Shifted views when the layer is wide and the wasted wrap-around columns are few
    /// (at most 1/8 of each row).
    pub fn scheme(&self) -> Scheme {
        let waste = self.w - self.wo();
        if self.cin >= SHIFTED_MIN_CIN && waste * 8 <= self.w && self.ho() >= 2 {
            Scheme::ShiftedViews
        } else {
            Scheme::Im2col
        }
    }

    /// The input-gradient method: shifted views where the forward uses them (and the output
    /// has enough channels for the per-tap products); otherwise the padded formulation on
    /// large maps, where it wastes little (it computes h·w outputs per image where ho·wo
    /// columns carry information), and the scatter on small maps.
    pub fn input_grad_path(&self) -> InputGradPath {
        if self.scheme() == Scheme::ShiftedViews && self.cout >= SHIFTED_MIN_CIN {
            return InputGradPath::Shifted;
        }
        let ratio = (self.h * self.w) as f64 / (self.ho() * self.wo()) as f64;
        let per_image_col = self.k() * self.ho() * self.wo() * std::mem::size_of::<f32>();
        if ratio <= 1.3 || per_image_col > 64 << 20 {
            InputGradPath::Padded
        } else {
            InputGradPath::Scatter
        }
    }

    /// Output rows per tile of the shifted-views scheme: about `cols` columns, but at least
    /// enough tiles to keep every thread busy.
    fn shifted_rows_per_tile(&self, cols: usize) -> usize {
        let ho = self.ho();
        let mut rows = (cols / self.w).clamp(1, ho);
        let min_tasks = 4 * rayon::current_num_threads();
        while rows > 1 && self.b * ho.div_ceil(rows) < min_tasks {
            rows = rows.div_ceil(2);
        }
        rows
    }

    /// Output rows (over all images: row `u` is image `u / ho`, row `u % ho`) per im2col tile.
    fn im2col_rows_per_tile(&self) -> usize {
        let total = self.b * self.ho();
        let per_row = self.k() * self.wo() * std::mem::size_of::<f32>();
        let mut rows = (IM2COL_TILE_BYTES / per_row.max(1)).clamp(1, total);
        let min_tasks = 4 * rayon::current_num_threads();
        while rows > 1 && total.div_ceil(rows) < min_tasks {
            rows = rows.div_ceil(2);
        }
        rows
    }
}

/// Bytes from which output buffers are backed by transparent huge pages.
const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;

/// A zeroed buffer for an op's result. Large buffers come fresh from `mmap` and take one page
/// fault per 4 KiB on first write (about a fifth of the CPU time of the first layer's forward
/// pass on a batch of patches, in a profile); asking for transparent huge pages before the
/// first write cuts that to one fault per 2 MiB.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    let v = vec![0.0f32; len];
    #[cfg(target_os = "linux")]
    if len * std::mem::size_of::<f32>() >= HUGE_PAGE_MIN_BYTES {
        const HUGE: usize = 2 << 20;
        let start = (v.as_ptr() as usize).next_multiple_of(HUGE);
        let end = (v.as_ptr() as usize + len * std::mem::size_of::<f32>()) / HUGE * HUGE;
        if end > start {
            // SAFETY: advice on whole pages inside the buffer's own allocation; it changes no
            // contents. Failure (no THP support) only loses the speed-up.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    v
}

/// A raw pointer that rayon tasks may share; every task writes a disjoint region.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}
impl SharedMut {
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

thread_local! {
    /// Per-thread scratch memory, reused across tiles and calls (no allocation per tile).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with a per-thread scratch slice of `len` floats (contents unspecified).
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}

/// `dst (m×n) = [dst +] lhs (m×k) · rhs (k×n)`, strides in elements, single-threaded (the
/// callers parallelise over tiles).
///
/// # Safety
/// Every addressed element of the three matrices must be in bounds of live allocations, and
/// `dst` must not overlap `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    dst_cs: usize,
    accumulate: bool,
    lhs: *const f32,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const f32,
    rhs_rs: usize,
    rhs_cs: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// Kernel reordered tap-major: `out[tap][co][ci] = w[co][ci][tap]`.
fn weights_tap_major(g: &Geom, w: &[f32]) -> Vec<f32> {
    let (taps, cin, cout) = (g.taps(), g.cin, g.cout);
    let mut out = vec![0.0f32; w.len()];
    for co in 0..cout {
        for ci in 0..cin {
            let src = &w[(co * cin + ci) * taps..][..taps];
            for (tap, &v) in src.iter().enumerate() {
                out[(tap * cout + co) * cin + ci] = v;
            }
        }
    }
    out
}

/// `dst.copy_from_slice(src)`, inlined for the short rows of small maps (a `memcpy` call per
/// row costs more than the copy there).
#[inline(always)]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    if dst.len() >= 64 {
        dst.copy_from_slice(src);
        return;
    }
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let s: &[f32; 8] = s.try_into().unwrap();
        let d: &mut [f32; 8] = d.try_into().unwrap();
        *d = *s;
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

/// Copies the im2col matrix of output rows `u0 .. u0 + rows` (over all images) into `col`
/// (`K × rows·wo`, row stride `rows·wo`).
fn im2col(g: &Geom, x: &[f32], u0: usize, rows: usize, col: &mut [f32]) {
    let (ho, wo, hw) = (g.ho(), g.wo(), g.h * g.w);
    let cols = rows * wo;
    for j in 0..rows {
        let (b, oh) = ((u0 + j) / ho, (u0 + j) % ho);
        for ci in 0..g.cin {
            let plane = &x[(b * g.cin + ci) * hw..][..hw];
            for kh in 0..g.kh {
                let src_row = &plane[(oh + kh * g.d) * g.w..][..g.w];
                for kw in 0..g.kw {
                    let r = (ci * g.kh + kh) * g.kw + kw;
                    copy_row(
                        &mut col[r * cols + j * wo..][..wo],
                        &src_row[kw * g.d..][..wo],
                    );
                }
            }
        }
    }
}

/// Adds the im2col-shaped `col` (rows `u0 .. u0 + rows`) back into the input-shaped `dx`.
fn col2im_add(g: &Geom, col: &[f32], u0: usize, rows: usize, dx: &mut [f32], dx_first_b: usize) {
    let (ho, wo, hw) = (g.ho(), g.wo(), g.h * g.w);
    let cols = rows * wo;
    for j in 0..rows {
        let (b, oh) = ((u0 + j) / ho, (u0 + j) % ho);
        for ci in 0..g.cin {
            let plane = &mut dx[((b - dx_first_b) * g.cin + ci) * hw..][..hw];
            for kh in 0..g.kh {
                let dst_row = &mut plane[(oh + kh * g.d) * g.w..][..g.w];
                for kw in 0..g.kw {
                    let r = (ci * g.kh + kh) * g.kw + kw;
                    let src = &col[r * cols + j * wo..][..wo];
                    for (o, &v) in dst_row[kw * g.d..][..wo].iter_mut().zip(src) {
                        *o += v;
                    }
                }
            }
        }
    }
}

/// Forward convolution: `y (b, cout, ho, wo) = conv(x, w) + bias`.
pub(crate) fn forward(g: &Geom, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    assert_eq!(x.len(), g.input_len());
    assert_eq!(w.len(), g.weight_len());
    assert_eq!(y.len(), g.output_len());
    if let Some(bias) = bias {
        assert_eq!(bias.len(), g.cout);
    }
    match g.scheme() {
        Scheme::ShiftedViews => forward_shifted(g, x, w, bias, y),
        Scheme::Im2col => forward_im2col(g, x, w, bias, y),
    }
}

fn forward_shifted(g: &Geom, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let (ho, wo, hw, cin, cout) = (g.ho(), g.wo(), g.h * g.w, g.cin, g.cout);
    let wt = weights_tap_major(g, w);
    let rows = g.shifted_rows_per_tile(SHIFTED_TILE_COLS);
    let tiles = ho.div_ceil(rows);
    let y_ptr = SharedMut(y.as_mut_ptr());
    (0..g.b * tiles).into_par_iter().for_each(|task| {
        let (b, oh0) = (task / tiles, (task % tiles) * rows);
        let r = rows.min(ho - oh0);
        // Full-width columns: row `rr` of the tile starts at column `rr·w`.
        let n = (r - 1) * g.w + wo;
        let xb = &x[b * cin * hw..][..cin * hw];
        with_scratch(cout * n, |tile| {
            for tap in 0..g.taps() {
                let (kh, kw) = (tap / g.kw, tap % g.kw);
                let off = (oh0 + kh * g.d) * g.w + kw * g.d;
                // SAFETY: the last element read is (cin−1)·hw + off + n − 1 ≤ cin·hw − 1
                // because oh0 + r − 1 + kh·d ≤ h − 1 and wo − 1 + kw·d ≤ w − 1.
                unsafe {
                    matmul(
                        cout,
                        n,
                        cin,
                        tile.as_mut_ptr(),
                        n,
                        1,
                        tap > 0,
                        wt[tap * cout * cin..].as_ptr(),
                        cin,
                        1,
                        xb.as_ptr().add(off),
                        hw,
                        1,
                    );
                }
            }
            for co in 0..cout {
                let bv = bias.map_or(0.0, |b| b[co]);
                for rr in 0..r {
                    // SAFETY: the rows (b, co, oh0 + rr) belong to this task only.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(
                            y_ptr.get().add(((b * cout + co) * ho + oh0 + rr) * wo),
                            wo,
                        )
                    };
                    let src = &tile[co * n + rr * g.w..][..wo];
                    for (o, &v) in dst.iter_mut().zip(src) {
                        *o = v + bv;
                    }
                }
            }
        });
    });
}

fn forward_im2col(g: &Geom, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let (ho, wo, cout, k) = (g.ho(), g.wo(), g.cout, g.k());
    let total = g.b * ho;
    let rows = g.im2col_rows_per_tile();
    // Large maps: one product per image written straight into the output rows. Small maps: one
    // product for the whole tile into scratch, then scattered (thin per-image products would
    // re-read the whole kernel for a few columns each).
    let direct = ho * wo >= 256;
    let y_ptr = SharedMut(y.as_mut_ptr());
    (0..total.div_ceil(rows)).into_par_iter().for_each(|task| {
        let u0 = task * rows;
        let r = rows.min(total - u0);
        let cols = r * wo;
        let scratch_out = if direct { 0 } else { cout * cols };
        with_scratch(k * cols + scratch_out, |buf| {
            let (col, out) = buf.split_at_mut(k * cols);
            im2col(g, x, u0, r, col);
            if !direct {
                // SAFETY: col is k × cols, w is cout × k, out is cout × cols.
                unsafe {
                    matmul(
                        cout,
                        cols,
                        k,
                        out.as_mut_ptr(),
                        cols,
                        1,
                        false,
                        w.as_ptr(),
                        k,
                        1,
                        col.as_ptr(),
                        cols,
                        1,
                    );
                }
            }
            let mut j = 0;
            while j < r {
                let (b, oh) = ((u0 + j) / ho, (u0 + j) % ho);
                let seg = (ho - oh).min(r - j);
                let dst = y_ptr.get().wrapping_add((b * cout * ho + oh) * wo);
                for co in 0..cout {
                    let bv = bias.map_or(0.0, |b| b[co]);
                    // SAFETY: output rows (b, co, oh .. oh + seg) belong to this task only.
                    let dst =
                        unsafe { std::slice::from_raw_parts_mut(dst.add(co * ho * wo), seg * wo) };
                    if direct {
                        dst.fill(bv);
                    } else {
                        for (o, &v) in dst.iter_mut().zip(&out[co * cols + j * wo..][..seg * wo]) {
                            *o = v + bv;
                        }
                    }
                }
                if direct {
                    // SAFETY: the output rows as above; col is k × cols, w is cout × k.
                    unsafe {
                        matmul(
                            cout,
                            seg * wo,
                            k,
                            dst,
                            ho * wo,
                            1,
                            true,
                            w.as_ptr(),
                            k,
                            1,
                            col[j * wo..].as_ptr(),
                            cols,
                            1,
                        );
                    }
                }
                j += seg;
            }
        });
    });
}

/// Sums per-thread accumulators of length `len` filled by `work(task, acc)` over `tasks`.
fn parallel_accumulate(
    tasks: usize,
    len: usize,
    work: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    let threads = rayon::current_num_threads().max(1);
    let chunks = threads.min(tasks).max(1);
    let partials: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let mut acc = vec![0.0f32; len];
            let (t0, t1) = (c * tasks / chunks, (c + 1) * tasks / chunks);
            for t in t0..t1 {
                work(t, &mut acc);
            }
            acc
        })
        .collect();
    let mut iter = partials.into_iter();
    let mut sum = iter.next().unwrap_or_else(|| vec![0.0; len]);
    for p in iter {
        for (s, v) in sum.iter_mut().zip(&p) {
            *s += v;
        }
    }
    sum
}

/// Weight gradient: `dw (cout, cin, kh, kw) = Σ_b Σ_pos gy · x_shifted`.
pub(crate) fn weight_grad(g: &Geom, x: &[f32], gy: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), g.input_len());
    assert_eq!(gy.len(), g.output_len());
    match g.scheme() {
        Scheme::ShiftedViews => weight_grad_shifted(g, x, gy),
        Scheme::Im2col => weight_grad_im2col(g, x, gy),
    }
}

fn weight_grad_shifted(g: &Geom, x: &[f32], gy: &[f32]) -> Vec<f32> {
    let (ho, wo, hw, cin, cout, taps) = (g.ho(), g.wo(), g.h * g.w, g.cin, g.cout, g.taps());
    let rows = g.shifted_rows_per_tile(SHIFTED_WGRAD_TILE_COLS);
    let tiles = ho.div_ceil(rows);
    let acc = parallel_accumulate(g.b * tiles, g.weight_len(), |task, acc| {
        let (b, oh0) = (task / tiles, (task % tiles) * rows);
        let r = rows.min(ho - oh0);
        let n = (r - 1) * g.w + wo;
        let xb = &x[b * cin * hw..][..cin * hw];
        with_scratch(cout * n, |gfw| {
            // The output gradient on the full row width, zero in the wrap-around columns.
            for co in 0..cout {
                let dst = &mut gfw[co * n..][..n];
                for rr in 0..r {
                    let src = &gy[((b * cout + co) * ho + oh0 + rr) * wo..][..wo];
                    dst[rr * g.w..][..wo].copy_from_slice(src);
                    if rr + 1 < r {
                        dst[rr * g.w + wo..(rr + 1) * g.w].fill(0.0);
                    }
                }
            }
            for tap in 0..taps {
                let (kh, kw) = (tap / g.kw, tap % g.kw);
                let off = (oh0 + kh * g.d) * g.w + kw * g.d;
                // SAFETY: as in forward_shifted; acc holds taps × cout × cin.
                unsafe {
                    matmul(
                        cout,
                        cin,
                        n,
                        acc[tap * cout * cin..].as_mut_ptr(),
                        cin,
                        1,
                        true,
                        gfw.as_ptr(),
                        n,
                        1,
                        xb.as_ptr().add(off),
                        1,
                        hw,
                    );
                }
            }
        });
    });
    // Back from tap-major to (cout, cin, kh, kw).
    let mut dw = zeroed(acc.len());
    for tap in 0..taps {
        for co in 0..cout {
            for ci in 0..cin {
                dw[(co * cin + ci) * taps + tap] = acc[(tap * cout + co) * cin + ci];
            }
        }
    }
    dw
}

fn weight_grad_im2col(g: &Geom, x: &[f32], gy: &[f32]) -> Vec<f32> {
    let (ho, wo, cout, k) = (g.ho(), g.wo(), g.cout, g.k());
    let total = g.b * ho;
    let rows = g.im2col_rows_per_tile();
    parallel_accumulate(total.div_ceil(rows), g.weight_len(), |task, acc| {
        let u0 = task * rows;
        let r = rows.min(total - u0);
        let cols = r * wo;
        with_scratch(k * cols + cout * cols, |buf| {
            let (col, gt) = buf.split_at_mut(k * cols);
            im2col(g, x, u0, r, col);
            for j in 0..r {
                let (b, oh) = ((u0 + j) / ho, (u0 + j) % ho);
                for co in 0..cout {
                    copy_row(
                        &mut gt[co * cols + j * wo..][..wo],
                        &gy[((b * cout + co) * ho + oh) * wo..][..wo],
                    );
                }
            }
            // acc (cout × k) += gt (cout × cols) · colᵀ (cols × k)
            // SAFETY: all three matrices lie within their buffers.
            unsafe {
                matmul(
                    cout,
                    k,
                    cols,
                    acc.as_mut_ptr(),
                    k,
                    1,
                    true,
                    gt.as_ptr(),
                    cols,
                    1,
                    col.as_ptr(),
                    1,
                    cols,
                );
            }
        });
    })
}

/// Input gradient: `dx (b, cin, h, w)`, the transposed convolution of `gy` with `w`.
pub(crate) fn input_grad(g: &Geom, gy: &[f32], w: &[f32]) -> Vec<f32> {
    assert_eq!(gy.len(), g.output_len());
    assert_eq!(w.len(), g.weight_len());
    match g.input_grad_path() {
        InputGradPath::Shifted => input_grad_shifted(g, gy, w),
        InputGradPath::Padded => input_grad_padded(g, gy, w),
        InputGradPath::Scatter => input_grad_scatter(g, gy, w),
    }
}

/// The shifted-views scheme run backwards: for each tap, `dx_shift (cin × n) += W_tapᵀ · G`,
/// with `dx_shift` a strided view of `dx` itself and `G` the output gradient on the full row
/// width (zero in the wrap-around columns). Exactly the forward's arithmetic, no padding.
/// A tile adds into input rows `oh0 .. oh0 + r + d·(KH−1)`; tiles are at least `d·(KH−1)` rows
/// high, so the even tiles, then the odd ones, can run in parallel without overlapping.
fn input_grad_shifted(g: &Geom, gy: &[f32], w: &[f32]) -> Vec<f32> {
    let (ho, wo, hw, cin, cout, taps) = (g.ho(), g.wo(), g.h * g.w, g.cin, g.cout, g.taps());
    let wt = weights_tap_major(g, w);
    let rows = g
        .shifted_rows_per_tile(SHIFTED_TILE_COLS)
        .max(g.d * (g.kh - 1))
        .min(ho);
    let tiles = ho.div_ceil(rows);
    let mut dx = zeroed(g.input_len());
    let dx_ptr = SharedMut(dx.as_mut_ptr());
    for parity in 0..2 {
        let tasks: Vec<(usize, usize)> = (0..g.b)
            .flat_map(|b| (parity..tiles).step_by(2).map(move |t| (b, t)))
            .collect();
        tasks.into_par_iter().for_each(|(b, t)| {
            let oh0 = t * rows;
            let r = rows.min(ho - oh0);
            let n = (r - 1) * g.w + wo;
            // The input rows this tile adds into, accumulated in scratch first (a compact
            // region whose row stride is padded off multiples of 4 KiB, where the strided
            // `dx` planes would alias in the L1 cache), then added into `dx` once.
            let region = (r + g.d * (g.kh - 1)) * g.w;
            let ld = region + 16;
            with_scratch(cout * n + cin * ld, |buf| {
                let (gfw, acc) = buf.split_at_mut(cout * n);
                for co in 0..cout {
                    let dst = &mut gfw[co * n..][..n];
                    for rr in 0..r {
                        let src = &gy[((b * cout + co) * ho + oh0 + rr) * wo..][..wo];
                        dst[rr * g.w..][..wo].copy_from_slice(src);
                        if rr + 1 < r {
                            dst[rr * g.w + wo..(rr + 1) * g.w].fill(0.0);
                        }
                    }
                }
                acc.fill(0.0);
                for tap in 0..taps {
                    let (kh, kw) = (tap / g.kw, tap % g.kw);
                    let off = kh * g.d * g.w + kw * g.d;
                    // SAFETY: the last element written is (cin−1)·ld + off + n − 1 < cin·ld
                    // because off + n ≤ region (see forward_shifted). wt[tap] is cout × cin,
                    // read transposed.
                    unsafe {
                        matmul(
                            cin,
                            n,
                            cout,
                            acc[off..].as_mut_ptr(),
                            ld,
                            1,
                            true,
                            wt[tap * cout * cin..].as_ptr(),
                            1,
                            cin,
                            gfw.as_ptr(),
                            n,
                            1,
                        );
                    }
                }
                for ci in 0..cin {
                    // SAFETY: input rows oh0 .. oh0 + r + d·(KH−1) of image b belong to this
                    // task during this parity phase (see above).
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(
                            dx_ptr.get().add((b * cin + ci) * hw + oh0 * g.w),
                            region,
                        )
                    };
                    for (o, &v) in dst.iter_mut().zip(&acc[ci * ld..][..region]) {
                        *o += v;
                    }
                }
            });
        });
    }
    dx
}

fn input_grad_padded(g: &Geom, gy: &[f32], w: &[f32]) -> Vec<f32> {
    let (ho, wo, taps) = (g.ho(), g.wo(), g.taps());
    let (ph, pw) = (g.d * (g.kh - 1), g.d * (g.kw - 1));
    let (hp, wp) = (ho + 2 * ph, wo + 2 * pw);
    let mut padded = zeroed(g.b * g.cout * hp * wp);
    padded
        .par_chunks_mut(hp * wp)
        .zip(gy.par_chunks(ho * wo))
        .for_each(|(dst, src)| {
            for r in 0..ho {
                copy_row(&mut dst[(r + ph) * wp + pw..][..wo], &src[r * wo..][..wo]);
            }
        });
    // Flipped and transposed kernel: wt[ci][co][kh][kw] = w[co][ci][KH−1−kh][KW−1−kw].
    let mut wt = vec![0.0f32; w.len()];
    for co in 0..g.cout {
        for ci in 0..g.cin {
            let src = &w[(co * g.cin + ci) * taps..][..taps];
            let dst = &mut wt[(ci * g.cout + co) * taps..][..taps];
            for (t, v) in dst.iter_mut().enumerate() {
                *v = src[taps - 1 - t];
            }
        }
    }
    let gt = Geom {
        b: g.b,
        cin: g.cout,
        h: hp,
        w: wp,
        cout: g.cin,
        kh: g.kh,
        kw: g.kw,
        d: g.d,
    };
    let mut dx = zeroed(g.input_len());
    forward(&gt, &padded, &wt, None, &mut dx);
    dx
}

fn input_grad_scatter(g: &Geom, gy: &[f32], w: &[f32]) -> Vec<f32> {
    let (ho, wo, hw, cin, cout, k) = (g.ho(), g.wo(), g.h * g.w, g.cin, g.cout, g.k());
    let mut dx = zeroed(g.input_len());
    // Whole images per task, so that no two tasks add into the same input plane.
    let per_image = k * ho * wo + cout * ho * wo;
    let images = (IM2COL_TILE_BYTES / (per_image * std::mem::size_of::<f32>()))
        .clamp(1, g.b.div_ceil(4 * rayon::current_num_threads()).max(1));
    dx.par_chunks_mut(images * cin * hw)
        .enumerate()
        .for_each(|(task, dx_chunk)| {
            let b0 = task * images;
            let nb = dx_chunk.len() / (cin * hw);
            let (r, cols) = (nb * ho, nb * ho * wo);
            with_scratch(k * cols + cout * cols, |buf| {
                let (col, gt) = buf.split_at_mut(k * cols);
                // The images' output gradients side by side: gt (cout × cols). For small maps
                // one product over all of them beats one thin product per image.
                for j in 0..nb {
                    for co in 0..cout {
                        gt[co * cols + j * ho * wo..][..ho * wo]
                            .copy_from_slice(&gy[((b0 + j) * cout + co) * ho * wo..][..ho * wo]);
                    }
                }
                // col (k × cols) = wᵀ (k × cout) · gt (cout × cols)
                // SAFETY: all three matrices lie within their buffers.
                unsafe {
                    matmul(
                        k,
                        cols,
                        cout,
                        col.as_mut_ptr(),
                        cols,
                        1,
                        false,
                        w.as_ptr(),
                        1,
                        k,
                        gt.as_ptr(),
                        cols,
                        1,
                    );
                }
                col2im_add(g, col, b0 * ho, r, dx_chunk, b0);
            });
        });
    dx
}

/// Bias gradient: `db[co] = Σ_b Σ_pos gy[b, co, pos]`.
pub(crate) fn bias_grad(b: usize, cout: usize, plane: usize, gy: &[f32]) -> Vec<f32> {
    assert_eq!(gy.len(), b * cout * plane);
    (0..cout)
        .into_par_iter()
        .map(|co| {
            (0..b)
                .map(|bi| sum_f32(&gy[(bi * cout + co) * plane..][..plane]))
                .sum::<f32>()
        })
        .collect()
}

/// Sum with 8 independent partial sums (vectorizes, and is more accurate than a serial sum).
fn sum_f32(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: &mut u64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (*seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// The forward pass computes every output element with one product per tap whatever the
    /// tiling, so its result does not depend on the thread count (the tiles do); the weight
    /// gradient sums per-thread partials and is documented as not bit-identical across thread
    /// counts (ust-conv README).
    #[test]
    fn forward_is_bit_identical_for_any_thread_count() {
        let cases = [
            Geom {
                b: 2,
                cin: 64,
                h: 60,
                w: 60,
                cout: 64,
                kh: 5,
                kw: 5,
                d: 1,
            },
            Geom {
                b: 4,
                cin: 3,
                h: 64,
                w: 64,
                cout: 32,
                kh: 5,
                kw: 5,
                d: 1,
            },
            Geom {
                b: 1,
                cin: 32,
                h: 90,
                w: 90,
                cout: 64,
                kh: 4,
                kw: 4,
                d: 2,
            },
        ];
        for g in cases {
            let mut seed = 7;
            let x = values(g.input_len(), &mut seed);
            let w = values(g.weight_len(), &mut seed);
            let bias = values(g.cout, &mut seed);
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("a thread pool");
                pool.install(|| {
                    let mut y = vec![0.0; g.output_len()];
                    forward(&g, &x, &w, Some(&bias), &mut y);
                    y
                })
            };
            let one = run(1);
            assert!(one.iter().any(|v| *v != 0.0), "{g:?}: empty output");
            for threads in [2, 3, 8] {
                assert!(
                    run(threads) == one,
                    "{g:?}: {threads} threads differ from 1"
                );
            }
        }
    }
}
