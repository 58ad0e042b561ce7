//! Leaky ReLU, the patch networks' activation, as one pass forward and one pass backward
//! (candle's `maximum`/`minimum` formulation costs five tensor passes forward and more
//! backward).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use crate::conv::f32_data;
use crate::kernels::zeroed;
use crate::{ConvBackend, backend};

/// Elements per rayon task of the elementwise loops.
const CHUNK: usize = 1 << 14;

/// Leaky ReLU: `x` where `x > 0`, `slope · x` elsewhere; the gradient is 1 where `x > 0`, else
/// `slope`.
///
/// # Shapes
/// any -> same
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    leaky_relu_with(backend(), x, slope)
}

/// [`leaky_relu`] with an explicit backend.
pub fn leaky_relu_with(backend: ConvBackend, x: &Tensor, slope: f64) -> Result<Tensor> {
    if backend != ConvBackend::Reference && x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(LeakyRelu {
            slope: slope as f32,
        })
    } else {
        leaky_relu_reference(x, slope)
    }
}

/// candle ops only: `max(x, 0) + slope · min(x, 0)`.
pub(crate) fn leaky_relu_reference(x: &Tensor, slope: f64) -> Result<Tensor> {
    let zeros = x.zeros_like()?;
    x.maximum(&zeros)? + (x.minimum(&zeros)? * slope)?
}

struct LeakyRelu {
    slope: f32,
}

impl CustomOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        "ust-leaky-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s, l, "leaky-relu input")?;
        let slope = self.slope;
        let mut y = zeroed(x.len());
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(y, x)| {
                for (o, &v) in y.iter_mut().zip(x) {
                    *o = if v > 0.0 { v } else { slope * v };
                }
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(
            &grad.contiguous()?,
            &LeakyReluGrad { slope: self.slope },
        )?))
    }
}

/// (input, grad_output) -> grad_input.
struct LeakyReluGrad {
    slope: f32,
}

impl CustomOp2 for LeakyReluGrad {
    fn name(&self) -> &'static str {
        "ust-leaky-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, "leaky-relu input")?;
        let gy = f32_data(s2, l2, "leaky-relu output gradient")?;
        if x.len() != gy.len() {
            bail!(
                "leaky-relu backward: {} inputs, {} gradients",
                x.len(),
                gy.len()
            );
        }
        let slope = self.slope;
        let mut dx = zeroed(x.len());
        dx.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK).zip(gy.par_chunks(CHUNK)))
            .for_each(|(d, (x, g))| {
                for ((o, &v), &gv) in d.iter_mut().zip(x).zip(g) {
                    *o = if v > 0.0 { gv } else { slope * gv };
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;
    use crate::testutil::{Rng, assert_close};

    #[test]
    fn values_and_gradient_match_the_closed_form() -> Result<()> {
        let slope = 5e-3;
        let x0 = Rng::new(1).tensor(&[2, 3, 5, 7])?;
        let x = Var::from_tensor(&x0)?;
        let y = leaky_relu_with(ConvBackend::Fast, &x, slope)?;
        let xv: Vec<f32> = x0.flatten_all()?.to_vec1()?;
        let expected: Vec<f32> = xv
            .iter()
            .map(|&v| if v > 0.0 { v } else { 5e-3 * v })
            .collect();
        let expected = Tensor::from_vec(expected, x0.dims(), &Device::Cpu)?;
        assert_close(&y, &expected, 0.0, "leaky relu values");
        let r = Rng::new(2).tensor(x0.dims())?;
        let g = (&y * &r)?.sum_all()?.backward()?;
        let rv: Vec<f32> = r.flatten_all()?.to_vec1()?;
        let eg: Vec<f32> = xv
            .iter()
            .zip(&rv)
            .map(|(&v, &r)| if v > 0.0 { r } else { 5e-3 * r })
            .collect();
        let eg = Tensor::from_vec(eg, x0.dims(), &Device::Cpu)?;
        assert_close(g.get(&x).unwrap(), &eg, 0.0, "leaky relu gradient");
        let reference = leaky_relu_with(ConvBackend::Reference, &x, slope)?;
        assert_close(&reference, &y, 1e-7, "reference path");
        Ok(())
    }
}
