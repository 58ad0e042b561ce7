//! Training the M students of one scale: the teacher's targets, the steps, checkpoints, and
//! the calibration that ends in the scale file.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use ust_data::ChwImage;
use ust_losses::student_regression_loss;
use ust_models::{DenseExtractor, PatchNet};

use super::*;
use crate::adam::Adam;
use crate::checkpoint::{
    named_vars, read_safetensors, restore_trainee, trainee_tensors, write_safetensors,
};
use crate::error::{DetectorError, Result};
use crate::guard::LossGuard;
use crate::init::initialize_seeded;
use crate::observer::TrainingObserver;
use crate::sampling::{CropCoverage, StepSampler, Window};
use crate::teacher::derive_seed;

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
    /// The students' input map x ↦ x·scale + shift per channel (standardisation), when the
    /// configuration asks for it.
    input_affine: Option<InputAffine>,
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

/// x ↦ x·scale + shift per input channel.
#[derive(Debug, Clone)]
struct InputAffine {
    scale: Vec<f32>,
    shift: Vec<f32>,
    /// The same as (1, C, 1, 1) tensors.
    scale_t: Tensor,
    shift_t: Tensor,
}

/// A standard deviation below this (a nearly constant channel) is replaced by it, so the
/// standardisation never amplifies noise more than 1 000-fold.
const MIN_INPUT_STD: f64 = 1e-3;

impl InputAffine {
    /// The per-channel standardisation over every pixel of `images` (each (1, C, H, W)).
    fn standardisation(images: &[Tensor]) -> Result<Self> {
        let c = images[0].dim(1)?;
        let (mut sum, mut sum_sq, mut n) = (vec![0f64; c], vec![0f64; c], 0usize);
        for image in images {
            let data = image.flatten_all()?.to_vec1::<f32>()?;
            let plane = data.len() / c;
            for (k, values) in data.chunks_exact(plane).enumerate() {
                for &x in values {
                    sum[k] += x as f64;
                    sum_sq[k] += (x as f64) * (x as f64);
                }
            }
            n += plane;
        }
        let (mut scale, mut shift) = (Vec::with_capacity(c), Vec::with_capacity(c));
        for k in 0..c {
            let mean = sum[k] / n as f64;
            let std = (sum_sq[k] / n as f64 - mean * mean)
                .max(0.0)
                .sqrt()
                .max(MIN_INPUT_STD);
            scale.push((1.0 / std) as f32);
            shift.push((-mean / std) as f32);
        }
        let device = images[0].device();
        Ok(Self {
            scale_t: Tensor::from_slice(&scale, (1, c, 1, 1), device)?,
            shift_t: Tensor::from_slice(&shift, (1, c, 1, 1), device)?,
            scale,
            shift,
        })
    }

    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_mul(&self.scale_t)?
            .broadcast_add(&self.shift_t)?)
    }
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
        let input_affine = if config.standardize_inputs {
            let size = config.image_size;
            let unpadded = padded
                .iter()
                .map(|t| t.narrow(2, half, size)?.narrow(3, half, size))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let affine = InputAffine::standardisation(&unpadded)?;
            tracing::debug!(scale = ?affine.scale, shift = ?affine.shift, "student inputs standardised");
            Some(affine)
        } else {
            None
        };
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
            input_affine,
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
        self.config.steps_for(self.padded.len())
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
            let input = match &self.input_affine {
                Some(affine) => affine.apply(&input)?,
                None => input,
            };
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
    pub fn run(
        &mut self,
        observer: &mut dyn TrainingObserver<StudentRunStart, StudentStepReport>,
    ) -> Result<ScaleOutcome> {
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
            .frozen_students()?
            .into_iter()
            .map(|net| DenseExtractor::new(net, self.config.dense_config()))
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
        observer: &mut dyn TrainingObserver<StudentRunStart, StudentStepReport>,
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

    /// The students as they score raw images: detached, with the input standardisation (if
    /// any) folded into their first convolution.
    fn frozen_students(&self) -> Result<Vec<PatchNet>> {
        self.students
            .iter()
            .map(|s| match &self.input_affine {
                Some(a) => Ok(s.dense.net().fold_input_affine(&a.scale, &a.shift)?),
                None => Ok(s.dense.net().detach()),
            })
            .collect()
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
        for (m, net) in self.frozen_students()?.iter().enumerate() {
            for (name, t) in net.parameters() {
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

#[cfg(test)]
mod input_tests {
    use super::*;

    /// The standardisation maps the images' pixels of each channel to mean 0 and standard
    /// deviation 1 (closed form: the population statistics over every image).
    #[test]
    fn standardisation_gives_zero_mean_and_unit_std_per_channel() {
        let dev = Device::Cpu;
        let a = Tensor::from_vec(
            vec![0.2f32, 0.4, 0.6, 0.8, 0.5, 0.5, 0.5, 0.51],
            (1, 2, 2, 2),
            &dev,
        )
        .unwrap();
        let b = Tensor::from_vec(
            vec![0.1f32, 0.3, 0.5, 0.7, 0.52, 0.5, 0.49, 0.5],
            (1, 2, 2, 2),
            &dev,
        )
        .unwrap();
        let affine = InputAffine::standardisation(&[a.clone(), b.clone()]).unwrap();
        let all = Tensor::cat(&[affine.apply(&a).unwrap(), affine.apply(&b).unwrap()], 0)
            .unwrap()
            .transpose(0, 1)
            .unwrap()
            .flatten_from(1)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (c, values) in all.iter().enumerate() {
            let n = values.len() as f32;
            let mean = values.iter().sum::<f32>() / n;
            let var = values.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n;
            assert!(mean.abs() < 1e-5, "channel {c}: mean {mean}");
            assert!((var - 1.0).abs() < 1e-4, "channel {c}: variance {var}");
        }
        // Channel 0 by hand: mean 0.45, population std sqrt(0.0525).
        assert!((affine.scale[0] - 1.0 / 0.0525f32.sqrt()).abs() < 1e-3);
        assert!((affine.shift[0] + 0.45 / 0.0525f32.sqrt()).abs() < 1e-3);
        // A constant channel is not blown up beyond 1/MIN_INPUT_STD.
        let flat = Tensor::full(0.5f32, (1, 1, 3, 3), &dev).unwrap();
        let affine = InputAffine::standardisation(&[flat]).unwrap();
        assert!((affine.scale[0] as f64 - 1.0 / MIN_INPUT_STD).abs() < 1e-2);
    }
}
