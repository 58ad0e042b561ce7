//! EfficientNet-Lite0 (ImageNet-pretrained), the frozen backbone whose pooled 1280-d features the
//! teacher distils when no ResNet-18 weights are at hand (METHOD.md §10).
//!
//! The architecture follows `../shared/weights/README.md`: stem 3×3/2 → 32, sixteen MBConv blocks
//! in seven stages (no squeeze-excitation), head 1×1 → 1280, global average pooling, linear
//! 1280 → 1000; ReLU6 everywhere; BatchNorm (eps 1e-3) folded into the convolutions at load;
//! TensorFlow "SAME" padding computed from the actual input size (asymmetric at stride 2).
//!
//! Inference only (no backward pass: the backbone is frozen). Internally the blocks run in
//! channels-last layout, so 1×1 convolutions are single matrix products and the depthwise
//! convolutions vectorise over channels.
//!
//! # Input range
//! [`EfficientNetLite0::forward_scaled`] takes images already scaled as (x − 127)/128 for
//! x in 0…255 (what the reference tensors hold); [`EfficientNetLite0::scale_unit_input`] maps
//! images in [0, 1] to that range; the [`Backbone`] implementation
//! takes [0, 1] patches.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{CpuStorage, CustomOp3, D, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::backbone::Backbone;
use crate::error::{ModelError, Result};

/// BatchNorm epsilon of the TensorFlow original.
const BN_EPS: f64 = 1e-3;

/// Number of output features of the head (the pooled feature dimension).
pub const EFFICIENTNET_LITE0_FEATURES: usize = 1280;

/// (repeats, kernel, stride of first block, expansion, out channels) of the seven stages.
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];

/// TensorFlow "SAME" padding along one axis: (pad before, pad after, output length).
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let out = input.div_ceil(stride);
    let total = ((out.saturating_sub(1)) * stride + kernel).saturating_sub(input);
    (total / 2, total - total / 2, out)
}

/// Centre of the head's cell 0 on an input of `side` pixels, in continuous input coordinates
/// (pixel i spans [i, i + 1)); cell j lies 32·j further. "SAME" padding puts the extra pixel
/// of an even-sized stride-2 layer at the end and splits an odd one evenly, so the centre
/// depends on the sizes met on the way: 31.5 at 224, 7.5 at 744.
pub fn head_cell_origin(side: usize) -> f64 {
    // The layers that move centres: the stem and every depthwise convolution (the pointwise
    // ones are 1×1); stride-1 layers with odd kernels pad symmetrically and keep them.
    let mut layers = vec![(3usize, 2usize)];
    for &(repeats, kernel, first_stride, _, _) in &STAGES {
        for r in 0..repeats {
            layers.push((kernel, if r == 0 { first_stride } else { 1 }));
        }
    }
    let mut size = side;
    let mut padded = Vec::with_capacity(layers.len());
    for &(kernel, stride) in &layers {
        let (top, _, out) = same_padding(size, kernel, stride);
        padded.push((kernel, stride, top));
        size = out;
    }
    let centre = padded.iter().rev().fold(0.0f64, |c, &(k, s, top)| {
        s as f64 * c + (k as f64 - 1.0) / 2.0 - top as f64
    });
    centre + 0.5
}

/// Configuration of [`EfficientNetLite0`] as a [`Backbone`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EfficientNetLite0Config {
    /// Resize patches (bilinear) to this side before the network; `None` runs them at their
    /// own size. The network was trained at 224.
    pub resize_to: Option<usize>,
}

impl EfficientNetLite0Config {
    /// Validates the configuration.
    pub fn check(&self) -> Result<()> {
        if self.resize_to == Some(0) {
            return Err(ModelError::InvalidConfig(
                "resize_to must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// A convolution with its BatchNorm folded in: weight and bias.
#[derive(Debug, Clone)]
struct FoldedConv {
    /// Stem: (O, I, k, k); pointwise: (I, O) (transposed for x·W); depthwise: (k, k, C).
    weight: Tensor,
    bias: Tensor,
}

#[derive(Debug, Clone)]
struct MbConv {
    expand: Option<FoldedConv>,
    depthwise: FoldedConv,
    kernel: usize,
    stride: usize,
    project: FoldedConv,
    skip: bool,
}

/// Everything the network computes for one batch, for inspection and tests.
#[derive(Debug, Clone)]
pub struct EfficientNetOutputs {
    /// After stem convolution, BatchNorm and ReLU6: (N, 32, H/2, W/2).
    pub stem: Tensor,
    /// After the head convolution, BatchNorm and ReLU6: (N, 1280, h, w).
    pub head: Tensor,
    /// Global average of the head: (N, 1280).
    pub pooled: Tensor,
    /// ImageNet class scores: (N, 1000).
    pub logits: Tensor,
}

/// EfficientNet-Lite0 with pretrained weights.
#[derive(Debug, Clone)]
pub struct EfficientNetLite0 {
    config: EfficientNetLite0Config,
    stem: FoldedConv,
    blocks: Vec<MbConv>,
    head: FoldedConv,
    fc_weight_t: Tensor,
    fc_bias: Tensor,
}

/// Reads the tensors of a weight file and hands them out by name with clear errors.
struct WeightFile {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl WeightFile {
    fn open(path: &Path, device: &Device) -> Result<Self> {
        if !path.exists() {
            return Err(ModelError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        let tensors = candle_core::safetensors::load(path, device)
            .map_err(|e| ModelError::bad_weights(path, format!("cannot read safetensors: {e}")))?;
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
        })
    }

    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| ModelError::bad_weights(&self.path, format!("missing tensor {name}")))?;
        if t.dims() != shape {
            return Err(ModelError::bad_weights(
                &self.path,
                format!("tensor {name} has shape {:?}, expected {shape:?}", t.dims()),
            ));
        }
        Ok(t.to_dtype(DType::F32)?)
    }

    /// A bias-free convolution `conv` followed by BatchNorm `bn`, folded.
    fn folded(&self, conv: &str, bn: &str, shape: &[usize]) -> Result<FoldedConv> {
        let out = shape[0];
        let w = self.get(&format!("{conv}.weight"), shape)?;
        let gamma = self.get(&format!("{bn}.weight"), &[out])?;
        let beta = self.get(&format!("{bn}.bias"), &[out])?;
        let mean = self.get(&format!("{bn}.running_mean"), &[out])?;
        let var = self.get(&format!("{bn}.running_var"), &[out])?;
        let scale = (gamma / (var + BN_EPS)?.sqrt()?)?;
        let bias = (beta - (mean * &scale)?)?;
        let weight = w.broadcast_mul(&scale.reshape((out, 1, 1, 1))?)?;
        Ok(FoldedConv { weight, bias })
    }
}

impl FoldedConv {
    /// (O, I, 1, 1) -> (I, O) for channels-last products.
    fn into_pointwise(self) -> Result<Self> {
        let (o, i, _, _) = self.weight.dims4()?;
        Ok(Self {
            weight: self.weight.reshape((o, i))?.t()?.contiguous()?,
            bias: self.bias,
        })
    }

    /// (C, 1, k, k) -> (k, k, C) for the channels-last depthwise kernel.
    fn into_depthwise(self) -> Result<Self> {
        let (c, _, k, _) = self.weight.dims4()?;
        Ok(Self {
            weight: self
                .weight
                .reshape((c, k, k))?
                .permute((1, 2, 0))?
                .contiguous()?,
            bias: self.bias,
        })
    }

    /// Channels-last 1×1 convolution + bias, optional ReLU6: (N, H, W, I) -> (N, H, W, O).
    fn pointwise(&self, x: &Tensor, relu6: bool) -> Result<Tensor> {
        let (n, h, w, i) = x.dims4()?;
        let o = self.weight.dims()[1];
        let y = x.reshape((n * h * w, i))?.contiguous()?.apply_op3_no_bwd(
            &self.weight,
            &self.bias,
            &PointwiseFused { relu6 },
        )?;
        Ok(y.reshape((n, h, w, o))?)
    }
}

impl EfficientNetLite0 {
    /// Loads the pretrained network (`efficientnet_lite0.safetensors`, tensor names as in
    /// the PyTorch port: `_conv_stem`, `_bn0`, `_blocks.N.…`, `_conv_head`, `_bn1`, `_fc`).
    pub fn load(
        path: impl AsRef<Path>,
        config: EfficientNetLite0Config,
        device: &Device,
    ) -> Result<Self> {
        config.check()?;
        let file = WeightFile::open(path.as_ref(), device)?;
        let stem = file.folded("_conv_stem", "_bn0", &[32, 3, 3, 3])?;
        let mut blocks = Vec::new();
        let mut in_c = 32;
        for &(repeats, kernel, first_stride, expansion, out_c) in &STAGES {
            for r in 0..repeats {
                let idx = blocks.len();
                let p = |s: &str| format!("_blocks.{idx}.{s}");
                let stride = if r == 0 { first_stride } else { 1 };
                let mid = in_c * expansion;
                let expand = if expansion != 1 {
                    Some(
                        file.folded(&p("_expand_conv"), &p("_bn0"), &[mid, in_c, 1, 1])?
                            .into_pointwise()?,
                    )
                } else {
                    None
                };
                let depthwise = file
                    .folded(&p("_depthwise_conv"), &p("_bn1"), &[mid, 1, kernel, kernel])?
                    .into_depthwise()?;
                let project = file
                    .folded(&p("_project_conv"), &p("_bn2"), &[out_c, mid, 1, 1])?
                    .into_pointwise()?;
                blocks.push(MbConv {
                    expand,
                    depthwise,
                    kernel,
                    stride,
                    project,
                    skip: stride == 1 && in_c == out_c,
                });
                in_c = out_c;
            }
        }
        let head = file
            .folded(
                "_conv_head",
                "_bn1",
                &[EFFICIENTNET_LITE0_FEATURES, in_c, 1, 1],
            )?
            .into_pointwise()?;
        let fc_weight_t = file
            .get("_fc.weight", &[1000, EFFICIENTNET_LITE0_FEATURES])?
            .t()?
            .contiguous()?;
        let fc_bias = file.get("_fc.bias", &[1000])?;
        Ok(Self {
            config,
            stem,
            blocks,
            head,
            fc_weight_t,
            fc_bias,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EfficientNetLite0Config {
        &self.config
    }

    /// Maps images in [0, 1] to the network's input scaling (x·255 − 127)/128.
    pub fn scale_unit_input(x: &Tensor) -> Result<Tensor> {
        Ok(x.affine(255.0 / 128.0, -127.0 / 128.0)?)
    }

    /// Runs the whole network on scaled input ((x − 127)/128, x in 0…255).
    ///
    /// # Shapes
    /// (N, 3, H, W) -> stem (N, 32, ⌈H/2⌉, ⌈W/2⌉), head (N, 1280, ⌈H/32⌉, ⌈W/32⌉), pooled
    /// (N, 1280), logits (N, 1000)
    pub fn forward_scaled(&self, x: &Tensor) -> Result<EfficientNetOutputs> {
        let (stem, head_nhwc) = self.trunk(x)?;
        let head = head_nhwc.permute((0, 3, 1, 2))?.contiguous()?;
        let pooled = head_nhwc.mean(1)?.mean(1)?;
        let logits = pooled
            .matmul(&self.fc_weight_t)?
            .broadcast_add(&self.fc_bias)?;
        Ok(EfficientNetOutputs {
            stem: stem.permute((0, 3, 1, 2))?.contiguous()?,
            head,
            pooled,
            logits,
        })
    }

    /// Pooled head features of scaled input.
    ///
    /// # Shapes
    /// (N, 3, H, W) -> (N, 1280)
    pub fn pooled_scaled(&self, x: &Tensor) -> Result<Tensor> {
        let (_, head) = self.trunk(x)?;
        Ok(head.mean(1)?.mean(1)?)
    }

    /// Stem and head outputs, channels-last.
    fn trunk(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (_, c, h, w) = x.dims4()?;
        if c != 3 {
            return Err(ModelError::BadInput(format!(
                "EfficientNet-Lite0 takes 3 channels, got {c}"
            )));
        }
        let x = x.to_dtype(DType::F32)?;
        let (top, bottom, _) = same_padding(h, 3, 2);
        let (left, right, _) = same_padding(w, 3, 2);
        let x = x
            .pad_with_zeros(D::Minus2, top, bottom)?
            .pad_with_zeros(D::Minus1, left, right)?;
        let stem = x
            .conv2d(&self.stem.weight, 0, 2, 1, 1)?
            .broadcast_add(&self.stem.bias.reshape((1, (), 1, 1))?)?
            .clamp(0f32, 6f32)?
            .permute((0, 2, 3, 1))?
            .contiguous()?;
        let mut x = stem.clone();
        for block in &self.blocks {
            let mut y = match &block.expand {
                Some(e) => e.pointwise(&x, true)?,
                None => x.clone(),
            };
            y = depthwise_nhwc(&y, &block.depthwise, block.kernel, block.stride)?;
            y = block.project.pointwise(&y, false)?;
            x = if block.skip { (y + x)? } else { y };
        }
        let head = self.head.pointwise(&x, true)?;
        Ok((stem, head))
    }
}

impl Backbone for EfficientNetLite0 {
    fn name(&self) -> &str {
        "efficientnet-lite0"
    }

    fn feature_dim(&self) -> usize {
        EFFICIENTNET_LITE0_FEATURES
    }

    fn preferred_input_size(&self) -> usize {
        224
    }

    fn resize_to(&self) -> Option<usize> {
        self.config.resize_to
    }

    fn pooled_features_native(&self, patches: &Tensor) -> Result<Tensor> {
        self.pooled_scaled(&Self::scale_unit_input(patches)?)
    }

    fn feature_cell_origin(&self, input_side: usize) -> f64 {
        head_cell_origin(input_side)
    }

    fn feature_map_native(&self, images: &Tensor) -> Result<Tensor> {
        let (_, head_nhwc) = self.trunk(&Self::scale_unit_input(images)?)?;
        Ok(head_nhwc.permute((0, 3, 1, 2))?.contiguous()?)
    }
}

/// Channels-last depthwise k×k convolution with "SAME" padding, stride `stride`, folded bias and
/// ReLU6.
///
/// # Shapes
/// (N, H, W, C) -> (N, ⌈H/s⌉, ⌈W/s⌉, C)
fn depthwise_nhwc(x: &Tensor, conv: &FoldedConv, kernel: usize, stride: usize) -> Result<Tensor> {
    let (_, h, w, _) = x.dims4()?;
    let (pad_top, _, out_h) = same_padding(h, kernel, stride);
    let (pad_left, _, out_w) = same_padding(w, kernel, stride);
    let op = DepthwiseNhwc {
        kernel,
        stride,
        pad_top,
        pad_left,
        out_h,
        out_w,
    };
    Ok(x.contiguous()?
        .apply_op3_no_bwd(&conv.weight, &conv.bias, &op)?)
}

/// `x · W + bias`, then ReLU6 if asked, in one output buffer: the bias initialises the rows and
/// the product accumulates into them (candle's matmul, broadcast add and clamp would allocate
/// and traverse three activation-sized tensors; at 224×224 the memory traffic and page faults of
/// those dominate the network's time).
struct PointwiseFused {
    relu6: bool,
}

impl CustomOp3 for PointwiseFused {
    fn name(&self) -> &'static str {
        "ust-pointwise-fused"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, k) = l1.shape().dims2()?;
        let (k2, n) = l2.shape().dims2()?;
        if k2 != k || l3.shape().dims() != [n] {
            candle_core::bail!(
                "pointwise: x {:?}, weight {:?}, bias {:?} do not fit",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let (CpuStorage::F32(x), CpuStorage::F32(wt), CpuStorage::F32(b)) = (s1, s2, s3) else {
            candle_core::bail!("pointwise: f32 tensors only");
        };
        let x = contiguous_f32(x, l1, "input")?;
        let wt = contiguous_f32(wt, l2, "weight")?;
        let b = contiguous_f32(b, l3, "bias")?;
        let mut out = vec![0f32; m * n];
        out.par_chunks_mut(n * 1024).for_each(|rows| {
            for row in rows.chunks_exact_mut(n) {
                row.copy_from_slice(b);
            }
        });
        let threads = rayon::current_num_threads();
        let parallelism = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: `out` is m×n, `x` m×k and `wt` k×n, all row-major and contiguous (checked
        // above), so every index gemm forms with these strides is in bounds; `out` does not
        // alias the inputs.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                true,
                x.as_ptr(),
                1,
                k as isize,
                wt.as_ptr(),
                1,
                n as isize,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                parallelism,
            );
        }
        if self.relu6 {
            out.par_chunks_mut(1 << 16).for_each(|c| {
                for v in c {
                    *v = v.clamp(0.0, 6.0);
                }
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}

fn contiguous_f32<'a>(
    data: &'a [f32],
    layout: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// The depthwise convolution kernel (inference only).
struct DepthwiseNhwc {
    kernel: usize,
    stride: usize,
    pad_top: usize,
    pad_left: usize,
    out_h: usize,
    out_w: usize,
}

impl CustomOp3 for DepthwiseNhwc {
    fn name(&self) -> &'static str {
        "ust-depthwise-nhwc"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, h, w, c) = l1.shape().dims4()?;
        let k = self.kernel;
        if l2.shape().dims() != [k, k, c] || l3.shape().dims() != [c] {
            candle_core::bail!(
                "depthwise: weight {:?} / bias {:?} do not fit {c} channels",
                l2.shape(),
                l3.shape()
            );
        }
        let (CpuStorage::F32(x), CpuStorage::F32(wt), CpuStorage::F32(b)) = (s1, s2, s3) else {
            candle_core::bail!("depthwise: f32 tensors only");
        };
        let x = contiguous_f32(x, l1, "depthwise input")?;
        let wt = contiguous_f32(wt, l2, "depthwise weight")?;
        let b = contiguous_f32(b, l3, "depthwise bias")?;
        let (oh, ow, s) = (self.out_h, self.out_w, self.stride);
        let mut out = vec![0f32; n * oh * ow * c];
        out.par_chunks_mut(ow * c)
            .enumerate()
            .for_each(|(row_idx, out_row)| {
                let (img, i) = (row_idx / oh, row_idx % oh);
                for j in 0..ow {
                    out_row[j * c..(j + 1) * c].copy_from_slice(b);
                }
                for ky in 0..k {
                    let y = (i * s + ky) as isize - self.pad_top as isize;
                    if y < 0 || y >= h as isize {
                        continue;
                    }
                    let in_row = &x[(img * h + y as usize) * w * c..][..w * c];
                    for kx in 0..k {
                        let wv = &wt[(ky * k + kx) * c..][..c];
                        for j in 0..ow {
                            let xx = (j * s + kx) as isize - self.pad_left as isize;
                            if xx < 0 || xx >= w as isize {
                                continue;
                            }
                            let src = &in_row[xx as usize * c..][..c];
                            let dst = &mut out_row[j * c..][..c];
                            for ((d, &v), &wgt) in dst.iter_mut().zip(src).zip(wv) {
                                *d += v * wgt;
                            }
                        }
                    }
                }
                for v in out_row.iter_mut() {
                    *v = v.clamp(0.0, 6.0);
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((n, oh, ow, c))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::shared_dir;

    #[test]
    fn same_padding_matches_tensorflow() {
        // out = ceil(i/s), total = max((out-1)s + k - i, 0), before = total/2.
        assert_eq!(same_padding(224, 3, 2), (0, 1, 112));
        assert_eq!(same_padding(65, 3, 2), (1, 1, 33));
        assert_eq!(same_padding(33, 5, 2), (2, 2, 17));
        assert_eq!(same_padding(112, 5, 2), (1, 2, 56));
        assert_eq!(same_padding(7, 5, 1), (2, 2, 7));
        assert_eq!(same_padding(1, 3, 2), (1, 1, 1));
    }

    #[test]
    fn head_cell_origin_follows_the_padding_of_every_stride() {
        // By hand, from the stride-2 layers (stem k3, then k3, k5, k3, k5) and same_padding:
        // 224: pads before 0, 0, 1, 0, 1 -> centre index 0 -> 1 -> 3 -> 7 -> 15 -> 31: 31.5.
        assert_eq!(head_cell_origin(224), 31.5);
        // 744 -> 372 -> 186 -> 93 -> 47 -> 24: pads before 0, 0, 1, 1, 2 (the odd sizes
        // pad on both sides) -> 0 -> 0 -> 1 -> 3 -> 7: 7.5.
        assert_eq!(head_cell_origin(744), 7.5);
    }

    /// The channels-last depthwise kernel against candle's grouped conv2d with explicit padding.
    #[test]
    fn depthwise_matches_grouped_conv() {
        let dev = Device::Cpu;
        for (h, w, k, s) in [(9, 8, 3, 1), (9, 8, 5, 2), (7, 10, 3, 2)] {
            let c = 4;
            let x = Tensor::randn(0f32, 1.0, (2, c, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1.0, (c, 1, k, k), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1.0, c, &dev).unwrap();
            let (t, b_, _) = same_padding(h, k, s);
            let (l, r, _) = same_padding(w, k, s);
            let want = x
                .pad_with_zeros(2, t, b_)
                .unwrap()
                .pad_with_zeros(3, l, r)
                .unwrap()
                .conv2d(&wt, 0, s, 1, c)
                .unwrap()
                .broadcast_add(&bias.reshape((1, c, 1, 1)).unwrap())
                .unwrap()
                .clamp(0f32, 6f32)
                .unwrap();
            let conv = FoldedConv { weight: wt, bias }.into_depthwise().unwrap();
            let got = depthwise_nhwc(&x.permute((0, 2, 3, 1)).unwrap(), &conv, k, s)
                .unwrap()
                .permute((0, 3, 1, 2))
                .unwrap();
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        }
    }

    /// The fused pointwise op against candle's matmul + bias (+ clamp).
    #[test]
    fn pointwise_matches_matmul() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 2.0, (2, 5, 3, 7), &dev).unwrap();
        let wt = Tensor::randn(0f32, 1.0, (7, 11), &dev).unwrap();
        let bias = Tensor::randn(0f32, 1.0, 11, &dev).unwrap();
        let conv = FoldedConv {
            weight: wt.clone(),
            bias: bias.clone(),
        };
        for relu6 in [false, true] {
            let got = conv.pointwise(&x, relu6).unwrap();
            let want = x
                .reshape((30, 7))
                .unwrap()
                .matmul(&wt)
                .unwrap()
                .broadcast_add(&bias)
                .unwrap();
            let want = if relu6 {
                want.clamp(0f32, 6f32).unwrap()
            } else {
                want
            };
            let want = want.reshape((2, 5, 3, 11)).unwrap();
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        }
    }

    fn relative_error(got: &Tensor, want: &Tensor) -> f32 {
        let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
        let scale = want.abs().unwrap().max_all().unwrap();
        diff.to_scalar::<f32>().unwrap() / scale.to_scalar::<f32>().unwrap()
    }

    #[test]
    fn efficientnet_lite0_matches_reference() {
        let Some(shared) = shared_dir() else { return };
        let weights = shared.join("weights/efficientnet_lite0.safetensors");
        let reference = shared.join("weights/efficientnet_lite0_reference.safetensors");
        if !weights.exists() || !reference.exists() {
            eprintln!("skipping: {} not found (set UST_SHARED)", weights.display());
            return;
        }
        let dev = Device::Cpu;
        let net = EfficientNetLite0::load(&weights, Default::default(), &dev).unwrap();
        let r = candle_core::safetensors::load(&reference, &dev).unwrap();

        let out = net.forward_scaled(&r["input_224"]).unwrap();
        for (name, got) in [
            ("stem_224", &out.stem),
            ("head_224", &out.head),
            ("pooled_224", &out.pooled),
            ("logits_224", &out.logits),
        ] {
            assert_eq!(got.dims(), r[name].dims(), "{name}");
            let e = relative_error(got, &r[name]);
            eprintln!("{name}: relative error {e:.2e}");
            assert!(e < 1e-3, "{name}: relative error {e}");
        }
        let top = out.logits.argmax(1).unwrap().to_vec1::<u32>().unwrap();
        let want_top = r["logits_224"].argmax(1).unwrap().to_vec1::<u32>().unwrap();
        assert_eq!(top, want_top);
        assert_eq!(top[1], 0, "the second image is a tench (class 0)");

        let out = net.forward_scaled(&r["input_65"]).unwrap();
        for (name, got) in [("head_65", &out.head), ("pooled_65", &out.pooled)] {
            assert_eq!(got.dims(), r[name].dims(), "{name}");
            let e = relative_error(got, &r[name]);
            eprintln!("{name}: relative error {e:.2e}");
            assert!(e < 1e-3, "{name}: relative error {e}");
        }
        // The Backbone path ([0, 1] input) gives the same pooled features.
        let unit = ((&r["input_65"] * 128.0).unwrap() + 127.0).unwrap() / 255.0;
        let pooled = net.pooled_features(&unit.unwrap()).unwrap();
        assert!(relative_error(&pooled, &r["pooled_65"]) < 1e-3);
    }

    #[test]
    fn missing_or_wrong_weights_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.safetensors");
        let err = EfficientNetLite0::load(&missing, Default::default(), &Device::Cpu).unwrap_err();
        assert!(matches!(err, ModelError::Io { .. }), "{err:?}");
        let other = dir.path().join("other.safetensors");
        let t = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
        candle_core::safetensors::save(&HashMap::from([("x".to_string(), t)]), &other).unwrap();
        let err = EfficientNetLite0::load(&other, Default::default(), &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("_conv_stem.weight"), "{err}");
    }
}
