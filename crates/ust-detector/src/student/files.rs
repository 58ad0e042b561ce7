//! The files of one scale: the student checkpoint (every student's weights and Adam moments,
//! the counters that make a resumed run the uninterrupted one) and the scale file the finished
//! run writes (teacher, students with the input standardisation folded in, target statistics,
//! calibration, the validation images' scores).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use ust_models::PatchNet;

use super::trainer::{ScaleTrainer, StudentSummary};
use super::*;
use crate::error::{DetectorError, Result};
use crate::training::checkpoint::{
    read_safetensors, restore_trainee, trainee_tensors, write_safetensors,
};

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

impl ScaleTrainer {
    /// Continues from the checkpoint in `paths`: the students' weights and Adam moments, the
    /// step, the guard and the unfinished epoch's losses. A checkpoint of another configuration
    /// is refused.
    pub(super) fn restore(&mut self) -> Result<()> {
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

    /// Writes the checkpoint atomically; `elapsed_s` is the training time over all sessions.
    pub(super) fn save_checkpoint(&mut self, elapsed_s: f64) -> Result<()> {
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

    /// The students as they score raw images: detached, with the input standardisation (if
    /// any) folded into their first convolution.
    pub(super) fn frozen_students(&self) -> Result<Vec<PatchNet>> {
        self.students
            .iter()
            .map(|s| match &self.input_affine {
                Some(a) => Ok(s.dense.net().fold_input_affine(&a.scale, &a.shift)?),
                None => Ok(s.dense.net().detach()),
            })
            .collect()
    }

    /// Writes the scale file: the teacher, the frozen students, the target statistics, the
    /// validation images' scores, the calibration and the summary.
    pub(super) fn write_model(
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
