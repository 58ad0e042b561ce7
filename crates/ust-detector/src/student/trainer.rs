//! Training the M students of one scale: building the run (images, students, or a resumed
//! checkpoint), the steps, and the calibration that ends in the scale file. What a step draws
//! is in `sampling.rs`, the inputs and targets in `inputs.rs`, the files in `files.rs`.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use ust_data::ChwImage;
use ust_losses::student_regression_loss;
use ust_models::{DenseExtractor, PatchNet};

use super::files::ScalePaths;
use super::inputs::{InputAffine, TeacherTargets, image_tensor};
use super::sampling::{CropCoverage, StepSampler, Window};
use super::*;
use crate::error::{DetectorError, Result};
use crate::training::adam::Adam;
use crate::training::checkpoint::named_vars;
use crate::training::guard::LossGuard;
use crate::training::init::{derive_seed, initialize_seeded};
use crate::training::observer::TrainingObserver;

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
    /// Whether that teacher says it was distilled densely (issue 18's lever, a deviation from
    /// the paper that the evaluation report states); absent in files written before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dense_teacher: bool,
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

/// One trainable student: its variables, dense network and optimiser.
pub(super) struct Student {
    pub(super) varmap: VarMap,
    pub(super) dense: DenseExtractor,
    pub(super) optimizer: Adam,
}

/// Trains the M students of one scale, then calibrates the scores and writes the scale file.
/// (Fields are visible to the `student` module because its checkpoint and scale file, in
/// `files.rs`, read and write them.)
pub struct ScaleTrainer {
    pub(super) config: StudentTrainingConfig,
    pub(super) paths: ScalePaths,
    pub(super) teacher_path: PathBuf,
    pub(super) teacher: DenseExtractor,
    pub(super) students: Vec<Student>,
    /// Training images, padded by (p−1)/2 with the run's border padding, each
    /// (1, 3, H+p−1, W+p−1).
    pub(super) padded: Vec<Tensor>,
    /// The students' input map x ↦ x·scale + shift per channel (standardisation), when the
    /// configuration asks for it.
    pub(super) input_affine: Option<InputAffine>,
    pub(super) validation: Vec<Tensor>,
    pub(super) targets: Option<TeacherTargets>,
    pub(super) targets_s: f64,
    pub(super) guard: LossGuard,
    pub(super) step: usize,
    pub(super) elapsed_before_s: f64,
    pub(super) sessions: usize,
    /// Per-step mean student loss of the current epoch.
    pub(super) epoch_losses: Vec<f64>,
    pub(super) last_checkpoint: Option<(PathBuf, usize)>,
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
            dense_teacher: crate::teacher::files::TeacherFileInfo::read(&self.teacher_path)
                .is_ok_and(|info| info.training_config.uses_dense_distillation()),
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
}
