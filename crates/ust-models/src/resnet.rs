//! ResNet-18 (the paper's distillation backbone, METHOD.md §4), inference only, with an
//! offline-first resolution of its weights: an explicit local path, else the local Hugging
//! Face cache, else (when allowed) a download through hf-hub.
//!
//! Weights use torchvision's parameter names (`conv1.weight`, `bn1.running_mean`,
//! `layer1.0.conv1.weight`, `layer2.0.downsample.0.weight`, …); the `fc` layer is not needed.
//! Input normalisation is ImageNet's mean/std on [0, 1] RGB.
//!
//! The network is written here (a few dozen lines) rather than taken from candle-transformers,
//! whose 80 000 lines of other models made up a large part of the cold release build that
//! `ust demo` starts with; a test checks it against candle-transformers' ResNet-18 (a
//! dev-dependency only).

use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{BatchNorm, Conv2d, Conv2dConfig, ModuleT, VarBuilder};

use crate::backbone::Backbone;
use crate::error::{ModelError, Result};

/// Pooled feature dimension of ResNet-18.
pub const RESNET18_FEATURES: usize = 512;

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A file in a Hugging Face model repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFile {
    /// `owner/name`.
    pub repo_id: String,
    /// Path of the file in the repository.
    pub filename: String,
    /// Branch, tag or 40-hex commit.
    pub revision: String,
}

impl HubFile {
    /// ResNet-18 ImageNet weights in torchvision naming, as used by candle's resnet example.
    pub fn resnet18_default() -> Self {
        Self {
            repo_id: "lmz/candle-resnet".into(),
            filename: "resnet18.safetensors".into(),
            revision: "main".into(),
        }
    }

    /// The repository's folder name in the cache (`models--owner--name`).
    fn cache_folder(&self) -> String {
        format!("models--{}", self.repo_id.replace('/', "--"))
    }
}

/// Where resolved weights came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightOrigin {
    /// The explicit path given by the user.
    ExplicitPath,
    /// The local Hugging Face cache (no network).
    LocalCache,
    /// Downloaded through hf-hub (into the cache).
    Downloaded,
}

/// Offline-first resolution of a weight file.
#[derive(Debug, Clone)]
pub struct WeightSource {
    /// An explicit file; when set, it must exist and nothing else is tried.
    pub explicit: Option<PathBuf>,
    /// The file on the Hub.
    pub hub: HubFile,
    /// The Hugging Face cache directory (see [`default_hf_cache_dir`]).
    pub cache_dir: Option<PathBuf>,
    /// Whether a download may be attempted when the cache misses.
    pub allow_network: bool,
}

impl WeightSource {
    /// A source for `hub` with the default cache directory; the network is allowed unless
    /// `HF_HUB_OFFLINE` is set to a true value.
    pub fn new(hub: HubFile) -> Self {
        let offline = std::env::var("HF_HUB_OFFLINE")
            .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
            .unwrap_or(false);
        Self {
            explicit: None,
            hub,
            cache_dir: default_hf_cache_dir(|k| std::env::var(k).ok()),
            allow_network: !offline,
        }
    }

    /// This source with an explicit local file.
    pub fn with_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.explicit = Some(path.into());
        self
    }

    /// Resolves the file: explicit path, then the local cache, then the network.
    pub fn resolve(&self) -> Result<(PathBuf, WeightOrigin)> {
        if let Some(p) = &self.explicit {
            return if p.is_file() {
                Ok((p.clone(), WeightOrigin::ExplicitPath))
            } else {
                Err(ModelError::WeightsNotFound(format!(
                    "explicit weight file {} does not exist",
                    p.display()
                )))
            };
        }
        if let Some(dir) = &self.cache_dir
            && let Some(p) = find_in_hf_cache(dir, &self.hub)
        {
            return Ok((p, WeightOrigin::LocalCache));
        }
        let tried_cache = match &self.cache_dir {
            Some(d) => format!("not in the Hugging Face cache {}", d.display()),
            None => "no Hugging Face cache directory".to_string(),
        };
        if !self.allow_network {
            return Err(ModelError::WeightsNotFound(format!(
                "{} ({}) is {tried_cache}, and the network is not allowed; pass a local path",
                self.hub.filename, self.hub.repo_id
            )));
        }
        download(&self.hub, self.cache_dir.as_deref())
            .map(|p| (p, WeightOrigin::Downloaded))
            .map_err(|e| {
                ModelError::WeightsNotFound(format!(
                    "{} ({}) is {tried_cache}, and the download failed: {e}; pass a local path",
                    self.hub.filename, self.hub.repo_id
                ))
            })
    }
}

/// The Hugging Face cache directory from the environment (`lookup` reads a variable):
/// `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `$XDG_CACHE_HOME/huggingface/hub`, else `$HOME/.cache/huggingface/hub`.
pub fn default_hf_cache_dir(lookup: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let non_empty = |k: &str| lookup(k).filter(|v| !v.is_empty());
    if let Some(v) = non_empty("HF_HUB_CACHE").or_else(|| non_empty("HUGGINGFACE_HUB_CACHE")) {
        return Some(PathBuf::from(v));
    }
    if let Some(v) = non_empty("HF_HOME") {
        return Some(PathBuf::from(v).join("hub"));
    }
    if let Some(v) = non_empty("XDG_CACHE_HOME") {
        return Some(PathBuf::from(v).join("huggingface").join("hub"));
    }
    non_empty("HOME").map(|h| {
        PathBuf::from(h)
            .join(".cache")
            .join("huggingface")
            .join("hub")
    })
}

fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The cached file of `hub` under `cache_dir`, following the Hub cache layout:
/// `models--owner--name/refs/<revision>` holds a commit, the file is
/// `models--owner--name/snapshots/<commit>/<filename>`.
pub fn find_in_hf_cache(cache_dir: &Path, hub: &HubFile) -> Option<PathBuf> {
    let repo = cache_dir.join(hub.cache_folder());
    let commit = if is_commit_hash(&hub.revision) {
        hub.revision.clone()
    } else {
        std::fs::read_to_string(repo.join("refs").join(&hub.revision))
            .ok()?
            .trim()
            .to_string()
    };
    if commit.is_empty() {
        return None;
    }
    let file = repo.join("snapshots").join(commit).join(&hub.filename);
    file.is_file().then_some(file)
}

#[cfg(not(feature = "hub"))]
fn download(_hub: &HubFile, _cache_dir: Option<&Path>) -> std::result::Result<PathBuf, String> {
    Err("this build has no Hugging Face Hub client (rebuild with `--features hub`)".to_string())
}

#[cfg(feature = "hub")]
fn download(hub: &HubFile, cache_dir: Option<&Path>) -> std::result::Result<PathBuf, String> {
    tracing::info!(repo = %hub.repo_id, file = %hub.filename, "downloading weights from the Hugging Face Hub");
    let mut builder = hf_hub::HFClient::builder();
    if let Some(d) = cache_dir {
        builder = builder.cache_dir(d);
    }
    let client = builder.build().map_err(|e| e.to_string())?;
    let client = hf_hub::HFClientSync::from_inner(client).map_err(|e| e.to_string())?;
    let (owner, name) = hf_hub::split_id(&hub.repo_id);
    client
        .model(owner, name)
        .download_file()
        .filename(hub.filename.clone())
        .revision(hub.revision.clone())
        .send()
        .map_err(|e| e.to_string())
}

/// Configuration of [`ResNet18`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResNet18Config {
    /// Resize patches (bilinear) to this side first; `None` (the default) runs them at their own
    /// size. The network was trained at 224.
    pub resize_to: Option<usize>,
}

impl ResNet18Config {
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

/// A 3×3/1×1 convolution without bias followed by inference-mode batch normalisation.
#[derive(Debug, Clone)]
struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
}

impl ConvBn {
    /// `conv` and `bn` are the parameter prefixes (torchvision names them `conv1`/`bn1`, or
    /// `downsample.0`/`downsample.1`).
    fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        conv: VarBuilder,
        bn: VarBuilder,
    ) -> candle_core::Result<Self> {
        let cfg = Conv2dConfig {
            padding: kernel / 2,
            stride,
            ..Default::default()
        };
        Ok(Self {
            conv: candle_nn::conv2d_no_bias(c_in, c_out, kernel, cfg, conv)?,
            bn: candle_nn::batch_norm(c_out, 1e-5, bn)?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.bn.forward_t(&x.apply(&self.conv)?, false)
    }
}

/// ResNet's basic block: two 3×3 conv-BN pairs and a shortcut (1×1 conv-BN where the shape
/// changes).
#[derive(Debug, Clone)]
struct BasicBlock {
    first: ConvBn,
    second: ConvBn,
    shortcut: Option<ConvBn>,
}

impl BasicBlock {
    fn new(c_in: usize, c_out: usize, stride: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let shortcut = if stride != 1 || c_in != c_out {
            let ds = vb.pp("downsample");
            Some(ConvBn::new(c_in, c_out, 1, stride, ds.pp("0"), ds.pp("1"))?)
        } else {
            None
        };
        Ok(Self {
            first: ConvBn::new(c_in, c_out, 3, stride, vb.pp("conv1"), vb.pp("bn1"))?,
            second: ConvBn::new(c_out, c_out, 3, 1, vb.pp("conv2"), vb.pp("bn2"))?,
            shortcut,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.second.forward(&self.first.forward(x)?.relu()?)?;
        let skip = match &self.shortcut {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        (skip + y)?.relu()
    }
}

/// ResNet-18 up to the global average pool (He et al. 2016; torchvision's layout).
#[derive(Debug, Clone)]
struct ResNet18Trunk {
    stem: ConvBn,
    blocks: Vec<BasicBlock>,
}

impl ResNet18Trunk {
    fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let stem_cfg = Conv2dConfig {
            padding: 3,
            stride: 2,
            ..Default::default()
        };
        let stem = ConvBn {
            conv: candle_nn::conv2d_no_bias(3, 64, 7, stem_cfg, vb.pp("conv1"))?,
            bn: candle_nn::batch_norm(64, 1e-5, vb.pp("bn1"))?,
        };
        let mut blocks = Vec::with_capacity(8);
        let mut c_in = 64;
        for (stage, c_out) in [64, 128, 256, 512].into_iter().enumerate() {
            let stage_vb = vb.pp(format!("layer{}", stage + 1));
            for index in 0..2 {
                let stride = if index == 0 && stage > 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(c_in, c_out, stride, stage_vb.pp(index))?);
                c_in = c_out;
            }
        }
        Ok(Self { stem, blocks })
    }
}

impl Module for ResNet18Trunk {
    /// # Shapes
    /// (N, 3, H, W) -> (N, 512)
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let _ = x.dims4()?;
        // 3×3/2 max pooling with one pixel of padding. The input is a ReLU output (≥ 0) and
        // every window holds at least one real pixel, so zero padding gives the same maxima
        // as torchvision's −∞ padding.
        let mut x = self
            .stem
            .forward(x)?
            .relu()?
            .pad_with_zeros(D::Minus1, 1, 1)?
            .pad_with_zeros(D::Minus2, 1, 1)?
            .max_pool2d_with_stride(3, 2)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        x.mean(D::Minus1)?.mean(D::Minus1)
    }
}

/// ResNet-18 without its classification layer: 512-d pooled features.
pub struct ResNet18 {
    config: ResNet18Config,
    trunk: ResNet18Trunk,
    mean: Tensor,
    std: Tensor,
}

impl std::fmt::Debug for ResNet18 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResNet18")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ResNet18 {
    /// Builds the network from `vb` (torchvision parameter names). The builder must own its
    /// tensors (`VarBuilder::from_tensors`, or a `VarMap` that lives for the whole program).
    pub fn new(config: ResNet18Config, vb: VarBuilder<'static>) -> Result<Self> {
        config.check()?;
        let device = vb.device().clone();
        let trunk = ResNet18Trunk::new(vb)?;
        Ok(Self {
            config,
            trunk,
            mean: Tensor::new(&IMAGENET_MEAN, &device)?.reshape((1, 3, 1, 1))?,
            std: Tensor::new(&IMAGENET_STD, &device)?.reshape((1, 3, 1, 1))?,
        })
    }

    /// Loads the network from a resolved weight source.
    pub fn load(source: &WeightSource, config: ResNet18Config, device: &Device) -> Result<Self> {
        let (path, origin) = source.resolve()?;
        tracing::debug!(path = %path.display(), ?origin, "ResNet-18 weights");
        Self::from_file(&path, config, device)
    }

    /// Loads the network from a local safetensors file.
    pub fn from_file(path: &Path, config: ResNet18Config, device: &Device) -> Result<Self> {
        let tensors = candle_core::safetensors::load(path, device)
            .map_err(|e| ModelError::bad_weights(path, format!("cannot read safetensors: {e}")))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        Self::new(config, vb).map_err(|e| ModelError::bad_weights(path, e.to_string()))
    }

    /// Pooled features of images already normalised with ImageNet mean/std.
    ///
    /// # Shapes
    /// (N, 3, H, W) -> (N, 512)
    pub fn pooled_normalized(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.trunk.forward(x)?)
    }
}

impl Backbone for ResNet18 {
    fn name(&self) -> &str {
        "resnet18"
    }

    fn feature_dim(&self) -> usize {
        RESNET18_FEATURES
    }

    fn preferred_input_size(&self) -> usize {
        224
    }

    fn resize_to(&self) -> Option<usize> {
        self.config.resize_to
    }

    fn pooled_features_native(&self, patches: &Tensor) -> Result<Tensor> {
        let x = patches
            .to_dtype(DType::F32)?
            .broadcast_sub(&self.mean)?
            .broadcast_div(&self.std)?;
        self.pooled_normalized(&x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;
    use std::collections::HashMap;

    /// Random weights under torchvision's names, written to a file, as a stand-in for the
    /// pretrained file (the test must not need the network).
    fn write_random_resnet18(path: &Path) {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        // Building through a VarMap creates every parameter the network asks for.
        let _ = ResNet18Trunk::new(vb).unwrap();
        let mut tensors: HashMap<String, Tensor> = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        // Running variances must be positive (the VarMap init may not make them so).
        for (k, t) in tensors.iter_mut() {
            if k.ends_with("running_var") {
                *t = (t.abs().unwrap() + 0.5).unwrap();
            }
        }
        candle_core::safetensors::save(&tensors, path).unwrap();
    }

    #[test]
    fn resnet18_builds_from_a_local_file_offline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resnet18.safetensors");
        write_random_resnet18(&path);
        let names = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        for n in [
            "conv1.weight",
            "bn1.running_mean",
            "layer1.0.conv1.weight",
            "layer4.1.bn2.bias",
        ] {
            assert!(names.contains_key(n), "{n}");
        }
        assert!(names.contains_key("layer2.0.downsample.0.weight"));
        assert_eq!(names["layer4.1.conv2.weight"].dims(), &[512, 512, 3, 3]);

        let source = WeightSource {
            explicit: Some(path.clone()),
            hub: HubFile::resnet18_default(),
            cache_dir: None,
            allow_network: false,
        };
        let net = ResNet18::load(
            &source,
            ResNet18Config {
                resize_to: Some(64),
            },
            &Device::Cpu,
        )
        .unwrap();
        let patches = Tensor::rand(0f32, 1f32, (2, 3, 33, 33), &Device::Cpu).unwrap();
        let f = net.pooled_features(&patches).unwrap();
        assert_eq!(f.dims(), &[2, RESNET18_FEATURES]);
        // After the final ReLU and average pooling the features are non-negative and finite.
        let v = f.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|x| x.is_finite() && *x >= 0.0));
        assert!(v.iter().any(|x| *x > 0.0));
        // Different patches give different features.
        assert_ne!(v[..512], v[512..]);
    }

    #[test]
    fn trunk_matches_candle_transformers_resnet18() {
        // Same random weights (positive running variances) through both implementations, on
        // an odd input size that exercises the padding of every stride-2 layer.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resnet18.safetensors");
        write_random_resnet18(&path);
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let ours = ResNet18Trunk::new(vb.clone()).unwrap();
        let theirs = candle_transformers::models::resnet::resnet18_no_final_layer(vb).unwrap();
        let x = Tensor::randn(0f32, 1f32, (2, 3, 45, 37), &Device::Cpu).unwrap();
        let a = ours.forward(&x).unwrap();
        let b = theirs.forward(&x).unwrap();
        assert_eq!(a.dims(), &[2, 512]);
        let diff = crate::test_support::max_abs_diff(&a, &b);
        let scale = crate::test_support::max_abs_diff(&b, &b.zeros_like().unwrap());
        assert!(scale > 0.0);
        assert!(
            diff <= 1e-4 * scale.max(1.0),
            "max |diff| {diff} (scale {scale})"
        );
    }

    #[test]
    fn wrong_file_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.safetensors");
        let t = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
        candle_core::safetensors::save(&HashMap::from([("x".to_string(), t)]), &path).unwrap();
        let err = ResNet18::from_file(&path, Default::default(), &Device::Cpu).unwrap_err();
        assert!(matches!(err, ModelError::BadWeights { .. }), "{err:?}");
        assert!(err.to_string().contains("other.safetensors"));
    }

    fn fake_cache(root: &Path, hub: &HubFile, commit: &str, with_ref: bool) -> PathBuf {
        let repo = root.join(hub.cache_folder());
        let snap = repo.join("snapshots").join(commit);
        std::fs::create_dir_all(&snap).unwrap();
        let file = snap.join(&hub.filename);
        std::fs::write(&file, b"weights").unwrap();
        if with_ref {
            std::fs::create_dir_all(repo.join("refs")).unwrap();
            std::fs::write(repo.join("refs").join(&hub.revision), format!("{commit}\n")).unwrap();
        }
        file
    }

    #[test]
    fn resolution_order_is_explicit_then_cache_then_network() {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubFile::resnet18_default();
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let cache = dir.path().join("hub");
        let cached = fake_cache(&cache, &hub, commit, true);
        let explicit = dir.path().join("mine.safetensors");
        std::fs::write(&explicit, b"mine").unwrap();

        // 1. An explicit path wins over the cache.
        let src = WeightSource {
            explicit: Some(explicit.clone()),
            hub: hub.clone(),
            cache_dir: Some(cache.clone()),
            allow_network: false,
        };
        assert_eq!(
            src.resolve().unwrap(),
            (explicit.clone(), WeightOrigin::ExplicitPath)
        );

        // A missing explicit path is an error, not a silent fallback.
        let src_missing = WeightSource {
            explicit: Some(dir.path().join("nope.safetensors")),
            ..src.clone()
        };
        assert!(
            matches!(src_missing.resolve(), Err(ModelError::WeightsNotFound(m)) if m.contains("nope"))
        );

        // 2. Without an explicit path, the cache (through refs/main).
        let src_cache = WeightSource {
            explicit: None,
            ..src.clone()
        };
        assert_eq!(
            src_cache.resolve().unwrap(),
            (cached.clone(), WeightOrigin::LocalCache)
        );

        // A revision given as a commit hash needs no ref.
        let hub_commit = HubFile {
            revision: commit.into(),
            ..hub.clone()
        };
        let cache2 = dir.path().join("hub2");
        let cached2 = fake_cache(&cache2, &hub_commit, commit, false);
        let src_commit = WeightSource {
            explicit: None,
            hub: hub_commit,
            cache_dir: Some(cache2),
            allow_network: false,
        };
        assert_eq!(
            src_commit.resolve().unwrap(),
            (cached2, WeightOrigin::LocalCache)
        );

        // 3. A cache miss with the network disallowed is a clear error (no download tried).
        let src_miss = WeightSource {
            explicit: None,
            hub: HubFile {
                filename: "resnet34.safetensors".into(),
                ..hub.clone()
            },
            cache_dir: Some(cache.clone()),
            allow_network: false,
        };
        match src_miss.resolve() {
            Err(ModelError::WeightsNotFound(m)) => {
                assert!(
                    m.contains("resnet34.safetensors") && m.contains("network is not allowed"),
                    "{m}"
                )
            }
            other => panic!("expected WeightsNotFound, got {other:?}"),
        }
        // A ref pointing at a missing snapshot is a miss too.
        std::fs::remove_file(&cached).unwrap();
        assert!(src_cache.resolve().is_err());
    }

    #[test]
    fn cache_dir_follows_the_hub_conventions() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            default_hf_cache_dir(env(&[
                ("HF_HUB_CACHE", "/a"),
                ("HF_HOME", "/b"),
                ("HOME", "/h")
            ])),
            Some(PathBuf::from("/a"))
        );
        assert_eq!(
            default_hf_cache_dir(env(&[("HUGGINGFACE_HUB_CACHE", "/c"), ("HF_HOME", "/b")])),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            default_hf_cache_dir(env(&[("HF_HOME", "/b"), ("HOME", "/h")])),
            Some(PathBuf::from("/b/hub"))
        );
        assert_eq!(
            default_hf_cache_dir(env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])),
            Some(PathBuf::from("/x/huggingface/hub"))
        );
        assert_eq!(
            default_hf_cache_dir(env(&[("HOME", "/h")])),
            Some(PathBuf::from("/h/.cache/huggingface/hub"))
        );
        assert_eq!(default_hf_cache_dir(env(&[])), None);
    }
}
