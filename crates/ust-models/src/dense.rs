//! Exact dense extraction (METHOD.md §3, after Bailer et al., "Fast Dense Feature Extraction
//! with CNNs that have Pooling or Striding Layers", 2018): one pass of a transformed patch
//! network over a whole image gives one descriptor per pixel, the descriptor at (r, c) being the
//! patch network's output on the p×p patch of the padded image centred on (r, c).
//!
//! Two equivalent constructions, both exact and differentiable (only candle ops and the pooling
//! of [`crate::pool`], which has a backward pass):
//!
//! - [`DenseMethod::MultiPool`]: every stride-2 pooling is evaluated at its four offsets, the
//!   results stacked into the batch; later layers run unchanged on the bigger batch; at the end
//!   the stacked grids are interleaved ("unwarped") back into one map.
//! - [`DenseMethod::Dilated`]: pooling with stride 1, and every later layer dilated by the
//!   product of the strides so far (2, 4, 8).
//!
//! Both perform the same arithmetic (the same multiply-adds, on maps of nearly the same total
//! size); which is faster depends on the convolution kernels (dilated convolutions on one large
//! map vs. a 4^k-fold batch of small maps). On the project's 2-core machine, under load from
//! other builds, the two were within the measurement noise, the dilated one slightly ahead in
//! CPU time in most runs and lighter when the graph is recorded (it has no extra padding and no
//! unwarp copies), so [`DenseMethod::Dilated`] is the default. `examples/models_bench.rs`
//! measures both.
//!
//! Any H×W works: the image is padded by (p−1)/2 on each side ([`BorderPadding`]); the
//! multi-pool construction pads a few more rows/columns at the bottom/right where the pooling
//! strides need them, and the result is cropped to H×W. Those extra pixels never reach an
//! output inside H×W.

use candle_core::{D, Module, Tensor};

use crate::error::{ModelError, Result};
use crate::patch_net::{Layer, PatchNet, conv};
use crate::pool::{MaxPool2x2, max_pool_2x2_all_offsets, max_pool_2x2_dilated};

/// How the dense network is built from the patch network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DenseMethod {
    /// Pool at all four offsets into the batch, unwarp at the end (Bailer et al.).
    MultiPool,
    /// Stride-1 pooling and dilated later layers (the default: see the module docs).
    #[default]
    Dilated,
}

/// How the image border is extended by (p−1)/2 pixels, so that every pixel gets a full p×p
/// patch.
///
/// Zeros put a dark frame around every image: on bright images (the paper types, most MVTec AD
/// objects) each patch reaching over the border is unlike any patch of the image itself, and the
/// students' maps then light up along the border (measured in the detector README). Replicate
/// and reflect extend the image with its own pixels, so a constant image stays constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BorderPadding {
    /// Zeros (the plain extractor's default; what runs written before the setting used).
    #[default]
    Zeros,
    /// Repeat the border pixels: `aaa|abcd|ddd`.
    Replicate,
    /// Mirror at the border pixel, which is not repeated: `dcb|abcd|cba`.
    Reflect,
}

impl BorderPadding {
    /// Every mode, in the order reports list them.
    pub const ALL: [BorderPadding; 3] = [Self::Zeros, Self::Replicate, Self::Reflect];

    /// The name written in configuration files and accepted on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Zeros => "zeros",
            Self::Replicate => "replicate",
            Self::Reflect => "reflect",
        }
    }

    /// `x` extended by `before` rows/columns at the top/left and `after` at the bottom/right
    /// of both spatial axes. Differentiable (an index gather for reflect).
    ///
    /// # Shapes
    /// (B, C, H, W) -> (B, C, H+before+after, W+before+after)
    pub fn pad(self, x: &Tensor, before: usize, after: usize) -> Result<Tensor> {
        let (_, _, _, _) = x.dims4()?;
        let mut x = x.clone();
        for axis in [2, 3] {
            x = match self {
                Self::Zeros => x.pad_with_zeros(axis, before, after)?,
                Self::Replicate => x.pad_with_same(axis, before, after)?,
                Self::Reflect => {
                    let n = x.dim(axis)?;
                    let index: Vec<u32> = (0..n + before + after)
                        .map(|i| reflect_index(i as isize - before as isize, n) as u32)
                        .collect();
                    let index = Tensor::from_vec(index, n + before + after, x.device())?;
                    // candle's index_select needs a contiguous input (a crop is not).
                    x.contiguous()?.index_select(&index, axis)?
                }
            };
        }
        Ok(x)
    }
}

/// The source index of position `i` (any integer) on an axis of length `n` mirrored at its end
/// pixels (period 2(n−1)), so a padding wider than the image keeps reflecting.
fn reflect_index(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let j = i.rem_euclid(period);
    (if j < n as isize { j } else { period - j }) as usize
}

impl std::fmt::Display for BorderPadding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for BorderPadding {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s.trim())
            .ok_or_else(|| {
                ModelError::InvalidConfig(format!(
                    "unknown border padding {s:?}: expected zeros, replicate or reflect"
                ))
            })
    }
}

/// Configuration of a [`DenseExtractor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DenseConfig {
    /// The construction.
    pub method: DenseMethod,
    /// The border extension.
    pub padding: BorderPadding,
}

/// Runs a [`PatchNet`] densely over whole images: one descriptor per pixel.
///
/// The extractor holds the network (its tensors are shared, not copied: a network backed by a
/// `VarMap` keeps training through the extractor).
///
/// # Memory
/// For inference give it [`PatchNet::detach`]ed weights (or a network loaded from a file): with
/// trainable weights candle records the graph, which keeps every intermediate activation alive
/// until the output is dropped. For a 256×256 image at p = 65 the benchmark measured a peak
/// resident memory of about 190 MiB detached vs. 590–680 MiB with the graph recorded.
#[derive(Debug, Clone)]
pub struct DenseExtractor {
    net: PatchNet,
    config: DenseConfig,
}

impl DenseExtractor {
    /// A dense extractor for `net`.
    pub fn new(net: PatchNet, config: DenseConfig) -> Self {
        Self { net, config }
    }

    /// The patch network.
    pub fn net(&self) -> &PatchNet {
        &self.net
    }

    /// The configuration.
    pub fn config(&self) -> &DenseConfig {
        &self.config
    }

    /// Dense descriptors of a batch of images.
    ///
    /// # Shapes
    /// (B, C, H, W) -> (B, d, H, W), any H, W >= 1
    pub fn extract(&self, images: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = images.dims4()?;
        self.check_channels(c)?;
        if h == 0 || w == 0 {
            return Err(ModelError::BadInput(format!("empty image {h}x{w}")));
        }
        let half = (self.net.patch_size() - 1) / 2;
        self.extract_padded(&self.config.padding.pad(images, half, half)?)
    }

    /// Dense descriptors of a batch of images that are already padded by p−1 in total per axis:
    /// output (r, c) is the patch network on `padded[.., r..r+p, c..c+p]`.
    ///
    /// # Shapes
    /// (B, C, H+p−1, W+p−1) -> (B, d, H, W)
    pub fn extract_padded(&self, padded: &Tensor) -> Result<Tensor> {
        let (_, c, hp, wp) = padded.dims4()?;
        self.check_channels(c)?;
        let p = self.net.patch_size();
        if hp < p || wp < p {
            return Err(ModelError::BadInput(format!(
                "padded input {hp}x{wp} is smaller than the patch size {p}"
            )));
        }
        let (h, w) = (hp - p + 1, wp - p + 1);
        let out = match self.config.method {
            DenseMethod::Dilated => self.dilated(padded)?,
            DenseMethod::MultiPool => self.multi_pool(padded, h, w)?,
        };
        Ok(out.narrow(2, 0, h)?.narrow(3, 0, w)?)
    }

    fn check_channels(&self, c: usize) -> Result<()> {
        let want = self.net.config().in_channels;
        if c != want {
            return Err(ModelError::BadInput(format!(
                "image has {c} channels, the patch network takes {want}"
            )));
        }
        Ok(())
    }

    /// Stride-1 pooling, dilation doubling after every pooling. Output: (B, d, >=H, >=W).
    fn dilated(&self, x: &Tensor) -> Result<Tensor> {
        let slope = self.net.config().leaky_relu_slope;
        let mut x = x.clone();
        let mut dilation = 1;
        for layer in self.net.layers() {
            x = match layer {
                Layer::Conv(c) => conv(&x, c, dilation, slope)?,
                Layer::Pool => {
                    let y = max_pool_2x2_dilated(&x, dilation)?;
                    dilation *= 2;
                    y
                }
            };
        }
        Ok(x)
    }

    /// Spatial length after the multi-pool network for an input of length `len` (per grid).
    fn multi_pool_len(&self, mut len: usize) -> Option<usize> {
        let pool = MaxPool2x2 {
            stride: 2,
            dilation: 1,
            all_offsets: true,
        };
        for layer in self.net.layers() {
            len = match layer {
                Layer::Conv(c) => len.checked_sub(c.weight.dims()[2] - 1)?,
                Layer::Pool => match pool.out_len(len) {
                    0 => return None,
                    l => l,
                },
            };
        }
        Some(len)
    }

    /// Extra bottom/right padding so that the unwarped multi-pool output covers `target` pixels.
    fn multi_pool_extra(&self, len: usize, target: usize) -> Result<usize> {
        let stride = 1usize << self.net.config().num_pools();
        // The output grows by one per `stride` input pixels: 2·stride extra always suffices.
        (0..=2 * stride)
            .find(|e| {
                self.multi_pool_len(len + e)
                    .is_some_and(|l| l * stride >= target)
            })
            .ok_or_else(|| ModelError::BadInput(format!("no multi-pool layout for length {len}")))
    }

    /// Pooling at the four offsets into the batch, unwarp at the end. Output: (B, d, >=H, >=W).
    fn multi_pool(&self, x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
        let (b, _, hp, wp) = x.dims4()?;
        let extra_h = self.multi_pool_extra(hp, h)?;
        let extra_w = self.multi_pool_extra(wp, w)?;
        let mut x =
            x.pad_with_zeros(D::Minus2, 0, extra_h)?
                .pad_with_zeros(D::Minus1, 0, extra_w)?;
        let slope = self.net.config().leaky_relu_slope;
        let mut n_pools = 0;
        for layer in self.net.layers() {
            x = match layer {
                Layer::Conv(c) => conv(&x, c, 1, slope)?,
                Layer::Pool => {
                    n_pools += 1;
                    max_pool_2x2_all_offsets(&x)?
                }
            };
        }
        // Batch index after k poolings: o_k·4^(k−1)·B + … + o_1·B + b, o = 2·oy + ox. Undo the
        // outermost (last) pooling first: its grids interleave as position 2·j + oy.
        for level in (0..n_pools).rev() {
            let inner = b << (2 * level);
            let (_, d, gh, gw) = x.dims4()?;
            x = x
                .reshape(&[2, 2, inner, d, gh, gw][..])?
                .permute([2, 3, 4, 0, 5, 1])?
                .reshape((inner, d, 2 * gh, 2 * gw))?;
        }
        Ok(x)
    }
}

impl Module for DenseExtractor {
    /// [`DenseExtractor::extract`].
    ///
    /// # Shapes
    /// (B, C, H, W) -> (B, d, H, W)
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.extract(xs).map_err(|e| match e {
            ModelError::Candle(e) => e,
            other => candle_core::Error::Msg(other.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch_net::{PatchNetConfig, SUPPORTED_PATCH_SIZES};
    use crate::test_support::{max_abs_diff, seeded_patch_net};
    use candle_core::{DType, Device, IndexOp, Var};

    fn random_net(p: usize, seed: u64) -> PatchNet {
        seeded_patch_net(PatchNetConfig::new(p), seed).0
    }

    fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
        let diff = max_abs_diff(a, b);
        assert!(diff <= tol, "{what}: max abs difference {diff} > {tol}");
    }

    /// The dense output at corners, borders and interior pixels equals the patch network on the
    /// patch of the padded image at that pixel, for every p, both methods, a batch of 2 and an
    /// image whose sides are not multiples of the pooling strides.
    fn dense_matches_patchwise(p: usize) {
        let dev = Device::Cpu;
        let net = random_net(p, 7 + p as u64);
        let (h, w) = (40, 37);
        let images = Tensor::rand(0f32, 1f32, (2, 3, h, w), &dev).unwrap();
        let half = (p - 1) / 2;
        let padded = images
            .pad_with_zeros(2, half, half)
            .unwrap()
            .pad_with_zeros(3, half, half)
            .unwrap();
        let pixels = [
            (0, 0),
            (0, w - 1),
            (h - 1, 0),
            (h - 1, w - 1),
            (0, 17),
            (h - 1, 20),
            (13, 0),
            (26, w - 1),
            (1, 1),
            (h - 2, w - 2),
            (19, 18),
            (7, 30),
            (33, 9),
        ];
        let patches: Vec<Tensor> = pixels
            .iter()
            .map(|&(r, c)| padded.i((.., .., r..r + p, c..c + p)).unwrap())
            .collect();
        // (pixels·B, 3, p, p) -> (pixels, B, d)
        let want = net
            .descriptors(&Tensor::cat(&patches, 0).unwrap())
            .unwrap()
            .reshape((pixels.len(), 2, 128))
            .unwrap();
        for method in [DenseMethod::MultiPool, DenseMethod::Dilated] {
            let dense = DenseExtractor::new(
                net.clone(),
                DenseConfig {
                    method,
                    ..Default::default()
                },
            );
            let out = dense.extract(&images).unwrap();
            assert_eq!(out.dims(), &[2, 128, h, w]);
            for (k, &(r, c)) in pixels.iter().enumerate() {
                let got = out.i((.., .., r, c)).unwrap();
                assert_close(
                    &got,
                    &want.i(k).unwrap(),
                    1e-4,
                    &format!("p={p} {method:?} ({r},{c})"),
                );
            }
        }
    }

    #[test]
    fn dense_matches_patchwise_p17() {
        dense_matches_patchwise(17);
    }

    #[test]
    fn dense_matches_patchwise_p33() {
        dense_matches_patchwise(33);
    }

    #[test]
    fn dense_matches_patchwise_p65() {
        dense_matches_patchwise(65);
    }

    /// Both methods agree everywhere, for tiny and odd sizes too (down to 1×1), and with
    /// replicated borders.
    #[test]
    fn methods_agree_on_all_pixels_for_odd_sizes() {
        let dev = Device::Cpu;
        for p in SUPPORTED_PATCH_SIZES {
            let net = random_net(p, 100 + p as u64);
            for (h, w) in [(1, 1), (5, 3), (9, 16)] {
                let images = Tensor::rand(0f32, 1f32, (1, 3, h, w), &dev).unwrap();
                let run = |method, padding| {
                    DenseExtractor::new(net.clone(), DenseConfig { method, padding })
                        .extract(&images)
                        .unwrap()
                };
                for padding in BorderPadding::ALL {
                    let a = run(DenseMethod::MultiPool, padding);
                    let b = run(DenseMethod::Dilated, padding);
                    assert_eq!(a.dims(), &[1, 128, h, w]);
                    assert_close(&a, &b, 1e-4, &format!("p={p} {h}x{w} {padding:?}"));
                }
                // Replicate padding at a corner pixel equals the patch of the replicated image.
                let dense = DenseExtractor::new(
                    net.clone(),
                    DenseConfig {
                        method: DenseMethod::MultiPool,
                        padding: BorderPadding::Replicate,
                    },
                );
                let half = (p - 1) / 2;
                let padded = images
                    .pad_with_same(2, half, half)
                    .unwrap()
                    .pad_with_same(3, half, half)
                    .unwrap();
                let want = net
                    .descriptors(&padded.i((.., .., 0..p, 0..p)).unwrap())
                    .unwrap();
                let got = dense.extract(&images).unwrap().i((.., .., 0, 0)).unwrap();
                assert_close(&got, &want, 1e-4, &format!("p={p} replicate corner"));
            }
        }
    }

    /// Gradients flow through both dense constructions to the network's parameters and agree.
    fn dense_is_differentiable(p: usize) {
        let dev = Device::Cpu;
        let images = Tensor::rand(0f32, 1f32, (1, 3, 11, 10), &dev).unwrap();
        let target = Tensor::randn(0f32, 1.0, (1, 128, 11, 10), &dev).unwrap();
        let mut grads_by_method = Vec::new();
        for method in [DenseMethod::MultiPool, DenseMethod::Dilated] {
            let (net, varmap) = seeded_patch_net(PatchNetConfig::new(p), 5);
            let dense = DenseExtractor::new(
                net,
                DenseConfig {
                    method,
                    ..Default::default()
                },
            );
            let loss = (dense.extract(&images).unwrap() - &target)
                .unwrap()
                .sqr()
                .unwrap()
                .mean_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            let vars = varmap.data().lock().unwrap();
            let g: Vec<Tensor> = PatchNetConfig::new(p)
                .parameter_names()
                .iter()
                .map(|n| {
                    let v: &Var = &vars[n];
                    grads.get(v.as_tensor()).unwrap().clone()
                })
                .collect();
            grads_by_method.push(g);
        }
        for (a, b) in grads_by_method[0].iter().zip(&grads_by_method[1]) {
            let scale = a
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(scale > 0.0);
            assert_close(a, b, 1e-4 * scale.max(1.0), "parameter gradient");
        }
    }

    #[test]
    fn dense_is_differentiable_p33() {
        dense_is_differentiable(33);
    }

    #[test]
    fn dense_is_differentiable_p65() {
        dense_is_differentiable(65);
    }

    #[test]
    fn reflect_padding_mirrors_at_the_border_pixel() {
        // Hand-checked: abcd reflected by 2 on each side is cb|abcd|cb; by 5 the mirror goes
        // on past the far end (period 2(n−1) = 6): position −5 is index 1, −4 is 2, −3 is 3.
        let got: Vec<usize> = (-5..=8).map(|i| reflect_index(i, 4)).collect();
        assert_eq!(got, [1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]);
        assert_eq!(reflect_index(-3, 1), 0);
        let x = Tensor::arange(0f32, 12.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 3, 4))
            .unwrap();
        let rows = |t: &Tensor| {
            t.squeeze(0)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
        };
        let r = BorderPadding::Reflect.pad(&x, 1, 2).unwrap();
        assert_eq!(r.dims(), &[1, 1, 6, 7]);
        // A crop (not contiguous) pads as its copy does.
        let wide = BorderPadding::Zeros
            .pad(&x, 0, 3)
            .unwrap()
            .narrow(3, 0, 4)
            .unwrap();
        let cropped = BorderPadding::Reflect
            .pad(&wide.narrow(2, 0, 3).unwrap(), 1, 2)
            .unwrap();
        assert_eq!(rows(&cropped), rows(&r));
        // Rows −1, 0, 1, 2, 3, 4 → 1, 0, 1, 2, 1, 0; columns −1..=5 → 1, 0, 1, 2, 3, 2, 1.
        let want: Vec<Vec<f32>> = [1, 0, 1, 2, 1, 0]
            .iter()
            .map(|&r| {
                [1, 0, 1, 2, 3, 2, 1]
                    .iter()
                    .map(|&c| (4 * r + c) as f32)
                    .collect()
            })
            .collect();
        assert_eq!(rows(&r), want);
        let z = BorderPadding::Zeros.pad(&x, 1, 0).unwrap();
        assert_eq!(rows(&z)[0], vec![0.0; 5]);
        assert_eq!(rows(&z)[1], vec![0.0, 0.0, 1.0, 2.0, 3.0]);
        let s = BorderPadding::Replicate.pad(&x, 0, 1).unwrap();
        assert_eq!(rows(&s)[3], vec![8.0, 9.0, 10.0, 11.0, 11.0]);
        for m in BorderPadding::ALL {
            assert_eq!(m.name().parse::<BorderPadding>().unwrap(), m);
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
        }
        assert!("mirror".parse::<BorderPadding>().is_err());
    }

    /// On a constant image the descriptors are the same at every pixel with replicate and
    /// reflect padding (no frame by construction), and differ at the border with zeros.
    #[test]
    fn a_constant_image_gives_constant_descriptors_without_zero_padding() {
        let dev = Device::Cpu;
        let net = random_net(17, 3);
        let image = (Tensor::ones((1, 3, 21, 19), DType::F32, &dev).unwrap() * 0.8).unwrap();
        let spread = |padding| {
            let out = DenseExtractor::new(
                net.clone(),
                DenseConfig {
                    padding,
                    ..Default::default()
                },
            )
            .extract(&image)
            .unwrap();
            max_abs_diff(&out, &out.i((.., .., 10..11, 9..10)).unwrap())
        };
        assert!(spread(BorderPadding::Replicate) < 1e-4);
        assert!(spread(BorderPadding::Reflect) < 1e-4);
        assert!(spread(BorderPadding::Zeros) > 1e-2);
    }

    #[test]
    fn wrong_channels_are_an_error() {
        let dense = DenseExtractor::new(random_net(17, 1), DenseConfig::default());
        let gray = Tensor::zeros((1, 1, 8, 8), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(dense.extract(&gray), Err(ModelError::BadInput(_))));
    }
}
