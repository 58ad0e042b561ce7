//! The one-class students' checkpoint: every student's weights and Adam moments, the
//! configuration, and the counters with a fingerprint of the targets, so that a checkpoint made
//! from other images or another teacher is refused instead of continued.

use std::collections::HashMap;
use std::path::Path;

use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use ust_models::PatchNet;

use super::OneClassStudentConfig;
use crate::error::{DetectorError, Result};
use crate::training::adam::Adam;
use crate::training::checkpoint::{
    read_safetensors, restore_trainee, trainee_tensors, write_safetensors,
};

/// `ust.model` value of a one-class checkpoint, and its metadata keys.
const CHECKPOINT_MODEL: &str = "ust-one-class-students-checkpoint";
const KEY_MODEL: &str = "ust.model";
const KEY_CONFIG: &str = "ust.one_class.config";
const KEY_STATE: &str = "ust.checkpoint.state";

/// Counters of a one-class checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct OneClassCheckpointState {
    pub(super) step: usize,
    /// Sum of the step losses of the unfinished epoch.
    pub(super) epoch_sum: f64,
    pub(super) first_epoch_loss: Option<f64>,
    pub(super) final_loss: Option<f64>,
    pub(super) elapsed_s: f64,
    pub(super) sessions: usize,
    pub(super) train_images: usize,
    /// Sums of the target statistics μ and σ: a checkpoint made from other training images or
    /// another teacher is refused.
    pub(super) target_fingerprint: (f64, f64),
}

pub(super) type TrainableStudent = (VarMap, PatchNet, Adam);

/// Writes the weights and Adam moments of every student (`student<m>.` prefixes), the
/// configuration and the counters.
pub(super) fn save_checkpoint(
    path: &Path,
    config: &OneClassStudentConfig,
    state: &OneClassCheckpointState,
    nets: &[TrainableStudent],
) -> Result<()> {
    let mut tensors = Vec::new();
    for (m, (varmap, _, optimizer)) in nets.iter().enumerate() {
        tensors.extend(trainee_tensors(&format!("student{m}."), varmap, optimizer)?);
    }
    // Both serialise infallibly (plain structs of numbers and strings).
    let metadata = HashMap::from([
        (KEY_MODEL.to_string(), CHECKPOINT_MODEL.to_string()),
        (
            KEY_CONFIG.to_string(),
            serde_json::to_string(config).unwrap_or_default(),
        ),
        (
            KEY_STATE.to_string(),
            serde_json::to_string(state).unwrap_or_default(),
        ),
    ]);
    write_safetensors(path, tensors, metadata)
}

/// Restores the students from the checkpoint at `path` after checking that it was made with the
/// same configuration and the same targets as `fresh` describes; returns its counters.
pub(super) fn restore_checkpoint(
    path: &Path,
    config: &OneClassStudentConfig,
    fresh: &OneClassCheckpointState,
    nets: &mut [TrainableStudent],
) -> Result<OneClassCheckpointState> {
    let (tensors, meta) = read_safetensors(path)?;
    if meta.get(KEY_MODEL).map(String::as_str) != Some(CHECKPOINT_MODEL) {
        return Err(DetectorError::bad_file(
            path,
            "not a one-class students checkpoint",
        ));
    }
    let text = |key: &str| {
        meta.get(key)
            .ok_or_else(|| DetectorError::bad_file(path, format!("no {key} entry")))
    };
    let saved: OneClassStudentConfig = serde_json::from_str(text(KEY_CONFIG)?)
        .map_err(|e| DetectorError::bad_file(path, format!("bad configuration: {e}")))?;
    if &saved != config {
        return Err(DetectorError::ConfigMismatch {
            path: path.to_path_buf(),
            differences: format!("checkpoint: {saved:?}; now: {config:?}"),
        });
    }
    let mut state: OneClassCheckpointState = serde_json::from_str(text(KEY_STATE)?)
        .map_err(|e| DetectorError::bad_file(path, format!("bad state: {e}")))?;
    if state.train_images != fresh.train_images
        || state.target_fingerprint != fresh.target_fingerprint
    {
        return Err(DetectorError::ConfigMismatch {
            path: path.to_path_buf(),
            differences: format!(
                "the checkpoint was made from {} training images with target statistics {:?}, \
                 this run has {} with {:?} (other images or another teacher)",
                state.train_images,
                state.target_fingerprint,
                fresh.train_images,
                fresh.target_fingerprint
            ),
        });
    }
    for (m, (varmap, _, optimizer)) in nets.iter_mut().enumerate() {
        let prefix = format!("student{m}.");
        restore_trainee(
            &prefix,
            varmap,
            optimizer,
            state.step as u64,
            &tensors,
            path,
        )?;
    }
    state.sessions += 1;
    Ok(state)
}
