//! Students for the one-class image protocol of MNIST and CIFAR-10 (METHOD.md §5–§7, Table 2):
//! every image is resized to the teacher's p×p, so the teacher gives one descriptor per image
//! (dense output 1×1). M students with the teacher's architecture (randomly initialised)
//! regress the teacher's descriptor normalised per dimension over the training images
//! (ŷ = (y − μ)/σ); the image score is (e − e_mean)/e_std + (v − v_mean)/v_std with e the
//! regression error of the students' mean, v their predictive variance, and the four statistics
//! over held-out validation images of the normal class (§6).
//!
//! One image is one descriptor here, so the trainer takes mini-batches of images (the dense
//! trainer of [`crate::student`] takes one whole image per step, which holds thousands of
//! descriptors); batch 1 is the paper's literal setting. Every student sees the batches in the
//! same seeded order and has its own Adam; weights, order and subsets derive from the seed.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use ust_losses::{ensemble_scores, student_regression_loss};
use ust_models::PatchNet;

use crate::error::{DetectorError, Result};
use crate::preset::Preset;
use crate::student::{Calibration, MIN_TARGET_STD, StudentTrainingConfig};
use crate::training::adam::{Adam, AdamConfig};
use crate::training::checkpoint::named_vars;
use crate::training::init::derive_seed;
use crate::training::observer::TrainingObserver;

mod files;
#[cfg(test)]
mod tests;

use files::{OneClassCheckpointState, restore_checkpoint, save_checkpoint};

const STREAM_INIT: u64 = 31;
const STREAM_ORDER: u64 = 32;
/// Images per forward pass when only scoring (no graph is recorded).
const SCORE_BATCH: usize = 256;
/// How the one-class students are trained. Start from [`OneClassStudentConfig::preset`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneClassStudentConfig {
    /// The preset the values started from (a record).
    pub preset: Preset,
    /// Seeds the initial weights and the batch order.
    pub seed: u64,
    /// Students (M; METHOD.md §5: 5 for MNIST and CIFAR-10).
    pub students: usize,
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per optimiser step.
    pub batch_size: usize,
    pub optimizer: AdamConfig,
    /// Optimiser steps between checkpoints (when training with a checkpoint file).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
}

fn default_checkpoint_every() -> usize {
    OneClassStudentConfig::paper().checkpoint_every
}

impl OneClassStudentConfig {
    /// METHOD.md §5 read literally for one descriptor per image: M = 5, batch 1 image,
    /// 100 epochs, Adam lr 1e-4, weight decay 1e-5.
    pub fn paper() -> Self {
        Self {
            preset: Preset::Paper,
            seed: 0,
            students: 5,
            epochs: 100,
            batch_size: 1,
            optimizer: StudentTrainingConfig::paper().optimizer,
            // Batch 1: 2 000 images of 5 students, a few minutes on a CPU.
            checkpoint_every: 2000,
        }
    }

    /// Sized for a 2-core CPU (with at most 300 training images, chosen by the caller): M = 5,
    /// batches of 16 images, 6 epochs, lr 5e-4 (the dense `cpu` preset's rate for a short
    /// schedule); a checkpoint every 40 steps (about 40 s here).
    pub fn cpu() -> Self {
        Self {
            preset: Preset::Cpu,
            epochs: 6,
            batch_size: 16,
            checkpoint_every: 40,
            optimizer: AdamConfig {
                learning_rate: 5e-4,
                ..StudentTrainingConfig::paper().optimizer
            },
            ..Self::paper()
        }
    }

    /// Seconds on tiny data, for tests: M = 2, batches of 4, 10 epochs, lr 1e-3, a checkpoint
    /// every 4 steps.
    pub fn smoke() -> Self {
        Self {
            preset: Preset::Smoke,
            students: 2,
            epochs: 10,
            batch_size: 4,
            checkpoint_every: 4,
            optimizer: AdamConfig {
                learning_rate: 1e-3,
                ..StudentTrainingConfig::paper().optimizer
            },
            ..Self::paper()
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
        let bad = |m: &str| Err(DetectorError::InvalidConfig(m.to_string()));
        if self.students < 2 {
            return bad(
                "one-class students: at least 2 students are needed (the predictive variance of one is 0)",
            );
        }
        if self.epochs == 0 {
            return bad("one-class students: epochs must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("one-class students: batch_size must be at least 1");
        }
        if self.checkpoint_every == 0 {
            return bad("one-class students: checkpoint_every must be at least 1");
        }
        self.optimizer.check()
    }
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OneClassSummary {
    pub students: usize,
    pub train_images: usize,
    pub validation_images: usize,
    pub steps: usize,
    /// Mean over the students of the loss averaged over the first and the last epoch.
    pub first_epoch_loss: f64,
    pub final_loss: f64,
    /// Training time over every session of the run.
    pub training_s: f64,
    /// Sessions the training took (more than 1 when resumed from a checkpoint).
    #[serde(default = "one")]
    pub sessions: usize,
}

fn one() -> usize {
    1
}

/// Where [`OneClassStudents::train_resumable`] keeps its checkpoint, and whether to continue from
/// one found there (otherwise training starts afresh and overwrites it).
#[derive(Debug, Clone, PartialEq)]
pub struct OneClassCheckpointing {
    pub path: PathBuf,
    pub resume: bool,
}

/// Where a run of [`OneClassStudents::train_resumable`] starts, for progress displays.
#[derive(Debug, Clone, PartialEq)]
pub struct OneClassRunStart {
    /// Steps already done (those of the checkpoint resumed from, else 0).
    pub start_step: usize,
    pub total_steps: usize,
    pub students: usize,
    pub resumed: bool,
}

/// Progress after one optimiser step.
#[derive(Debug, Clone, PartialEq)]
pub struct OneClassStep {
    /// Steps done, this one included.
    pub step: usize,
    pub total_steps: usize,
    /// This step's loss, averaged over the students.
    pub loss: f64,
}

/// How [`OneClassStudents::train_resumable`] ended.
#[derive(Debug)]
pub enum OneClassOutcome {
    Finished(Box<OneClassStudents>),
    /// The observer asked to stop after `step` (like a kill: no checkpoint is written).
    Stopped {
        step: usize,
    },
}

/// Trained one-class students with the frozen teacher, the target statistics and the
/// calibration.
#[derive(Debug, Clone)]
pub struct OneClassStudents {
    teacher: PatchNet,
    students: Vec<PatchNet>,
    /// μ and σ of the teacher's training descriptors, each (1, d).
    mean: Tensor,
    std: Tensor,
    pub calibration: Calibration,
    pub summary: OneClassSummary,
}

/// Descriptors of `images` (N, 3, p, p) → (N, d), in detached batches.
fn descriptors(net: &PatchNet, images: &Tensor) -> Result<Tensor> {
    let n = images.dim(0)?;
    let mut parts = Vec::new();
    for start in (0..n).step_by(SCORE_BATCH) {
        let len = SCORE_BATCH.min(n - start);
        parts.push(net.descriptors(&images.narrow(0, start, len)?)?);
    }
    Ok(Tensor::cat(&parts, 0)?)
}

fn check_images(images: &Tensor, p: usize, what: &str) -> Result<usize> {
    let dims = images.dims();
    if dims.len() != 4 || dims[1] != 3 || dims[2] != p || dims[3] != p {
        return Err(DetectorError::InvalidConfig(format!(
            "{what}: images must be (N, 3, {p}, {p}) for a p={p} teacher, got {dims:?}"
        )));
    }
    if dims[0] == 0 {
        return Err(DetectorError::InvalidConfig(format!("{what}: no images")));
    }
    Ok(dims[0])
}

/// Mean and population standard deviation of e and v (the statistics of METHOD.md §6).
fn calibrate(e: &[f32], v: &[f32], images: usize) -> Calibration {
    let stats = |x: &[f32]| {
        let n = x.len() as f64;
        let m = x.iter().map(|&a| f64::from(a)).sum::<f64>() / n;
        let var = x.iter().map(|&a| (f64::from(a) - m).powi(2)).sum::<f64>() / n;
        (m, var.sqrt().max(1e-12))
    };
    let (e_mean, e_std) = stats(e);
    let (v_mean, v_std) = stats(v);
    Calibration {
        e_mean,
        e_std,
        v_mean,
        v_std,
        images,
        pixels: e.len(),
    }
}

impl OneClassStudents {
    /// Trains `config.students` students on `train` and calibrates on `validation`, both
    /// (N, 3, p, p) with p the teacher's receptive field.
    pub fn train(
        config: &OneClassStudentConfig,
        teacher: &PatchNet,
        train: &Tensor,
        validation: &Tensor,
        device: &Device,
    ) -> Result<Self> {
        let outcome =
            Self::train_resumable(config, teacher, train, validation, device, None, &mut ())?;
        match outcome {
            OneClassOutcome::Finished(model) => Ok(*model),
            OneClassOutcome::Stopped { step } => Err(DetectorError::InvalidConfig(format!(
                "one-class training stopped at step {step} without being asked to"
            ))),
        }
    }

    /// [`OneClassStudents::train`] with a checkpoint every `config.checkpoint_every` steps
    /// (written atomically; removed once training is done), reporting to `observer`. A
    /// resumed run is the run that was interrupted: batch order and weights derive from the seed
    /// and the step, and the checkpoint holds the weights and Adam moments of every student.
    pub fn train_resumable(
        config: &OneClassStudentConfig,
        teacher: &PatchNet,
        train: &Tensor,
        validation: &Tensor,
        device: &Device,
        checkpointing: Option<&OneClassCheckpointing>,
        observer: &mut dyn TrainingObserver<OneClassRunStart, OneClassStep>,
    ) -> Result<OneClassOutcome> {
        config.check()?;
        let p = teacher.patch_size();
        let n = check_images(train, p, "one-class training images")?;
        let n_val = check_images(validation, p, "one-class validation images")?;
        let teacher = teacher.detach();
        let session_started = Instant::now();

        // Targets: the teacher's descriptors, standardised per dimension.
        observer.phase(&format!("teacher descriptors of {n} training images"));
        let raw = descriptors(&teacher, train)?; // (n, d)
        let d = raw.dim(1)?;
        let mean = raw.mean_keepdim(0)?;
        let centred = raw.broadcast_sub(&mean)?;
        let std = centred
            .sqr()?
            .mean_keepdim(0)?
            .sqrt()?
            .clamp(MIN_TARGET_STD, f32::MAX)?;
        let targets = centred.broadcast_div(&std)?;
        let fingerprint = (
            f64::from(mean.sum_all()?.to_scalar::<f32>()?),
            f64::from(std.sum_all()?.to_scalar::<f32>()?),
        );

        let mut nets = Vec::with_capacity(config.students);
        for m in 0..config.students {
            let varmap = VarMap::new();
            let net = PatchNet::new(
                teacher.config().clone(),
                VarBuilder::from_varmap(&varmap, DType::F32, device),
            )?;
            let vars = named_vars(&varmap);
            crate::training::init::initialize_seeded(
                &vars,
                derive_seed(config.seed, STREAM_INIT, (p * 1000 + m) as u64),
            )?;
            let optimizer = Adam::new(vars, config.optimizer.clone())?;
            nets.push((varmap, net, optimizer));
        }

        let batches_per_epoch = n.div_ceil(config.batch_size);
        let total_steps = config.epochs * batches_per_epoch;
        let mut state = OneClassCheckpointState {
            step: 0,
            epoch_sum: 0.0,
            first_epoch_loss: None,
            final_loss: None,
            elapsed_s: 0.0,
            sessions: 1,
            train_images: n,
            target_fingerprint: fingerprint,
        };
        // The checkpoint a divergence error names: the one resumed from, until a newer one.
        let mut last_checkpoint: Option<(PathBuf, usize)> = None;
        if let Some(c) = checkpointing.filter(|c| c.resume && c.path.is_file()) {
            state = restore_checkpoint(&c.path, config, &state, &mut nets)?;
            last_checkpoint = Some((c.path.clone(), state.step));
            tracing::info!(
                step = state.step,
                total_steps,
                "resumed one-class students from {}",
                c.path.display()
            );
        }
        let elapsed_before_s = state.elapsed_s;
        observer.started(&OneClassRunStart {
            start_step: state.step,
            total_steps,
            students: config.students,
            resumed: state.sessions > 1,
        });
        while state.step < total_steps {
            let (epoch, within) = (
                state.step / batches_per_epoch,
                state.step % batches_per_epoch,
            );
            let mut order: Vec<u32> = (0..n as u32).collect();
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(derive_seed(
                config.seed,
                STREAM_ORDER,
                epoch as u64,
            ));
            order.shuffle(&mut rng);
            for chunk in order.chunks(config.batch_size).skip(within) {
                let idx = Tensor::from_slice(chunk, chunk.len(), device)?;
                let x = train.index_select(&idx, 0)?;
                let y = targets
                    .index_select(&idx, 0)?
                    .reshape((chunk.len(), d, 1, 1))?;
                let mut step_sum = 0f64;
                for (m, (_, net, optimizer)) in nets.iter_mut().enumerate() {
                    let diverged = |reason: String| DetectorError::Diverged {
                        iteration: state.step + 1,
                        reason,
                        last_checkpoint: last_checkpoint.as_ref().map(|(p, _)| p.clone()),
                        last_checkpoint_iteration: last_checkpoint.as_ref().map(|(_, s)| *s),
                    };
                    let prediction = net.forward(&x)?;
                    let loss = student_regression_loss(&prediction, &y)?;
                    let value = f64::from(loss.to_scalar::<f32>()?);
                    if !value.is_finite() {
                        return Err(diverged(format!("student {m}: the loss is {value}")));
                    }
                    let grads = loss.backward()?;
                    if let Err(bad) = optimizer.step(&grads)? {
                        return Err(diverged(format!(
                            "student {m}: the gradient of {} is not finite",
                            bad.parameter
                        )));
                    }
                    step_sum += value;
                }
                let loss = step_sum / nets.len() as f64;
                state.step += 1;
                state.epoch_sum += loss;
                if state.step.is_multiple_of(batches_per_epoch) {
                    let epoch_loss = state.epoch_sum / batches_per_epoch as f64;
                    state.first_epoch_loss.get_or_insert(epoch_loss);
                    state.final_loss = Some(epoch_loss);
                    state.epoch_sum = 0.0;
                    tracing::info!(
                        epoch = epoch + 1,
                        epochs = config.epochs,
                        mean_loss = format!("{epoch_loss:.4}"),
                        "one-class students"
                    );
                }
                let report = OneClassStep {
                    step: state.step,
                    total_steps,
                    loss,
                };
                if observer.step(&report).is_break() {
                    return Ok(OneClassOutcome::Stopped { step: state.step });
                }
                if let Some(c) = checkpointing
                    && state.step.is_multiple_of(config.checkpoint_every)
                    && state.step < total_steps
                {
                    state.elapsed_s = elapsed_before_s + session_started.elapsed().as_secs_f64();
                    save_checkpoint(&c.path, config, &state, &nets)?;
                    last_checkpoint = Some((c.path.clone(), state.step));
                    observer.checkpoint(state.step, &c.path);
                }
            }
        }
        let training_s = elapsed_before_s + session_started.elapsed().as_secs_f64();
        let students: Vec<PatchNet> = nets.iter().map(|(_, net, _)| net.detach()).collect();
        let mut model = Self {
            teacher,
            students,
            mean,
            std,
            calibration: Calibration {
                e_mean: 0.0,
                e_std: 1.0,
                v_mean: 0.0,
                v_std: 1.0,
                images: 0,
                pixels: 0,
            },
            summary: OneClassSummary {
                students: config.students,
                train_images: n,
                validation_images: n_val,
                steps: total_steps,
                first_epoch_loss: state.first_epoch_loss.unwrap_or(f64::NAN),
                final_loss: state.final_loss.unwrap_or(f64::NAN),
                training_s,
                sessions: state.sessions,
            },
        };
        observer.phase(&format!("calibrating on {n_val} validation images"));
        let (e, v) = model.raw_scores(validation)?;
        model.calibration = calibrate(&e, &v, n_val);
        tracing::info!(calibration = ?model.calibration, "one-class students calibrated");
        if let Some(c) = checkpointing
            && c.path.is_file()
        {
            std::fs::remove_file(&c.path).map_err(|e| DetectorError::io(&c.path, e))?;
        }
        Ok(OneClassOutcome::Finished(Box::new(model)))
    }

    /// Regression error e and predictive variance v of every image (METHOD.md §6).
    ///
    /// # Shapes
    /// `images` (N, 3, p, p) → two vectors of N values
    pub fn raw_scores(&self, images: &Tensor) -> Result<(Vec<f32>, Vec<f32>)> {
        let n = check_images(images, self.teacher.patch_size(), "one-class images")?;
        let d = self.teacher.descriptor_dim();
        let (mut e, mut v) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for start in (0..n).step_by(SCORE_BATCH) {
            let len = SCORE_BATCH.min(n - start);
            let x = images.narrow(0, start, len)?;
            let target = self
                .teacher
                .descriptors(&x)?
                .broadcast_sub(&self.mean)?
                .broadcast_div(&self.std)?
                .reshape((len, d, 1, 1))?;
            let predictions = self
                .students
                .iter()
                .map(|s| Ok(s.descriptors(&x)?.reshape((len, d, 1, 1))?))
                .collect::<Result<Vec<_>>>()?;
            let scores = ensemble_scores(&predictions, &target)?;
            e.extend(scores.regression_error.flatten_all()?.to_vec1::<f32>()?);
            v.extend(scores.predictive_variance.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok((e, v))
    }

    /// The calibrated anomaly score of every image, higher = more anomalous.
    ///
    /// # Shapes
    /// `images` (N, 3, p, p) → N scores
    pub fn scores(&self, images: &Tensor) -> Result<Vec<f32>> {
        let (e, v) = self.raw_scores(images)?;
        Ok(self.calibration.score(&e, &v))
    }

    /// The receptive field.
    pub fn patch_size(&self) -> usize {
        self.teacher.patch_size()
    }
}
