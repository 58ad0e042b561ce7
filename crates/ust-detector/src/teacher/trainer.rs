//! Teacher pretraining (METHOD.md §4): the patch network T̂ and the distillation decoder D are
//! trained on natural-image patch triplets with λk·Lk + λm·Lm + λc·Lc.
//!
//! One step: a batch of patches (triplets when λm > 0) and, when λk > 0, the backbone's pooled
//! features of the anchors (computed for the batch, or served from the
//! [`DistillationBank`]); the teacher's descriptors (anchors, positives and negatives in one
//! forward pass); the loss of `ust_losses::teacher_loss`; the divergence guard; backward; Adam.
//!
//! Reproducibility: the initial weights, the triplets and the bank's draws all derive from
//! `seed`. The triplet sampler is restarted at every checkpoint boundary with a seed derived
//! from the iteration, so a run resumed from a checkpoint sees exactly the data and the state
//! an uninterrupted run sees from that iteration on.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ust_data::files::write_bytes_atomically;
use ust_data::{TripletSampler, find_images_recursive};
use ust_losses::{
    CheckedTeacherLossWeights, DistillationDecoder, DistillationDecoderConfig, TeacherBatch,
    teacher_loss,
};
use ust_models::{
    Backbone, EfficientNetLite0, EfficientNetLite0Config, HubFile, PatchNet, ResNet18,
    ResNet18Config, WeightSource,
};

use super::bank::DistillationBank;
use super::config::{BackboneConfig, BackboneKind, TeacherTrainingConfig};
use super::dense::dense_targets;
use super::files::{
    CheckpointState, RunPaths, load_checkpoint, save_checkpoint, save_teacher_file,
};
use super::summary::{LossTerms, TrainingSummary};
use crate::error::{DetectorError, Result};
use crate::training::adam::Adam;
use crate::training::checkpoint::{named_vars, restore_trainee, trainee_tensors};
use crate::training::guard::LossGuard;
use crate::training::init::{derive_seed, initialize_seeded};
use crate::training::observer::TrainingObserver;

/// Patches per backbone forward pass (bounds the memory of a 224-pixel pass).
const BACKBONE_CHUNK: usize = 64;

/// Independent random streams derived from the run's seed.
const STREAM_INIT: u64 = 1;
const STREAM_TRIPLETS: u64 = 2;
const STREAM_BANK: u64 = 3;

/// Where a run starts.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStart {
    /// Steps already done (0 for a fresh run).
    pub start_iteration: usize,
    /// Steps the run ends at.
    pub total_iterations: usize,
    /// Patches (triplets when λm > 0) per step.
    pub batch_size: usize,
    /// Whether this continues a checkpoint.
    pub resumed: bool,
}

/// The state after one step, for progress displays.
#[derive(Debug, Clone, PartialEq)]
pub struct IterationReport {
    /// Steps done, this one included (1-based).
    pub iteration: usize,
    pub total_iterations: usize,
    pub terms: LossTerms,
    /// Steps and training patches (batch_size per step) per second in this session.
    pub iterations_per_s: f64,
    pub patches_per_s: f64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainingOutcome {
    /// All iterations done; the teacher file is written.
    Finished(Box<TrainingSummary>),
    /// The observer stopped the run after `iteration` steps.
    Stopped { iteration: usize },
}

/// The inputs of one step: patches (N, 3, p, p), the triplet partners when λm > 0, and the
/// distillation targets (N, K) when λk > 0.
struct StepBatch {
    anchor: Tensor,
    positive: Option<Tensor>,
    negative: Option<Tensor>,
    targets: Option<Tensor>,
}

/// A teacher pretraining run: networks, optimiser, data and bookkeeping.
pub struct TeacherTrainer {
    config: TeacherTrainingConfig,
    weights: CheckedTeacherLossWeights,
    paths: RunPaths,
    device: Device,
    varmap: VarMap,
    teacher: PatchNet,
    decoder: Option<DistillationDecoder>,
    backbone: Option<Box<dyn Backbone>>,
    backbone_description: Option<String>,
    optimizer: Adam,
    data_root: PathBuf,
    images: Vec<PathBuf>,
    sampler: Option<TripletSampler>,
    bank: Option<DistillationBank>,
    guard: LossGuard,
    /// Steps done.
    iteration: usize,
    /// Training seconds of earlier sessions.
    elapsed_before_s: f64,
    sessions: usize,
    last_terms: Option<LossTerms>,
    recent: VecDeque<LossTerms>,
    last_checkpoint: Option<(PathBuf, usize)>,
}

impl std::fmt::Debug for TeacherTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeacherTrainer")
            .field("patch_size", &self.config.teacher.patch_size)
            .field("iteration", &self.iteration)
            .field("output", &self.paths.output)
            .finish_non_exhaustive()
    }
}

impl TeacherTrainer {
    /// A fresh run: resolves and checks `config`, finds the images, loads the backbone (when
    /// λk > 0), builds the teacher and decoder with seeded weights. Nothing is written yet.
    pub fn new(config: TeacherTrainingConfig, paths: RunPaths, device: &Device) -> Result<Self> {
        let config = config.resolve();
        config.check()?;
        let weights = config.losses.check()?;
        let data_root = config.data_folder();
        let images = find_images_recursive(&data_root)?;
        config.triplet_config(0).check(&data_root, images.len())?;

        let (backbone, backbone_description) = if config.uses_distillation() {
            let (b, mut d) = load_backbone(&config.backbone, device)?;
            if config.uses_dense_distillation() {
                let factor = b.feature_stride() / config.teacher_stride();
                d = format!(
                    "{}, dense: {w}-pixel windows enlarged ×{factor}, last feature map",
                    d.rsplit_once(", input")
                        .map_or(d.as_str(), |(head, _)| head),
                    w = config.dense_window()
                );
            }
            (Some(b), Some(d))
        } else {
            (None, None)
        };

        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let teacher = PatchNet::new(config.teacher.clone(), vb.clone())?;
        let decoder = match &backbone {
            Some(b) => Some(DistillationDecoder::new(
                DistillationDecoderConfig {
                    descriptor_dim: config.teacher.descriptor_dim,
                    target_dim: b.feature_dim(),
                },
                vb.pp("decoder"),
            )?),
            None => None,
        };
        let vars = named_vars(&varmap);
        initialize_seeded(&vars, derive_seed(config.seed, STREAM_INIT, 0))?;
        let optimizer = Adam::new(vars, config.optimizer.clone())?;
        let bank = match (&backbone, config.uses_bank()) {
            (Some(b), true) => Some(DistillationBank::new(
                config.distillation_cache.bank_size,
                config.teacher.patch_size,
                b.feature_dim(),
                weights.uses_triplet(),
            )),
            _ => None,
        };
        tracing::info!(
            patch_size = config.teacher.patch_size,
            images = images.len(),
            folder = %data_root.display(),
            backbone = backbone_description.as_deref().unwrap_or("none"),
            preset = %config.preset,
            iterations = config.schedule.iterations,
            batch = config.schedule.batch_size,
            "teacher training set up"
        );
        Ok(Self {
            guard: LossGuard::new(&config.guard),
            weights,
            paths,
            device: device.clone(),
            varmap,
            teacher,
            decoder,
            backbone,
            backbone_description,
            optimizer,
            data_root,
            images,
            sampler: None,
            bank,
            iteration: 0,
            elapsed_before_s: 0.0,
            sessions: 1,
            last_terms: None,
            recent: VecDeque::new(),
            last_checkpoint: None,
            config,
        })
    }

    /// Continues the run whose checkpoint is `paths.checkpoint`. The configuration must equal
    /// the checkpoint's, except `schedule.iterations` (a run may be extended).
    pub fn resume(config: TeacherTrainingConfig, paths: RunPaths, device: &Device) -> Result<Self> {
        if !paths.checkpoint.is_file() {
            return Err(DetectorError::bad_file(
                &paths.checkpoint,
                "no checkpoint to resume from (start without --resume)",
            ));
        }
        let ckpt = load_checkpoint(&paths.checkpoint)?;
        let mut trainer = Self::new(config, paths, device)?;
        let differences = ckpt.config.resume_differences(&trainer.config)?;
        if !differences.is_empty() {
            return Err(DetectorError::ConfigMismatch {
                path: ckpt.path,
                differences: differences.join("; "),
            });
        }
        let what = ckpt.path.as_path();
        let get = |name: &str| ckpt.tensors.get(name).cloned();
        let s = &ckpt.state;
        restore_trainee(
            "",
            &trainer.varmap,
            &mut trainer.optimizer,
            s.adam_step,
            &ckpt.tensors,
            what,
        )?;
        if let Some(bank) = &mut trainer.bank {
            bank.restore(get, s.bank_len, s.bank_next, what)?;
        }
        trainer.guard.restore(s.guard_mean, s.guard_seen);
        trainer.iteration = s.iteration;
        trainer.elapsed_before_s = s.elapsed_s;
        trainer.sessions = s.sessions + 1;
        trainer.last_terms = s.last_terms;
        trainer.last_checkpoint = Some((ckpt.path.clone(), s.iteration));
        tracing::info!(
            iteration = s.iteration,
            checkpoint = %ckpt.path.display(),
            "resuming teacher training"
        );
        Ok(trainer)
    }

    /// The resolved configuration.
    pub fn config(&self) -> &TeacherTrainingConfig {
        &self.config
    }

    /// Steps done.
    pub fn iteration(&self) -> usize {
        self.iteration
    }

    /// The teacher being trained (its parameters are the run's variables).
    pub fn teacher(&self) -> &PatchNet {
        &self.teacher
    }

    /// Every trained parameter by name (`conv*` of the teacher, `decoder.*`), sorted.
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        named_vars(&self.varmap)
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect()
    }

    /// Runs the remaining steps, writing the resolved configuration first, checkpoints every
    /// `schedule.checkpoint_every` steps and the teacher file at the end.
    pub fn run(
        &mut self,
        observer: &mut dyn TrainingObserver<RunStart, IterationReport>,
    ) -> Result<TrainingOutcome> {
        write_bytes_atomically(&self.paths.config, self.config_file_text()?.as_bytes())?;
        let total = self.config.schedule.iterations;
        observer.started(&RunStart {
            start_iteration: self.iteration,
            total_iterations: total,
            batch_size: self.config.schedule.batch_size,
            resumed: self.sessions > 1,
        });
        let session_start = Instant::now();
        let mut stepping_since: Option<(Instant, usize)> = None;
        while self.iteration < total {
            if self.sampler.is_none()
                || self
                    .iteration
                    .is_multiple_of(self.config.schedule.checkpoint_every)
            {
                self.start_segment()?;
            }
            if let Some(capacity) = self
                .bank
                .as_ref()
                .filter(|b| !b.is_full())
                .map(DistillationBank::capacity)
            {
                observer.phase(&format!(
                    "filling the distillation bank ({capacity} patches)"
                ));
                self.fill_bank()?;
            }
            let (since, first) = *stepping_since.get_or_insert((Instant::now(), self.iteration));
            let terms = self.step()?;
            let seconds = since.elapsed().as_secs_f64().max(1e-9);
            let done = (self.iteration - first) as f64;
            let report = IterationReport {
                iteration: self.iteration,
                total_iterations: total,
                terms,
                iterations_per_s: done / seconds,
                patches_per_s: done * self.config.schedule.batch_size as f64 / seconds,
            };
            if self
                .iteration
                .is_multiple_of(self.config.schedule.log_every)
                || self.iteration == total
            {
                tracing::info!(
                    iteration = self.iteration,
                    total,
                    loss = %terms.compact(),
                    patches_per_s = format!("{:.1}", report.patches_per_s),
                    "teacher step"
                );
            }
            if self
                .iteration
                .is_multiple_of(self.config.schedule.checkpoint_every)
                || self.iteration == total
            {
                let elapsed = self.elapsed_before_s + session_start.elapsed().as_secs_f64();
                self.save_checkpoint(elapsed)?;
                observer.checkpoint(self.iteration, &self.paths.checkpoint);
            }
            if observer.step(&report).is_break() {
                tracing::info!(iteration = self.iteration, "teacher training stopped");
                return Ok(TrainingOutcome::Stopped {
                    iteration: self.iteration,
                });
            }
        }
        let elapsed = self.elapsed_before_s + session_start.elapsed().as_secs_f64();
        let summary = self.summary(elapsed)?;
        save_teacher_file(
            &self.paths.output,
            self.parameters(),
            self.teacher.config(),
            &self.config,
            &summary,
        )?;
        tracing::info!(
            output = %self.paths.output.display(),
            iterations = summary.iterations,
            seconds = format!("{:.1}", summary.duration_s),
            loss = %summary.recent_mean_terms.compact(),
            "teacher written"
        );
        Ok(TrainingOutcome::Finished(Box::new(summary)))
    }

    fn config_file_text(&self) -> Result<String> {
        Ok(format!(
            "# Resolved configuration of the teacher training that writes {}\n\
             # (ust-detector {}). Rerun with: ust teacher train --config THIS_FILE\n\n{}",
            self.paths.output.display(),
            env!("CARGO_PKG_VERSION"),
            self.config.to_toml()?
        ))
    }

    /// Restarts the triplet sampler for the segment starting at the current iteration.
    fn start_segment(&mut self) -> Result<()> {
        let seed = derive_seed(self.config.seed, STREAM_TRIPLETS, self.iteration as u64);
        // Stop the previous sampler's threads before starting new ones.
        self.sampler = None;
        self.sampler = Some(TripletSampler::new(
            &self.data_root,
            self.images.clone(),
            self.config.triplet_config(seed),
        )?);
        tracing::debug!(iteration = self.iteration, "triplet sampler (re)started");
        Ok(())
    }

    fn sampler(&mut self) -> Result<&mut TripletSampler> {
        self.sampler.as_mut().ok_or_else(|| {
            DetectorError::InvalidConfig("the triplet sampler is not running".into())
        })
    }

    /// Pooled backbone features of `n` patches (values of `n` 3×p×p patches), in chunks.
    fn backbone_features(&self, patches: &[f32], n: usize) -> Result<Vec<f32>> {
        let backbone = self
            .backbone
            .as_ref()
            .ok_or_else(|| DetectorError::InvalidConfig("distillation needs a backbone".into()))?;
        let p = self.config.teacher.patch_size;
        let per = 3 * p * p;
        let mut out = Vec::with_capacity(n * backbone.feature_dim());
        for start in (0..n).step_by(BACKBONE_CHUNK) {
            let m = BACKBONE_CHUNK.min(n - start);
            let x = Tensor::from_slice(
                &patches[start * per..(start + m) * per],
                (m, 3, p, p),
                &self.device,
            )?;
            let f = backbone.pooled_features(&x)?;
            out.extend(f.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// Fills the bank to capacity from the sampler.
    fn fill_bank(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            match &self.bank {
                Some(b) if !b.is_full() => {}
                _ => break,
            }
            let raw = self.sampler()?.next_raw()?;
            let features = self.backbone_features(&raw.anchor, raw.len())?;
            if let Some(bank) = &mut self.bank {
                bank.insert(&raw.anchor, &raw.positive, &raw.negative, &features)?;
            }
        }
        tracing::info!(
            seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
            "distillation bank filled"
        );
        Ok(())
    }

    /// The patches (and targets) of the next step.
    fn next_batch(&mut self) -> Result<StepBatch> {
        let n = self.config.schedule.batch_size;
        let p = self.config.teacher.patch_size;
        if self.bank.is_some() {
            let raw = self.sampler()?.next_raw()?;
            let features = self.backbone_features(&raw.anchor, raw.len())?;
            let seed = derive_seed(self.config.seed, STREAM_BANK, self.iteration as u64);
            let bank = self
                .bank
                .as_mut()
                .ok_or_else(|| DetectorError::InvalidConfig("no bank".into()))?;
            bank.insert(&raw.anchor, &raw.positive, &raw.negative, &features)?;
            let indices = bank.draw_indices(n, seed)?;
            let b = bank.gather(&indices, p, &self.device)?;
            return Ok(StepBatch {
                anchor: b.anchor,
                positive: b.positive,
                negative: b.negative,
                targets: Some(b.features),
            });
        }
        let root = self.data_root.clone();
        let batch = self
            .sampler()?
            .next_raw()?
            .into_tensors(&self.device)
            .map_err(|cause| ust_data::DataError::Tensor { path: root, cause })?;
        // Dense windows regress feature-map cells (no bank, no triplets: the configuration
        // check refuses both); patches the pooled features.
        let targets = match &self.backbone {
            Some(b) if self.config.uses_dense_distillation() => {
                Some(dense_targets(b.as_ref(), &self.config, &batch.anchor)?)
            }
            Some(b) => Some(b.pooled_features(&batch.anchor)?.detach()),
            None => None,
        };
        let (positive, negative) = if self.weights.uses_triplet() {
            (Some(batch.positive), Some(batch.negative))
        } else {
            (None, None)
        };
        Ok(StepBatch {
            anchor: batch.anchor,
            positive,
            negative,
            targets,
        })
    }

    /// One optimiser step; returns its loss terms.
    fn step(&mut self) -> Result<LossTerms> {
        let StepBatch {
            anchor,
            positive,
            negative,
            targets,
        } = self.next_batch()?;
        let n = anchor.dim(0)?;
        // Anchors, positives and negatives through the teacher in one pass.
        let (anchor_d, positive_d, negative_d) = match (&positive, &negative) {
            (Some(pos), Some(neg)) if self.weights.uses_triplet() => {
                let all = self
                    .teacher
                    .descriptors(&Tensor::cat(&[&anchor, pos, neg], 0)?)?;
                (
                    all.narrow(0, 0, n)?,
                    Some(all.narrow(0, n, n)?),
                    Some(all.narrow(0, 2 * n, n)?),
                )
            }
            _ if self.config.uses_dense_distillation() => {
                // (N, d, grid, grid) -> rows in the order of the targets.
                let map = self.teacher.forward(&anchor)?;
                let (_, d, gh, gw) = map.dims4()?;
                let rows = map.permute((0, 2, 3, 1))?.reshape((n * gh * gw, d))?;
                (rows, None, None)
            }
            _ => (self.teacher.descriptors(&anchor)?, None, None),
        };
        let decoded = match &self.decoder {
            Some(d) => Some(d.forward(&anchor_d)?),
            None => None,
        };
        let loss = teacher_loss(
            &self.weights,
            &TeacherBatch {
                anchor: &anchor_d,
                positive: positive_d.as_ref(),
                negative: negative_d.as_ref(),
                decoded: decoded.as_ref(),
                distillation_target: targets.as_ref(),
            },
        )?;
        let terms = LossTerms::from(loss.terms);
        let iteration = self.iteration + 1;
        if let Err(reason) = self.guard.check(terms.total) {
            return Err(self.diverged(iteration, format!("{reason} ({})", terms.compact())));
        }
        let grads = loss.total.backward()?;
        if let Err(bad) = self.optimizer.step(&grads)? {
            return Err(self.diverged(
                iteration,
                format!(
                    "the gradient of {} is not finite ({})",
                    bad.parameter,
                    terms.compact()
                ),
            ));
        }
        self.iteration = iteration;
        self.last_terms = Some(terms);
        self.recent.push_back(terms);
        while self.recent.len() > self.config.schedule.log_every {
            self.recent.pop_front();
        }
        Ok(terms)
    }

    fn diverged(&self, iteration: usize, reason: String) -> DetectorError {
        tracing::error!(iteration, %reason, "teacher training diverged");
        DetectorError::Diverged {
            iteration,
            reason,
            last_checkpoint: self.last_checkpoint.as_ref().map(|c| c.0.clone()),
            last_checkpoint_iteration: self.last_checkpoint.as_ref().map(|c| c.1),
        }
    }

    fn save_checkpoint(&mut self, elapsed_s: f64) -> Result<()> {
        let mut tensors = trainee_tensors("", &self.varmap, &self.optimizer)?;
        let (bank_len, bank_next) = match &self.bank {
            Some(bank) => {
                let snapshot = bank.snapshot(self.config.teacher.patch_size)?;
                tensors.extend(snapshot.tensors);
                (snapshot.len, snapshot.next)
            }
            None => (0, 0),
        };
        let state = CheckpointState {
            iteration: self.iteration,
            adam_step: self.optimizer.step_count(),
            elapsed_s,
            sessions: self.sessions,
            bank_len,
            bank_next,
            guard_mean: self.guard.running_mean(),
            guard_seen: self.guard.seen(),
            last_terms: self.last_terms,
        };
        save_checkpoint(&self.paths.checkpoint, tensors, &self.config, &state)?;
        self.last_checkpoint = Some((self.paths.checkpoint.clone(), self.iteration));
        tracing::debug!(
            iteration = self.iteration,
            path = %self.paths.checkpoint.display(),
            "checkpoint written"
        );
        Ok(())
    }

    fn summary(&self, elapsed_s: f64) -> Result<TrainingSummary> {
        let last = self.last_terms.ok_or_else(|| {
            DetectorError::InvalidConfig("no step was taken: nothing to summarise".into())
        })?;
        let recent: Vec<LossTerms> = self.recent.iter().copied().collect();
        let batch = self.config.schedule.batch_size;
        Ok(TrainingSummary {
            iterations: self.iteration,
            batch_size: batch,
            final_terms: last,
            recent_mean_terms: LossTerms::mean(&recent).unwrap_or(last),
            recent_window: recent.len().max(1),
            data_folder: self.data_root.display().to_string(),
            data_images: self.images.len(),
            backbone: self.backbone_description.clone(),
            duration_s: elapsed_s,
            patches_per_s: (self.iteration * self.config.patches_per_step()) as f64
                / elapsed_s.max(1e-9),
            sessions: self.sessions,
            preset: self.config.preset,
            trainer_version: env!("CARGO_PKG_VERSION").to_string(),
        })
    }
}

/// Loads the configured backbone (weights resolved, see [`BackboneConfig::resolve`]); returns
/// it with a one-line description.
pub fn load_backbone(
    config: &BackboneConfig,
    device: &Device,
) -> Result<(Box<dyn Backbone>, String)> {
    let resize_to = config.input_size.resize_to();
    let input = match resize_to {
        Some(s) => format!("input resized to {s}"),
        None => "input at patch size".to_string(),
    };
    match config.kind {
        BackboneKind::EfficientNetLite0 => {
            let path = config.weights.clone().ok_or_else(|| {
                DetectorError::InvalidConfig("backbone.weights is not set".into())
            })?;
            let net =
                EfficientNetLite0::load(&path, EfficientNetLite0Config { resize_to }, device)?;
            Ok((
                Box::new(net),
                format!("efficientnet-lite0 ({path}), {input}"),
            ))
        }
        BackboneKind::ResNet18 => {
            let mut source = WeightSource::new(HubFile::resnet18_default());
            if let Some(p) = &config.weights {
                source = source.with_path(p);
            }
            let (path, _) = source.resolve()?;
            let net = ResNet18::from_file(&path, ResNet18Config { resize_to }, device)?;
            Ok((
                Box::new(net),
                format!("resnet18 ({}), {input}", path.display()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_seeds_differ_by_stream_and_index() {
        let a = derive_seed(0, STREAM_TRIPLETS, 0);
        assert_eq!(a, derive_seed(0, STREAM_TRIPLETS, 0));
        assert_ne!(a, derive_seed(0, STREAM_TRIPLETS, 1));
        assert_ne!(a, derive_seed(0, STREAM_BANK, 0));
        assert_ne!(a, derive_seed(1, STREAM_TRIPLETS, 0));
    }
}
