//! The patch networks of METHOD.md §2: plain convolutional nets that map a p×p patch to a
//! d-dimensional descriptor, for receptive fields p ∈ {17, 33, 65}.
//!
//! Convolutions have no padding and stride 1; pooling is 2×2 max pooling with stride 2 (an odd
//! last row or column dropped); a leaky ReLU (slope 5e-3) follows every convolution except the
//! last, which is the linear descriptor layer.
//!
//! | p | layers (kernel, out channels) → spatial size |
//! |---|---|
//! | 65 | conv5 128 →61 · pool →30 · conv5 128 →26 · pool →13 · conv5 128 →9 · pool →4 · conv4 256 →1 · conv1 d →1 |
//! | 33 | conv5 128 →29 · pool →14 · conv5 256 →10 · pool →5 · conv2 256 →4 · conv4 d →1 |
//! | 17 | conv6 128 →12 · conv5 256 →8 · conv5 256 →4 · conv4 d →1 |
//!
//! Parameters are named `conv{i}.weight` / `conv{i}.bias`, i = 1, 2, … in network order. A
//! saved file carries the [`PatchNetConfig`] as JSON in its safetensors metadata, so the file
//! alone says which architecture it holds.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::pool::max_pool_2x2;

/// The receptive fields the paper defines a network for.
pub const SUPPORTED_PATCH_SIZES: [usize; 3] = [17, 33, 65];

/// Metadata key of the model kind in a saved file.
pub const METADATA_MODEL_KEY: &str = "ust.model";
/// Metadata value of [`METADATA_MODEL_KEY`] for patch networks.
pub const METADATA_MODEL_VALUE: &str = "PatchNet";
/// Metadata key of the JSON-encoded [`PatchNetConfig`] in a saved file.
pub const METADATA_CONFIG_KEY: &str = "ust.config";

/// One layer of a patch network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerSpec {
    /// A valid, stride-1 convolution with a bias.
    Conv {
        /// Kernel side length.
        kernel: usize,
        /// Output channels.
        out_channels: usize,
        /// Whether a leaky ReLU follows (all but the last convolution).
        activation: bool,
    },
    /// 2×2 max pooling with stride 2.
    Pool,
}

/// The configuration of a [`PatchNet`]: everything that determines its architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchNetConfig {
    /// The receptive field p: 17, 33 or 65.
    pub patch_size: usize,
    /// Input channels (3 for RGB).
    pub in_channels: usize,
    /// Descriptor dimension d (128 in the paper).
    pub descriptor_dim: usize,
    /// Negative slope of the leaky ReLUs (5e-3 in the paper).
    pub leaky_relu_slope: f64,
    /// Output channels of the third convolution of the p = 65 network: 128 in the paper's table,
    /// 256 in some reimplementations. Ignored for other p.
    pub p65_conv3_channels: usize,
}

/// The most channels (input, descriptor, p = 65 third layer) a [`PatchNetConfig`] may name.
const MAX_CHANNELS: usize = 1 << 16;

impl Default for PatchNetConfig {
    fn default() -> Self {
        Self::new(65)
    }
}

impl PatchNetConfig {
    /// The paper's network for receptive field `patch_size` (d = 128, slope 5e-3, RGB input).
    pub fn new(patch_size: usize) -> Self {
        Self {
            patch_size,
            in_channels: 3,
            descriptor_dim: 128,
            leaky_relu_slope: 5e-3,
            p65_conv3_channels: 128,
        }
    }

    /// Validates the configuration.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::InvalidConfig(m));
        if !SUPPORTED_PATCH_SIZES.contains(&self.patch_size) {
            return bad(format!(
                "patch_size {} is not one of {SUPPORTED_PATCH_SIZES:?}",
                self.patch_size
            ));
        }
        if self.in_channels == 0 {
            return bad("in_channels must be at least 1".into());
        }
        if self.descriptor_dim == 0 {
            return bad("descriptor_dim must be at least 1".into());
        }
        if !self.leaky_relu_slope.is_finite() || !(0.0..1.0).contains(&self.leaky_relu_slope) {
            return bad(format!(
                "leaky_relu_slope {} must be finite and in [0, 1)",
                self.leaky_relu_slope
            ));
        }
        if self.p65_conv3_channels == 0 {
            return bad("p65_conv3_channels must be at least 1".into());
        }
        // A bound far above any real network, so that no layer's size overflows (a corrupt
        // file's metadata can name any number).
        for (name, value) in [
            ("in_channels", self.in_channels),
            ("descriptor_dim", self.descriptor_dim),
            ("p65_conv3_channels", self.p65_conv3_channels),
        ] {
            if value > MAX_CHANNELS {
                return bad(format!("{name} {value} is above {MAX_CHANNELS}"));
            }
        }
        Ok(())
    }

    /// The layer sequence (METHOD.md §2).
    pub fn layers(&self) -> Vec<LayerSpec> {
        let conv = |kernel, out_channels| LayerSpec::Conv {
            kernel,
            out_channels,
            activation: true,
        };
        let last = |kernel, out_channels| LayerSpec::Conv {
            kernel,
            out_channels,
            activation: false,
        };
        let d = self.descriptor_dim;
        match self.patch_size {
            65 => vec![
                conv(5, 128),
                LayerSpec::Pool,
                conv(5, 128),
                LayerSpec::Pool,
                conv(5, self.p65_conv3_channels),
                LayerSpec::Pool,
                conv(4, 256),
                last(1, d),
            ],
            33 => vec![
                conv(5, 128),
                LayerSpec::Pool,
                conv(5, 256),
                LayerSpec::Pool,
                conv(2, 256),
                last(4, d),
            ],
            17 => vec![conv(6, 128), conv(5, 256), conv(5, 256), last(4, d)],
            _ => Vec::new(),
        }
    }

    /// Number of pooling layers.
    pub fn num_pools(&self) -> usize {
        self.layers()
            .iter()
            .filter(|l| **l == LayerSpec::Pool)
            .count()
    }

    /// The names of the parameters, in network order.
    pub fn parameter_names(&self) -> Vec<String> {
        let n_conv = self.layers().len() - self.num_pools();
        (1..=n_conv)
            .flat_map(|i| [format!("conv{i}.weight"), format!("conv{i}.bias")])
            .collect()
    }

    /// The configuration as JSON (what a saved file's metadata holds).
    pub fn to_json(&self) -> String {
        // Serialising a struct of numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A convolution of a patch network with its parameters.
#[derive(Debug, Clone)]
pub(crate) struct ConvLayer {
    pub(crate) name: String,
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
    pub(crate) activation: bool,
}

/// A built layer.
#[derive(Debug, Clone)]
pub(crate) enum Layer {
    Conv(ConvLayer),
    Pool,
}

/// A patch network (METHOD.md §2): a p×p patch in, a d-dimensional descriptor out.
#[derive(Debug, Clone)]
pub struct PatchNet {
    config: PatchNetConfig,
    layers: Vec<Layer>,
}

/// A valid, stride-1 convolution with a bias and the optional leaky ReLU, through the project's
/// fast convolution crate.
pub(crate) fn conv(
    x: &Tensor,
    layer: &ConvLayer,
    dilation: usize,
    slope: f64,
) -> candle_core::Result<Tensor> {
    let y = ust_conv::conv2d(x, &layer.weight, Some(&layer.bias), dilation)?;
    if layer.activation {
        ust_conv::leaky_relu(&y, slope)
    } else {
        Ok(y)
    }
}

impl PatchNet {
    /// Builds the network, taking (or creating, with a VarMap-backed builder) its parameters
    /// from `vb`. New weights use Kaiming-normal initialisation, biases U(±1/√fan_in).
    pub fn new(config: PatchNetConfig, vb: VarBuilder) -> Result<Self> {
        config.check()?;
        let mut layers = Vec::new();
        let mut in_c = config.in_channels;
        let mut conv_index = 0;
        for spec in config.layers() {
            match spec {
                LayerSpec::Pool => layers.push(Layer::Pool),
                LayerSpec::Conv {
                    kernel,
                    out_channels,
                    activation,
                } => {
                    conv_index += 1;
                    let name = format!("conv{conv_index}");
                    let vb = vb.pp(&name);
                    let fan_in = (in_c * kernel * kernel) as f64;
                    let weight = vb.get_with_hints(
                        (out_channels, in_c, kernel, kernel),
                        "weight",
                        candle_nn::init::DEFAULT_KAIMING_NORMAL,
                    )?;
                    let bound = 1.0 / fan_in.sqrt();
                    let bias = vb.get_with_hints(
                        out_channels,
                        "bias",
                        Init::Uniform {
                            lo: -bound,
                            up: bound,
                        },
                    )?;
                    layers.push(Layer::Conv(ConvLayer {
                        name,
                        weight,
                        bias,
                        activation,
                    }));
                    in_c = out_channels;
                }
            }
        }
        Ok(Self { config, layers })
    }

    /// The configuration.
    pub fn config(&self) -> &PatchNetConfig {
        &self.config
    }

    /// The receptive field p.
    pub fn patch_size(&self) -> usize {
        self.config.patch_size
    }

    /// The descriptor dimension d.
    pub fn descriptor_dim(&self) -> usize {
        self.config.descriptor_dim
    }

    pub(crate) fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The same network with its parameters detached from any `VarMap` (sharing their storage):
    /// for inference. A forward pass through trainable parameters records the graph, which keeps
    /// every intermediate activation alive until the output is dropped; through detached ones
    /// each activation is freed as soon as the next layer has consumed it.
    pub fn detach(&self) -> Self {
        let layers = self
            .layers
            .iter()
            .map(|l| match l {
                Layer::Conv(c) => Layer::Conv(ConvLayer {
                    weight: c.weight.detach(),
                    bias: c.bias.detach(),
                    ..c.clone()
                }),
                Layer::Pool => Layer::Pool,
            })
            .collect();
        Self {
            config: self.config.clone(),
            layers,
        }
    }

    /// The network that gives on `x` what this one gives on `x·scale + shift` (per input
    /// channel), detached: the affine map folded into the first convolution,
    /// W′[o,c] = W[o,c]·scale_c and b′[o] = b[o] + Σ_{c,i,j} W[o,c,i,j]·shift_c. Exact for every
    /// input because the convolutions are valid (no padding inside the network). Students train
    /// on standardised inputs and are saved folded, so a scale file holds ordinary networks.
    pub fn fold_input_affine(&self, scale: &[f32], shift: &[f32]) -> Result<Self> {
        let c = self.config.in_channels;
        if scale.len() != c || shift.len() != c {
            return Err(ModelError::InvalidConfig(format!(
                "input affine map has {} scales and {} shifts for {c} input channels",
                scale.len(),
                shift.len()
            )));
        }
        let mut layers = self.detach().layers;
        if let Some(Layer::Conv(first)) = layers.first_mut() {
            let device = first.weight.device().clone();
            let scale_t = Tensor::from_slice(scale, (1, c, 1, 1), &device)?;
            let shift_t = Tensor::from_slice(shift, (1, c, 1, 1), &device)?;
            let bias_shift = first.weight.broadcast_mul(&shift_t)?.sum((1, 2, 3))?;
            first.bias = (&first.bias + bias_shift)?;
            first.weight = first.weight.broadcast_mul(&scale_t)?;
        }
        Ok(Self {
            config: self.config.clone(),
            layers,
        })
    }

    /// The parameters by name (`conv{i}.weight`, `conv{i}.bias`).
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .filter_map(|l| match l {
                Layer::Conv(c) => Some([
                    (format!("{}.weight", c.name), c.weight.clone()),
                    (format!("{}.bias", c.name), c.bias.clone()),
                ]),
                Layer::Pool => None,
            })
            .flatten()
            .collect()
    }

    fn check_input(&self, x: &Tensor) -> candle_core::Result<(usize, usize, usize, usize)> {
        let (b, c, h, w) = x.dims4()?;
        let p = self.config.patch_size;
        if c != self.config.in_channels {
            candle_core::bail!(
                "PatchNet(p={p}): input has {c} channels, the network takes {}",
                self.config.in_channels
            );
        }
        if h < p || w < p {
            candle_core::bail!("PatchNet(p={p}): input {h}x{w} is smaller than the patch size");
        }
        Ok((b, c, h, w))
    }

    /// Descriptors of a batch of patches.
    ///
    /// # Shapes
    /// (N, C, p, p) -> (N, d)
    pub fn descriptors(&self, patches: &Tensor) -> Result<Tensor> {
        let (n, _, h, w) = self.check_input(patches)?;
        let p = self.config.patch_size;
        if h != p || w != p {
            return Err(ModelError::BadInput(format!(
                "PatchNet(p={p}) descriptors need {p}x{p} patches, got {h}x{w}"
            )));
        }
        Ok(self
            .forward(patches)?
            .reshape((n, self.config.descriptor_dim))?)
    }

    /// Saves the parameters as safetensors, with the configuration in the file's metadata.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let tensors = self
            .parameters()
            .into_iter()
            .map(|(n, t)| Ok((n, t.to_dtype(DType::F32)?.contiguous()?)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let metadata = HashMap::from([
            (
                METADATA_MODEL_KEY.to_string(),
                METADATA_MODEL_VALUE.to_string(),
            ),
            (METADATA_CONFIG_KEY.to_string(), self.config.to_json()),
        ]);
        safetensors::serialize_to_file(tensors, Some(metadata), path)
            .map_err(|e| ModelError::bad_weights(path, format!("cannot write safetensors: {e}")))
    }

    /// Reads the architecture a saved file holds, from its metadata.
    pub fn read_config(path: impl AsRef<Path>) -> Result<PatchNetConfig> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        config_from_bytes(path, &bytes)
    }

    /// Loads a saved network, whatever architecture the file holds. The parameters are plain
    /// tensors (not trainable); see [`PatchNet::load_trainable`].
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::load_impl(path.as_ref(), None, device)
    }

    /// Loads a saved network that must have the architecture `expected`; a file holding another
    /// one gives [`ModelError::ArchitectureMismatch`].
    pub fn load_as(
        path: impl AsRef<Path>,
        expected: &PatchNetConfig,
        device: &Device,
    ) -> Result<Self> {
        Self::load_impl(path.as_ref(), Some(expected), device)
    }

    fn load_impl(path: &Path, expected: Option<&PatchNetConfig>, device: &Device) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        let config = config_from_bytes(path, &bytes)?;
        check_expected(path, expected, &config)?;
        let tensors = network_tensors(
            candle_core::safetensors::load_buffer(&bytes, device)
                .map_err(|e| ModelError::bad_weights(path, format!("cannot read tensors: {e}")))?,
        );
        check_tensor_names(path, &config, tensors.keys())?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        Self::new(config, vb).map_err(|e| ModelError::bad_weights(path, e.to_string()))
    }

    /// Loads a saved network into `varmap` (creating or overwriting its variables), so that it
    /// can be trained further. With `expected`, the file must hold that architecture. The
    /// variables get the file's names (`conv1.weight`, …) at the root of the map: use one
    /// `VarMap` per network.
    pub fn load_trainable(
        path: impl AsRef<Path>,
        expected: Option<&PatchNetConfig>,
        varmap: &VarMap,
        device: &Device,
    ) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        let config = config_from_bytes(path, &bytes)?;
        check_expected(path, expected, &config)?;
        let tensors = network_tensors(
            candle_core::safetensors::load_buffer(&bytes, device)
                .map_err(|e| ModelError::bad_weights(path, format!("cannot read tensors: {e}")))?,
        );
        check_tensor_names(path, &config, tensors.keys())?;
        let net = Self::new(config, VarBuilder::from_varmap(varmap, DType::F32, device))?;
        let vars = varmap
            .data()
            .lock()
            .map_err(|_| ModelError::InvalidConfig("the VarMap's lock is poisoned".to_string()))?;
        for (name, value) in &tensors {
            let var = vars
                .get(name)
                .ok_or_else(|| ModelError::bad_weights(path, format!("no variable {name}")))?;
            var.set(&value.to_dtype(var.dtype())?)
                .map_err(|e| ModelError::bad_weights(path, format!("tensor {name}: {e}")))?;
        }
        Ok(net)
    }
}

fn config_from_bytes(path: &Path, bytes: &[u8]) -> Result<PatchNetConfig> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| ModelError::bad_weights(path, format!("not a safetensors file: {e}")))?;
    let meta = meta.metadata().as_ref().ok_or_else(|| {
        ModelError::bad_weights(path, "no metadata: not a patch network saved by ust")
    })?;
    match meta.get(METADATA_MODEL_KEY) {
        Some(v) if v == METADATA_MODEL_VALUE => {}
        Some(v) => {
            return Err(ModelError::bad_weights(
                path,
                format!("holds a {v:?}, not a {METADATA_MODEL_VALUE}"),
            ));
        }
        None => {
            return Err(ModelError::bad_weights(
                path,
                format!("metadata has no {METADATA_MODEL_KEY:?}: not a patch network saved by ust"),
            ));
        }
    }
    let json = meta.get(METADATA_CONFIG_KEY).ok_or_else(|| {
        ModelError::bad_weights(path, format!("metadata has no {METADATA_CONFIG_KEY:?}"))
    })?;
    let config: PatchNetConfig = serde_json::from_str(json)
        .map_err(|e| ModelError::bad_weights(path, format!("bad configuration {json:?}: {e}")))?;
    config
        .check()
        .map_err(|e| ModelError::bad_weights(path, e.to_string()))?;
    Ok(config)
}

fn check_expected(
    path: &Path,
    expected: Option<&PatchNetConfig>,
    found: &PatchNetConfig,
) -> Result<()> {
    match expected {
        Some(e) if e != found => Err(ModelError::ArchitectureMismatch {
            path: path.to_path_buf(),
            expected: e.to_json(),
            found: found.to_json(),
        }),
        _ => Ok(()),
    }
}

/// A trained teacher file also holds its distillation decoder (`decoder.*`), which belongs to
/// pretraining, not to the network: loaders ignore it.
fn network_tensors(
    mut tensors: std::collections::HashMap<String, Tensor>,
) -> std::collections::HashMap<String, Tensor> {
    tensors.retain(|name, _| !name.starts_with(DECODER_PREFIX));
    tensors
}

/// Name prefix of the tensors of a teacher's distillation decoder.
pub const DECODER_PREFIX: &str = "decoder.";

fn check_tensor_names<'a>(
    path: &Path,
    config: &PatchNetConfig,
    names: impl Iterator<Item = &'a String>,
) -> Result<()> {
    let have: BTreeSet<&str> = names.map(String::as_str).collect();
    let want = config.parameter_names();
    let want: BTreeSet<&str> = want.iter().map(String::as_str).collect();
    if have != want {
        let missing: Vec<_> = want.difference(&have).collect();
        let extra: Vec<_> = have.difference(&want).collect();
        return Err(ModelError::bad_weights(
            path,
            format!(
                "tensors do not match the stored architecture: missing {missing:?}, unexpected {extra:?}"
            ),
        ));
    }
    Ok(())
}

impl Module for PatchNet {
    /// Runs the patch network. On a p×p input the output is one descriptor; on a larger input it
    /// is the network slid with its total stride (not a dense map: see
    /// [`crate::dense::DenseExtractor`]).
    ///
    /// # Shapes
    /// (N, C, H, W), H, W >= p -> (N, d, H', W'); (N, C, p, p) -> (N, d, 1, 1)
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.check_input(x)?;
        let slope = self.config.leaky_relu_slope;
        let mut x = x.clone();
        for layer in &self.layers {
            x = match layer {
                Layer::Conv(c) => conv(&x, c, 1, slope)?,
                Layer::Pool => max_pool_2x2(&x)?,
            };
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::max_abs_diff;

    fn spatial_after(cfg: &PatchNetConfig, mut len: usize) -> usize {
        for l in cfg.layers() {
            len = match l {
                LayerSpec::Conv { kernel, .. } => len - kernel + 1,
                LayerSpec::Pool => len / 2,
            };
        }
        len
    }

    #[test]
    fn every_supported_network_maps_a_patch_to_one_descriptor() {
        for p in SUPPORTED_PATCH_SIZES {
            let cfg = PatchNetConfig::new(p);
            assert_eq!(spatial_after(&cfg, p), 1, "p = {p}");
            let varmap = VarMap::new();
            let net = PatchNet::new(
                cfg,
                VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
            )
            .unwrap();
            let x = Tensor::rand(0f32, 1f32, (2, 3, p, p), &Device::Cpu).unwrap();
            assert_eq!(net.forward(&x).unwrap().dims(), &[2, 128, 1, 1]);
            assert_eq!(net.descriptors(&x).unwrap().dims(), &[2, 128]);
            assert_eq!(
                varmap.all_vars().len(),
                net.config().parameter_names().len()
            );
        }
    }

    #[test]
    fn layer_table_matches_the_method() {
        // Output channels and kernels in network order, pools as 0.
        let table = |p| -> Vec<(usize, usize)> {
            PatchNetConfig::new(p)
                .layers()
                .iter()
                .map(|l| match *l {
                    LayerSpec::Conv {
                        kernel,
                        out_channels,
                        ..
                    } => (kernel, out_channels),
                    LayerSpec::Pool => (0, 0),
                })
                .collect()
        };
        assert_eq!(
            table(65),
            [
                (5, 128),
                (0, 0),
                (5, 128),
                (0, 0),
                (5, 128),
                (0, 0),
                (4, 256),
                (1, 128)
            ]
        );
        assert_eq!(
            table(33),
            [(5, 128), (0, 0), (5, 256), (0, 0), (2, 256), (4, 128)]
        );
        assert_eq!(table(17), [(6, 128), (5, 256), (5, 256), (4, 128)]);
        for p in SUPPORTED_PATCH_SIZES {
            let layers = PatchNetConfig::new(p).layers();
            let acts: Vec<bool> = layers
                .iter()
                .filter_map(|l| match l {
                    LayerSpec::Conv { activation, .. } => Some(*activation),
                    LayerSpec::Pool => None,
                })
                .collect();
            assert!(!acts[acts.len() - 1] && acts[..acts.len() - 1].iter().all(|a| *a));
        }
    }

    #[test]
    fn check_rejects_bad_configs() {
        assert!(PatchNetConfig::new(65).check().is_ok());
        for cfg in [
            PatchNetConfig::new(31),
            PatchNetConfig {
                descriptor_dim: 0,
                ..PatchNetConfig::new(17)
            },
            PatchNetConfig {
                in_channels: 0,
                ..PatchNetConfig::new(17)
            },
            PatchNetConfig {
                leaky_relu_slope: f64::NAN,
                ..PatchNetConfig::new(33)
            },
        ] {
            assert!(
                matches!(cfg.check(), Err(ModelError::InvalidConfig(_))),
                "{cfg:?}"
            );
        }
    }

    /// Folding x ↦ x·a + b into the first layer gives, on x, the network's output on x·a + b.
    #[test]
    fn folded_input_affine_matches_the_transformed_input() {
        let dev = Device::Cpu;
        let net = PatchNet::new(
            PatchNetConfig::new(17),
            VarBuilder::from_varmap(&VarMap::new(), DType::F32, &dev),
        )
        .unwrap();
        let (scale, shift) = ([20.0f32, 0.5, 3.0], [-12.0f32, 0.25, 1.5]);
        let folded = net.fold_input_affine(&scale, &shift).unwrap();
        let x = Tensor::rand(0f32, 1f32, (2, 3, 17, 17), &dev).unwrap();
        let transformed = x
            .broadcast_mul(&Tensor::from_slice(&scale, (1, 3, 1, 1), &dev).unwrap())
            .unwrap()
            .broadcast_add(&Tensor::from_slice(&shift, (1, 3, 1, 1), &dev).unwrap())
            .unwrap();
        let want = net.descriptors(&transformed).unwrap();
        let got = folded.descriptors(&x).unwrap();
        let diff = crate::test_support::max_abs_diff(&want, &got);
        let size = crate::test_support::max_abs_diff(&want, &want.zeros_like().unwrap());
        assert!(
            size > 0.0 && diff <= 1e-4 * size,
            "diff {diff} at size {size}"
        );
        assert!(net.fold_input_affine(&scale[..2], &shift).is_err());
    }

    /// The network's first layer by hand: conv + bias + leaky ReLU at one output element.
    #[test]
    fn first_layer_matches_a_hand_computation() {
        let cfg = PatchNetConfig::new(17);
        let varmap = VarMap::new();
        let net = PatchNet::new(
            cfg,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let Layer::Conv(c1) = &net.layers()[0] else {
            panic!("first layer is a convolution")
        };
        let x = Tensor::rand(-1f32, 1f32, (1, 3, 17, 17), &Device::Cpu).unwrap();
        let y = conv(&x, c1, 1, 5e-3).unwrap();
        assert_eq!(y.dims(), &[1, 128, 12, 12]);
        let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let ws = c1.weight.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bs = c1.bias.to_vec1::<f32>().unwrap();
        let ys = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (o, r, col) in [(0, 0, 0), (7, 3, 11), (127, 11, 5)] {
            let mut acc = bs[o] as f64;
            for ci in 0..3 {
                for ky in 0..6 {
                    for kx in 0..6 {
                        acc += (xs[ci * 289 + (r + ky) * 17 + col + kx] as f64)
                            * (ws[((o * 3 + ci) * 6 + ky) * 6 + kx] as f64);
                    }
                }
            }
            let expected = if acc > 0.0 { acc } else { 5e-3 * acc };
            let got = ys[(o * 12 + r) * 12 + col] as f64;
            assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
        }
    }

    #[test]
    fn detached_network_gives_the_same_output_without_a_graph() {
        let varmap = VarMap::new();
        let net = PatchNet::new(
            PatchNetConfig::new(33),
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let detached = net.detach();
        let x = Tensor::rand(0f32, 1f32, (2, 3, 33, 33), &Device::Cpu).unwrap();
        let a = net.descriptors(&x).unwrap();
        let b = detached.descriptors(&x).unwrap();
        assert!(a.track_op() && !b.track_op());
        // Frozen convolutions run through Winograd, trainable ones through the direct
        // kernels (ust-conv): the same values up to float rounding.
        let scale = max_abs_diff(&a, &a.zeros_like().unwrap());
        let diff = max_abs_diff(&a, &b);
        assert!(diff <= 1e-5 * scale.max(1.0), "{diff} against {scale}");
        assert!(net.parameters().iter().all(|(_, t)| t.is_variable()));
        assert!(detached.parameters().iter().all(|(_, t)| !t.is_variable()));
    }

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        for p in SUPPORTED_PATCH_SIZES {
            let cfg = PatchNetConfig {
                descriptor_dim: 16,
                ..PatchNetConfig::new(p)
            };
            let varmap = VarMap::new();
            let net = PatchNet::new(
                cfg.clone(),
                VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
            )
            .unwrap();
            let path = dir.path().join(format!("net{p}.safetensors"));
            net.save(&path).unwrap();
            assert_eq!(PatchNet::read_config(&path).unwrap(), cfg);

            let x = Tensor::rand(0f32, 1f32, (3, 3, p, p), &Device::Cpu).unwrap();
            // Detached, every network takes the same (inference) path, so equal parameters
            // give equal bits.
            let want = net.detach().descriptors(&x).unwrap();
            for loaded in [
                PatchNet::load(&path, &Device::Cpu).unwrap(),
                PatchNet::load_as(&path, &cfg, &Device::Cpu).unwrap(),
                PatchNet::load_trainable(&path, Some(&cfg), &VarMap::new(), &Device::Cpu).unwrap(),
            ] {
                assert_eq!(loaded.config(), &cfg);
                let got = loaded.detach().descriptors(&x).unwrap();
                let diff = (got - &want).unwrap().abs().unwrap().max_all().unwrap();
                assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
            }
        }
    }

    #[test]
    fn loading_the_wrong_architecture_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let cfg33 = PatchNetConfig::new(33);
        let net = PatchNet::new(
            cfg33.clone(),
            VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu),
        )
        .unwrap();
        let path = dir.path().join("p33.safetensors");
        net.save(&path).unwrap();

        let cfg65 = PatchNetConfig::new(65);
        let err = PatchNet::load_as(&path, &cfg65, &Device::Cpu).unwrap_err();
        match &err {
            ModelError::ArchitectureMismatch {
                path: p,
                expected,
                found,
            } => {
                assert_eq!(p, &path);
                assert!(expected.contains("\"patch_size\":65"), "{expected}");
                assert!(found.contains("\"patch_size\":33"), "{found}");
            }
            other => panic!("expected ArchitectureMismatch, got {other:?}"),
        }
        assert!(err.to_string().contains("p33.safetensors"));
        let err = PatchNet::load_trainable(&path, Some(&cfg65), &VarMap::new(), &Device::Cpu)
            .unwrap_err();
        assert!(matches!(err, ModelError::ArchitectureMismatch { .. }));

        // A safetensors file without our metadata (here: candle's own writer).
        let bare = dir.path().join("bare.safetensors");
        candle_core::safetensors::save(
            &net.parameters().into_iter().collect::<HashMap<_, _>>(),
            &bare,
        )
        .unwrap();
        let err = PatchNet::load(&bare, &Device::Cpu).unwrap_err();
        assert!(matches!(err, ModelError::BadWeights { .. }), "{err:?}");

        // Not a safetensors file at all, and a missing file.
        let junk = dir.path().join("junk.safetensors");
        std::fs::write(&junk, b"definitely not safetensors").unwrap();
        assert!(matches!(
            PatchNet::load(&junk, &Device::Cpu).unwrap_err(),
            ModelError::BadWeights { .. }
        ));
        assert!(matches!(
            PatchNet::load(dir.path().join("missing"), &Device::Cpu).unwrap_err(),
            ModelError::Io { .. }
        ));
    }

    /// Metadata that claims one architecture over tensors of another is caught by name/shape.
    #[test]
    fn metadata_and_tensors_must_agree() {
        let dir = tempfile::tempdir().unwrap();
        let net = PatchNet::new(
            PatchNetConfig::new(17),
            VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu),
        )
        .unwrap();
        let path = dir.path().join("lying.safetensors");
        let meta = HashMap::from([
            (
                METADATA_MODEL_KEY.to_string(),
                METADATA_MODEL_VALUE.to_string(),
            ),
            (
                METADATA_CONFIG_KEY.to_string(),
                PatchNetConfig {
                    descriptor_dim: 64,
                    ..PatchNetConfig::new(17)
                }
                .to_json(),
            ),
        ]);
        safetensors::serialize_to_file(net.parameters(), Some(meta), &path).unwrap();
        let err = PatchNet::load(&path, &Device::Cpu).unwrap_err();
        assert!(matches!(err, ModelError::BadWeights { .. }), "{err:?}");
        assert!(err.to_string().contains("conv4"), "{err}");
    }
}
