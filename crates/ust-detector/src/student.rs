//! Student training for one receptive field (METHOD.md §5) and the calibration of the scores
//! on anomaly-free validation images (§6).
//!
//! The teacher is frozen, so its dense descriptors are computed once per training image, before
//! the first step, and kept in memory already normalised (ŷ = (y − μ)/σ with μ, σ per
//! dimension over every descriptor of the training images). A step trains each of the M
//! students (each with its own Adam) on one training image (batch 1, as the paper), optionally
//! on a random window of its dense output; which image and window is [`crate::sampling`]'s
//! choice (every output pixel equally often, each student its own draws, by default). The crop
//! is exact: a student's dense output on the padded input window of the crop equals the crop of
//! its output on the whole image, so cropping changes only how much of each image one step
//! sees. The image border is extended the same way ([`BorderPadding`], replicate by default)
//! for the teacher's targets, the students' inputs, the calibration and every later scoring.
//!
//! Reproducibility: the initial weights, the image order of every epoch and every crop derive
//! from the seed and the step number, so a run resumed from a checkpoint is the run that was
//! not interrupted.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use ust_data::ChwImage;
use ust_losses::{ensemble_scores, student_regression_loss};
use ust_models::{BorderPadding, DenseConfig, DenseExtractor, PatchNet, PatchNetConfig};

use crate::adam::{Adam, AdamConfig, WeightDecayMode};
use crate::checkpoint::{
    named_vars, read_safetensors, restore_trainee, trainee_tensors, write_safetensors,
};
use crate::config::{GuardConfig, Preset};
use crate::error::{DetectorError, Result};
use crate::guard::LossGuard;
use crate::init::initialize_seeded;
use crate::sampling::{CropCoverage, StepSampler, StudentSampling, Window};
use crate::teacher::derive_seed;

/// `ust.model` value of a trained scale's file.
pub const SCALE_MODEL_VALUE: &str = "StudentTeacherScale";
/// `ust.model` value of a student checkpoint.
pub const STUDENT_CHECKPOINT_VALUE: &str = "StudentCheckpoint";
const KEY_MODEL: &str = "ust.model";
const KEY_ARCHITECTURE: &str = "ust.config";
const KEY_TRAINING: &str = "ust.students.training_config";
const KEY_CALIBRATION: &str = "ust.students.calibration";
const KEY_SUMMARY: &str = "ust.students.summary";
const KEY_STATE: &str = "ust.checkpoint.state";

const STREAM_INIT: u64 = 11;

/// A σ below this is replaced by it when normalising the teacher's descriptors (a dimension the
/// teacher never varies on the training images would otherwise divide by zero).
pub const MIN_TARGET_STD: f32 = 1e-6;

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
    /// Use at most this many training images (a seeded subset); 0 uses all.
    pub max_train_images: usize,
    /// Fraction of `train/good` held out for the score calibration (at least one image).
    pub validation_fraction: f64,
    pub optimizer: AdamConfig,
    /// Steps (images) between checkpoints.
    pub checkpoint_every: usize,
    pub guard: GuardConfig,
}

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
            max_train_images: 0,
            validation_fraction: 0.1,
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

    /// Seconds on tiny data: for tests.
    pub fn smoke() -> Self {
        Self {
            preset: Preset::Smoke,
            students: 2,
            image_size: 40,
            epochs: 2,
            max_steps: 0,
            crop: 16,
            max_train_images: 0,
            validation_fraction: 0.25,
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

/// Which terms the anomaly score sums. METHOD.md §6 sums both normalised terms (`e+v`, the
/// default); `e` (regression error only) and `v` (predictive variance only) are ablations that
/// show which term carries the detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ScoreTerms {
    #[default]
    #[serde(rename = "e+v")]
    Both,
    #[serde(rename = "e")]
    Error,
    #[serde(rename = "v")]
    Variance,
}

impl ScoreTerms {
    /// The name written in reports and accepted on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Both => "e+v",
            Self::Error => "e",
            Self::Variance => "v",
        }
    }
}

impl std::fmt::Display for ScoreTerms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ScoreTerms {
    type Err = DetectorError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "e+v" | "both" => Ok(Self::Both),
            "e" | "error" => Ok(Self::Error),
            "v" | "variance" => Ok(Self::Variance),
            other => Err(DetectorError::InvalidConfig(format!(
                "unknown score terms {other:?}: expected e+v, e or v"
            ))),
        }
    }
}

/// Mean and standard deviation of the regression error e and the predictive variance v over
/// every pixel of the validation images (METHOD.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub e_mean: f64,
    pub e_std: f64,
    pub v_mean: f64,
    pub v_std: f64,
    /// Validation images and pixels the statistics come from.
    pub images: usize,
    pub pixels: usize,
}

impl Calibration {
    /// Accumulates the statistics of e and v maps (f64 sums).
    fn from_maps<'a>(maps: impl IntoIterator<Item = (&'a [f32], &'a [f32])>) -> Result<Self> {
        let (mut n, mut images) = (0usize, 0usize);
        let (mut se, mut see, mut sv, mut svv) = (0f64, 0f64, 0f64, 0f64);
        for (e, v) in maps {
            images += 1;
            for (&a, &b) in e.iter().zip(v) {
                let (a, b) = (a as f64, b as f64);
                se += a;
                see += a * a;
                sv += b;
                svv += b * b;
            }
            n += e.len();
        }
        if n == 0 {
            return Err(DetectorError::InvalidConfig(
                "no validation pixels to calibrate the scores on".into(),
            ));
        }
        let nf = n as f64;
        let (e_mean, v_mean) = (se / nf, sv / nf);
        // Guard tiny negative variances from cancellation, and a zero spread (one student).
        let e_std = (see / nf - e_mean * e_mean).max(0.0).sqrt().max(1e-12);
        let v_std = (svv / nf - v_mean * v_mean).max(0.0).sqrt().max(1e-12);
        Ok(Self {
            e_mean,
            e_std,
            v_mean,
            v_std,
            images,
            pixels: n,
        })
    }

    /// The anomaly score (e − e_mean)/e_std + (v − v_mean)/v_std, pixel by pixel.
    pub fn score(&self, e: &[f32], v: &[f32]) -> Vec<f32> {
        self.score_terms(ScoreTerms::Both, e, v)
    }

    /// The anomaly score with only the chosen terms: (e − e_mean)/e_std, (v − v_mean)/v_std or
    /// their sum, pixel by pixel.
    pub fn score_terms(&self, terms: ScoreTerms, e: &[f32], v: &[f32]) -> Vec<f32> {
        let ze = |a: f32| (a as f64 - self.e_mean) / self.e_std;
        let zv = |b: f32| (b as f64 - self.v_mean) / self.v_std;
        e.iter()
            .zip(v)
            .map(|(&a, &b)| {
                (match terms {
                    ScoreTerms::Both => ze(a) + zv(b),
                    ScoreTerms::Error => ze(a),
                    ScoreTerms::Variance => zv(b),
                }) as f32
            })
            .collect()
    }
}

/// What a finished scale records (JSON in the model file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudentSummary {
    pub patch_size: usize,
    pub students: usize,
    pub steps: usize,
    pub train_images: usize,
    pub validation_images: usize,
    /// Mean over the students of their loss, averaged over the last epoch's steps.
    pub final_loss: f64,
    /// Seconds computing the teacher's targets, training, and calibrating (this session's
    /// target and calibration time, training time over all sessions).
    pub targets_s: f64,
    pub training_s: f64,
    pub calibration_s: f64,
    pub sessions: usize,
    /// The teacher file the scale was trained with.
    pub teacher: String,
    pub trainer_version: String,
}

/// Where a run starts, for progress displays.
#[derive(Debug, Clone, PartialEq)]
pub struct StudentRunStart {
    pub patch_size: usize,
    pub start_step: usize,
    pub total_steps: usize,
    pub resumed: bool,
}

/// The state after one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StudentStepReport {
    pub patch_size: usize,
    /// Steps done, this one included.
    pub step: usize,
    pub total_steps: usize,
    /// This step's loss of every student.
    pub losses: Vec<f64>,
    /// Steps per second in this session.
    pub steps_per_s: f64,
}

/// Receives the progress of student training. Every method has a default that does nothing.
pub trait StudentObserver {
    fn started(&mut self, _start: &StudentRunStart) {}
    /// A long preparation (targets, calibration) began.
    fn phase(&mut self, _message: &str) {}
    /// After every step; `Break` stops at once without a checkpoint (like a kill).
    fn step(&mut self, _report: &StudentStepReport) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    fn checkpoint(&mut self, _step: usize, _path: &Path) {}
}

impl StudentObserver for () {}

/// How [`ScaleTrainer::run`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ScaleOutcome {
    Finished(Box<StudentSummary>),
    Stopped { step: usize },
}

/// The files of one scale in a run directory.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalePaths {
    pub model: PathBuf,
    pub checkpoint: PathBuf,
}

impl ScalePaths {
    /// `RUN_DIR/p<P>.safetensors` and `RUN_DIR/p<P>.checkpoint.safetensors`.
    pub fn in_run_dir(run_dir: &Path, patch_size: usize) -> Self {
        Self {
            model: run_dir.join(format!("p{patch_size}.safetensors")),
            checkpoint: run_dir.join(format!("p{patch_size}.checkpoint.safetensors")),
        }
    }
}

/// The teacher's normalised dense descriptors of the training images and the statistics.
pub struct TeacherTargets {
    /// μ and σ per descriptor dimension, each (1, d, 1, 1).
    pub mean: Tensor,
    pub std: Tensor,
    /// ŷ of every training image, each (1, d, H, W).
    pub targets: Vec<Tensor>,
}

impl TeacherTargets {
    /// Runs the teacher over every image once (detached: no graph) and normalises.
    ///
    /// # Shapes
    /// every image (1, 3, H, W) → targets (1, d, H, W)
    pub fn compute(teacher: &DenseExtractor, images: &[Tensor]) -> Result<Self> {
        if images.is_empty() {
            return Err(DetectorError::InvalidConfig("no training images".into()));
        }
        let d = teacher.net().descriptor_dim();
        let mut raw = Vec::with_capacity(images.len());
        let mut sum = vec![0f64; d];
        let mut sum_sq = vec![0f64; d];
        let mut count = 0usize;
        for image in images {
            let y = teacher.extract(image)?;
            let (_, _, h, w) = y.dims4()?;
            let data = y.flatten_all()?.to_vec1::<f32>()?;
            for (k, plane) in data.chunks_exact(h * w).enumerate() {
                let (mut s, mut ss) = (0f64, 0f64);
                for &x in plane {
                    let x = x as f64;
                    s += x;
                    ss += x * x;
                }
                sum[k] += s;
                sum_sq[k] += ss;
            }
            count += h * w;
            raw.push(y);
        }
        let n = count as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std: Vec<f32> = sum
            .iter()
            .zip(&sum_sq)
            .map(|(s, ss)| {
                let m = s / n;
                ((ss / n - m * m).max(0.0).sqrt() as f32).max(MIN_TARGET_STD)
            })
            .collect();
        let device = images[0].device();
        let mean = Tensor::from_vec(mean, (1, d, 1, 1), device)?;
        let std = Tensor::from_vec(std, (1, d, 1, 1), device)?;
        let targets = raw
            .iter()
            .map(|y| y.broadcast_sub(&mean)?.broadcast_div(&std))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { mean, std, targets })
    }
}

/// Counters of a student checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StudentCheckpointState {
    step: usize,
    elapsed_s: f64,
    sessions: usize,
    guard_mean: Option<f64>,
    guard_seen: usize,
    epoch_losses: Vec<f64>,
}

/// One trainable student: its variables, dense network and optimiser.
struct Student {
    varmap: VarMap,
    dense: DenseExtractor,
    optimizer: Adam,
}

/// Trains the M students of one scale, then calibrates the scores and writes the scale file.
pub struct ScaleTrainer {
    config: StudentTrainingConfig,
    paths: ScalePaths,
    teacher_path: PathBuf,
    teacher: DenseExtractor,
    students: Vec<Student>,
    /// Training images, padded by (p−1)/2 with the run's border padding, each
    /// (1, 3, H+p−1, W+p−1).
    padded: Vec<Tensor>,
    validation: Vec<Tensor>,
    targets: Option<TeacherTargets>,
    targets_s: f64,
    guard: LossGuard,
    step: usize,
    elapsed_before_s: f64,
    sessions: usize,
    /// Per-step mean student loss of the current epoch.
    epoch_losses: Vec<f64>,
    last_checkpoint: Option<(PathBuf, usize)>,
}

impl std::fmt::Debug for ScaleTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScaleTrainer")
            .field("patch_size", &self.patch_size())
            .field("step", &self.step)
            .field("model", &self.paths.model)
            .finish_non_exhaustive()
    }
}

fn image_tensor(image: &ChwImage, size: usize, device: &Device) -> Result<Tensor> {
    if image.height() != size || image.width() != size || image.channels() != 3 {
        return Err(DetectorError::InvalidConfig(format!(
            "images must be 3×{size}×{size} here, got {}×{}×{}",
            image.channels(),
            image.height(),
            image.width()
        )));
    }
    Ok(image.to_tensor(device)?.unsqueeze(0)?)
}

impl ScaleTrainer {
    /// A run for the teacher `teacher` (from `teacher_path`), on training and validation images
    /// already at `config.image_size`. With `resume`, continues from the checkpoint in `paths`
    /// when there is one (same configuration required).
    pub fn new(
        config: StudentTrainingConfig,
        teacher: PatchNet,
        teacher_path: &Path,
        train: &[ChwImage],
        validation: &[ChwImage],
        paths: ScalePaths,
        resume: bool,
        device: &Device,
    ) -> Result<Self> {
        config.check()?;
        if train.is_empty() {
            return Err(DetectorError::InvalidConfig("no training images".into()));
        }
        if validation.is_empty() {
            return Err(DetectorError::InvalidConfig(
                "no validation images to calibrate the scores on".into(),
            ));
        }
        let p = teacher.patch_size();
        let half = (p - 1) / 2;
        let dense_config = config.dense_config();
        let padded = train
            .iter()
            .map(|im| {
                Ok(config
                    .padding
                    .pad(&image_tensor(im, config.image_size, device)?, half, half)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let validation = validation
            .iter()
            .map(|im| image_tensor(im, config.image_size, device))
            .collect::<Result<Vec<_>>>()?;
        let architecture = teacher.config().clone();
        let mut students = Vec::with_capacity(config.students);
        for m in 0..config.students {
            let varmap = VarMap::new();
            let net = PatchNet::new(
                architecture.clone(),
                VarBuilder::from_varmap(&varmap, DType::F32, device),
            )?;
            let vars = named_vars(&varmap);
            initialize_seeded(
                &vars,
                derive_seed(config.seed, STREAM_INIT, (p * 1000 + m) as u64),
            )?;
            let optimizer = Adam::new(vars, config.optimizer.clone())?;
            students.push(Student {
                varmap,
                dense: DenseExtractor::new(net, dense_config),
                optimizer,
            });
        }
        let mut trainer = Self {
            guard: LossGuard::new(&config.guard),
            config,
            paths,
            teacher_path: teacher_path.to_path_buf(),
            teacher: DenseExtractor::new(teacher.detach(), dense_config),
            students,
            padded,
            validation,
            targets: None,
            targets_s: 0.0,
            step: 0,
            elapsed_before_s: 0.0,
            sessions: 1,
            epoch_losses: Vec::new(),
            last_checkpoint: None,
        };
        if resume && trainer.paths.checkpoint.is_file() {
            trainer.restore()?;
        }
        Ok(trainer)
    }

    /// The receptive field.
    pub fn patch_size(&self) -> usize {
        self.teacher.net().patch_size()
    }

    /// Steps done.
    pub fn step_count(&self) -> usize {
        self.step
    }

    /// Total steps: epochs × training images, capped at `max_steps` when that is set.
    pub fn total_steps(&self) -> usize {
        let all = self.config.epochs * self.padded.len();
        match self.config.max_steps {
            0 => all,
            cap => all.min(cap),
        }
    }

    fn restore(&mut self) -> Result<()> {
        let path = self.paths.checkpoint.clone();
        let (tensors, meta) = read_safetensors(&path)?;
        if meta.get(KEY_MODEL).map(String::as_str) != Some(STUDENT_CHECKPOINT_VALUE) {
            return Err(DetectorError::bad_file(&path, "not a student checkpoint"));
        }
        let text = meta
            .get(KEY_TRAINING)
            .ok_or_else(|| DetectorError::bad_file(&path, "no training configuration"))?;
        let saved: StudentTrainingConfig = toml::from_str(text)
            .map_err(|e| DetectorError::bad_file(&path, format!("bad configuration: {e}")))?;
        if saved != self.config {
            return Err(DetectorError::ConfigMismatch {
                path: path.clone(),
                differences: format!(
                    "checkpoint: {:?}; now: {:?}",
                    saved.to_toml()?,
                    self.config.to_toml()?
                ),
            });
        }
        let state: StudentCheckpointState = serde_json::from_str(
            meta.get(KEY_STATE)
                .ok_or_else(|| DetectorError::bad_file(&path, "no checkpoint state"))?,
        )
        .map_err(|e| DetectorError::bad_file(&path, format!("bad state: {e}")))?;
        for (m, student) in self.students.iter_mut().enumerate() {
            restore_trainee(
                &format!("student{m}."),
                &student.varmap,
                &mut student.optimizer,
                state.step as u64,
                &tensors,
                &path,
            )?;
        }
        self.step = state.step;
        self.elapsed_before_s = state.elapsed_s;
        self.sessions = state.sessions + 1;
        self.guard.restore(state.guard_mean, state.guard_seen);
        self.epoch_losses = state.epoch_losses;
        self.last_checkpoint = Some((path, state.step));
        tracing::info!(step = self.step, "resumed student training");
        Ok(())
    }

    fn save_checkpoint(&mut self, elapsed_s: f64) -> Result<()> {
        let mut tensors = Vec::new();
        for (m, student) in self.students.iter().enumerate() {
            tensors.extend(trainee_tensors(
                &format!("student{m}."),
                &student.varmap,
                &student.optimizer,
            )?);
        }
        let state = StudentCheckpointState {
            step: self.step,
            elapsed_s,
            sessions: self.sessions,
            guard_mean: self.guard.running_mean(),
            guard_seen: self.guard.seen(),
            epoch_losses: self.epoch_losses.clone(),
        };
        let metadata = HashMap::from([
            (KEY_MODEL.to_string(), STUDENT_CHECKPOINT_VALUE.to_string()),
            (KEY_TRAINING.to_string(), self.config.to_toml()?),
            (
                KEY_STATE.to_string(),
                serde_json::to_string(&state).unwrap_or_default(),
            ),
        ]);
        write_safetensors(&self.paths.checkpoint, tensors, metadata)?;
        self.last_checkpoint = Some((self.paths.checkpoint.clone(), self.step));
        Ok(())
    }

    /// The draws of this run's steps.
    fn sampler(&self) -> StepSampler {
        StepSampler {
            seed: self.config.seed,
            patch_size: self.patch_size(),
            images: self.padded.len(),
            image_size: self.config.image_size,
            side: self.config.crop_side(),
            coverage: self.config.crop_coverage,
            sampling: self.config.student_sampling,
        }
    }

    /// One step: every student on its (cropped) training image. Returns the students' losses
    /// (the mean over the window's pixels, whatever its size).
    fn train_step(&mut self, targets: &TeacherTargets) -> Result<Vec<f64>> {
        let sampler = self.sampler();
        let p = self.patch_size();
        let mut losses = Vec::with_capacity(self.students.len());
        let next = self.step + 1;
        for m in 0..self.students.len() {
            let (index, window) = sampler.draw(self.step, m);
            let Window {
                row,
                col,
                height,
                width,
            } = window;
            let input =
                self.padded[index]
                    .narrow(2, row, height + p - 1)?
                    .narrow(3, col, width + p - 1)?;
            let target = targets.targets[index]
                .narrow(2, row, height)?
                .narrow(3, col, width)?;
            let prediction = self.students[m].dense.extract_padded(&input)?;
            let loss = student_regression_loss(&prediction, &target)?;
            let value = loss.to_scalar::<f32>()? as f64;
            if let Err(reason) = self.guard.check(value) {
                return Err(self.diverged(next, format!("student {m}: {reason}")));
            }
            let loss = match self.config.crop_coverage {
                CropCoverage::Inside => loss,
                CropCoverage::Uniform => (loss * window.share_of(sampler.side))?,
            };
            let grads = loss.backward()?;
            if let Err(bad) = self.students[m].optimizer.step(&grads)? {
                return Err(self.diverged(
                    next,
                    format!(
                        "student {m}: the gradient of {} is not finite",
                        bad.parameter
                    ),
                ));
            }
            losses.push(value);
        }
        self.step = next;
        Ok(losses)
    }

    fn diverged(&self, step: usize, reason: String) -> DetectorError {
        DetectorError::Diverged {
            iteration: step,
            reason,
            last_checkpoint: self.last_checkpoint.as_ref().map(|(p, _)| p.clone()),
            last_checkpoint_iteration: self.last_checkpoint.as_ref().map(|(_, s)| *s),
        }
    }

    /// Trains to the end (or until the observer stops it), calibrates on the validation images
    /// and writes the scale file; the checkpoint is removed once the file is written.
    pub fn run(&mut self, observer: &mut dyn StudentObserver) -> Result<ScaleOutcome> {
        let p = self.patch_size();
        if self.targets.is_none() {
            observer.phase(&format!(
                "p={p}: teacher descriptors of {} training images",
                self.padded.len()
            ));
            let started = Instant::now();
            let images: Vec<Tensor> = self
                .padded
                .iter()
                .map(|t| {
                    let half = (p - 1) / 2;
                    let s = self.config.image_size;
                    t.narrow(2, half, s)?.narrow(3, half, s)
                })
                .collect::<candle_core::Result<_>>()?;
            self.targets = Some(TeacherTargets::compute(&self.teacher, &images)?);
            self.targets_s = started.elapsed().as_secs_f64();
        }
        let targets = self.targets.take().expect("computed above");
        let outcome = self.train_loop(&targets, observer);
        self.targets = Some(targets);
        let training_s = match outcome? {
            ControlFlow::Break(()) => return Ok(ScaleOutcome::Stopped { step: self.step }),
            ControlFlow::Continue(s) => s,
        };
        observer.phase(&format!(
            "p={p}: calibrating on {} validation images",
            self.validation.len()
        ));
        let started = Instant::now();
        let targets = self.targets.as_ref().expect("computed above");
        let frozen: Vec<DenseExtractor> = self
            .students
            .iter()
            .map(|s| DenseExtractor::new(s.dense.net().detach(), self.config.dense_config()))
            .collect();
        let mut maps = Vec::with_capacity(self.validation.len());
        for image in &self.validation {
            maps.push(raw_scores(
                &self.teacher,
                &frozen,
                &targets.mean,
                &targets.std,
                image,
            )?);
        }
        let calibration =
            Calibration::from_maps(maps.iter().map(|(e, v)| (e.as_slice(), v.as_slice())))?;
        // Kept in the scale file, so the run's multi-scale thresholds need no second pass of
        // the networks over the validation images.
        let validation_scores: Vec<f32> = maps
            .iter()
            .flat_map(|(e, v)| calibration.score(e, v))
            .collect();
        let calibration_s = started.elapsed().as_secs_f64();
        let final_loss = if self.epoch_losses.is_empty() {
            f64::NAN
        } else {
            self.epoch_losses.iter().sum::<f64>() / self.epoch_losses.len() as f64
        };
        let summary = StudentSummary {
            patch_size: p,
            students: self.students.len(),
            steps: self.step,
            train_images: self.padded.len(),
            validation_images: self.validation.len(),
            final_loss,
            targets_s: self.targets_s,
            training_s,
            calibration_s,
            sessions: self.sessions,
            teacher: self.teacher_path.display().to_string(),
            trainer_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        self.write_model(&calibration, &summary, &validation_scores)?;
        if self.paths.checkpoint.is_file() {
            std::fs::remove_file(&self.paths.checkpoint)
                .map_err(|e| DetectorError::io(&self.paths.checkpoint, e))?;
        }
        tracing::info!(patch_size = p, ?calibration, final_loss, "scale trained");
        Ok(ScaleOutcome::Finished(Box::new(summary)))
    }

    /// The step loop; `Continue(training seconds over all sessions)` when it reached the end.
    fn train_loop(
        &mut self,
        targets: &TeacherTargets,
        observer: &mut dyn StudentObserver,
    ) -> Result<ControlFlow<(), f64>> {
        let total = self.total_steps();
        let n = self.padded.len();
        observer.started(&StudentRunStart {
            patch_size: self.patch_size(),
            start_step: self.step,
            total_steps: total,
            resumed: self.sessions > 1,
        });
        let session_start = Instant::now();
        let first = self.step;
        while self.step < total {
            if self.step.is_multiple_of(n) {
                self.epoch_losses.clear();
            }
            let losses = self.train_step(targets)?;
            self.epoch_losses
                .push(losses.iter().sum::<f64>() / losses.len() as f64);
            let seconds = session_start.elapsed().as_secs_f64().max(1e-9);
            let report = StudentStepReport {
                patch_size: self.patch_size(),
                step: self.step,
                total_steps: total,
                losses,
                steps_per_s: (self.step - first) as f64 / seconds,
            };
            if self.step.is_multiple_of(n) {
                let mean = self.epoch_losses.iter().sum::<f64>() / n as f64;
                tracing::info!(
                    patch_size = self.patch_size(),
                    epoch = self.step / n,
                    mean_loss = format!("{mean:.4}"),
                    "student epoch"
                );
            }
            if observer.step(&report).is_break() {
                return Ok(ControlFlow::Break(()));
            }
            if self.step.is_multiple_of(self.config.checkpoint_every) && self.step < total {
                let elapsed = self.elapsed_before_s + session_start.elapsed().as_secs_f64();
                self.save_checkpoint(elapsed)?;
                observer.checkpoint(self.step, &self.paths.checkpoint);
            }
        }
        Ok(ControlFlow::Continue(
            self.elapsed_before_s + session_start.elapsed().as_secs_f64(),
        ))
    }

    fn write_model(
        &self,
        calibration: &Calibration,
        summary: &StudentSummary,
        validation_scores: &[f32],
    ) -> Result<()> {
        let targets = self.targets.as_ref().expect("computed before");
        let mut tensors: Vec<(String, Tensor)> = self
            .teacher
            .net()
            .parameters()
            .into_iter()
            .map(|(n, t)| (format!("teacher.{n}"), t))
            .collect();
        for (m, student) in self.students.iter().enumerate() {
            for (name, t) in student.dense.net().parameters() {
                tensors.push((format!("student{m}.{name}"), t));
            }
        }
        tensors.push(("target.mean".into(), targets.mean.flatten_all()?));
        tensors.push(("target.std".into(), targets.std.flatten_all()?));
        let pixels = self.config.image_size * self.config.image_size;
        tensors.push((
            VALIDATION_SCORES_TENSOR.into(),
            Tensor::from_slice(
                validation_scores,
                (validation_scores.len() / pixels, pixels),
                &Device::Cpu,
            )?,
        ));
        let metadata = HashMap::from([
            (KEY_MODEL.to_string(), SCALE_MODEL_VALUE.to_string()),
            (
                KEY_ARCHITECTURE.to_string(),
                self.teacher.net().config().to_json(),
            ),
            (KEY_TRAINING.to_string(), self.config.to_toml()?),
            (
                KEY_CALIBRATION.to_string(),
                serde_json::to_string(calibration).unwrap_or_default(),
            ),
            (
                KEY_SUMMARY.to_string(),
                serde_json::to_string(summary).unwrap_or_default(),
            ),
        ]);
        write_safetensors(&self.paths.model, tensors, metadata)
    }
}

/// The regression error e and predictive variance v of one image (METHOD.md §6).
///
/// # Shapes
/// `image` (1, 3, H, W) → two H·W maps, row-major
pub fn raw_scores(
    teacher: &DenseExtractor,
    students: &[DenseExtractor],
    mean: &Tensor,
    std: &Tensor,
    image: &Tensor,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let target = teacher
        .extract(image)?
        .broadcast_sub(mean)?
        .broadcast_div(std)?;
    let predictions = students
        .iter()
        .map(|s| s.extract(image))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let scores = ensemble_scores(&predictions, &target)?;
    Ok((
        scores.regression_error.flatten_all()?.to_vec1::<f32>()?,
        scores.predictive_variance.flatten_all()?.to_vec1::<f32>()?,
    ))
}

/// The tensor of a scale file holding its validation images' normalised scores.
pub const VALIDATION_SCORES_TENSOR: &str = "validation.scores";

/// A trained scale read back from its file: frozen teacher, students, target statistics and
/// calibration.
#[derive(Debug, Clone)]
pub struct ScaleModel {
    /// The normalised scores of the run's validation images, (images, S·S) row-major, as
    /// calibration computed them; `None` in files written before they were kept.
    pub validation_scores: Option<(usize, Vec<f32>)>,
    pub teacher: DenseExtractor,
    pub students: Vec<DenseExtractor>,
    /// μ and σ of the teacher's descriptors, (1, d, 1, 1).
    pub mean: Tensor,
    pub std: Tensor,
    pub calibration: Calibration,
    pub training: StudentTrainingConfig,
    pub summary: StudentSummary,
}

impl ScaleModel {
    /// Reads a file written by [`ScaleTrainer::run`].
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let (tensors, meta) = read_safetensors(path)?;
        if meta.get(KEY_MODEL).map(String::as_str) != Some(SCALE_MODEL_VALUE) {
            return Err(DetectorError::bad_file(
                path,
                "not a trained student-teacher scale (ust train writes these)",
            ));
        }
        let entry = |key: &str| {
            meta.get(key)
                .ok_or_else(|| DetectorError::bad_file(path, format!("metadata has no {key:?}")))
        };
        let architecture: PatchNetConfig = serde_json::from_str(entry(KEY_ARCHITECTURE)?)
            .map_err(|e| DetectorError::bad_file(path, format!("bad architecture: {e}")))?;
        let training: StudentTrainingConfig = toml::from_str(entry(KEY_TRAINING)?)
            .map_err(|e| DetectorError::bad_file(path, format!("bad configuration: {e}")))?;
        let calibration: Calibration = serde_json::from_str(entry(KEY_CALIBRATION)?)
            .map_err(|e| DetectorError::bad_file(path, format!("bad calibration: {e}")))?;
        let summary: StudentSummary = serde_json::from_str(entry(KEY_SUMMARY)?)
            .map_err(|e| DetectorError::bad_file(path, format!("bad summary: {e}")))?;
        let mut tensors: HashMap<String, Tensor> = tensors
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_device(device)?.to_dtype(DType::F32)?)))
            .collect::<candle_core::Result<_>>()?;
        let validation_scores = match tensors.remove(VALIDATION_SCORES_TENSOR) {
            Some(t) => {
                let bad = |e: candle_core::Error| {
                    DetectorError::bad_file(path, format!("{VALIDATION_SCORES_TENSOR}: {e}"))
                };
                let (n, _) = t.dims2().map_err(bad)?;
                Some((n, t.flatten_all().and_then(|t| t.to_vec1()).map_err(bad)?))
            }
            None => None,
        };
        let d = architecture.descriptor_dim;
        let stat = |name: &str| -> Result<Tensor> {
            let t = tensors
                .get(name)
                .ok_or_else(|| DetectorError::bad_file(path, format!("missing tensor {name}")))?;
            t.reshape((1, d, 1, 1))
                .map_err(|e| DetectorError::bad_file(path, format!("{name}: {e}")))
        };
        let (mean, std) = (stat("target.mean")?, stat("target.std")?);
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let build = |prefix: &str| -> Result<DenseExtractor> {
            let net = PatchNet::new(architecture.clone(), vb.pp(prefix))
                .map_err(|e| DetectorError::bad_file(path, format!("{prefix}: {e}")))?;
            Ok(DenseExtractor::new(net, training.dense_config()))
        };
        let teacher = build("teacher")?;
        let students = (0..summary.students)
            .map(|m| build(&format!("student{m}")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            validation_scores,
            teacher,
            students,
            mean,
            std,
            calibration,
            training,
            summary,
        })
    }

    /// The receptive field.
    pub fn patch_size(&self) -> usize {
        self.teacher.net().patch_size()
    }

    /// The normalised anomaly score of every pixel of `image` (at the model's image size).
    ///
    /// # Shapes
    /// `image` (1, 3, H, W) → H·W scores, row-major
    pub fn anomaly_scores(&self, image: &Tensor) -> Result<Vec<f32>> {
        self.anomaly_scores_with(image, ScoreTerms::Both)
    }

    /// [`Self::anomaly_scores`] with only the chosen terms of the score.
    ///
    /// # Shapes
    /// `image` (1, 3, H, W) → H·W scores, row-major
    pub fn anomaly_scores_with(&self, image: &Tensor, terms: ScoreTerms) -> Result<Vec<f32>> {
        let mut maps = self.anomaly_scores_for(image, &[terms])?;
        Ok(maps.remove(0))
    }

    /// The scores under each of `terms` (one map per entry), the networks run once: the
    /// ablation of the score's terms costs no more than the score itself.
    ///
    /// # Shapes
    /// `image` (1, 3, H, W) → per entry of `terms` H·W scores, row-major
    pub fn anomaly_scores_for(
        &self,
        image: &Tensor,
        terms: &[ScoreTerms],
    ) -> Result<Vec<Vec<f32>>> {
        let (e, v) = raw_scores(&self.teacher, &self.students, &self.mean, &self.std, image)?;
        Ok(terms
            .iter()
            .map(|&t| self.calibration.score_terms(t, &e, &v))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::D;

    fn noise_image(seed: u32, size: usize) -> ChwImage {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let data = (0..3 * size * size)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32
            })
            .collect();
        ChwImage::new(3, size, size, data)
    }

    fn random_teacher(p: usize) -> PatchNet {
        let varmap = VarMap::new();
        let net = PatchNet::new(
            PatchNetConfig::new(p),
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .unwrap();
        initialize_seeded(&named_vars(&varmap), 7).unwrap();
        net.detach()
    }

    fn tiny_config() -> StudentTrainingConfig {
        StudentTrainingConfig {
            image_size: 24,
            crop: 8,
            epochs: 2,
            checkpoint_every: 2,
            ..StudentTrainingConfig::smoke()
        }
    }

    #[test]
    fn presets_are_valid_and_bad_values_are_named() {
        for p in Preset::ALL {
            StudentTrainingConfig::preset(p).check().unwrap();
        }
        let paper = StudentTrainingConfig::paper();
        assert_eq!(
            (paper.students, paper.image_size, paper.epochs),
            (3, 256, 100)
        );
        assert_eq!(paper.optimizer.learning_rate, 1e-4);
        let bad = StudentTrainingConfig {
            crop: 300,
            ..StudentTrainingConfig::cpu()
        };
        assert!(bad.check().unwrap_err().to_string().contains("crop 300"));
        let bad = StudentTrainingConfig {
            students: 0,
            ..StudentTrainingConfig::cpu()
        };
        assert!(bad.check().unwrap_err().to_string().contains("students"));
        let text = StudentTrainingConfig::cpu().to_toml().unwrap();
        let back: StudentTrainingConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, StudentTrainingConfig::cpu());
    }

    #[test]
    fn calibration_matches_hand_computed_statistics() {
        // e = [1, 3], [5, 7] -> mean 4, population std sqrt(5); v = [2, 2], [2, 6] -> mean 3,
        // std sqrt(3).
        let e = [vec![1.0f32, 3.0], vec![5.0, 7.0]];
        let v = [vec![2.0f32, 2.0], vec![2.0, 6.0]];
        let c = Calibration::from_maps(e.iter().zip(&v).map(|(a, b)| (a.as_slice(), b.as_slice())))
            .unwrap();
        assert!((c.e_mean - 4.0).abs() < 1e-12 && (c.e_std - 5f64.sqrt()).abs() < 1e-12);
        assert!((c.v_mean - 3.0).abs() < 1e-12 && (c.v_std - 3f64.sqrt()).abs() < 1e-12);
        assert_eq!((c.images, c.pixels), (2, 4));
        let s = c.score(&[4.0 + 5f32.sqrt()], &[3.0 - 2.0 * 3f32.sqrt()]);
        assert!((s[0] - (1.0 - 2.0)).abs() < 1e-5, "{s:?}");
        // One term alone: e one std above its mean, v two below.
        let (e1, v1) = ([4.0 + 5f32.sqrt()], [3.0 - 2.0 * 3f32.sqrt()]);
        let only_e = c.score_terms(ScoreTerms::Error, &e1, &v1);
        let only_v = c.score_terms(ScoreTerms::Variance, &e1, &v1);
        assert!((only_e[0] - 1.0).abs() < 1e-5 && (only_v[0] + 2.0).abs() < 1e-5);
        assert_eq!(c.score_terms(ScoreTerms::Both, &e1, &v1), s);
    }

    #[test]
    fn score_terms_parse_and_print_their_names() {
        for (text, terms) in [
            ("e+v", ScoreTerms::Both),
            ("both", ScoreTerms::Both),
            ("e", ScoreTerms::Error),
            ("error", ScoreTerms::Error),
            ("v", ScoreTerms::Variance),
            ("variance", ScoreTerms::Variance),
        ] {
            assert_eq!(text.parse::<ScoreTerms>().unwrap(), terms);
        }
        assert!("ev".parse::<ScoreTerms>().is_err());
        assert_eq!(ScoreTerms::Both.to_string(), "e+v");
        assert_eq!(
            serde_json::to_string(&ScoreTerms::Variance).unwrap(),
            "\"v\""
        );
        assert_eq!(ScoreTerms::default(), ScoreTerms::Both);
    }

    #[test]
    fn targets_are_standardised_per_dimension() {
        let teacher = DenseExtractor::new(random_teacher(17), DenseConfig::default());
        let images: Vec<Tensor> = (0..3)
            .map(|i| {
                noise_image(i, 12)
                    .to_tensor(&Device::Cpu)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap()
            })
            .collect();
        let t = TeacherTargets::compute(&teacher, &images).unwrap();
        let all = Tensor::cat(&t.targets, 0).unwrap(); // (3, d, 12, 12)
        let mean = all.mean_keepdim(0).unwrap().mean_keepdim(2).unwrap();
        let mean = mean.mean_keepdim(3).unwrap().flatten_all().unwrap();
        let sq = all
            .sqr()
            .unwrap()
            .mean_keepdim(0)
            .unwrap()
            .mean_keepdim(2)
            .unwrap();
        let sq = sq.mean_keepdim(3).unwrap().flatten_all().unwrap();
        for (m, s) in mean
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .zip(sq.to_vec1::<f32>().unwrap())
        {
            assert!(m.abs() < 1e-4, "mean {m}");
            assert!((s - 1.0).abs() < 1e-3, "variance {s}");
        }
        // The statistics are the raw descriptors' own: ŷ·σ + μ gives the teacher back.
        let raw = teacher.extract(&images[1]).unwrap();
        let back = t.targets[1]
            .broadcast_mul(&t.std)
            .unwrap()
            .broadcast_add(&t.mean)
            .unwrap();
        let diff = (raw - back).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-3);
    }

    #[test]
    fn a_crop_of_the_padded_image_gives_the_crop_of_the_dense_output() {
        let p = 17;
        let dense = DenseExtractor::new(random_teacher(p), DenseConfig::default());
        let image = noise_image(5, 20)
            .to_tensor(&Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let full = dense.extract(&image).unwrap();
        let h = (p - 1) / 2;
        let padded = image
            .pad_with_zeros(D::Minus2, h, h)
            .unwrap()
            .pad_with_zeros(D::Minus1, h, h)
            .unwrap();
        let (r0, c0, side) = (3, 9, 7);
        let window = padded
            .narrow(2, r0, side + p - 1)
            .unwrap()
            .narrow(3, c0, side + p - 1)
            .unwrap();
        let crop = dense.extract_padded(&window).unwrap();
        let expected = full
            .narrow(2, r0, side)
            .unwrap()
            .narrow(3, c0, side)
            .unwrap();
        let diff = (crop - expected).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
    }

    struct StopAt(usize);
    impl StudentObserver for StopAt {
        fn step(&mut self, r: &StudentStepReport) -> ControlFlow<()> {
            if r.step == self.0 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }

    fn trainer(dir: &Path, resume: bool) -> ScaleTrainer {
        let train: Vec<ChwImage> = (0..3).map(|i| noise_image(i, 24)).collect();
        let validation = vec![noise_image(9, 24)];
        ScaleTrainer::new(
            tiny_config(),
            random_teacher(17),
            Path::new("teacher.safetensors"),
            &train,
            &validation,
            ScalePaths::in_run_dir(dir, 17),
            resume,
            &Device::Cpu,
        )
        .unwrap()
    }

    /// A run killed after a checkpoint and resumed ends with exactly the weights, losses and
    /// calibration of a run that was never interrupted.
    #[test]
    fn resumed_training_equals_uninterrupted_training() {
        let straight = tempfile::tempdir().unwrap();
        let mut a = trainer(straight.path(), false);
        assert_eq!(a.total_steps(), 6);
        let ScaleOutcome::Finished(sa) = a.run(&mut ()).unwrap() else {
            panic!("not finished")
        };
        assert!(sa.final_loss.is_finite() && sa.final_loss > 0.0);
        assert!(
            !ScalePaths::in_run_dir(straight.path(), 17)
                .checkpoint
                .exists()
        );

        let broken = tempfile::tempdir().unwrap();
        let mut b = trainer(broken.path(), false);
        // Killed at step 5: the checkpoint holds step 4, step 5 is lost.
        assert_eq!(
            b.run(&mut StopAt(5)).unwrap(),
            ScaleOutcome::Stopped { step: 5 }
        );
        let paths = ScalePaths::in_run_dir(broken.path(), 17);
        assert!(paths.checkpoint.is_file() && !paths.model.exists());
        let mut c = trainer(broken.path(), true);
        assert_eq!(c.step_count(), 4);
        let ScaleOutcome::Finished(sc) = c.run(&mut ()).unwrap() else {
            panic!("not finished")
        };
        assert_eq!(sc.sessions, 2);
        assert_eq!(sa.final_loss, sc.final_loss);

        let ma = ScaleModel::load(
            &ScalePaths::in_run_dir(straight.path(), 17).model,
            &Device::Cpu,
        )
        .unwrap();
        let mc = ScaleModel::load(&paths.model, &Device::Cpu).unwrap();
        assert_eq!(ma.calibration, mc.calibration);
        for (x, y) in ma.students.iter().zip(&mc.students) {
            for ((n, t), (_, u)) in x.net().parameters().iter().zip(y.net().parameters()) {
                let d = (t - &u).unwrap().abs().unwrap().max_all().unwrap();
                assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0, "{n}");
            }
        }
        // The scale file scores images: the validation image scores near its calibration.
        let v = noise_image(9, 24)
            .to_tensor(&Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let s = ma.anomaly_scores(&v).unwrap();
        let mean = s.iter().map(|&x| x as f64).sum::<f64>() / s.len() as f64;
        assert_eq!(s.len(), 24 * 24);
        assert!(
            mean.abs() < 1e-3,
            "validation scores are centred by construction: {mean}"
        );
    }

    /// Spread of a (1, d, H, W) or H·W output: the largest distance from its first pixel.
    fn spread(values: &[f32], per_pixel: usize) -> f32 {
        let pixels = values.len() / per_pixel;
        let mut worst = 0f32;
        for k in 0..per_pixel {
            let plane = &values[k * pixels..(k + 1) * pixels];
            for &x in plane {
                worst = worst.max((x - plane[0]).abs());
            }
        }
        worst
    }

    /// With replicate or reflect padding, the teacher, every student and the anomaly score are
    /// spatially constant on a constant image: the frame is gone by construction. With zeros it
    /// is there. The padding travels through the scale file.
    #[test]
    fn a_constant_image_scores_the_same_everywhere_without_zero_padding() {
        let train: Vec<ChwImage> = (0..3).map(|i| noise_image(i, 24)).collect();
        let constant =
            (Tensor::ones((1, 3, 24, 24), DType::F32, &Device::Cpu).unwrap() * 0.7).unwrap();
        for padding in BorderPadding::ALL {
            let dir = tempfile::tempdir().unwrap();
            let config = StudentTrainingConfig {
                padding,
                ..tiny_config()
            };
            ScaleTrainer::new(
                config,
                random_teacher(17),
                Path::new("teacher.safetensors"),
                &train,
                &[noise_image(9, 24)],
                ScalePaths::in_run_dir(dir.path(), 17),
                false,
                &Device::Cpu,
            )
            .unwrap()
            .run(&mut ())
            .unwrap();
            let model =
                ScaleModel::load(&ScalePaths::in_run_dir(dir.path(), 17).model, &Device::Cpu)
                    .unwrap();
            assert_eq!(model.training.padding, padding);
            assert_eq!(model.teacher.config().padding, padding);
            let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let teacher = spread(&flat(model.teacher.extract(&constant).unwrap()), 128);
            let student = spread(&flat(model.students[1].extract(&constant).unwrap()), 128);
            let score = spread(&model.anomaly_scores(&constant).unwrap(), 1);
            if padding == BorderPadding::Zeros {
                assert!(
                    teacher > 1e-2 && student > 1e-2 && score > 1e-2,
                    "{padding}"
                );
            } else {
                assert!(teacher < 1e-4, "{padding}: teacher spread {teacher}");
                assert!(student < 1e-4, "{padding}: student spread {student}");
                assert!(score < 1e-3, "{padding}: score spread {score}");
            }
        }
    }

    /// A configuration written before the border settings existed reads as what those runs did.
    #[test]
    fn configurations_without_the_border_settings_read_as_the_old_behaviour() {
        let text = StudentTrainingConfig::cpu().to_toml().unwrap();
        let old: String = text
            .lines()
            .filter(|l| {
                !["crop_coverage", "student_sampling", "padding"]
                    .iter()
                    .any(|k| l.starts_with(k))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(old, text);
        let read: StudentTrainingConfig = toml::from_str(&old).unwrap();
        assert_eq!(read.padding, BorderPadding::Zeros);
        assert_eq!(read.crop_coverage, CropCoverage::Inside);
        assert_eq!(read.student_sampling, StudentSampling::Shared);
        let cpu = StudentTrainingConfig::cpu();
        assert_eq!(
            (cpu.padding, cpu.crop_coverage, cpu.student_sampling),
            (
                BorderPadding::Replicate,
                CropCoverage::Uniform,
                StudentSampling::PerStudent
            )
        );
    }

    #[test]
    fn resuming_with_another_configuration_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = trainer(dir.path(), false);
        b.run(&mut StopAt(3)).unwrap();
        let train = vec![noise_image(0, 24), noise_image(1, 24), noise_image(2, 24)];
        let err = ScaleTrainer::new(
            StudentTrainingConfig {
                epochs: 3,
                ..tiny_config()
            },
            random_teacher(17),
            Path::new("t"),
            &train,
            &[noise_image(9, 24)],
            ScalePaths::in_run_dir(dir.path(), 17),
            true,
            &Device::Cpu,
        )
        .unwrap_err();
        assert!(matches!(err, DetectorError::ConfigMismatch { .. }), "{err}");
    }
}
