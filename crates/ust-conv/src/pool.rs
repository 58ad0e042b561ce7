//! 2×2 max pooling with correct gradients.
//!
//! candle 0.11's `max_pool2d` has a wrong backward pass (it scales the gradient by 0.25 at
//! kernel = stride = 2) and supports only kernel = stride, so the patch networks use the pooling
//! of this module instead. One CPU kernel ([`MaxPool2x2`]) serves the three forms the project
//! needs:
//!
//! - [`max_pool_2x2`]: the plain pooling of the patch networks (stride 2; an odd last row or
//!   column is dropped, as in PyTorch's `MaxPool2d(2)`);
//! - [`max_pool_2x2_dilated`]: stride 1 with the two window taps `dilation` apart, the pooling of
//!   the dilated dense network (METHOD.md §3);
//! - [`max_pool_2x2_all_offsets`]: stride 2 evaluated at the four offsets (0/1 in y and x), the
//!   results stacked into the batch dimension, the pooling of the multi-pool dense network.
//!
//! The gradient goes to the first maximum of each window (taps in the order (0,0), (0,1), (1,0),
//! (1,1)), as in PyTorch. This matters where a window holds equal values, which happens on
//! constant image regions and zero padding: a reduction `max` in candle gives the full gradient
//! to *every* tied element, which is not a valid subgradient.
//! [`max_pool_2x2_reference`] (the reshape + `max` formulation) is kept as the reference for
//! values and for gradients on tie-free inputs.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// A 2×2 max pooling: windows `stride` apart whose two taps per axis are `dilation` apart,
/// optionally evaluated at all four offsets (0/1 in y and x) with the results stacked into the
/// batch dimension (offset index `oy * 2 + ox` outermost: output batch index `o * B + b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2x2 {
    /// Distance between the starts of neighbouring windows (1 or 2).
    pub stride: usize,
    /// Distance between the two taps of a window along each axis (1 for plain pooling).
    pub dilation: usize,
    /// Evaluate the pooling at the four offsets and stack the results into the batch.
    pub all_offsets: bool,
}

impl MaxPool2x2 {
    fn offsets(&self) -> &'static [(usize, usize)] {
        if self.all_offsets {
            &[(0, 0), (0, 1), (1, 0), (1, 1)]
        } else {
            &[(0, 0)]
        }
    }

    /// Output length along one axis for an input of length `len` (0 when no window fits).
    ///
    /// With several offsets every offset gets the same length, the largest one for which the
    /// offset-1 windows still fit.
    pub fn out_len(&self, len: usize) -> usize {
        let extra = usize::from(self.all_offsets);
        let span = 1 + extra + self.dilation;
        if len < span {
            0
        } else {
            (len - span) / self.stride + 1
        }
    }

    /// Applies the pooling.
    ///
    /// # Shapes
    /// (B, C, H, W) -> (B, C, out_len(H), out_len(W)), or (4B, C, ...) with `all_offsets`.
    pub fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.stride == 0 || self.dilation == 0 {
            candle_core::bail!("max pool: stride and dilation must be at least 1");
        }
        let (_, _, h, w) = x.dims4()?;
        if self.out_len(h) == 0 || self.out_len(w) == 0 {
            candle_core::bail!(
                "max pool: input {h}x{w} is too small for stride {} dilation {} (all offsets: {})",
                self.stride,
                self.dilation,
                self.all_offsets
            );
        }
        x.contiguous()?.apply_op1(*self)
    }

    /// The index (0..4, order (0,0), (0,1), (1,0), (1,1)) of the first maximum of the window
    /// starting at `base` in a plane of width `w`; NaN wins (and propagates).
    #[inline(always)]
    fn argmax<T: PoolElem>(&self, plane: &[T], base: usize, w: usize) -> usize {
        let d = self.dilation;
        let taps = [base, base + d, base + d * w, base + d * w + d];
        let mut best = 0;
        let mut best_v = plane[taps[0]];
        for (k, &t) in taps.iter().enumerate().skip(1) {
            if best_v.is_nan() {
                break;
            }
            let v = plane[t];
            if v > best_v || v.is_nan() {
                best = k;
                best_v = v;
            }
        }
        taps[best]
    }

    fn forward_typed<T: PoolElem>(
        &self,
        x: &[T],
        b: usize,
        c: usize,
        h: usize,
        w: usize,
    ) -> Vec<T> {
        let (ho, wo) = (self.out_len(h), self.out_len(w));
        let offsets = self.offsets();
        let mut out = vec![T::default(); offsets.len() * b * c * ho * wo];
        out.par_chunks_mut(ho * wo)
            .enumerate()
            .for_each(|(plane_idx, out_plane)| {
                let o = plane_idx / (b * c);
                let in_plane_idx = plane_idx % (b * c);
                let (oy, ox) = offsets[o];
                let plane = &x[in_plane_idx * h * w..(in_plane_idx + 1) * h * w];
                let (s, d) = (self.stride, self.dilation);
                for (i, out_row) in out_plane.chunks_exact_mut(wo).enumerate() {
                    // The forward value needs no argmax: the first maximum's value is the
                    // NaN-propagating maximum, which the compiler vectorises (stride 1, the
                    // dilated dense network, is the common case).
                    let top = &plane[(i * s + oy) * w + ox..];
                    let bottom = &plane[(i * s + oy + d) * w + ox..];
                    if s == 1 {
                        let (t0, t1) = (&top[..wo], &top[d..d + wo]);
                        let (b0, b1) = (&bottom[..wo], &bottom[d..d + wo]);
                        for j in 0..wo {
                            out_row[j] = max_nan(max_nan(t0[j], t1[j]), max_nan(b0[j], b1[j]));
                        }
                    } else {
                        for (j, o) in out_row.iter_mut().enumerate() {
                            let k = j * s;
                            *o = max_nan(
                                max_nan(top[k], top[k + d]),
                                max_nan(bottom[k], bottom[k + d]),
                            );
                        }
                    }
                }
            });
        out
    }

    fn backward_typed<T: PoolElem>(
        &self,
        x: &[T],
        grad_out: &[T],
        b: usize,
        c: usize,
        h: usize,
        w: usize,
    ) -> Vec<T> {
        let (ho, wo) = (self.out_len(h), self.out_len(w));
        let offsets = self.offsets();
        let mut grad_in = vec![T::default(); b * c * h * w];
        // One task per input plane: it gathers from the output planes of every offset, so
        // no two tasks write the same element.
        grad_in
            .par_chunks_mut(h * w)
            .enumerate()
            .for_each(|(in_plane_idx, gplane)| {
                let plane = &x[in_plane_idx * h * w..(in_plane_idx + 1) * h * w];
                for (o, &(oy, ox)) in offsets.iter().enumerate() {
                    let out_plane_idx = o * b * c + in_plane_idx;
                    let g = &grad_out[out_plane_idx * ho * wo..(out_plane_idx + 1) * ho * wo];
                    for i in 0..ho {
                        let row = (i * self.stride + oy) * w;
                        for j in 0..wo {
                            let base = row + j * self.stride + ox;
                            let at = self.argmax(plane, base, w);
                            gplane[at] = gplane[at] + g[i * wo + j];
                        }
                    }
                }
            });
        grad_in
    }
}

/// `max(a, b)` that propagates NaN and keeps `a` on ties (so the first of equal maxima, as in
/// [`MaxPool2x2::argmax`]); branch-free, so loops over it vectorise.
#[inline(always)]
fn max_nan<T: PoolElem>(a: T, b: T) -> T {
    if a.is_nan() || a >= b { a } else { b }
}

/// The element types the pooling kernel runs on.
trait PoolElem: Copy + Default + PartialOrd + std::ops::Add<Output = Self> + Send + Sync {
    fn is_nan(self) -> bool;
}

impl PoolElem for f32 {
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}

impl PoolElem for f64 {
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

fn contiguous_slice<'a, T>(
    data: &'a [T],
    layout: &Layout,
    what: &str,
) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("max pool: {what} must be contiguous"),
    }
}

impl CustomOp1 for MaxPool2x2 {
    fn name(&self) -> &'static str {
        "ust-max-pool-2x2"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = layout.shape().dims4()?;
        let n_off = self.offsets().len();
        let shape = Shape::from((n_off * b, c, self.out_len(h), self.out_len(w)));
        let out = match storage {
            CpuStorage::F32(data) => {
                let x = contiguous_slice(data, layout, "input")?;
                CpuStorage::F32(self.forward_typed(x, b, c, h, w))
            }
            CpuStorage::F64(data) => {
                let x = contiguous_slice(data, layout, "input")?;
                CpuStorage::F64(self.forward_typed(x, b, c, h, w))
            }
            other => candle_core::bail!("max pool: unsupported dtype {:?}", other.dtype()),
        };
        Ok((out, shape))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad = arg.apply_op2_no_bwd(&grad_res.contiguous()?, &MaxPool2x2Backward(*self))?;
        Ok(Some(grad))
    }
}

/// The backward pass of [`MaxPool2x2`]: (input, output gradient) -> input gradient.
struct MaxPool2x2Backward(MaxPool2x2);

impl CustomOp2 for MaxPool2x2Backward {
    fn name(&self) -> &'static str {
        "ust-max-pool-2x2-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let pool = self.0;
        let (b, c, h, w) = l1.shape().dims4()?;
        let expected = Shape::from((
            pool.offsets().len() * b,
            c,
            pool.out_len(h),
            pool.out_len(w),
        ));
        if l2.shape() != &expected {
            candle_core::bail!(
                "max pool backward: gradient shape {:?}, expected {:?}",
                l2.shape(),
                expected
            );
        }
        let grad = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(g)) => {
                let x = contiguous_slice(x, l1, "input")?;
                let g = contiguous_slice(g, l2, "gradient")?;
                CpuStorage::F32(pool.backward_typed(x, g, b, c, h, w))
            }
            (CpuStorage::F64(x), CpuStorage::F64(g)) => {
                let x = contiguous_slice(x, l1, "input")?;
                let g = contiguous_slice(g, l2, "gradient")?;
                CpuStorage::F64(pool.backward_typed(x, g, b, c, h, w))
            }
            _ => candle_core::bail!("max pool backward: unsupported or mismatched dtypes"),
        };
        Ok((grad, l1.shape().clone()))
    }
}

/// Plain 2×2 max pooling with stride 2, the pooling of the patch networks. An odd last row or
/// column is dropped.
///
/// # Shapes
/// (B, C, H, W) -> (B, C, H/2, W/2) (rounded down)
pub fn max_pool_2x2(x: &Tensor) -> candle_core::Result<Tensor> {
    MaxPool2x2 {
        stride: 2,
        dilation: 1,
        all_offsets: false,
    }
    .apply(x)
}

/// 2×2 max pooling with stride 1 whose taps are `dilation` apart: the pooling of the dilated
/// dense network, equal to [`max_pool_2x2`] evaluated at every position of a grid that has been
/// dilated by `dilation`.
///
/// # Shapes
/// (B, C, H, W) -> (B, C, H - dilation, W - dilation)
pub fn max_pool_2x2_dilated(x: &Tensor, dilation: usize) -> candle_core::Result<Tensor> {
    MaxPool2x2 {
        stride: 1,
        dilation,
        all_offsets: false,
    }
    .apply(x)
}

/// 2×2 max pooling with stride 2 at the four offsets (0/1 in y, 0/1 in x), stacked into the
/// batch: output batch index `(2 * oy + ox) * B + b`. Every offset is cropped to the common size
/// `(H - 1) / 2` × `(W - 1) / 2`.
///
/// # Shapes
/// (B, C, H, W) -> (4B, C, (H-1)/2, (W-1)/2)
pub fn max_pool_2x2_all_offsets(x: &Tensor) -> candle_core::Result<Tensor> {
    MaxPool2x2 {
        stride: 2,
        dilation: 1,
        all_offsets: true,
    }
    .apply(x)
}

/// Reference 2×2 stride-2 max pooling from candle's own ops (crop to even size, reshape, `max`).
/// Its values equal [`max_pool_2x2`]'s; its gradient too where no window has tied maxima (with
/// ties every tied element gets the full gradient).
///
/// # Shapes
/// (B, C, H, W) -> (B, C, H/2, W/2) (rounded down)
pub fn max_pool_2x2_reference(x: &Tensor) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (ho, wo) = (h / 2, w / 2);
    x.narrow(2, 0, 2 * ho)?
        .narrow(3, 0, 2 * wo)?
        .reshape((b, c, ho, 2, wo, 2))?
        .max(5)?
        .max(3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use rand::{RngExt, SeedableRng, rngs::StdRng};

    fn random(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
        let mut rng = StdRng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    /// Direct evaluation of the pooling formula, element by element.
    fn naive(x: &Tensor, pool: MaxPool2x2) -> Vec<f64> {
        let (b, c, h, w) = x.dims4().unwrap();
        let v = x
            .to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let (ho, wo) = (pool.out_len(h), pool.out_len(w));
        let mut out = Vec::new();
        for &(oy, ox) in pool.offsets() {
            for bc in 0..b * c {
                for i in 0..ho {
                    for j in 0..wo {
                        let (y, x0) = (i * pool.stride + oy, j * pool.stride + ox);
                        let d = pool.dilation;
                        let at = |yy: usize, xx: usize| v[bc * h * w + yy * w + xx];
                        out.push(
                            at(y, x0)
                                .max(at(y, x0 + d))
                                .max(at(y + d, x0))
                                .max(at(y + d, x0 + d)),
                        );
                    }
                }
            }
        }
        out
    }

    #[test]
    fn values_match_the_formula_and_the_reference() {
        let x = random(&[2, 3, 9, 8], 1, DType::F32);
        for pool in [
            MaxPool2x2 {
                stride: 2,
                dilation: 1,
                all_offsets: false,
            },
            MaxPool2x2 {
                stride: 1,
                dilation: 1,
                all_offsets: false,
            },
            MaxPool2x2 {
                stride: 1,
                dilation: 3,
                all_offsets: false,
            },
            MaxPool2x2 {
                stride: 2,
                dilation: 1,
                all_offsets: true,
            },
        ] {
            let y = pool.apply(&x).unwrap();
            let (b, c, h, w) = x.dims4().unwrap();
            assert_eq!(
                y.dims(),
                &[
                    pool.offsets().len() * b,
                    c,
                    pool.out_len(h),
                    pool.out_len(w)
                ]
            );
            let got = y
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            assert_eq!(got, naive(&x, pool), "{pool:?}");
        }
        let plain = max_pool_2x2(&x).unwrap();
        assert_eq!(plain.dims(), &[2, 3, 4, 4]);
        let reference = max_pool_2x2_reference(&x).unwrap();
        let diff = (plain - reference)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }

    /// d(sum(w * pool(x)))/dx by central finite differences, against the analytic gradient, for
    /// every form of the pooling; and the reference pooling's gradient on the plain form.
    #[test]
    fn gradient_matches_finite_differences() {
        let x0 = random(&[2, 2, 7, 6], 2, DType::F64);
        for pool in [
            MaxPool2x2 {
                stride: 2,
                dilation: 1,
                all_offsets: false,
            },
            MaxPool2x2 {
                stride: 1,
                dilation: 2,
                all_offsets: false,
            },
            MaxPool2x2 {
                stride: 2,
                dilation: 1,
                all_offsets: true,
            },
        ] {
            let (b, c, h, w) = x0.dims4().unwrap();
            let out_shape = [
                pool.offsets().len() * b,
                c,
                pool.out_len(h),
                pool.out_len(w),
            ];
            let weights = random(&out_shape, 3, DType::F64);
            let loss = |x: &Tensor| -> f64 {
                (pool.apply(x).unwrap() * &weights)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let var = Var::from_tensor(&x0).unwrap();
            let l = (pool.apply(var.as_tensor()).unwrap() * &weights)
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = l.backward().unwrap();
            let analytic = grads
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();

            let base = x0.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let eps = 1e-6;
            for k in 0..base.len() {
                let mut plus = base.clone();
                plus[k] += eps;
                let mut minus = base.clone();
                minus[k] -= eps;
                let tp = Tensor::from_vec(plus, x0.shape(), &Device::Cpu).unwrap();
                let tm = Tensor::from_vec(minus, x0.shape(), &Device::Cpu).unwrap();
                let numeric = (loss(&tp) - loss(&tm)) / (2.0 * eps);
                assert!(
                    (numeric - analytic[k]).abs() < 1e-6,
                    "{pool:?} element {k}: numeric {numeric} analytic {}",
                    analytic[k]
                );
            }
        }
    }

    #[test]
    fn reference_gradient_agrees_without_ties() {
        let x0 = random(&[1, 3, 8, 10], 4, DType::F64);
        let weights = random(&[1, 3, 4, 5], 5, DType::F64);
        let grad_of = |f: fn(&Tensor) -> candle_core::Result<Tensor>| {
            let var = Var::from_tensor(&x0).unwrap();
            let l = (f(var.as_tensor()).unwrap() * &weights)
                .unwrap()
                .sum_all()
                .unwrap();
            let g = l.backward().unwrap();
            g.get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
        };
        assert_eq!(grad_of(max_pool_2x2), grad_of(max_pool_2x2_reference));
    }

    /// On a constant input every window is a four-way tie: the gradient of each window must go
    /// to exactly one element (its first), so the input gradient sums to the output gradient.
    #[test]
    fn ties_give_the_gradient_to_one_element() {
        let x0 = Tensor::ones((1, 1, 4, 4), DType::F32, &Device::Cpu).unwrap();
        let var = Var::from_tensor(&x0).unwrap();
        let l = max_pool_2x2(var.as_tensor()).unwrap().sum_all().unwrap();
        let g = l.backward().unwrap();
        let g = g
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let expected: Vec<f32> = (0..16)
            .map(|k| {
                if (k / 4) % 2 == 0 && (k % 4) % 2 == 0 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        assert_eq!(g, expected);
    }

    #[test]
    fn nan_propagates_to_every_window_holding_it() {
        // 1×1×4×4 ramp with one NaN at (1, 2): each pooling form outputs NaN exactly in the
        // windows whose taps include (1, 2), and the window maximum elsewhere.
        let mut v: Vec<f32> = (0..16).map(|i| i as f32).collect();
        v[4 + 2] = f32::NAN;
        let x = Tensor::from_vec(v.clone(), (1, 1, 4, 4), &Device::Cpu).unwrap();
        for pool in [
            MaxPool2x2 {
                stride: 2,
                dilation: 1,
                all_offsets: false,
            },
            MaxPool2x2 {
                stride: 1,
                dilation: 1,
                all_offsets: false,
            },
            MaxPool2x2 {
                stride: 1,
                dilation: 2,
                all_offsets: false,
            },
            MaxPool2x2 {
                stride: 2,
                dilation: 1,
                all_offsets: true,
            },
        ] {
            let y = pool
                .apply(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let (ho, wo) = (pool.out_len(4), pool.out_len(4));
            let offsets: &[(usize, usize)] = if pool.all_offsets {
                &[(0, 0), (0, 1), (1, 0), (1, 1)]
            } else {
                &[(0, 0)]
            };
            for (o, &(oy, ox)) in offsets.iter().enumerate() {
                for i in 0..ho {
                    for j in 0..wo {
                        let (r, c) = (i * pool.stride + oy, j * pool.stride + ox);
                        let d = pool.dilation;
                        let taps = [(r, c), (r, c + d), (r + d, c), (r + d, c + d)];
                        let got = y[(o * ho + i) * wo + j];
                        if taps.contains(&(1, 2)) {
                            assert!(got.is_nan(), "{pool:?} ({o},{i},{j}) = {got}");
                        } else {
                            let want = taps
                                .iter()
                                .map(|&(a, b)| v[a * 4 + b])
                                .fold(f32::MIN, f32::max);
                            assert_eq!(got, want, "{pool:?} ({o},{i},{j})");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn too_small_input_is_an_error() {
        let x = random(&[1, 1, 1, 5], 6, DType::F32);
        assert!(max_pool_2x2(&x).is_err());
        let x = random(&[1, 1, 3, 3], 6, DType::F32);
        assert!(max_pool_2x2_dilated(&x, 3).is_err());
    }
}
