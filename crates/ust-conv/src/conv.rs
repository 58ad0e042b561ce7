//! Valid, stride-1, optionally dilated 2-D convolution as candle custom ops.
//!
//! The forward op records itself in candle's graph; its backward returns the input, weight and
//! bias gradients, each computed by a further (non-differentiable) custom op and only for the
//! arguments whose gradient backprop will actually use (see [`needs_grad`]).

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, bail,
};

use crate::kernels::{self, Geom};
use crate::winograd;
use crate::{ConvBackend, backend};

/// Valid (no padding) 2-D convolution, stride 1, groups 1, with the given dilation, through the
/// process-wide [`backend`].
///
/// # Shapes
/// input (B, Cin, H, W), weight (Cout, Cin, KH, KW), bias (Cout) optional
/// -> (B, Cout, H - d*(KH-1), W - d*(KW-1))
pub fn conv2d(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    dilation: usize,
) -> Result<Tensor> {
    conv2d_with(backend(), input, weight, bias, dilation)
}

/// [`conv2d`] with an explicit backend. f32 tensors on the CPU take the fast path under
/// [`ConvBackend::Fast`]; everything else takes candle's own conv2d.
pub fn conv2d_with(
    backend: ConvBackend,
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    dilation: usize,
) -> Result<Tensor> {
    let g = geometry(input, weight, bias, dilation)?;
    let fast = backend != ConvBackend::Reference
        && input.device().is_cpu()
        && input.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && bias.is_none_or(|b| b.dtype() == DType::F32);
    if !fast {
        return conv2d_reference(input, weight, bias, dilation);
    }
    // Winograd only where the op's backward can never run: it has no gradient kernels of its
    // own, and training keeps the direct forward that its gradients were tested against.
    let winograd = backend == ConvBackend::Fast
        && winograd::applies(&g)
        && !needs_grad(weight)
        && bias.is_none_or(|b| !needs_grad(b))
        && !needs_grad(input);
    let op = Conv2d { g, winograd };
    let input = input.contiguous()?;
    let weight = weight.contiguous()?;
    match bias {
        None => input.apply_op2(&weight, op),
        Some(b) => input.apply_op3(&weight, &b.contiguous()?, op),
    }
}

/// Checks the shapes and returns the convolution's geometry.
fn geometry(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    dilation: usize,
) -> Result<Geom> {
    let (b, cin, h, w) = input.dims4()?;
    let (cout, wcin, kh, kw) = weight.dims4()?;
    if wcin != cin {
        bail!(
            "conv2d: input has {cin} channels but the weight {:?} expects {wcin}",
            weight.dims()
        );
    }
    if dilation == 0 || kh == 0 || kw == 0 {
        bail!("conv2d: kernel {kh}x{kw} with dilation {dilation} is invalid");
    }
    if h < dilation * (kh - 1) + 1 || w < dilation * (kw - 1) + 1 {
        bail!("conv2d: input {h}x{w} smaller than the {kh}x{kw} kernel at dilation {dilation}");
    }
    if let Some(bad) = bias.filter(|b| b.dims() != [cout]) {
        bail!("conv2d: bias shape {:?}, expected [{cout}]", bad.dims());
    }
    if input.dtype() != weight.dtype() || bias.is_some_and(|b| b.dtype() != input.dtype()) {
        bail!("conv2d: input, weight and bias must have the same dtype");
    }
    Ok(Geom {
        b,
        cin,
        h,
        w,
        cout,
        kh,
        kw,
        d: dilation,
    })
}

/// candle's own conv2d (the reference path).
pub(crate) fn conv2d_reference(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    dilation: usize,
) -> Result<Tensor> {
    let y = input.conv2d(weight, 0, 1, dilation, 1)?;
    match bias {
        None => Ok(y),
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
    }
}

/// Whether backprop will use a gradient for `t`: it is a variable or depends on one.
/// candle calls a custom op's `bwd` whenever any argument tracks gradients and accumulates
/// every gradient returned, used or not, so the op itself must skip the ones nobody needs
/// (the image fed to the first layer, frozen weights).
pub(crate) fn needs_grad(t: &Tensor) -> bool {
    t.is_variable() || (t.track_op() && !t.sorted_nodes().is_empty())
}

/// The contiguous f32 data of a custom op argument.
pub(crate) fn f32_data<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        bail!("ust-conv: {what} must be f32");
    };
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("ust-conv: {what} must be contiguous"),
    }
}

/// The forward convolution op (with or without bias).
struct Conv2d {
    g: Geom,
    /// Forward through `winograd::forward` (set only when no gradient can be asked).
    winograd: bool,
}

impl Conv2d {
    fn run(&self, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> (CpuStorage, Shape) {
        let g = &self.g;
        let mut y = kernels::zeroed(g.output_len());
        if self.winograd {
            winograd::forward(g, x, w, bias, &mut y);
        } else {
            kernels::forward(g, x, w, bias, &mut y);
        }
        (
            CpuStorage::F32(y),
            Shape::from((g.b, g.cout, g.ho(), g.wo())),
        )
    }

    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let gx = if needs_grad(x) {
            Some(grad.apply_op2_no_bwd(w, &Conv2dInputGrad { g: self.g })?)
        } else {
            None
        };
        let gw = if needs_grad(w) {
            Some(x.apply_op2_no_bwd(&grad, &Conv2dWeightGrad { g: self.g })?)
        } else {
            None
        };
        Ok((gx, gw))
    }
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "ust-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, "conv2d input")?;
        let w = f32_data(s2, l2, "conv2d weight")?;
        Ok(self.run(x, w, None))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.grads(x, w, grad)
    }
}

impl CustomOp3 for Conv2d {
    fn name(&self) -> &'static str {
        "ust-conv2d-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, "conv2d input")?;
        let w = f32_data(s2, l2, "conv2d weight")?;
        let b = f32_data(s3, l3, "conv2d bias")?;
        Ok(self.run(x, w, Some(b)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (gx, gw) = self.grads(x, w, &grad)?;
        let gb = if needs_grad(b) {
            Some(grad.apply_op1_no_bwd(&Conv2dBiasGrad { g: self.g })?)
        } else {
            None
        };
        Ok((gx, gw, gb))
    }
}

/// Input gradient: (grad_output, weight) -> grad_input.
struct Conv2dInputGrad {
    g: Geom,
}

impl CustomOp2 for Conv2dInputGrad {
    fn name(&self) -> &'static str {
        "ust-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.g;
        let gy = f32_data(s1, l1, "conv2d output gradient")?;
        let w = f32_data(s2, l2, "conv2d weight")?;
        let dx = kernels::input_grad(g, gy, w);
        Ok((CpuStorage::F32(dx), Shape::from((g.b, g.cin, g.h, g.w))))
    }
}

/// Weight gradient: (input, grad_output) -> grad_weight.
struct Conv2dWeightGrad {
    g: Geom,
}

impl CustomOp2 for Conv2dWeightGrad {
    fn name(&self) -> &'static str {
        "ust-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.g;
        let x = f32_data(s1, l1, "conv2d input")?;
        let gy = f32_data(s2, l2, "conv2d output gradient")?;
        let dw = kernels::weight_grad(g, x, gy);
        Ok((
            CpuStorage::F32(dw),
            Shape::from((g.cout, g.cin, g.kh, g.kw)),
        ))
    }
}

/// Bias gradient: grad_output -> grad_bias.
struct Conv2dBiasGrad {
    g: Geom,
}

impl CustomOp1 for Conv2dBiasGrad {
    fn name(&self) -> &'static str {
        "ust-conv2d-bias-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.g;
        let gy = f32_data(s, l, "conv2d output gradient")?;
        let db = kernels::bias_grad(g.b, g.cout, g.ho() * g.wo(), gy);
        Ok((CpuStorage::F32(db), Shape::from(g.cout)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;
    use crate::kernels::{InputGradPath, Scheme};
    use crate::testutil::{Rng, assert_close};

    /// (batch, cin, h, w, cout, kh, kw, dilation, bias)
    type Case = (usize, usize, usize, usize, usize, usize, usize, usize, bool);

    const CASES: &[Case] = &[
        // im2col: RGB input, odd sizes.
        (2, 3, 13, 11, 5, 3, 3, 1, true),
        // Shifted views, input gradient through the padded formulation.
        (1, 20, 37, 41, 7, 5, 5, 1, false),
        (2, 16, 40, 70, 4, 3, 3, 2, true),
        // Dilated, KH != KW.
        (2, 5, 10, 12, 3, 2, 3, 3, false),
        (3, 17, 23, 19, 6, 5, 4, 2, true),
        // Output 1x1 (the descriptor layers), batch of patches.
        (5, 24, 4, 4, 10, 4, 4, 1, true),
        // 1x1 kernel.
        (2, 16, 7, 9, 8, 1, 1, 1, true),
        // p = 17 first layer.
        (1, 3, 17, 17, 8, 6, 6, 1, true),
        // Shifted views forward and backward (single image, tiles in two parity phases).
        (1, 24, 30, 64, 18, 3, 3, 1, false),
        // Narrow input, wide output: the padded input gradient runs shifted views inside.
        (1, 8, 30, 64, 20, 3, 3, 1, false),
        // Shifted views with the input gradient scattered in two parity phases (d = 2).
        (2, 16, 41, 70, 16, 5, 5, 2, true),
        // Dilated 5x5 on a wide map (shifted views with d = 4).
        (1, 32, 45, 300, 9, 5, 5, 4, true),
    ];

    fn geom(c: &Case) -> Geom {
        Geom {
            b: c.0,
            cin: c.1,
            h: c.2,
            w: c.3,
            cout: c.4,
            kh: c.5,
            kw: c.6,
            d: c.7,
        }
    }

    #[test]
    fn cases_cover_both_schemes_and_input_gradient_paths() {
        let schemes: Vec<Scheme> = CASES.iter().map(|c| geom(c).scheme()).collect();
        assert!(schemes.contains(&Scheme::ShiftedViews));
        assert!(schemes.contains(&Scheme::Im2col));
        let paths: Vec<InputGradPath> = CASES.iter().map(|c| geom(c).input_grad_path()).collect();
        for p in [
            InputGradPath::Shifted,
            InputGradPath::Padded,
            InputGradPath::Scatter,
        ] {
            assert!(paths.contains(&p), "no case takes {p:?}");
        }
        // The padded formulation with shifted views inside (wide output gradient).
        let padded_shifted = CASES.iter().any(|c| {
            let g = geom(c);
            g.input_grad_path() == InputGradPath::Padded
                && Geom {
                    cin: g.cout,
                    cout: g.cin,
                    h: g.h + g.d * (g.kh - 1),
                    w: g.w + g.d * (g.kw - 1),
                    ..g
                }
                .scheme()
                    == Scheme::ShiftedViews
        });
        assert!(padded_shifted);
    }

    #[test]
    fn fast_forward_and_gradients_match_candle_reference() -> Result<()> {
        for (i, case) in CASES.iter().enumerate() {
            let &(b, cin, h, w, cout, kh, kw, d, with_bias) = case;
            let mut rng = Rng::new(i as u64 + 1);
            let x = Var::from_tensor(&rng.tensor(&[b, cin, h, w])?)?;
            let wt = Var::from_tensor(&rng.tensor(&[cout, cin, kh, kw])?)?;
            let bias = Var::from_tensor(&rng.tensor(&[cout])?)?;
            let bias_ref = with_bias.then_some(bias.as_tensor());
            let fast = conv2d_with(ConvBackend::Fast, &x, &wt, bias_ref, d)?;
            let reference = conv2d_with(ConvBackend::Reference, &x, &wt, bias_ref, d)?;
            let what = format!("case {case:?}");
            assert_close(&fast, &reference, 1e-5, &format!("{what} forward"));

            // A loss with a random weight per output makes every gradient entry distinct.
            let r = rng.tensor(fast.dims())?;
            let gf = (&fast * &r)?.sum_all()?.backward()?;
            let gr = (&reference * &r)?.sum_all()?.backward()?;
            for (name, v) in [("input", &x), ("weight", &wt)] {
                let a = gf.get(v).expect("fast gradient");
                let e = gr.get(v).expect("reference gradient");
                assert_close(a, e, 1e-4, &format!("{what} {name} gradient"));
            }
            if with_bias {
                let a = gf.get(&bias).expect("fast bias gradient");
                let e = gr.get(&bias).expect("reference bias gradient");
                assert_close(a, e, 1e-4, &format!("{what} bias gradient"));
            }
        }
        Ok(())
    }

    #[test]
    fn hand_checked_dilated_convolution() -> Result<()> {
        // x[i, j] = 10 i + j on a 5x5 map; a 2x2 kernel [[1, 2], [3, 4]] at dilation 2 gives
        // y[i, j] = x[i,j] + 2 x[i,j+2] + 3 x[i+2,j] + 4 x[i+2,j+2] = 10 (10 i + j) + 152.
        let x: Vec<f32> = (0..25).map(|k| (10 * (k / 5) + k % 5) as f32).collect();
        let x = Tensor::from_vec(x, (1, 1, 5, 5), &Device::Cpu)?;
        let w = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], (1, 1, 2, 2), &Device::Cpu)?;
        let b = Tensor::from_vec(vec![0.5f32], 1, &Device::Cpu)?;
        let y = conv2d_with(ConvBackend::Fast, &x, &w, Some(&b), 2)?;
        assert_eq!(y.dims(), &[1, 1, 3, 3]);
        let y: Vec<f32> = y.flatten_all()?.to_vec1()?;
        for i in 0..3 {
            for j in 0..3 {
                assert_eq!(y[i * 3 + j], (10 * (10 * i + j) + 152) as f32 + 0.5);
            }
        }
        Ok(())
    }

    #[test]
    fn gradients_are_skipped_for_inputs_that_need_none() -> Result<()> {
        let mut rng = Rng::new(7);
        // An image (no variable behind it, even through an op) into a trainable layer.
        let image = rng.tensor(&[1, 3, 9, 9])?.affine(2.0, 0.0)?;
        let w = Var::from_tensor(&rng.tensor(&[4, 3, 3, 3])?)?;
        let y = conv2d_with(ConvBackend::Fast, &image, &w, None, 1)?;
        let grads = y.sum_all()?.backward()?;
        assert!(grads.get(&image).is_none(), "no input gradient expected");
        assert!(grads.get(&w).is_some());

        // Frozen weights, trainable input.
        let x = Var::from_tensor(&rng.tensor(&[1, 3, 9, 9])?)?;
        let frozen = rng.tensor(&[4, 3, 3, 3])?;
        let bias = rng.tensor(&[4])?;
        let y = conv2d_with(ConvBackend::Fast, &x, &frozen, Some(&bias), 1)?;
        let grads = y.sum_all()?.backward()?;
        assert!(grads.get(&frozen).is_none() && grads.get(&bias).is_none());
        assert!(grads.get(&x).is_some());

        // Nothing to train: no graph is recorded at all.
        let y = conv2d_with(ConvBackend::Fast, &image, &frozen, None, 1)?;
        assert!(!y.track_op());
        Ok(())
    }

    #[test]
    fn non_contiguous_input_is_accepted() -> Result<()> {
        let mut rng = Rng::new(3);
        let x = rng.tensor(&[1, 2, 11, 8])?.transpose(2, 3)?;
        let w = rng.tensor(&[3, 2, 3, 2])?;
        let fast = conv2d_with(ConvBackend::Fast, &x, &w, None, 1)?;
        let reference = conv2d_with(ConvBackend::Reference, &x, &w, None, 1)?;
        assert_close(&fast, &reference, 1e-5, "transposed input");
        Ok(())
    }

    #[test]
    fn bad_shapes_are_errors() -> Result<()> {
        let mut rng = Rng::new(5);
        let x = rng.tensor(&[1, 3, 8, 8])?;
        let w = rng.tensor(&[4, 2, 3, 3])?;
        assert!(conv2d_with(ConvBackend::Fast, &x, &w, None, 1).is_err());
        let w = rng.tensor(&[4, 3, 3, 3])?;
        assert!(conv2d_with(ConvBackend::Fast, &x, &w, None, 4).is_err());
        assert!(conv2d_with(ConvBackend::Fast, &x, &w, None, 0).is_err());
        let b = rng.tensor(&[5])?;
        assert!(conv2d_with(ConvBackend::Fast, &x, &w, Some(&b), 1).is_err());
        Ok(())
    }

    #[test]
    fn other_dtypes_take_the_reference_path() -> Result<()> {
        let mut rng = Rng::new(9);
        let x = rng.tensor(&[1, 2, 6, 6])?;
        let w = rng.tensor(&[3, 2, 3, 3])?;
        let y64 = conv2d_with(
            ConvBackend::Fast,
            &x.to_dtype(DType::F64)?,
            &w.to_dtype(DType::F64)?,
            None,
            1,
        )?;
        assert_eq!(y64.dtype(), DType::F64);
        let y32 = conv2d_with(ConvBackend::Fast, &x, &w, None, 1)?;
        assert_close(&y64.to_dtype(DType::F32)?, &y32, 1e-5, "f64 vs f32");
        Ok(())
    }
}
