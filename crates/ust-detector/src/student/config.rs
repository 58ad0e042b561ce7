//! How the students of one scale are trained: the presets and their checks.

use serde::{Deserialize, Serialize};
use ust_models::{BorderPadding, DenseConfig};

use crate::error::{DetectorError, Result};
use crate::preset::Preset;
use crate::student::sampling::{CropCoverage, StudentSampling};
use crate::training::adam::{AdamConfig, WeightDecayMode};
use crate::training::guard::GuardConfig;

/// How students are trained for one category. Build it with [`StudentTrainingConfig::preset`]
/// (and change fields), then [`StudentTrainingConfig::check`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudentTrainingConfig {
    /// The preset the values started from (a record).
    pub preset: Preset,
    /// Seeds the students' initial weights, the validation split, the image order and crops.
    pub seed: u64,
    /// Students per scale (M).
    pub students: usize,
    /// Images are resized (bilinear) to `image_size × image_size` for training and scoring;
    /// anomaly maps are resized back to each image's own size.
    pub image_size: usize,
    /// Passes over the training images.
    pub epochs: usize,
    /// Stop after this many steps even if the epochs are not done (0: no cap). Bounds the
    /// time of the cpu preset on large categories.
    pub max_steps: usize,
    /// Side of the random square crop of the dense output each step trains on; 0 trains on
    /// the whole image (the paper).
    pub crop: usize,
    /// Where crops may lie (files written before this setting: `inside`).
    #[serde(default)]
    pub crop_coverage: CropCoverage,
    /// Whether the students share their image order and crops (files written before this
    /// setting: `shared`).
    #[serde(default)]
    pub student_sampling: StudentSampling,
    /// How the image border is extended for the teacher's targets, the students' training
    /// inputs and every later scoring (files written before this setting: `zeros`).
    #[serde(default)]
    pub padding: BorderPadding,
    /// Whether the students train on inputs standardised per channel by the training images'
    /// mean and standard deviation (folded into their first convolution when the scale file is
    /// written, so scoring needs nothing extra). Files written before this setting: `false`.
    /// A reparametrisation, not a change of the model: measured in the detector README.
    #[serde(default)]
    pub standardize_inputs: bool,
    /// Use at most this many training images (a seeded subset); 0 uses all.
    pub max_train_images: usize,
    /// Fraction of `train/good` held out for the score calibration (at least one image).
    pub validation_fraction: f64,
    /// Calibrate on at most this many of the held-out images (a seeded subset); 0 uses all
    /// (files written before this setting: all).
    #[serde(default)]
    pub max_validation_images: usize,
    pub optimizer: AdamConfig,
    /// Steps (images) between checkpoints.
    pub checkpoint_every: usize,
    pub guard: GuardConfig,
}

/// The smoke preset's cap on training images (students and dense baselines).
pub const SMOKE_MAX_TRAIN_IMAGES: usize = 16;

impl StudentTrainingConfig {
    /// The paper (METHOD.md §5): 256×256 images, M = 3, whole images, batch 1, 100 epochs,
    /// Adam lr 1e-4, weight decay 1e-5.
    pub fn paper() -> Self {
        Self {
            preset: Preset::Paper,
            seed: 0,
            students: 3,
            image_size: 256,
            epochs: 100,
            max_steps: 0,
            crop: 0,
            crop_coverage: CropCoverage::Uniform,
            student_sampling: StudentSampling::PerStudent,
            padding: BorderPadding::Replicate,
            standardize_inputs: true,
            max_train_images: 0,
            validation_fraction: 0.1,
            max_validation_images: 0,
            optimizer: AdamConfig {
                learning_rate: 1e-4,
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                weight_decay: 1e-5,
                weight_decay_mode: WeightDecayMode::L2,
            },
            checkpoint_every: 200,
            guard: GuardConfig {
                explode_factor: 1e3,
                warmup_iterations: 50,
            },
        }
    }

    /// What fits this 2-core machine (see the detector README for the measurements behind
    /// it): 128×128 images, random 32×32 crops of the dense output, 20 epochs but at most 600
    /// steps, a higher learning rate for the shorter schedule, at most 200 training images.
    pub fn cpu() -> Self {
        Self {
            preset: Preset::Cpu,
            image_size: 128,
            epochs: 20,
            max_steps: 600,
            crop: 32,
            max_train_images: 200,
            optimizer: AdamConfig {
                learning_rate: 5e-4,
                ..Self::paper().optimizer
            },
            checkpoint_every: 100,
            ..Self::paper()
        }
    }

    /// Seconds on any data: for tests and a first check of a table. The image cap keeps a
    /// category with hundreds of training images (761 in the shared magnetic tiles, which took
    /// minutes per scale uncapped) as quick as the tests' generated ones.
    pub fn smoke() -> Self {
        Self {
            preset: Preset::Smoke,
            students: 2,
            image_size: 40,
            epochs: 2,
            max_steps: 0,
            crop: 16,
            max_train_images: SMOKE_MAX_TRAIN_IMAGES,
            validation_fraction: 0.25,
            // The 190 held-out magnetic tiles took 2.5 min per scale to calibrate on.
            max_validation_images: SMOKE_MAX_TRAIN_IMAGES / 2,
            checkpoint_every: 3,
            guard: GuardConfig {
                explode_factor: 1e6,
                warmup_iterations: 5,
            },
            ..Self::cpu()
        }
    }

    /// The preset's configuration.
    pub fn preset(preset: Preset) -> Self {
        match preset {
            Preset::Paper => Self::paper(),
            Preset::Cpu => Self::cpu(),
            Preset::Smoke => Self::smoke(),
        }
    }

    /// Training images of a category with `n` images in `train/good`: what the validation
    /// split leaves, at most `max_train_images` (as `pipeline::load_training_images` takes them).
    pub fn planned_training_images(&self, n: usize) -> usize {
        let train = n - ust_data::split::validation_count(n, self.validation_fraction);
        match self.max_train_images {
            0 => train,
            cap => train.min(cap),
        }
    }

    /// Calibration images of a category with `n` images in `train/good`.
    pub fn planned_validation_images(&self, n: usize) -> usize {
        let validation = ust_data::split::validation_count(n, self.validation_fraction);
        match self.max_validation_images {
            0 => validation,
            cap => validation.min(cap),
        }
    }

    /// Steps of one scale's training on a category with `n` images in `train/good`: epochs ×
    /// training images, capped at `max_steps` when that is set (the trainer's `total_steps`).
    pub fn planned_steps(&self, n: usize) -> usize {
        self.steps_for(self.planned_training_images(n))
    }

    /// Steps for `images` training images.
    pub(crate) fn steps_for(&self, images: usize) -> usize {
        let all = self.epochs * images;
        match self.max_steps {
            0 => all,
            cap => all.min(cap),
        }
    }

    /// Validates every field before any work.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(DetectorError::InvalidConfig(m));
        if self.students == 0 {
            return bad("students must be at least 1".into());
        }
        if self.students == 1 {
            tracing::warn!("one student: the predictive variance is 0 everywhere");
        }
        if self.image_size == 0 {
            return bad("image_size must be positive".into());
        }
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.crop > self.image_size {
            return bad(format!(
                "crop {} is larger than image_size {}",
                self.crop, self.image_size
            ));
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction < 1.0) {
            return bad(format!(
                "validation_fraction must be in (0, 1), got {}",
                self.validation_fraction
            ));
        }
        if self.checkpoint_every == 0 {
            return bad("checkpoint_every must be at least 1".into());
        }
        self.optimizer.check()
    }

    /// The output side a step trains on.
    pub fn crop_side(&self) -> usize {
        if self.crop == 0 {
            self.image_size
        } else {
            self.crop
        }
    }

    /// How the teacher and the students run over whole images.
    pub fn dense_config(&self) -> DenseConfig {
        DenseConfig {
            padding: self.padding,
            ..DenseConfig::default()
        }
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self)
            .map_err(|e| DetectorError::InvalidConfig(format!("cannot write the config: {e}")))
    }
}
