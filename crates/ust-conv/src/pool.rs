//! 2×2 max pooling: stride 2 (the patch networks' pooling) and stride 1 with dilated taps (the
//! same pooling evaluated at every offset, for the dilated dense formulation).
//!
//! Both are one op, "max over the taps `(0,0), (0,δ), (δ,0), (δ,δ)` of the window at
//! `(s·i, s·j)`", with `(s, δ) = (2, 1)` or `(1, d)`. The backward pass sends each output
//! gradient to the first maximal tap (row-major tap order, PyTorch's rule), so ties do not
//! duplicate gradient. candle's own `max_pool2d` backward is wrong (scaled by 1/4 at k = s = 2).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use crate::conv::f32_data;
use crate::kernels::zeroed;
use crate::{ConvBackend, backend};

/// 2×2 max pooling with stride 2; odd trailing rows/columns are dropped (floor), as in PyTorch.
/// The gradient goes to the (first) maximum of each window.
///
/// # Shapes
/// x (B, C, H, W) -> (B, C, H / 2, W / 2)
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    max_pool2x2_with(backend(), x)
}

/// [`max_pool2x2`] with an explicit backend.
pub fn max_pool2x2_with(backend: ConvBackend, x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h < 2 || w < 2 {
        bail!("max_pool2x2: input {h}x{w} is smaller than the 2x2 window");
    }
    if use_fast(backend, x) {
        x.contiguous()?.apply_op1(MaxPool2 { stride: 2, tap: 1 })
    } else {
        max_pool2x2_reference(x)
    }
}

/// 2×2 max pooling with stride 1 whose window taps are `dilation` apart:
/// `y[h, w] = max(x[h, w], x[h, w + d], x[h + d, w], x[h + d, w + d])`.
/// With `d` the product of the strides of the earlier pooling layers this is the stride-2 pooling
/// evaluated at every offset (the dense formulation with dilated kernels).
///
/// # Shapes
/// x (B, C, H, W) -> (B, C, H - d, W - d)
pub fn max_pool2x2_dilated(x: &Tensor, dilation: usize) -> Result<Tensor> {
    max_pool2x2_dilated_with(backend(), x, dilation)
}

/// [`max_pool2x2_dilated`] with an explicit backend.
pub fn max_pool2x2_dilated_with(
    backend: ConvBackend,
    x: &Tensor,
    dilation: usize,
) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if dilation == 0 || dilation >= h || dilation >= w {
        bail!("max_pool2x2_dilated: dilation {dilation} invalid for a {h}x{w} input");
    }
    if use_fast(backend, x) {
        x.contiguous()?.apply_op1(MaxPool2 {
            stride: 1,
            tap: dilation,
        })
    } else {
        max_pool2x2_dilated_reference(x, dilation)
    }
}

fn use_fast(backend: ConvBackend, x: &Tensor) -> bool {
    backend == ConvBackend::Fast && x.device().is_cpu() && x.dtype() == DType::F32
}

/// candle ops only: reshape into 2×2 windows and reduce with `max`. Correct values; at ties the
/// gradient goes to every maximal element.
pub(crate) fn max_pool2x2_reference(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (ho, wo) = (h / 2, w / 2);
    let x = if h != 2 * ho || w != 2 * wo {
        x.narrow(2, 0, 2 * ho)?.narrow(3, 0, 2 * wo)?
    } else {
        x.clone()
    };
    x.reshape((b, c, ho, 2, wo, 2))?.max(5)?.max(3)
}

/// candle ops only: the maximum of the four shifted views.
pub(crate) fn max_pool2x2_dilated_reference(x: &Tensor, dilation: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let d = dilation;
    let (ho, wo) = (h - d, w - d);
    let tap = |dy: usize, dx: usize| x.narrow(2, dy, ho)?.narrow(3, dx, wo);
    tap(0, 0)?
        .maximum(&tap(0, d)?)?
        .maximum(&tap(d, 0)?.maximum(&tap(d, d)?)?)
}

/// Pooling geometry: windows at `(stride·i, stride·j)`, taps `tap` apart.
#[derive(Debug, Clone, Copy)]
struct MaxPool2 {
    stride: usize,
    tap: usize,
}

impl MaxPool2 {
    fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        (
            (h - self.tap - 1) / self.stride + 1,
            (w - self.tap - 1) / self.stride + 1,
        )
    }
}

impl CustomOp1 for MaxPool2 {
    fn name(&self) -> &'static str {
        "ust-max-pool-2x2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let x = f32_data(s, l, "max-pool input")?;
        let (ho, wo) = self.out_size(h, w);
        let (s, t) = (self.stride, self.tap);
        let mut y = zeroed(b * c * ho * wo);
        y.par_chunks_mut(ho * wo)
            .zip(x.par_chunks(h * w))
            .for_each(|(yp, xp)| {
                for i in 0..ho {
                    let r0 = &xp[i * s * w..][..w];
                    let r1 = &xp[(i * s + t) * w..][..w];
                    let yr = &mut yp[i * wo..][..wo];
                    if s == 2 {
                        for (j, o) in yr.iter_mut().enumerate() {
                            *o = r0[2 * j]
                                .max(r0[2 * j + 1])
                                .max(r1[2 * j].max(r1[2 * j + 1]));
                        }
                    } else {
                        // Stride 1: four contiguous shifted rows, vectorizes.
                        let (a0, a1) = (&r0[..wo], &r0[t..][..wo]);
                        let (b0, b1) = (&r1[..wo], &r1[t..][..wo]);
                        for j in 0..wo {
                            yr[j] = a0[j].max(a1[j]).max(b0[j].max(b1[j]));
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(y), Shape::from((b, c, ho, wo))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(
            &grad.contiguous()?,
            &MaxPool2Grad { pool: *self },
        )?))
    }
}

/// (input, grad_output) -> grad_input.
struct MaxPool2Grad {
    pool: MaxPool2,
}

impl CustomOp2 for MaxPool2Grad {
    fn name(&self) -> &'static str {
        "ust-max-pool-2x2-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l1.shape().dims4()?;
        let x = f32_data(s1, l1, "max-pool input")?;
        let gy = f32_data(s2, l2, "max-pool output gradient")?;
        let (ho, wo) = self.pool.out_size(h, w);
        if gy.len() != b * c * ho * wo {
            bail!("max-pool backward: gradient has {} elements", gy.len());
        }
        let (s, t) = (self.pool.stride, self.pool.tap);
        let mut dx = zeroed(x.len());
        dx.par_chunks_mut(h * w)
            .zip(x.par_chunks(h * w))
            .zip(gy.par_chunks(ho * wo))
            .for_each(|((dp, xp), gp)| {
                for i in 0..ho {
                    for j in 0..wo {
                        let base = i * s * w + j * s;
                        let taps = [base, base + t, base + t * w, base + t * w + t];
                        let mut best = taps[0];
                        for &k in &taps[1..] {
                            if xp[k] > xp[best] {
                                best = k;
                            }
                        }
                        dp[best] += gp[i * wo + j];
                    }
                }
            });
        Ok((CpuStorage::F32(dx), Shape::from((b, c, h, w))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;
    use crate::testutil::{Rng, assert_close};

    /// Central finite differences of `sum(f(x) · r)` with respect to every element of `x`.
    fn finite_difference_grad(
        x: &[f32],
        dims: &[usize],
        r: &Tensor,
        f: &dyn Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<Vec<f32>> {
        let loss = |v: &[f32]| -> Result<f64> {
            let t = Tensor::from_slice(v, dims, &Device::Cpu)?;
            let y: Vec<f32> = f(&t)?.flatten_all()?.to_vec1()?;
            let r: Vec<f32> = r.flatten_all()?.to_vec1()?;
            Ok(y.iter().zip(&r).map(|(a, b)| *a as f64 * *b as f64).sum())
        };
        let h = 1e-3f32;
        let mut v = x.to_vec();
        let mut out = Vec::with_capacity(x.len());
        for i in 0..x.len() {
            v[i] = x[i] + h;
            let up = loss(&v)?;
            v[i] = x[i] - h;
            let down = loss(&v)?;
            v[i] = x[i];
            out.push(((up - down) / (2.0 * h as f64)) as f32);
        }
        Ok(out)
    }

    fn check_pool(
        dims: [usize; 4],
        f: &dyn Fn(ConvBackend, &Tensor) -> Result<Tensor>,
    ) -> Result<()> {
        let mut rng = Rng::new(dims.iter().product::<usize>() as u64);
        // Values at least 2/n apart, so that the ±1e-3 steps of the finite differences never
        // change which element of a window is the maximum.
        let x0 = rng.distinct_tensor(&dims)?;
        let x = Var::from_tensor(&x0)?;
        let fast = f(ConvBackend::Fast, &x)?;
        let reference = f(ConvBackend::Reference, &x)?;
        assert_close(&fast, &reference, 0.0, &format!("{dims:?} values"));
        let r = rng.tensor(fast.dims())?;
        let grads = (&fast * &r)?.sum_all()?.backward()?;
        let grad = grads.get(&x).expect("gradient");
        let xv: Vec<f32> = x0.flatten_all()?.to_vec1()?;
        let fd = finite_difference_grad(&xv, &dims, &r, &|t| f(ConvBackend::Fast, t))?;
        let fd = Tensor::from_vec(fd, &dims, &Device::Cpu)?;
        assert_close(
            grad,
            &fd,
            1e-3,
            &format!("{dims:?} gradient vs finite differences"),
        );
        // Random data has no ties, so candle's reshape+max gradient agrees too.
        let rgrads = (&reference * &r)?.sum_all()?.backward()?;
        assert_close(
            grad,
            rgrads.get(&x).unwrap(),
            1e-6,
            &format!("{dims:?} gradient vs reference"),
        );
        Ok(())
    }

    #[test]
    fn stride2_pool_matches_reference_and_finite_differences() -> Result<()> {
        for dims in [[2, 3, 6, 8], [1, 2, 7, 5], [3, 1, 2, 2], [1, 4, 9, 9]] {
            check_pool(dims, &|b, x| max_pool2x2_with(b, x))?;
        }
        Ok(())
    }

    #[test]
    fn dilated_pool_matches_reference_and_finite_differences() -> Result<()> {
        for (dims, d) in [([2, 3, 6, 8], 1), ([1, 2, 9, 7], 2), ([1, 3, 11, 12], 4)] {
            check_pool(dims, &|b, x| max_pool2x2_dilated_with(b, x, d))?;
        }
        Ok(())
    }

    #[test]
    fn dilated_pool_equals_stride2_pool_at_every_offset() -> Result<()> {
        // Bailer et al.: stride-1 pooling with dilation 1, sampled every second pixel from
        // offset (oy, ox), equals stride-2 pooling of the image shifted by (oy, ox).
        let x = Rng::new(11).tensor(&[1, 2, 10, 12])?;
        let dense = max_pool2x2_dilated_with(ConvBackend::Fast, &x, 1)?;
        let dense: Vec<f32> = dense.flatten_all()?.to_vec1()?;
        for (oy, ox) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let shifted = x.narrow(2, oy, 10 - oy)?.narrow(3, ox, 12 - ox)?;
            let pooled = max_pool2x2_with(ConvBackend::Fast, &shifted)?;
            let (_, _, ph, pw) = pooled.dims4()?;
            let pooled: Vec<f32> = pooled.flatten_all()?.to_vec1()?;
            for c in 0..2 {
                for i in 0..ph {
                    for j in 0..pw {
                        let d = dense[(c * 9 + oy + 2 * i) * 11 + ox + 2 * j];
                        assert_eq!(pooled[(c * ph + i) * pw + j], d);
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn ties_send_the_gradient_to_the_first_maximum_only() -> Result<()> {
        let x = Var::from_tensor(&Tensor::ones((1, 1, 4, 4), DType::F32, &Device::Cpu)?)?;
        let y = max_pool2x2_with(ConvBackend::Fast, &x)?;
        let g: Vec<f32> = y
            .sum_all()?
            .backward()?
            .get(&x)
            .unwrap()
            .flatten_all()?
            .to_vec1()?;
        #[rustfmt::skip]
        let expected = [1., 0., 1., 0.,
                        0., 0., 0., 0.,
                        1., 0., 1., 0.,
                        0., 0., 0., 0.];
        assert_eq!(g, expected);
        Ok(())
    }

    #[test]
    fn too_small_inputs_are_errors() -> Result<()> {
        let x = Tensor::zeros((1, 1, 1, 4), DType::F32, &Device::Cpu)?;
        assert!(max_pool2x2_with(ConvBackend::Fast, &x).is_err());
        let x = Tensor::zeros((1, 1, 3, 3), DType::F32, &Device::Cpu)?;
        assert!(max_pool2x2_dilated_with(ConvBackend::Fast, &x, 3).is_err());
        Ok(())
    }
}
