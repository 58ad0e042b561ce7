//! The configuration of a teacher pretraining run ([`TeacherTrainingConfig`]): what it holds,
//! what it implies (distillation, bank, dense windows) and its check. Its presets (`paper`,
//! `cpu`, `smoke`) and TOML files are in `presets.rs`.
//!
//! A config file says *what* is trained (patch size, losses, backbone, data); a preset says
//! *how much* (iterations, batch, optimiser, caches). Loading a file starts from the preset's
//! values for the file's patch size and overrides them with every key the file sets, so a file
//! may set as little as `teacher.patch_size` and as much as every field. A table named after a
//! preset (`[cpu.schedule]`, `[paper.data]`, …) applies only when that preset is chosen, after
//! the general keys. Unknown keys are errors. `$UST_SHARED` at the start of a path is replaced by the environment variable of that
//! name, or by `../shared` when it is unset.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use ust_data::shared::{SHARED_PLACEHOLDER, expand_shared};
use ust_losses::TeacherLossWeights;
use ust_models::PatchNetConfig;

use crate::error::{DetectorError, Result};
use crate::preset::Preset;
use crate::training::adam::AdamConfig;
use crate::training::guard::GuardConfig;

/// The frozen pretrained network whose pooled features the teacher distils.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackboneKind {
    /// EfficientNet-Lite0, pooled 1280-d head features (the substitute this machine has,
    /// METHOD.md §10).
    #[serde(rename = "efficientnet-lite0")]
    EfficientNetLite0,
    /// ResNet-18, pooled 512-d features (the paper's).
    #[serde(rename = "resnet18")]
    ResNet18,
}

/// The side patches are given to the backbone at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BackboneInputSize {
    /// Resized (bilinear) to this side, e.g. 224, the size the network was trained at.
    Side(usize),
    /// `"native"`: the p×p patch as it is.
    Keyword(InputSizeKeyword),
}

/// The keyword form of [`BackboneInputSize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputSizeKeyword {
    /// The patch at its own size.
    Native,
}

impl BackboneInputSize {
    /// The resize target, `None` for native.
    pub fn resize_to(self) -> Option<usize> {
        match self {
            BackboneInputSize::Side(s) => Some(s),
            BackboneInputSize::Keyword(InputSizeKeyword::Native) => None,
        }
    }
}

/// The distillation backbone (used only when `losses.lambda_k > 0`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneConfig {
    /// Which network.
    pub kind: BackboneKind,
    /// Its weights (safetensors). Unset: EfficientNet-Lite0 reads
    /// `$UST_SHARED/weights/efficientnet_lite0.safetensors`; ResNet-18 looks in the local
    /// Hugging Face cache, then downloads (unless `HF_HUB_OFFLINE` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    /// The side patches are given to it at: `"native"` or a number (e.g. 224).
    pub input_size: BackboneInputSize,
}

impl BackboneConfig {
    /// Expands `$UST_SHARED` in the weights' path and fills in EfficientNet-Lite0's default
    /// (`$UST_SHARED/weights/efficientnet_lite0.safetensors`); ResNet-18 without a path stays
    /// unset (the Hugging Face cache).
    pub fn resolve(mut self) -> Self {
        self.weights = match (self.weights.take(), self.kind) {
            (Some(w), _) => Some(expand_shared(&w)),
            (None, BackboneKind::EfficientNetLite0) => Some(expand_shared(&format!(
                "{SHARED_PLACEHOLDER}/weights/efficientnet_lite0.safetensors"
            ))),
            (None, BackboneKind::ResNet18) => None,
        };
        self
    }
}

/// The natural-image patch triplets (METHOD.md §4; see `ust_data::triplets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Any folder of images, searched recursively (an ImageNet `train/` tree works).
    pub folder: String,
    /// Rescaled sides are drawn from `[min_side_factor·p, max_side_factor·p]` (4 and 16).
    pub min_side_factor: usize,
    pub max_side_factor: usize,
    /// Gaussian noise of the positive (0.1, pixels in [0, 1]).
    pub noise_std: f64,
    /// Probability that a patch turns grey (0.1).
    pub grayscale_prob: f64,
    /// Rescaled source images kept for sampling, and how many are replaced per sampler batch.
    pub pool_size: usize,
    pub refresh_per_batch: usize,
    /// Threads decoding images, and sampler batches prepared ahead.
    pub decode_threads: usize,
    pub prefetch_batches: usize,
    /// Skip images that fail to decode (with a warning) instead of stopping.
    pub skip_unreadable: bool,
}

/// Length of the run and bookkeeping intervals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Optimiser steps in total (a resumed run continues up to this number).
    pub iterations: usize,
    /// Patches (triplets when λm > 0) per step.
    pub batch_size: usize,
    /// A checkpoint is written every this many iterations (and at the end). The triplet
    /// sampler is also restarted, with a seed derived from the iteration, at these boundaries,
    /// which is what makes a resumed run identical to an uninterrupted one.
    pub checkpoint_every: usize,
    /// A log line every this many iterations.
    pub log_every: usize,
}

/// The bank of cached distillation targets.
///
/// `bank_size = 0` computes the backbone's features for every batch, as the paper does. With a
/// bank, every step computes features for `refresh_per_iteration` new patches only, puts them
/// into a ring of `bank_size` (patch, feature) pairs, replacing the oldest, and trains on
/// `batch_size` pairs drawn from the ring without replacement; a patch is thus used about
/// `batch_size / refresh_per_iteration` times over its stay in the bank, instead of once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillationCacheConfig {
    /// Pairs in the ring; 0: no bank.
    pub bank_size: usize,
    /// New pairs per step.
    pub refresh_per_iteration: usize,
}

impl DistillationCacheConfig {
    /// Whether the bank is in use (it is, for a run that distils, when `bank_size > 0`).
    pub fn enabled(&self) -> bool {
        self.bank_size > 0
    }
}

/// How the distillation targets are paired with the teacher's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DistillationMode {
    /// The paper's (METHOD.md §4): one p×p patch, one pooled backbone feature vector.
    #[default]
    Patch,
    /// A deviation from the paper, as later student–teacher methods train: the teacher runs as
    /// a strided network over a window of `grid`² overlapping patches, and each output
    /// regresses the backbone's last feature-map cell at the same place, the window being
    /// enlarged for the backbone by (backbone stride / teacher stride) so that the two grids
    /// coincide; a p×p patch is thus seen by the backbone at p·32/s pixels (264 for p = 33,
    /// s = 4). One backbone pass gives `grid`² targets instead of one.
    Dense,
}

/// Patch-wise (the paper's) or dense distillation; recorded in the teacher file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillationConfig {
    pub mode: DistillationMode,
    /// Dense mode: teacher outputs per side of one training window (16: a 93×93 window for
    /// p = 33). `schedule.batch_size` then counts windows per step.
    pub dense_grid: usize,
}

impl Default for DistillationConfig {
    fn default() -> Self {
        Self {
            mode: DistillationMode::Patch,
            dense_grid: 16,
        }
    }
}

/// Everything a teacher pretraining run depends on. Build it with a preset constructor or
/// [`TeacherTrainingConfig::from_toml_file`], then [`TeacherTrainingConfig::resolve`] and
/// [`TeacherTrainingConfig::check`] before training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherTrainingConfig {
    /// The preset the values started from (a record; the values below are what counts).
    pub preset: Preset,
    /// Seeds the initial weights, the triplets and the bank's draws.
    pub seed: u64,
    /// The teacher's architecture (METHOD.md §2).
    pub teacher: PatchNetConfig,
    /// λk, λm, λc, the triplet margin and the compactness kind.
    pub losses: TeacherLossWeights,
    pub backbone: BackboneConfig,
    pub data: DataConfig,
    pub optimizer: AdamConfig,
    pub schedule: ScheduleConfig,
    pub distillation_cache: DistillationCacheConfig,
    pub guard: GuardConfig,
    /// Patch-wise or dense distillation (files written before the option read as patch-wise).
    #[serde(default)]
    pub distillation: DistillationConfig,
}

/// The triplet margin δ of every preset: the descriptors are not normalised, so δ only fixes
/// the scale of the embedding (any δ > 0 is equivalent to δ = 1 up to a rescaling of the last
/// layer, which the weight decay slightly penalises); 1 keeps squared distances of order 1,
/// the scale at which the compactness loss (scale-free) and the decoder (linear) are neutral.
pub const DEFAULT_TRIPLET_MARGIN: f64 = 1.0;

impl TeacherTrainingConfig {
    /// The data folder, `$UST_SHARED` expanded.
    pub fn data_folder(&self) -> PathBuf {
        PathBuf::from(expand_shared(&self.data.folder))
    }

    /// Expands `$UST_SHARED` in the paths and fills in the default backbone weights, so that
    /// the configuration written beside the output says exactly which files were read.
    pub fn resolve(mut self) -> Self {
        self.data.folder = self.data_folder().display().to_string();
        if self.losses.lambda_k > 0.0 {
            self.backbone = self.backbone.resolve();
        }
        self
    }

    /// Whether the run distils (λk > 0) and so needs the backbone.
    pub fn uses_distillation(&self) -> bool {
        self.losses.lambda_k > 0.0
    }

    /// Whether distillation targets come from the bank (patch-wise distillation only).
    pub fn uses_bank(&self) -> bool {
        self.uses_distillation()
            && self.distillation_cache.enabled()
            && !self.uses_dense_distillation()
    }

    /// Whether the teacher is trained densely ([`DistillationMode::Dense`]).
    pub fn uses_dense_distillation(&self) -> bool {
        self.uses_distillation() && self.distillation.mode == DistillationMode::Dense
    }

    /// (Patch, target) pairs per step: the batch, or in dense mode windows × grid².
    pub fn patches_per_step(&self) -> usize {
        if self.uses_dense_distillation() {
            self.schedule.batch_size * self.distillation.dense_grid.pow(2)
        } else {
            self.schedule.batch_size
        }
    }

    /// The teacher's total stride (2 per max-pool).
    pub fn teacher_stride(&self) -> usize {
        1 << self.teacher.num_pools()
    }

    /// Side of a dense training window: `dense_grid` outputs of the strided teacher.
    pub fn dense_window(&self) -> usize {
        self.teacher.patch_size + self.teacher_stride() * (self.distillation.dense_grid.max(1) - 1)
    }

    /// Triplets per sampler batch: a full batch, or the bank's refresh.
    pub fn sampler_batch_size(&self) -> usize {
        if self.uses_bank() {
            self.distillation_cache.refresh_per_iteration
        } else {
            self.schedule.batch_size
        }
    }

    /// Validates everything that can be validated without touching the disk.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(DetectorError::InvalidConfig(m));
        self.teacher
            .check()
            .map_err(|e| DetectorError::InvalidConfig(format!("teacher: {e}")))?;
        if self.teacher.in_channels != 3 {
            return bad(format!(
                "teacher.in_channels must be 3 (the patches are RGB), got {}",
                self.teacher.in_channels
            ));
        }
        self.losses
            .check()
            .map_err(|e| DetectorError::InvalidConfig(format!("losses: {e}")))?;
        self.optimizer.check()?;
        let s = &self.schedule;
        if s.iterations == 0 || s.checkpoint_every == 0 || s.log_every == 0 {
            return bad(format!(
                "schedule.iterations ({}), checkpoint_every ({}) and log_every ({}) must be \
                 positive",
                s.iterations, s.checkpoint_every, s.log_every
            ));
        }
        if s.batch_size < 2 {
            return bad(format!(
                "schedule.batch_size must be at least 2 (the compactness loss correlates over \
                 the batch), got {}",
                s.batch_size
            ));
        }
        if self.uses_bank() {
            let c = &self.distillation_cache;
            if c.bank_size < s.batch_size {
                return bad(format!(
                    "distillation_cache.bank_size {} is smaller than the batch {}",
                    c.bank_size, s.batch_size
                ));
            }
            if c.refresh_per_iteration == 0 || c.refresh_per_iteration > c.bank_size {
                return bad(format!(
                    "distillation_cache.refresh_per_iteration {} must be in 1..={}",
                    c.refresh_per_iteration, c.bank_size
                ));
            }
        }
        if self.distillation.mode == DistillationMode::Dense {
            if !self.uses_distillation() || self.losses.lambda_m > 0.0 {
                return bad(format!(
                    "distillation.mode = \"dense\" needs lambda_k > 0 and lambda_m = 0 (got \
                     λk = {}, λm = {}): dense windows have no triplets; use mode = \"patch\" \
                     for metric learning",
                    self.losses.lambda_k, self.losses.lambda_m
                ));
            }
            if self.distillation.dense_grid == 0 {
                return bad("distillation.dense_grid must be at least 1".into());
            }
            if self.backbone.input_size.resize_to().is_some() {
                return bad(
                    "distillation.mode = \"dense\" fixes the backbone's scale itself (the \
                     window enlarged by backbone stride / teacher stride): set \
                     backbone.input_size = \"native\""
                        .into(),
                );
            }
            if 32 % self.teacher_stride() != 0 {
                return bad(format!(
                    "dense distillation needs a teacher stride dividing the backbone's 32, got {}",
                    self.teacher_stride()
                ));
            }
        }
        if let BackboneInputSize::Side(0) = self.backbone.input_size {
            return bad("backbone.input_size must be positive or \"native\"".into());
        }
        if self.data.folder.is_empty() {
            return bad("data.folder is empty".into());
        }
        let g = &self.guard;
        if !(g.explode_factor.is_finite() && g.explode_factor > 1.0) {
            return bad(format!(
                "guard.explode_factor must be finite and > 1, got {}",
                g.explode_factor
            ));
        }
        Ok(())
    }

    /// The triplet sampler's configuration for the segment starting at `iteration`.
    pub(crate) fn triplet_config(&self, segment_seed: u64) -> ust_data::TripletConfig {
        let d = &self.data;
        // Dense windows are sampled at the scales patches would be (the side factors multiply
        // p, not the window) and need no shifted positive.
        let dense = self.uses_dense_distillation();
        ust_data::TripletConfig {
            patch_size: if dense {
                self.dense_window()
            } else {
                self.teacher.patch_size
            },
            batch_size: self.sampler_batch_size(),
            min_side_factor: d.min_side_factor,
            max_side_factor: d.max_side_factor,
            side_unit: dense.then_some(self.teacher.patch_size),
            max_shift: dense.then_some(0),
            noise_std: d.noise_std as f32,
            grayscale_prob: d.grayscale_prob,
            pool_size: d.pool_size,
            refresh_per_batch: d.refresh_per_batch,
            prefetch_batches: d.prefetch_batches,
            decode_threads: d.decode_threads,
            seed: segment_seed,
            skip_unreadable: d.skip_unreadable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_distillation_windows_and_checks() {
        let mut c = TeacherTrainingConfig::cpu(33);
        assert_eq!(c.distillation.mode, DistillationMode::Patch);
        c.distillation.mode = DistillationMode::Dense;
        c.check().unwrap();
        assert!(c.uses_dense_distillation() && !c.uses_bank());
        // p = 33 pools twice: stride 4, 16 outputs per side from 33 + 4·15 pixels (p = 17
        // has no pool, p = 65 three).
        assert_eq!((c.teacher_stride(), c.dense_window()), (4, 93));
        assert_eq!(c.patches_per_step(), 64 * 256);
        let t = c.triplet_config(0);
        assert_eq!(
            (t.patch_size, t.side_unit, t.max_shift),
            (93, Some(33), Some(0))
        );
        assert_eq!(t.side_range(), (4 * 33, 16 * 33));
        for p in [17, 65] {
            let mut d = TeacherTrainingConfig::cpu(p);
            d.distillation.mode = DistillationMode::Dense;
            let s = if p == 17 { 1 } else { 8 };
            assert_eq!(d.dense_window(), p + s * 15);
        }
        let refused = |edit: fn(&mut TeacherTrainingConfig)| {
            let mut d = c.clone();
            edit(&mut d);
            d.check().unwrap_err().to_string()
        };
        assert!(refused(|d| d.losses.lambda_m = 1.0).contains("lambda_m = 0"));
        assert!(refused(|d| d.distillation.dense_grid = 0).contains("dense_grid"));
        assert!(
            refused(|d| d.backbone.input_size = BackboneInputSize::Side(224))
                .contains("input_size = \"native\"")
        );
        // A file that predates the option reads as patch-wise; a dense one round-trips.
        let mut table = toml::Table::try_from(TeacherTrainingConfig::cpu(33)).unwrap();
        table.remove("distillation");
        let old: TeacherTrainingConfig = table.try_into().unwrap();
        assert_eq!(old.distillation, DistillationConfig::default());
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("mode = \"dense\""), "{text}");
        assert_eq!(toml::from_str::<TeacherTrainingConfig>(&text).unwrap(), c);
    }

    #[test]
    fn check_rejects_bad_values() {
        let base = TeacherTrainingConfig::cpu(33);
        let mut cases = Vec::new();
        let mut c = base.clone();
        c.schedule.batch_size = 1;
        cases.push((c, "batch_size"));
        let mut c = base.clone();
        c.schedule.iterations = 0;
        cases.push((c, "iterations"));
        let mut c = base.clone();
        c.distillation_cache.bank_size = 32;
        cases.push((c, "bank_size"));
        let mut c = base.clone();
        c.distillation_cache.refresh_per_iteration = 0;
        cases.push((c, "refresh_per_iteration"));
        let mut c = base.clone();
        c.teacher.patch_size = 31;
        cases.push((c, "patch_size"));
        let mut c = base.clone();
        c.losses.lambda_k = -1.0;
        cases.push((c, "lambda_k"));
        let mut c = base.clone();
        c.optimizer.learning_rate = f64::NAN;
        cases.push((c, "learning_rate"));
        let mut c = base.clone();
        c.optimizer.beta2 = 1.0;
        cases.push((c, "beta2"));
        let mut c = base.clone();
        c.guard.explode_factor = 0.5;
        cases.push((c, "explode_factor"));
        for (c, needle) in cases {
            let err = c.check().unwrap_err();
            assert!(err.to_string().contains(needle), "{needle}: {err}");
        }
        // Without distillation the bank is unused, so its sizes do not matter.
        let mut c = base;
        c.losses.lambda_k = 0.0;
        c.losses.lambda_m = 1.0;
        c.distillation_cache.bank_size = 1;
        c.check().unwrap();
        assert_eq!(c.sampler_batch_size(), 64);
    }
}
